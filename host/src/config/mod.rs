//! The pipeline config: one TOML file, strictly validated.
//!
//! Unknown keys are rejected, `${VAR}` in any string value is replaced by the environment variable
//! `VAR` (`$${` is a literal `${`), and every error names the file, the key and what is expected.

mod env;
mod pipeline;
mod tenants;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use self::env::interpolate;
use self::tenants::MANAGED_PROPERTIES;
pub use crate::runtime::limits::Limits;
pub use crate::sinks::OutputConfig;
pub use crate::sinks::kafka::KafkaConfig;

/// A whole config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the brokers are and how to talk to them.
    pub kafka: KafkaConfig,
    /// Host-wide runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The HTTP endpoints for operators.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Tenants: owners of topics and pipelines, with quotas. None = one implicit tenant that owns
    /// every topic.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantConfig>,
    /// The pipelines this process runs.
    #[serde(rename = "pipeline", default)]
    pub pipelines: Vec<PipelineConfig>,
    /// The directory plugin paths are relative to (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The HTTP endpoints for operators.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address for `/metrics`, `/healthz`, `/readyz` and the admin API. Unset = off; e.g.
    /// `0.0.0.0:9464`. Per-pipeline detail in `/metrics` and `/readyz` needs a token there.
    pub listen: Option<std::net::SocketAddr>,
    /// The operator's bearer token for the admin API on every pipeline.
    pub operator_token: Option<String>,
    /// Largest plugin upload through the admin API, in bytes (default 64 MiB); a larger one
    /// answers `413` before it is read.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// A second address serving `/metrics`, `/healthz` and `/readyz` in full *without* a token,
    /// for a Prometheus on a private network. Unset = off; requires `listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            operator_token: None,
            max_upload_bytes: default_max_upload_bytes(),
            metrics_listen: None,
        }
    }
}

fn default_max_upload_bytes() -> u64 {
    64 * 1024 * 1024
}

/// Host-wide runtime settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached, relative to the config file (default:
    /// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`). Only the host
    /// may write there.
    pub cache_dir: Option<PathBuf>,
    /// Watch the plugin files and hot-swap a changed one.
    #[serde(default = "default_true")]
    pub watch_plugins: bool,
    /// A changed plugin file is loaded once it has not changed for this long.
    #[serde(default = "default_reload_debounce_ms")]
    pub reload_debounce_ms: u64,
    /// On SIGTERM/SIGINT, how long to wait for in-flight records to be acknowledged; what is
    /// still unacknowledged then is not committed (and is processed again after a restart).
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// A partition whose oldest batch has not been processed and acknowledged for this long is
    /// *stalled*: an error names the partition and the cause, and `/readyz` fails until it moves
    /// again (default 60 s).
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Where the state stores of stateful pipelines keep their files (default: `sluice-state`
    /// in the system's temporary directory). Each process uses its own subdirectory, removed
    /// when it stops (a killed process's by the next process using this directory), and a
    /// store is rebuilt from its changelog whenever its partition is assigned.
    pub state_dir: Option<PathBuf>,
    /// This process's name among the members of its groups (default: `$SLUICE_INSTANCE_ID`,
    /// else the host name). Exactly-once pipelines derive their transactional ids from it, so every
    /// process needs its own, and a restarted process should keep its own: it then aborts what its
    /// previous run left open at once instead of after `transaction.timeout.ms`.
    pub instance_id: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            watch_plugins: true,
            reload_debounce_ms: default_reload_debounce_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            stall_timeout_ms: default_stall_timeout_ms(),
            state_dir: None,
            instance_id: None,
        }
    }
}

impl RuntimeConfig {
    /// This process's name among its groups' members: `runtime.instance_id`, else
    /// `$SLUICE_INSTANCE_ID`, else the host name.
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .or_else(|| std::env::var("SLUICE_INSTANCE_ID").ok())
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(host_name)
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "sluice".to_string(),
    }
}

