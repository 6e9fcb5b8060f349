//! A plugin's log lines (its `log` import and its stdout/stderr) into the host log, tagged with the
//! plugin and limited in bytes so that a chatty plugin cannot flood it.
//!
//! The budget ([`LogBudget`]) belongs to the loaded plugin, not to an instance: every instance of
//! the plugin (one per worker, and each one rebuilt after a trap) draws from the same bucket, so a
//! plugin that logs and then traps on every record cannot get a fresh allowance by trapping.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::limits::{BURST_SECONDS, LINE_OVERHEAD, MAX_LINE};

/// Log severity, as in the WIT `host.level` enum.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// The log-byte allowance of one plugin, shared by all its instances: a token bucket of
/// `BURST_SECONDS × bytes_per_second` bytes refilled at `bytes_per_second`.
#[derive(Clone)]
pub struct LogBudget {
    inner: Arc<Mutex<Bucket>>,
}

struct Bucket {
    plugin: Arc<str>,
    bytes_per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    suppressed_lines: u64,
    suppressed_bytes: u64,
    dropped_bytes: metrics::Counter,
}

impl LogBudget {
    /// A budget of `bytes_per_second` (`limits.log_bytes_per_second`) for the plugin tagged
    /// `plugin` (`pipeline/plugin` in a pipeline).
    pub fn new(plugin: Arc<str>, bytes_per_second: u64) -> Self {
        let burst = bytes_per_second.saturating_mul(BURST_SECONDS) as f64;
        LogBudget {
            inner: Arc::new(Mutex::new(Bucket {
                dropped_bytes: metrics::counter!("sluice_guest_log_dropped_bytes_total", "plugin" => plugin.to_string()),
                plugin,
                bytes_per_second: bytes_per_second as f64,
                burst,
                tokens: burst,
                refilled: Instant::now(),
                suppressed_lines: 0,
                suppressed_bytes: 0,
            })),
        }
    }

    /// Forwards one line to the host log if the budget allows; `cut` bytes were already dropped
    /// from its end.
    fn emit(&self, level: Level, stream: &str, message: &str, cut: u64) {
        let mut b = self.inner.lock().expect("log budget lock");
        if cut > 0 {
            b.dropped_bytes.increment(cut);
        }
        let now = Instant::now();
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.refilled = now;
        b.tokens = (b.tokens + elapsed * b.bytes_per_second).min(b.burst);
        let cost = (message.len() as u64 + LINE_OVERHEAD) as f64;
        if b.tokens < cost {
            b.suppressed_lines += 1;
            b.suppressed_bytes += message.len() as u64;
            b.dropped_bytes.increment(message.len() as u64);
            return;
        }
        b.tokens -= cost;
        if b.suppressed_lines > 0 {
            tracing::warn!(
                plugin = %b.plugin,
                "{} plugin log lines ({} bytes) were dropped by the plugin's log budget (limits.log_bytes_per_second = {})",
                b.suppressed_lines,
                b.suppressed_bytes,
                b.bytes_per_second
            );
            b.suppressed_lines = 0;
            b.suppressed_bytes = 0;
        }
        let plugin = &*b.plugin;
        let cut = if cut > 0 {
            format!(" […{cut} more bytes dropped]")
        } else {
            String::new()
        };
        match level {
            Level::Trace => {
                tracing::trace!(target: "sluice::plugin", plugin, stream, "{message}{cut}")
            }
            Level::Debug => {
                tracing::debug!(target: "sluice::plugin", plugin, stream, "{message}{cut}")
            }
            Level::Info => {
                tracing::info!(target: "sluice::plugin", plugin, stream, "{message}{cut}")
            }
            Level::Warn => {
                tracing::warn!(target: "sluice::plugin", plugin, stream, "{message}{cut}")
            }
            Level::Error => {
                tracing::error!(target: "sluice::plugin", plugin, stream, "{message}{cut}")
            }
        }
    }
}

/// The log of one plugin instance; cheap to clone (all clones share its line buffers, and every
/// instance of the plugin shares its [`LogBudget`]).
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<Inner>>,
    budget: LogBudget,
}

/// A partial line of stdout or stderr.
#[derive(Default)]
struct LineBuf {
    line: Vec<u8>,
    /// Bytes dropped from the end of the current line (it is longer than `MAX_LINE`).
    cut: u64,
}

