//! The Raft log's files: a directory of append-only segments of checksummed records.
//!
//! A segment is `{seq:020}.log`: the magic bytes, a header record, then records
//! ([`super::record`]) appended in the order the writer received the operations. The file is
//! preallocated ahead of the writes, so an append and its `fdatasync` write a page or two of
//! data and no size change; zeros after the last record read as "no more records".
//!
//! The header carries the segment's sequence number, where its predecessor ended, and the
//! state the records before it leave (vote, committed pointer, last purged log id), so a
//! segment whose entries are all purged can be deleted without losing any of them. Only the
//! oldest segments are deleted, in order; the current one never is.
//!
//! Crash recovery: the last segment ends at its first record that is cut short or fails its
//! checksum (a batch that was being written, so never acknowledged). Opening never writes
//! after that point: it cuts the file there and starts a new segment whose header names the
//! cut, so a predecessor is read exactly to the end its successor names, and anything wrong
//! before it is corruption, refused rather than read past. A new segment is written as a
//! temporary file (header fsynced) and renamed into place, so a segment never lacks its
//! header.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{
    Kind, Record, Stop, index_at, invalid, next_record, push_record, read_records,
};
use crate::io_err;

/// The first bytes of every segment.
const MAGIC: &[u8; 8] = b"SWYLOG\x00\x01";
/// A segment is closed and a new one started once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Space reserved ahead of the writes at a time.
const PREALLOCATE: u64 = 8 << 20;

/// A segment's header: who it is, where its predecessor ended, and the state before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Header {
    seq: u64,
    /// The predecessor's sequence number and the length of its records (the byte after its
    /// last valid record).
    prev: Option<(u64, u64)>,
    state: Checkpoint,
}

/// The log's state apart from its entries, encoded as the store keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    /// The index of the last purged entry and its log id.
    pub purged: Option<(u64, Vec<u8>)>,
}

/// The log as read back from its segments, still encoded.
#[derive(Default)]
pub(crate) struct Replayed {
    pub entries: BTreeMap<u64, Vec<u8>>,
    pub state: Checkpoint,
}

/// A segment still on disk: its sequence number and the highest entry index it holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    max_index: Option<u64>,
}

/// The segment being appended to.
struct Current {
    file: File,
    seq: u64,
    /// Where the next record goes.
    offset: u64,
    /// The file's length: preallocated up to here.
    allocated: u64,
}

/// The segment being appended to, and the ones before it still on disk.
pub(crate) struct Segments {
    dir: PathBuf,
    /// Holds the directory's lock (`LOCK`, `flock`ed) while the log is open.
    _lock: File,
    current: Current,
    /// Oldest first; the last is the current segment.
    held: VecDeque<Held>,
    /// The state the records so far leave: the next segment's header.
    state: Checkpoint,
    segment_bytes: u64,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segments {
    /// Open the log in `dir` (created if need be): read every segment back, then start a new
    /// one to append to. `segment_bytes` is [`SEGMENT_BYTES`] but in tests. A log that cannot
    /// be read back whole is refused, naming the file and what to do.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Segments, Replayed)> {
        Self::open_inner(dir, segment_bytes).map_err(|e| {
            if e.kind() != io::ErrorKind::InvalidData {
                return e;
            }
            invalid(format!(
                "{e}. The log cannot be read past this point: restore the data directory from a \
                 backup or, on a member of a cluster of several nodes, remove the data directory \
                 and join the node to the cluster again (it receives the state from the leader)"
            ))
        })
    }

