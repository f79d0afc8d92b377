//! Deployments on a real `switchyard serve` (its local worker runs the actions): the action id
//! comes back at once, the log streams in order and ends, the state follows the action, a
//! second action is refused while one runs, and arguments reach the program literally.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use switchyard_client::{Client, Error};
use switchyard_types::CreateDeployment;
use tempfile::TempDir;

mod common;

/// A project folder with `up.sh`: prints five lines over about a second, then each argument
/// on its own line, then waits for `release` to exist (if `HOLD` is set), then exits `CODE`.
fn project(dir: &Path) -> String {
    common::script(
        dir,
        "up.sh",
        "for i in 1 2 3 4 5; do echo \"step $i\"; sleep 0.2; done\n\
         for a in \"$@\"; do echo \"arg:$a\"; done\n\
         if [ -n \"$HOLD\" ]; then while [ ! -e release ]; do sleep 0.05; done; fi\n\
         exit ${CODE:-0}\n",
    );
    dir.to_str().unwrap().to_string()
}

fn create(name: &str, dir: &str, env: &[(&str, &str)]) -> CreateDeployment {
    CreateDeployment {
        name: name.into(),
        actions: BTreeMap::from([(
            "up".to_string(),
            vec!["./up.sh".to_string(), "{name}".into(), "{args}".into()],
        )]),
        dir: Some(dir.into()),
        queue: "default".into(),
        labels: BTreeMap::new(),
        timeout: Some(60),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Follow the action's job log to its end: every line, and the job's final status.
async fn follow(client: &Client, job: u64) -> (Vec<String>, String) {
    let mut f = client.follow_logs(job, 0);
    let mut lines = Vec::new();
    common::within(60, "the action's log to end", async {
        while let Some(l) = f.next().await.unwrap() {
            lines.push(l.text);
        }
    })
    .await;
    (lines, f.status().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_streams_its_log_and_the_state_follows_its_end() {
    let data = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let dir = project(work.path());
    let server = common::serve_in(data.path(), &[]);
    let client = Client::new(server.url());
    common::ready(&client).await;
    let d = client
        .create_deployment(&create("web", &dir, &[]))
        .await
        .unwrap();
    assert_eq!(d.state, "down");

    let args = vec![
        "a b".to_string(),
        "$(touch pwned); `id` | rm -rf / ; echo *".into(),
    ];
    let started = client.deployment_action("web", "up", &args).await.unwrap();
    let now = client.deployment("web").await.unwrap();
    assert_eq!(now.state, "running", "answered before the action ended");
    assert_eq!(now.action.unwrap().action_id, started.action_id);
    let (lines, status) = follow(&client, started.job_id).await;
    assert_eq!(
        lines,
        [
            "step 1",
            "step 2",
            "step 3",
            "step 4",
            "step 5",
            "arg:web",
            "arg:a b",
            "arg:$(touch pwned); `id` | rm -rf / ; echo *",
        ],
        "every line in order; each argument one literal argv element"
    );
    assert!(
        !work.path().join("pwned").exists(),
        "no shell ran the arguments"
    );
    assert_eq!(status, "succeeded");
    let d = client.deployment("web").await.unwrap();
    assert_eq!((d.state.as_str(), d.action), ("up", None));
    let history = client.deployment_actions("web").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].exit_code, history[0].args.clone()),
        (Some(0), args)
    );

    // An action whose script exits 3: error code 3, state failed; the CLI exits non-zero.
    client
        .create_deployment(&create("broken", &dir, &[("CODE", "3")]))
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--server", &server.url(), "deploy", "up", "broken"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "deploy up exits non-zero on failure");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("step 1\nstep 2\n"), "{stdout}");
    let d = client.deployment("broken").await.unwrap();
    assert_eq!(
        (d.state.as_str(), d.failed_action.as_deref()),
        ("failed", Some("up"))
    );
    let history = client.deployment_actions("broken").await.unwrap();
    assert_eq!(
        (history[0].exit_code, history[0].state.as_str()),
        (Some(3), "failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_action_while_one_runs_is_refused_and_starts_nothing() {
    let data = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let dir = project(work.path());
    let server = common::serve_in(data.path(), &[]);
    let client = Client::new(server.url());
    common::ready(&client).await;
    client
        .create_deployment(&create("web", &dir, &[("HOLD", "1")]))
        .await
        .unwrap();
    let first = client.deployment_action("web", "up", &[]).await.unwrap();
    let jobs_before = client
        .jobs(None, None, None, 1000)
        .await
        .unwrap()
        .jobs
        .len();
    let refused = client
        .deployment_action("web", "up", &[])
        .await
        .unwrap_err();
    match &refused {
        Error::Api { status, error } => {
            assert_eq!((status.as_u16(), error.code.as_str()), (409, "busy"));
            let running = &error.details.as_ref().unwrap()["action"];
            assert_eq!(running["action_id"], first.action_id.as_str());
        }
        other => panic!("{other}"),
    }
    let e = client.delete_deployment("web").await.unwrap_err();
    assert!(matches!(e, Error::Api { status, .. } if status.as_u16() == 409));
    let mut changed = create("web", &dir, &[]);
    changed.actions.insert(
        "check".into(),
        vec!["sh".into(), "-c".into(), "exit 0".into()],
    );
    let e = client.update_deployment(&changed).await.unwrap_err();
    assert!(matches!(e, Error::Api { status, .. } if status.as_u16() == 409));
    assert_eq!(
        client
            .jobs(None, None, None, 1000)
            .await
            .unwrap()
            .jobs
            .len(),
        jobs_before,
        "no job was queued for the refused action"
    );
    assert_eq!(client.deployment_actions("web").await.unwrap().len(), 1);
    std::fs::write(work.path().join("release"), "").unwrap();
    let (_, status) = follow(&client, first.job_id).await;
    assert_eq!(status, "succeeded");
    // Once it ended, the deployment is up and can be updated (state kept) and deleted.
    assert_eq!(client.deployment("web").await.unwrap().state, "up");
    let updated = client.update_deployment(&changed).await.unwrap();
    assert_eq!(updated.state, "up");
    assert!(updated.actions.contains_key("check"));
    client.delete_deployment("web").await.unwrap();
    assert!(client.deployments().await.unwrap().is_empty());
}
