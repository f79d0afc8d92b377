//! Device types: the project's TOML format, parsed and checked into [`DeviceType`].
//!
//! A type declares state attributes (one primary), and commands. A command has `noop_when`
//! guards (success, nothing changes), `allowed_when` guards (otherwise `not_allowed`), a list
//! of timed phases (each sets attributes when it starts and lasts a duration taken from the
//! request, from a field of `args`, or fixed), and the attributes set when it finishes. The
//! string `"null"` stands for "no value". `[abort] set = {...}` says where an aborted
//! transition leaves the device; without it, abort restores the attributes from before the
//! transition. The built-in `switch` and `mv` are written in this format (`device-types/`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A guard: every listed attribute must hold one of the listed values.
pub type Guard = BTreeMap<String, BTreeSet<Option<String>>>;

/// Attribute assignments.
pub type Assign = BTreeMap<String, Option<String>>;

/// Longest duration any phase may take: one day.
pub const MAX_DURATION_MS: i64 = 86_400_000;

/// A checked device type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceType {
    pub name: String,
    pub description: String,
    /// The attribute reported as the device's `state`.
    pub primary: String,
    pub attributes: Vec<Attribute>,
    pub commands: BTreeMap<String, CommandDef>,
    /// Where abort leaves the device; `None`: back to the attributes before the transition.
    pub abort_set: Option<Assign>,
}

/// A state attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub initial: Option<String>,
    /// The values it may take besides null.
    pub values: BTreeSet<String>,
}

/// One command of a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandDef {
    pub noop_when: Vec<Guard>,
    pub allowed_when: Vec<Guard>,
    pub phases: Vec<PhaseDef>,
    pub finish: Assign,
    /// Duration used when the request or argument gives none.
    pub default_ms: i64,
    pub min_ms: i64,
    pub max_ms: i64,
}

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseDef {
    pub name: String,
    pub set: Assign,
    pub duration: DurationSource,
}

/// Where a phase's duration comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DurationSource {
    /// The request's `duration`.
    Request,
    /// A numeric field of the request's `args` (a path of object keys).
    Arg(Vec<String>),
    /// Always this long.
    Fixed(i64),
}

/// Why a type file was refused: where in the file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct TypeError {
    pub place: String,
    pub message: String,
}

fn err(place: impl Into<String>, message: impl Into<String>) -> TypeError {
    TypeError {
        place: place.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    name: String,
    #[serde(default)]
    description: String,
    primary: Option<String>,
    attributes: BTreeMap<String, RawAttribute>,
    commands: BTreeMap<String, RawCommand>,
    abort: Option<RawAbort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    initial: Option<String>,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    #[serde(default)]
    noop_when: Vec<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    allowed_when: Vec<BTreeMap<String, Vec<String>>>,
    phases: Vec<RawPhase>,
    #[serde(default)]
    finish: BTreeMap<String, String>,
    default_duration: Option<f64>,
    min_duration: Option<f64>,
    max_duration: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Option<String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    duration: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAbort {
    set: BTreeMap<String, String>,
}

fn value(v: &str) -> Option<String> {
    (v != "null").then(|| v.to_string())
}

fn seconds_ms(place: &str, s: f64) -> Result<i64, TypeError> {
    if !s.is_finite() || s < 0.0 || s * 1000.0 > MAX_DURATION_MS as f64 {
        return Err(err(place, format!("must be 0 to 86400 seconds; got {s}")));
    }
    Ok((s * 1000.0).round() as i64)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl DeviceType {
    /// Parse and check a type file's text.
    pub fn from_toml(text: &str) -> Result<DeviceType, TypeError> {
        let raw: RawType = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                }
                None => "file".to_string(),
            };
            err(place, msg)
        })?;
        raw.check()
    }

    /// The attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Initial attribute values.
    pub fn initial(&self) -> Assign {
        self.attributes
            .iter()
            .map(|a| (a.name.clone(), a.initial.clone()))
            .collect()
    }
}

