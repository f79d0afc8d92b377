//! `switchyard deploy ...`: deployments and their actions, with the action's log streamed to
//! the terminal as the original TestbedOS client does.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use switchyard_client::Client;
use switchyard_types::CreateDeployment;

use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum DeployCmd {
    /// Create a deployment.
    Create {
        name: String,
        /// Action template, NAME='["argv", "{name}", "{args}"]' (JSON array; repeatable); these
        /// override the server's [actions.NAME] defaults.
        #[arg(long = "action")]
        actions: Vec<String>,
        /// Project folder ({dir}, and the actions' working directory).
        #[arg(long)]
        dir: Option<String>,
        #[arg(long, default_value = "default")]
        queue: String,
        /// Labels a worker must have to run its actions, KEY=VALUE (repeatable).
        #[arg(long)]
        label: Vec<String>,
        /// Seconds an action may run.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Bring a deployment up, streaming the action's log; non-zero exit on failure.
    Up { name: String, args: Vec<String> },
    /// Bring it down.
    Down { name: String, args: Vec<String> },
    /// Snapshot it.
    Snapshot { name: String, args: Vec<String> },
    /// Run any action of it.
    Run {
        name: String,
        action: String,
        args: Vec<String>,
    },
    /// List deployments.
    List,
    /// Show one deployment (JSON).
    Get { name: String },
    /// Its actions, oldest first.
    History { name: String },
    /// Delete it (refused while an action runs).
    Delete { name: String },
    /// Set its state by hand, e.g. back to down after a failure (refused while an action runs).
    Reset {
        name: String,
        /// up, down or failed.
        #[arg(long, default_value = "down")]
        state: String,
    },
}

fn labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("--label: expected KEY=VALUE; got {kv:?}"),
        })
        .collect()
}

fn deployments_table(list: &[&switchyard_types::Deployment], wide: bool) -> String {
    let mut headers = vec!["name", "state", "action"];
    if wide {
        headers.extend(["queue", "dir", "revision"]);
    }
    output::table(
        &headers,
        list.iter().map(|d| {
            let mut row = vec![
                d.name.clone(),
                d.state.clone(),
                output::opt(
                    d.action
                        .as_ref()
                        .map(|a| format!("{} #{} (job {})", a.action, a.action_id, a.job_id)),
                ),
            ];
            if wide {
                row.extend([
                    d.queue.clone(),
                    output::opt(d.dir.as_deref()),
                    d.revision.to_string(),
                ]);
            }
            row
        }),
    )
}

pub async fn deploy(client: &Client, out: Format, cmd: DeployCmd) -> anyhow::Result<ExitCode> {
    let one =
        |d: switchyard_types::Deployment| out.print(&d, |wide| deployments_table(&[&d], wide));
    let (name, action, args) = match cmd {
        DeployCmd::Create {
            name,
            actions,
            dir,
            queue,
            label,
            timeout,
        } => {
            let mut templates = BTreeMap::new();
            for a in &actions {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("--action: expected NAME=JSON_ARRAY; got {a:?}"))?;
                let argv: Vec<String> = serde_json::from_str(v)
                    .with_context(|| format!("--action {k}: not a JSON array of strings"))?;
                templates.insert(k.to_string(), argv);
            }
            let d = client
                .create_deployment(&CreateDeployment {
                    name,
                    actions: templates,
                    dir,
                    queue,
                    labels: labels(&label)?,
                    timeout,
                    env: BTreeMap::new(),
                })
                .await?;
            one(d)?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::List => {
            let list = switchyard_types::DeploymentList {
                deployments: client.deployments().await?,
            };
            out.print(&list, |wide| {
                deployments_table(&list.deployments.iter().collect::<Vec<_>>(), wide)
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::Get { name } => {
            one(client.deployment(&name).await?)?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::History { name } => {
            let list = switchyard_types::ActionList {
                actions: client.deployment_actions(&name).await?,
            };
            out.print(&list, |wide| {
                let mut headers = vec!["id", "action", "state", "exit", "started", "finished"];
                if wide {
                    headers.extend(["job", "args"]);
                }
                output::table(
                    &headers,
                    list.actions.iter().map(|a| {
                        let mut row = vec![
                            a.action_id.to_string(),
                            a.action.clone(),
                            a.state.clone(),
                            output::opt(a.exit_code),
                            a.started_at.clone(),
                            output::opt(a.finished_at.as_deref()),
                        ];
                        if wide {
                            row.extend([a.job_id.to_string(), a.args.join(" ")]);
                        }
                        row
                    }),
                )
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::Delete { name } => {
            client.delete_deployment(&name).await?;
            out.print(&serde_json::json!({"deleted": name}), |_| {
                format!("deployment {name} deleted\n")
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::Reset { name, state } => {
            one(client.set_deployment_state(&name, &state, None).await?)?;
            return Ok(ExitCode::SUCCESS);
        }
        DeployCmd::Up { name, args } => (name, "up".to_string(), args),
        DeployCmd::Down { name, args } => (name, "down".to_string(), args),
        DeployCmd::Snapshot { name, args } => (name, "snapshot".to_string(), args),
        DeployCmd::Run { name, action, args } => (name, action, args),
    };
    let started = client.deployment_action(&name, &action, &args).await?;
    eprintln!(
        "{action} {name}: action {} (job {})",
        started.action_id, started.job_id
    );
    let mut log = client.follow_logs(started.job_id, 0);
    let activity = crate::progress::Activity::new(format!(
        "{action} {name}: running (action {}, job {})",
        started.action_id, started.job_id
    ));
    while let Some(l) = log.next().await? {
        if !out.machine() {
            activity.suspend(|| println!("{}", l.text));
        }
    }
    activity.done();
    // The log ends with the job; the deployment records the end in the same command.
    let record = client
        .deployment_actions(&name)
        .await?
        .into_iter()
        .find(|a| a.action_id == started.action_id)
        .context("the action is missing from the deployment's history")?;
    let d = client.deployment(&name).await?;
    let why = match client.job(started.job_id).await.map(|j| j.error) {
        Ok(Some(e)) => format!(": {e}"),
        _ => String::new(),
    };
    eprintln!(
        "{action} {name}: {} (exit code {}){why}; deployment {}",
        record.state,
        record.exit_code.map_or("none".into(), |c| c.to_string()),
        d.state
    );
    if out.machine() {
        out.print(&record, |_| String::new())?;
    }
    Ok(if record.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
