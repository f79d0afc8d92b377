//! The server's own log file with size-based rotation: when a write would take `PATH` past
//! `max_bytes`, `PATH.{keep-1}` becomes `PATH.{keep}` (the oldest is dropped), ..., `PATH`
//! becomes `PATH.1`, and a new `PATH` is started. No line is split across files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Inner {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    size: u64,
}

/// A cloneable handle on the log file, usable as a tracing writer.
#[derive(Clone)]
pub struct RotatingFile(Arc<Mutex<Inner>>);

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    /// Open (append to) `path`, creating its directory.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self(Arc::new(Mutex::new(Inner {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file,
            size,
        }))))
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            // Keep nothing old: start the file again.
            self.file = File::create(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.max_bytes {
            inner.rotate()?;
        }
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .file
            .flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("logs/switchyard.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..12 {
            // 40-byte lines: two fit in 100 bytes, the third starts a new file.
            f.write_all(format!("{i:>38}\n").as_bytes()).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        let lines = |s: String| s.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>();
        assert_eq!(lines(read(path.clone())), ["10", "11"]);
        assert_eq!(lines(read(rotated(&path, 1))), ["8", "9"]);
        assert_eq!(lines(read(rotated(&path, 2))), ["6", "7"]);
        assert!(!rotated(&path, 3).exists(), "only `keep` old files");
        // Reopening appends and counts what is there.
        let mut g = RotatingFile::open(&path, 100, 2).unwrap();
        g.write_all(format!("{:>38}\n", 12).as_bytes()).unwrap();
        assert_eq!(lines(read(rotated(&path, 1))), ["10", "11"]);
        assert_eq!(lines(read(path)), ["12"]);
    }
}
