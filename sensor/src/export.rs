//! Event export: a bounded queue in front of a writer thread that appends JSON lines to a file
//! (rotated by size) and/or standard output.
//!
//! The pipeline never waits for the exporters: when the queue is full the event is dropped and
//! counted (`vigil_export_queue_events_lost_total`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use crate::error::SensorError;
use crate::metrics::Metrics;

/// A JSON-lines file that rotates before a line would take it past `max_size`: the current file
/// becomes `PATH.1`, `PATH.1` becomes `PATH.2`, … and the oldest beyond `max_backups` is
/// removed. A line is never split across files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    max_backups: u32,
    out: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_size: u64, max_backups: u32) -> Result<Self, SensorError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                SensorError::io(format!("cannot open export file {}", path.display()), e)
            })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            max_size,
            max_backups,
            out: BufWriter::with_capacity(256 * 1024, file),
            size,
        })
    }

    /// Appends one line (`line` has no newline; one is added).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.max_backups == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            fs::remove_file(self.backup(self.max_backups)).or_else(ignore_missing)?;
            for n in (1..self.max_backups).rev() {
                fs::rename(self.backup(n), self.backup(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, self.backup(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::with_capacity(256 * 1024, file);
        self.size = 0;
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

/// Where events go.
#[derive(Debug, Default)]
pub struct Sinks {
    pub file: Option<RotatingFile>,
    pub stdout: bool,
}

/// The sending side handed to the pipeline.
#[derive(Debug, Clone)]
pub struct ExportQueue {
    tx: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl ExportQueue {
    /// Queues one serialized event; drops and counts it when the queue is full.
    pub fn push(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.export_queue_lost.inc();
            }
        }
    }
}

#[cfg(test)]
impl ExportQueue {
    /// A queue whose receiving end the test reads directly.
    pub fn for_test(capacity: usize, metrics: Arc<Metrics>) -> (Self, Receiver<String>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        (Self { tx, metrics }, rx)
    }
}

/// Starts the writer thread. Dropping every `ExportQueue` ends it after the queue is drained
/// and the file flushed; join the handle to wait for that.
pub fn start(
    sinks: Sinks,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> (ExportQueue, JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("vigil-export".into())
        .spawn(move || writer(rx, sinks, &m))
        .expect("spawn export thread");
    (ExportQueue { tx, metrics }, handle)
}

fn writer(rx: Receiver<String>, mut sinks: Sinks, metrics: &Metrics) {
    let stdout = io::stdout();
    while let Ok(line) = rx.recv() {
        write(&mut sinks, &stdout, &line, metrics);
        // Batch whatever is already queued, then flush once the queue is empty, so readers
        // see events promptly without a write syscall per event under load.
        while let Ok(line) = rx.try_recv() {
            write(&mut sinks, &stdout, &line, metrics);
        }
        flush(&mut sinks, metrics);
    }
    flush(&mut sinks, metrics);
}

fn write(sinks: &mut Sinks, stdout: &io::Stdout, line: &str, metrics: &Metrics) {
    if let Some(f) = sinks.file.as_mut()
        && let Err(e) = f.write_line(line)
    {
        metrics.export_errors.inc();
        tracing::warn!("export file write failed: {e}");
    }
    if sinks.stdout {
        let mut out = stdout.lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .is_err()
        {
            metrics.export_errors.inc();
        }
    }
    metrics.exported.inc();
}

fn flush(sinks: &mut Sinks, metrics: &Metrics) {
    if let Some(f) = sinks.file.as_mut()
        && f.flush().is_err()
    {
        metrics.export_errors.inc();
    }
    if sinks.stdout {
        let _ = io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            f.write_line(&line).unwrap();
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
    }

    #[test]
    fn a_line_larger_than_the_limit_still_goes_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        let mut f = RotatingFile::open(&path, 10, 1).unwrap();
        f.write_line("short").unwrap();
        f.write_line(&"y".repeat(50)).unwrap();
        f.flush().unwrap();
        assert_eq!(lines_of(&path), vec!["y".repeat(50)]);
        assert_eq!(lines_of(&path.with_extension("json.1")), vec!["short"]);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let (tx, _rx) = mpsc::sync_channel(2);
        let q = ExportQueue {
            tx,
            metrics: metrics.clone(),
        };
        for i in 0..5 {
            q.push(format!("{i}"));
        }
        assert_eq!(metrics.export_queue_lost.get(), 3);
    }

    #[test]
    fn writer_drains_and_flushes_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        let metrics = Arc::new(Metrics::new());
        let sinks = Sinks {
            file: Some(RotatingFile::open(&path, 1 << 20, 1).unwrap()),
            stdout: false,
        };
        let (q, handle) = start(sinks, 1000, metrics.clone());
        for i in 0..500 {
            q.push(format!("{{\"i\":{i}}}"));
        }
        drop(q);
        handle.join().unwrap();
        assert_eq!(lines_of(&path).len(), 500);
        assert_eq!(metrics.exported.get(), 500);
    }
}
