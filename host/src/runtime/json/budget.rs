//! The budget of one json host call ([`Work`]) and the traps it ends in.

use std::time::Instant;

use crate::runtime::limits::{CHECK_WORK_UNITS, MAX_JSON_CALL_BYTES};

use super::tree::Node;

/// A limit a json call hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// Host memory over `limits.memory_mb`.
    Memory {
        /// What was being allocated.
        what: &'static str,
        /// Bytes it would have brought the call to.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// The call's deadline passed.
    Deadline,
}

/// The trap of a json host call stopped by a limit; the runtime reports it as `limit:memory` or
/// `limit:deadline`.
#[derive(Debug, thiserror::Error)]
pub struct JsonLimitHit {
    /// `read` or `write`.
    pub call: &'static str,
    /// Which limit.
    pub limit: Limit,
}

impl std::fmt::Display for JsonLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.limit {
            Limit::Memory { what, bytes, limit } => write!(
                f,
                "memory limit: the json.{} host call would hold {bytes} bytes of host memory ({what}), above the plugin's cap of {limit} bytes (limits.memory_mb)",
                self.call
            ),
            Limit::Deadline => write!(
                f,
                "the json.{} host call was still working at the plugin's deadline (limits.timeout_ms)",
                self.call
            ),
        }
    }
}

/// A plugin passed spans or edits outside its own buffers: a bug in the plugin, the call traps.
#[derive(Debug, thiserror::Error)]
#[error("json.{call}: {message}")]
pub struct JsonBadCall {
    pub(super) call: &'static str,
    pub(super) message: String,
}

/// The budget of one call: its deadline, its host memory, and the work done since the clock was
/// last read.
pub struct Work {
    deadline: Option<Instant>,
    pub(super) max_bytes: u64,
    max_nodes: usize,
    since_check: u64,
}

impl Work {
    /// A budget ending at `deadline` (none = unbounded time) holding at most `max_bytes` of host
    /// memory.
    pub fn new(deadline: Option<Instant>, max_bytes: u64) -> Self {
        let max_bytes = max_bytes.min(MAX_JSON_CALL_BYTES);
        Work {
            deadline,
            max_bytes,
            max_nodes: (max_bytes / std::mem::size_of::<Node>() as u64) as usize,
            since_check: 0,
        }
    }

    /// Counts `units` of work; reads the clock every [`CHECK_WORK_UNITS`].
    pub fn add(&mut self, units: u64) -> Result<(), Limit> {
        self.since_check += units;
        if self.since_check >= CHECK_WORK_UNITS {
            self.since_check = 0;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Limit::Deadline);
            }
        }
        Ok(())
    }

    /// Refuses a node beyond what the memory cap holds (`count` nodes exist).
    pub fn node(&mut self, count: usize) -> Result<(), Limit> {
        if count >= self.max_nodes {
            return Err(Limit::Memory {
                what: "parsed documents",
                bytes: ((count + 1) * std::mem::size_of::<Node>()) as u64,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// A limit hit against what was left of the cap, restated against the cap itself.
    pub(super) fn over_cap(&self, limit: Limit) -> Limit {
        match limit {
            Limit::Memory { what, .. } => Limit::Memory {
                what,
                bytes: self.max_bytes + 1,
                limit: self.max_bytes,
            },
            other => other,
        }
    }

    /// Refuses `bytes` of host memory in all beyond the cap.
    pub fn memory(&self, what: &'static str, bytes: u64) -> Result<(), Limit> {
        if bytes > self.max_bytes {
            return Err(Limit::Memory {
                what,
                bytes,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}
