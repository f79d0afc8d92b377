//! The constraints the handlers and `core` check that the wire types' annotations cannot
//! state, written into the document from the same constants and lists the checks use: the
//! query filters' enums, names in paths and bodies, argv templates, the glass volumes, the
//! run's matrix, and the rules that tie one field to another where JSON Schema can say them.
//! (Rules it cannot say, e.g. that two fields differ, are in the operation's description and
//! its 400 answer.)

use serde_json::{Value, json};
use switchyard_core::beers::GLASSES;
use switchyard_core::deployments::{self, MAX_DOCUMENT, MAX_FAILED_COMMAND};
use switchyard_core::devices::types::MAX_DURATION_MS;
use switchyard_core::jobs::{MAX_ARGS, Status};
use switchyard_core::runs::{FUNKYTOWN_DIMENSIONS, MAX_DIMENSIONS, MAX_VALUE};

/// Queue, worker, agent, deployment and action names (`jobs::validate_name`).
pub(super) fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$"})
}

/// Text without NUL (argv elements, paths).
fn no_nul() -> Value {
    json!({"type": "string", "pattern": "^[^\\x00]*$"})
}

/// An argv (template): a program first, then its arguments (`jobs::validate_spec`).
fn argv() -> Value {
    json!({
        "type": "array", "minItems": 1, "maxItems": MAX_ARGS,
        "prefixItems": [{"type": "string", "minLength": 1, "pattern": "^[^\\x00]+$"}],
        "items": no_nul()
    })
}

/// A path: not empty, no NUL.
fn path() -> Value {
    json!({"type": ["string", "null"], "minLength": 1, "pattern": "^[^\\x00]+$"})
}

/// Text of one matrix value (`runs::check_value`): no control characters.
fn value() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_VALUE,
        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$"})
}

/// Labels a worker must have: names as keys.
fn labels() -> Value {
    json!({"type": "object", "propertyNames": name(), "additionalProperties": {"type": "string"}})
}

/// Environment variables (`jobs::validate_spec`): names of `A-Z a-z 0-9 _` not starting with
/// a digit, values without NUL.
fn env() -> Value {
    json!({"type": "object",
        "propertyNames": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": no_nul()})
}

/// The glass types' names, as `GET /v1/beers?type=` takes them.
pub(super) fn glasses() -> Vec<&'static str> {
    GLASSES.iter().map(|(n, _, _)| *n).collect()
}

/// The schema of a parameter that the handler checks beyond its annotation's type.
pub(super) fn parameter(path: &str, place: &str, param: &str) -> Option<Value> {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    Some(match (place, path, param) {
        ("query", "/v1/beers", "type") => json!({"type": "string", "enum": glasses()}),
        ("query", "/v1/jobs" | "/v1/runs/{id}/cells", "status") => {
            json!({"type": "string", "enum": statuses})
        }
        ("query", "/v1/jobs", "queue") => name(),
        ("query", "/v1/beers", "since" | "until") => {
            json!({"type": "string", "format": "date-time"})
        }
        ("path", "/v1/deployments/{name}/actions/{action}", "action") => name(),
        // 0 is no node id: openraft's ids here start at 1.
        ("path", "/v1/cluster/members/{node_id}", "node_id") => {
            json!({"type": "integer", "format": "uint64", "minimum": 1, "maximum": u64::MAX})
        }
        _ => return None,
    })
}

/// funkytown's spec file (`runs::FunkytownFile`): the group's name as `groupName` or `name`.
fn funkytown_file() -> Value {
    let list = json!({"type": "array", "minItems": 1, "items": value()});
    json!({
        "type": ["object", "null"], "required": ["groups"], "additionalProperties": false,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tasks"], "additionalProperties": false,
            "properties": {
                "groupName": {"type": ["string", "null"]},
                "name": {"type": ["string", "null"]},
                "tasks": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["spec", "viewports", "browsers"],
                    "additionalProperties": false,
                    "properties": {"spec": value(), "viewports": list, "browsers": list}
                }}
            }
        }}}
    })
}

/// One event of a job's log stream (`GET /v1/jobs/{id}/logs?follow=true`): a `line` per
/// log line (its offset as the event id, the line as JSON), then one `end`.
pub(super) fn log_event() -> Value {
    json!({
        "type": "object", "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["line", "end"]},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "retry": {"type": "integer"}
        }
    })
}

/// The body of `PUT /v1/deployments/{name}/document`: any JSON value.
pub(super) fn document_body() -> Value {
    json!({
        "description": format!("any JSON value, at most {MAX_DOCUMENT} bytes (and within \
            the request body limit), nested at most 128 levels deep"),
        "required": true,
        "content": {"application/json": {"schema": {}}}
    })
}

fn find<'a>(schemas: &'a mut Value, schema: &str, prop: &str) -> &'a mut Value {
    schemas
        .pointer_mut(&format!("/{schema}/properties/{prop}"))
        .unwrap_or_else(|| panic!("the document has no property {schema}.{prop}"))
}

/// The property `prop` of the component schema `schema` is `with` (its description kept).
fn property(schemas: &mut Value, schema: &str, prop: &str, mut with: Value) {
    let p = find(schemas, schema, prop);
    if let (Some(d), Some(w)) = (p.get("description").cloned(), with.as_object_mut()) {
        w.entry("description").or_insert(d);
    }
    *p = with;
}

/// Merge `overlay` into the property `prop` of the component schema `schema` (a null in
/// `overlay` removes that keyword).
fn extend(schemas: &mut Value, schema: &str, prop: &str, overlay: Value) {
    merge(find(schemas, schema, prop), overlay);
}

fn merge(target: &mut Value, overlay: Value) {
    match (target, overlay) {
        (Value::Object(t), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    t.insert(k, v);
                }
            }
        }
        (t, o) => *t = o,
    }
}

