//! Snapshots as openraft passes them around, and where a data directory keeps them.
//!
//! - [`SnapshotData`]: an encoded snapshot (core state and event history, postcard): a file on
//!   a server's disk, or bytes in memory (a simulation's disk, a snapshot just encoded). It is
//!   read in pieces to be sent ([`SnapshotData::read_at`]) and whole only to be decoded.
//! - [`SnapshotWriter`]: a snapshot arriving piece by piece from the leader, written to a
//!   temporary file in the data directory (or to memory) instead of being held whole.
//! - [`SnapshotStore`]: where the current snapshot is kept; [`FileSnapshots`] keeps it in the
//!   data directory's `snapshot` file: the data, then its meta (postcard), the meta's length
//!   and a magic number. A new one is written to a temporary file (a received one is that file
//!   already), fsynced, renamed over the old one, and the directory fsynced.
//! - [`migrate_from_redb`]: data formats 2 and 3 kept the snapshot as one record in
//!   `state.redb`; the migration writes it as the `snapshot` file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::alias::SnapshotMetaOf;
use serde::Deserialize;

use crate::{TypeConfig, io_err};

/// What a snapshot covers: its last log id and membership.
pub type Meta = SnapshotMetaOf<TypeConfig>;

/// A boxed future, as the injected parts return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// CPU-bound work of a snapshot (encoding or decoding one), run by [`SnapshotStore::blocking`].
pub type BlockingWork = Box<dyn FnOnce() + Send>;

/// The file of the current snapshot in a data directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Temporary files: a snapshot being written or received. Left-overs are removed on open.
const TEMP_PREFIX: &str = "snapshot.tmp.";
/// The last bytes of a snapshot file.
const MAGIC: [u8; 8] = *b"SYSNAP01";
/// The trailer's fixed part: the meta's length (u32, little-endian), then [`MAGIC`].
const TRAILER_FIXED: usize = 4 + MAGIC.len();

/// An encoded snapshot. Cloning shares it.
///
/// The second field marks data lent out by the state machine as its current snapshot (see
/// [`SnapshotData::lent`]): while a clone of it lives, the loan is outstanding.
#[derive(Clone)]
pub struct SnapshotData(
    Source,
    #[expect(
        dead_code,
        reason = "held, not read: dropping its last holder returns the loan"
    )]
    Option<Arc<Loan>>,
);

/// How many lent copies of snapshot data are out (see [`SnapshotData::lent`]), watched. Cloning
/// shares the count.
#[derive(Clone)]
pub struct Loans(Arc<tokio::sync::watch::Sender<usize>>);

/// One outstanding loan: returned when dropped.
struct Loan(Loans);

impl Drop for Loan {
    fn drop(&mut self) {
        (self.0).0.send_modify(|n| *n -= 1);
    }
}

impl Default for Loans {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Loans {
    /// Wait until every loan is returned (at once if none is out), for `at_most`; whether they
    /// were.
    pub async fn returned(&self, at_most: std::time::Duration) -> bool {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(at_most, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

#[derive(Clone)]
enum Source {
    Memory(Arc<Vec<u8>>),
    File(Arc<StoredFile>),
}

/// The data of a snapshot file: its first `len` bytes.
struct StoredFile {
    file: File,
    len: u64,
    /// Held by a whole read, which moves the handle's cursor (pieces are read by position).
    reading: Mutex<()>,
    /// While the file is a temporary one (received, not yet saved): its path, removed when the
    /// data is dropped unsaved.
    temp: Mutex<Option<PathBuf>>,
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        if let Some(path) = self.temp.get_mut().unwrap().take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Source::Memory(_) => "memory",
            Source::File(_) => "file",
        };
        write!(f, "SnapshotData({kind}, {} bytes)", self.len())
    }
}

impl SnapshotData {
    fn new(source: Source) -> Self {
        Self(source, None)
    }

    /// The same data, lent: `loans` counts it out until this data and all its clones are
    /// dropped.
    pub fn lent(self, loans: &Loans) -> Self {
        loans.0.send_modify(|n| *n += 1);
        Self(self.0, Some(Arc::new(Loan(loans.clone()))))
    }

