//! Tenants own topic names, consumer groups and quotas: the checks that keep each tenant's
//! pipelines inside its own space.

use std::collections::HashSet;

use super::*;

impl Config {
    /// Consumer groups are named like topics: a tenant's pipeline without a `group_id` gets
    /// `<tenant's first topic prefix>sluice-<name>`, inside the tenant's namespace.
    pub(super) fn default_tenant_group_ids(&mut self) {
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

    pub(super) fn validate_tenants(&self) -> Result<(), (String, String)> {
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
                )
                .chain(
                    p.state
                        .changelog_topic
                        .iter()
                        .map(|t| ("state.changelog_topic".to_string(), t)),
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
pub(super) fn is_topic_name(name: &str) -> bool {
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
pub(super) fn pattern_within(pattern: &str, prefixes: &[String]) -> Result<(), String> {
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
pub(super) const MANAGED_PROPERTIES: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "enable.idempotence",
    "acks",
    "group.id",
    "bootstrap.servers",
    "transactional.id",
];
