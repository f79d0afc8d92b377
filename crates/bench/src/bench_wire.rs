//! Minimal clients for the benchmark peers, so every peer is driven by the same Rust driver
//! without extra dependencies: RESP (Redis) and the PostgreSQL simple-query protocol (trust
//! authentication only, as the benchmark's throwaway local server uses).

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
