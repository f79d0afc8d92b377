//! Progress of long commands through indicatif: [`RunProgress`] for `switchyard run` (a bar of
//! the cells that ran, with passed, failed, running and queued, rate and ETA) and [`Activity`]
//! for a followed job or deployment action (a spinner with what it is doing). On a terminal
//! they draw live on stderr; elsewhere (a pipe, a CI log) they print a plain line now and then
//! and once at the end.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// How often a plain (not terminal) progress line is printed at most.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The cells of a run by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub queued: u64,
    pub running: u64,
    pub passed: u64,
    /// Failed and timed out.
    pub failed: u64,
    pub cancelled: u64,
    pub dead: u64,
}

impl Counts {
    /// From the run's statistics.
    pub fn of_run(r: &switchyard_types::Run) -> Self {
        Self {
            total: r.total.into(),
            queued: r.queued.into(),
            running: r.running.into(),
            passed: r.passed.into(),
            failed: r.failed.into(),
            cancelled: r.cancelled.into(),
            dead: r.dead.into(),
        }
    }

    /// From a run event (`{"kind", "total", "counts": {job status: cells}}`), which carries
    /// the counts of the revision it belongs to.
    pub fn of_event(e: &Value) -> Option<Self> {
        let counts = e.get("counts")?.as_object()?;
        let n = |k: &str| counts.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(Self {
            total: e.get("total")?.as_u64()?,
            queued: n("queued"),
            running: n("running"),
            passed: n("succeeded"),
            failed: n("failed") + n("timed_out"),
            cancelled: n("cancelled"),
            dead: n("dead"),
        })
    }

    /// Cells that ran to an end (not cancelled).
    pub fn ran(&self) -> u64 {
        self.passed + self.failed + self.dead
    }

    /// `4 passed, 2 failed, 1 running, 3 queued` (and cancelled and dead when there are any).
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("{} passed", self.passed),
            format!("{} failed", self.failed),
        ];
        if self.dead > 0 {
            parts.push(format!("{} dead", self.dead));
        }
        if self.cancelled > 0 {
            parts.push(format!("{} cancelled", self.cancelled));
        }
        parts.push(format!("{} running", self.running));
        parts.push(format!("{} queued", self.queued));
        parts.join(", ")
    }
}

/// Where progress goes.
pub enum Target {
    /// Live drawing on stderr if it is a terminal, plain lines on stderr otherwise.
    Stderr,
    /// Live drawing on a terminal of the caller's (tests).
    #[cfg(test)]
    Terminal(ProgressDrawTarget),
    /// Plain lines into a writer of the caller's (tests).
    #[cfg(test)]
    Plain(Box<dyn Write + Send>),
}

enum Draw {
    Live(ProgressBar),
    Plain {
        out: Box<dyn Write + Send>,
        printed: Option<(Instant, Counts)>,
        started: Instant,
    },
}

/// The progress of a run.
pub struct RunProgress {
    draw: Draw,
    last: Counts,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} [{bar:30}] {pos}/{len} ran  {msg}  {per_sec}  eta {eta}  ({elapsed})",
    )
    .expect("the template is valid")
    .progress_chars("#>.")
}

impl RunProgress {
    pub fn new(target: Target) -> Self {
        let live = |t: ProgressDrawTarget| {
            let bar = ProgressBar::with_draw_target(Some(0), t).with_style(bar_style());
            bar.enable_steady_tick(Duration::from_millis(200));
            Draw::Live(bar)
        };
        let draw = match target {
            Target::Stderr => {
                let t = ProgressDrawTarget::stderr();
                if t.is_hidden() {
                    Draw::Plain {
                        out: Box::new(std::io::stderr()),
                        printed: None,
                        started: Instant::now(),
                    }
                } else {
                    live(t)
                }
            }
            #[cfg(test)]
            Target::Terminal(t) => live(t),
            #[cfg(test)]
            Target::Plain(out) => Draw::Plain {
                out,
                printed: None,
                started: Instant::now(),
            },
        };
        Self {
            draw,
            last: Counts::default(),
        }
    }

    /// New counts; a plain line when [`PLAIN_EVERY`] has passed since the last one and
    /// something changed.
    pub fn update(&mut self, c: Counts) {
        self.last = c;
        match &mut self.draw {
            Draw::Live(bar) => {
                bar.set_length(c.total);
                bar.set_position(c.ran());
                bar.set_message(c.describe());
            }
            Draw::Plain {
                out,
                printed,
                started,
            } => {
                let due = printed.is_none_or(|(at, seen)| seen != c && at.elapsed() >= PLAIN_EVERY);
                if due {
                    let _ = writeln!(out, "{}", plain_line(&c, started.elapsed()));
                    *printed = Some((Instant::now(), c));
                }
            }
        }
    }

    /// A line above the bar (a failure as it happens).
    pub fn println(&mut self, line: &str) {
        match &mut self.draw {
            Draw::Live(bar) => bar.println(line),
            Draw::Plain { out, .. } => {
                let _ = writeln!(out, "{line}");
            }
        }
    }

