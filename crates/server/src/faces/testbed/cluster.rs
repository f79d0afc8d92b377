//! Cluster clients: a client joins with `POST /api/cluster` and its host document
//! (`host.json`), becoming an agent named by its `ovn.chassis_name` (`"ovn"` when the document
//! has no `ovn`, as the original's default); the answer is the OVN southbound remote,
//! `tcp:HOST:6642`, HOST being the main host's `ip` in the cluster configuration file (the
//! entry with `is_main_host: true`), or else the address the client reached this server on.
//! Its periodic `GET /api/cluster/{name}` answers 200 while it is a live member (and counts as
//! its heartbeat) or 404, both with an empty body (the original client compares the status
//! alone), after which the original client joins again. The leader checks each client at
//! `http://{ip}:{testbed_client_port}/api/config/status`. `GET /api/config/cluster` is the
//! cluster configuration document; `GET /api/config/status` answers 200.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use serde_json::{Map, Value};
use switchyard_core::agents::{AgentCommand, AgentInfo};

use super::{Answer, Pretty, body, error, json_answer, linearizable, refused};
use crate::api::Shared;
use crate::error::ApiError;

/// Seconds a joined client may stay silent before it is lost (the original's clients check
/// in every 10 s); lost at twice this.
const CLIENT_TTL: u64 = 15;

/// The original's chassis name when a host document has no `ovn` section.
const DEFAULT_CHASSIS: &str = "ovn";

/// The host the client reached this server on (for the OVN remote it is told to use).
fn reached_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    }
}

/// A client joins (or joins again) with its host document.
pub(super) async fn join(State(s): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let mut host: Map<String, Value> = body(&bytes)?;
    let ip = match host.get("ip") {
        Some(Value::String(ip)) if !ip.is_empty() && ip.len() <= 253 => ip.clone(),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ip: must be the client's address, a non-empty string",
            ));
        }
    };
    if ip
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("ip: must be a host name or address; got {ip:?}"),
        ));
    }
    let id = match host.get("ovn") {
        None => DEFAULT_CHASSIS.to_string(),
        Some(Value::Object(ovn)) => match ovn.get("chassis_name") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "ovn.chassis_name: missing or not a string; the client's unique name in the \
                     cluster (leave out ovn for the default, \"ovn\")",
                ));
            }
        },
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ovn: must be an object with chassis_name",
            ));
        }
    };
    // What the cluster document needs of a host (the original's SshConfig).
    for f in crate::cluster_config::HOST_FIELDS {
        if !host.get(f).is_some_and(Value::is_string) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("{f}: missing or not a string; a host document needs {f}"),
            ));
        }
    }
    // A worker's agent id is not a client's to take over.
    let taken = s.node.view.read(|st| {
        st.agents
            .get(&id)
            .is_some_and(|a| a.info.labels.get("testbed").map(String::as_str) != Some("client"))
    });
    if taken {
        return Err(error(
            StatusCode::CONFLICT,
            format!("ovn.chassis_name: {id:?} is the name of a worker agent; choose another"),
        ));
    }
    // As the original: whatever the client says, it joins as a client.
    host.insert("is_main_host".into(), Value::Bool(false));
    let port = s.node.config.testbed_client_port;
    let url_host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.clone()
    };
    let info = AgentInfo {
        id,
        hostname: ip,
        cpus: 0,
        memory_bytes: 0,
        labels: BTreeMap::from([("testbed".to_string(), "client".to_string())]),
        version: String::new(),
        queues: Vec::new(),
        host_json: Value::Object(host).to_string(),
        ttl_s: CLIENT_TTL,
        url: Some(format!("http://{url_host}:{port}/api/config/status")),
    };
    let cmd = AgentCommand::Join(info);
    switchyard_core::agents::validate(&cmd).map_err(|e| {
        let e: ApiError = e.into();
        error(e.status, e.message.replace("id:", "ovn.chassis_name:"))
    })?;
    crate::api::agents::run(&s, cmd).await.map_err(refused)?;
    // The OVN central database runs on the main host: its ip from the cluster file, as the
    // original answers from its own host.json; without one, the address the client reached.
    let main_ip = cluster_file(&s).and_then(|doc| {
        let (_, main) = crate::cluster_config::main_host(&doc)?;
        main["ip"].as_str().map(str::to_string)
    });
    let ovn = main_ip.unwrap_or_else(|| reached_host(&headers));
    Ok(format!("tcp:{ovn}:6642").into_response())
}

/// The cluster configuration file as it is on disk, when one is configured and readable.
fn cluster_file(s: &Shared) -> Option<Map<String, Value>> {
    let path = s.node.config.cluster_config_file.as_ref()?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// 200 while `name` is a live member (counting as its heartbeat), else 404.
pub(super) async fn membership(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    linearizable(&s).await?;
    let live = switchyard_core::jobs::validate_name("name", &name).is_ok()
        && s.node
            .view
            .read(|st| {
                st.agents.get(&name).map(|a| {
                    a.lost.is_none()
                        && a.info.labels.get("testbed").map(String::as_str) == Some("client")
                })
            })
            .unwrap_or(false);
    if !live {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    let beat = AgentCommand::Heartbeat {
        id: name,
        leases: Vec::new(),
    };
    crate::api::agents::run(&s, beat).await.map_err(refused)?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn cluster_config(State(s): State<Shared>, Query(p): Query<Pretty>) -> Answer {
    linearizable(&s).await?;
    let base = cluster_file(&s).map(Value::Object);
    let hosts = s.node.view.read(crate::cluster_config::hosts);
    Ok(json_answer(
        &crate::cluster_config::document(base, hosts),
        &p,
    ))
}