    fn open_inner(dir: &Path, segment_bytes: u64) -> io::Result<(Segments, Replayed)> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            // The new directory's name is durable in its parent, or a crash could forget it.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let lock = lock(dir)?;
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".log.tmp") {
                // A segment whose creation did not finish: it never held a record.
                std::fs::remove_file(entry.path())?;
            } else if let Some(seq) = name.strip_suffix(".log").and_then(|s| s.parse().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        // Each segment names its predecessor; the oldest ones are deleted one at a time, each
        // deletion durable before the next, so the segments present follow each other. Only
        // the headers are read here; each segment's records one segment at a time below.
        let mut chain: Vec<(u64, Header, usize)> = Vec::new();
        for &seq in seqs.iter().rev() {
            let path = segment_path(dir, seq);
            if let Some((next, h, _)) = chain.last()
                && h.prev.map(|(p, _)| p) != Some(seq)
            {
                return Err(invalid(format!(
                    "{}: segment {next} follows segment {seq} but names {:?} as its predecessor: \
                     a segment is missing",
                    path.display(),
                    h.prev.map(|(p, _)| p)
                )));
            }
            let (header, start) = read_header(&read_head(&path)?)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            if header.seq != seq {
                return Err(invalid(format!(
                    "{}: its header names segment {}",
                    path.display(),
                    header.seq
                )));
            }
            chain.push((seq, header, start));
        }
        chain.reverse();

        let mut replayed = Replayed::default();
        let mut held = VecDeque::new();
        let mut last_end = None;
        for i in 0..chain.len() {
            let (seq, header, start) = &chain[i];
            let path = segment_path(dir, *seq);
            // A predecessor is read exactly to where its successor says it ends.
            let end = chain
                .get(i + 1)
                .and_then(|(_, h, _)| h.prev.map(|(_, end)| end));
            replayed.state = header.state.clone();
            let mut max_index = None;
            let data = std::fs::read(&path)?;
            let (stopped, stop) = read_records(&data, *start, |kind, body| {
                apply(&mut replayed, &mut max_index, kind, body)
            })
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            match (end, stop) {
                (Some(end), _) if stopped as u64 == end => {}
                (Some(end), Stop::Torn(why)) if (stopped as u64) < end => {
                    return Err(invalid(format!(
                        "{}: corrupt at byte {stopped} ({why}), before the end of its records \
                         at {end}",
                        path.display()
                    )));
                }
                (Some(end), _) => {
                    return Err(invalid(format!(
                        "{}: its records end at byte {stopped}, the next segment says {end}",
                        path.display()
                    )));
                }
                (None, Stop::Clean) => {}
                (None, Stop::Torn(why)) => {
                    tracing::warn!(
                        segment = %path.display(),
                        at = stopped,
                        why,
                        "the raft log ends in a record that was being written; it is dropped"
                    );
                }
            }
            held.push_back(Held {
                seq: *seq,
                max_index,
            });
            last_end = Some((*seq, stopped as u64));
        }
        // Purged entries written before the purge was (a segment read before its purge record's).
        if let Some((upto, _)) = &replayed.state.purged {
            replayed.entries = replayed.entries.split_off(&(upto + 1));
        }
        check_contiguous(&replayed)?;

        if let Some((seq, end)) = last_end {
            // Cut the last segment where its records end: what follows was never acknowledged
            // (and the preallocated rest is given back). Read to `end` only, from now on.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(segment_path(dir, seq))?;
            f.set_len(end)?;
            f.sync_all()?;
        }
        let seq = last_end.map_or(1, |(s, _)| s + 1);
        let current = create(dir, seq, last_end, &replayed.state)?;
        held.push_back(Held {
            seq,
            max_index: None,
        });
        let mut segments = Segments {
            dir: dir.to_path_buf(),
            _lock: lock,
            current,
            held,
            state: replayed.state.clone(),
            segment_bytes,
            buf: Vec::new(),
        };
        segments.delete_purged()?;
        Ok((segments, replayed))
    }

    /// Append `records` and make them durable (one write and one `fdatasync`), then delete
    /// segments left wholly purged and start a new one if this one is full.
    pub(crate) fn write(&mut self, records: &[Record<'_>]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut purged = false;
        for r in records {
            r.encode(&mut buf);
            match r {
                Record::Entry { index, .. } => {
                    let current = self.held.back_mut().expect("a current segment");
                    current.max_index = Some(current.max_index.map_or(*index, |m| m.max(*index)));
                }
                Record::Truncate { .. } => {}
                Record::Purge { upto, log_id } => {
                    self.state.purged = Some((*upto, log_id.to_vec()));
                    purged = true;
                }
                Record::Vote(v) => self.state.vote = Some(v.to_vec()),
                Record::Committed(c) => self.state.committed = Some(c.to_vec()),
            }
        }
        let c = &mut self.current;
        let end = c.offset + buf.len() as u64;
        if end > c.allocated {
            c.allocated = preallocate(&c.file, c.allocated, end - c.allocated)?;
        }
        c.file.write_all_at(&buf, c.offset)?;
        c.file.sync_data()?;
        c.offset = end;
        self.buf = buf;
        if purged {
            self.delete_purged()?;
        }
        let c = &self.current;
        if c.offset >= self.segment_bytes {
            // The current segment ends where its records do; its tail of zeros is given back.
            c.file.set_len(c.offset)?;
            let seq = c.seq + 1;
            self.current = create(&self.dir, seq, Some((c.seq, c.offset)), &self.state)?;
            self.held.push_back(Held {
                seq,
                max_index: None,
            });
        }
        Ok(())
    }

    /// Delete the oldest segments while every entry in them is purged (never the current one).
    fn delete_purged(&mut self) -> io::Result<()> {
        let upto = self.state.purged.as_ref().map(|(u, _)| *u);
        while self.held.len() > 1 {
            let oldest = self.held[0];
            let all_purged = match (oldest.max_index, upto) {
                (None, _) => true,
                (Some(max), Some(upto)) => max <= upto,
                (Some(_), None) => false,
            };
            if !all_purged {
                break;
            }
            std::fs::remove_file(segment_path(&self.dir, oldest.seq))?;
            sync_dir(&self.dir)?;
            self.held.pop_front();
        }
        Ok(())
    }

    /// How many segment files the log has now.
    #[cfg(test)]
    pub(crate) fn files(&self) -> usize {
        self.held.len()
    }
}

