//! The cluster configuration document (seed 003's `kvm-compose-config.json`): every live
//! agent's host document under `testbed_host_ssh_config`, keyed by agent id. Served at
//! `GET /v1/agents/config`, and written to `cluster_config_file` whenever it changes (other
//! top-level keys already in the file, such as the SSH key locations, are kept). The file is
//! replaced atomically: written beside, fsynced, renamed.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use switchyard_core::State;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// The live agents' host documents, keyed by agent id.
pub fn hosts(state: &State) -> Map<String, Value> {
    state
        .agents
        .iter()
        .filter(|a| a.lost.is_none())
        .map(|a| {
            let host = serde_json::from_str(&a.info.host_json).unwrap_or(Value::Null);
            (a.info.id.clone(), host)
        })
        .collect()
}

/// The document: `base` (the file as it was, or `{}`) with `testbed_host_ssh_config` replaced.
pub fn document(base: Option<Value>, hosts: Map<String, Value>) -> Value {
    let mut doc = match base {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    doc.insert("testbed_host_ssh_config".into(), Value::Object(hosts));
    Value::Object(doc)
}

fn write_atomically(path: &Path, doc: &Value) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(doc)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Rewrite the file whenever the hosts change, until `shutdown`.
pub async fn run(node: Arc<Node>, path: std::path::PathBuf, shutdown: CancellationToken) {
    let mut revisions = node.view.subscribe();
    let mut written: Option<Map<String, Value>> = None;
    loop {
        revisions.borrow_and_update();
        let now = node.view.read(hosts);
        if written.as_ref() != Some(&now) {
            let base = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            match write_atomically(&path, &document(base, now.clone())) {
                Ok(()) => written = Some(now),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the cluster configuration")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = revisions.changed() => if r.is_err() { return },
        }
    }
}
