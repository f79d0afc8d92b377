//! A record of the log's files: its length (`u32`, little endian, of the kind byte and the
//! body), a CRC-32 of the length, kind and body, the kind ([`Kind`]) and the body; how records
//! are written and read back, and where reading stops.

use std::io;

/// Length and checksum before a record's kind and body.
pub(super) const RECORD_HEAD: usize = 8;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// The segment's header (postcard; see `segments`).
    Header = 1,
    /// A log entry: its index (`u64` LE), then the entry (postcard).
    Entry = 2,
    /// Entries from this index (`u64` LE) on are removed.
    Truncate = 3,
    /// Entries up to this index (`u64` LE) are purged; then the purged log id (postcard).
    Purge = 4,
    /// The vote (postcard).
    Vote = 5,
    /// The committed log id (postcard).
    Committed = 6,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::Entry,
            3 => Kind::Truncate,
            4 => Kind::Purge,
            5 => Kind::Vote,
            6 => Kind::Committed,
            _ => return None,
        })
    }
}

/// One operation as the writer writes it (bodies already encoded).
pub(crate) enum Record<'a> {
    Entry { index: u64, entry: &'a [u8] },
    Truncate { from: u64 },
    Purge { upto: u64, log_id: &'a [u8] },
    Vote(&'a [u8]),
    Committed(&'a [u8]),
}

/// The largest encoded entry a record holds (its length field is 32 bits and counts the kind
/// and the index too).
pub(crate) const MAX_ENTRY_BYTES: usize = u32::MAX as usize - 1 - 8;

pub(super) fn push_record(buf: &mut Vec<u8>, kind: Kind, parts: &[&[u8]]) {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let len = (len as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&[kind as u8]);
    for p in parts {
        crc.update(p);
    }
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind as u8);
    for p in parts {
        buf.extend_from_slice(p);
    }
}

impl Record<'_> {
    /// Append this record's bytes to `buf`.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Record::Entry { index, entry } => {
                push_record(buf, Kind::Entry, &[&index.to_le_bytes(), entry])
            }
            Record::Truncate { from } => push_record(buf, Kind::Truncate, &[&from.to_le_bytes()]),
            Record::Purge { upto, log_id } => {
                push_record(buf, Kind::Purge, &[&upto.to_le_bytes(), log_id])
            }
            Record::Vote(v) => push_record(buf, Kind::Vote, &[v]),
            Record::Committed(c) => push_record(buf, Kind::Committed, &[c]),
        }
    }
}

/// Where reading a segment's records stopped.
pub(super) enum Stop {
    /// Zeros, or the end of the file: no more records.
    Clean,
    /// A record cut short or failing its checksum.
    Torn(&'static str),
}

/// The record of `data` at `at`: its kind, its body and where the next one starts; or why
/// there is none.
pub(super) fn next_record(data: &[u8], at: usize) -> Result<(Kind, &[u8], usize), Stop> {
    let rest = data.get(at..).unwrap_or_default();
    let Some(head) = rest.get(..RECORD_HEAD) else {
        return Err(if rest.iter().all(|b| *b == 0) {
            Stop::Clean
        } else {
            Stop::Torn("a record's head is cut short")
        });
    };
    let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
    if len == 0 {
        return Err(if rest.iter().all(|b| *b == 0) {
            Stop::Clean
        } else {
            Stop::Torn("a zero length before the end of the records")
        });
    }
    let Some(record) = rest.get(RECORD_HEAD..RECORD_HEAD + len) else {
        return Err(Stop::Torn("a record is cut short"));
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..4]);
    h.update(record);
    if h.finalize() != crc {
        return Err(Stop::Torn("a record fails its checksum"));
    }
    let kind = Kind::from_byte(record[0]).ok_or(Stop::Torn("a record of an unknown kind"))?;
    Ok((kind, &record[1..], at + RECORD_HEAD + len))
}

/// The records of `data` from `at`, each handed to `each` with its kind and body; the offset
/// reading stopped at and why.
pub(super) fn read_records(
    data: &[u8],
    mut at: usize,
    mut each: impl FnMut(Kind, &[u8]) -> io::Result<()>,
) -> io::Result<(usize, Stop)> {
    loop {
        match next_record(data, at) {
            Ok((kind, body, next)) => {
                each(kind, body)?;
                at = next;
            }
            Err(stop) => return Ok((at, stop)),
        }
    }
}

pub(super) fn index_at(body: &[u8], what: &str) -> io::Result<u64> {
    body.get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| invalid(format!("a {what} record without its index")))
}

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
