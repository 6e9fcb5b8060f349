//! The pipeline config: one TOML file, strictly validated.
//!
//! Unknown keys are rejected, `${VAR}` in any string value is replaced by the environment variable
//! `VAR` (`$${` is a literal `${`), and every error names the file, the key and what is expected.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::runtime::limits::Limits;
pub use crate::sinks::OutputConfig;

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

/// Kafka connection settings shared by every pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// librdkafka properties for the consumers and the producer (SASL, SSL, timeouts…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
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

impl Config {
    /// Consumer groups are named like topics: a tenant's pipeline without a `group_id` gets
    /// `<tenant's first topic prefix>sluice-<name>`, inside the tenant's namespace.
    fn default_tenant_group_ids(&mut self) {
        for p in &mut self.pipelines {
            if p.group_id.is_some() {
                continue;
            }
            let prefix = self
                .tenants
                .iter()
                .find(|t| Some(&t.name) == p.tenant.as_ref())
                .and_then(|t| t.topic_prefixes.first());
            if let Some(prefix) = prefix {
                p.group_id = Some(format!("{prefix}{}", p.default_group_suffix()));
            }
        }
    }

    fn validate_tenants(&self) -> Result<(), (String, String)> {
        let mut names = HashSet::new();
        // Tokens must tell callers apart: none empty, none used twice.
        let mut tokens: Vec<(String, &str)> = self
            .admin
            .operator_token
            .iter()
            .map(|t| ("admin.operator_token".to_string(), t.as_str()))
            .collect();
        for (i, t) in self.tenants.iter().enumerate() {
            if let Some(token) = &t.admin_token {
                tokens.push((format!("tenant[{i}].admin_token"), token));
            }
        }
        for (k, (key, token)) in tokens.iter().enumerate() {
            if token.trim().len() < 16 {
                return Err((
                    key.clone(),
                    "expected at least 16 characters (use a random secret, e.g. from `openssl rand -hex 24`, via ${VAR})".into(),
                ));
            }
            if let Some((other, _)) = tokens[..k].iter().find(|(_, t)| t == token) {
                return Err((key.clone(), format!("is the same token as {other}")));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err((
                    format!("tenant[{i}].name"),
                    format!("`{}` is empty or used twice", t.name),
                ));
            }
            if t.max_records_per_second == Some(0) {
                return Err((
                    format!("tenant[{i}].max_records_per_second"),
                    "expected at least 1 (or leave it unset for no limit)".into(),
                ));
            }
            if t.topic_prefixes.is_empty() || t.topic_prefixes.iter().any(|p| p.is_empty()) {
                return Err((
                    format!("tenant[{i}].topic_prefixes"),
                    "expected a non-empty list of non-empty topic prefixes, e.g. [\"acme.\"]"
                        .into(),
                ));
            }
            // A tenant owns names, not patterns: a prefix such as `^` would let its pipelines
            // subscribe to regular expressions that match anyone's topics.
            if let Some(p) = t.topic_prefixes.iter().find(|p| !is_topic_name(p)) {
                return Err((
                    format!("tenant[{i}].topic_prefixes"),
                    format!(
                        "`{p}` is not a literal topic-name prefix: use only ASCII letters, digits, `.`, `_` and `-` \
                         (Kafka's topic-name characters), e.g. \"acme.\""
                    ),
                ));
            }
            for (j, other) in self.tenants.iter().enumerate().filter(|(j, _)| *j != i) {
                for p in &t.topic_prefixes {
                    if let Some(q) = other
                        .topic_prefixes
                        .iter()
                        .find(|q| q.starts_with(p.as_str()))
                    {
                        return Err((
                            format!("tenant[{i}].topic_prefixes"),
                            format!(
                                "prefix `{p}` of tenant `{}` also covers prefix `{q}` of tenant `{}` (tenant[{j}]): a topic must have one owner",
                                t.name, other.name
                            ),
                        ));
                    }
                }
            }
        }
        for (i, p) in self.pipelines.iter().enumerate() {
            let at = |key: &str| format!("pipeline[{i}].{key}");
            let Some(name) = &p.tenant else {
                if self.tenants.is_empty() {
                    continue;
                }
                return Err((
                    at("tenant"),
                    "tenants are declared, so every pipeline must name its tenant".into(),
                ));
            };
            let tenant = self
                .tenants
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| (at("tenant"), format!("`{name}` is not a declared tenant")))?;
            let topics = p
                .inputs
                .iter()
                .enumerate()
                .map(|(k, t)| (format!("inputs[{k}]"), t))
                .chain(p.outputs.iter().filter_map(|(o, c)| {
                    Some((format!("outputs.{o}.kafka_topic"), c.kafka_topic()?))
                }))
                .chain(
                    p.dead_letter_topic
                        .iter()
                        .map(|t| ("dead_letter_topic".to_string(), t)),
                );
            if let Some(group) = &p.group_id
                && !tenant
                    .topic_prefixes
                    .iter()
                    .any(|pre| group.starts_with(pre.as_str()))
            {
                return Err((
                    at("group_id"),
                    format!(
                        "consumer group `{group}` is not in tenant `{name}`'s namespace: a tenant's group ids start with one \
                         of its topic prefixes ({}), e.g. \"{}{}\" (the default when group_id is unset)",
                        tenant.topic_prefixes.join(", "),
                        tenant.topic_prefixes[0],
                        p.default_group_suffix()
                    ),
                ));
            }
            for (key, topic) in topics {
                if key.starts_with("inputs[") && topic.starts_with('^') {
                    // A subscription pattern (librdkafka reads an input starting with `^` as a
                    // regular expression).
                    pattern_within(topic, &tenant.topic_prefixes).map_err(|why| (at(&key), why))?;
                    continue;
                }
                if tenant
                    .topic_prefixes
                    .iter()
                    .any(|pre| topic.starts_with(pre.as_str()))
                {
                    continue;
                }
                let owner = self.tenants.iter().find(|t| {
                    t.topic_prefixes
                        .iter()
                        .any(|pre| topic.starts_with(pre.as_str()))
                });
                let message = match owner {
                    Some(owner) => format!(
                        "topic `{topic}` belongs to tenant `{}`, not to this pipeline's tenant `{name}` (prefixes: {})",
                        owner.name,
                        tenant.topic_prefixes.join(", ")
                    ),
                    None => format!(
                        "topic `{topic}` is not under any prefix of this pipeline's tenant `{name}` (prefixes: {})",
                        tenant.topic_prefixes.join(", ")
                    ),
                };
                return Err((at(&key), message));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let Some(quota) = t.max_memory_mb else {
                continue;
            };
            let reserved: u64 = self
                .pipelines
                .iter()
                .filter(|p| p.tenant.as_deref() == Some(t.name.as_str()))
                .map(|p| p.reserved_memory_mb())
                .sum();
            if reserved > quota {
                return Err((
                    format!("tenant[{i}].max_memory_mb"),
                    format!(
                        "tenant `{}` has {quota} MB but its pipelines can use up to {reserved} MB of plugin memory \
                         (workers × plugins × limits.memory_mb, ×2 during reload probation); lower workers or \
                         limits.memory_mb, or raise the quota",
                        t.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// True for a non-empty string of Kafka's topic-name characters (ASCII letters, digits, `.`,
/// `_`, `-`).
fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Checks that a subscription pattern of a tenant's pipeline can only match topics under one of
/// the tenant's `prefixes`. It is deliberately stricter than "its literal start is a prefix":
/// it must be `^`, then one of the prefixes spelled literally (`.` written `\.`), then a rest that
/// has no `|` (an alternative such as `^acme\.|^other\.` matches from anywhere) and does not
/// start with a quantifier (`^acme\.?x` makes the prefix's last character optional).
fn pattern_within(pattern: &str, prefixes: &[String]) -> Result<(), String> {
    let refused = |why: &str| {
        format!(
            "subscription pattern `{pattern}` {why}; in a tenant's pipeline a pattern must be `^`, then one of \
             the tenant's prefixes ({}) with `.` written `\\.`, then a pattern without `|`, e.g. `^{}.*` \
             (in TOML \"^{}.*\"); or list the topics instead",
            prefixes.join(", "),
            prefixes[0].replace('.', "\\."),
            prefixes[0].replace('.', "\\\\."),
        )
    };
    let body = pattern
        .strip_prefix('^')
        .ok_or_else(|| refused("is not anchored with `^`"))?;
    let mut why = "does not start with one of the tenant's prefixes spelled literally";
    for prefix in prefixes {
        let Some(rest) = body.strip_prefix(prefix.replace('.', "\\.").as_str()) else {
            continue;
        };
        if rest.contains('|') {
            why =
                "has an alternative (`|`), which could match topics outside the tenant's prefixes";
        } else if rest.starts_with(['?', '*', '+', '{']) {
            why = "repeats or makes optional the prefix's last character, so it could match topics outside the prefix";
        } else {
            return Ok(());
        }
    }
    Err(refused(why))
}

/// librdkafka properties Sluice owns; letting users override them would break at-least-once
/// (or, for `transactional.id`, exactly-once: it is derived from `runtime.instance_id`).
const MANAGED_PROPERTIES: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "enable.idempotence",
    "acks",
    "group.id",
    "bootstrap.servers",
    "transactional.id",
];

impl PipelineConfig {
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
    fn default_group_suffix(&self) -> String {
        format!("sluice-{}", self.name)
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

    fn validate(&self) -> Result<(), (String, String)> {
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

/// Replaces `${VAR}` in every string of `value`; on error returns the key path and a message.
fn interpolate(value: &mut toml::Value, path: &mut String) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (k, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t
                .find('}')
                .ok_or_else(|| format!("`{s}` has an unclosed `${{` (expected ${{VAR}})"))?;
            let var = &t[..end];
            let value = std::env::var(var).map_err(|_| {
                format!("environment variable `{var}` is not set (referenced as ${{{var}}})")
            })?;
            out.push_str(&value);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [kafka]
        bootstrap_servers = "localhost:9092"
        properties = { "client.id" = "t" }

        [[pipeline]]
        name = "users"
        inputs = ["users.raw"]
        dead_letter_topic = "users.dlq"
        plugins = [{ path = "mask.wasm", config = { fields = "email", depth = 3 } }]
        [pipeline.outputs.clean]
        kafka_topic = "users.clean"
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "sluice.toml", PathBuf::from("/etc/sluice"))
    }

    #[test]
    fn parses_defaults_and_plugin_config_in_order() {
        let c = parse(GOOD).unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.group_id(), "sluice-users");
        assert_eq!(p.default_output(), Some("clean"));
        assert_eq!(p.batch.max_records, 1000);
        assert_eq!(
            p.plugins[0].config,
            vec![
                ("fields".into(), "email".into()),
                ("depth".into(), "3".into())
            ]
        );
        assert_eq!(p.plugins[0].name(), "mask");
        assert_eq!(
            c.plugin_path(&p.plugins[0]),
            PathBuf::from("/etc/sluice/mask.wasm")
        );
    }

    #[test]
    fn unknown_key_names_file_key_and_expected() {
        let text = GOOD.replace(
            "dead_letter_topic",
            "batch = { max_recods = 5 }\n dead_letter_topic",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("sluice.toml: pipeline[0].batch"), "{e}");
        assert!(
            e.contains("unknown field `max_recods`") && e.contains("max_records"),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let text = GOOD.replace(
            "kafka_topic = \"users.clean\"",
            "kafka_topic = \"users.raw\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("pipeline[0].outputs.clean.kafka_topic") && e.contains("also an input"),
            "{e}"
        );

        let text = GOOD.replace(
            "dead_letter_topic = \"users.dlq\"",
            "default_output = \"nope\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("pipeline[0].default_output") && e.contains("declared: clean"),
            "{e}"
        );

        let text = GOOD.replace(
            "properties = {",
            "properties = { \"enable.auto.commit\" = \"true\", ",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("kafka.properties.enable.auto.commit"), "{e}");
    }

    #[test]
    fn env_interpolation() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SLUICE_TEST_BROKERS", "b1:9092") };
        let text = GOOD.replace("localhost:9092", "${SLUICE_TEST_BROKERS}");
        assert_eq!(parse(&text).unwrap().kafka.bootstrap_servers, "b1:9092");

        let text = GOOD.replace("localhost:9092", "$${LITERAL}");
        assert_eq!(parse(&text).unwrap().kafka.bootstrap_servers, "${LITERAL}");

        let text = GOOD.replace("localhost:9092", "${SLUICE_TEST_UNSET_VAR}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("kafka.bootstrap_servers")
                && e.contains("`SLUICE_TEST_UNSET_VAR` is not set"),
            "{e}"
        );
    }

    #[test]
    fn tenant_memory_quota_counts_every_instance_a_pipeline_can_hold() {
        let text = r#"
            [kafka]
            bootstrap_servers = "k:9092"
            [[tenant]]
            name = "acme"
            topic_prefixes = ["acme."]
            max_memory_mb = 500
            [[pipeline]]
            name = "p"
            tenant = "acme"
            inputs = ["acme.in"]
            workers = 2
            limits = { memory_mb = 64 }
            plugins = [{ path = "a.wasm" }, { path = "b.wasm" }]
            [pipeline.outputs.main]
            kafka_topic = "acme.out"
        "#;
        // 2 workers × 2 plugins × 64 MB × 2 (probation) = 512 MB > 500 MB.
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains("tenant[0].max_memory_mb") && e.contains("up to 512 MB"),
            "{e}"
        );
        let text = text.replace(
            "workers = 2",
            "workers = 2\n reload = { probation_records = 0 }",
        );
        assert!(parse(&text).is_ok(), "256 MB without probation fits");
    }

    #[test]
    fn tenants_must_not_share_topics() {
        let text = r#"
            [kafka]
            bootstrap_servers = "k:9092"
            [[tenant]]
            name = "acme"
            topic_prefixes = ["acme"]
            [[tenant]]
            name = "acme-eu"
            topic_prefixes = ["acme-eu."]
        "#;
        let e = parse(&format!(
            "{text}{}",
            GOOD.split("[[pipeline]]")
                .nth(1)
                .map(|p| format!("[[pipeline]]{p}"))
                .unwrap()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("prefix `acme` of tenant `acme` also covers prefix `acme-eu.`"),
            "{e}"
        );
    }

    #[test]
    fn admin_tokens_must_be_long_and_distinct() {
        let pipeline = GOOD
            .split("[[pipeline]]")
            .nth(1)
            .map(|p| format!("[[pipeline]]{p}"))
            .unwrap();
        let config = |operator: &str, tenant: &str| {
            format!(
                "[kafka]\nbootstrap_servers = \"k:9092\"\n[admin]\noperator_token = \"{operator}\"\n\
                 [[tenant]]\nname = \"acme\"\ntopic_prefixes = [\"\"]\nadmin_token = \"{tenant}\"\n{}",
                pipeline.replace("[[pipeline]]", "[[pipeline]]\ntenant = \"acme\"")
            )
        };
        let long = "0123456789abcdef-operator";
        let e = parse(&config("short", "0123456789abcdef-tenant"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("admin.operator_token: expected at least 16"),
            "{e}"
        );
        let e = parse(&config(long, long)).unwrap_err().to_string();
        assert!(
            e.contains("tenant[0].admin_token: is the same token as admin.operator_token"),
            "{e}"
        );
    }

    /// Two tenants, `acme` (with `prefix`) and `globex` (`globex.`), and one pipeline of `acme`
    /// with these `inputs` (a TOML array) and `extra` keys.
    fn tenant_config(prefix: &str, inputs: &str, extra: &str) -> String {
        format!(
            r#"
            [kafka]
            bootstrap_servers = "k:9092"
            [[tenant]]
            name = "acme"
            topic_prefixes = ["{prefix}"]
            [[tenant]]
            name = "globex"
            topic_prefixes = ["globex."]
            [[pipeline]]
            name = "copy"
            tenant = "acme"
            inputs = {inputs}
            {extra}
            plugins = [{{ path = "p.wasm" }}]
            [pipeline.outputs.out]
            kafka_topic = "{prefix}out"
            "#
        )
    }

    #[test]
    fn tenant_prefixes_are_literal_topic_names() {
        for bad in ["^", "acme.*", "acme|", "ac me.", "acmé."] {
            let e = parse(&tenant_config(bad, r#"["x"]"#, ""))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("sluice.toml: tenant[0].topic_prefixes: ")
                    && e.contains(&format!("`{bad}` is not a literal topic-name prefix"))
                    && e.contains("letters, digits, `.`, `_` and `-`"),
                "{bad}: {e}"
            );
        }
        for good in ["acme.", "acme_", "acme-", "ACME.9"] {
            parse(&tenant_config(good, &format!(r#"["{good}in"]"#), ""))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn a_tenants_pattern_must_stay_inside_its_prefixes() {
        let check = |inputs: &str| parse(&tenant_config("acme.", inputs, ""));
        for good in [
            r#"['^acme\..*']"#,
            r#"['^acme\.in-[0-9]+$']"#,
            r#"['^acme\.(in)+']"#,
            r#"['^acme\.']"#,
        ] {
            check(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, why) in [
            // librdkafka reads these as patterns matching other tenants' topics.
            (
                r#"['^globex\..*']"#,
                "does not start with one of the tenant's prefixes",
            ),
            (
                r#"['^.*']"#,
                "does not start with one of the tenant's prefixes",
            ),
            (
                r#"['^acme..*']"#,
                "does not start with one of the tenant's prefixes",
            ),
            (
                r#"['^acme[.]in']"#,
                "does not start with one of the tenant's prefixes",
            ),
            (r#"['^acme\.|^globex\.']"#, "has an alternative"),
            (r#"['^acme\.(in|.*)']"#, "has an alternative"),
            (
                r#"['^acme\.?globex']"#,
                "makes optional the prefix's last character",
            ),
            (
                r#"['^acme\.*']"#,
                "makes optional the prefix's last character",
            ),
            (
                r#"['^acme\.{0}']"#,
                "makes optional the prefix's last character",
            ),
        ] {
            let e = check(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("sluice.toml: pipeline[0].inputs[0]: subscription pattern `")
                    && e.contains(why)
                    && e.contains(r#"e.g. `^acme\..*`"#),
                "{bad}: {e}"
            );
        }
        // Without tenants, patterns are the operator's own business.
        let text = GOOD.replace(r#"inputs = ["users.raw"]"#, r#"inputs = ["^.*"]"#);
        parse(&text).unwrap();
    }

    #[test]
    fn a_tenants_consumer_groups_are_in_its_namespace() {
        // The default is derived from the pipeline name, inside the tenant's first prefix.
        let c = parse(&tenant_config("acme.", r#"["acme.in"]"#, "")).unwrap();
        assert_eq!(c.pipelines[0].group_id(), "acme.sluice-copy");
        let c = parse(&tenant_config(
            "acme.",
            r#"["acme.in"]"#,
            r#"group_id = "acme.readers""#,
        ))
        .unwrap();
        assert_eq!(c.pipelines[0].group_id(), "acme.readers");
        for bad in ["globex.readers", "sluice-copy", "acmereaders", ""] {
            let e = parse(&tenant_config(
                "acme.",
                r#"["acme.in"]"#,
                &format!(r#"group_id = "{bad}""#),
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("sluice.toml: pipeline[0].group_id: ")
                    && e.contains(&format!(
                        "consumer group `{bad}` is not in tenant `acme`'s namespace"
                    ))
                    && e.contains(r#"e.g. "acme.sluice-copy""#),
                "{bad}: {e}"
            );
        }
        // Without tenants, the default stays `sluice-<name>`.
        assert_eq!(parse(GOOD).unwrap().pipelines[0].group_id(), "sluice-users");
    }

    #[test]
    fn a_tenants_outputs_and_dead_letters_stay_in_its_prefixes() {
        for (extra, key) in [
            (r#"dead_letter_topic = "globex.dlq""#, "dead_letter_topic"),
            (r#"dead_letter_topic = '^acme\..*'"#, "dead_letter_topic"),
        ] {
            let e = parse(&tenant_config("acme.", r#"["acme.in"]"#, extra))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("pipeline[0].{key}: topic `")), "{e}");
        }
        let text = tenant_config("acme.", r#"["acme.in"]"#, "").replace(
            r#"kafka_topic = "acme.out""#,
            r#"kafka_topic = "globex.out""#,
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains(
                "pipeline[0].outputs.out.kafka_topic: topic `globex.out` belongs to tenant `globex`"
            ),
            "{e}"
        );
    }

    #[test]
    fn admin_limits_are_checked() {
        let text = GOOD.replace(
            "[[pipeline]]",
            "[admin]\nmax_upload_bytes = 0\n[[pipeline]]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("admin.max_upload_bytes: expected at least 1"),
            "{e}"
        );
        let text = GOOD.replace(
            "[[pipeline]]",
            "[admin]\nmetrics_listen = \"127.0.0.1:9465\"\n[[pipeline]]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("admin.metrics_listen: needs admin.listen"),
            "{e}"
        );
        let c = parse(GOOD).unwrap();
        assert_eq!(c.admin.max_upload_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn bad_toml_is_reported_with_position() {
        let e = parse("[kafka\n").unwrap_err().to_string();
        assert!(e.starts_with("sluice.toml: not valid TOML"), "{e}");
    }
}
