//! `switchyard cluster ...` (membership of a running cluster) and `switchyard dev-cluster N`
//! (a local cluster of child processes for trying things out).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchyard_client::Client;
use switchyard_server::peer_auth::{self, ClusterSecret};
use switchyard_types::Cluster;

use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Members, their roles and the leader.
    Status,
    /// Add a node by hand: it must run with an empty data dir and `--join` (so it waits to be
    /// added instead of starting its own cluster; it also asks by itself). It becomes a
    /// learner, catches up, then a voter. A node holding another cluster's history is refused.
    Add {
        node_id: u64,
        /// Its client API address, host:port.
        #[arg(long)]
        api: String,
        /// Its peer RPC address, host:port.
        #[arg(long)]
        peer: String,
        /// The cluster's join token (the request is signed with it; the token is not sent).
        #[arg(long, env = "SWITCHYARD_JOIN_TOKEN", hide_env_values = true)]
        join_token: String,
    },
    /// Print the cluster's join token, read from a member's data directory (on that member's
    /// machine: whoever can read the directory holds the cluster); `--new` prints a fresh
    /// random token instead, to give every member of a new cluster with `--join-token`.
    JoinToken {
        /// A member's data directory.
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Print a new random token (nothing is written).
        #[arg(long)]
        new: bool,
    },
    /// Remove a node from the cluster.
    Remove { node_id: u64 },
    /// Hand leadership to a voter.
    TransferLeader { node_id: u64 },
}

/// The cluster as a table: each member's role and API address and, as the leader sees them,
/// whether it answers, when it last did, and how far behind it is.
fn show(c: &Cluster, wide: bool) -> String {
    let mut headers = vec!["node", "role", "api", "reachable", "last contact", "lag"];
    if wide {
        headers.extend(["matched", "peer"]);
    }
    let mut text = format!(
        "leader: {}{}\n",
        output::opt(c.leader),
        if c.changing {
            " (membership change under way)"
        } else {
            ""
        }
    );
    let from_leader = c.leader.is_some() && c.answered_by == c.leader;
    text += &output::table(
        &headers,
        c.members.iter().map(|m| {
            let role = match (Some(m.node_id) == c.leader, m.voter) {
                (true, _) => "leader",
                (false, true) => "voter",
                (false, false) => "learner",
            };
            let mut row = vec![
                m.node_id.to_string(),
                role.to_string(),
                m.api.clone(),
                output::opt(m.reachable.map(|r| if r { "yes" } else { "NO" })),
                output::opt(m.last_contact.map(|s| format!("{:.0}ms ago", s * 1000.0))),
                output::opt(m.lag),
            ];
            if wide {
                row.extend([output::opt(m.matched_index), m.peer.clone()]);
            }
            row
        }),
    );
    if !from_leader {
        text += "(reachability and lag come from the leader, which could not be asked)\n";
    }
    text
}

