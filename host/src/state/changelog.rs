//! The changelog topic: every change of a store, written with the batch that made it, and read
//! back to restore a store when its partition is assigned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::keys;
use super::store::{Changes, PartitionStore};
use super::{StateMeters, Stores};
use crate::config::KafkaConfig;
use crate::offsets::Ticket;
use crate::sinks::KafkaSink;

/// Changelog records applied to a store per write while restoring.
const RESTORE_CHUNK: usize = 20_000;
/// A restore that reads nothing for this long has reached the committed end of its changelog.
const RESTORE_IDLE: Duration = Duration::from_secs(5);

impl Stores {
    /// Writes the batch's pending changes of `store` to the changelog through `producer`,
    /// counted on the batch's `ticket` (so they commit in its transaction, or are acknowledged
    /// before its offsets commit).
    pub(crate) fn write_changelog(
        &self,
        producer: &KafkaSink,
        store: &PartitionStore,
        ticket: &Arc<Ticket>,
    ) {
        if self.kafka.is_none() {
            return;
        }
        let mut n = 0u64;
        store.for_each_pending(|internal, value| {
            let key = keys::changelog_key(&store.topic, internal);
            producer.send_to_partition(&self.changelog, store.partition, &key, value, ticket);
            n += 1;
        });
        self.shared.meters.changelog_records.increment(n);
    }
}

/// What [`ensure_topic`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changelog {
    /// The changelog exists with enough partitions (or was just created).
    Ready,
    /// These inputs are not in the cluster's metadata yet, so the changelog cannot be sized.
    InputsMissing(Vec<String>),
}

/// Creates the changelog topic if it is missing (compacted, with as many partitions as the
/// pipeline's inputs have), or checks that it has enough partitions.
pub(crate) async fn ensure_topic(
    kafka: &KafkaConfig,
    topic: &str,
    inputs: &[String],
) -> Result<Changelog> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    // The admin client is a producer, which by default asks the broker to auto-create every
    // topic it requests metadata for: on a broker with auto.create.topics.enable (Kafka's
    // default) looking for the changelog would create it with the broker's default partition
    // count and not compacted. Metadata is therefore read for all topics (a request naming no
    // topic never creates one, whatever the properties above say), and auto-creation is off
    // for anything else this client might ask about.
    config.set("allow.auto.create.topics", "false");
    let admin: Arc<AdminClient<_>> = Arc::new(
        config
            .create()
            .context("creating a Kafka admin client for the state changelog")?,
    );
    let mut wanted: Vec<&str> = inputs.iter().map(String::as_str).collect();
    wanted.push(topic);
    let found = partitions_of(&admin, &wanted).await?;
    let needed = found[..inputs.len()]
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1);
    // The changelog's partition count comes from the inputs': an input not seen (missing, not
    // describable, or a `^pattern`) would make it silently too small for good.
    let unseen: Vec<&str> = inputs
        .iter()
        .zip(&found)
        .filter(|(_, n)| n.is_none())
        .map(|(i, _)| i.as_str())
        .collect();
    let too_few = |have: usize| {
        anyhow::anyhow!(
            "the state changelog topic `{topic}` has {have} partitions but the pipeline's \
             inputs have {needed}: a changelog is partitioned like its input, so give it \
             {needed} partitions (or name another topic in state.changelog_topic)"
        )
    };
    if let Some(have) = found[inputs.len()] {
        if have < needed {
            return Err(too_few(have));
        }
        check_cleanup_policy(&admin, topic).await?;
        return Ok(Changelog::Ready);
    }
    if !unseen.is_empty() {
        return Ok(Changelog::InputsMissing(
            unseen.into_iter().map(str::to_string).collect(),
        ));
    }
    // Replication -1: the broker's default.replication.factor (KIP-464, Kafka 2.4+), so the
    // state is as durable as the cluster's other topics.
    let new = NewTopic::new(topic, needed as i32, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .with_context(|| {
            format!(
                "creating the state changelog topic `{topic}` (or create it yourself with \
                 {needed} partitions and cleanup.policy=compact)"
            )
        })?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((
                _,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
                | rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
            )) => {
                // Another process created it meanwhile (or the broker auto-created it for
                // some other client), or the broker timed out while creating it: use it if
                // it shows up with enough partitions. A topic just
                // created may take a moment to show its partitions in the metadata.
                let mut have = None;
                for _ in 0..20 {
                    have = partitions_of(&admin, &[topic]).await?[0];
                    if have.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let have = have.with_context(|| {
                    format!(
                        "the state changelog topic `{topic}` exists, the broker says, but \
                         its metadata shows no partitions of it"
                    )
                })?;
                if have < needed {
                    return Err(too_few(have));
                }
                check_cleanup_policy(&admin, topic).await?;
                return Ok(Changelog::Ready);
            }
            Err((t, code)) => bail!(
                "cannot create the state changelog topic `{t}`: {code} (create it yourself \
                 with {needed} partitions and cleanup.policy=compact, or let the host's client \
                 create topics)"
            ),
        }
    }
    tracing::info!(
        topic,
        partitions = needed,
        "created the state changelog topic (compacted)"
    );
    Ok(Changelog::Ready)
}

