//! The live line `sluice run` keeps on a terminal.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::Duration;

use tokio::sync::watch;

use crate::pipeline::{HostStats, PipelineStatus};

/// Prints one line every two seconds, in place: records/s, lag and DLQ count per pipeline. For a
/// terminal; logs go on as usual.
pub async fn progress_line(
    stats: HostStats,
    status: Vec<Arc<PipelineStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    use std::io::Write;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last: Vec<u64> = vec![0; stats.len()];
    let mut at = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => {
                eprintln!();
                return;
            }
        }
        let secs = at.elapsed().as_secs_f64().max(0.001);
        at = std::time::Instant::now();
        let parts: Vec<String> = stats
            .iter()
            .zip(&status)
            .zip(last.iter_mut())
            .map(|(((name, s), st), last)| {
                let now = s.records_in.load(Ordering::Relaxed);
                let rate = (now - *last) as f64 / secs;
                *last = now;
                format!(
                    "{name}: {rate:.0}/s lag {} dlq {}",
                    st.lag(),
                    s.dead_lettered.load(Ordering::Relaxed)
                )
            })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", parts.join(" · "));
        let _ = err.flush();
    }
}