#[derive(Default)]
struct Inner {
    stdout: LineBuf,
    stderr: LineBuf,
    /// The first stderr lines of the current call, to explain a trap (a Rust panic message).
    recent_stderr: Vec<String>,
}

/// Stderr lines kept to explain a trap.
const RECENT_STDERR_LINES: usize = 3;

impl GuestLog {
    /// A log for one instance of a plugin, drawing on the plugin's `budget`.
    pub fn new(budget: LogBudget) -> Self {
        GuestLog {
            inner: Arc::default(),
            budget,
        }
    }

    /// Logs one line from the plugin's `log` import.
    pub fn log(&self, level: Level, message: &str) {
        let line = &message[..message.floor_char_boundary(MAX_LINE)];
        self.budget
            .emit(level, "log", line, (message.len() - line.len()) as u64);
    }

    /// Forgets the stderr lines of the previous call.
    pub fn start_call(&self) {
        self.inner
            .lock()
            .expect("guest log lock")
            .recent_stderr
            .clear();
    }

    /// The first stderr lines written during the current call, joined, if any.
    pub fn call_stderr(&self) -> Option<String> {
        let inner = self.inner.lock().expect("guest log lock");
        (!inner.recent_stderr.is_empty()).then(|| inner.recent_stderr.join(" / "))
    }

    /// A WASI stdout (`stderr = false`) or stderr stream writing into this log.
    pub fn stream(&self, stderr: bool) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stderr,
        }
    }

    fn write(&self, stderr: bool, mut bytes: &[u8]) {
        let mut inner = self.inner.lock().expect("guest log lock");
        let inner = &mut *inner;
        let (buf, level, name) = if stderr {
            (&mut inner.stderr, Level::Warn, "stderr")
        } else {
            (&mut inner.stdout, Level::Info, "stdout")
        };
        while !bytes.is_empty() {
            let (part, ended) = match bytes.iter().position(|b| *b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            bytes = &bytes[(part.len() + ended as usize)..];
            // Keep at most MAX_LINE bytes of a line; count the rest as dropped.
            let room = MAX_LINE - buf.line.len();
            buf.line.extend_from_slice(&part[..part.len().min(room)]);
            buf.cut += part.len().saturating_sub(room) as u64;
            if !ended {
                break;
            }
            let line = std::mem::take(&mut buf.line);
            let cut = std::mem::take(&mut buf.cut);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\r');
            if stderr && inner.recent_stderr.len() < RECENT_STDERR_LINES && !text.is_empty() {
                inner.recent_stderr.push(text.chars().take(300).collect());
            }
            self.budget.emit(level, name, text, cut);
        }
    }
}

/// A guest's stdout or stderr.
#[derive(Clone)]
pub struct GuestStream {
    log: GuestLog,
    stderr: bool,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stderr, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write(self.stderr, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_at_max_line_and_a_split_line_is_joined() {
        let log = GuestLog::new(LogBudget::new("t".into(), 1 << 20));
        let mut s = log.stream(true);
        s.write(Bytes::from(vec![b'a'; 10_000])).unwrap();
        assert_eq!(log.inner.lock().unwrap().stderr.line.len(), MAX_LINE);
        assert_eq!(
            log.inner.lock().unwrap().stderr.cut,
            10_000 - MAX_LINE as u64
        );
        s.write(Bytes::from_static(b"b\nhello ")).unwrap();
        s.write(Bytes::from_static(b"world\n")).unwrap();
        let inner = log.inner.lock().unwrap();
        assert!(inner.stderr.line.is_empty() && inner.stderr.cut == 0);
        assert_eq!(inner.recent_stderr.len(), 2);
        assert_eq!(inner.recent_stderr[1], "hello world");
    }

    #[test]
    fn the_budget_is_in_bytes_and_shared_by_every_instance() {
        let budget = LogBudget::new("t".into(), 1000);
        let burst = 1000.0 * BURST_SECONDS as f64;
        // Two instances (a trap rebuilds one) draw on the same bucket.
        for _ in 0..2 {
            let log = GuestLog::new(budget.clone());
            for _ in 0..100 {
                log.log(Level::Info, &"x".repeat(900));
            }
        }
        let b = budget.inner.lock().unwrap();
        let passed = 200 - b.suppressed_lines;
        assert!(
            (passed as f64) * 1000.0 <= burst + 1000.0 * 0.5,
            "{passed} lines of 1000 bytes passed a burst of {burst} bytes"
        );
        assert!(passed >= 7, "{passed}");
    }
}
