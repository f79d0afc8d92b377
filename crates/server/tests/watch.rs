//! Watch guarantees, checked by a validator over recorded streams: ordered, unique, atomic per
//! revision, bookmarkable, resumable across forced disconnects; `compacted` below history.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchyard_client::{Client, Error, Watch, WatchItem};
use switchyard_types::{WatchEvent, WatchMessage};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

/// Check a recorded stream; returns its events.
fn validate(items: &[WatchItem], truth: &BTreeMap<u64, Vec<WatchEvent>>) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    let mut bookmark = 0;
    let mut seen = BTreeSet::new();
    for item in items {
        match item {
            WatchItem::Event(e) => {
                assert!(
                    e.revision > bookmark,
                    "event {} after bookmark {bookmark}",
                    e.revision
                );
                if let Some(last) = events.last().map(|l: &WatchEvent| l.revision) {
                    assert!(e.revision >= last, "ordered: {} after {last}", e.revision);
                }
                let key = (e.revision, e.topic.clone(), e.event.to_string());
                assert!(
                    seen.insert(key),
                    "unique: duplicate event at {}",
                    e.revision
                );
                events.push(e.clone());
            }
            WatchItem::Bookmark(r) => {
                assert!(*r >= bookmark, "bookmarks never go back");
                bookmark = *r;
            }
        }
    }
    // Atomic and reliable: every revision that appears is complete, and no revision between
    // the first and last seen is missing.
    let mut by_rev: BTreeMap<u64, Vec<WatchEvent>> = BTreeMap::new();
    for e in &events {
        by_rev.entry(e.revision).or_default().push(e.clone());
    }
    let (Some(first), Some(last)) = (by_rev.keys().next().copied(), by_rev.keys().last().copied())
    else {
        return events;
    };
    let expected: BTreeMap<_, _> = truth
        .range(first..=last)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(by_rev, expected, "every revision complete and none missing");
    events
}

