//! Three real `switchyard serve` processes on loopback: writes through each node read the same
//! from each; the leader is killed with SIGKILL under write load; writes resume on a new
//! leader; every acknowledged write is on the survivors and, after a restart, on the killed
//! node.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_client::Client;
use tempfile::TempDir;

mod common;

use common::Proc;

/// The join token every node of these clusters runs with.
const TOKEN: &str = "switchyard-cli-test-cluster-token";

/// Start node `id` on `dir` (API and peer on `api`/`peer`, port 0 for any free port), with
/// short Raft timings; `join` is the client URL of a member to join.
/// `extra`: more flags.
fn spawn_with(
    id: u64,
    dir: &Path,
    api: &str,
    peer: &str,
    join: Option<&str>,
    extra: &[std::ffi::OsString],
) -> Proc {
    let id_s = id.to_string();
    let mut args: Vec<std::ffi::OsString> = [
        "--node-id",
        &id_s,
        "--listen",
        api,
        "--peer-listen",
        peer,
        "--heartbeat-ms",
        "50",
        "--election-timeout-ms",
        "300",
    ]
    .map(Into::into)
    .into();
    args.extend(["--data-dir".into(), dir.into()]);
    args.extend(["--join-token".into(), TOKEN.into()]);
    if let Some(j) = join {
        args.extend(["--join".into(), j.into()]);
    }
    args.extend(extra.iter().cloned());
    common::serve(&format!("node {id}"), args)
}