/// A tenant: the topics it owns and its quotas.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Unique, not empty.
    pub name: String,
    /// The tenant owns every topic that starts with one of these, and the consumer groups too;
    /// its pipelines may read and write only those.
    pub topic_prefixes: Vec<String>,
    /// Cap on the plugin memory all the tenant's pipelines may reserve, checked when the config
    /// is loaded. A pipeline reserves workers × plugins × `limits.memory_mb`, doubled while a
    /// hot-swapped version is on probation.
    pub max_memory_mb: Option<u64>,
    /// Records per second all the tenant's pipelines consume together; excess records wait
    /// (back-pressure).
    pub max_records_per_second: Option<u64>,
    /// Bearer token for the admin API on this tenant's pipelines only.
    pub admin_token: Option<String>,
    /// Bytes of keys and values the tenant's stateful pipelines may keep in this process's state
    /// stores together; a write beyond it fails its input with `limit:state` (default: no quota).
    pub max_state_bytes: Option<u64>,
}

/// One pipeline: inputs, a plugin chain, named outputs and an error policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The tenant owning the pipeline; must be declared. Required when tenants are declared.
    pub tenant: Option<String>,
    /// Topics consumed.
    pub inputs: Vec<String>,
    /// Consumer group (default `sluice-<name>`; in a tenant's pipeline
    /// `<tenant's first topic prefix>sluice-<name>`, and an explicit one must start with one of
    /// the tenant's prefixes).
    pub group_id: Option<String>,
    /// The plugin chain, in order: outputs of plugin i are the inputs of plugin i+1.
    pub plugins: Vec<PluginConfig>,
    /// Named outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Output for records whose plugin names none (default: the only output, if there is one).
    pub default_output: Option<String>,
    /// Topic for rejected records; must not be an input. Without it, a rejected record stops the
    /// pipeline.
    pub dead_letter_topic: Option<String>,
    /// How records are grouped into plugin calls.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Sandbox limits for every plugin of the pipeline.
    #[serde(default)]
    pub limits: Limits,
    /// Worker threads; each partition is pinned to one (default 2).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How often acknowledged offsets are committed.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Probation and rollback of hot-swapped plugin versions.
    #[serde(default)]
    pub reload: ReloadPolicy,
    /// The delivery guarantee, `at-least-once` (default) or `exactly-once`.
    #[serde(default)]
    pub delivery: Delivery,
    /// Keyed state and timers of stateful plugins.
    #[serde(default)]
    pub state: StateConfig,
}

/// Keyed state and timers of a pipeline's stateful plugins (issue 15).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The compacted topic every change of state is written to, partitioned like the inputs and
    /// created if missing (default `<group_id>-<pipeline name>-state`; in a tenant's pipeline it
    /// must lie in the tenant's topic space).
    pub changelog_topic: Option<String>,
    /// How far the watermark stays behind the largest record timestamp seen in a partition; a
    /// record older than the watermark goes to the dead-letter topic with reason `late`
    /// (default 0).
    #[serde(default)]
    pub allowed_lateness_ms: u64,
}

/// How a hot-swapped plugin version is put on probation.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReloadPolicy {
    /// A hot-swapped version's first this-many input records are checked against the last
    /// version that passed probation; 0 = no probation. They are counted over all workers
    /// (records, not batches).
    #[serde(default = "default_probation_records")]
    pub probation_records: u64,
    /// Roll back when the new version fails more than this share of the probation window on
    /// records the previous version handles.
    #[serde(default = "default_max_failure_ratio")]
    pub max_failure_ratio: f64,
    /// Roll back when more than this share of the probation window diverges from the previous
    /// version (an input with outputs before has none, fewer, or goes to other outputs). Values
    /// are not compared. Default 0.1; 1.0 = never roll back for divergence.
    #[serde(default = "default_max_divergence_ratio")]
    pub max_divergence_ratio: f64,
}

impl Default for ReloadPolicy {
    fn default() -> Self {
        ReloadPolicy {
            probation_records: default_probation_records(),
            max_failure_ratio: default_max_failure_ratio(),
            max_divergence_ratio: default_max_divergence_ratio(),
        }
    }
}

/// One plugin of a chain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component, relative to the config file's directory.
    pub path: PathBuf,
    /// Used in logs and dead-letter headers (default: the file name without `.wasm`).
    pub name: Option<String>,
    /// Passed to `init` as string pairs in file order; values may be strings, numbers or
    /// booleans (converted to strings).
    #[serde(default, deserialize_with = "string_pairs")]
    pub config: Vec<(String, String)>,
}