/// Take the lock of the log in `dir` (one process at a time): `ResourceBusy` when another
/// holds it. The kernel lets go of it when the process ends, however it ends.
fn lock(dir: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "it is open in another process",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Create segment `seq` (after `prev`, which ended where it says) with its header, durably.
fn create(
    dir: &Path,
    seq: u64,
    prev: Option<(u64, u64)>,
    state: &Checkpoint,
) -> io::Result<Current> {
    let path = segment_path(dir, seq);
    let tmp = path.with_extension("log.tmp");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let header = Header {
        seq,
        prev,
        state: state.clone(),
    };
    let mut buf = MAGIC.to_vec();
    push_record(
        &mut buf,
        Kind::Header,
        &[&postcard::to_allocvec(&header).map_err(io_err)?],
    );
    let allocated = preallocate(&file, 0, buf.len() as u64)?;
    file.write_all_at(&buf, 0)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(Current {
        file,
        seq,
        offset: buf.len() as u64,
        allocated,
    })
}

/// A segment's first bytes, enough for its header (three small encoded values).
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    File::open(path)?.take(64 << 10).read_to_end(&mut head)?;
    Ok(head)
}

/// Reserve `len` bytes from `at` (`fallocate`, or a longer file where the filesystem has no
/// such call); the file's new length.
fn preallocate(file: &File, at: u64, len: u64) -> io::Result<u64> {
    let len = len.max(PREALLOCATE);
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), at, len) {
        Ok(()) => {}
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => file.set_len(at + len)?,
        Err(e) => return Err(e.into()),
    }
    Ok(at + len)
}

/// A segment's header and where its records start.
fn read_header(data: &[u8]) -> Result<(Header, usize), String> {
    if data.get(..MAGIC.len()) != Some(MAGIC) {
        return Err("not a switchyard raft log segment (its first bytes)".into());
    }
    match next_record(data, MAGIC.len()) {
        Ok((Kind::Header, body, next)) => postcard::from_bytes::<Header>(body)
            .map(|h| (h, next))
            .map_err(|e| format!("its header record does not decode: {e}")),
        _ => Err("its header record is missing or damaged".into()),
    }
}

