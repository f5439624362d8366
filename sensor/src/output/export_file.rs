//! The export file: JSON lines, rotated by size, written through a buffer the sensor controls so
//! that it always knows which lines reached the file.
//!
//! - A line is accepted whole into the buffer or refused whole (the caller counts it lost).
//!   When a write fails (disk full), what was not written stays buffered and is retried; lines
//!   that do not fit in the buffer meanwhile are refused.
//! - Before every write the file is checked against its path: renamed away (logrotate's
//!   `create`) or deleted, the path is opened again; truncated in place (`copytruncate`), the
//!   size is taken again. Lines written to a file found deleted are reported back as lost.
//! - A line counts as exported once a later check found the file still in place.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_api::events::LossKind;

use crate::error::SensorError;
use crate::output::loss::LossBatch;

/// Bytes buffered in front of the file before lines are refused while it cannot be written.
pub const BUFFER_LIMIT: usize = 256 * 1024;

/// What a line is, for the accounting once its fate is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// An event of this kind (and policy, for hook events).
    Event(LossKind, Option<Arc<str>>),
    /// A loss marker reporting this batch.
    Marker(LossBatch),
}

/// How the file was found by the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    InPlace,
    /// Another program renamed it (the lines written to it are in the renamed file).
    Renamed,
    /// Another program deleted it (the lines written since the previous check are lost).
    Deleted,
    /// Another program truncated it in place.
    Truncated,
}

/// The outcome of a check: lines now known written (`confirmed`) or lost with a deleted file.
#[derive(Debug, Default)]
pub struct Checked {
    pub found: Option<Found>,
    pub confirmed: Vec<Tag>,
    pub lost: Vec<Tag>,
}

