//! Every route of every listener (the client API, the peer listener and the four faces), as
//! listed by the routers themselves (`switchyard_server::routes::all`): each credential gets
//! exactly what it should; a page of another origin can change nothing and open no socket; a
//! foreign Host is refused on loopback; and connections cannot be held open.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use switchyard_client::Client;
use switchyard_server::auth::Auth;
use switchyard_server::network::stream;
use switchyard_server::peer_auth::{self, ClusterSecret, Direction};
use switchyard_server::routes::{Route, RouteMethod};
use switchyard_server::{Config, Listeners, Server};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

const WRITE: &str = "write-token-0123456789";
const READ: &str = "read-token-0123456789";
const WRONG: &str = "wrong-token-0123456789";
const EVIL: &str = "http://evil.example";

/// A node with auth on (reads need a token too) and every face on a listener of its own;
/// the address of each listener by its name in `routes::all`.
async fn node(
    dir: &TempDir,
    tweak: impl FnOnce(&mut Config),
) -> (Server, BTreeMap<String, SocketAddr>) {
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "read_requires_token = true\n\n\
             [[tokens]]\nname = \"writer\"\ntoken = \"{WRITE}\"\naccess = \"write\"\n\n\
             [[tokens]]\nname = \"reader\"\ntoken = \"{READ}\"\naccess = \"read\"\n"
        ),
    )
    .unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.auth = Some(Arc::new(Auth::load(&file).unwrap()));
    tweak(&mut config);
    let mut l = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let (mv, altair, testbed, funkytown) = (bind().await, bind().await, bind().await, bind().await);
    let mut addrs = BTreeMap::new();
    addrs.insert("mv".to_string(), mv.local_addr().unwrap());
    addrs.insert("Altair beer-tap".to_string(), altair.local_addr().unwrap());
    addrs.insert("TestbedOS".to_string(), testbed.local_addr().unwrap());
    addrs.insert(
        "funkytown reporter".to_string(),
        funkytown.local_addr().unwrap(),
    );
    (l.mv, l.altair, l.testbed, l.funkytown) =
        (Some(mv), Some(altair), Some(testbed), Some(funkytown));
    let server = switchyard_server::start(config.validate().unwrap(), l)
        .await
        .unwrap();
    server
        .node
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    addrs.insert("API".to_string(), server.api_addr);
    addrs.insert("peer".to_string(), server.peer_addr);
    (server, addrs)
}

/// A concrete path for a route: every `{param}` becomes `x1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').expect("closed placeholder");
        out.push_str("x1");
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

fn methods(r: &Route) -> Vec<Method> {
    match r.method {
        RouteMethod::Get => vec![Method::GET],
        RouteMethod::Post => vec![Method::POST],
        RouteMethod::Put => vec![Method::PUT],
        RouteMethod::Delete => vec![Method::DELETE],
        RouteMethod::Any => vec![Method::GET, Method::POST],
    }
}

/// What a request presents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cred {
    None,
    Wrong,
    Read,
    Write,
}

/// Send one request; `None` when it was still waiting after 3 s (a long poll: it was served).
/// Sends requests as a client that may hold the write token and the cluster secret.
struct Probe {
    http: reqwest::Client,
    secret: ClusterSecret,
}

