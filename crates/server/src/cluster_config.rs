//! The cluster configuration document (seed 003's `kvm-compose-config.json`): the host document
//! of every live agent that is a testbed host under `testbed_host_ssh_config`, keyed by agent
//! id. An agent is a testbed host when its host document has the fields the original's
//! `SshConfig` requires (`ip`, `user`, `identity_file`, `testbed_nic`, `main_interface`, all
//! strings): a seed-003 client always does, a plain worker (or the server's local one) does not
//! and is left out, as the original's tools could not read it. Served at
//! `GET /v1/agents/config`, and written to `cluster_config_file` whenever it changes; what the
//! operator put in the file is kept: the other top-level keys (such as the SSH key locations)
//! and the main host's entry (`is_main_host: true`), which the original's tools need. The file
//! is replaced atomically: written beside, fsynced, renamed.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use switchyard_core::State;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// The fields a testbed host's document must have, as strings.
pub const HOST_FIELDS: [&str; 5] = [
    "ip",
    "user",
    "identity_file",
    "testbed_nic",
    "main_interface",
];

/// The host documents of the live agents that are testbed hosts, keyed by agent id.
pub fn hosts(state: &State) -> Map<String, Value> {
    state
        .agents
        .iter()
        .filter(|a| a.lost.is_none())
        .filter_map(|a| {
            let mut host: Value = serde_json::from_str(&a.info.host_json).ok()?;
            let complete = HOST_FIELDS.iter().all(|f| host[*f].is_string());
            // Only the operator names the main host (in the file); an agent never is one.
            if let Some(m) = host.as_object_mut() {
                m.insert("is_main_host".into(), Value::Bool(false));
            }
            complete.then(|| (a.info.id.clone(), host))
        })
        .collect()
}

/// The main host's entry in a cluster document (`is_main_host: true`), with its key.
pub fn main_host(doc: &Map<String, Value>) -> Option<(&String, &Value)> {
    doc.get("testbed_host_ssh_config")?
        .as_object()?
        .iter()
        .find(|(_, h)| h["is_main_host"] == Value::Bool(true))
}

/// The document: `base` (the file as it was, or `{}`) with `testbed_host_ssh_config` holding
/// its main host's entry, if any, and `hosts`.
pub fn document(base: Option<Value>, hosts: Map<String, Value>) -> Value {
    let mut doc = match base {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut all = Map::new();
    if let Some((key, host)) = main_host(&doc) {
        all.insert(key.clone(), host.clone());
    }
    for (id, host) in hosts {
        all.entry(id).or_insert(host);
    }
    doc.insert("testbed_host_ssh_config".into(), Value::Object(all));
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
    // The agents as of the last look: their number and newest revision. Most revisions change
    // no agent; those are skipped without parsing any host document.
    let mut looked: Option<(usize, Option<u64>)> = None;
    loop {
        revisions.borrow_and_update();
        let agents = node.view.read(|st| {
            let count = st.agents.iter().count();
            (count, st.agents.iter().map(|a| a.revision).max())
        });
        if looked != Some(agents) {
            let now = node.view.read(hosts);
            if written.as_ref() == Some(&now) {
                looked = Some(agents);
            } else {
                let base = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                match write_atomically(&path, &document(base, now.clone())) {
                    Ok(()) => {
                        written = Some(now);
                        looked = Some(agents);
                    }
                    // Tried again at the next revision.
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the cluster configuration")
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = revisions.changed() => if r.is_err() { return },
        }
    }
}