impl RawType {
    fn check(self) -> Result<DeviceType, TypeError> {
        if !is_name(&self.name) {
            return Err(err(
                "name",
                "must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            ));
        }
        if self.attributes.is_empty() {
            return Err(err("attributes", "declare at least one attribute"));
        }
        let mut attributes = Vec::new();
        for (name, a) in &self.attributes {
            let place = format!("attributes.{name}");
            if !is_name(name) {
                return Err(err(
                    &place,
                    "attribute names are 1 to 64 characters from A-Z a-z 0-9 _ -",
                ));
            }
            let mut values = BTreeSet::new();
            for v in &a.values {
                if v == "null" || v.is_empty() {
                    return Err(err(
                        format!("{place}.values"),
                        "\"null\" and \"\" cannot be values (null is always allowed)",
                    ));
                }
                if !values.insert(v.clone()) {
                    return Err(err(
                        format!("{place}.values"),
                        format!("{v:?} is listed twice"),
                    ));
                }
            }
            let initial = a.initial.as_deref().and_then(value);
            if let Some(i) = initial.as_ref().filter(|i| !values.contains(*i)) {
                return Err(err(
                    format!("{place}.initial"),
                    format!("unknown value {i:?}; allowed: {values:?} or \"null\""),
                ));
            }
            attributes.push(Attribute {
                name: name.clone(),
                initial,
                values,
            });
        }
        let primary = match (&self.primary, attributes.len()) {
            (Some(p), _) => p.clone(),
            (None, 1) => attributes[0].name.clone(),
            (None, _) => {
                return Err(err(
                    "primary",
                    "required when there is more than one attribute",
                ));
            }
        };
        if !self.attributes.contains_key(&primary) {
            return Err(err(
                "primary",
                format!("{primary:?} is not a declared attribute"),
            ));
        }
        let lookup = |place: &str, attr: &str, v: &str| -> Result<Option<String>, TypeError> {
            let Some(a) = self.attributes.get(attr) else {
                let names: Vec<&String> = self.attributes.keys().collect();
                return Err(err(
                    place,
                    format!("unknown attribute {attr:?}; declared: {names:?}"),
                ));
            };
            let v = value(v);
            match &v {
                Some(s) if !a.values.contains(s) => Err(err(
                    place,
                    format!(
                        "unknown value {s:?} for {attr}; allowed: {:?} or \"null\"",
                        a.values
                    ),
                )),
                _ => Ok(v),
            }
        };
        let assign = |place: &str, raw: &BTreeMap<String, String>| -> Result<Assign, TypeError> {
            raw.iter()
                .map(|(k, v)| Ok((k.clone(), lookup(&format!("{place}.{k}"), k, v)?)))
                .collect()
        };
        let guards =
            |place: &str, raw: &[BTreeMap<String, Vec<String>>]| -> Result<Vec<Guard>, TypeError> {
                raw.iter()
                    .enumerate()
                    .map(|(i, g)| {
                        if g.is_empty() {
                            return Err(err(
                                format!("{place}[{i}]"),
                                "an empty guard would match everything",
                            ));
                        }
                        g.iter()
                            .map(|(k, vs)| {
                                let p = format!("{place}[{i}].{k}");
                                let set = vs
                                    .iter()
                                    .map(|v| lookup(&p, k, v))
                                    .collect::<Result<_, _>>()?;
                                Ok((k.clone(), set))
                            })
                            .collect()
                    })
                    .collect()
            };
        if self.commands.is_empty() {
            return Err(err("commands", "declare at least one command"));
        }
        let mut commands = BTreeMap::new();
        for (name, c) in &self.commands {
            let place = format!("commands.{name}");
            if !is_name(name) || name == "abort" {
                return Err(err(
                    &place,
                    "command names are 1 to 64 characters from A-Z a-z 0-9 _ -, and not \"abort\" (built in)",
                ));
            }
            let default_ms = seconds_ms(
                &format!("{place}.default_duration"),
                c.default_duration.unwrap_or(0.0),
            )?;
            let min_ms = seconds_ms(
                &format!("{place}.min_duration"),
                c.min_duration.unwrap_or(0.0),
            )?;
            let max_ms = seconds_ms(
                &format!("{place}.max_duration"),
                c.max_duration.unwrap_or(3600.0),
            )?;
            if !(min_ms <= default_ms && default_ms <= max_ms) {
                return Err(err(
                    &place,
                    "needs min_duration <= default_duration <= max_duration",
                ));
            }
            let mut phases = Vec::new();
            for (i, p) in c.phases.iter().enumerate() {
                let pp = format!("{place}.phases[{i}]");
                let duration = match &p.duration {
                    None => {
                        return Err(err(
                            &pp,
                            "no duration: set duration to \"request\", \"args.<field>\" or a number of seconds",
                        ));
                    }
                    Some(toml::Value::String(s)) if s == "request" => DurationSource::Request,
                    Some(toml::Value::String(s)) if s.starts_with("args.") && s.len() > 5 => {
                        DurationSource::Arg(s[5..].split('.').map(str::to_string).collect())
                    }
                    Some(toml::Value::Integer(n)) => {
                        DurationSource::Fixed(seconds_ms(&format!("{pp}.duration"), *n as f64)?)
                    }
                    Some(toml::Value::Float(f)) => {
                        DurationSource::Fixed(seconds_ms(&format!("{pp}.duration"), *f)?)
                    }
                    Some(other) => {
                        return Err(err(
                            format!("{pp}.duration"),
                            format!(
                                "got {other}; allowed: \"request\", \"args.<field>\" or a number of seconds"
                            ),
                        ));
                    }
                };
                let set = assign(&format!("{pp}.set"), &p.set)?;
                let name = match &p.name {
                    Some(n) => n.clone(),
                    None => set
                        .get(&primary)
                        .or_else(|| set.values().next())
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| format!("phase{i}")),
                };
                phases.push(PhaseDef {
                    name,
                    set,
                    duration,
                });
            }
            commands.insert(
                name.clone(),
                CommandDef {
                    noop_when: guards(&format!("{place}.noop_when"), &c.noop_when)?,
                    allowed_when: guards(&format!("{place}.allowed_when"), &c.allowed_when)?,
                    finish: assign(&format!("{place}.finish"), &c.finish)?,
                    phases,
                    default_ms,
                    min_ms,
                    max_ms,
                },
            );
        }
        let abort_set = match &self.abort {
            Some(a) => Some(assign("abort.set", &a.set)?),
            None => None,
        };
        Ok(DeviceType {
            name: self.name,
            description: self.description,
            primary,
            attributes,
            commands,
            abort_set,
        })
    }
}

/// A value as the type format writes it: `"null"` for none.
fn written(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "null".to_string())
}

