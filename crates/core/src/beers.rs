//! The beers app (seed 001): taps post pours; the glass type follows from the volume; every
//! pour and delete is announced to the taps, and whenever the number of beers is a multiple of
//! ten afterwards (0 included) a report of each tap's share follows.
//!
//! The announcement texts and the report are rendered here, at apply time, exactly as the
//! original server wrote them (Python's `str` of a rounded float, `json.dumps` spacing, taps
//! in order of their first beer), so every node and every replay produces the same bytes.

use imbl::OrdMap;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{CommandError, Ctx, Event};

/// Glass types by volume in ml, first match, bounds inclusive.
pub const GLASSES: [(&str, f64, f64); 3] = [
    ("half", 100.0, 300.0),
    ("pint", 300.0, 800.0),
    ("stein", 800.0, 1000.0),
];

/// The message of the original's 403 when no glass fits.
pub const NO_GLASS: &str = "There is no glass type for the specified volume";

/// Beers commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BeerCommand {
    /// A tap poured `volume` (the JSON number as the tap sent it, e.g. `450` or `300.5`).
    Pour { tap_id: i64, volume: String },
    /// Remove a beer. With `announce_missing` (the original's behaviour), removing an id that
    /// does not exist changes nothing but is still announced; without, it is `not_found`.
    Delete { id: u64, announce_missing: bool },
}

/// Beers replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BeerReply {
    Poured(Beer),
    /// Whether a beer was removed.
    Deleted {
        existed: bool,
    },
}

/// One pour, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beer {
    pub id: u64,
    pub tap_id: i64,
    /// `half`, `pint` or `stein`.
    pub glass: String,
    /// The volume's JSON text, echoed as sent.
    pub volume: String,
    /// Leader-stamped time of the pour, Unix ms.
    pub time_ms: i64,
    /// Revision of the pour.
    pub revision: u64,
}

/// The beers' state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Beers {
    by_id: OrdMap<u64, Beer>,
    next_id: u64,
}

/// The glass for a volume, if any.
pub fn glass(volume: f64) -> Option<&'static str> {
    GLASSES
        .iter()
        .find(|(_, lo, hi)| *lo <= volume && volume <= *hi)
        .map(|(name, _, _)| *name)
}

