//! Minimal clients for the benchmark peers, so every peer is driven by the same Rust driver
//! without extra dependencies: RESP (Redis), the PostgreSQL simple-query protocol (trust
//! authentication only, as the benchmark's throwaway local server uses), and the NATS core
//! protocol (no TLS, no authentication) with the few JetStream requests the watch benchmark
//! makes.

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A Redis reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Ok(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn int(&self) -> anyhow::Result<i64> {
        match self {
            Resp::Int(i) => Ok(*i),
            other => bail!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn bulk(self) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Resp::Bulk(b) => Ok(b),
            Resp::Array(None) => Ok(None),
            other => bail!("expected a bulk reply, got {other:?}"),
        }
    }
}

/// One Redis connection.
pub struct Redis {
    io: BufReader<TcpStream>,
}

impl Redis {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("redis at {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::new(s),
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Send several commands in one write and read their replies (a pipeline).
    pub async fn pipeline(&mut self, cmds: &[Vec<&[u8]>]) -> anyhow::Result<Vec<Resp>> {
        let mut out = Vec::new();
        for c in cmds {
            Self::encode(&mut out, c);
        }
        self.io.get_mut().write_all(&out).await?;
        let mut replies = Vec::with_capacity(cmds.len());
        for _ in cmds {
            replies.push(self.read().await?);
        }
        Ok(replies)
    }

    pub async fn cmd(&mut self, args: &[&[u8]]) -> anyhow::Result<Resp> {
        let mut r = self.pipeline(&[args.to_vec()]).await?;
        Ok(r.remove(0))
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        let mut l = String::new();
        if self.io.read_line(&mut l).await? == 0 {
            bail!("redis closed the connection");
        }
        Ok(l.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read(&mut self) -> futures::future::BoxFuture<'_, anyhow::Result<Resp>> {
        Box::pin(async move {
            let l = self.line().await?;
            let (kind, rest) = l.split_at(1);
            Ok(match kind {
                "+" => Resp::Ok(rest.to_string()),
                "-" => bail!("redis: {rest}"),
                ":" => Resp::Int(rest.parse()?),
                "$" => {
                    let n: i64 = rest.parse()?;
                    if n < 0 {
                        Resp::Bulk(None)
                    } else {
                        let mut b = vec![0; n as usize + 2];
                        self.io.read_exact(&mut b).await?;
                        b.truncate(n as usize);
                        Resp::Bulk(Some(b))
                    }
                }
                "*" => {
                    let n: i64 = rest.parse()?;
                    if n < 0 {
                        Resp::Array(None)
                    } else {
                        let mut items = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            items.push(self.read().await?);
                        }
                        Resp::Array(Some(items))
                    }
                }
                other => bail!("redis: unexpected reply type {other:?}"),
            })
        })
    }
}

/// One PostgreSQL connection (simple-query protocol, trust authentication).
pub struct Postgres {
    io: BufReader<TcpStream>,
}

impl Postgres {
    pub async fn connect(addr: &str, user: &str, database: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("postgres at {addr}"))?;
        s.set_nodelay(true)?;
        let mut pg = Self {
            io: BufReader::new(s),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in [("user", user), ("database", database)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        pg.io.get_mut().write_all(&msg).await?;
        loop {
            let (kind, payload) = pg.message().await?;
            match kind {
                b'R' if payload[..4] == [0, 0, 0, 0] => {}
                b'R' => bail!("postgres asks for a password; the benchmark server uses trust"),
                b'E' => bail!("postgres: {}", error_text(&payload)),
                b'Z' => return Ok(pg),
                _ => {}
            }
        }
    }

    async fn message(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let kind = self.io.read_u8().await?;
        let len = self.io.read_i32().await? as usize;
        let mut payload = vec![0; len - 4];
        self.io.read_exact(&mut payload).await?;
        Ok((kind, payload))
    }

    /// Run one or more statements; the rows of the last result, each column as text.
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.io.get_mut().write_all(&msg).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, p) = self.message().await?;
            match kind {
                b'T' => rows.clear(),
                b'D' => {
                    let n = u16::from_be_bytes([p[0], p[1]]) as usize;
                    let mut at = 2;
                    let mut row = Vec::with_capacity(n);
                    for _ in 0..n {
                        let len = i32::from_be_bytes(p[at..at + 4].try_into()?);
                        at += 4;
                        if len < 0 {
                            row.push(None);
                        } else {
                            let end = at + len as usize;
                            row.push(Some(String::from_utf8_lossy(&p[at..end]).into_owned()));
                            at = end;
                        }
                    }
                    rows.push(row);
                }
                b'E' => error = Some(error_text(&p)),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => bail!("postgres: {e}"),
            None => Ok(rows),
        }
    }
}

