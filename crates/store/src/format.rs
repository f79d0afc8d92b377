//! The data directory's format version.
//!
//! Log entries and snapshots are stored as postcard, which is not self-describing: a field
//! added to a stored type changes how every later byte is read. So the data directory names the
//! format it was written in (the file `FORMAT`, one number), and a binary opens only its own
//! format; anything else is refused at start with both numbers, before a byte is decoded.
//! `crates/store/tests/codec.rs` keeps encoded samples of the current format and fails when
//! the encoding changes without [`FORMAT`] changing.
//!
//! Upgrades: a directory of the previous formats is migrated when it opens. Format 3 added a
//! command variant at the end, so every byte of format 2 reads the same (the codec test decodes
//! the committed format-2 samples with this binary's types). Format 4 keeps the snapshot in the
//! file `snapshot` instead of a record of `state.redb` (same bytes of state): the migration from
//! 2 or 3 writes the record as that file and removes `state.redb`
//! ([`crate::snapshot::migrate_from_redb`]; `crates/store/tests/migrate.rs` runs it on a
//! committed format-3 directory). Format 5 keeps the Raft log in its own segment files, the
//! directory `raft-log`, instead of `raft-log.redb` (same bytes of entries, vote and pointers):
//! the migration from 2, 3 or 4 moves them there and removes the file
//! ([`crate::log_store::migrate_from_redb`]; `crates/store/tests/migrate.rs` runs it on a
//! committed format-4 directory). Then `FORMAT` is rewritten. Older formats are refused.

use std::io::{self, Write};
use std::path::Path;

/// The format this binary reads and writes. 2: each job records its retention. 3: a
/// deployment action may name the state its success leaves (`ActLeaving`). 4: the snapshot is
/// the file `snapshot`, no longer a record of `state.redb`. 5: the Raft log is the segments of
/// the directory `raft-log`, no longer `raft-log.redb`.
pub const FORMAT: u32 = 5;

/// The formats this binary migrates from when a data directory opens (their log entries and
/// state read as [`FORMAT`]'s; the snapshot and the log move to their files, see the module's
/// text).
pub const MIGRATES_FROM: [u32; 3] = [2, 3, 4];

/// The file in the data directory that names its format.
pub const FORMAT_FILE: &str = "FORMAT";

/// Files whose presence means the directory already holds data.
const STORES: [&str; 4] = [
    crate::log_store::LOG_DIR,
    crate::log_store::REDB_FILE,
    crate::snapshot::SNAPSHOT_FILE,
    "state.redb",
];

/// Check that `dir` holds data of [`FORMAT`] (migrating the previous format), or no data yet,
/// recording the format then. Stores without a `FORMAT` file are refused as they are: they
/// predate the file (format 1) or lost it.
pub fn check(dir: &Path) -> io::Result<()> {
    let path = dir.join(FORMAT_FILE);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u32>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: expected a format number, found {:?}",
                    path.display(),
                    text.trim()
                ),
            )
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match found {
        Some(f) if f == FORMAT => Ok(()),
        Some(f) if MIGRATES_FROM.contains(&f) => {
            tracing::info!(dir = %dir.display(), from = f, to = FORMAT, "migrating the data format");
            // Interrupted anywhere, the migration runs again from the start on the next open.
            crate::snapshot::migrate_from_redb(dir)?;
            crate::log_store::migrate_from_redb(dir)?;
            write(dir, FORMAT)
        }
        Some(f) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} holds data format {f}; this switchyard reads format {FORMAT}. Run the \
                 version that wrote it; every member of a cluster must run the same format (a \
                 cluster of another format is a new cluster: its state starts empty)",
                dir.display()
            ),
        )),
        None => {
            let mut had_data = false;
            for s in STORES {
                had_data |= dir.join(s).try_exists()?;
            }
            if had_data {
                // Nothing is written: a wrong number in the file would mislead the next look.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds data but no {FORMAT_FILE} file: either it was written before \
                         data formats were recorded (format 1, which this switchyard cannot \
                         read), or the file was removed. If this version of switchyard wrote \
                         it, put the file back: echo {FORMAT} > {}",
                        dir.display(),
                        path.display()
                    ),
                ));
            }
            write(dir, FORMAT)
        }
    }
}

/// Write `FORMAT` durably: a temporary file, fsynced, renamed, and the directory fsynced.
fn write(dir: &Path, format: u32) -> io::Result<()> {
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{format}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FORMAT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_the_current_format_and_opens_again() {
        let d = tempfile::TempDir::new().unwrap();
        check(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join(FORMAT_FILE)).unwrap();
        assert_eq!(text, format!("{FORMAT}\n"));
        check(d.path()).unwrap();
    }

    #[test]
    fn another_format_is_refused_naming_both() {
        let d = tempfile::TempDir::new().unwrap();
        std::fs::write(d.path().join(FORMAT_FILE), format!("{}\n", FORMAT + 1)).unwrap();
        let e = check(d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("format {}", FORMAT + 1)), "{e}");
        assert!(e.contains(&format!("reads format {FORMAT}")), "{e}");
        std::fs::write(d.path().join(FORMAT_FILE), "banana").unwrap();
        let e = check(d.path()).unwrap_err().to_string();
        assert!(e.contains("expected a format number"), "{e}");
    }

    #[test]
    fn a_data_directory_whose_format_file_was_removed_is_refused_and_left_as_it_was() {
        let d = tempfile::TempDir::new().unwrap();
        std::fs::write(d.path().join("raft-log.redb"), b"").unwrap();
        let e = check(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no FORMAT file") && e.contains(&format!("echo {FORMAT} >")),
            "{e}"
        );
        assert!(!d.path().join(FORMAT_FILE).exists(), "nothing written");
    }

    #[test]
    fn the_previous_format_is_migrated_on_open() {
        let d = tempfile::TempDir::new().unwrap();
        std::fs::write(d.path().join(crate::snapshot::SNAPSHOT_FILE), b"").unwrap();
        for from in MIGRATES_FROM {
            std::fs::write(d.path().join(FORMAT_FILE), format!("{from}\n")).unwrap();
            check(d.path()).unwrap();
            let text = std::fs::read_to_string(d.path().join(FORMAT_FILE)).unwrap();
            assert_eq!(text, format!("{FORMAT}\n"), "from {from}");
        }
        std::fs::write(d.path().join(FORMAT_FILE), "1\n").unwrap();
        assert!(check(d.path()).is_err(), "format 1 is not migrated");
    }
}
