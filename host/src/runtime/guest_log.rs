//! A plugin's log lines (its `log` import and its stdout/stderr) into the host log, tagged with the
//! plugin and rate-limited so that a chatty plugin cannot flood it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines a plugin may log in a burst, and per second after that.
const BURST_LINES: f64 = 200.0;
const LINES_PER_SECOND: f64 = 50.0;
/// A partial line longer than this is logged as it is.
const MAX_LINE: usize = 4096;

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

/// The log of one plugin instance; cheap to clone (all clones share the rate limit).
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    plugin: Arc<str>,
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The first stderr lines of the current call, to explain a trap (a Rust panic message).
    recent_stderr: Vec<String>,
}

/// Stderr lines kept to explain a trap.
const RECENT_STDERR_LINES: usize = 3;

impl GuestLog {
    /// A log for the plugin called `plugin` (`pipeline/plugin` in a pipeline).
    pub fn new(plugin: Arc<str>) -> Self {
        GuestLog {
            inner: Arc::new(Mutex::new(Inner {
                plugin,
                tokens: BURST_LINES,
                refilled: Instant::now(),
                suppressed: 0,
                stdout: Vec::new(),
                stderr: Vec::new(),
                recent_stderr: Vec::new(),
            })),
        }
    }

    /// Logs one line from the plugin's `log` import.
    pub fn log(&self, level: Level, message: &str) {
        self.inner
            .lock()
            .expect("guest log lock")
            .emit(level, "log", message);
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

    fn write(&self, stderr: bool, bytes: &[u8]) {
        let mut inner = self.inner.lock().expect("guest log lock");
        let inner = &mut *inner;
        let (buf, level, name) = if stderr {
            (&mut inner.stderr, Level::Warn, "stderr")
        } else {
            (&mut inner.stdout, Level::Info, "stdout")
        };
        buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            lines.push(buf.drain(..=end).collect::<Vec<u8>>());
        }
        if buf.len() > MAX_LINE {
            lines.push(std::mem::take(buf));
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if stderr && inner.recent_stderr.len() < RECENT_STDERR_LINES && !text.is_empty() {
                inner.recent_stderr.push(text.chars().take(300).collect());
            }
            inner.emit(level, name, text);
        }
    }
}

impl Inner {
    fn emit(&mut self, level: Level, stream: &str, message: &str) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * LINES_PER_SECOND).min(BURST_LINES);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.suppressed > 0 {
            tracing::warn!(
                plugin = %self.plugin,
                "{} plugin log lines were dropped by the rate limit ({LINES_PER_SECOND}/s)",
                self.suppressed
            );
            self.suppressed = 0;
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "sluice::plugin", plugin, stream, "{message}"),
            Level::Debug => tracing::debug!(target: "sluice::plugin", plugin, stream, "{message}"),
            Level::Info => tracing::info!(target: "sluice::plugin", plugin, stream, "{message}"),
            Level::Warn => tracing::warn!(target: "sluice::plugin", plugin, stream, "{message}"),
            Level::Error => tracing::error!(target: "sluice::plugin", plugin, stream, "{message}"),
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