    /// The end: the bar stays with the final counts and `outcome` (passed, failed,
    /// cancelled); a plain line is printed once.
    pub fn finish(&mut self, c: Counts, outcome: &str) {
        self.last = c;
        match &mut self.draw {
            Draw::Live(bar) => {
                bar.set_length(c.total);
                bar.set_position(c.ran());
                let msg = format!("{outcome}: {}", c.describe());
                if c.ran() == c.total {
                    bar.finish_with_message(msg);
                } else {
                    bar.abandon_with_message(msg);
                }
            }
            Draw::Plain { out, started, .. } => {
                let _ = writeln!(out, "{outcome}: {}", plain_line(&c, started.elapsed()));
            }
        }
    }
}

fn plain_line(c: &Counts, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        c.ran() as f64 / secs
    } else {
        0.0
    };
    let left = c.queued + c.running;
    let eta = if left == 0 {
        "0s".to_string()
    } else if rate > 0.0 {
        format!("{:.0}s", left as f64 / rate)
    } else {
        "-".to_string()
    };
    format!(
        "{}/{} ran: {} ({rate:.1} cells/s, eta {eta}, {secs:.0}s)",
        c.ran(),
        c.total,
        c.describe()
    )
}

/// A spinner for something that runs until it ends (a followed job, a deployment action),
/// with the lines it prints above it. Without a terminal there is no spinner, only the lines.
pub struct Activity {
    bar: Option<ProgressBar>,
}

impl Activity {
    pub fn new(what: String) -> Self {
        let t = ProgressDrawTarget::stderr();
        if t.is_hidden() {
            return Self { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, t).with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    /// Say what it is doing now.
    pub fn set(&self, what: String) {
        if let Some(b) = &self.bar {
            b.set_message(what);
        }
    }

    /// Run `f` (which prints) with the spinner out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Remove the spinner.
    pub fn done(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    fn counts(queued: u64, running: u64, passed: u64, failed: u64) -> Counts {
        Counts {
            total: queued + running + passed + failed,
            queued,
            running,
            passed,
            failed,
            ..Default::default()
        }
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn counts_come_from_a_run_event() {
        let e = serde_json::json!({"kind": "cell", "total": 6, "counts": {
            "queued": 1, "running": 1, "succeeded": 2, "failed": 1, "timed_out": 1}});
        assert_eq!(Counts::of_event(&e), Some(counts(1, 1, 2, 2)));
        assert_eq!(
            Counts::of_event(&e).unwrap().describe(),
            "2 passed, 2 failed, 1 running, 1 queued"
        );
    }

    #[test]
    fn the_bar_follows_the_counts_on_a_terminal() {
        let term = InMemoryTerm::new(4, 120);
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 100);
        let mut p = RunProgress::new(Target::Terminal(target));
        p.update(counts(6, 0, 0, 0));
        p.update(counts(2, 2, 1, 1));
        p.println("FAIL a.spec [chrome] failed (exit 1)");
        p.finish(counts(0, 0, 4, 2), "failed");
        let screen = term.contents();
        assert!(screen.contains("FAIL a.spec [chrome]"), "{screen}");
        let last = screen.lines().last().unwrap();
        assert!(last.contains("6/6 ran"), "{screen}");
        assert!(
            last.contains("failed: 4 passed, 2 failed, 0 running, 0 queued"),
            "{screen}"
        );
        assert!(
            last.contains("[##############################]"),
            "{screen}"
        );
    }

    #[test]
    fn a_cancelled_run_does_not_show_a_full_bar() {
        let term = InMemoryTerm::new(4, 120);
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 100);
        let mut p = RunProgress::new(Target::Terminal(target));
        p.update(counts(6, 0, 0, 0));
        let c = Counts {
            total: 6,
            cancelled: 6,
            ..Default::default()
        };
        p.finish(c, "cancelled");
        let screen = term.contents();
        assert!(screen.contains("0/6 ran"), "{screen}");
        assert!(screen.contains("6 cancelled"), "{screen}");
        assert!(
            screen.contains("[..............................]"),
            "{screen}"
        );
    }

    #[test]
    fn without_a_terminal_plain_lines_come_now_and_then_and_once_at_the_end() {
        let out = Shared::default();
        let mut p = RunProgress::new(Target::Plain(Box::new(out.clone())));
        // A burst of changes within PLAIN_EVERY prints the first line only.
        for done in 0..50 {
            p.update(counts(50 - done, 0, done, 0));
        }
        p.println("FAIL x");
        p.finish(counts(0, 0, 49, 1), "failed");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("0/50 ran: 0 passed"), "{text}");
        assert_eq!(lines[1], "FAIL x");
        assert!(
            lines[2].starts_with("failed: 50/50 ran: 49 passed, 1 failed, 0 running, 0 queued"),
            "{text}"
        );
    }
}
