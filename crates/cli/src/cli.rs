//! The command line: `serve`, plus client commands that talk to a running server.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_client::{Client, WatchItem};

use crate::serve::{ServeArgs, serve};

/// switchyard: a control-plane server for long-running stateful work.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
pub struct Args {
    /// Server to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
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
    /// Benchmarks run side by side with peer systems on this machine.
    Bench(crate::bench::BenchArgs),
    /// Print the OpenAPI document of the HTTP API (no server needed).
    Openapi,
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

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server);
    let ctx = || format!("talking to {}", args.server);
    match args.command {
        Cmd::Serve(s) => serve(*s).await?,
        Cmd::Bench(b) => crate::bench::run(b).await?,
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
