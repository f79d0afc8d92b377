//! The README's examples, run from the README itself. Every fenced block but an output sample
//! (`text`) carries a marker comment right before it saying how it is checked:
//!
//! - `<!-- readme-test: run -->`: the shell block runs as written with `bash -e` in a new
//!   directory, `switchyard` on the PATH, against a new server (data in `./data` there). The
//!   server listens on a free port: `localhost:7700` and `127.0.0.1:7700` in the block are that
//!   address, and `SWITCHYARD_SERVER` names it.
//! - `serve-config`, `device-type`, `tokens`: the TOML block is given to
//!   `switchyard serve --check` as the settings file, a device type file or the token file.
//! - `json`: the block parses as JSON.
//! - `same-as PATH`: the block is the repository's file PATH, which a test or CI runs.
//! - `skip: REASON`: not run here, for the reason given.
//!
//! A block without a marker fails the test: a new example needs a decision.

use std::path::Path;
use std::process::Command;

mod common;

#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    lang: String,
    marker: Option<String>,
    body: String,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let marker = i
            .checked_sub(1)
            .and_then(|p| lines[p].strip_prefix("<!-- readme-test: "))
            .and_then(|m| m.strip_suffix(" -->"))
            .map(str::to_string);
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && lines[i] != "```" {
            body.push_str(lines[i]);
            body.push('\n');
            i += 1;
        }
        out.push(Block {
            line: start + 1,
            lang: lang.trim().to_string(),
            marker,
            body,
        });
        i += 1;
    }
    out
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(path).expect("README.md at the repository root")
}

fn check_file(flag: &str, name: &str, body: &str) -> Result<(), String> {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--check", flag])
        .arg(&file)
        .current_dir(dir.path())
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn run_shell(body: &str) -> Result<(), String> {
    let dir = tempfile::TempDir::new().unwrap();
    let proc = common::serve_in(&dir.path().join("data"), &[]);
    let script = body
        .replace("localhost:7700", &proc.api)
        .replace("127.0.0.1:7700", &proc.api);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("SWITCHYARD_SERVER", proc.url())
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .expect("bash runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn same_as(path: &str, body: &str) -> Result<(), String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{path}: {e}"))?;
    if text == body {
        Ok(())
    } else {
        Err(format!("the block differs from {path}"))
    }
}

#[test]
fn every_readme_example_runs_as_written_or_says_why_not() {
    let all = blocks(&readme());
    assert!(all.len() > 15, "the README's blocks were not found");
    let mut failures = Vec::new();
    let mut ran = 0;
    for b in &all {
        let result = match (b.marker.as_deref(), b.lang.as_str()) {
            (None, "text") => continue,
            (None, _) => Err("no readme-test marker before this block".to_string()),
            (Some(m), _) if m.starts_with("skip: ") && m.len() > "skip: ".len() + 10 => continue,
            (Some("run"), "sh") => run_shell(&b.body),
            (Some("serve-config"), "toml") => check_file("--config", "serve.toml", &b.body),
            (Some("device-type"), "toml") => check_file("--device-types", "type.toml", &b.body),
            (Some("tokens"), "toml") => check_file("--auth-tokens", "tokens.toml", &b.body),
            (Some("json"), "json") => serde_json::from_str::<serde_json::Value>(&b.body)
                .map(drop)
                .map_err(|e| e.to_string()),
            (Some(m), _) if m.starts_with("same-as ") => same_as(&m["same-as ".len()..], &b.body),
            (Some(m), lang) => Err(format!("unknown marker {m:?} for a {lang} block")),
        };
        ran += 1;
        if let Err(e) = result {
            failures.push(format!("README.md:{} ({}): {e}", b.line, b.lang));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 10, "only {ran} blocks were checked");
}
