//! mv3's StatefulSet (`deploy/kubernetes/mv3/templates/app.yaml`) as Kubernetes would run it,
//! on this machine: its pods 0, 1 and 2 are rendered from the manifest (the container's env,
//! with the downward API's pod name and the join token Secret; `$(VAR)` references expanded
//! by Kubernetes' rules; the command and its `sh -c` script run as written, with a `switchyard`
//! on the PATH that records the arguments it is given), then started as three real
//! `switchyard serve` processes with exactly those arguments, in the order the StatefulSet's
//! podManagementPolicy gives, each once the previous one passes the manifest's readiness probe.
//!
//! Each pod has a network of its own in Kubernetes and reaches the others by their stable
//! names (`mv-N.mv-peers`, through the headless service). Here they share one machine, and
//! those names cannot be resolved without changing /etc/hosts: each pod gets a loopback
//! address of its own (127.77.X.N+1), the names are replaced by those addresses and the
//! pod's `0.0.0.0` by its own address; the ports stay the manifest's. Its volume is a
//! directory of its own.
//!
//! The pods must form one cluster (three voters, one leader, seen alike by all three); a
//! command through one follower's mv face is read through the other's; and pod 1, restarted
//! with the same arguments and its data, comes back as the same member.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_client::Client;
use tempfile::TempDir;

mod common;

use common::Proc;

fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/mv3/templates/app.yaml")
}

/// Every document of the manifest, as JSON values.
fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(manifest_path()).expect("the mv3 manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).expect("YAML");
            serde_json::to_value(v).expect("a Kubernetes object is JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the mv3 manifest"))
}

/// `input` with `$(NAME)` references expanded as Kubernetes expands a container's command,
/// args and env values: a defined variable is replaced, an undefined reference is left as
/// it is, `$$` is a `$`.
fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// One pod of the StatefulSet, rendered.
struct Pod {
    ordinal: usize,
    /// Its loopback address, standing for its own network.
    ip: String,
    /// Its volume.
    data: TempDir,
    /// The environment Kubernetes gives the container.
    env: BTreeMap<String, String>,
}

impl Pod {
    fn name(&self) -> String {
        format!("mv-{}", self.ordinal)
    }
}

/// The environment of `container` in pod `pod` (HOSTNAME, as the runtime sets it, then the
/// manifest's env in order, each value expanded against the ones before it).
fn render_env(
    container: &Value,
    pod: &str,
    secrets: &BTreeMap<(&str, &str), String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([("HOSTNAME".to_string(), pod.to_string())]);
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("an env name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => "default".to_string(),
                other => panic!("this test does not render fieldRef {other}"),
            }
        } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
            let key = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            secrets
                .get(&key)
                .unwrap_or_else(|| {
                    panic!("no Secret key {key:?}: the README names mv-join-token/token")
                })
                .clone()
        } else {
            panic!("this test does not render env {e}")
        };
        env.insert(name, value);
    }
    env
}

/// The arguments the container's command gives `switchyard`: the command and args expanded,
/// then run as written with a `switchyard` on the PATH that only records its arguments.
fn render_argv(container: &Value, env: &BTreeMap<String, String>, recorder: &Path) -> Vec<String> {
    let mut argv: Vec<String> = strings(&container["command"])
        .into_iter()
        .chain(strings(&container["args"]))
        .map(|a| expand(&a, env))
        .collect();
    assert!(!argv.is_empty(), "the container has a command");
    if argv[0] == "switchyard" {
        return argv.split_off(1);
    }
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .env("PATH", format!("{}:/usr/bin:/bin", recorder.display()))
        .output()
        .expect("run the container's command");
    assert!(
        out.status.success(),
        "the container's command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect();
    assert!(
        !args.is_empty(),
        "the container's command does not run switchyard"
    );
    args
}

/// A container port's number, by name or number.
fn port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().expect("a port name or number");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}")) as u16
}

