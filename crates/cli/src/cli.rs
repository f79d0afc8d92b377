//! The command line: `serve`, plus client commands that talk to a running server.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_client::{Client, WatchItem};

use crate::serve::{ServeArgs, serve};

const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// switchyard: a control-plane server for long-running stateful work.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
pub struct Args {
    /// Server to talk to (client commands); several comma-separated URLs for a cluster (a
    /// request moves to the next one when a node is down or has no leader).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SERVER",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// Bearer token for a server with auth on (client commands).
    #[arg(long, global = true, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for https:// servers besides the system's roots (client
    /// commands, the worker, tap); `switchyard certs init` makes one.
    #[arg(long, global = true, env = "SWITCHYARD_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node (single node on ./data by default).
    Serve(Box<ServeArgs>),
    /// Show the node's status: role, term, leader, applied index, revision.
    Status,
    /// Print events as they happen (one JSON object per line).
    Watch {
        /// Only topics starting with this prefix, e.g. `bank/`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Resume after this revision instead of starting now.
        #[arg(long = "from")]
        from: Option<u64>,
        /// Also print bookmarks.
        #[arg(long)]
        bookmarks: bool,
    },
    /// Bank accounts: open, credit, debit, transfer, get, list.
    #[command(subcommand)]
    Bank(BankCmd),
    /// Devices: timed state machines (types switch, mv, and those from type files).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Benchmarks run side by side with peer systems on this machine.
    Bench(crate::bench::BenchArgs),
    /// Print the OpenAPI document of the HTTP API (no server needed).
    Openapi,
    /// A beer tap (seed 001): pours at an interval and prints what the server announces.
    Tap(crate::tap::TapArgs),
    /// Cluster membership: status, add, remove, transfer-leader.
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCmd),
    /// Certificates for a cluster with none: a CA, then one certificate per node.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Run a local cluster of N nodes on loopback (separate data dirs) until Ctrl-C.
    DevCluster(crate::cluster::DevClusterArgs),
    /// Run jobs from a queue on this machine (an agent): `--server URL[,URL...]`.
    Worker(crate::jobs::WorkerArgs),
    /// Jobs: submit, list, get, cancel, retry.
    #[command(subcommand)]
    Jobs(crate::jobs::JobsCmd),
    /// A job's output; -f follows it until the job ends.
    Logs(crate::jobs::LogsArgs),
    /// Deployments: create, up, down, snapshot, run, list, get, history, delete.
    #[command(subcommand)]
    Deploy(crate::deploy::DeployCmd),
    /// Run a test matrix (`--matrix FILE`): one job per cell, live progress, failures as they
    /// happen, a summary, JUnit XML; exits non-zero if any cell failed. Also cancel, list, get.
    Run(crate::run::RunArgs),
    /// The agents (worker hosts): status, host facts, jobs held.
    Agents {
        /// Print the full JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Write a new CA (ca.pem, ca-key.pem) in --dir; keep ca-key.pem private.
    Init {
        #[arg(long, default_value = "certs")]
        dir: std::path::PathBuf,
    },
    /// Write NAME.pem and NAME-key.pem, signed by the CA in --dir, for serving (--tls-cert,
    /// --peer-cert) and for presenting to peers.
    Node {
        name: String,
        /// An IP address clients reach the node at; repeatable.
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// A DNS name clients reach the node at; repeatable.
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long, default_value = "certs")]
        dir: std::path::PathBuf,
    },
}