/// Read until a bookmark at or past `revision`.
async fn read_until(w: &mut Watch, revision: u64, items: &mut Vec<WatchItem>) {
    common::within(20, "the watch to reach the revision", async {
        w.request_progress().await.unwrap();
        loop {
            let item = w.next().await.unwrap();
            items.push(item.clone());
            match item {
                WatchItem::Bookmark(r) if r >= revision => return,
                WatchItem::Bookmark(_) => w.request_progress().await.unwrap(),
                WatchItem::Event(_) => {}
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_ordered_unique_atomic_and_resumable() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| {
        c.watch_bookmark_interval = Duration::from_millis(200)
    })
    .await;
    let client = Client::new(server.url());
    let start = client.status().await.unwrap().revision;

    let mut reference = client.watch("bank/", Some(start)).await.unwrap();
    let mut flaky = client.watch("bank/", Some(start)).await.unwrap();
    let mut only_a = client.watch("bank/accounts/a", Some(start)).await.unwrap();

    // Phase 1: concurrent transfers, each one revision with two events.
    for id in ["a", "b", "c"] {
        client.open_account(id, None).await.unwrap();
        client.credit(id, 1_000, None).await.unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let ids = ["a", "b", "c"];
            for i in 0..20u64 {
                let from = ids[((t + i) % 3) as usize];
                let to = ids[((t + i + 1) % 3) as usize];
                c.transfer(from, to, 1 + i % 5, None).await.unwrap();
            }
        }));
    }

    // Phase 2: read the flaky stream while forcing disconnects, some in the middle of a revision.
    let mut flaky_items = Vec::new();
    let mut n = 0;
    while flaky_items.len() < 60 {
        let item = common::within(20, "events on the flaky watch", flaky.next())
            .await
            .unwrap();
        if let WatchItem::Event(_) = item {
            n += 1;
            if n % 7 == 0 {
                flaky.disconnect();
            }
        }
        flaky_items.push(item);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let head = client.status().await.unwrap().revision;

    let mut ref_items = Vec::new();
    read_until(&mut reference, head, &mut ref_items).await;
    read_until(&mut flaky, head, &mut flaky_items).await;
    let mut a_items = Vec::new();
    read_until(&mut only_a, head, &mut a_items).await;
    assert!(
        flaky.reconnects >= 5,
        "the test really disconnected ({})",
        flaky.reconnects
    );

    // Phase 3: validate. The reference stream is the truth for revisions (itself validated
    // for order and uniqueness); the others must match it exactly.
    let mut truth: BTreeMap<u64, Vec<WatchEvent>> = BTreeMap::new();
    for item in &ref_items {
        if let WatchItem::Event(e) = item {
            truth.entry(e.revision).or_default().push(e.clone());
        }
    }
    let ref_events = validate(&ref_items, &truth);
    assert_eq!(
        ref_events.len(),
        6 + 6 * 20 * 2,
        "opens, credits and both sides of every transfer"
    );
    let flaky_events = validate(&flaky_items, &truth);
    assert_eq!(
        flaky_events, ref_events,
        "resumed stream equals the unbroken one"
    );
    let a_truth: BTreeMap<u64, Vec<WatchEvent>> = truth
        .iter()
        .map(|(r, es)| {
            (
                *r,
                es.iter()
                    .filter(|e| e.topic == "bank/accounts/a")
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, es)| !es.is_empty())
        .collect();
    let a_events = validate(&a_items, &a_truth);
    assert_eq!(
        a_events.len(),
        a_truth.values().map(Vec::len).sum::<usize>()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_below_history_is_compacted_and_idle_watch_gets_bookmarks() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| {
        c.history_events = 10;
        c.watch_bookmark_interval = Duration::from_millis(100);
    })
    .await;
    let client = Client::new(server.url());
    client.open_account("a", None).await.unwrap();
    for _ in 0..30 {
        client.credit("a", 1, None).await.unwrap();
    }
    let status = client.status().await.unwrap();
    assert!(status.compact_revision > 1);

    // Why: resuming from a revision whose events were dropped must fail loudly.
    let mut old = client.watch("", Some(1)).await.unwrap();
    match common::within(10, "the compacted error", old.next()).await {
        Err(Error::Compacted { compact_revision }) => {
            assert_eq!(compact_revision, status.compact_revision)
        }
        other => panic!("expected compacted, got {other:?}"),
    }

    // From the compact revision, the retained events arrive, then an idle bookmark.
    let mut ok = client
        .watch("", Some(status.compact_revision))
        .await
        .unwrap();
    let mut events = 0;
    loop {
        match common::within(10, "events then a bookmark", ok.next())
            .await
            .unwrap()
        {
            WatchItem::Event(_) => events += 1,
            WatchItem::Bookmark(r) => {
                assert_eq!(r, status.revision);
                break;
            }
        }
    }
    assert_eq!(events, 10, "exactly the retained history");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_messages_and_errors() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());

    // A plain GET without upgrade is a JSON 400; a bad from_revision too.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v1/watch", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{}/v1/watch?from_revision=abc", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["details"]["field"], "from_revision");

    // Without from_revision the stream starts after the current revision.
    client.open_account("before", None).await.unwrap();
    let url = format!("ws://{}/v1/watch?prefix=bank/", server.api_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(r#"{"type":"progress"}"#.into()))
        .await
        .unwrap();
    let first = common::within(10, "a bookmark", ws.next())
        .await
        .unwrap()
        .unwrap();
    let m: WatchMessage = serde_json::from_str(first.to_text().unwrap()).unwrap();
    let WatchMessage::Bookmark { revision: start } = m else {
        panic!("{m:?}")
    };
    let opened = client.open_account("after", None).await.unwrap();
    let next = common::within(10, "the event", ws.next())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(next.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "event");
    assert_eq!(v["topic"], "bank/accounts/after");
    assert_eq!(v["revision"], opened.revision);
    assert!(opened.revision > start);

    // An unknown client message ends the stream with an `invalid` error.
    ws.send(Message::Text(r#"{"type":"dance"}"#.into()))
        .await
        .unwrap();
    let err = common::within(10, "the error", ws.next())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(err.to_text().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "invalid");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_the_same_events_with_revision_ids() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    let opened = client.open_account("a", None).await.unwrap();
    let credited = client.credit("a", 5, None).await.unwrap();

    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/watch?prefix=bank/&from_revision=0",
            server.url()
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    common::within(10, "two SSE events", async {
        while text.matches("data: ").count() < 2 {
            text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
        }
    })
    .await;
    assert!(text.contains(&format!("id: {}", opened.revision)), "{text}");
    assert!(
        text.contains(&format!("id: {}", credited.revision)),
        "{text}"
    );
    assert!(text.contains(r#""topic":"bank/accounts/a""#), "{text}");
    server.stop().await;
}
