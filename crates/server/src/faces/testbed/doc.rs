//! The face's OpenAPI document: its routes with the original's shapes (the commands are the
//! transcribed `original` types' own schemas), the checks the face makes, and its errors,
//! `{"code": STATUS, "message"}`. The original served no document; `/openapi.json` and `/docs`
//! are not among its routes.

use serde_json::{Map, Value, json};

use super::original;

const ERROR: &str = "#/components/schemas/Error";

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": ERROR}}}})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, content: Option<(&str, Value)>) -> Value {
    match content {
        Some((ct, schema)) => {
            json!({"description": description, "content": {ct: {"schema": schema}}})
        }
        None => json!({"description": description}),
    }
}

/// One operation with the answers every route can give added.
fn op(id: &str, summary: &str, mut responses: Value, extra: Value) -> Value {
    let r = responses.as_object_mut().expect("responses are an object");
    r.entry("401")
        .or_insert_with(|| error("tokens are on and none or an unknown one was given"));
    r.entry("403").or_insert_with(|| {
        error("a read-only token for a change, or a browser page of another origin")
    });
    r.entry("500")
        .or_insert_with(|| error("internal: the server log has the details"));
    r.entry("503")
        .or_insert_with(|| error("no leader or no quorum"));
    let mut o =
        json!({"tags": ["testbed"], "operationId": id, "summary": summary, "responses": responses});
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    o
}

fn name_param() -> Value {
    json!({"name": "name", "in": "path", "required": true, "schema": crate::api::doc::name_schema()})
}

fn pretty_param() -> Value {
    json!({"name": "pretty", "in": "query", "required": false, "schema": {"type": "boolean"}})
}

