//! The settings of `switchyard serve` through the real binary: layered (defaults, then the
//! TOML file, then the environment, then the flags), checked once with errors naming the
//! setting, and `--help` of each command listing only what it reads.

use std::process::Output;

mod common;

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::cli(args, env)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn settings_are_layered_defaults_then_file_then_environment_then_flags() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        "node_id = 5\nhistory_events = 100\nlisten = \"127.0.0.1:9999\"\n\
         devices = [\"sw1=switch\", {name = \"m1\", type = \"mv\"}]\n\
         [actions.up]\ncommand = [\"echo\", \"{name}\"]\n",
    )
    .unwrap();
    let out = switchyard(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--history-events",
            "200",
            "--check",
        ],
        &[
            ("SWITCHYARD_NODE_ID", "6"),
            ("SWITCHYARD_HISTORY_EVENTS", "300"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout)).expect("--check prints TOML");
    // The file alone.
    assert_eq!(printed["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(printed["devices"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        printed["actions"]["up"]["command"][1].as_str(),
        Some("{name}")
    );
    // The environment over the file; the flag over both.
    assert_eq!(printed["node_id"].as_integer(), Some(6));
    assert_eq!(printed["history_events"].as_integer(), Some(200));
    // Defaults are not printed: they are not given.
    assert!(!printed.contains_key("peer_listen"), "{printed}");
}

#[test]
fn a_bad_setting_is_refused_naming_it_wherever_it_comes_from() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("serve.toml");
    std::fs::write(&file, "node_idd = 5\n").unwrap();
    let out = switchyard(
        &["serve", "--config", file.to_str().unwrap(), "--check"],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown field `node_idd`"), "{err}");
    assert!(
        err.contains("`node_id`"),
        "the allowed keys are listed: {err}"
    );

    std::fs::write(&file, "write_timeout = -1\n").unwrap();
    let out = switchyard(
        &["serve", "--config", file.to_str().unwrap(), "--check"],
        &[],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("write_timeout: must be a number of seconds above 0"),
        "{err}"
    );

    let out = switchyard(&["serve", "--check"], &[("SWITCHYARD_RUN_KEEP", "0")]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("run_keep: must be at least 1"), "{err}");
}

#[test]
fn each_command_help_lists_only_the_options_it_reads() {
    let serve = text(&switchyard(&["serve", "--help"], &[]).stdout);
    for client_only in ["--server", "--token", "--output"] {
        assert!(!serve.contains(client_only), "serve --help: {serve}");
    }
    assert!(serve.contains("--data-dir"), "{serve}");
    let bank = text(&switchyard(&["bank", "list", "--help"], &[]).stdout);
    for client in ["--server", "--token", "--output"] {
        assert!(bank.contains(client), "bank list --help: {bank}");
    }
    // A client option given to serve, before or after its name, is refused, not ignored.
    for args in [
        &["serve", "--server", "http://x:1", "--check"][..],
        &["--server", "http://x:1", "serve", "--check"][..],
        &["serve", "-o", "json", "--check"][..],
    ] {
        let out = switchyard(args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains("it is an option of client commands"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
