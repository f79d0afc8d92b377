//! `GET /v1/device-types`: each device type as its TOML file writes it (the format of
//! `--device-types` files and of the built-in `switch` and `mv`), so what the API shows is
//! what a user writes: the same keys, `"null"` for no value, durations in seconds, and a
//! phase's `duration` as `"request"`, `"args.<field>"` or a number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/device-types`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceTypeList {
    pub types: Vec<DeviceTypeFile>,
}

/// A device type in the TOML type format's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTypeFile {
    pub name: String,
    pub description: String,
    /// The attribute reported as the device's `state`.
    pub primary: String,
    /// Attribute name → its initial value and the values it may take.
    pub attributes: BTreeMap<String, TypeAttribute>,
    /// Command name → its guards, phases and durations.
    pub commands: BTreeMap<String, TypeCommand>,
    /// Where an abort leaves the device; absent: back to the attributes before the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<TypeAbort>,
}

/// `[attributes.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeAttribute {
    /// `"null"` for no value.
    pub initial: String,
    /// The values besides null.
    pub values: Vec<String>,
}

/// `[commands.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeCommand {
    /// Guards under which the command succeeds and changes nothing: attribute → values
    /// (`"null"` for no value); one matching guard is enough.
    pub noop_when: Vec<BTreeMap<String, Vec<String>>>,
    /// Guards under which it may run (none: always).
    pub allowed_when: Vec<BTreeMap<String, Vec<String>>>,
    pub phases: Vec<TypePhase>,
    /// The attributes set when the last phase ends.
    pub finish: BTreeMap<String, String>,
    /// Seconds a phase timed by the request or an argument lasts when it gives none.
    pub default_duration: f64,
    pub min_duration: f64,
    pub max_duration: f64,
}

/// One timed phase of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePhase {
    pub name: String,
    /// The attributes set when the phase starts.
    pub set: BTreeMap<String, String>,
    pub duration: PhaseDuration,
}

/// How long a phase lasts: a number of seconds, `"request"` (the request's `duration`) or
/// `"args.<field>"` (a field of the request's `args`, e.g. `"args.config.delay"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PhaseDuration {
    Seconds(f64),
    From(String),
}

/// `[abort]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeAbort {
    pub set: BTreeMap<String, String>,
}