fn written_guards(guards: &[Guard]) -> Vec<BTreeMap<String, Vec<String>>> {
    guards
        .iter()
        .map(|g| {
            g.iter()
                .map(|(k, vs)| (k.clone(), vs.iter().map(written).collect()))
                .collect()
        })
        .collect()
}

fn written_assign(a: &Assign) -> BTreeMap<String, String> {
    a.iter().map(|(k, v)| (k.clone(), written(v))).collect()
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl DeviceType {
    /// The type as its TOML file writes it (the API's view; the stored form is this struct):
    /// parsed back with [`DeviceType::from_toml`], it gives this type again.
    pub fn file(&self) -> switchyard_types::DeviceTypeFile {
        use switchyard_types::{PhaseDuration, TypeAbort, TypeAttribute, TypeCommand, TypePhase};
        let command = |c: &CommandDef| TypeCommand {
            noop_when: written_guards(&c.noop_when),
            allowed_when: written_guards(&c.allowed_when),
            phases: c
                .phases
                .iter()
                .map(|p| TypePhase {
                    name: p.name.clone(),
                    set: written_assign(&p.set),
                    duration: match &p.duration {
                        DurationSource::Request => PhaseDuration::From("request".into()),
                        DurationSource::Arg(path) => {
                            PhaseDuration::From(format!("args.{}", path.join(".")))
                        }
                        DurationSource::Fixed(ms) => PhaseDuration::Seconds(seconds(*ms)),
                    },
                })
                .collect(),
            finish: written_assign(&c.finish),
            default_duration: seconds(c.default_ms),
            min_duration: seconds(c.min_ms),
            max_duration: seconds(c.max_ms),
        };
        switchyard_types::DeviceTypeFile {
            name: self.name.clone(),
            description: self.description.clone(),
            primary: self.primary.clone(),
            attributes: self
                .attributes
                .iter()
                .map(|a| {
                    let attr = TypeAttribute {
                        initial: written(&a.initial),
                        values: a.values.iter().cloned().collect(),
                    };
                    (a.name.clone(), attr)
                })
                .collect(),
            commands: self
                .commands
                .iter()
                .map(|(n, c)| (n.clone(), command(c)))
                .collect(),
            abort: self.abort_set.as_ref().map(|set| TypeAbort {
                set: written_assign(set),
            }),
        }
    }
}

/// The built-in types, written in the type format.
pub fn builtin() -> Vec<DeviceType> {
    [
        include_str!("../../device-types/switch.toml"),
        include_str!("../../device-types/mv.toml"),
    ]
    .iter()
    .map(|t| DeviceType::from_toml(t).expect("built-in types are valid"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_mv_has_the_seven_commands() {
        let types = builtin();
        let mv = types.iter().find(|t| t.name == "mv").unwrap();
        let cmds: Vec<&str> = mv.commands.keys().map(String::as_str).collect();
        assert_eq!(
            cmds,
            [
                "assign_resources",
                "clear_config",
                "configure",
                "release_resources",
                "scan",
                "switch_off",
                "switch_on"
            ]
        );
        assert_eq!(mv.initial().get("state"), Some(&None));
        let assign = &mv.commands["assign_resources"];
        assert_eq!(
            assign.phases[1].duration,
            DurationSource::Arg(vec!["config".into(), "delay".into()])
        );
        assert_eq!(assign.phases[1].name, "RESOURCING");
    }

    #[test]
    fn a_types_file_view_written_as_toml_reads_back_as_the_same_type() {
        let with_abort = "name = \"valve\"\n[attributes.position]\ninitial = \"null\"\n\
            values = [\"OPEN\", \"CLOSED\"]\n[commands.open]\n\
            phases = [{ set = { position = \"OPEN\" }, duration = 2.5 }]\n\
            [abort]\nset = { position = \"CLOSED\" }\n";
        let mut types = builtin();
        types.push(DeviceType::from_toml(with_abort).unwrap());
        for t in types {
            let text = toml::to_string(&t.file()).unwrap();
            let back = DeviceType::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, t, "{text}");
        }
    }

    #[test]
    fn inconsistent_files_are_refused_naming_the_place() {
        let base = "name = \"t\"\n[attributes.s]\nvalues = [\"A\", \"B\"]\n";
        let cases = [
            (
                format!(
                    "{base}[commands.go]\nphases = [{{ set = {{ s = \"C\" }}, duration = 1 }}]\n"
                ),
                "commands.go.phases[0].set.s",
            ),
            (
                format!("{base}[commands.go]\nphases = [{{ set = {{ s = \"B\" }} }}]\n"),
                "commands.go.phases[0]",
            ),
            (
                format!("{base}[commands.go]\nallowed_when = [{{ x = [\"A\"] }}]\nphases = []\n"),
                "commands.go.allowed_when[0].x",
            ),
            (
                format!("{base}[commands.go]\nphases = []\n[commands.go]\nphases = []\n"),
                "line 6",
            ),
            (
                format!("{base}[commands.go]\nphases = []\nbogus = 1\n"),
                "line ",
            ),
            (
                format!("{base}[commands.go]\nphases = [{{ duration = \"args.\" }}]\n"),
                "commands.go.phases[0].duration",
            ),
        ];
        for (text, place) in cases {
            let e = DeviceType::from_toml(&text).unwrap_err();
            assert!(e.place.starts_with(place), "{text}\n=> {e}");
        }
    }
}