/// Delivery guarantee of a pipeline.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Offsets are committed after every output is acknowledged; a crash replays.
    #[default]
    AtLeastOnce,
    /// Each input is reflected once: outputs and offsets are committed in one transaction (a
    /// Kafka transaction when every output is a topic, the sink's own when every output is in
    /// one sink that stores offsets).
    ExactlyOnce,
}

/// Batching of input records per partition.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch goes to the plugins when it holds this many records…
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// …or when its first record has waited this long.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            linger_ms: default_linger_ms(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_reload_debounce_ms() -> u64 {
    300
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_stall_timeout_ms() -> u64 {
    60_000
}
fn default_probation_records() -> u64 {
    1000
}
fn default_max_failure_ratio() -> f64 {
    0.1
}
fn default_max_divergence_ratio() -> f64 {
    0.1
}
fn default_workers() -> usize {
    2
}
fn default_commit_interval_ms() -> u64 {
    1000
}
fn default_max_records() -> usize {
    1000
}
fn default_linger_ms() -> u64 {
    20
}

fn string_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let table = toml::Table::deserialize(d)?;
    table
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "plugin config value `{k}` is a {}, expected a string, number or boolean",
                        other.type_str()
                    )));
                }
            };
            Ok((k, s))
        })
        .collect()
}

/// A config error: the file, the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// The key path, e.g. `pipeline[0].batch.max_records` (empty for the whole file).
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Config {
    /// Reads, interpolates and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &file, base_dir)
    }

    /// Parses config text; `file` names it in errors, `base_dir` anchors plugin paths.
    pub fn parse(text: &str, file: &str, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: file.to_string(),
            key,
            message,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            err(
                String::new(),
                format!("not valid TOML: {}", e.to_string().trim_end()),
            )
        })?;
        interpolate(&mut value, &mut String::new()).map_err(|(key, msg)| err(key, msg))?;
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            err(key, e.into_inner().to_string())
        })?;
        config.base_dir = base_dir;
        config.validate().map_err(|(key, msg)| err(key, msg))?;
        config.default_tenant_group_ids();
        Ok(config)
    }

    /// Resolves a plugin path against the config file's directory.
    pub fn plugin_path(&self, plugin: &PluginConfig) -> PathBuf {
        self.base_dir.join(&plugin.path)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err((
                "kafka.bootstrap_servers".into(),
                "must not be empty (expected host:port[,host:port…])".into(),
            ));
        }
        for (section, props) in [
            ("properties", &self.kafka.properties),
            ("consumer", &self.kafka.consumer),
            ("producer", &self.kafka.producer),
        ] {
            for key in props.keys() {
                if MANAGED_PROPERTIES.contains(&key.as_str()) {
                    return Err((
                        format!("kafka.{section}.{key}"),
                        "is set by Sluice to keep its delivery guarantee; remove it".into(),
                    ));
                }
            }
        }
        if self.admin.max_upload_bytes == 0 {
            return Err((
                "admin.max_upload_bytes".into(),
                "expected at least 1 byte (default 64 MiB: 67108864)".into(),
            ));
        }
        if let Some(metrics) = self.admin.metrics_listen {
            match self.admin.listen {
                None => {
                    return Err((
                        "admin.metrics_listen".into(),
                        "needs admin.listen as well (set both, e.g. listen = \"0.0.0.0:9464\" and \
                         metrics_listen = \"10.0.0.5:9465\")"
                            .into(),
                    ));
                }
                Some(listen) if listen == metrics => {
                    return Err((
                        "admin.metrics_listen".into(),
                        format!(
                            "is the same address as admin.listen ({listen}): use another port, on a private network"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.pipelines.is_empty() {
            return Err((
                "pipeline".into(),
                "no pipeline is defined (expected at least one [[pipeline]] table)".into(),
            ));
        }
        self.validate_tenants()?;
        let mut names = HashSet::new();
        for (i, p) in self.pipelines.iter().enumerate() {
            let at = |key: &str| {
                format!(
                    "pipeline[{i}]{}{key}",
                    if key.is_empty() { "" } else { "." }
                )
            };
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err((
                    at("name"),
                    format!(
                        "`{}` is not a valid name (expected letters, digits, `.`, `_`, `-`)",
                        p.name
                    ),
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err((at("name"), format!("`{}` is used by two pipelines", p.name)));
            }
            p.validate().map_err(|(key, msg)| (at(&key), msg))?;
        }
        Ok(())
    }
}