/// Poll `f` every 20 ms until it holds, failing after `secs` seconds.
async fn until<F: std::future::Future<Output = bool>>(secs: u64, what: &str, f: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn account_ids(c: &Client) -> Vec<String> {
    c.accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect()
}

/// Certificates for nodes 1 to 4 on loopback, from a new CA (`switchyard certs`), and the
/// flags that turn on HTTPS and mutual TLS between peers with them.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .arg("certs")
                .args(args)
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(ok.success(), "switchyard certs {args:?}");
        };
        run(&["init"]);
        for n in 1..=4 {
            run(&[
                "node",
                &format!("node{n}"),
                "--ip",
                "127.0.0.1",
                "--dns",
                "localhost",
            ]);
        }
        Self { dir }
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn flags(&self, id: u64) -> Vec<std::ffi::OsString> {
        let d = self.dir.path();
        let cert = d.join(format!("node{id}.pem"));
        let key = d.join(format!("node{id}-key.pem"));
        vec![
            "--tls-cert".into(),
            cert.clone().into(),
            "--tls-key".into(),
            key.clone().into(),
            "--peer-ca".into(),
            self.ca().into(),
            "--peer-cert".into(),
            cert.into(),
            "--peer-key".into(),
            key.into(),
            "--ca-cert".into(),
            self.ca().into(),
        ]
    }

    fn client(&self, url: impl Into<String>) -> Client {
        Client::new(url).with_ca_cert(&self.ca()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_kill_9_the_leader_under_load_and_lose_nothing() {
    kill_the_leader_under_load(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_kill_9_the_leader_and_refuse_strangers() {
    let certs = Certs::new();
    let procs = kill_the_leader_under_load(Some(&certs)).await;

    // An outsider on the peer port: without a client certificate, or with one of another CA,
    // the handshake fails; nothing is served.
    let peer = format!("https://{}/raft/vote", procs[0].peer);
    let tls = switchyard_tls::client_config(&[&certs.ca()], None).unwrap();
    let plain = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let err = plain.post(&peer).body("{}").send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    let other = Certs::new();
    let foreign = switchyard_tls::client_config(
        &[&certs.ca()],
        Some((
            &other.dir.path().join("node1.pem"),
            &other.dir.path().join("node1-key.pem"),
        )),
    )
    .unwrap();
    let foreign = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(foreign)
        .build()
        .unwrap();
    assert!(foreign.post(&peer).body("{}").send().await.is_err());
    // Plain HTTP to a TLS listener gets nothing either.
    assert!(
        reqwest::Client::new()
            .get(format!("http://{}/v1/health", procs[0].api))
            .send()
            .await
            .is_err()
    );

    // A fourth node with a certificate of the cluster's CA but without the join token is
    // refused: it does not even start.
    let dir4 = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--node-id", "4", "--listen", "127.0.0.1:0"])
        .args(["--peer-listen", "127.0.0.1:0", "--join", &procs[1].url()])
        .arg("--data-dir")
        .arg(dir4.path())
        .args(certs.flags(4))
        .env_remove("SWITCHYARD_JOIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--join-token"), "{text}");
}

/// The `switchyard_peer_stream_appends_total` a node at `url` reports on `/metrics`.
async fn stream_appends(url: &str, certs: Option<&Certs>) -> u64 {
    let http = match certs {
        Some(c) => reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(switchyard_tls::client_config(&[&c.ca()], None).unwrap())
            .build()
            .unwrap(),
        None => reqwest::Client::new(),
    };
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("switchyard_peer_stream_appends_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Three real processes (over mutual TLS with `certs`): SIGKILL the leader under write load;
/// writes resume, every acknowledged write is on the survivors and on the restarted node.
/// Returns the running nodes.
async fn kill_the_leader_under_load(certs: Option<&Certs>) -> Vec<Proc> {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let any = "127.0.0.1:0";
    let flags = |id: u64| certs.map(|c| c.flags(id)).unwrap_or_default();
    let client = |url: String| match certs {
        Some(c) => c.client(url),
        None => Client::new(url),
    };
    let mut procs = vec![spawn_with(1, dirs[0].path(), any, any, None, &flags(1))];
    let first = procs[0].url();
    for id in 2..=3u64 {
        procs.push(spawn_with(
            id,
            dirs[id as usize - 1].path(),
            any,
            any,
            Some(&first),
            &flags(id),
        ));
    }
    // Every node sees three voters, a leader and no change under way (before a kill, a member
    // that has not seen the final configuration could not help elect a new leader).
    let single: Vec<Client> = procs.iter().map(|p| client(p.url())).collect();
    until(30, "three voters on every node", || async {
        let mut all = true;
        for c in &single {
            all &= c.cluster().await.is_ok_and(|c| {
                c.leader.is_some()
                    && !c.changing
                    && c.members.iter().filter(|m| m.voter).count() == 3
            });
        }
        all
    })
    .await;

    // A write through each node, then the same reads from each node.
    for (i, c) in single.iter().enumerate() {
        c.open_account(&format!("via-{}", i + 1), None)
            .await
            .unwrap();
    }
    let expected = single[0].accounts().await.unwrap();
    assert_eq!(expected.len(), 3);
    for c in &single {
        assert_eq!(c.accounts().await.unwrap(), expected);
    }

    // Write load through a client that knows every node.
    let urls: Vec<String> = procs.iter().map(Proc::url).collect();
    let all = client(urls.join(","));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, acked, stop) = (all.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("w{w}-{i}");
                    i += 1;
                    // An error may or may not have been applied; only acks are checked.
                    if c.open_account(&id, None).await.is_ok() {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    let count = || acked.lock().unwrap().len();
    until(30, "writes before the kill", || async { count() >= 100 }).await;

    // SIGKILL the leader.
    let leader = all.cluster().await.unwrap().leader.unwrap();
    // Until now the leader replicated over pipelined peer streams: each follower counted the
    // appends it received on them.
    for (i, p) in procs.iter().enumerate() {
        if i as u64 + 1 != leader {
            let n = stream_appends(&p.url(), certs).await;
            assert!(n > 0, "node {} received no append on a peer stream", i + 1);
        }
    }
    let victim = leader as usize - 1;
    procs[victim].child.kill().unwrap();
    procs[victim].child.wait().unwrap();
    let at_kill = count();
    until(60, "writes resuming under a new leader", || async {
        count() >= at_kill + 100
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged write is on both survivors.
    for (i, c) in single.iter().enumerate() {
        if i == victim {
            continue;
        }
        let have = account_ids(c).await;
        let missing: Vec<&String> = acked.iter().filter(|a| !have.contains(a)).collect();
        assert!(missing.is_empty(), "node {} lacks {missing:?}", i + 1);
    }
    let new_leader = single[(victim + 1) % 3].cluster().await.unwrap().leader;
    assert!(new_leader.is_some_and(|l| l != leader));

    // The killed node restarts on its addresses, catches up, and has them too.
    let (api, peer) = (procs[victim].api.clone(), procs[victim].peer.clone());
    procs[victim] = spawn_with(
        leader,
        dirs[victim].path(),
        &api,
        &peer,
        None,
        &flags(leader),
    );
    let restarted = client(procs[victim].url());
    until(30, "the restarted node rejoins", || async {
        restarted.status().await.is_ok_and(|s| s.leader.is_some())
    })
    .await;
    let have = account_ids(&restarted).await;
    let missing: Vec<&String> = acked.iter().filter(|a| !have.contains(a)).collect();
    assert!(missing.is_empty(), "the restarted node lacks {missing:?}");
    assert_eq!(
        have,
        account_ids(&single[(victim + 1) % 3]).await,
        "the same state on every node"
    );
    procs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_starts_three_nodes_and_stops_them_on_ctrl_c() {
    let dir = TempDir::new().unwrap();
    // Ten consecutive ports per node from a base unlikely to collide with other tests, below
    // the kernel's ephemeral range (32768 and up) that port-0 listeners and connections use.
    let base = 20_000 + (std::process::id() % 1270) as u16 * 10;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev-cluster", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--",
            "--heartbeat-ms",
            "100",
            "--election-timeout-ms",
            "1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Ctrl-C stops every node");
            lines.push(line);
            if done {
                let _ = tx.send(lines.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dev-cluster prints the cluster");
    let text = printed.join("\n");
    for i in 0..3u16 {
        assert!(
            text.contains(&format!("127.0.0.1:{}", base + 10 * i)),
            "{text}"
        );
    }
    let urls: Vec<String> = (0..3u16)
        .map(|i| format!("http://127.0.0.1:{}", base + 10 * i))
        .collect();
    let c = Client::new(urls.join(","));
    let cluster = c.cluster().await.unwrap();
    assert_eq!(cluster.members.iter().filter(|m| m.voter).count(), 3);
    c.open_account("dev", None).await.unwrap();
    for u in &urls {
        assert_eq!(Client::new(u).account("dev").await.unwrap().balance, 0);
    }

    // Ctrl-C (SIGINT) stops every node and the command exits 0.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    for u in &urls {
        assert!(
            Client::new(u)
                .with_failover(Duration::ZERO)
                .health()
                .await
                .is_err(),
            "{u} still answers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_the_node() {
    let (a, b) = (Certs::new(), Certs::new());
    let live = TempDir::new().unwrap();
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    let install = |c: &Certs| {
        std::fs::copy(c.dir.path().join("node1.pem"), &cert).unwrap();
        std::fs::copy(c.dir.path().join("node1-key.pem"), &key).unwrap();
    };
    install(&a);
    let data = TempDir::new().unwrap();
    let flags: Vec<std::ffi::OsString> = vec![
        "--tls-cert".into(),
        cert.clone().into(),
        "--tls-key".into(),
        key.clone().into(),
    ];
    let any = "127.0.0.1:0";
    let proc = spawn_with(1, data.path(), any, any, None, &flags);
    // A new client each time: a pooled connection would keep the old certificate.
    let trusts = |c: &Certs| {
        let url = proc.url();
        // No failover: a refused handshake is an answer here.
        let client = c.client(url).with_failover(Duration::ZERO);
        async move { client.status().await.is_ok() }
    };
    common::ready(&a.client(proc.url())).await;
    assert!(!trusts(&b).await, "B's CA is not trusted yet");
    a.client(proc.url())
        .open_account("before-reload", None)
        .await
        .unwrap();

    // New files, SIGHUP: new connections get the new certificate; the node keeps running.
    install(&b);
    let pid = proc.child.id().to_string();
    let ok = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(ok.success());
    until(10, "the new certificate is served", || trusts(&b)).await;
    assert!(!trusts(&a).await, "the old certificate is gone");
    let after = b.client(proc.url());
    assert!(after.account("before-reload").await.is_ok(), "state kept");
    assert_eq!(
        after.status().await.unwrap().node_id,
        1,
        "the same node answers"
    );
}

/// `cluster status` listed a SIGKILLed node as a healthy voter: it had no reachability or lag
/// per member. Now the leader's view says the killed member is unreachable, how long ago it
/// last answered, and how far behind it falls, also when a follower is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_shows_a_sigkilled_member_unreachable_and_lagging() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let any = "127.0.0.1:0";
    let mut procs = vec![spawn_with(1, dirs[0].path(), any, any, None, &[])];
    let first = procs[0].url();
    for id in 2..=3u64 {
        let dir = dirs[id as usize - 1].path();
        procs.push(spawn_with(id, dir, any, any, Some(&first), &[]));
    }
    let leader_client = Client::new(&first);
    until(30, "three reachable voters, seen by the leader", || async {
        leader_client.cluster().await.is_ok_and(|c| {
            c.leader == Some(1)
                && c.members.len() == 3
                && c.members
                    .iter()
                    .all(|m| m.voter && m.reachable == Some(true) && m.lag.is_some())
        })
    })
    .await;

    // Kill node 3 without warning; write so that it falls behind.
    let mut killed = procs.pop().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    for i in 0..20 {
        leader_client
            .open_account(&format!("a{i}"), None)
            .await
            .unwrap();
    }
    let status = |url: String| {
        let out = common::cli(&["cluster", "status", "-o", "json", "--server", &url], &[]);
        serde_json::from_str::<switchyard_types::Cluster>(&common::succeeded(&out)).unwrap()
    };
    // Asked through the follower (node 2): the answer is the leader's view.
    let follower = procs[1].url();
    until(10, "node 3 unreachable in cluster status", || {
        let c = status(follower.clone());
        async move {
            let m3 = c.members.iter().find(|m| m.node_id == 3).unwrap();
            c.answered_by == Some(1) && m3.reachable == Some(false)
        }
    })
    .await;
    let c = status(follower.clone());
    let m2 = c.members.iter().find(|m| m.node_id == 2).unwrap();
    let m3 = c.members.iter().find(|m| m.node_id == 3).unwrap();
    assert_eq!(m2.reachable, Some(true), "{c:?}");
    assert!(m3.lag.unwrap() >= 20, "node 3 misses the 20 writes: {c:?}");
    assert!(m3.last_contact.unwrap() > 0.3, "{c:?}");

    // The table says it to a person.
    let table = common::succeeded(&common::cli(
        &["cluster", "status", "--server", &first],
        &[],
    ));
    let row3 = table
        .lines()
        .find(|l| l.starts_with("3 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row3.contains(" NO "), "{table}");
}
