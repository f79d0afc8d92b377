//! The log of format 4 and before: a redb file, `raft-log.redb`, moved into segments.

use std::io;
use std::path::Path;

use openraft::alias::LogIdOf;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::LOG_DIR;
use super::record::Record;
use super::segments::{SEGMENT_BYTES, Segments};
use crate::{TypeConfig, io_err};

/// The file that held the log up to format 4.
pub const REDB_FILE: &str = "raft-log.redb";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Move the log of `dir/raft-log.redb`, if there is one, into the segments of `dir/raft-log`
/// (entries, vote, committed pointer and last purged log id, as they were: the encodings do not
/// change), then remove the file. The segments are written in a temporary directory that is
/// renamed into place, so an interrupted migration runs again from the start.
pub fn migrate_from_redb(dir: &Path) -> io::Result<()> {
    let old = dir.join(REDB_FILE);
    if !old.try_exists()? {
        return Ok(());
    }
    let new = dir.join(LOG_DIR);
    if !new.try_exists()? {
        let tmp = dir.join(format!("{LOG_DIR}.tmp"));
        if tmp.try_exists()? {
            std::fs::remove_dir_all(&tmp)?;
        }
        let (entries, meta) = read(&old)?;
        // The entries (all after the purged one), then the pointers: read back in this order,
        // the purge removes none of them.
        let mut records: Vec<Record<'_>> = (entries.iter())
            .map(|(index, entry)| Record::Entry {
                index: *index,
                entry,
            })
            .collect();
        for (key, bytes) in &meta {
            match key.as_str() {
                KEY_VOTE => records.push(Record::Vote(bytes)),
                KEY_COMMITTED => records.push(Record::Committed(bytes)),
                KEY_PURGED => {
                    let log_id: LogIdOf<TypeConfig> =
                        postcard::from_bytes(bytes).map_err(io_err)?;
                    records.push(Record::Purge {
                        upto: log_id.index,
                        log_id: bytes,
                    });
                }
                _ => {}
            }
        }
        let (mut files, _) = Segments::open(&tmp, SEGMENT_BYTES)?;
        files.write(&records)?;
        drop(files);
        std::fs::rename(&tmp, &new)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    std::fs::remove_file(&old)?;
    std::fs::File::open(dir)?.sync_all()
}

type Entries = Vec<(u64, Vec<u8>)>;
type Meta = Vec<(String, Vec<u8>)>;

fn read(path: &Path) -> io::Result<(Entries, Meta)> {
    let db = crate::open_db(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let r = db.begin_read().map_err(io_err)?;
    let mut entries = Vec::new();
    match r.open_table(LOG) {
        Ok(log) => {
            for item in log.iter().map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                entries.push((k.value(), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut meta = Vec::new();
    match r.open_table(META) {
        Ok(t) => {
            for item in t.iter().map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                meta.push((k.value().to_string(), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(io_err(e)),
    }
    Ok((entries, meta))
}
