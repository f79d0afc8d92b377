//! How client commands print: `-o table` (the default: a table or a short summary for people),
//! `-o wide` (the table with more columns), `-o json` and `-o yaml` (the server's answer
//! whole, for scripts). Every client command takes the same flag; a stream (watch, logs)
//! prints one JSON document per line with `-o json`.
//!
//! Errors are printed by [`report`]: one line per failure with the code, the message, and what
//! to do about it.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Serialize;
use switchyard_types::ErrorCode;

/// The `-o` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A table or summary for people.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The server's answer as JSON (streams: one document per line).
    Json,
    /// The server's answer as YAML (streams: one document each, separated by `---`).
    Yaml,
}

impl Format {
    /// Whether the output is for a program rather than a person.
    pub fn machine(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }

    pub fn wide(self) -> bool {
        self == Format::Wide
    }

    /// Print `value` in a machine format, or `human(wide)` in a human one.
    pub fn print<T: Serialize + ?Sized>(
        self,
        value: &T,
        human: impl FnOnce(bool) -> String,
    ) -> anyhow::Result<()> {
        let text = match self {
            Format::Json => serde_json::to_string_pretty(value)? + "\n",
            Format::Yaml => serde_yaml_ng::to_string(value)?,
            Format::Table | Format::Wide => human(self.wide()),
        };
        write_stdout(&text)
    }

    /// Print one item of a stream: a JSON line, a YAML document, or `human(wide)` as a line.
    pub fn print_item<T: Serialize + ?Sized>(
        self,
        value: &T,
        human: impl FnOnce(bool) -> String,
    ) -> anyhow::Result<()> {
        let text = match self {
            Format::Json => serde_json::to_string(value)? + "\n",
            Format::Yaml => format!("---\n{}", serde_yaml_ng::to_string(value)?),
            Format::Table | Format::Wide => human(self.wide()) + "\n",
        };
        write_stdout(&text)
    }
}

/// Write to stdout; a closed pipe (`| head`) ends the command quietly, as Unix tools do.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

/// A table in the kubectl style: upper-case headers, columns padded to their widest cell and
/// separated by three spaces, no borders. Ends with a newline; empty rows give the header only.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                l.push_str("   ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            l.push_str(&cell);
            l.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        line(&mut row.into_iter().take(widths.len()));
    }
    out
}

/// A summary of one object: `Key:  value` lines with the values aligned.
pub fn summary(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"));
    }
    out
}

/// `-` for nothing.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Comma-separated items, `-` for none.
pub fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let words: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if words.is_empty() {
        "-".into()
    } else {
        words.join(",")
    }
}

/// What a person can do about an error the server answered with.
fn hint(code: ErrorCode, details: Option<&serde_json::Value>) -> Option<String> {
    let leader = details
        .and_then(|d| d.get("leader"))
        .filter(|l| !l.is_null());
    Some(match code {
        ErrorCode::NotFound => "check the name or id (the `list` command shows what exists)".into(),
        ErrorCode::Conflict => "it exists already: use it, or pick another name".into(),
        ErrorCode::Busy => {
            "something is in flight: wait for it to end (`watch`), or abort or cancel it".into()
        }
        ErrorCode::NotAllowed => match details.and_then(|d| d.get("allowed_from")) {
            Some(from) => format!("allowed only from {from}"),
            None => "not allowed from the current state".into(),
        },
        ErrorCode::InsufficientFunds => "credit the account first, or move less".into(),
        ErrorCode::Unauthorized => "give a token: --token or SWITCHYARD_TOKEN".into(),
        ErrorCode::Forbidden => {
            "the token's role does not allow this; use a token that does".into()
        }
        ErrorCode::Unavailable => match leader {
            Some(l) => format!("retry, or ask the leader ({l}); --server takes several URLs"),
            None => "no leader yet or the node is stopping: retry in a moment, or give several \
                     --server URLs"
                .into(),
        },
        ErrorCode::Timeout => "the outcome is unknown: retry with the same --idempotency-key to \
                               get the first answer"
            .into(),
        ErrorCode::TooLarge => "send less at a time (the server's --max-body-bytes)".into(),
        ErrorCode::Invalid
        | ErrorCode::Internal
        | ErrorCode::MethodNotAllowed
        | ErrorCode::Other => return None,
    })
}

/// Print an error for a person: `error[CODE]: message (server answered STATUS)` and, on a
/// second line, what to do.
pub fn report(err: &anyhow::Error) {
    let mut out = String::new();
    if let Some(switchyard_client::Error::Api { status, error }) =
        err.downcast_ref::<switchyard_client::Error>()
    {
        let code = ErrorCode::parse(&error.code);
        let _ = write!(
            out,
            "error[{}]: {} ({status})",
            error.code,
            error.message.trim_end_matches('.')
        );
        if let Some(h) = hint(code, error.details.as_ref()) {
            let _ = write!(out, "\n  hint: {h}");
        }
    } else if let Some(switchyard_client::Error::Transport(e)) =
        err.downcast_ref::<switchyard_client::Error>()
        && (e.is_connect() || e.is_timeout())
    {
        let _ = write!(
            out,
            "error[unreachable]: {}\n  hint: is the server running there? Start one with \
             `switchyard serve`, or point --server (SWITCHYARD_SERVER) at it",
            chain(err)
        );
    } else {
        let _ = write!(out, "error: {}", chain(err));
    }
    eprintln!("{out}");
}

/// The error and its causes in one line, each said once (a cause whose text the message
/// already holds is left out).
fn chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_every_column_to_its_widest_cell() {
        let t = table(
            &["name", "state"],
            [
                vec!["sw1".to_string(), "ON".to_string()],
                vec!["a-long-name".to_string(), "OFF".to_string()],
            ],
        );
        assert_eq!(
            t,
            "NAME          STATE\nsw1           ON\na-long-name   OFF\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(table(&["id", "balance"], []), "ID   BALANCE\n");
    }

    #[test]
    fn a_summary_aligns_its_values() {
        assert_eq!(
            summary(&[("Node", "1".into()), ("Role", "leader".into())]),
            "Node: 1\nRole: leader\n"
        );
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let inner = anyhow::anyhow!("Database already open");
        let err = inner.context("Database already open. Cannot acquire lock");
        assert_eq!(chain(&err), "Database already open. Cannot acquire lock");
    }

    #[test]
    fn every_refusal_a_person_can_act_on_has_a_hint() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Busy,
            ErrorCode::NotAllowed,
            ErrorCode::InsufficientFunds,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
        ] {
            assert!(hint(code, None).is_some(), "{code:?}");
        }
        let d = serde_json::json!({"allowed_from": ["OFF"]});
        assert_eq!(
            hint(ErrorCode::NotAllowed, Some(&d)).unwrap(),
            "allowed only from [\"OFF\"]"
        );
    }
}
