//! The command line: `serve`, plus client commands that talk to a running server.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_client::{Client, WatchItem};

use crate::output::{self, Format};
use crate::serve::{ServeArgs, serve};

const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// switchyard: a control-plane server for long-running stateful work.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: Cmd,
}

/// The options of client commands: where the server is, how to authenticate, how to print.
/// They go before or after the command's name (`switchyard -o json bank list`,
/// `switchyard bank list -o json`); commands that are not clients refuse them.
#[derive(Debug, clap::Args)]
pub struct ClientOpts {
    /// Server to talk to; several comma-separated URLs for a cluster (a request moves to the
    /// next one when a node is down or has no leader). Without a scheme: http://.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SERVER",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// Bearer token for a server with auth on.
    #[arg(long, global = true, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for https:// servers besides the system's roots;
    /// `switchyard certs init` makes one.
    #[arg(long, global = true, env = "SWITCHYARD_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Output: table (for people), wide (more columns), json or yaml (for scripts).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t)]
    pub output: Format,
}

/// The client options each command that is not a client leaves out: `(command, options)`.
/// `serve` reads `--ca-cert` (it trusts that CA when it joins a cluster).
const NOT_READ: &[(&str, &[&str])] = &[
    ("serve", &["server", "token", "output"]),
    ("certs", &["server", "token", "ca_cert", "output"]),
    ("dev-cluster", &["server", "token", "ca_cert", "output"]),
    ("openapi", &["server", "token", "ca_cert"]),
    ("worker", &["output"]),
    ("tap", &["output"]),
];

/// The command line, with each command's `--help` listing only the options it reads: the
/// client options are global, so commands that do not read one get a hidden option of the
/// same name in its place, which refuses any value.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Args::command();
    for (name, ids) in NOT_READ {
        cmd = cmd.mut_subcommand(*name, |mut sub| {
            for id in *ids {
                // Built once per process: the leak is a few bytes that clap keeps anyway.
                let flag: &'static str = id.replace('_', "-").leak();
                let msg =
                    format!("`{name}` does not read --{flag}: it is an option of client commands");
                let mut arg = clap::Arg::new(*id)
                    .long(flag)
                    .hide(true)
                    .value_parser(move |_: &str| Err::<String, _>(msg.clone()));
                if *id == "output" {
                    arg = arg.short('o');
                }
                sub = sub.arg(arg);
            }
            sub
        });
    }
    cmd
}

