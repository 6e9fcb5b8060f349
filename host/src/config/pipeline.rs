//! The checks of one pipeline and one plugin entry.

use super::*;

impl PipelineConfig {
    /// The router of the pipeline's declared outputs.
    pub fn router(&self) -> crate::router::Router {
        crate::router::Router::new(
            self.outputs.keys().cloned().collect(),
            self.default_output(),
        )
    }

    /// What the pipeline's sinks are made from.
    pub fn sink_spec(&self) -> crate::sinks::SinkSpec<'_> {
        crate::sinks::SinkSpec {
            name: &self.name,
            tenant: self.tenant.as_deref().unwrap_or_default(),
            exactly_once: self.delivery == Delivery::ExactlyOnce,
            outputs: &self.outputs,
        }
    }

    /// True for an exactly-once pipeline whose outputs are all Kafka topics: its outputs, dead
    /// letters and consumed offsets commit in one Kafka transaction per batch.
    pub fn kafka_transactions(&self) -> bool {
        self.delivery == Delivery::ExactlyOnce
            && self.outputs.values().all(|o| o.kafka_topic().is_some())
    }

    /// The consumer group of the pipeline: `group_id`, else `sluice-<name>` (a tenant's
    /// pipeline gets `<its tenant's first prefix>sluice-<name>` when the config is loaded).
    pub fn group_id(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| self.default_group_suffix())
    }

    /// `sluice-<name>`: the default group id, after the tenant's prefix if there are tenants.
    pub(super) fn default_group_suffix(&self) -> String {
        format!("sluice-{}", self.name)
    }

    /// The pipeline's state changelog topic: `state.changelog_topic`, else
    /// `<group_id>-<name>-state`.
    pub fn changelog_topic(&self) -> String {
        self.state
            .changelog_topic
            .clone()
            .unwrap_or_else(|| format!("{}-{}-state", self.group_id(), self.name))
    }

    /// The most plugin memory the pipeline's instances can use at once.
    pub fn reserved_memory_mb(&self) -> u64 {
        let probation = if self.reload.probation_records > 0 {
            2
        } else {
            1
        };
        self.workers as u64 * self.plugins.len() as u64 * self.limits.memory_mb * probation
    }

    /// The output records go to when their plugin names none.
    pub fn default_output(&self) -> Option<&str> {
        match &self.default_output {
            Some(name) => Some(name),
            None if self.outputs.len() == 1 => self.outputs.keys().next().map(String::as_str),
            None => None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.inputs.is_empty() || self.inputs.iter().any(|t| t.trim().is_empty()) {
            return Err((
                "inputs".into(),
                "expected a non-empty list of topic names".into(),
            ));
        }
        if self.plugins.is_empty() {
            return Err((
                "plugins".into(),
                "expected at least one plugin (use the passthrough plugin for a plain copy)".into(),
            ));
        }
        if self.outputs.is_empty() {
            return Err((
                "outputs".into(),
                "expected at least one output, e.g. [pipeline.outputs.main] kafka_topic = \"…\""
                    .into(),
            ));
        }
        for (name, out) in &self.outputs {
            out.validate(&self.inputs)
                .map_err(|(key, e)| (format!("outputs.{name}{key}"), e))?;
        }
        if self.delivery == Delivery::ExactlyOnce {
            crate::sinks::check_one_transaction(&self.outputs)
                .map_err(|e| ("delivery".to_string(), e))?;
        }
        if let Some(d) = &self.default_output
            && !self.outputs.contains_key(d)
        {
            return Err((
                "default_output".into(),
                format!(
                    "`{d}` is not a declared output (declared: {})",
                    self.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(dlq) = &self.dead_letter_topic {
            if dlq.trim().is_empty() {
                return Err(("dead_letter_topic".into(), "must not be empty".into()));
            }
            if self.inputs.contains(dlq) {
                return Err((
                    "dead_letter_topic".into(),
                    format!("`{dlq}` is also an input: rejected records would be consumed again"),
                ));
            }
        }
        if let Some(t) = &self.state.changelog_topic
            && (t.trim().is_empty()
                || self.inputs.contains(t)
                || Some(t) == self.dead_letter_topic.as_ref())
        {
            return Err((
                "state.changelog_topic".into(),
                format!(
                    "`{t}` must be a topic of its own (not empty, not an input or the dead-letter topic)"
                ),
            ));
        }
        if !(1..=100_000).contains(&self.batch.max_records) {
            return Err(("batch.max_records".into(), "expected 1 to 100000".into()));
        }
        if self.batch.linger_ms > 60_000 {
            return Err(("batch.linger_ms".into(), "expected at most 60000".into()));
        }
        if !(1..=256).contains(&self.workers) {
            return Err(("workers".into(), "expected 1 to 256".into()));
        }
        if self.commit_interval_ms == 0 {
            return Err(("commit_interval_ms".into(), "expected at least 1".into()));
        }
        self.limits
            .validate()
            .map_err(|(key, message)| (format!("limits.{key}"), message))?;
        if !(0.0..1.0).contains(&self.reload.max_failure_ratio) {
            return Err((
                "reload.max_failure_ratio".into(),
                "expected a share from 0.0 (no failure tolerated) to below 1.0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.reload.max_divergence_ratio) {
            return Err((
                "reload.max_divergence_ratio".into(),
                "expected a share from 0.0 (no divergence tolerated) to 1.0 (divergence never \
                 rolls back)"
                    .into(),
            ));
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            if plugin.path.as_os_str().is_empty() {
                return Err((format!("plugins[{i}].path"), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

impl PluginConfig {
    /// The plugin's name: configured, or the file name without its extension.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into())
        })
    }
}
