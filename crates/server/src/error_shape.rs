//! Every error of every listener in that listener's shape, the framework's own included.
//!
//! A handler's errors are already shaped (`ApiError` on /v1, each face its original's). Two
//! kinds of answer are not written by a handler:
//!
//! - **axum's rejections** (a path segment that is not UTF-8, a body over the limit, a
//!   missing route or method where no fallback answers): plain text or an empty body.
//!   [`reshape`] is a gate on every listener (through `listen::guard`) that rewrites an
//!   error answer with a `text/plain` body, or, on the /v1 and Altair listeners, an empty one,
//!   into the listener's shape with the same status and message.
//! - **hyper's automatic answers** to a request head it cannot parse (400 for a malformed
//!   request line or header, 414 for a URI too long, 431 for too many or too large headers):
//!   hyper writes them itself, a head with `content-length: 0` and no hook to give a body
//!   (`proto/h1/role.rs`, `Server::on_error`), then closes the connection. [`HyperAnswers`]
//!   wraps each HTTP/1 connection's IO and replaces that head, on its way out, with the same
//!   status and a body in the listener's shape. (HTTP/2 has no such answers: h2 refuses a
//!   malformed request with a stream reset.)

use std::pin::Pin;
use std::task::{Context, Poll};
use switchyard_types::ErrorCode;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_types::{ErrorBody, ErrorInfo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::Style;
use crate::gate::Answer;

/// The error code of a status the framework answers with.
pub(crate) fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::Invalid,
    }
}

/// The style that answers `path` on a listener of `style`: the Altair routes keep their own
/// shape on the API listener too.
pub(crate) fn style_for(style: Style, path: &str) -> Style {
    match style {
        Style::V1 if path.starts_with("/api/") || path.starts_with("/sockets/") => Style::Altair,
        s => s,
    }
}

/// An error body in `style`'s shape: its content type and bytes.
pub(crate) fn body(
    style: Style,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> (&'static str, String) {
    let value = match style {
        Style::V1 => {
            let b = ErrorBody {
                error: ErrorInfo {
                    code: code.as_str().to_string(),
                    message: message.to_string(),
                    details: None,
                },
            };
            serde_json::to_value(b).expect("an error body serialises")
        }
        Style::Altair => json!({"status": status.as_u16(), "message": message}),
        Style::Testbed => json!({"code": status.as_u16(), "message": message}),
        Style::FastApi => json!({"detail": message}),
        Style::Text => return ("text/plain; charset=utf-8", message.to_string()),
    };
    ("application/json", value.to_string())
}

/// An error answer to `path` on a listener of `style`, in the path's shape.
pub(crate) fn response(
    style: Style,
    path: &str,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    shaped(style_for(style, path), status, code, message)
}

/// An error answer in `shape`.
fn shaped(shape: Style, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let (content_type, text) = body(shape, status, code, message);
    (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// Longest framework message kept (axum's are one line).
const MAX_MESSAGE: usize = 4096;

/// What a status means when the framework gave no message.
fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route".into(),
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".into(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    }
}

/// A framework's error answer (plain text, or empty where the listener's errors are never
/// empty) rewritten into `shape` (the [`style_for`] the request's path on a listener of
/// `style`); other answers as they are. The layer is `listen::guard`'s gate.
pub(crate) fn reshape(style: Style, shape: Style, resp: Response) -> Answer {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Answer::Now(resp);
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE);
    let text = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    // The originals of the TestbedOS face and the funkytown reporter answered some errors
    // with an empty body (membership 404); /v1 and Altair never do.
    let empty_is_framework = matches!(shape, Style::V1 | Style::Altair);
    let empty =
        content_type.is_none() && http_body::Body::size_hint(resp.body()).exact() == Some(0);
    if !(text || (empty && empty_is_framework)) || matches!(style, Style::Text) {
        return Answer::Now(resp);
    }
    Answer::Later(Box::pin(async move {
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_MESSAGE)
            .await
            .unwrap_or_default();
        let message = match String::from_utf8_lossy(&bytes).trim() {
            "" => default_message(status),
            m => m.to_string(),
        };
        shaped(shape, status, code_of(status), &message)
    }))
}

/// The statuses hyper answers by itself to a request head it cannot parse.
const AUTOMATIC: [(&[u8], StatusCode, &str); 3] = [
    (
        b"HTTP/1.1 400 ",
        StatusCode::BAD_REQUEST,
        "malformed request: the request line or a header is not valid HTTP/1.1",
    ),
    (
        b"HTTP/1.1 414 ",
        StatusCode::URI_TOO_LONG,
        "the request target is too long",
    ),
    (
        b"HTTP/1.1 431 ",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "too many or too large request headers (at most 100 headers)",
    ),
];

/// Recognise hyper's automatic answer: one of [`AUTOMATIC`]'s status lines, `content-length:
/// 0` and no content type (every answer of a handler or of [`reshape`] has one).
fn automatic(head: &[u8]) -> Option<(StatusCode, &'static str)> {
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let (_, status, message) = AUTOMATIC.iter().find(|(line, ..)| head.starts_with(line))?;
    let lower = head.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    (has(b"\r\ncontent-length: 0\r\n") && !has(b"\r\ncontent-type:")).then_some((*status, message))
}

/// A connection's IO whose writes pass through, except hyper's automatic error answer, which
/// is replaced by the same status with a body in the listener's shape.
pub(crate) struct HyperAnswers<IO> {
    io: IO,
    style: Style,
    /// The replacement still to be written, and how many bytes of hyper's answer it stands
    /// for (reported written once the replacement is out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<IO> HyperAnswers<IO> {
    pub(crate) fn new(io: IO, style: Style) -> Self {
        Self {
            io,
            style,
            pending: None,
        }
    }

    fn replacement(&self, status: StatusCode, message: &str) -> Vec<u8> {
        let (content_type, text) = body(self.style, status, code_of(status), message);
        let reason = status.canonical_reason().unwrap_or("");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n",
            status.as_u16(),
            text.len()
        );
        out.push_str("\r\n");
        out.push_str(&text);
        out.into_bytes()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HyperAnswers<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HyperAnswers<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none()
            && let Some((status, message)) = automatic(buf)
        {
            let bytes = this.replacement(status, message);
            this.pending = Some((bytes, 0, buf.len()));
        }
        if let Some((bytes, written, stands_for)) = &mut this.pending {
            while *written < bytes.len() {
                match Pin::new(&mut this.io).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                    Poll::Ready(Ok(n)) => *written += n,
                    other => return other,
                }
            }
            let n = *stands_for;
            this.pending = None;
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_empty_answers_are_recognised() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            automatic(hyper).map(|(s, _)| s),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            automatic(bad).map(|(s, _)| s),
            Some(StatusCode::BAD_REQUEST)
        );
        // A handler's answer has a content type, and another status is left alone.
        let handler =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic(handler), None);
        assert_eq!(
            automatic(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            automatic(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"),
            None
        );
    }
}
