//! Test support: the real `switchyard serve` as a child process.

#![allow(dead_code)]

pub mod testbed_cli;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `switchyard serve`, killed on drop.
pub struct Proc {
    pub child: Child,
    /// host:port of the client API.
    pub api: String,
    /// host:port of the peer listener.
    pub peer: String,
    /// host:port of the TestbedOS face, when `--testbed-listen` was given.
    pub testbed: Option<String>,
    /// host:port of the funkytown face, when `--funkytown-listen` was given.
    pub funkytown: Option<String>,
    /// The API speaks HTTPS.
    pub tls: bool,
}

impl Proc {
    /// Base URL of the client API.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.api)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `switchyard serve ARGS --ready-json` (logging warnings) and read the addresses it
/// reports on stdout; its log lines go to the test's stderr prefixed with `label`.
pub fn serve(label: &str, args: impl IntoIterator<Item = impl Into<OsString>>) -> Proc {
    serve_env(label, args, std::iter::empty::<(String, String)>())
}

/// [`serve`] with these environment variables set too.
pub fn serve_env(
    label: &str,
    args: impl IntoIterator<Item = impl Into<OsString>>,
    env: impl IntoIterator<Item = (impl Into<OsString>, impl Into<OsString>)>,
) -> Proc {
    // The test's own HTTP clients use rustls with ring, as the binary's do.
    switchyard_tls::install_provider();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .args(args.into_iter().map(Into::into))
        .arg("--ready-json")
        .envs(env.into_iter().map(|(k, v)| (k.into(), v.into())))
        .env("SWITCHYARD_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the switchyard binary");
    let stderr = child.stderr.take().unwrap();
    let label = label.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep reading, so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server reports its addresses");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("--ready-json is JSON");
    // host:port of a URL the server reported.
    let addr = |key: &str| {
        ready[key]
            .as_str()
            .map(|u| u.split("://").nth(1).unwrap_or(u).to_string())
    };
    Proc {
        child,
        api: addr("api").expect("the API's address"),
        peer: addr("peer").expect("the peer address"),
        testbed: addr("testbed"),
        funkytown: addr("funkytown"),
        tls: ready["api"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
    }
}

/// Await `fut` for at most `secs` seconds, failing the test with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}

/// Wait until the node at `client` leads (it is the only member), for at most 20 s.
pub async fn ready(client: &switchyard_client::Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !client.status().await.is_ok_and(|s| s.role == "leader") {
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not become leader in 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `switchyard serve` on port 0 with data in `dir` and `extra` flags.
pub fn serve_in(dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args: Vec<OsString> = ["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"]
        .map(Into::into)
        .into();
    args.extend(["--data-dir".into(), dir.into()]);
    args.extend(extra.iter().map(Into::into));
    serve("server", args)
}

/// Write an executable shell script `name` in `dir` (a `#!/bin/sh` line, then `body`).
pub fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    let ok = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    assert!(ok.success(), "chmod +x {}", path.display());
    path
}

/// Run the `switchyard` binary with `args`, with `env` and no other `SWITCHYARD_*` variable
/// (so a developer's settings cannot leak into a test).
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHYARD_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().expect("run the switchyard binary")
}

/// The stdout of a command that must have succeeded (its stderr in the failure otherwise).
pub fn succeeded(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