/// A JSON-lines file that rotates before a line would take it past `max_size`: the current file
/// becomes `PATH.1`, `PATH.1` becomes `PATH.2`, … and the oldest beyond `max_backups` is
/// removed. A line is never split across files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    max_backups: u32,
    file: File,
    ident: (u64, u64),
    buf: Vec<u8>,
    /// Bytes of `buf` already written (its head).
    buf_done: usize,
    /// Lengths and tags of the lines in `buf`, oldest first.
    buf_lines: VecDeque<(usize, Tag)>,
    /// Lines written since the last check that found the file in place.
    unconfirmed: Vec<Tag>,
    /// Lines known written by a rotation of ours, handed out by the next check.
    rotated: Vec<Tag>,
    /// Bytes of the file: written plus buffered.
    size: u64,
    /// Bytes this writer put into the current file (to notice a truncation).
    on_disk: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl RotatingFile {
    pub fn open(path: &Path, max_size: u64, max_backups: u32) -> Result<Self, SensorError> {
        let file = open_append(path).map_err(|e| {
            SensorError::io(format!("cannot open export file {}", path.display()), e)
        })?;
        let meta = file
            .metadata()
            .map_err(|e| SensorError::io(format!("cannot stat {}", path.display()), e))?;
        Ok(Self {
            path: path.to_path_buf(),
            max_size,
            max_backups,
            file,
            ident: (meta.dev(), meta.ino()),
            buf: Vec::with_capacity(64 * 1024),
            buf_done: 0,
            buf_lines: VecDeque::new(),
            unconfirmed: Vec::new(),
            rotated: Vec::new(),
            size: meta.len(),
            on_disk: meta.len(),
        })
    }

    /// Lines accepted but not written yet.
    pub fn buffered(&self) -> usize {
        self.buf_lines.len()
    }

    /// Lines written but not confirmed by a check yet.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.len() + self.rotated.len()
    }

    /// Accepts one line (`line` has no newline; one is added), or refuses it whole when it
    /// cannot be written now (the error says why).
    pub fn write_line(&mut self, line: &str, tag: Tag) -> io::Result<()> {
        let len = line.len() + 1;
        if self.size > 0 && self.size + len as u64 > self.max_size {
            self.rotate()?;
        }
        if !self.buf_lines.is_empty() && self.buf.len() + len > BUFFER_LIMIT {
            self.write_buffer()?;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.buf_lines.push_back((len, tag));
        self.size += len as u64;
        Ok(())
    }

    /// Writes what is buffered; on error what was not written stays buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        while self.buf_done < self.buf.len() {
            match self.file.write(&self.buf[self.buf_done..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.buf_done += n;
                    self.on_disk += n as u64;
                    self.retire_written();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.buf_done = 0;
        Ok(())
    }

    /// Moves the lines whose bytes are all written from the buffer to `unconfirmed`.
    fn retire_written(&mut self) {
        let mut done = self.buf_done;
        let mut consumed = 0;
        while let Some((len, _)) = self.buf_lines.front() {
            if *len > done {
                break;
            }
            done -= len;
            consumed += len;
            let (_, tag) = self.buf_lines.pop_front().expect("front exists");
            self.unconfirmed.push(tag);
        }
        if consumed > 0 {
            self.buf.drain(..consumed);
            self.buf_done -= consumed;
        }
    }

    /// Compares the open file with its path, reopens the path when the file was renamed or
    /// deleted, and settles the lines written since the previous check.
    pub fn check(&mut self) -> Checked {
        let mut out = Checked {
            confirmed: std::mem::take(&mut self.rotated),
            ..Default::default()
        };
        let meta = match self.file.metadata() {
            Ok(m) => m,
            Err(_) => return out,
        };
        let at_path = fs::metadata(&self.path).ok();
        let moved = at_path
            .as_ref()
            .is_none_or(|m| (m.dev(), m.ino()) != self.ident);
        if moved {
            let deleted = meta.nlink() == 0;
            let tags = std::mem::take(&mut self.unconfirmed);
            if deleted {
                out.lost = tags;
                out.found = Some(Found::Deleted);
            } else {
                out.confirmed.extend(tags);
                out.found = Some(Found::Renamed);
            }
            if let Err(e) = self.reopen() {
                tracing::warn!("cannot reopen export file {}: {e}", self.path.display());
            }
            return out;
        }
        if meta.len() < self.on_disk {
            out.found = Some(Found::Truncated);
            let written = self.size - self.on_disk;
            self.on_disk = meta.len();
            self.size = meta.len() + written;
        } else {
            out.found = Some(Found::InPlace);
        }
        out.confirmed.append(&mut self.unconfirmed);
        out
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        let meta = file.metadata()?;
        self.file = file;
        self.ident = (meta.dev(), meta.ino());
        self.on_disk = meta.len();
        self.size = meta.len() + (self.buf.len() - self.buf_done) as u64;
        Ok(())
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Rotation: what is buffered is written first (the rotation fails, and nothing moves, when
    /// it cannot be); the lines written so far are confirmed by the rename being ours.
    fn rotate(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        let written = std::mem::take(&mut self.unconfirmed);
        self.rotated.extend(written);
        if self.max_backups == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            fs::remove_file(self.backup(self.max_backups)).or_else(ignore_missing)?;
            for n in (1..self.max_backups).rev() {
                fs::rename(self.backup(n), self.backup(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, self.backup(1))?;
        }
        let file = open_append(&self.path)?;
        let meta = file.metadata()?;
        self.file = file;
        self.ident = (meta.dev(), meta.ino());
        self.size = meta.len();
        self.on_disk = meta.len();
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Tag {
        Tag::Event(LossKind::Exec, None)
    }

    fn lines_of(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rotation_keeps_lines_whole_and_bounds_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let mut f = RotatingFile::open(&path, 1000, 2).unwrap();
        let mut written = Vec::new();
        for i in 0..100 {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50));
            f.write_line(&line, ev()).unwrap();
            written.push(line);
        }
        f.flush().unwrap();
        let b1 = path.with_extension("json.1");
        let b2 = path.with_extension("json.2");
        assert!(b1.exists() && b2.exists());
        assert!(
            !path.with_extension("json.3").exists(),
            "only two backups are kept"
        );
        for p in [&path, &b1, &b2] {
            let size = fs::metadata(p).unwrap().len();
            assert!(size <= 1000, "{} is {size} bytes", p.display());
        }
        // What is kept is the newest lines, in order and intact.
        let kept: Vec<String> = [&b2, &b1, &path].iter().flat_map(|p| lines_of(p)).collect();
        assert!(!kept.is_empty());
        assert_eq!(kept[..], written[written.len() - kept.len()..]);
        let c = f.check();
        assert_eq!(c.found, Some(Found::InPlace));
        assert_eq!(c.confirmed.len(), 100, "rotated lines are ours, not lost");
    }

    #[test]
    fn a_line_larger_than_the_limit_still_goes_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        let mut f = RotatingFile::open(&path, 10, 1).unwrap();
        f.write_line("short", ev()).unwrap();
        f.write_line(&"y".repeat(50), ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(lines_of(&path), vec!["y".repeat(50)]);
        assert_eq!(lines_of(&path.with_extension("json.1")), vec!["short"]);
        let big = "z".repeat(3 * BUFFER_LIMIT);
        f.write_line(&big, ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(lines_of(&path), vec![big]);
    }

    #[test]
    fn renamed_deleted_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        let mut f = RotatingFile::open(&path, 1 << 20, 1).unwrap();
        f.write_line("a", ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(f.check().confirmed.len(), 1);
        // Renamed away: what was written is in the renamed file; the path is opened again.
        f.write_line("b", ev()).unwrap();
        f.flush().unwrap();
        fs::rename(&path, dir.path().join("old.json")).unwrap();
        let c = f.check();
        assert_eq!(
            (c.found, c.confirmed.len(), c.lost.len()),
            (Some(Found::Renamed), 1, 0)
        );
        assert_eq!(lines_of(&dir.path().join("old.json")), vec!["a", "b"]);
        f.write_line("c", ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(lines_of(&path), vec!["c"]);
        assert_eq!(f.check().found, Some(Found::InPlace));
        // Deleted: the lines written since the last check are lost with it.
        f.write_line("d", ev()).unwrap();
        f.flush().unwrap();
        fs::remove_file(&path).unwrap();
        let c = f.check();
        assert_eq!((c.found, c.lost.len()), (Some(Found::Deleted), 1));
        f.write_line("e", ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(lines_of(&path), vec!["e"]);
        f.check();
        // Truncated in place: writing goes on from the start, no hole.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(f.check().found, Some(Found::Truncated));
        f.write_line("f", ev()).unwrap();
        f.flush().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"f\n");
    }
}
