//! Client commands print the same way everywhere: a table or summary for people by default,
//! `-o json` / `-o yaml` for scripts, `-o wide` with more columns, and one error line (code,
//! message) plus what to do when the server refuses.

use std::process::Output;

use tempfile::TempDir;

mod common;

fn cli(url: &str, args: &[&str]) -> Output {
    common::cli(args, &[("SWITCHYARD_SERVER", url)])
}

fn stdout(o: &Output) -> String {
    common::succeeded(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_prints_the_same_answer_and_errors_say_what_to_do() {
    let dir = TempDir::new().unwrap();
    let proc = common::serve_in(dir.path(), &["--local-workers", "0"]);
    let url = proc.url();
    common::ready(&switchyard_client::Client::new(&url)).await;

    // For scripts: JSON, whole, as the API answers it.
    let json: serde_json::Value = serde_json::from_str(&stdout(&cli(
        &url,
        &["bank", "open", "alice", "-o", "json"],
    )))
    .expect("-o json prints JSON");
    assert_eq!(json["id"], "alice");
    assert_eq!(json["balance"], 0);
    // The option may come before the command too.
    let yaml = stdout(&cli(
        &url,
        &["-o", "yaml", "bank", "credit", "alice", "100"],
    ));
    assert!(yaml.contains("id: alice\nbalance: 100\n"), "{yaml}");

    // For people: a table with a header row.
    let table = stdout(&cli(&url, &["bank", "list"]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "BALANCE", "REVISION"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["alice", "100"], "{table}");

    // Wide: more columns than the default.
    stdout(&cli(&url, &["device", "create", "sw1", "--type", "switch"]));
    let narrow = stdout(&cli(&url, &["device", "list"]));
    let wide = stdout(&cli(&url, &["device", "list", "-o", "wide"]));
    let columns = |t: &str| t.lines().next().unwrap().split_whitespace().count();
    assert!(columns(&wide) > columns(&narrow), "{narrow}\n{wide}");
    assert!(wide.contains("ATTRIBUTES"), "{wide}");

    // A summary of one object.
    let status = stdout(&cli(&url, &["status"]));
    assert!(
        status.contains("Role:") && status.contains("leader"),
        "{status}"
    );

    // A refusal: one error line with the code and message, one line of what to do.
    let o = cli(&url, &["bank", "transfer", "alice", "bob", "30"]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error[not_found]: "), "{err}");
    assert!(lines[0].contains("bob"), "{err}");
    assert!(lines[1].starts_with("  hint: "), "{err}");

    // No server there: said so, with what to do.
    let o = cli("http://127.0.0.1:9", &["status"]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.starts_with("error[unreachable]: "), "{err}");
    assert!(err.contains("hint: is the server running"), "{err}");
}