/// The face's document.
pub(super) fn openapi() -> Value {
    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(original::DeploymentCommand)))]
    struct Commands;
    let mut schemas = serde_json::to_value(
        <Commands as utoipa::OpenApi>::openapi()
            .components
            .expect("components"),
    )
    .expect("the schemas serialise")["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // serde reads an enum's variant with data as an object of that one key, and nothing else.
    for schema in schemas.values_mut() {
        let variants = schema.get_mut("oneOf").and_then(Value::as_array_mut);
        for variant in variants.into_iter().flatten() {
            let one_key = variant["properties"]
                .as_object()
                .is_some_and(|p| p.len() == 1);
            if variant["type"] == "object" && one_key {
                variant["additionalProperties"] = json!(false);
            }
        }
    }
    let command = json!({"$ref": "#/components/schemas/DeploymentCommand"});
    let state = json!({"oneOf": [
        {"type": "string", "enum": ["up", "down"]},
        {"type": "object", "required": ["failed"], "additionalProperties": false,
            "properties": {"failed": command}}
    ]});
    let shown_state = json!({"oneOf": [
        {"type": "string", "enum": ["up", "down", "running"]},
        {"type": "object", "required": ["failed"], "properties": {"failed": command}}
    ]});
    let location =
        json!({"type": "string", "pattern": "^/[^\\x00]*$", "description": "an absolute path"});
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer", "description": "the HTTP status again"},
            "message": {"type": "string"}}}),
    );
    schemas.insert(
        "Deployment".into(),
        json!({"type": "object",
        "required": ["name", "project_location", "state", "last_action_uuid"],
        "properties": {"name": {"type": "string"}, "project_location": {"type": "string"},
            "state": shown_state, "last_action_uuid": {"type": ["string", "null"]}}}),
    );
    let deployment = json!({"$ref": "#/components/schemas/Deployment"});
    let by_name = json!({"type": "object", "additionalProperties": deployment});
    let any_json = json!({});
    let text = json!({"type": "string"});
    let mut host = Map::new();
    for f in crate::cluster_config::HOST_FIELDS {
        host.insert(f.into(), json!({"type": "string"}));
    }
    host.insert(
        "ip".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 253,
        "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f/?#@]+$"}),
    );
    host.insert(
        "ovn".into(),
        json!({"type": "object", "required": ["chassis_name"],
        "properties": {"chassis_name": crate::api::doc::agent_id_schema()}}),
    );
    let required = crate::cluster_config::HOST_FIELDS;

    let paths = json!({
        "/api": {"get": op("root", "Whether the server answers.",
            json!({"200": ok("the server", Some(("application/json", json!({"type": "object"}))))}), json!({}))},
        "/api/": {"get": op("root_slash", "Whether the server answers.",
            json!({"200": ok("the server", Some(("application/json", json!({"type": "object"}))))}), json!({}))},
        "/api/deployments": {
            "get": op("list", "Every deployment, by name.",
                json!({"200": ok("{\"deployments\": {NAME: deployment}}", Some(("application/json",
                    json!({"type": "object", "required": ["deployments"], "properties": {"deployments": by_name}}))))}),
                json!({})),
            "post": op("create", "Create a deployment of a project folder (state down).",
                json!({"200": ok("created (no body)", None),
                    "400": error("a field is missing or malformed (the message names it)"),
                    "409": error("a deployment of that name exists")}),
                json!({"requestBody": json_body(json!({"type": "object",
                    "required": ["name", "project_location"],
                    "properties": {"name": crate::api::doc::name_schema(), "project_location": location}}))}))
        },
        "/api/deployments/{name}": {
            "get": op("get", "One deployment.",
                json!({"200": ok("the deployment", Some(("application/json", deployment.clone()))),
                    "400": error("the name is not 1 to 64 of A-Z a-z 0-9 _ . -"),
                    "404": error("no deployment of that name")}),
                json!({"parameters": [name_param()]})),
            "put": op("put", "Replace the record: its folder and state (the original's CLI resets a state this way). The body's `name` must be the path's (400 otherwise).",
                json!({"200": ok("replaced (no body)", None),
                    "400": error("a field is missing or malformed, or `name` is not the path's"),
                    "404": error("no deployment of that name"),
                    "409": error("an action is running")}),
                json!({"parameters": [name_param()], "requestBody": json_body(json!({"type": "object",
                    "required": ["name", "project_location", "state"],
                    "properties": {"name": crate::api::doc::name_schema(),
                        "project_location": {"oneOf": [{"const": ""}, location]},
                        "state": state,
                        "last_action_uuid": {"type": ["string", "null"]}}}))})),
            "delete": op("delete", "Delete a deployment (refused while up or running, as the original).",
                json!({"200": ok("deleted (no body)", None),
                    "400": error("the name is not 1 to 64 of A-Z a-z 0-9 _ . -"),
                    "404": error("no deployment of that name"),
                    "409": error("the deployment is up, or an action is running")}),
                json!({"parameters": [name_param()]}))
        },
        "/api/deployments/{name}/state": {
            "get": op("get_state", "The orchestrator's state document as stored.",
                json!({"200": ok("the document", Some(("application/json", any_json.clone()))),
                    "400": error("the name or `pretty` is malformed"),
                    "404": error("no deployment of that name, or no document yet")}),
                json!({"parameters": [name_param(), pretty_param()]})),
            "post": op("post_state", "Store the orchestrator's state document: any JSON value, at most 2 MiB.",
                json!({"200": ok("stored (no body)", None),
                    "400": error("not a JSON document, or nested too deep"),
                    "404": error("no deployment of that name"),
                    "413": error("larger than the limit")}),
                json!({"parameters": [name_param()], "requestBody": json_body(any_json.clone())}))
        },
        "/api/deployments/{name}/action": {"post": op("action",
            "Start an action: the state becomes running and the answer is the action's uuid, whose log streams at /api/orchestration/ws?uuid=.",
            json!({"200": ok("the action's uuid", Some(("text/plain", text.clone()))),
                "400": error("the command is not one of the original's (the message names the field)"),
                "404": error("no deployment of that name, or no template for the command's action"),
                "409": error("an action is running")}),
            json!({"parameters": [name_param()], "requestBody": json_body(json!({"type": "object",
                "required": ["command"],
                "properties": {"command": command, "generate_artefacts": {"type": "boolean"}}}))}))},
        "/api/deployments/{name}/logs": {"get": op("logs", "The log index: action uuid → its log path, error code, end state and start time.",
            json!({"200": ok("{\"logs\": {UUID: {...}}}", Some(("application/json", json!({"type": "object",
                "required": ["logs"], "properties": {"logs": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"log_path": {"type": "string"},
                        "error_code": {"type": ["integer", "null"]}, "end_state": {"oneOf": [{"type": "null"}, shown_state]},
                        "execution_time": {"type": "string"}}}}}})))),
                "400": error("the name is malformed"),
                "404": error("no deployment of that name")}),
            json!({"parameters": [name_param()]}))},
        "/api/active-deployments": {"get": op("active", "The deployments that are up, by name.",
            json!({"200": ok("{NAME: deployment}", Some(("application/json", by_name)))}), json!({}))},
        "/api/orchestration/ws": {"get": op("orchestration", "WebSocket: the released CLI's instruction protocol, or with `?uuid=` an action's log line by line.",
            json!({"101": ok("Switching Protocols: the WebSocket", None),
                "400": error("not a WebSocket upgrade"),
                "404": error("no action with that uuid")}),
            json!({"parameters": [{"name": "uuid", "in": "query", "required": false, "schema": {"type": "string"}}]}))},
        "/api/orchestration/logs/{file}": {"get": op("log_file", "An action's log file (`<iso-date-time>-<name>.log`).",
            json!({"200": ok("the log", Some(("text/plain", text.clone()))),
                "404": error("no log of that name")}),
            json!({"parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}]}))},
        "/api/cluster": {"post": op("join", "A client joins (or joins again) with its host document; the answer is the OVN southbound remote, `tcp:HOST:6642`.",
            json!({"200": ok("the OVN remote", Some(("text/plain", text.clone()))),
                "400": error("a field the cluster document needs is missing or malformed"),
                "409": error("ovn.chassis_name is the name of a worker agent")}),
            json!({"requestBody": json_body(json!({"type": "object", "required": required, "properties": host}))}))},
        "/api/cluster/{name}": {"get": op("membership", "200 while the client is a live member (its heartbeat), else 404; both without a body.",
            json!({"200": ok("a live member", None), "404": ok("not a member", None)}),
            json!({"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]}))},
        "/api/config/cluster": {"get": op("cluster_config", "The cluster configuration: the configured file's hosts and every joined client's.",
            json!({"200": ok("the document", Some(("application/json", json!({"type": "object"})))),
                "400": error("`pretty` is malformed")}),
            json!({"parameters": [pretty_param()]}))},
        "/api/config/status": {"get": op("status", "200 while the server runs.",
            json!({"200": ok("OK (no body)", None)}), json!({}))}
    });
    let mut paths = paths;
    paths
        .as_object_mut()
        .expect("paths are an object")
        .extend(crate::docs_page::paths());
    json!({
        "openapi": "3.1.0",
        "info": {"title": "switchyard: the TestbedOS face", "version": env!("CARGO_PKG_VERSION"),
            "description": "The TestbedOS server's routes on `--testbed-listen`. Errors are `{\"code\": STATUS, \"message\"}`."},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}