/// Python's `str(round(x, 2))` for a finite float: two decimals at most, at least one.
fn py_round2(x: f64) -> String {
    let rounded: f64 = format!("{x:.2}").parse().unwrap_or(x);
    let s = format!("{rounded}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

impl Beer {
    /// The /v1 shape.
    pub fn v1(&self) -> switchyard_types::Beer {
        switchyard_types::Beer {
            id: self.id,
            tap_id: self.tap_id,
            glass: self.glass.clone(),
            volume: serde_json::from_str(&self.volume).unwrap_or(serde_json::Value::Null),
            time: switchyard_types::rfc3339(self.time_ms),
            revision: self.revision,
        }
    }

    /// The original's JSON shape: `{"id", "type", "volume", "timestamp", "tapId"}`.
    pub fn original_json(&self) -> serde_json::Value {
        let volume: serde_json::Value =
            serde_json::from_str(&self.volume).unwrap_or(serde_json::Value::Null);
        json!({
            "id": self.id,
            "type": self.glass,
            "volume": volume,
            "timestamp": python_isoformat(self.time_ms),
            "tapId": self.tap_id,
        })
    }
}

/// `datetime.isoformat()` of a naive UTC time: microseconds, omitted when zero.
pub fn python_isoformat(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let micros = ms.rem_euclid(1000) * 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Beers {
    pub fn get(&self, id: u64) -> Option<&Beer> {
        self.by_id.get(&id)
    }

    /// Every beer in pour order.
    pub fn all(&self) -> impl Iterator<Item = &Beer> {
        self.by_id.values()
    }

    pub fn count(&self) -> usize {
        self.by_id.len()
    }

    /// The every-tenth report, as the original's JSON text:
    /// `{"tap 1": "33.33%", "tap 2": "66.67%", "total beers": 3}`.
    pub fn report_text(&self) -> String {
        let total = self.by_id.len();
        let mut order: Vec<i64> = Vec::new();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for b in self.by_id.values() {
            let c = counts.entry(b.tap_id).or_insert(0);
            if *c == 0 {
                order.push(b.tap_id);
            }
            *c += 1;
        }
        let mut parts: Vec<String> = order
            .iter()
            .map(|t| {
                let share = (counts[t] as f64 / total as f64) * 100.0;
                format!("\"tap {t}\": \"{}%\"", py_round2(share))
            })
            .collect();
        parts.push(format!("\"total beers\": {total}"));
        format!("{{{}}}", parts.join(", "))
    }

    /// Apply one command; on `Err` nothing changed.
    pub fn apply(
        &mut self,
        cmd: &BeerCommand,
        ctx: Ctx,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<BeerReply, CommandError> {
        match cmd {
            BeerCommand::Pour { tap_id, volume } => {
                let v: f64 = volume
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| CommandError::Invalid {
                        field: "volume".into(),
                        message: format!("must be a number; got {volume:?}"),
                    })?;
                let Some(g) = glass(v) else {
                    return Err(CommandError::Invalid {
                        field: "volume".into(),
                        message: format!(
                            "{NO_GLASS}: {volume} ml; glasses: half 100-300, pint 300-800, stein 800-1000 (inclusive, first match)"
                        ),
                    });
                };
                let beer = Beer {
                    id: self.next_id,
                    tap_id: *tap_id,
                    glass: g.to_string(),
                    volume: volume.clone(),
                    time_ms: now_ms,
                    revision: ctx.index,
                };
                self.next_id += 1;
                self.by_id.insert(beer.id, beer.clone());
                let text = format!("Tap with id {tap_id} posted a new beer (id: {})!", beer.id);
                events.push(self.event(beer.id, "poured", Some(&beer), text));
                Ok(BeerReply::Poured(beer))
            }
            BeerCommand::Delete {
                id,
                announce_missing,
            } => {
                if !announce_missing && !self.by_id.contains_key(id) {
                    return Err(CommandError::NotFound {
                        message: format!("beer {id} does not exist"),
                    });
                }
                let existed = self.by_id.remove(id).is_some();
                let text = format!("Beer {id} deleted from the collection");
                events.push(self.event(*id, "deleted", None, text));
                Ok(BeerReply::Deleted { existed })
            }
        }
    }

    fn event(&self, id: u64, kind: &str, beer: Option<&Beer>, notification: String) -> Event {
        let mut body =
            json!({"kind": kind, "id": id, "notification": notification, "total": self.count()});
        if let Some(b) = beer {
            body["beer"] = b.original_json();
            body["tap_id"] = json!(b.tap_id);
        }
        if self.count().is_multiple_of(10) {
            body["report"] = json!(self.report_text());
        }
        Event {
            topic: format!("beers/{id}"),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glass_boundaries_are_inclusive_first_match() {
        let cases = [
            (99.9, None),
            (100.0, Some("half")),
            (300.0, Some("half")),
            (300.5, Some("pint")),
            (800.0, Some("pint")),
            (1000.0, Some("stein")),
            (1000.1, None),
        ];
        for (v, want) in cases {
            assert_eq!(glass(v), want, "{v}");
        }
    }

    #[test]
    fn report_and_times_render_as_the_original() {
        assert_eq!(py_round2(100.0 / 3.0), "33.33");
        assert_eq!(py_round2(200.0 / 3.0), "66.67");
        assert_eq!(py_round2(40.0), "40.0");
        assert_eq!(py_round2(12.5), "12.5");
        assert_eq!(
            python_isoformat(1_568_710_205_483),
            "2019-09-17T08:50:05.483000"
        );
        assert_eq!(python_isoformat(1_568_710_205_000), "2019-09-17T08:50:05");
        let mut b = Beers::default();
        let mut ev = Vec::new();
        for (i, tap) in [2, 1, 2].iter().enumerate() {
            let cmd = BeerCommand::Pour {
                tap_id: *tap,
                volume: "450".into(),
            };
            b.apply(
                &cmd,
                Ctx {
                    index: i as u64 + 1,
                },
                0,
                &mut ev,
            )
            .unwrap();
        }
        assert_eq!(
            b.report_text(),
            r#"{"tap 2": "66.67%", "tap 1": "33.33%", "total beers": 3}"#
        );
        assert_eq!(
            ev[0].body["notification"],
            "Tap with id 2 posted a new beer (id: 0)!"
        );
        assert_eq!(ev[0].body["beer"]["volume"], json!(450));
    }
}
