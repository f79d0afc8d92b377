//! The seed-003 face: the TestbedOS server's `/api/...` routes on a listener of their own
//! (`--testbed-listen`, port 3355 by the original), over the deployments and agents apps.
//!
//! - `original`: the original's wire types, transcribed (commands, states, the orchestration
//!   protocol's messages);
//! - `deployments`: deployments in the original's shapes, actions, state resets, the state
//!   document, the log index and log files;
//! - `orchestration`: `/api/orchestration/ws`, both the released CLI's protocol (no query) and
//!   the design document's log stream (`?uuid=`);
//! - `cluster`: clients joining, their membership checks, the cluster configuration document.
//!
//! Deployments are `{"name", "project_location", "state", "last_action_uuid"}` with the
//! original's `DeploymentState`: `"up"`, `"down"`, `"running"`, or `{"failed": COMMAND}`
//! carrying the original's `DeploymentCommand` that failed. An action runs the server's
//! template named by the command (`up`, `down`, `snapshot`, `testbed_snapshot`,
//! `generate_artefacts`, ...) with one argument (`{args}`), the request as JSON, as the
//! original handed its orchestrator the command; its success leaves the state the original's
//! rule says: `up` up, `down` and `clear_artefacts` down, anything else the state before.
//!
//! Errors are JSON, `{"code": HTTP_STATUS, "message": "..."}`. Differences from the original,
//! on purpose: its errors were mostly 500s with a text body; here they are 400 (bad input,
//! naming the field), 404, 409 (a deployment busy or up, a name taken) with the JSON shape.
//! `GET /api/` answers 200 (the original had no such route and answered 404; its CLI only
//! needs an answer). The orchestrator's state document (`/api/deployments/{name}/state`) is
//! kept in the replicated state rather than in the project folder, since actions may run on
//! another host; the project folder is not checked at creation for the same reason. Deleting
//! an `up` deployment is refused, as the original does.

mod cluster;
mod deployments;
mod doc;
mod orchestration;
pub mod original;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::deployments::{Deployment, DeploymentCommand, DeploymentReply};
use switchyard_core::{Command, Reply};

use crate::api::Shared;
use crate::error::ApiError;
use crate::routes::Routes;

/// The face's routes.
pub fn routes() -> Routes<Shared> {
    use cluster::*;
    use deployments::*;
    Routes::new()
        .get("/api", root)
        .get("/api/", root)
        .get("/api/deployments", list)
        .post("/api/deployments", create)
        .get("/api/deployments/{name}", get_one)
        .put("/api/deployments/{name}", put)
        .delete("/api/deployments/{name}", delete)
        .get("/api/deployments/{name}/state", get_document)
        .post("/api/deployments/{name}/state", post_document)
        .post("/api/deployments/{name}/action", action)
        .get("/api/deployments/{name}/logs", log_index)
        .get("/api/active-deployments", active)
        .get("/api/orchestration/ws", orchestration::ws)
        .get("/api/orchestration/logs/{file}", log_text)
        .post("/api/cluster", join)
        .get("/api/cluster/{name}", membership)
        .get("/api/config/cluster", cluster_config)
        .get("/api/config/status", || async { StatusCode::OK })
}

/// The face's routes and its document at `/openapi.json` (and `/docs`).
pub(crate) fn own_routes() -> Routes<Shared> {
    routes().merge(crate::docs_page::routes(doc::openapi().to_string().into()))
}

/// The face alone, for its own listener.
pub fn router(s: Shared) -> Router {
    // A state document may be as large as the original's limit (axum's default, 2 MiB).
    let max_body = s
        .node
        .config
        .max_body_bytes
        .max(switchyard_core::deployments::MAX_DOCUMENT);
    let guard = crate::api::guard(&s, crate::auth::Style::Testbed);
    own_routes()
        .into_router()
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(axum::middleware::map_response(
            move |r: axum::response::Response| async move {
                // The body limit's own refusal is text; answer in the face's error shape.
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    let msg = format!("body: larger than {max_body} bytes");
                    return error(StatusCode::PAYLOAD_TOO_LARGE, &msg).into_response();
                }
                r
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(crate::gate::GateLayer(guard))
        .with_state(s)
}

/// An error in the original's shape, `{"code": STATUS, "message": "..."}`.
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"code": self.status.as_u16(), "message": self.message})),
        )
            .into_response()
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn refused(e: ApiError) -> Refusal {
    error(e.status, e.message)
}

type Answer = Result<Response, Refusal>;

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        error(
            StatusCode::BAD_REQUEST,
            format!("{field}: {}", e.into_inner()),
        )
    })
}

#[derive(Deserialize, Default)]
struct Pretty {
    pretty: Option<bool>,
}

fn json_answer(v: &Value, pretty: &Pretty) -> Response {
    let text = if pretty.pretty == Some(true) {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .expect("a JSON value serialises");
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn linearizable(s: &Shared) -> Result<(), Refusal> {
    s.node
        .linearizable()
        .await
        .map(drop)
        .map_err(|e| refused(e.into()))
}

fn lookup(s: &Shared, name: &str) -> Result<Deployment, Refusal> {
    switchyard_core::jobs::validate_name("name", name).map_err(|e| refused(e.into()))?;
    s.node
        .view
        .read(|st| st.deployments.get(name).cloned())
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("deployment {name:?} does not exist"),
            )
        })
}

async fn run(s: &Shared, cmd: DeploymentCommand) -> Result<DeploymentReply, Refusal> {
    switchyard_core::deployments::validate(&cmd).map_err(|e| refused(e.into()))?;
    match s.node.write(Command::Deployments(cmd), None).await {
        Ok((Reply::Deployments(r), _)) => Ok(r),
        Ok((other, _)) => Err(refused(ApiError::internal(format!(
            "deployments command answered {other:?}"
        )))),
        Err(e) => Err(refused(e.into())),
    }
}

/// `GET /api/`: the client's first request, to see that a server answers.
async fn root() -> Response {
    axum::Json(json!({"server": "switchyard", "face": "testbedos"})).into_response()
}