fn apply(r: &mut Replayed, max_index: &mut Option<u64>, kind: Kind, body: &[u8]) -> io::Result<()> {
    match kind {
        Kind::Header => return Err(invalid("a second header record".into())),
        Kind::Entry => {
            let index = index_at(body, "log entry")?;
            *max_index = Some(max_index.map_or(index, |m| m.max(index)));
            r.entries.insert(index, body[8..].to_vec());
        }
        Kind::Truncate => {
            let from = index_at(body, "truncate")?;
            r.entries.split_off(&from);
        }
        Kind::Purge => {
            let upto = index_at(body, "purge")?;
            r.entries = r.entries.split_off(&(upto + 1));
            r.state.purged = Some((upto, body[8..].to_vec()));
        }
        Kind::Vote => r.state.vote = Some(body.to_vec()),
        Kind::Committed => r.state.committed = Some(body.to_vec()),
    }
    Ok(())
}

/// The entries read back follow each other, from right after the purged one.
fn check_contiguous(r: &Replayed) -> io::Result<()> {
    let mut expect = r.state.purged.as_ref().map(|(u, _)| u + 1);
    for &index in r.entries.keys() {
        if let Some(e) = expect
            && index != e
        {
            return Err(invalid(format!(
                "the raft log lacks entries {e} to {}: a segment is missing or damaged",
                index - 1
            )));
        }
        expect = Some(index + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Vec<u8> {
        format!("entry {i} {}", "x".repeat(100)).into_bytes()
    }

    fn append(s: &mut Segments, range: std::ops::RangeInclusive<u64>) {
        let bodies: Vec<(u64, Vec<u8>)> = range.map(|i| (i, entry(i))).collect();
        let records: Vec<Record<'_>> = bodies
            .iter()
            .map(|(index, e)| Record::Entry {
                index: *index,
                entry: e,
            })
            .collect();
        s.write(&records).unwrap();
    }

    fn indexes(r: &Replayed) -> Vec<u64> {
        r.entries.keys().copied().collect()
    }

    fn current_path(s: &Segments) -> PathBuf {
        segment_path(&s.dir, s.current.seq)
    }

    #[test]
    fn records_read_back_with_truncate_purge_vote_and_committed_across_segments() {
        let d = tempfile::TempDir::new().unwrap();
        let (mut s, r) = Segments::open(d.path(), 1024).unwrap();
        assert!(r.entries.is_empty() && r.state.vote.is_none());
        for i in 1..=60 {
            append(&mut s, i..=i);
        }
        assert!(s.files() > 2, "small segments rotate: {}", s.files());
        s.write(&[Record::Truncate { from: 51 }, Record::Vote(b"v2")])
            .unwrap();
        append(&mut s, 51..=55);
        s.write(&[Record::Committed(b"c50")]).unwrap();
        drop(s);

        let (s, r) = Segments::open(d.path(), 1024).unwrap();
        assert_eq!(indexes(&r), (1..=55).collect::<Vec<_>>());
        assert_eq!(r.entries[&7], entry(7));
        assert_eq!(r.state.vote.as_deref(), Some(&b"v2"[..]));
        assert_eq!(r.state.committed.as_deref(), Some(&b"c50"[..]));
        assert!(r.state.purged.is_none());
        let files = s.files();

        // Purging deletes the oldest segments whose entries are all purged, and only those.
        let mut s = s;
        s.write(&[Record::Purge {
            upto: 40,
            log_id: b"p40",
        }])
        .unwrap();
        assert!(s.files() < files, "{} files, were {files}", s.files());
        drop(s);
        let (_, r) = Segments::open(d.path(), 1024).unwrap();
        assert_eq!(indexes(&r), (41..=55).collect::<Vec<_>>());
        assert_eq!(r.state.purged, Some((40, b"p40".to_vec())));
        assert_eq!(
            r.state.vote.as_deref(),
            Some(&b"v2"[..]),
            "kept by the headers"
        );
    }

    #[test]
    fn a_torn_last_batch_is_dropped_and_never_read_after_more_writes() {
        let d = tempfile::TempDir::new().unwrap();
        let (mut s, _) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        append(&mut s, 1..=10);
        // A batch that was being written when the machine stopped: entry 11 cut short, then
        // a whole record of entry 12 that reached the disk before it.
        let mut torn = Vec::new();
        Record::Entry {
            index: 11,
            entry: &entry(11),
        }
        .encode(&mut torn);
        let cut = torn.len() / 2;
        torn.truncate(cut);
        torn.extend_from_slice(&[0xAB; 9]);
        Record::Entry {
            index: 12,
            entry: &entry(12),
        }
        .encode(&mut torn);
        s.current
            .file
            .write_all_at(&torn, s.current.offset)
            .unwrap();
        let path = current_path(&s);
        drop(s); // as if killed: nothing more is written (dropping writes nothing)

        let (mut s, r) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        assert_eq!(indexes(&r), (1..=10).collect::<Vec<_>>());
        // Cut where its records end; the new entries go to a new segment.
        assert!(std::fs::metadata(&path).unwrap().len() < SEGMENT_BYTES);
        append(&mut s, 11..=11);
        drop(s);
        let (_, r) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        assert_eq!(indexes(&r), (1..=11).collect::<Vec<_>>());
        assert_eq!(r.entries[&11], entry(11));
    }

    #[test]
    fn damage_before_the_end_of_a_closed_segment_is_refused_and_nothing_is_deleted() {
        let d = tempfile::TempDir::new().unwrap();
        let (mut s, _) = Segments::open(d.path(), 1024).unwrap();
        for i in 1..=60 {
            append(&mut s, i..=i);
        }
        drop(s);
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        let first = names[0].clone();
        let mut bytes = std::fs::read(&first).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 0xFF;
        std::fs::write(&first, &bytes).unwrap();
        let e = Segments::open(d.path(), 1024).err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("corrupt at byte"), "{e}");
        assert!(e.to_string().contains("restore the data directory"), "{e}");

        // A segment missing from the middle is refused, naming it.
        bytes[at] ^= 0xFF;
        std::fs::write(&first, &bytes).unwrap();
        std::fs::remove_file(&names[2]).unwrap();
        let e = Segments::open(d.path(), 1024).err().expect("refused");
        assert!(e.to_string().contains("a segment is missing"), "{e}");
        assert!(first.exists() && names[1].exists(), "nothing deleted");

        // The oldest one missing: the entries after the purged one are missing, said so.
        let (mut s, _) = Segments::open(d.path().join("b").as_path(), 1024).unwrap();
        for i in 1..=60 {
            append(&mut s, i..=i);
        }
        s.write(&[Record::Purge {
            upto: 2,
            log_id: b"p2",
        }])
        .unwrap();
        drop(s);
        let mut names: Vec<_> = std::fs::read_dir(d.path().join("b"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        std::fs::remove_file(&names[0]).unwrap();
        let e = Segments::open(d.path().join("b").as_path(), 1024)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("lacks entries 3 to"), "{e}");
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_log() {
        let d = tempfile::TempDir::new().unwrap();
        let (first, _) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        let e = Segments::open(d.path(), SEGMENT_BYTES)
            .err()
            .expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        drop(first);
        Segments::open(d.path(), SEGMENT_BYTES).unwrap();
    }

    #[test]
    fn a_segment_whose_creation_did_not_finish_is_removed() {
        let d = tempfile::TempDir::new().unwrap();
        let (mut s, _) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        append(&mut s, 1..=3);
        let next = segment_path(d.path(), s.current.seq + 1).with_extension("log.tmp");
        drop(s);
        std::fs::write(&next, b"SWY").unwrap();
        let (_, r) = Segments::open(d.path(), SEGMENT_BYTES).unwrap();
        assert_eq!(indexes(&r), vec![1, 2, 3]);
        assert!(!next.exists());
    }
}
