//! The router: maps each output record of the chain to one of the pipeline's declared outputs.
//!
//! A record names an output (or inherits one through the chain), or goes to the pipeline's default
//! output. A name the pipeline does not declare is a per-record error: that input goes to the
//! dead-letter topic, so a plugin can never write anywhere its pipeline does not allow.

use std::sync::Arc;

use crate::chain::{ChainOutput, Emitted, Failure};
use crate::runtime::{Plugin, Reason};

/// The declared outputs of one pipeline.
#[derive(Clone, Debug)]
pub struct Router {
    names: Vec<String>,
    default: Option<usize>,
}

impl Router {
    /// The router of the declared outputs `names` (in config order) and the default one.
    pub fn new(names: Vec<String>, default: Option<&str>) -> Self {
        let default = default.and_then(|d| names.iter().position(|n| n == d));
        Router { names, default }
    }

    /// The declared output names; output indexes refer to this order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn resolve(&self, name: Option<&str>) -> Result<usize, String> {
        match name {
            Some(name) => self.names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "output `{name}` is not declared by the pipeline (declared: {})",
                    self.names.join(", ")
                )
            }),
            None => self.default.ok_or_else(|| {
                "the record names no output and the pipeline has no default_output".to_string()
            }),
        }
    }

    /// Fails every input that has a record that cannot be routed (blamed on `last_plugin`), so
    /// that [`Router::routes`] returns none of its records.
    pub fn fail_unroutable(&self, out: &mut ChainOutput, last_plugin: &Arc<Plugin>) {
        let unroutable: Vec<Failure> = out
            .emitted()
            .filter_map(|e| {
                self.resolve(e.output).err().map(|message| Failure {
                    input: e.input,
                    reason: Reason::UndeclaredOutput,
                    message,
                    plugin: Some(last_plugin.clone()),
                })
            })
            .collect();
        for failure in unroutable {
            out.fail(failure);
        }
    }

    /// Every emitted record with the index of its output, after [`Router::fail_unroutable`].
    pub fn routes<'a>(
        &'a self,
        out: &'a ChainOutput,
    ) -> impl Iterator<Item = (Emitted<'a>, usize)> + 'a {
        out.emitted()
            .filter_map(|e| self.resolve(e.output).ok().map(|i| (e, i)))
    }
}