/// Refuses a changelog that Kafka deletes records from (`cleanup.policy` `delete`, the broker
/// default, or `compact,delete`): past `retention.ms` its oldest changes would be gone, and a
/// store restored from it would silently miss state. A broker that cannot say (no
/// DescribeConfigs, or not allowed) gets a warning, not a refusal.
async fn check_cleanup_policy(
    admin: &AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
) -> Result<()> {
    use rdkafka::admin::ResourceSpecifier;
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await;
    // rdkafka gives a resource the broker refused (not authorized, say) as one with no
    // configs: a broker that answers always names cleanup.policy.
    let policy = match described.as_deref() {
        Ok([Ok(resource)]) => resource.get("cleanup.policy").and_then(|e| e.value.clone()),
        _ => None,
    };
    let Some(policy) = policy else {
        let why = match described.as_deref() {
            Err(e) => e.to_string(),
            Ok([Err(code)]) => code.to_string(),
            Ok(_) => "not answered".to_string(),
        };
        tracing::warn!(
            "cannot read the cleanup.policy of the state changelog topic `{topic}` ({why}); \
             it must be cleanup.policy=compact, or restored state will miss what Kafka deleted"
        );
        return Ok(());
    };
    let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
    if policies.contains(&"compact") && !policies.contains(&"delete") {
        return Ok(());
    }
    bail!(
        "the state changelog topic `{topic}` has cleanup.policy={policy}: Kafka deletes its \
         records after retention.ms, and a store restored from it would silently miss state. \
         Make it compacted (kafka-configs.sh --alter --entity-type topics --entity-name {topic} \
         --add-config cleanup.policy=compact), or name a new topic in state.changelog_topic \
         for the host to create"
    )
}

/// The partition count of each of `wanted` (`None`: not in the cluster's metadata), from one
/// all-topics metadata request. It blocks for up to 10 s, so it runs off the async runtime:
/// a slow broker must not hold a runtime thread that other pipelines and the admin API share.
async fn partitions_of(
    admin: &Arc<AdminClient<rdkafka::client::DefaultClientContext>>,
    wanted: &[&str],
) -> Result<Vec<Option<usize>>> {
    let admin = admin.clone();
    let wanted: Vec<String> = wanted.iter().map(|w| w.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .with_context(|| format!("reading the metadata of topics {wanted:?}"))?;
        Ok(wanted
            .iter()
            .map(|w| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == w)
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| t.partitions().len())
            })
            .collect())
    })
    .await
    .context("the metadata request's thread failed")?
}

/// Restores `store` from its changelog partition, reading only committed records, up to the
/// partition's end as it was when the restore began.
pub(crate) fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    store: &PartitionStore,
    meters: &StateMeters,
) -> Result<u64> {
    let started = Instant::now();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        // librdkafka wants a group for a consumer even when it only assigns: this one never
        // joins or commits. Named after the changelog, so it lies in the same tenant's space.
        .set("group.id", format!("{topic}-restore"));
    for (k, v) in kafka.properties.iter().chain(&kafka.consumer) {
        if k != "group.id" {
            config.set(k, v);
        }
    }
    let consumer: BaseConsumer = config
        .create()
        .context("creating the state restore consumer")?;
    let read = read_into(&consumer, topic, store, meters, started);
    // Stop fetching now: the consumer lingers while it closes.
    let _ = consumer.unassign();
    // Closing a consumer waits on librdkafka's shutdown for up to a second or so: not on the
    // worker, which has the partition's records waiting (16 partitions took seconds).
    let _ = std::thread::Builder::new()
        .name("sluice-restore-close".into())
        .spawn(move || drop(consumer));
    read
}

/// Reads the changelog partition of `store` with `consumer` into the store.
fn read_into(
    consumer: &BaseConsumer,
    topic: &str,
    store: &PartitionStore,
    meters: &StateMeters,
    started: Instant,
) -> Result<u64> {
    let partition = store.partition;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .with_context(|| format!("reading the end of changelog `{topic}` [{partition}]"))?;
    if high <= low {
        tracing::info!(topic, partition, "state store empty: nothing to restore");
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mine = store.topic.as_bytes();
    let mut changes = Changes::new();
    let mut applied = 0u64;
    let mut read = 0u64;
    let mut last_report = Instant::now();
    let mut next = low;
    let mut last_progress = Instant::now();
    while next < high {
        if last_progress.elapsed() > RESTORE_IDLE {
            // What is left is not readable as committed: transaction markers the position
            // did not move past, or a zombie's open transaction, which cannot commit any more
            // (its group generation is fenced) and is aborted at its timeout.
            tracing::warn!(
                topic,
                partition,
                at = next,
                end = high,
                "nothing more to read from the changelog for {} s; its tail is uncommitted, so the restore ends here",
                RESTORE_IDLE.as_secs()
            );
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                next = m.offset() + 1;
                read += 1;
                let Some((t, internal)) = m.key().and_then(keys::split_changelog_key) else {
                    continue;
                };
                if t != mine {
                    continue;
                }
                changes.insert(internal.to_vec(), m.payload().map(<[u8]>::to_vec));
                if changes.len() >= RESTORE_CHUNK {
                    applied += changes.len() as u64;
                    meters.restored.increment(changes.len() as u64);
                    store.restore(&std::mem::take(&mut changes))?;
                }
            }
            Some(Err(e)) => bail!("reading changelog `{topic}` [{partition}]: {e}"),
            None => {
                // Transaction markers and aborted records move the position without a message.
                if let Ok(pos) = consumer.position()
                    && let Some(Offset::Offset(o)) =
                        pos.find_partition(topic, partition).map(|e| e.offset())
                    && o > next
                {
                    next = o;
                    last_progress = Instant::now();
                }
            }
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            tracing::info!(topic, partition, read, of = high - low, "restoring state");
        }
    }
    applied += changes.len() as u64;
    meters.restored.increment(changes.len() as u64);
    store.restore(&changes)?;
    let elapsed = started.elapsed();
    meters.restore_seconds.record(elapsed.as_secs_f64());
    tracing::info!(
        pipeline = %store.shared.pipeline, input = %store.topic, partition, changelog = topic,
        records = read, applied, bytes = store.bytes(), elapsed_ms = elapsed.as_millis() as u64,
        "state store restored"
    );
    Ok(read)
}