/// The component schemas' constraints.
pub(super) fn schemas(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas") else {
        return;
    };
    // Beers: every volume from the smallest glass's lower bound to the largest's upper one
    // has a glass (the bounds meet), so the range is the whole rule.
    let low = GLASSES.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
    let high = GLASSES.iter().map(|g| g.2).fold(0.0, f64::max);
    property(
        schemas,
        "PourRequest",
        "volume",
        json!({"type": "number", "minimum": low, "maximum": high}),
    );
    // Jobs (also each of a batch's).
    property(
        schemas,
        "JobSpec",
        "command",
        json!({
            "oneOf": [argv(), {"type": "string", "pattern": "^[^\\x00]*$",
                "description": "a shell line: [\"/bin/sh\", \"-c\", LINE]"}]
        }),
    );
    property(schemas, "JobSpec", "env", env());
    property(schemas, "JobSpec", "labels", labels());
    property(schemas, "JobSpec", "cwd", path());
    // Agents: labels are names with printable values; the host document an object.
    property(
        schemas,
        "AgentJoin",
        "labels",
        json!({"type": "object", "propertyNames": name(),
            "additionalProperties": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}}),
    );
    let printable = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";
    extend(
        schemas,
        "AgentJoin",
        "hostname",
        json!({"pattern": printable}),
    );
    property(
        schemas,
        "AgentJoin",
        "version",
        json!({"type": "string", "maxLength": 64, "pattern": printable}),
    );
    property(
        schemas,
        "AgentJoin",
        "host",
        json!({"type": ["object", "null"]}),
    );
    property(
        schemas,
        "AgentJoin",
        "url",
        json!({"type": ["string", "null"], "maxLength": 512,
            "pattern": "^https?://[^\\s\\x00-\\x1f\\x7f-\\x9f]*$"}),
    );
    property(
        schemas,
        "AgentJoin",
        "queues",
        json!({"type": "array", "maxItems": 64, "items": name()}),
    );
    // Deployments.
    property(
        schemas,
        "CreateDeployment",
        "actions",
        json!({"type": "object", "propertyNames": name(), "additionalProperties": argv()}),
    );
    property(schemas, "CreateDeployment", "dir", path());
    property(schemas, "CreateDeployment", "env", env());
    property(schemas, "CreateDeployment", "labels", labels());
    property(
        schemas,
        "ActionRequest",
        "args",
        json!({"type": "array", "maxItems": deployments::MAX_ARGS, "items": no_nul()}),
    );
    extend(
        schemas,
        "DeploymentStateRequest",
        "state",
        json!({"type": "string", "enum": ["up", "down", "failed"], "pattern": null}),
    );
    property(
        schemas,
        "DeploymentStateRequest",
        "failed_action",
        json!({"oneOf": [{"type": "null"}, name()],
            "description": format!("With `failed`: the action that failed (the TestbedOS face \
                also stores a command there, as a JSON object of at most {MAX_FAILED_COMMAND} bytes).")}),
    );
    if let Some(s) = schemas.get_mut("DeploymentStateRequest") {
        // `failed_action` only with `failed`.
        s["anyOf"] = json!([
            {"properties": {"state": {"const": "failed"}}},
            {"properties": {"failed_action": {"type": "null"}}}
        ]);
    }
    // Runs: a matrix with its command, or funkytown's file.
    property(
        schemas,
        "CreateRun",
        "matrix",
        json!({"type": ["object", "null"], "minProperties": 1, "maxProperties": MAX_DIMENSIONS,
            "propertyNames": name(),
            "additionalProperties": {"type": "array", "minItems": 1, "items": value()}}),
    );
    property(
        schemas,
        "CreateRun",
        "command",
        json!({"oneOf": [{"type": "null"}, argv()]}),
    );
    property(
        schemas,
        "CreateRun",
        "name",
        json!({"oneOf": [{"type": "null"}, name()]}),
    );
    property(schemas, "CreateRun", "queue", name());
    property(schemas, "CreateRun", "env", env());
    property(schemas, "CreateRun", "labels", labels());
    property(schemas, "CreateRun", "cwd", path());
    extend(
        schemas,
        "CreateRun",
        "timeout",
        json!({"minimum": 1, "maximum": 604_800}),
    );
    extend(
        schemas,
        "CreateRun",
        "max_attempts",
        json!({"minimum": 1, "maximum": 100}),
    );
    if let Some(s) = schemas.get_mut("CreateRun") {
        s["oneOf"] = json!([
            {"required": ["matrix", "command"],
                "properties": {"matrix": {"type": "object"}, "command": {"type": "array"},
                    "funkytown": {"type": "null"}}},
            {"required": ["funkytown"], "properties": {"funkytown": {"type": "object"},
                "matrix": {"type": "null"},
                "exclude": {"items": {"propertyNames": {"enum": FUNKYTOWN_DIMENSIONS}}}}}
        ]);
    }
    property(schemas, "CreateRun", "funkytown", funkytown_file());
    // An empty rule would exclude every cell.
    property(
        schemas,
        "CreateRun",
        "exclude",
        json!({"type": ["array", "null"], "items": {"type": "object", "minProperties": 1,
            "additionalProperties": {"type": "string"}}}),
    );
    // Device types: a phase's duration as the type format writes it, within a day
    // (`devices::types::MAX_DURATION_MS`).
    if let Some(d) = schemas.get_mut("PhaseDuration") {
        let day = MAX_DURATION_MS as f64 / 1000.0;
        d["oneOf"] = json!([
            {"type": "number", "minimum": 0, "maximum": day},
            {"type": "string", "pattern": "^(request|args\\..+)$"}
        ]);
    }
}