impl Probe {
    /// A client holding `server`'s cluster secret.
    fn of(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            secret: ClusterSecret::parse(server.node.join_token()).unwrap(),
        }
    }

    async fn send(
        &self,
        addr: SocketAddr,
        listener: &str,
        method: &Method,
        path: &str,
        cred: Cred,
        extra: &[(&str, &str)],
    ) -> Option<StatusCode> {
        let (http, secret) = (&self.http, &self.secret);
        let with_body = *method != Method::GET && *method != Method::DELETE;
        // What is sent is what is signed: no body on a GET or DELETE.
        let body = if with_body {
            b"{}".to_vec()
        } else {
            Vec::new()
        };
        let mut r = http
            .request(method.clone(), format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(3));
        if listener == "peer" {
            r = r.header("x-switchyard-format", switchyard_store::FORMAT.to_string());
            match cred {
                Cred::None => {}
                Cred::Wrong => {
                    r = r.header(
                        peer_auth::HEADER,
                        ClusterSecret::generate().sign(method.as_str(), path, &body),
                    )
                }
                Cred::Read | Cred::Write => {
                    r = r.header(peer_auth::HEADER, secret.sign(method.as_str(), path, &body))
                }
            }
        } else {
            match cred {
                Cred::None => {}
                Cred::Wrong => r = r.bearer_auth(WRONG),
                Cred::Read => r = r.bearer_auth(READ),
                Cred::Write => r = r.bearer_auth(WRITE),
            }
        }
        let mut typed = false;
        for (k, v) in extra {
            typed |= k.eq_ignore_ascii_case("content-type");
            r = r.header(*k, *v);
        }
        if with_body {
            if !typed {
                r = r.header("content-type", "application/json");
            }
            r = r.body(body);
        }
        match r.send().await {
            Ok(resp) => Some(resp.status()),
            Err(e) if e.is_timeout() => None,
            Err(e) => panic!("{listener} {method} {path}: {e}"),
        }
    }
}