async fn until<F: std::future::Future<Output = bool>>(secs: u64, what: &str, f: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All `n` members are voters, no change is under way, and every node names the same leader.
async fn one_cluster(clients: &[Client], n: usize) -> bool {
    let mut leaders = Vec::new();
    for c in clients {
        let Ok(cl) = c.cluster().await else {
            return false;
        };
        if cl.changing || cl.members.len() != n || !cl.members.iter().all(|m| m.voter) {
            return false;
        }
        leaders.push(cl.leader);
    }
    leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statefulset_s_pods_form_one_cluster() {
    let docs = documents();
    let set = find(&docs, "StatefulSet", "mv");
    let spec = &set["spec"];
    let replicas = spec["replicas"].as_u64().expect("replicas") as usize;
    assert_eq!(replicas, 3, "mv3 runs three pods");
    let peers = spec["serviceName"].as_str().expect("serviceName");
    let headless = find(&docs, "Service", peers);
    assert_eq!(headless["spec"]["clusterIP"], "None", "{peers} is headless");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"], true,
        "a joining pod's name resolves before it is ready"
    );
    let containers = spec["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container per pod");
    let container = &containers[0];
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let probe = &container["readinessProbe"]["httpGet"];
    let (probe_path, probe_port) = (
        probe["path"].as_str().expect("an HTTP readiness probe"),
        port(container, &probe["port"]),
    );
    let mv_port = port(container, &Value::from("mv"));
    let ordered = match spec["podManagementPolicy"]
        .as_str()
        .unwrap_or("OrderedReady")
    {
        "OrderedReady" => true,
        "Parallel" => false,
        other => panic!("unknown podManagementPolicy {other}"),
    };

    // The Secret, made as the README says.
    let token = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["cluster", "join-token", "--new"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let secrets = BTreeMap::from([(("mv-join-token", "token"), token)]);

    let bin = TempDir::new().unwrap();
    common::script(
        bin.path(),
        "switchyard",
        r#"for a in "$@"; do printf '%s\0' "$a"; done"#,
    );
    let net = format!("127.77.{}", std::process::id() % 250 + 1);
    let pods: Vec<Pod> = (0..replicas)
        .map(|i| {
            let name = format!("mv-{i}");
            Pod {
                ordinal: i,
                ip: format!("{net}.{}", i + 1),
                data: TempDir::new().unwrap(),
                env: render_env(container, &name, &secrets),
            }
        })
        .collect();

    // What pod `p` runs, its names and volumes mapped to this machine.
    let command = |p: &Pod| -> Vec<String> {
        let argv = render_argv(container, &p.env, bin.path());
        assert_eq!(argv.first().map(String::as_str), Some("serve"), "{argv:?}");
        argv[1..]
            .iter()
            .map(|a| {
                if let Some((name, _)) = mounts.iter().find(|(_, path)| path == a) {
                    return p.data.path().join(name).display().to_string();
                }
                let mut a = a.replace("0.0.0.0", &p.ip);
                for q in &pods {
                    a = a.replace(&format!("{}.{peers}", q.name()), &q.ip);
                }
                assert!(!a.contains(peers), "a name this test does not map: {a}");
                a
            })
            .collect()
    };
    switchyard_tls::install_provider();
    let http = reqwest::Client::new();
    let ready = |p: &Pod| {
        let url = format!("http://{}:{probe_port}{probe_path}", p.ip);
        let http = http.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                assert!(Instant::now() < deadline, "{url} not ready in 30s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let start = |p: &Pod| -> Proc {
        let args = command(p);
        eprintln!("{}: switchyard serve {}", p.name(), args.join(" "));
        common::serve_env(&p.name(), args, p.env.clone())
    };

    let mut procs: Vec<Option<Proc>> = Vec::new();
    for p in &pods {
        procs.push(Some(start(p)));
        if ordered {
            ready(p).await;
        }
    }
    for p in &pods {
        ready(p).await;
    }
    let clients: Vec<Client> = procs
        .iter()
        .map(|p| Client::new(p.as_ref().unwrap().url()))
        .collect();
    until(60, "three voters and one leader, seen by every pod", || {
        one_cluster(&clients, replicas)
    })
    .await;
    let cluster = clients[0].cluster().await.unwrap();
    let ids: Vec<u64> = cluster.members.iter().map(|m| m.node_id).collect();
    assert_eq!(ids, [1, 2, 3], "node ids are the ordinals plus one");
    for m in &cluster.members {
        let pod = &pods[m.node_id as usize - 1];
        assert_eq!(
            m.api,
            format!("{}:7700", pod.ip),
            "advertised API of {}",
            pod.name()
        );
    }

    // A command through one follower's mv face, read through the other's.
    let leader = cluster.leader.unwrap() as usize - 1;
    let followers: Vec<&Pod> = pods.iter().filter(|p| p.ordinal != leader).collect();
    let mv = |p: &Pod, path: &str| format!("http://{}:{mv_port}{path}", p.ip);
    let state = |p: &Pod| {
        let (http, url) = (http.clone(), mv(p, "/state"));
        async move {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            }
        }
    };
    until(20, "the mv device on every pod", || async {
        state(followers[1]).await.is_some()
    })
    .await;
    let r = http
        .post(mv(followers[0], "/switch_on"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "switch_on: {}", r.status());
    until(20, "ON through the other follower", || async {
        state(followers[1]).await == Some(Value::from("ON"))
    })
    .await;

    // Pod 1 restarted with the same arguments and its data: the same member, no second join.
    drop(procs[1].take());
    procs[1] = Some(start(&pods[1]));
    ready(&pods[1]).await;
    let restarted = Client::new(procs[1].as_ref().unwrap().url());
    until(60, "pod 1 back in the cluster of three", || {
        one_cluster(std::slice::from_ref(&restarted), replicas)
    })
    .await;
    until(20, "ON on the restarted pod", || async {
        state(&pods[1]).await == Some(Value::from("ON"))
    })
    .await;
}