fn certs(cmd: CertsCmd) -> anyhow::Result<()> {
    match cmd {
        CertsCmd::Init { dir } => {
            let (cert, key) = switchyard_tls::certs::init(&dir)?;
            println!(
                "CA certificate {} (give it to clients: --ca-cert, --peer-ca)",
                cert.display()
            );
            println!("CA key         {} (keep it private)", key.display());
        }
        CertsCmd::Node {
            name,
            ips,
            dns,
            dir,
        } => {
            let (cert, key) = switchyard_tls::certs::node(&dir, &name, &ips, &dns)?;
            println!("certificate {}", cert.display());
            println!("key         {}", key.display());
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum BankCmd {
    /// Open an account with balance 0.
    Open { id: String },
    /// Add an amount (minor units) to an account.
    Credit {
        id: String,
        amount: u64,
        /// Make a retry safe: the same key returns the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Take an amount from an account (refused if the balance is too low).
    Debit {
        id: String,
        amount: u64,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Move an amount between two accounts, atomically.
    Transfer {
        from: String,
        to: String,
        amount: u64,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one account.
    Get { id: String },
    /// List every account.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// List devices.
    List,
    /// Show one device.
    Get { name: String },
    /// Create a device.
    Create {
        name: String,
        /// Device type, e.g. switch or mv (see `device types`).
        #[arg(long = "type")]
        type_name: String,
    },
    /// Delete a device (refused while a transition is in flight).
    Delete { name: String },
    /// Run a command; with --wait, follow its phases until it ends.
    Cmd {
        name: String,
        command: String,
        /// Seconds for the phases that take their duration from the request.
        #[arg(long)]
        duration: Option<f64>,
        /// Arguments as JSON, e.g. '{"config": {"delay": 2}}'.
        #[arg(long)]
        args: Option<String>,
        /// Follow the transition until it ends, printing each phase.
        #[arg(long)]
        wait: bool,
    },
    /// Abort the transition in flight.
    Abort { name: String },
    /// Back to the initial state, aborting anything in flight.
    Reset { name: String },
    /// Print the device's changes as they happen.
    Watch { name: String },
    /// Finished transitions, newest first.
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// List device types.
    Types,
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = match &args.token {
        Some(t) => Client::new(&args.server).with_token(t),
        None => Client::new(&args.server),
    };
    let client = match &args.ca_cert {
        Some(ca) => client
            .with_ca_cert(ca)
            .map_err(|e| anyhow::anyhow!("--ca-cert: {e}"))?,
        None => client,
    };
    let ctx = || format!("talking to {}", args.server);
    match args.command {
        Cmd::Serve(mut s) => {
            s.ca_cert = args.ca_cert.clone();
            serve(*s).await?
        }
        Cmd::Bench(b) => crate::bench::run(b).await?,
        Cmd::Certs(c) => certs(c)?,
        Cmd::Device(d) => return device(&client, d).await.with_context(ctx),
        Cmd::Tap(t) => {
            let defaulted =
                args.server == DEFAULT_SERVER && std::env::var_os("SWITCHYARD_SERVER").is_none();
            let secure = crate::tap::Secure {
                on: args.server.starts_with("https://") || args.server.starts_with("wss://"),
                tls: client.tls().cloned(),
            };
            crate::tap::run(
                t,
                crate::tap::server_addr(&args.server, defaulted),
                args.token.clone(),
                secure,
            )
            .await?
        }
        Cmd::Cluster(c) => return crate::cluster::cluster(&client, c).await.with_context(ctx),
        Cmd::DevCluster(d) => return crate::cluster::dev_cluster(d).await,
        Cmd::Worker(w) => {
            crate::jobs::worker(&args.server, args.token.clone(), args.ca_cert.clone(), w).await?
        }
        Cmd::Jobs(j) => return crate::jobs::jobs(&client, j).await.with_context(ctx),
        Cmd::Deploy(d) => return crate::deploy::deploy(&client, d).await.with_context(ctx),
        Cmd::Run(r) => {
            return crate::run::run(&client, args.token.clone(), r)
                .await
                .with_context(ctx);
        }
        Cmd::Logs(l) => return crate::jobs::logs(&client, l).await.with_context(ctx),
        Cmd::Agents { json } => return crate::jobs::agents(&client, json).await.with_context(ctx),
        Cmd::Openapi => println!("{}", switchyard_server::api::openapi().to_pretty_json()?),
        Cmd::Status => print(&client.status().await.with_context(ctx)?)?,
        Cmd::Watch {
            prefix,
            from,
            bookmarks,
        } => {
            let mut w = client.watch(&prefix, from).await.with_context(ctx)?;
            loop {
                match w.next().await.with_context(ctx)? {
                    WatchItem::Event(e) => println!("{}", serde_json::to_string(&e)?),
                    WatchItem::Bookmark(r) if bookmarks => {
                        println!("{}", serde_json::json!({"bookmark": r}))
                    }
                    WatchItem::Bookmark(_) => {}
                }
            }
        }
        Cmd::Bank(b) => match b {
            BankCmd::Open { id } => {
                print(&client.open_account(&id, None).await.with_context(ctx)?)?
            }
            BankCmd::Credit {
                id,
                amount,
                idempotency_key,
            } => print(
                &client
                    .credit(&id, amount, idempotency_key.as_deref())
                    .await
                    .with_context(ctx)?,
            )?,
            BankCmd::Debit {
                id,
                amount,
                idempotency_key,
            } => print(
                &client
                    .debit(&id, amount, idempotency_key.as_deref())
                    .await
                    .with_context(ctx)?,
            )?,
            BankCmd::Transfer {
                from,
                to,
                amount,
                idempotency_key,
            } => print(
                &client
                    .transfer(&from, &to, amount, idempotency_key.as_deref())
                    .await
                    .with_context(ctx)?,
            )?,
            BankCmd::Get { id } => print(&client.account(&id).await.with_context(ctx)?)?,
            BankCmd::List => print(&client.accounts().await.with_context(ctx)?)?,
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn line(d: &switchyard_types::Device) -> String {
    let attrs: Vec<String> = d
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
        .collect();
    format!(
        "{} [{}] {} (rev {})",
        d.name,
        attrs.join(" "),
        d.status,
        d.revision
    )
}

async fn device(client: &Client, cmd: DeviceCmd) -> anyhow::Result<ExitCode> {
    use switchyard_client::CommandStarted;
    use switchyard_types::DeviceCommandRequest;
    match cmd {
        DeviceCmd::List => {
            for d in client.devices().await? {
                println!("{}", line(&d));
            }
        }
        DeviceCmd::Get { name } => print(&client.device(&name).await?)?,
        DeviceCmd::Create { name, type_name } => {
            print(&client.create_device(&name, &type_name).await?)?
        }
        DeviceCmd::Delete { name } => {
            client.delete_device(&name).await?;
            println!("deleted {name}");
        }
        DeviceCmd::Cmd {
            name,
            command,
            duration,
            args,
            wait,
        } => {
            let args = match args {
                Some(a) => Some(serde_json::from_str(&a).context("--args must be JSON")?),
                None => None,
            };
            let req = DeviceCommandRequest {
                duration,
                args,
                ..Default::default()
            };
            // Watch first, so no phase is missed between starting and following.
            let mut w = client.watch(&format!("devices/{name}"), None).await?;
            match client.device_command(&name, &command, &req).await? {
                CommandStarted::Noop(d) => println!("no-op: {}", line(&d)),
                CommandStarted::Started(st) if wait => {
                    println!("{}", line(&st.device));
                    let id = st.transition.id;
                    loop {
                        if let WatchItem::Event(e) = w.next().await? {
                            let d: switchyard_types::Device =
                                serde_json::from_value(e.event["device"].clone())?;
                            if d.revision <= st.device.revision {
                                continue; // the start itself, already printed
                            }
                            println!("{}", line(&d));
                            if d.transition.as_ref().is_none_or(|t| t.id != id) {
                                let aborted =
                                    e.event["kind"] == "aborted" || e.event["kind"] == "reset";
                                return Ok(if aborted {
                                    ExitCode::FAILURE
                                } else {
                                    ExitCode::SUCCESS
                                });
                            }
                        }
                    }
                }
                CommandStarted::Started(st) => print(&st)?,
            }
        }
        DeviceCmd::Abort { name } => println!("{}", line(&client.abort_device(&name).await?)),
        DeviceCmd::Reset { name } => println!("{}", line(&client.reset_device(&name).await?)),
        DeviceCmd::Watch { name } => {
            let mut w = client.watch(&format!("devices/{name}"), None).await?;
            println!("{}", line(&client.device(&name).await?));
            loop {
                if let WatchItem::Event(e) = w.next().await? {
                    let d: switchyard_types::Device =
                        serde_json::from_value(e.event["device"].clone())?;
                    println!("{} {}", e.event["kind"].as_str().unwrap_or("?"), line(&d));
                }
            }
        }
        DeviceCmd::History { name, limit } => {
            for t in client.device_history(&name, limit, None).await?.transitions {
                println!(
                    "{} {} {} {} -> {}",
                    t.id, t.command, t.outcome, t.started_at, t.finished_at
                );
            }
        }
        DeviceCmd::Types => {
            let v: serde_json::Value = client
                .request(reqwest::Method::GET, "/v1/device-types", None::<&()>, None)
                .await?;
            for t in v["types"].as_array().into_iter().flatten() {
                let cmds: Vec<&str> = t["commands"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str())
                    .collect();
                println!(
                    "{}: {} (commands: {})",
                    t["name"].as_str().unwrap_or("?"),
                    t["description"].as_str().unwrap_or(""),
                    cmds.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