/// Parse the command line (see [`command`]). A client option given before a command that
/// does not read it is refused too.
pub fn parse() -> Args {
    use clap::FromArgMatches;
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    if let Some((name, _)) = matches.subcommand()
        && let Some((_, ids)) = NOT_READ.iter().find(|(n, _)| *n == name)
    {
        for id in *ids {
            if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                cmd.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "`{name}` does not read --{}: it is an option of client commands",
                        id.replace('_', "-")
                    ),
                )
                .exit();
            }
        }
    }
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        /// The same as `-o json`.
        #[arg(long, hide = true)]
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

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = args.client;
    let out = opts.output;
    // A person waits for an answer: 5 s covers an election (a leader is elected within
    // about two election timeouts), not a server that is not there.
    let client = Client::new(&opts.server).with_failover(std::time::Duration::from_secs(5));
    let client = match &opts.token {
        Some(t) => client.with_token(t),
        None => client,
    };
    let client = match &opts.ca_cert {
        Some(ca) => client
            .with_ca_cert(ca)
            .map_err(|e| anyhow::anyhow!("--ca-cert: {e}"))?,
        None => client,
    };
    let ctx = || format!("talking to {}", opts.server);
    match args.command {
        Cmd::Serve(mut s) => {
            s.ca_cert = opts.ca_cert.clone();
            serve(*s).await?
        }
        Cmd::Certs(c) => certs(c)?,
        Cmd::Device(d) => return device(&client, out, d).await.with_context(ctx),
        Cmd::Tap(t) => {
            let defaulted =
                opts.server == DEFAULT_SERVER && std::env::var_os("SWITCHYARD_SERVER").is_none();
            let secure = crate::tap::Secure {
                on: opts.server.starts_with("https://") || opts.server.starts_with("wss://"),
                tls: client.tls().cloned(),
            };
            crate::tap::run(
                t,
                crate::tap::server_addr(&opts.server, defaulted),
                opts.token.clone(),
                secure,
            )
            .await?
        }
        Cmd::Cluster(c) => {
            return crate::cluster::cluster(&client, out, c)
                .await
                .with_context(ctx);
        }
        Cmd::DevCluster(d) => return crate::cluster::dev_cluster(d).await,
        Cmd::Worker(w) => {
            crate::jobs::worker(&opts.server, opts.token.clone(), opts.ca_cert.clone(), w).await?
        }
        Cmd::Jobs(j) => return crate::jobs::jobs(&client, out, j).await.with_context(ctx),
        Cmd::Deploy(d) => {
            return crate::deploy::deploy(&client, out, d)
                .await
                .with_context(ctx);
        }
        Cmd::Run(r) => {
            return crate::run::run(&client, opts.token.clone(), out, r)
                .await
                .with_context(ctx);
        }
        Cmd::Logs(l) => return crate::jobs::logs(&client, out, l).await.with_context(ctx),
        Cmd::Agents { json } => {
            let out = if json { Format::Json } else { out };
            return crate::jobs::agents(&client, out).await.with_context(ctx);
        }
        Cmd::Openapi => {
            let doc = switchyard_server::api::openapi();
            let out = if out.machine() { out } else { Format::Json };
            out.print(&doc, |_| String::new())?
        }
        Cmd::Status => {
            let s = client.status().await.with_context(ctx)?;
            out.print(&s, |_| status_summary(&s))?
        }
        Cmd::Watch {
            prefix,
            from,
            bookmarks,
        } => {
            let mut w = client.watch(&prefix, from).await.with_context(ctx)?;
            loop {
                match w.next().await.with_context(ctx)? {
                    WatchItem::Event(e) => out.print_item(&e, |_| {
                        let kind = e.event.get("kind").and_then(|k| k.as_str()).unwrap_or("-");
                        format!("{:>8}  {}  {kind}  {}", e.revision, e.topic, e.event)
                    })?,
                    WatchItem::Bookmark(r) if bookmarks => out
                        .print_item(&serde_json::json!({"bookmark": r}), |_| {
                            format!("{r:>8}  (bookmark: every event up to here was sent)")
                        })?,
                    WatchItem::Bookmark(_) => {}
                }
            }
        }
        Cmd::Bank(b) => bank(&client, out, b).await.with_context(ctx)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchyard status`: the node's view, for a person.
fn status_summary(s: &switchyard_types::Status) -> String {
    let members: Vec<String> = s
        .members
        .iter()
        .map(|m| format!("{}{}", m.node_id, if m.voter { "" } else { " (learner)" }))
        .collect();
    output::summary(&[
        ("Node", s.node_id.to_string()),
        ("Role", s.role.clone()),
        (
            "Leader",
            match s.leader {
                Some(l) if l == s.node_id => format!("{l} (this node)"),
                Some(l) => l.to_string(),
                None => "none (an election is due)".into(),
            },
        ),
        ("Term", s.term.to_string()),
        ("Applied index", s.applied_index.to_string()),
        ("Revision", s.revision.to_string()),
        (
            "Watch from",
            format!("revision {} or later", s.compact_revision),
        ),
        ("Data format", s.format.to_string()),
        ("Members", members.join(", ")),
    ])
}

fn accounts_table(accounts: &[&switchyard_types::Account]) -> String {
    output::table(
        &["id", "balance", "revision"],
        accounts
            .iter()
            .map(|a| vec![a.id.clone(), a.balance.to_string(), a.revision.to_string()]),
    )
}

async fn bank(client: &Client, out: Format, cmd: BankCmd) -> anyhow::Result<()> {
    let account = |a: switchyard_types::Account| out.print(&a, |_| accounts_table(&[&a]));
    match cmd {
        BankCmd::Open { id } => account(client.open_account(&id, None).await?),
        BankCmd::Credit {
            id,
            amount,
            idempotency_key,
        } => account(
            client
                .credit(&id, amount, idempotency_key.as_deref())
                .await?,
        ),
        BankCmd::Debit {
            id,
            amount,
            idempotency_key,
        } => account(
            client
                .debit(&id, amount, idempotency_key.as_deref())
                .await?,
        ),
        BankCmd::Transfer {
            from,
            to,
            amount,
            idempotency_key,
        } => {
            let t = client
                .transfer(&from, &to, amount, idempotency_key.as_deref())
                .await?;
            out.print(&t, |_| accounts_table(&[&t.from, &t.to]))
        }
        BankCmd::Get { id } => account(client.account(&id).await?),
        BankCmd::List => {
            let list = client.accounts().await?;
            out.print(
                &switchyard_types::AccountList {
                    accounts: list.clone(),
                },
                |_| accounts_table(&list.iter().collect::<Vec<_>>()),
            )
        }
    }
}

/// A device's attributes as `name=value` words.
fn attributes(d: &switchyard_types::Device) -> String {
    d.attributes
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn devices_table(devices: &[&switchyard_types::Device], wide: bool) -> String {
    let mut headers = vec!["name", "type", "state", "status", "revision"];
    if wide {
        headers.extend(["attributes", "transition", "due"]);
    }
    output::table(
        &headers,
        devices.iter().map(|d| {
            let mut row = vec![
                d.name.clone(),
                d.type_name.clone(),
                output::opt(d.state.as_deref()),
                d.status.clone(),
                d.revision.to_string(),
            ];
            if wide {
                row.push(attributes(d));
                row.push(output::opt(d.transition.as_ref().map(|t| {
                    format!(
                        "{} #{} ({}/{})",
                        t.command,
                        t.id,
                        t.phase_index + 1,
                        t.phases
                    )
                })));
                row.push(output::opt(d.transition.as_ref().map(|t| &t.due_at)));
            }
            row
        }),
    )
}

fn device_summary(d: &switchyard_types::Device) -> String {
    let mut pairs = vec![
        ("Name", d.name.clone()),
        ("Type", d.type_name.clone()),
        ("State", output::opt(d.state.as_deref())),
        ("Attributes", attributes(d)),
        ("Status", d.status.clone()),
    ];
    if let Some(t) = &d.transition {
        pairs.push((
            "Transition",
            format!(
                "{} #{}: phase {} ({} of {}), due {}",
                t.command,
                t.id,
                t.phase,
                t.phase_index + 1,
                t.phases,
                t.due_at
            ),
        ));
    }
    pairs.push(("Revision", d.revision.to_string()));
    output::summary(&pairs)
}

/// One line of a device's progress: `NAME  STATE  STATUS  (rev N)`.
fn line(d: &switchyard_types::Device) -> String {
    format!(
        "{}  [{}]  {}  (rev {})",
        d.name,
        attributes(d),
        d.status,
        d.revision
    )
}

async fn device(client: &Client, out: Format, cmd: DeviceCmd) -> anyhow::Result<ExitCode> {
    use switchyard_client::CommandStarted;
    use switchyard_types::DeviceCommandRequest;
    let one = |d: switchyard_types::Device| out.print(&d, |wide| devices_table(&[&d], wide));
    match cmd {
        DeviceCmd::List => {
            let devices = client.devices().await?;
            out.print(
                &switchyard_types::DeviceList {
                    devices: devices.clone(),
                },
                |wide| devices_table(&devices.iter().collect::<Vec<_>>(), wide),
            )?
        }
        DeviceCmd::Get { name } => {
            let d = client.device(&name).await?;
            out.print(&d, |wide| {
                if wide {
                    devices_table(&[&d], true)
                } else {
                    device_summary(&d)
                }
            })?
        }
        DeviceCmd::Create { name, type_name } => {
            one(client.create_device(&name, &type_name).await?)?
        }
        DeviceCmd::Delete { name } => {
            client.delete_device(&name).await?;
            out.print(&serde_json::json!({"deleted": name}), |_| {
                format!("device {name} deleted\n")
            })?
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
                CommandStarted::Noop(d) => {
                    out.print(&d, |_| format!("{command}: nothing to do, {}\n", line(&d)))?
                }
                CommandStarted::Started(st) if wait => {
                    out.print_item(&st.device, |_| line(&st.device))?;
                    let id = st.transition.id;
                    loop {
                        if let WatchItem::Event(e) = w.next().await? {
                            let d: switchyard_types::Device =
                                serde_json::from_value(e.event["device"].clone())?;
                            if d.revision <= st.device.revision {
                                continue; // the start itself, already printed
                            }
                            out.print_item(&d, |_| line(&d))?;
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
                CommandStarted::Started(st) => out.print(&st, |_| {
                    let t = &st.transition;
                    format!(
                        "{name}: {command} started (transition {}, {} phase(s), due {}); \
                         the device is busy until then\n",
                        t.id, t.phases, t.due_at
                    )
                })?,
            }
        }
        DeviceCmd::Abort { name } => one(client.abort_device(&name).await?)?,
        DeviceCmd::Reset { name } => one(client.reset_device(&name).await?)?,
        DeviceCmd::Watch { name } => {
            let mut w = client.watch(&format!("devices/{name}"), None).await?;
            let d = client.device(&name).await?;
            out.print_item(&d, |_| format!("now {}", line(&d)))?;
            loop {
                if let WatchItem::Event(e) = w.next().await? {
                    let d: switchyard_types::Device =
                        serde_json::from_value(e.event["device"].clone())?;
                    out.print_item(&e, |_| {
                        format!("{} {}", e.event["kind"].as_str().unwrap_or("?"), line(&d))
                    })?;
                }
            }
        }
        DeviceCmd::History { name, limit } => {
            let h = client.device_history(&name, limit, None).await?;
            out.print(&h, |wide| {
                let mut headers = vec!["id", "command", "outcome", "started", "finished"];
                if wide {
                    headers.extend(["from", "to", "revision"]);
                }
                let words = |a: &switchyard_types::Attributes| {
                    a.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                output::table(
                    &headers,
                    h.transitions.iter().map(|t| {
                        let mut row = vec![
                            t.id.to_string(),
                            t.command.clone(),
                            t.outcome.clone(),
                            t.started_at.clone(),
                            t.finished_at.clone(),
                        ];
                        if wide {
                            row.extend([words(&t.from), words(&t.to), t.revision.to_string()]);
                        }
                        row
                    }),
                )
            })?
        }
        DeviceCmd::Types => {
            let v: serde_json::Value = client
                .request(reqwest::Method::GET, "/v1/device-types", None::<&()>, None)
                .await?;
            out.print(&v, |wide| {
                let mut headers = vec!["name", "commands"];
                if wide {
                    headers.push("attributes");
                }
                headers.push("description");
                let keys = |v: &serde_json::Value| {
                    v.as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                output::table(
                    &headers,
                    v["types"].as_array().into_iter().flatten().map(|t| {
                        let mut row = vec![
                            t["name"].as_str().unwrap_or("?").to_string(),
                            keys(&t["commands"]),
                        ];
                        if wide {
                            row.push(keys(&t["attributes"]));
                        }
                        row.push(t["description"].as_str().unwrap_or("").to_string());
                        row
                    }),
                )
            })?
        }
    }
    Ok(ExitCode::SUCCESS)
}
