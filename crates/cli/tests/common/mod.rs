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

/// Start `switchyard serve ARGS` (logging warnings) and read the addresses it prints; its other
/// log lines go to the test's stderr prefixed with `label`.
pub fn serve(label: &str, args: impl IntoIterator<Item = impl Into<OsString>>) -> Proc {
    // The test's own HTTP clients use rustls with ring, as the binary's do.
    switchyard_tls::install_provider();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .args(args.into_iter().map(Into::into))
        .env("SWITCHYARD_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the switchyard binary");
    let stderr = child.stderr.take().unwrap();
    let label = label.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut testbed = None;
        let mut funkytown = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Faces are announced before the API.
            if let Some(addr) = line.split("TestbedOS face on http://").nth(1) {
                testbed = Some(addr.trim().to_string());
                continue;
            }
            if let Some(addr) = line.split("funkytown reporter face on http://").nth(1) {
                funkytown = Some(addr.trim().to_string());
                continue;
            }
            // "switchyard node N serving the API on http(s)://A (peer RPC on P)"
            if let Some(url) = line.split("serving the API on ").nth(1) {
                let tls = url.starts_with("https://");
                let rest = url.split("://").nth(1).unwrap_or_default();
                let api = rest.split_whitespace().next().unwrap_or_default();
                let peer = rest
                    .split("peer RPC on ")
                    .nth(1)
                    .unwrap_or_default()
                    .trim_end_matches(')');
                if let Some(tx) = tx.take() {
                    let faces = (testbed.take(), funkytown.take());
                    let _ = tx.send((api.to_string(), peer.to_string(), faces, tls));
                }
            } else {
                eprintln!("[{label}] {line}");
            }
        }
    });
    let (api, peer, (testbed, funkytown), tls) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server prints its addresses");
    Proc {
        child,
        api,
        peer,
        testbed,
        funkytown,
        tls,
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
