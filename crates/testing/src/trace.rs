//! The full trace of a run: every message, every apply and every client answer, in order,
//! folded into one hash (and kept line by line when asked, to compare two runs).

use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
    print: bool,
}

/// The trace of one run. Clones share it.
#[derive(Clone)]
pub struct Trace(Arc<Mutex<Inner>>);

impl Trace {
    /// A trace that keeps its lines too when `keep` (for `--trace-file`), and prints them as
    /// they come when `print`.
    pub fn new(keep: bool, print: bool) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            lines: keep.then(Vec::new),
            print,
        })))
    }

    /// Add one event (FNV-1a over its bytes and a separator).
    pub fn add(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        let mut t = self.0.lock().unwrap();
        let mut h = t.hash;
        for b in line.bytes().chain([b'\n']) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        t.hash = h;
        t.events += 1;
        if t.print {
            eprintln!("{line}");
        }
        if let Some(lines) = &mut t.lines {
            lines.push(line.to_string());
        }
    }

    /// The hash of everything so far.
    pub fn hash(&self) -> u64 {
        self.0.lock().unwrap().hash
    }

    pub fn events(&self) -> u64 {
        self.0.lock().unwrap().events
    }

    /// The lines, if kept.
    pub fn lines(&self) -> Option<Vec<String>> {
        self.0.lock().unwrap().lines.clone()
    }
}