pub async fn cluster(client: &Client, out: Format, cmd: ClusterCmd) -> anyhow::Result<ExitCode> {
    let c = match cmd {
        ClusterCmd::Status => client.cluster_health().await?,
        ClusterCmd::Add {
            node_id,
            api,
            peer,
            join_token,
        } => {
            let secret = ClusterSecret::parse(&join_token)
                .map_err(|e| anyhow::anyhow!("--join-token: {e}"))?;
            let sign = move |m: &str, p: &str, b: &[u8]| (peer_auth::HEADER, secret.sign(m, p, b));
            client.add_member(node_id, &api, &peer, &sign).await?
        }
        ClusterCmd::JoinToken { data_dir, new } => {
            let token = if new {
                ClusterSecret::generate()
            } else {
                ClusterSecret::load(&data_dir)
                    .map_err(anyhow::Error::msg)?
                    .with_context(|| {
                        format!(
                            "{} holds no cluster secret: is it a member's data directory \
                             (--data-dir)?",
                            data_dir.display()
                        )
                    })?
            };
            out.print(&serde_json::json!({"join_token": token.token()}), |_| {
                format!("{}\n", token.token())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        ClusterCmd::Remove { node_id } => client.remove_member(node_id).await?,
        ClusterCmd::TransferLeader { node_id } => client.transfer_leader(node_id).await?,
    };
    out.print(&c, |wide| show(&c, wide))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct DevClusterArgs {
    /// How many nodes (1 to 9).
    #[arg(default_value_t = 3)]
    pub nodes: u64,
    /// Where the nodes' data dirs (node-1, node-2, ...) and logs go.
    #[arg(long, default_value = "dev-cluster")]
    pub data_dir: PathBuf,
    /// Node i serves its API on base-port + 10*(i-1) and peer RPC on the port after it.
    #[arg(long, default_value_t = 7710)]
    pub base_port: u16,
    /// More flags passed to every `switchyard serve`, e.g. `-- --snapshot-logs 1000`.
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

/// Start N child `switchyard serve` processes, wait until they form one cluster, print their
/// addresses, and stop them all (SIGTERM) on Ctrl-C.
pub async fn dev_cluster(a: DevClusterArgs) -> anyhow::Result<ExitCode> {
    if !(1..=9).contains(&a.nodes) {
        bail!("nodes: must be 1 to 9; got {}", a.nodes);
    }
    if a.base_port as u64 + 10 * a.nodes > 65_535 {
        bail!("base_port: too high for {} nodes", a.nodes);
    }
    let exe = std::env::current_exe().context("cannot find the switchyard binary")?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    let api = |i: u64| format!("127.0.0.1:{}", a.base_port as u64 + 10 * (i - 1));
    let peer = |i: u64| format!("127.0.0.1:{}", a.base_port as u64 + 10 * (i - 1) + 1);
    // One token for every node, so the ones that join can.
    let token = ClusterSecret::generate();
    let mut children = Vec::new();
    for i in 1..=a.nodes {
        let dir = a.data_dir.join(format!("node-{i}"));
        let log_path = a.data_dir.join(format!("node-{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("serve")
            .arg("--node-id")
            .arg(i.to_string())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen")
            .arg(api(i))
            .arg("--peer-listen")
            .arg(peer(i));
        cmd.env("SWITCHYARD_JOIN_TOKEN", token.token());
        if i > 1 {
            cmd.arg("--join").arg(format!("http://{}", api(1)));
        }
        cmd.args(&a.serve_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {i}"))?;
        children.push((i, child));
    }
    let urls: Vec<String> = (1..=a.nodes)
        .map(|i| format!("http://{}", api(i)))
        .collect();
    let each: Vec<Client> = urls.iter().map(Client::new).collect();
    // Formed: every node sees all of them as voters, a leader, and no change under way.
    let settled = |c: &switchyard_types::Cluster| {
        c.leader.is_some()
            && !c.changing
            && c.members.iter().filter(|m| m.voter).count() as u64 == a.nodes
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let formed = loop {
        let mut views = Vec::new();
        for c in &each {
            views.push(c.cluster().await);
        }
        if views.iter().all(|v| v.as_ref().is_ok_and(settled))
            && let Some(Ok(c)) = views.into_iter().next()
        {
            break Some(c);
        }
        if Instant::now() > deadline {
            break None;
        }
        for (i, ch) in children.iter_mut() {
            if let Some(st) = ch.try_wait()? {
                bail!(
                    "node {i} exited ({st}) while the cluster formed; see {}",
                    a.data_dir.join(format!("node-{i}.log")).display()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(c) = formed else {
        stop(&mut children).await;
        bail!(
            "the cluster did not form within 60 s; see the logs in {}",
            a.data_dir.display()
        );
    };
    print!("{}", show(&c, true));
    println!("\nlogs: {}/node-N.log", a.data_dir.display());
    println!(
        "try:  switchyard --server {} cluster status",
        urls.join(",")
    );
    println!("Ctrl-C stops every node.");
    // A node that dies (say, killed to try failover) is reported; the others keep running.
    let mut reported = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for (i, ch) in children.iter_mut() {
            if let Ok(Some(st)) = ch.try_wait()
                && reported.insert(*i)
            {
                eprintln!("node {i} exited ({st}); the others keep running");
            }
        }
    }
    stop(&mut children).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM every child and wait for it (SIGKILL after 10 s).
async fn stop(children: &mut [(u64, tokio::process::Child)]) {
    for (_, ch) in children.iter() {
        if let Some(pid) = ch.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (i, ch) in children.iter_mut() {
        if let Ok(Some(st)) = ch.try_wait() {
            eprintln!("node {i} stopped ({st})");
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(10), ch.wait()).await {
            Ok(Ok(st)) => eprintln!("node {i} stopped ({st})"),
            _ => {
                let _ = ch.kill().await;
                eprintln!("node {i} killed after 10 s");
            }
        }
    }
}