    /// Encoded bytes in memory.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self::new(Source::Memory(Arc::new(bytes)))
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Source::Memory(v) => v.len() as u64,
            Source::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` with the bytes from `offset`; an error if they run out first.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset} of a {}-byte snapshot",
                    buf.len(),
                    self.len()
                ),
            ));
        }
        match &self.0 {
            Source::Memory(v) => {
                buf.copy_from_slice(&v[offset as usize..offset as usize + buf.len()]);
                Ok(())
            }
            Source::File(f) => f.file.read_exact_at(buf, offset),
        }
    }

    /// Run `f` on the whole data: in place in memory, read once from a file.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        match &self.0 {
            Source::Memory(v) => Ok(f(v)),
            Source::File(s) => {
                // The handle's cursor is shared by its clones: one whole read at a time. Read
                // into uninitialised capacity (`read_to_end`), not a zeroed buffer: the
                // allocation is as large as the snapshot.
                let mut bytes = Vec::with_capacity(s.len as usize);
                {
                    let _whole = s.reading.lock().unwrap();
                    let mut file = &s.file;
                    file.seek(io::SeekFrom::Start(0))?;
                    file.take(s.len).read_to_end(&mut bytes)?;
                }
                if bytes.len() as u64 != s.len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the snapshot file holds {} of {} bytes", bytes.len(), s.len),
                    ));
                }
                Ok(f(&bytes))
            }
        }
    }
}

/// A snapshot being received, piece by piece, in order.
pub struct SnapshotWriter(Sink);

enum Sink {
    Memory(Vec<u8>),
    File(Box<TempFile>),
}

/// A temporary file of a data directory; removed when dropped before it is kept.
struct TempFile {
    file: Option<File>,
    path: PathBuf,
    len: u64,
}

impl TempFile {
    fn create(dir: &Path) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{}.{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            file: Some(file),
            path,
            len: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_ref().expect("open until kept");
        file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The file and its path; it is no longer removed on drop.
    fn into_parts(mut self) -> (File, PathBuf) {
        let file = self.file.take().expect("open until kept");
        (file, std::mem::take(&mut self.path))
    }

    /// Keep the file as snapshot data: it is no longer removed on drop, but when the data is
    /// dropped without being saved.
    fn keep(self) -> SnapshotData {
        let len = self.len;
        let (file, path) = self.into_parts();
        SnapshotData::new(Source::File(Arc::new(StoredFile {
            file,
            len,
            reading: Mutex::new(()),
            temp: Mutex::new(Some(path)),
        })))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl SnapshotWriter {
    /// A writer to memory (a simulation's disk).
    pub fn memory() -> Self {
        Self(Sink::Memory(Vec::new()))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Sink::Memory(v) => v.len() as u64,
            Sink::File(t) => t.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the next piece.
    pub fn write(&mut self, piece: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Sink::Memory(v) => {
                v.extend_from_slice(piece);
                Ok(())
            }
            Sink::File(t) => t.write(piece),
        }
    }

    /// The data received. Not yet durable: saving it as the current snapshot makes it so.
    pub fn finish(self) -> SnapshotData {
        match self.0 {
            Sink::Memory(v) => SnapshotData::from_vec(v),
            Sink::File(t) => t.keep(),
        }
    }
}

/// Where the current snapshot is kept.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Run a snapshot's CPU-bound work (encoding, decoding). Inline by default (the
    /// simulation, where a real thread would break virtual time); a server runs it on a
    /// blocking thread so that the async runtime's workers go on serving.
    fn blocking(&self, work: BlockingWork) -> BoxFuture<'_, io::Result<()>> {
        work();
        Box::pin(async { Ok(()) })
    }
    /// Make `data` with `meta` the current snapshot (durable when the future resolves), and
    /// answer the stored data (on a server, the file, so that bytes in memory can be freed).
    fn save(&self, meta: &Meta, data: &SnapshotData) -> BoxFuture<'_, io::Result<SnapshotData>>;
    /// The current snapshot, if any: its meta, and its data (read when asked).
    fn load(&self) -> io::Result<Option<(Meta, SnapshotData)>>;
    /// Somewhere to receive a snapshot into. In memory by default.
    fn writer(&self) -> io::Result<SnapshotWriter> {
        Ok(SnapshotWriter::memory())
    }
    /// Close the store; later saves fail.
    fn close(&self) {}
}

/// Snapshots in a data directory's [`SNAPSHOT_FILE`], written with fsync.
pub struct FileSnapshots {
    dir: PathBuf,
    closed: AtomicBool,
}

impl FileSnapshots {
    /// Keep snapshots in `dir` (which must exist); temporary files left by a crash are
    /// removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            closed: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the snapshot store is closed",
            ));
        }
        Ok(())
    }
}

impl SnapshotStore for FileSnapshots {
    fn blocking(&self, work: BlockingWork) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move { tokio::task::spawn_blocking(work).await.map_err(io_err) })
    }

    fn save(&self, meta: &Meta, data: &SnapshotData) -> BoxFuture<'_, io::Result<SnapshotData>> {
        let (meta, data) = (meta.clone(), data.clone());
        Box::pin(async move {
            self.check_open()?;
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || write_file(&dir, &meta, &data))
                .await
                .map_err(io_err)?
        })
    }

    fn load(&self) -> io::Result<Option<(Meta, SnapshotData)>> {
        read_file(&self.dir.join(SNAPSHOT_FILE))
    }

    fn writer(&self) -> io::Result<SnapshotWriter> {
        self.check_open()?;
        Ok(SnapshotWriter(Sink::File(Box::new(TempFile::create(
            &self.dir,
        )?))))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Make `data` with `meta` the snapshot file of `dir`, durably, and answer the file's data.
/// Data received into a temporary file of `dir` becomes the file itself; other data is copied
/// into a new one.
fn write_file(dir: &Path, meta: &Meta, data: &SnapshotData) -> io::Result<SnapshotData> {
    let (file, path) = match adoptable(dir, data)? {
        Some(received) => received,
        None => {
            let mut t = TempFile::create(dir)?;
            let mut offset = 0;
            let mut buf = vec![0u8; (1 << 20).min(data.len() as usize)];
            while offset < data.len() {
                let n = (buf.len() as u64).min(data.len() - offset) as usize;
                data.read_at(offset, &mut buf[..n])?;
                t.write(&buf[..n])?;
                offset += n as u64;
            }
            t.into_parts()
        }
    };
    let written = (|| -> io::Result<()> {
        file.set_len(data.len())?;
        let mut trailer = postcard::to_allocvec(meta).map_err(io_err)?;
        trailer.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&MAGIC);
        file.write_all_at(&trailer, data.len())?;
        file.sync_all()?;
        std::fs::rename(&path, dir.join(SNAPSHOT_FILE))?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(SnapshotData::new(Source::File(Arc::new(StoredFile {
        file,
        len: data.len(),
        reading: Mutex::new(()),
        temp: Mutex::new(None),
    }))))
}

/// The file of `data` and its path, when `data` was received into a temporary file of `dir`
/// and not saved yet: that file becomes the snapshot (it is no longer removed when `data` is
/// dropped).
fn adoptable(dir: &Path, data: &SnapshotData) -> io::Result<Option<(File, PathBuf)>> {
    let Source::File(s) = &data.0 else {
        return Ok(None);
    };
    let mut temp = s.temp.lock().unwrap();
    if temp.as_deref().and_then(Path::parent) != Some(dir) {
        return Ok(None);
    }
    let file = s.file.try_clone()?;
    Ok(temp.take().map(|path| (file, path)))
}

/// The snapshot in the file at `path`, if there is one.
fn read_file(path: &Path) -> io::Result<Option<(Meta, SnapshotData)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let size = file.metadata()?.len();
    if size < TRAILER_FIXED as u64 {
        return Err(bad(format!("{size} bytes: too short for a snapshot")));
    }
    let mut fixed = [0u8; TRAILER_FIXED];
    file.read_exact_at(&mut fixed, size - TRAILER_FIXED as u64)?;
    if fixed[4..] != MAGIC {
        return Err(bad(
            "not a snapshot file (no magic number at its end)".into()
        ));
    }
    let meta_len = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes")) as u64;
    let Some(len) = size.checked_sub(TRAILER_FIXED as u64 + meta_len) else {
        return Err(bad(format!(
            "its meta ({meta_len} bytes) is longer than the file"
        )));
    };
    let mut meta = vec![0u8; meta_len as usize];
    file.read_exact_at(&mut meta, len)?;
    let meta: Meta = postcard::from_bytes(&meta).map_err(|e| bad(format!("meta: {e}")))?;
    Ok(Some((
        meta,
        SnapshotData::new(Source::File(Arc::new(StoredFile {
            file,
            len,
            reading: Mutex::new(()),
            temp: Mutex::new(None),
        }))),
    )))
}

/// Data formats 2 and 3 kept the current snapshot in `state.redb`, table `snapshot`, key
/// `current`: postcard of the meta, then the data as a byte string. Write it as the snapshot
/// file, durably, then remove `state.redb`. A directory without `state.redb` is left as it
/// is (a migration interrupted after the removal already wrote the file).
pub fn migrate_from_redb(dir: &Path) -> io::Result<()> {
    const SNAPSHOT: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("snapshot");
    #[derive(Deserialize)]
    struct Record {
        meta: Meta,
        #[serde(with = "serde_bytes_compat")]
        data: Vec<u8>,
    }
    let path = dir.join("state.redb");
    if !path.try_exists()? {
        return Ok(());
    }
    let record = {
        use redb::ReadableDatabase;
        let db = crate::open_db(&path)?;
        let r = db.begin_read().map_err(io_err)?;
        match r.open_table(SNAPSHOT) {
            Ok(t) => t
                .get("current")
                .map_err(io_err)?
                .map(|v| postcard::from_bytes::<Record>(v.value()))
                .transpose()
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: the snapshot record: {e}", path.display()),
                    )
                })?,
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(io_err(e)),
        }
    };
    if let Some(Record { meta, data }) = record {
        write_file(dir, &meta, &SnapshotData::from_vec(data))?;
    }
    std::fs::remove_file(&path)?;
    File::open(dir)?.sync_all()
}

/// A byte vector written as one byte string (postcard: its length, then the bytes), taken back
/// as bytes or as a sequence (what serde's derive of a `Vec<u8>` field writes: the same bytes).
mod serde_bytes_compat {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use std::fmt;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(2, 1, index)),
            last_membership: Default::default(),
        }
    }

    fn bytes(d: &SnapshotData) -> Vec<u8> {
        d.with_bytes(|b| b.to_vec()).unwrap()
    }

    fn temp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with(TEMP_PREFIX)
            })
            .count()
    }

    #[tokio::test]
    async fn a_saved_snapshot_loads_back_and_reads_in_pieces() {
        let d = tempfile::TempDir::new().unwrap();
        let store = FileSnapshots::open(d.path()).unwrap();
        assert!(store.load().unwrap().is_none());
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        store
            .save(&meta(7), &SnapshotData::from_vec(data.clone()))
            .await
            .unwrap();
        let (m, loaded) = store.load().unwrap().unwrap();
        assert_eq!(m, meta(7));
        assert_eq!(loaded.len(), data.len() as u64);
        assert_eq!(bytes(&loaded), data);
        assert_eq!(
            bytes(&loaded.clone()),
            data,
            "read whole again, from a shared handle"
        );
        let mut piece = [0u8; 100];
        loaded.read_at(9_900, &mut piece).unwrap();
        assert_eq!(&piece[..], &data[9_900..]);
        assert!(loaded.read_at(9_901, &mut piece).is_err(), "past the end");
        assert_eq!(temp_files(d.path()), 0);

        // A newer one replaces it.
        store
            .save(&meta(9), &SnapshotData::from_vec(b"newer".to_vec()))
            .await
            .unwrap();
        let (m, loaded) = store.load().unwrap().unwrap();
        assert_eq!((m, bytes(&loaded)), (meta(9), b"newer".to_vec()));
    }

    #[tokio::test]
    async fn a_received_snapshot_becomes_the_file_and_an_unsaved_one_leaves_nothing() {
        let d = tempfile::TempDir::new().unwrap();
        let store = FileSnapshots::open(d.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        assert_eq!(w.len(), 11);
        let data = w.finish();
        assert_eq!(bytes(&data), b"hello world");
        assert_eq!(temp_files(d.path()), 1);
        let stored = store.save(&meta(3), &data).await.unwrap();
        assert_eq!(temp_files(d.path()), 0, "renamed, not copied");
        assert_eq!(bytes(&stored), b"hello world");
        drop(data);
        let (m, loaded) = store.load().unwrap().unwrap();
        assert_eq!((m, bytes(&loaded)), (meta(3), b"hello world".to_vec()));

        // Dropped part-way, or received and never saved: the temporary file goes.
        let mut w = store.writer().unwrap();
        w.write(b"part").unwrap();
        drop(w);
        let mut w = store.writer().unwrap();
        w.write(b"whole").unwrap();
        drop(w.finish());
        assert_eq!(temp_files(d.path()), 0);

        // Left by a crash: removed on open.
        std::fs::write(d.path().join(format!("{TEMP_PREFIX}1.1")), b"x").unwrap();
        FileSnapshots::open(d.path()).unwrap();
        assert_eq!(temp_files(d.path()), 0);
        assert_eq!(bytes(&store.load().unwrap().unwrap().1), b"hello world");
    }

    #[test]
    fn a_file_that_is_not_a_snapshot_is_refused_by_name() {
        let d = tempfile::TempDir::new().unwrap();
        let path = d.path().join(SNAPSHOT_FILE);
        for junk in [&b"short"[..], &b"0123456789abcdefghij"[..]] {
            std::fs::write(&path, junk).unwrap();
            let e = read_file(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains(SNAPSHOT_FILE), "{e}");
        }
    }

    #[tokio::test]
    async fn a_closed_store_saves_nothing() {
        let d = tempfile::TempDir::new().unwrap();
        let store = FileSnapshots::open(d.path()).unwrap();
        store.close();
        let e = store
            .save(&meta(1), &SnapshotData::from_vec(vec![1]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(store.writer().is_err());
        assert!(store.load().unwrap().is_none());
    }
}