/// Routes anyone may read: health checks and the dashboard's static files.
fn public(listener: &str, path: &str) -> bool {
    matches!(
        (listener, path),
        ("API", "/v1/health")
            | ("API", "/")
            | ("API", "/ui/{file}")
            | ("funkytown reporter", "/health")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_every_listener_gets_exactly_what_its_credential_allows() {
    let dir = TempDir::new().unwrap();
    let (server, addrs) = node(&dir, |_| {}).await;
    let probe = Probe::of(&server);
    let mut checked = 0;
    for (listener, routes) in switchyard_server::routes::all() {
        assert!(!routes.is_empty(), "{listener} lists its routes");
        let addr = addrs[listener];
        for route in &routes {
            let path = concrete(&route.path);
            for method in methods(route) {
                let mutation = method != Method::GET;
                for cred in [Cred::None, Cred::Wrong, Cred::Read, Cred::Write] {
                    let got = probe.send(addr, listener, &method, &path, cred, &[]).await;
                    let what = format!("{listener} {method} {} with {cred:?}: {got:?}", route.path);
                    let refused = |s: StatusCode| got == Some(s);
                    let served = got.is_none_or(|s| {
                        s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN
                    });
                    match (listener, cred) {
                        _ if public(listener, &route.path) => assert!(served, "{what}"),
                        ("peer", Cred::None | Cred::Wrong) => {
                            assert!(refused(StatusCode::UNAUTHORIZED), "{what}")
                        }
                        ("peer", _) => assert!(served, "{what}"),
                        (_, Cred::None | Cred::Wrong) => {
                            assert!(refused(StatusCode::UNAUTHORIZED), "{what}")
                        }
                        (_, Cred::Read) if mutation => {
                            assert!(refused(StatusCode::FORBIDDEN), "{what}")
                        }
                        // Adding a member takes the join token, whatever the bearer token.
                        ("API", Cred::Write) if route.path == "/v1/cluster/members" && mutation => {
                            assert!(refused(StatusCode::FORBIDDEN), "{what}")
                        }
                        _ => assert!(served, "{what}"),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 300, "{checked} requests checked");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_origin_changes_nothing_and_opens_no_socket() {
    let dir = TempDir::new().unwrap();
    let (server, addrs) = node(&dir, |_| {}).await;
    let probe = Probe::of(&server);
    let http = probe.http.clone();
    let client = Client::new(server.url()).with_token(WRITE);
    let before = client.status().await.unwrap().revision;
    let cross_site: [&[(&str, &str)]; 3] = [
        &[("origin", EVIL), ("content-type", "text/plain")],
        &[
            ("origin", EVIL),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", EVIL),
            ("content-type", "text/plain"),
        ],
    ];
    for (listener, routes) in switchyard_server::routes::all() {
        let addr = addrs[listener];
        for route in &routes {
            let path = concrete(&route.path);
            for method in methods(route) {
                if method == Method::GET {
                    // A WebSocket upgrade from another origin, on every route that reads.
                    let ws = [
                        ("upgrade", "websocket"),
                        ("connection", "upgrade"),
                        ("sec-websocket-version", "13"),
                        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                        ("origin", EVIL),
                    ];
                    let got = probe
                        .send(addr, listener, &method, &path, Cred::Write, &ws)
                        .await;
                    assert_eq!(got, Some(StatusCode::FORBIDDEN), "{listener} socket {path}");
                    continue;
                }
                for headers in cross_site {
                    // With a valid credential: only the origin can be the reason.
                    let got = probe
                        .send(addr, listener, &method, &path, Cred::Write, headers)
                        .await;
                    assert_eq!(
                        got,
                        Some(StatusCode::FORBIDDEN),
                        "{listener} {method} {path} {headers:?}"
                    );
                }
            }
        }
    }
    assert_eq!(
        client.status().await.unwrap().revision,
        before,
        "no cross-origin request changed anything"
    );

    // The same requests without an Origin, as curl and the originals' clients send them (some
    // with a form content type and a JSON body), still work on the faces.
    let altair = addrs["Altair beer-tap"];
    let resp = http
        .post(format!("http://{altair}/api/beers"))
        .bearer_auth(WRITE)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"name": "pale", "glass": "pint"}"#)
        .send()
        .await
        .unwrap();
    assert!(resp.status() != StatusCode::FORBIDDEN, "{}", resp.status());
    // The node's own origin passes.
    let api = server.api_addr;
    let resp = http
        .post(format!("http://{api}/v1/bank/accounts"))
        .bearer_auth(WRITE)
        .header("origin", format!("http://{api}"))
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"id": "own-origin"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(client.status().await.unwrap().revision > before);

    // A DNS-rebinding page reaches loopback under its own name: refused on every listener.
    for (listener, addr) in &addrs {
        let head = "GET /v1/health HTTP/1.1\r\nHost: rebind.evil.example\r\n\r\n";
        let answer = common::raw_exchange(*addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{listener}: {answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_may_change_things() {
    let dir = TempDir::new().unwrap();
    let (server, _) = node(&dir, |c| {
        c.browser = Arc::new(switchyard_server::listen::BrowserRules {
            allowed_origins: vec!["https://ops.example.com".into()],
            allowed_hosts: vec![],
        })
    })
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/bank/accounts", server.url()))
        .bearer_auth(WRITE)
        .header("origin", "https://ops.example.com")
        .header("sec-fetch-site", "cross-site")
        .json(&serde_json::json!({"id": "from-ops"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    server.stop().await;
}

/// Read from `s` until the server closes it; what it sent.
async fn until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens a peer stream to `peer`, signed with `secret`; answers the socket and the nonce.
async fn open_stream(
    peer: SocketAddr,
    secret: &ClusterSecret,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let path = stream::PATH;
    let mut req = format!("ws://{peer}{path}").into_client_request().unwrap();
    let (sig, nonce) = secret.sign_with_nonce("GET", path, b"");
    req.headers_mut()
        .insert(peer_auth::HEADER, sig.parse().unwrap());
    req.headers_mut().insert(
        "x-switchyard-format",
        switchyard_store::FORMAT.to_string().parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    (ws, nonce)
}

/// The next message on a socket, waiting at most 10 s.
async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Message> {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer or the end of the stream within 10 s")
        .and_then(Result::ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stream_takes_only_frames_sealed_for_it() {
    use futures::SinkExt;
    let dir = TempDir::new().unwrap();
    let (server, addrs) = node(&dir, |_| {}).await;
    let peer = addrs["peer"];
    let secret = ClusterSecret::parse(server.node.join_token()).unwrap();
    let before = server.node.view.revision();
    // An append from a leader of term 0: the node, leader of a later term, refuses it.
    let vote = openraft::alias::VoteOf::<switchyard_store::TypeConfig>::new(0, 0);
    let append = openraft::raft::AppendEntriesRequest::<switchyard_store::TypeConfig> {
        vote,
        prev_log_id: None,
        leader_commit: None,
        entries: vec![],
    };
    let payload = postcard::to_allocvec(&append).unwrap();

    // Sealed for this stream and direction: carried to Raft, answered in a sealed frame.
    let (mut ws, nonce) = open_stream(peer, &secret).await;
    let mut seal = secret.frame_sealer(&nonce, Direction::ToFollower);
    ws.send(Message::Binary(seal.seal(&payload).into()))
        .await
        .unwrap();
    let Some(Message::Binary(frame)) = next_message(&mut ws).await else {
        panic!("no answer to a sealed append");
    };
    let mut open = secret.frame_opener(&nonce, Direction::ToLeader);
    let reply: stream::Reply = postcard::from_bytes(open.open(&frame).unwrap()).unwrap();
    assert!(
        matches!(
            reply,
            stream::Reply::Append(Err(openraft::raft::StreamAppendError::HigherVote(_)))
        ),
        "{reply:?}"
    );

    // Sealed for another stream, replayed, or altered: the stream ends with no answer.
    let ends = |got: Option<Message>, what: &str| {
        assert!(
            matches!(got, None | Some(Message::Close(_))),
            "{what} frame got {got:?}"
        )
    };
    let (mut ws, _) = open_stream(peer, &secret).await;
    let (_, other_nonce) = secret.sign_with_nonce("GET", stream::PATH, b"");
    let other = secret
        .frame_sealer(&other_nonce, Direction::ToFollower)
        .seal(&payload);
    ws.send(Message::Binary(other.into())).await.unwrap();
    ends(next_message(&mut ws).await, "another stream's");

    let (mut ws, nonce) = open_stream(peer, &secret).await;
    let first = secret
        .frame_sealer(&nonce, Direction::ToFollower)
        .seal(&payload);
    ws.send(Message::Binary(first.clone().into()))
        .await
        .unwrap();
    assert!(matches!(
        next_message(&mut ws).await,
        Some(Message::Binary(_))
    ));
    ws.send(Message::Binary(first.into())).await.unwrap();
    ends(next_message(&mut ws).await, "a replayed");

    let (mut ws, nonce) = open_stream(peer, &secret).await;
    let mut altered = secret
        .frame_sealer(&nonce, Direction::ToFollower)
        .seal(&payload);
    *altered.last_mut().unwrap() ^= 1;
    ws.send(Message::Binary(altered.into())).await.unwrap();
    ends(next_message(&mut ws).await, "an altered");

    assert_eq!(server.node.view.revision(), before, "nothing was applied");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_idle_connections_are_closed_and_the_cap_holds() {
    use tokio::io::AsyncWriteExt;
    let dir = TempDir::new().unwrap();
    let (server, _) = node(&dir, |c| {
        c.limits.header_read_timeout = Duration::from_millis(300);
        c.limits.idle_timeout = Duration::from_millis(500);
        c.limits.max_connections = 1;
    })
    .await;
    let addr = server.api_addr;
    // Far below the 60 s default: a close within this is the configured limit at work.
    let limit = Duration::from_secs(5);

    // Half a request head, then nothing.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    common::within(
        5,
        "the half-sent request's connection closes",
        until_closed(&mut half),
    )
    .await;

    // A whole request on a keep-alive connection, then silence: answered, then closed.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let got = common::within(5, "the idle connection closes", until_closed(&mut idle)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "answered before closing"
    );
    assert!(started.elapsed() < limit);

    // One connection at most: while a silent first connection holds the only slot, a second
    // one waits; it is answered once the first is closed as idle, not before.
    let opened = tokio::time::Instant::now();
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = common::within(
        5,
        "the second connection",
        common::raw_exchange(addr, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        opened.elapsed() >= Duration::from_millis(450),
        "answered after {:?}, before the first connection's idle timeout (500 ms)",
        opened.elapsed()
    );
    drop(first);

    // A WebSocket keeps its slot after the upgrade: the next connection waits until the socket
    // is closed (here 500 ms after the next request was sent), not less.
    let url = format!("ws://{addr}/v1/watch?prefix=&token={WRITE}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let waiting = tokio::spawn(async move {
        let answer =
            common::raw_exchange(addr, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        (answer, tokio::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let closed = tokio::time::Instant::now();
    ws.close(None).await.unwrap();
    drop(ws);
    let (answer, at) = common::within(5, "the connection after the socket", waiting)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        at >= closed,
        "answered while the WebSocket still held the only slot"
    );
    server.stop().await;
}
