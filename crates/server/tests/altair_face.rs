//! The seed-001 face: the original's request/response shapes, glass boundaries, refusals that
//! store nothing, and the socket announcements and every-tenth report for several taps.

mod common;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

async fn req(method: reqwest::Method, url: String, body: Option<String>) -> (StatusCode, String) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    let resp = r.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Socket) -> String {
    let m = common::within(10, "a socket message", ws.next())
        .await
        .unwrap()
        .unwrap();
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Status, content type and body, as bytes go.
async fn raw(method: reqwest::Method, url: String, body: Option<&str>) -> (u16, String, String) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), ctype, resp.text().await.unwrap())
}

/// The original's bodies byte for byte (captured from altair-server on Tornado 6.0.3, which
/// writes a dict as Python's `json.dumps` with `</` escaped, as `application/json;
/// charset=UTF-8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_content_types_are_the_originals_bytes() {
    let dir = TempDir::new().unwrap();
    let altair = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = altair.local_addr().unwrap();
    let _server = common::start_with(dir.path(), |_| {}, None, Some(altair)).await;
    let url = |p: &str| format!("http://{addr}{p}");
    use reqwest::Method as M;
    const JSON: &str = "application/json; charset=UTF-8";

    assert_eq!(
        raw(M::GET, url("/api/beers"), None).await,
        (200, JSON.into(), r#"{"beers": []}"#.into())
    );
    let (code, ctype, body) = raw(
        M::POST,
        url("/api/beers"),
        Some(r#"{"tapId": 3, "volume": 0.5e3}"#),
    )
    .await;
    assert_eq!((code, ctype.as_str()), (200, JSON));
    let v: Value = serde_json::from_str(&body).unwrap();
    let ts = v["beer"]["timestamp"].as_str().unwrap();
    // A float volume reads back as Python writes the float it parsed.
    let want = format!(
        r#"{{"beer": {{"id": 0, "type": "pint", "volume": 500.0, "timestamp": "{ts}", "tapId": 3}}}}"#
    );
    assert_eq!(body, want);
    assert_eq!(
        raw(M::GET, url("/api/beers/0"), None).await,
        (200, JSON.into(), want[..want.len()].to_string())
    );
    assert_eq!(
        raw(M::GET, url("/api/beers"), None).await.2,
        format!("{{\"beers\": [{}]}}", &want[9..want.len() - 1])
    );
    assert_eq!(
        raw(
            M::POST,
            url("/api/beers"),
            Some(r#"{"tapId": 1, "volume": 50}"#)
        )
        .await,
        (
            403,
            JSON.into(),
            r#"{"status": 403, "message": "There is no glass type for the specified volume"}"#
                .into()
        )
    );
    assert_eq!(
        raw(M::GET, url("/api/beers/99"), None).await,
        (
            404,
            JSON.into(),
            r#"{"status": 404, "message": "Beer with id 99 not found"}"#.into()
        )
    );
    // Text outside ASCII and `</` as Tornado escapes them.
    assert_eq!(
        raw(M::GET, url("/api/beers/caf%C3%A9%3C%2Fscript%3E"), None).await,
        (
            404,
            JSON.into(),
            r#"{"status": 404, "message": "Beer with id caf\u00e9<\/script> not found"}"#.into()
        )
    );
    // DELETE answers an empty body with Tornado's default type.
    assert_eq!(
        raw(M::DELETE, url("/api/beers/0"), None).await,
        (200, "text/html; charset=UTF-8".into(), String::new())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beer_routes_match_the_original_and_refusals_store_nothing() {
    let dir = TempDir::new().unwrap();
    let altair = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = altair.local_addr().unwrap();
    let server = common::start_with(dir.path(), |_| {}, None, Some(altair)).await;
    let url = |p: &str| format!("http://{addr}{p}");
    use reqwest::Method as M;

    // Phase 1: golden shape of a pour (key order as the original's dict).
    let (s, body) = req(
        M::POST,
        url("/api/beers"),
        Some(r#"{"tapId": 3, "volume": 450}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.starts_with(r#"{"beer": {"id": 0, "type": "pint", "volume": 450, "timestamp": ""#),
        "{body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let ts = v["beer"]["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 19 || ts.len() == 26,
        "isoformat without zone: {ts}"
    );
    assert_eq!(v["beer"]["tapId"], 3);

    // Phase 2: volume boundaries, echoed as sent.
    let cases = [
        ("99.9", None),
        ("100", Some("half")),
        ("300", Some("half")),
        ("300.5", Some("pint")),
        ("800", Some("pint")),
        ("1000", Some("stein")),
        ("1000.1", None),
    ];
    let mut next_id = 1;
    for (vol, glass) in cases {
        let (s, body) = req(
            M::POST,
            url("/api/beers"),
            Some(format!(r#"{{"tapId": 1, "volume": {vol}}}"#)),
        )
        .await;
        match glass {
            Some(g) => {
                assert_eq!(s, StatusCode::OK, "{vol}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    (v["beer"]["type"].as_str(), v["beer"]["id"].as_u64()),
                    (Some(g), Some(next_id)),
                    "{vol}"
                );
                assert_eq!(
                    v["beer"]["volume"].to_string(),
                    vol,
                    "the volume is echoed as sent"
                );
                next_id += 1;
            }
            None => {
                assert_eq!(s, StatusCode::FORBIDDEN, "{vol}");
                assert_eq!(
                    serde_json::from_str::<Value>(&body).unwrap(),
                    json!({"status": 403, "message": "There is no glass type for the specified volume"})
                );
            }
        }
    }

    // Phase 3: bad input is a 400 in the original's shape, naming the field; nothing stored.
    let huge = format!(
        r#"{{"tapId": 1, "volume": 450, "pad": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    let bad = [
        ("not json", "body"),
        (r#"{"volume": 450}"#, "tapId"),
        (r#"{"tapId": 1}"#, "volume"),
        (r#"{"tapId": "one", "volume": 450}"#, "tapId"),
        (r#"{"tapId": 1, "volume": "450"}"#, "volume"),
        (r#"[1, 2]"#, "body"),
        (huge.as_str(), "body"),
    ];
    for (body, field) in bad {
        let (s, text) = req(M::POST, url("/api/beers"), Some(body.to_string())).await;
        assert!(s.is_client_error(), "{field}: {s}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], s.as_u16(), "{text}");
        assert!(
            v["message"].as_str().unwrap().starts_with(field),
            "{field}: {text}"
        );
    }
    let (_, list) = req(M::GET, url("/api/beers?page_size=100"), None).await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<u64> = list["beers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (0..next_id).collect::<Vec<_>>(),
        "no id burnt by a refusal"
    );

    // Phase 4: pages, type filter, get one, 404, delete.
    let (_, p2) = req(M::GET, url("/api/beers?page=2&page_size=2"), None).await;
    let p2: Value = serde_json::from_str(&p2).unwrap();
    assert_eq!(
        p2["beers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(3)]
    );
    let (_, past) = req(M::GET, url("/api/beers?page=99"), None).await;
    assert_eq!(past, r#"{"beers": []}"#);
    let (_, halves) = req(M::GET, url("/api/beers?type=half"), None).await;
    let halves: Value = serde_json::from_str(&halves).unwrap();
    assert!(
        halves["beers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] == "half")
    );
    let (s, text) = req(M::GET, url("/api/beers?page=abc"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    let (s, one) = req(M::GET, url("/api/beers/0"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(one.starts_with(r#"{"beer": {"id": 0,"#));
    let (s, text) = req(M::GET, url("/api/beers/77"), None).await;
    assert_eq!(
        (s, text.as_str()),
        (
            StatusCode::NOT_FOUND,
            r#"{"status": 404, "message": "Beer with id 77 not found"}"#
        )
    );
    let (s, text) = req(M::DELETE, url("/api/beers/0"), None).await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, ""));
    let (s, _) = req(M::GET, url("/api/beers/0"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The same routes answer on the main listener.
    let (s, _) = req(M::GET, format!("{}/api/beers/1", server.url()), None).await;
    assert_eq!(s, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_hears_every_pour_and_the_tenth_brings_a_report() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let ws_url = format!("ws://{}/sockets/beers", server.api_addr);
    let mut taps = Vec::new();
    for _ in 0..3 {
        taps.push(tokio_tungstenite::connect_async(&ws_url).await.unwrap().0);
    }
    // Tap 2 opts out of hearing its own pours.
    let (mut quiet, _) =
        tokio_tungstenite::connect_async(format!("{ws_url}?tapId=2&skip_own=true"))
            .await
            .unwrap();

    let pour = |tap: i64| {
        let base = base.clone();
        async move {
            let (s, _) = req(
                reqwest::Method::POST,
                format!("{base}/api/beers"),
                Some(format!(r#"{{"tapId": {tap}, "volume": 500}}"#)),
            )
            .await;
            assert_eq!(s, StatusCode::OK);
        }
    };
    // Ten pours: taps 1,2,2,1,2,2,1,2,2,2 -> tap 1: 3 (30%), tap 2: 7 (70%).
    let order = [1, 2, 2, 1, 2, 2, 1, 2, 2, 2];
    for tap in order {
        pour(tap).await;
    }
    for ws in taps.iter_mut() {
        for (id, tap) in order.iter().enumerate() {
            assert_eq!(
                next_text(ws).await,
                format!("Tap with id {tap} posted a new beer (id: {id})!")
            );
        }
        assert_eq!(
            next_text(ws).await,
            r#"{"tap 1": "30.0%", "tap 2": "70.0%", "total beers": 10}"#
        );
    }
    for (id, tap) in order.iter().enumerate().filter(|(_, t)| **t != 2) {
        assert_eq!(
            next_text(&mut quiet).await,
            format!("Tap with id {tap} posted a new beer (id: {id})!")
        );
    }
    assert_eq!(
        next_text(&mut quiet).await,
        r#"{"tap 1": "30.0%", "tap 2": "70.0%", "total beers": 10}"#
    );

    // A delete is announced (beer 4 was tap 2's); the next pour brings the count back to ten.
    let (s, _) = req(reqwest::Method::DELETE, format!("{base}/api/beers/4"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        next_text(&mut taps[0]).await,
        "Beer 4 deleted from the collection"
    );
    pour(3).await;
    assert_eq!(
        next_text(&mut taps[0]).await,
        "Tap with id 3 posted a new beer (id: 10)!"
    );
    assert_eq!(
        next_text(&mut taps[0]).await,
        r#"{"tap 1": "30.0%", "tap 2": "60.0%", "tap 3": "10.0%", "total beers": 10}"#
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_beers_pages_filters_and_errors_on_the_same_state() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    use reqwest::Method as M;
    for (tap, vol) in [(1, "150"), (2, "450"), (1, "900"), (2, "300.5"), (3, "120")] {
        let (s, body) = req(
            M::POST,
            format!("{base}/v1/beers"),
            Some(format!(r#"{{"tap_id": {tap}, "volume": {vol}}}"#)),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    // The Altair face sees the same beers.
    let (_, one) = req(M::GET, format!("{base}/api/beers/3"), None).await;
    assert!(one.contains(r#""volume": 300.5"#), "{one}");

    let get = |q: &str| {
        let url = format!("{base}/v1/beers{q}");
        async move {
            let (s, body) = req(M::GET, url, None).await;
            (s, serde_json::from_str::<Value>(&body).unwrap())
        }
    };
    let (_, p1) = get("?limit=2").await;
    let ids = |v: &Value| {
        v["beers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), [0, 1]);
    let (_, p2) = get(&format!("?limit=2&after={}", p1["next_after"])).await;
    assert_eq!(ids(&p2), [2, 3]);
    let (_, p3) = get(&format!("?limit=2&after={}", p2["next_after"])).await;
    assert_eq!(ids(&p3), [4]);
    assert!(p3.get("next_after").is_none());
    assert_eq!(ids(&get("?tap=2").await.1), [1, 3]);
    assert_eq!(ids(&get("?type=half").await.1), [0, 4]);
    assert_eq!(
        ids(
            &get("?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
                .await
                .1
        )
        .len(),
        5
    );
    for q in [
        "?limit=0",
        "?type=mug",
        "?since=yesterday",
        "?bogus=1",
        "?tap=x",
    ] {
        assert_eq!(get(q).await.0, StatusCode::BAD_REQUEST, "{q}");
    }
    let (s, body) = req(
        M::POST,
        format!("{base}/v1/beers"),
        Some(r#"{"tap_id": 1, "volume": 50}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = req(
        M::POST,
        format!("{base}/v1/beers"),
        Some(r#"{"tap_id": 1.5, "volume": 500}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("tap_id"), "{body}");
    let (s, _) = req(M::DELETE, format!("{base}/v1/beers/4"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = req(M::DELETE, format!("{base}/v1/beers/4"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    server.stop().await;
}
