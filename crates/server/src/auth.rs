//! Bearer-token auth, off unless a token file is configured.
//!
//! When on: every mutation (POST, PUT, PATCH, DELETE) needs a token with `write` access (no
//! token or an unknown one: 401 `unauthorized`; a `read` token: 403 `forbidden`); every socket
//! (a WebSocket upgrade, and `/v1/watch` also as SSE) needs a valid token, from the
//! `Authorization: Bearer` header or the `token` query parameter; plain reads stay public unless
//! `read_requires_token = true`, and then need the header (a server-sent event stream, such as a
//! log follow, may use the query parameter). `/v1/health` is always public.
//!
//! The token file (TOML):
//!
//! ```toml
//! read_requires_token = false
//!
//! [[tokens]]
//! name = "tap-1"
//! token = "a long random string"
//! access = "write"   # or "read"
//! ```

use std::path::Path;
use switchyard_types::ErrorCode;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: String,
    access: Access,
}

/// The loaded token file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    read_requires_token: bool,
    tokens: Vec<TokenEntry>,
}

/// Shortest token accepted.
const MIN_TOKEN_LEN: usize = 16;

impl Auth {
    /// Load and check a token file; the message names the file and the problem.
    pub fn load(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let auth: Auth =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        if auth.tokens.is_empty() {
            return Err(format!(
                "{}: tokens: list at least one token",
                path.display()
            ));
        }
        for (i, t) in auth.tokens.iter().enumerate() {
            if t.token.len() < MIN_TOKEN_LEN || t.token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "{}: tokens[{i}] ({}): token must be at least {MIN_TOKEN_LEN} characters without spaces",
                    path.display(),
                    t.name
                ));
            }
        }
        Ok(auth)
    }

    /// A token with write access (the server's own local workers use it).
    pub fn write_token(&self) -> Option<&str> {
        self.tokens
            .iter()
            .find(|t| t.access == Access::Write)
            .map(|t| t.token.as_str())
    }

    fn find(&self, presented: &str) -> Option<&TokenEntry> {
        self.tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
    }
}

use crate::peer_auth::constant_time_eq;

/// How a refusal is written: the /v1 error body, or a compatibility face's own shape.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    V1,
    /// Altair: `{"status", "message"}`.
    Altair,
    /// FastAPI: `{"detail": ...}`.
    FastApi,
    /// TestbedOS: `{"code", "message"}`.
    Testbed,
    /// funkytown's reporter: plain text.
    Text,
}

/// Middleware state.
#[derive(Debug, Clone)]
pub struct Guard {
    /// `None`: auth is off and every request passes.
    pub auth: Option<std::sync::Arc<Auth>>,
    pub style: Style,
}

pub(crate) fn refuse(
    style: Style,
    path: &str,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    let mut resp = crate::error_shape::response(style, path, status, code, message);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

fn presented(req: &Request, allow_query: bool) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    if !allow_query {
        return None;
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(percent_decode)
    })
}

/// A query value as a browser's `encodeURIComponent` (or a form) wrote it: `%XX` escapes and
/// `+` for a space. A malformed escape is kept as is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Guard {
    /// The answer refusing `req`, if it is refused.
    pub(crate) fn refusal(&self, req: &Request) -> Option<Response> {
        let auth = self.auth.as_ref()?;
        let path = req.uri().path();
        // The health check, and the dashboard's static files (no data: the page asks for a token).
        let dashboard =
            matches!(self.style, Style::V1) && (path == "/" || path.starts_with("/ui/"));
        // A join request proves the cluster's join token instead (checked by its handler).
        let join = path == crate::peer_auth::JOIN_PATH
            && req.method() == Method::POST
            && req.headers().contains_key(crate::peer_auth::HEADER);
        let health =
            path == "/v1/health" || (matches!(self.style, Style::Text) && path == "/health");
        if health || dashboard || join {
            return None;
        }
        let socket = req.headers().contains_key(header::UPGRADE) || path == "/v1/watch";
        let mutation = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if !socket && !mutation && !auth.read_requires_token {
            return None;
        }
        // A browser's EventSource cannot send headers, so a server-sent event stream (a log
        // follow) may present its token in the query as a socket does; other reads may not (a
        // token in a URL ends up in logs and histories).
        let stream = req.method() == Method::GET
            && req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream"));
        let token = presented(req, socket || stream);
        let Some(entry) = token.as_deref().and_then(|t| auth.find(t)) else {
            let what = if token.is_some() {
                "unknown token"
            } else {
                "no token"
            };
            let how = if socket || stream {
                "send Authorization: Bearer TOKEN or ?token=TOKEN"
            } else {
                "send Authorization: Bearer TOKEN"
            };
            return Some(refuse(
                self.style,
                path,
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &format!("{what}: {how}"),
            ));
        };
        if mutation && entry.access != Access::Write {
            let msg = format!(
                "token {:?} is read-only; this needs a token with write access",
                entry.name
            );
            return Some(refuse(
                self.style,
                path,
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                &msg,
            ));
        }
        None
    }
}

/// The auth check in front of a router (a face's; the API's also records metrics).
impl crate::gate::Gate for Guard {
    type Memo = ();

    fn admit(&self, req: &Request) -> ((), Option<Response>) {
        ((), self.refusal(req))
    }

    fn answer((): (), resp: Response) -> crate::gate::Answer {
        crate::gate::Answer::Now(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_tokens_are_decoded_as_a_browser_encodes_them() {
        assert_eq!(percent_decode("abc%2B%2F%3D%25x"), "abc+/=%x");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("plain-token_123"), "plain-token_123");
        assert_eq!(percent_decode("bad%zzend%4"), "bad%zzend%4");
    }
}
