//! The HTTP error type: it owns the mapping from every failure to a status code and the JSON
//! error body `{"error": {"code", "message", "details"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_core::CommandError;
use switchyard_node::NodeError;
use switchyard_types::{ErrorBody, ErrorCode, ErrorInfo};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `invalid`, naming the field.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Invalid,
            format!("{field}: {message}"),
        )
        .with_details(json!({"field": field}))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 503 `unavailable`: no leader, no quorum, or shutting down.
    pub fn unavailable(message: impl Into<String>, leader: Option<Value>) -> Self {
        let e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        );
        match leader {
            Some(l) => e.with_details(json!({"leader": l})),
            None => e,
        }
    }

    /// 500: the details go to the log, not to the client.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the server log has the details",
        )
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let message = e.to_string();
        match e {
            CommandError::Invalid { field, .. } => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, message)
                    .with_details(json!({"field": field}))
            }
            CommandError::NotFound { .. } => Self::not_found(message),
            CommandError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            CommandError::Busy { transition, .. } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::Busy, message)
                    .with_details(json!({"transition": transition}))
            }
            CommandError::ActionRunning {
                action_id,
                action,
                job_id,
                ..
            } => Self::new(StatusCode::CONFLICT, ErrorCode::Busy, message).with_details(
                json!({"action": {"action_id": action_id, "action": action, "job_id": job_id}}),
            ),
            CommandError::NotAllowed { allowed_from, .. } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::NotAllowed, message)
                    .with_details(json!({"allowed_from": allowed_from}))
            }
            CommandError::InsufficientFunds {
                account,
                balance,
                amount,
            } => Self::new(StatusCode::CONFLICT, ErrorCode::InsufficientFunds, message)
                .with_details(json!({"account": account, "balance": balance, "amount": amount})),
        }
    }
}

/// The one mapping of a node's errors to HTTP.
impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let message = e.to_string();
        match e {
            NodeError::NotLeader { leader } => Self::unavailable(
                message,
                leader.map(|l| json!({"node_id": l.node_id, "api": l.api})),
            ),
            NodeError::OutcomeUnknown { .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, message)
            }
            NodeError::Unavailable { .. } => Self::unavailable(message, None),
            NodeError::Refused(e) => e.into(),
            // Logged where it arose.
            NodeError::Internal { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error; the server log has the details",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code.as_str().to_string(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