fn error_text(payload: &[u8]) -> String {
    payload
        .split(|b| *b == 0)
        .filter(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .next()
        .unwrap_or_else(|| "unknown error".into())
}

/// One message delivered by NATS (`MSG` or `HMSG`).
#[derive(Debug)]
pub struct NatsMsg {
    pub subject: String,
    pub reply: Option<String>,
    /// The header block (`NATS/1.0 ...` and its lines), for `HMSG`.
    pub headers: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl NatsMsg {
    /// A JetStream status message (flow control request or idle heartbeat), not data.
    pub fn is_status(&self) -> bool {
        self.headers
            .as_ref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 100"))
    }
}

/// One NATS connection. [`Nats::next_msg`] is cancel-safe: bytes read stay in the buffer.
pub struct Nats {
    io: TcpStream,
    buf: Vec<u8>,
    /// This connection's reply subjects are `{inbox}.N` (subscribed as sid 0).
    pub inbox: String,
    requests: u64,
    /// Messages that arrived while [`Nats::request`] waited for its answer.
    pending: std::collections::VecDeque<NatsMsg>,
}

impl Nats {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let io = TcpStream::connect(addr)
            .await
            .with_context(|| format!("nats at {addr}"))?;
        io.set_nodelay(true)?;
        let inbox = format!(
            "_INBOX.{}.{}",
            std::process::id(),
            INBOXES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut n = Self {
            io,
            buf: Vec::with_capacity(64 * 1024),
            inbox,
            requests: 0,
            pending: Default::default(),
        };
        let info = n.line().await?;
        if !info.starts_with("INFO ") {
            bail!("nats: expected INFO, got {info:?}");
        }
        let connect = r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1,"name":"switchyard-bench"}"#;
        let hello = format!("CONNECT {connect}\r\nSUB {}.* 0\r\nPING\r\n", n.inbox);
        n.io.write_all(hello.as_bytes()).await?;
        loop {
            match n.line().await?.as_str() {
                "PONG" => return Ok(n),
                l if l.starts_with("-ERR") => bail!("nats: {l}"),
                _ => {}
            }
        }
    }

    /// Subscribe `sid` to `subject`.
    pub async fn sub(&mut self, subject: &str, sid: u64) -> anyhow::Result<()> {
        self.io
            .write_all(format!("SUB {subject} {sid}\r\n").as_bytes())
            .await?;
        Ok(())
    }

    pub async fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let mut out = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        }
        .into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.io.write_all(&out).await?;
        Ok(())
    }

    /// Publish with a reply subject of this connection and wait for the answer (messages of
    /// other subscriptions arriving meanwhile are kept for [`Nats::next_msg`]).
    pub async fn request(&mut self, subject: &str, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.requests += 1;
        let reply = format!("{}.{}", self.inbox, self.requests);
        self.publish(subject, Some(&reply), payload).await?;
        loop {
            let m = self.read_msg().await?;
            if m.subject == reply {
                if m.headers
                    .as_ref()
                    .is_some_and(|h| h.starts_with(b"NATS/1.0 503"))
                {
                    bail!("nats: no responders on {subject} (is JetStream on?)");
                }
                return Ok(m.payload);
            }
            self.pending.push_back(m);
        }
    }

    /// Move the buffer's first line out, if it holds a whole one.
    fn take_line(&mut self) -> Option<String> {
        let end = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 2);
        Some(line)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.io.read_buf(&mut self.buf).await? == 0 {
            bail!("nats closed the connection");
        }
        Ok(())
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(l) = self.take_line() {
                return Ok(l);
            }
            self.fill().await?;
        }
    }

    /// The next message; answers the server's pings on the way.
    pub async fn next_msg(&mut self) -> anyhow::Result<NatsMsg> {
        match self.pending.pop_front() {
            Some(m) => Ok(m),
            None => self.read_msg().await,
        }
    }

    async fn read_msg(&mut self) -> anyhow::Result<NatsMsg> {
        loop {
            // Parse only once the whole message is buffered, so a cancelled call loses nothing.
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let parts: Vec<&str> = head.split_ascii_whitespace().collect();
                match parts.first().copied() {
                    Some("MSG") | Some("HMSG") => {
                        let hmsg = parts[0] == "HMSG";
                        // MSG subject sid [reply] bytes; HMSG subject sid [reply] hdr total
                        let fixed = if hmsg { 5 } else { 4 };
                        let reply = (parts.len() == fixed + 1).then(|| parts[3].to_string());
                        let total: usize = parts[parts.len() - 1].parse()?;
                        let hdr: usize = if hmsg {
                            parts[parts.len() - 2].parse()?
                        } else {
                            0
                        };
                        let start = end + 2;
                        if self.buf.len() < start + total + 2 {
                            self.fill().await?;
                            continue;
                        }
                        let body = &self.buf[start..start + total];
                        let msg = NatsMsg {
                            subject: parts[1].to_string(),
                            reply,
                            headers: hmsg.then(|| body[..hdr].to_vec()),
                            payload: body[hdr..].to_vec(),
                        };
                        self.buf.drain(..start + total + 2);
                        return Ok(msg);
                    }
                    Some("PING") => {
                        self.buf.drain(..end + 2);
                        self.io.write_all(b"PONG\r\n").await?;
                    }
                    Some("-ERR") => bail!("nats: {head}"),
                    // PONG, +OK, INFO
                    _ => {
                        self.buf.drain(..end + 2);
                    }
                }
                continue;
            }
            self.fill().await?;
        }
    }
}

/// Makes every connection's inbox unique within the process.
static INBOXES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
