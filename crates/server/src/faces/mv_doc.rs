//! The mv face's OpenAPI document, built from the `mv` device type it serves (the original,
//! FastAPI, served its own at `/openapi.json` and `/docs`): each command's routes with the
//! body its pydantic model required, the delays the type's commands take (its
//! `min_duration`/`max_duration`, the `config.delay` of a phase that reads it), the
//! attributes' values, and the original's error shapes (`{"detail": ...}`; a 5xx of the node
//! itself keeps the API's error body).

use serde_json::{Value, json};
use switchyard_core::devices::types::{CommandDef, DeviceType, DurationSource};

use super::mv::COMMANDS;

const DETAIL: &str = "#/components/schemas/Detail";
const REFUSED: &str = "#/components/schemas/Refused";
const INVALID: &str = "#/components/schemas/Invalid";
const NODE_ERROR: &str = "#/components/schemas/ErrorBody";

fn answer(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}})
}

/// The answers every route of the face can give besides its own.
fn common(responses: &mut Value) {
    let r = responses.as_object_mut().expect("responses are an object");
    r.insert(
        "401".into(),
        answer("tokens are on and none or an unknown one was given", DETAIL),
    );
    r.insert(
        "403".into(),
        answer(
            "a read-only token for a command, or a browser page of another origin",
            DETAIL,
        ),
    );
    r.insert(
        "500".into(),
        answer("internal: the server log has the details", NODE_ERROR),
    );
    r.insert(
        "503".into(),
        answer("unavailable: no leader or no quorum", NODE_ERROR),
    );
}

/// A delay in seconds as a command of the type takes it.
fn delay(def: &CommandDef) -> Value {
    json!({
        "type": ["number", "null"],
        "minimum": def.min_ms as f64 / 1000.0,
        "maximum": def.max_ms as f64 / 1000.0,
        "description": format!("seconds (default {})", def.default_ms as f64 / 1000.0)
    })
}

/// The body of `command`'s routes: the original's `DelayArgs` or `ConfigArgs`.
fn body(name: &str, def: &CommandDef, background: bool) -> Value {
    let keys = super::mv::required_keys(name);
    let mut config = json!({"type": ["object", "null"], "description": "passed to the command"});
    // A phase timed by `config.delay` takes the command's range there too.
    for p in &def.phases {
        if let DurationSource::Arg(path) = &p.duration
            && let [first, key] = path.as_slice()
            && first == "config"
        {
            config["properties"][key] = delay(def);
        }
    }
    json!({
        "required": background,
        "description": if background {
            "required (no body or null is a 422 `missing`)"
        } else {
            "optional"
        },
        "content": {"application/json": {"schema": {
            "type": if background { json!("object") } else { json!(["object", "null"]) },
            "required": keys,
            "properties": {"delay": delay(def), "config": config}
        }}}
    })
}

fn command(name: &str, def: &CommandDef, background: bool) -> Value {
    let summary = if background {
        format!("Start {name}: checks busy and allowed, answers null at once while it runs.")
    } else {
        format!("Run {name}: answers null once it has finished.")
    };
    let mut responses = json!({
        "200": {"description": "null", "content": {"application/json": {"schema": {"type": "null"}}}},
        "404": answer("the face's device does not exist", DETAIL),
        "405": answer("busy, or not allowed from the current state (the original's texts)", REFUSED),
        "422": answer("the body is not the command's model, or a delay is out of range", INVALID),
    });
    if !background {
        responses["504"] = answer(
            "timeout: the command had not ended in time; it goes on",
            NODE_ERROR,
        );
    }
    common(&mut responses);
    json!({"post": {
        "tags": ["mv"],
        "operationId": if background { format!("background_{name}") } else { name.to_string() },
        "summary": summary,
        "requestBody": body(name, def, background),
        "responses": responses
    }})
}

fn attribute(def: &DeviceType, name: &str) -> Value {
    let values: Vec<Value> = def
        .attributes
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.values.iter().map(|v| json!(v)).collect())
        .unwrap_or_default();
    let mut values = values;
    values.push(Value::Null);
    let mut responses = json!({
        "200": {"description": format!("the {name} as a JSON string, or null"),
            "content": {"application/json": {"schema": {"enum": values}}}},
        "404": answer("the face's device does not exist", DETAIL),
    });
    common(&mut responses);
    json!({"get": {"tags": ["mv"], "operationId": name, "summary": format!("The {name}."),
        "responses": responses}})
}

/// The face's document for the device type `def`.
pub(crate) fn openapi(def: &DeviceType) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert("/state".into(), attribute(def, "state"));
    paths.insert("/obs_state".into(), attribute(def, "obs_state"));
    for name in COMMANDS {
        let Some(c) = def.commands.get(name) else {
            continue;
        };
        paths.insert(format!("/{name}"), command(name, c, false));
        paths.insert(format!("/background_{name}"), command(name, c, true));
    }
    let mut abort = json!({
        "200": {"description": "null", "content": {"application/json": {"schema": {"type": "null"}}}},
        "404": answer("the face's device does not exist", DETAIL),
        "405": answer("nothing is in flight", REFUSED),
    });
    common(&mut abort);
    paths.insert(
        "/abort".into(),
        json!({"post": {"tags": ["mv"], "operationId": "abort",
        "summary": "Abort the command in flight (the original listed abort but had none).",
        "responses": abort}}),
    );
    paths.insert("/".into(), json!({"get": {"tags": ["mv"], "operationId": "socket",
        "summary": "WebSocket: the combined state `{\"state\", \"obs_state\"}` on every change; text sent is echoed.",
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket"},
            "400": answer("not a WebSocket upgrade", DETAIL),
            "401": answer("tokens are on and none or an unknown one was given", DETAIL),
            "403": answer("a browser page of another origin", DETAIL)
        }}}));
    paths.extend(crate::docs_page::paths());
    let node_error = json!({"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}
    }}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "switchyard: the mv face",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The routes of the mv state-machine server (FastAPI) for one device of type mv, on `--mv-listen`. Errors are `{\"detail\": ...}`; a fault of the node itself (no leader, a timeout) keeps the API's error body."
        },
        "paths": paths,
        "components": {"schemas": {
            "Detail": {"type": "object", "required": ["detail"],
                "properties": {"detail": {"type": "string"}}},
            "Refused": {"type": "object", "required": ["detail"],
                "properties": {"detail": {"type": "array", "items": {"type": "string"}}}},
            "Invalid": {"type": "object", "required": ["detail"],
                "properties": {"detail": {"type": "array",
                    "description": "pydantic's error objects (`type`, `loc`, `msg`, `input`), or a message of the face's own",
                    "items": {"type": ["object", "string"]}}}},
            "ErrorBody": node_error
        }}
    })
}
