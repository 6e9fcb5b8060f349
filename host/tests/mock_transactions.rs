//! The transaction semantics of the patched librdkafka mock cluster
//! (third_party/rdkafka-sys, see SLUICE-PATCH.md): exactly-once tests
//! against the mock are only meaningful if it behaves like a Kafka broker.
//!
//! Every test here fails against the upstream mock of librdkafka 2.12.1,
//! which accepts the transaction protocol but implements none of its effects.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

fn mock(topics: &[&str]) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in topics {
        cluster.create_topic(topic, 1, 1).expect("create topic");
    }
    cluster
}

fn plain_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

fn txn_producer(bootstrap: &str, transactional_id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

/// Produces one record and waits for its acknowledgement.
fn send(producer: &BaseProducer, topic: &str, payload: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).payload(payload))
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(TIMEOUT).expect("flush");
}

fn consumer(bootstrap: &str, isolation: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer")
}

fn assign_from_start(consumer: &BaseConsumer, topic: &str) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
}

/// Polls `consumer` until a record with payload `until` arrives, or for
/// `wait` if `until` is None; returns (offset, payload) of every record.
fn poll_records(
    consumer: &BaseConsumer,
    until: Option<&str>,
    wait: Duration,
) -> Vec<(i64, String)> {
    let deadline = Instant::now() + if until.is_some() { TIMEOUT } else { wait };
    let mut records = Vec::new();
    while Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message.expect("consume");
            let payload =
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            let done = until == Some(payload.as_str());
            records.push((message.offset(), payload));
            if done {
                return records;
            }
        }
    }
    assert!(
        until.is_none(),
        "{until:?} not consumed within {TIMEOUT:?}, got {records:?}"
    );
    records
}

/// Reads `topic` from its start with the given isolation level.
fn read(bootstrap: &str, topic: &str, isolation: &str, until: Option<&str>) -> Vec<(i64, String)> {
    let consumer = consumer(bootstrap, isolation, "reader");
    assign_from_start(&consumer, topic);
    poll_records(&consumer, until, Duration::from_secs(2))
}

fn payloads(records: &[(i64, String)]) -> Vec<&str> {
    records.iter().map(|(_, p)| p.as_str()).collect()
}

/// The group's committed offset for `topic` [0], or None, as a client that
/// does not require stable offsets sees it.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer = consumer(bootstrap, "read_uncommitted", group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let tpl = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    match tpl.find_partition(topic, 0).expect("partition").offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

fn offsets(topic: &str, offset: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("partition");
    tpl
}

/// Metadata of a consumer that has not joined its group (generation -1),
/// as a producer that reads with assign() would send.
fn unjoined_metadata(bootstrap: &str, group: &str) -> ConsumerGroupMetadata {
    consumer(bootstrap, "read_committed", group)
        .group_metadata()
        .expect("group metadata")
}

fn error_code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

/// (a) Upstream: read_committed sees the aborted records (no ABORT marker,
/// no aborted-transactions list in Fetch).
#[test]
fn aborted_records_are_hidden_from_read_committed_only() {
    let cluster = mock(&["t"]);
    let bootstrap = cluster.bootstrap_servers();
    let txn = txn_producer(&bootstrap, "txn-a");
    let plain = plain_producer(&bootstrap);

    txn.begin_transaction().unwrap();
    send(&txn, "t", "aborted-1");
    send(&txn, "t", "aborted-2");
    txn.abort_transaction(TIMEOUT).unwrap();
    send(&plain, "t", "end");

    let committed = read(&bootstrap, "t", "read_committed", Some("end"));
    assert_eq!(payloads(&committed), ["end"]);
    let uncommitted = read(&bootstrap, "t", "read_uncommitted", Some("end"));
    assert_eq!(payloads(&uncommitted), ["aborted-1", "aborted-2", "end"]);
    // The ABORT marker takes offset 2, as on a broker.
    assert_eq!(uncommitted[2].0, 3);
}

/// (b) Upstream: the aborted record is visible and no marker takes an offset.
#[test]
fn committed_records_are_seen_once_in_log_order_with_markers_taking_offsets() {
    let cluster = mock(&["t"]);
    let bootstrap = cluster.bootstrap_servers();
    let txn = txn_producer(&bootstrap, "txn-b");
    let plain = plain_producer(&bootstrap);

    send(&plain, "t", "p0"); // 0
    txn.begin_transaction().unwrap();
    send(&txn, "t", "t1"); // 1
    send(&txn, "t", "t2"); // 2
    send(&plain, "t", "p1"); // 3, inside the open transaction's range
    txn.commit_transaction(TIMEOUT).unwrap(); // COMMIT at 4
    send(&plain, "t", "p2"); // 5
    txn.begin_transaction().unwrap();
    send(&txn, "t", "aborted"); // 6
    txn.abort_transaction(TIMEOUT).unwrap(); // ABORT at 7
    txn.begin_transaction().unwrap();
    send(&txn, "t", "t3"); // 8
    txn.commit_transaction(TIMEOUT).unwrap(); // COMMIT at 9
    send(&plain, "t", "end"); // 10

    let records = read(&bootstrap, "t", "read_committed", Some("end"));
    let expected: Vec<(i64, String)> = [
        (0, "p0"),
        (1, "t1"),
        (2, "t2"),
        (3, "p1"),
        (5, "p2"),
        (8, "t3"),
        (10, "end"),
    ]
    .iter()
    .map(|(o, p)| (*o, p.to_string()))
    .collect();
    assert_eq!(records, expected);

    // Nothing more (no duplicate, no control record) after the end.
    let consumer = consumer(&bootstrap, "read_committed", "reader");
    assign_from_start(&consumer, "t");
    let again = poll_records(&consumer, None, Duration::from_secs(2));
    assert_eq!(again, expected);
    assert_eq!(consumer.fetch_watermarks("t", 0, TIMEOUT).unwrap(), (0, 11));
}

/// (c) Upstream: LastStableOffset is the high watermark, the open
/// transaction is visible.
#[test]
fn open_transaction_holds_the_last_stable_offset_until_commit() {
    let cluster = mock(&["t"]);
    let bootstrap = cluster.bootstrap_servers();
    let txn = txn_producer(&bootstrap, "txn-c");
    let plain = plain_producer(&bootstrap);

    txn.begin_transaction().unwrap();
    send(&txn, "t", "open-1"); // 0
    send(&plain, "t", "after"); // 1, behind the open transaction

    let reader = consumer(&bootstrap, "read_committed", "reader-c");
    assign_from_start(&reader, "t");
    let seen = poll_records(&reader, None, Duration::from_secs(2));
    assert!(seen.is_empty(), "open transaction visible: {seen:?}");
    // ListOffsets: read_committed latest is the LSO, read_uncommitted the HWM.
    assert_eq!(reader.fetch_watermarks("t", 0, TIMEOUT).unwrap(), (0, 0));
    let dirty = consumer(&bootstrap, "read_uncommitted", "reader-c");
    assert_eq!(dirty.fetch_watermarks("t", 0, TIMEOUT).unwrap(), (0, 2));
    assert_eq!(
        payloads(&read(&bootstrap, "t", "read_uncommitted", Some("after"))),
        ["open-1", "after"]
    );

    send(&txn, "t", "open-2"); // 2
    txn.commit_transaction(TIMEOUT).unwrap(); // COMMIT at 3

    let records = poll_records(&reader, Some("open-2"), TIMEOUT);
    assert_eq!(payloads(&records), ["open-1", "after", "open-2"]);
    assert_eq!(reader.fetch_watermarks("t", 0, TIMEOUT).unwrap(), (0, 4));
}

/// (d) Upstream: TxnOffsetCommit drops the offsets, nothing is ever committed.
#[test]
fn transactional_offsets_are_committed_with_the_transaction_only() {
    let cluster = mock(&["in", "out"]);
    let bootstrap = cluster.bootstrap_servers();
    let txn = txn_producer(&bootstrap, "txn-d");
    let metadata = unjoined_metadata(&bootstrap, "group-d");

    txn.begin_transaction().unwrap();
    send(&txn, "out", "o1");
    txn.send_offsets_to_transaction(&offsets("in", 5), &metadata, TIMEOUT)
        .unwrap();
    assert_eq!(
        committed(&bootstrap, "group-d", "in"),
        None,
        "pending offsets are not committed"
    );

    // KIP-447: a client requiring stable offsets (read_committed) is told
    // UNSTABLE_OFFSET_COMMIT while the transaction is open, and librdkafka
    // retries until the transaction has ended.
    let asked = Instant::now();
    let stable = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let stable = consumer(&bootstrap, "read_committed", "group-d");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition("in", 0);
            let tpl = stable
                .committed_offsets(tpl, Duration::from_secs(20))
                .expect("stable offsets");
            (
                tpl.find_partition("in", 0).unwrap().offset(),
                Instant::now(),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let commit = Instant::now();
    txn.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap, "group-d", "in"), Some(5));
    let (stable_offset, answered) = stable.join().unwrap();
    assert_eq!(stable_offset, Offset::Offset(5), "asked at {asked:?}");
    assert!(answered > commit, "RequireStable must wait for the commit");

    txn.begin_transaction().unwrap();
    send(&txn, "out", "o2");
    txn.send_offsets_to_transaction(&offsets("in", 9), &metadata, TIMEOUT)
        .unwrap();
    txn.abort_transaction(TIMEOUT).unwrap();
    assert_eq!(
        committed(&bootstrap, "group-d", "in"),
        Some(5),
        "aborted offsets are discarded"
    );
}

/// (e) Upstream: the second producer gets a new producer id, nothing is
/// aborted and the first one commits.
#[test]
fn new_producer_instance_aborts_and_fences_the_previous_one() {
    let cluster = mock(&["t"]);
    let bootstrap = cluster.bootstrap_servers();
    let zombie = txn_producer(&bootstrap, "txn-e");
    zombie.begin_transaction().unwrap();
    send(&zombie, "t", "zombie");
    zombie
        .send_offsets_to_transaction(
            &offsets("t", 1),
            &unjoined_metadata(&bootstrap, "group-e"),
            TIMEOUT,
        )
        .unwrap();

    // Same transactional.id: the open transaction is aborted on init.
    let successor = txn_producer(&bootstrap, "txn-e");
    assert_eq!(committed(&bootstrap, "group-e", "t"), None);

    let error = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the zombie must be fenced");
    match &error {
        KafkaError::Transaction(e) => {
            assert!(e.is_fatal(), "fencing is fatal: {e}");
            assert_eq!(e.code(), RDKafkaErrorCode::Fenced, "{e}");
        }
        other => panic!("unexpected error {other}"),
    }

    successor.begin_transaction().unwrap();
    send(&successor, "t", "successor");
    successor.commit_transaction(TIMEOUT).unwrap();

    let records = read(&bootstrap, "t", "read_committed", Some("successor"));
    assert_eq!(payloads(&records), ["successor"]);
    let records = read(&bootstrap, "t", "read_uncommitted", Some("successor"));
    assert_eq!(payloads(&records), ["zombie", "successor"]);
    assert_eq!(committed(&bootstrap, "group-e", "t"), None);
}

/// Upstream: no transaction timeout, the record is visible and the commit
/// succeeds.
#[test]
fn transaction_open_past_its_timeout_is_aborted_by_the_broker() {
    let cluster = mock(&["t"]);
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "txn-g")
        .set("transaction.timeout.ms", "2000")
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    producer.init_transactions(TIMEOUT).unwrap();
    let plain = plain_producer(&bootstrap);

    producer.begin_transaction().unwrap();
    send(&producer, "t", "timed-out");
    send(&plain, "t", "after");
    // transaction.timeout.ms runs out: the broker aborts the transaction,
    // the LSO moves on and the producer is fenced.
    let records = read(&bootstrap, "t", "read_committed", Some("after"));
    assert_eq!(payloads(&records), ["after"]);
    let error = producer.commit_transaction(TIMEOUT).expect_err("timed out");
    assert_eq!(
        error_code(&error),
        Some(RDKafkaErrorCode::Fenced),
        "{error}"
    );
    assert_eq!(
        payloads(&read(&bootstrap, "t", "read_committed", Some("after"))),
        ["after"]
    );
}

/// Polls the consumers until each has `partitions` partitions assigned.
fn join(consumers: &[&BaseConsumer], partitions: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !consumers.iter().all(|c| {
        c.assignment()
            .map(|a| a.count() as i32 == partitions)
            .unwrap_or(false)
    }) {
        for c in consumers {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                panic!("consumer error: {e}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "consumers did not join the group"
        );
    }
}

/// (f) Upstream: TxnOffsetCommit ignores GenerationId and MemberId.
#[test]
fn txn_offset_commit_from_a_stale_generation_is_refused() {
    let cluster = mock(&["out"]);
    cluster.create_topic("in", 2, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let subscriber = |group: &str| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // The mock waits up to the session timeout for members to rejoin.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "200")
            .create()
            .expect("consumer");
        c.subscribe(&["in"]).expect("subscribe");
        c
    };
    let first = subscriber("group-f");
    join(&[&first], 2);
    let stale = first.group_metadata().unwrap();

    // A second member joins: the group moves to a new generation, and the
    // first member to it with its new assignment.
    let second = subscriber("group-f");
    join(&[&first, &second], 1);

    let txn = txn_producer(&bootstrap, "txn-f");
    txn.begin_transaction().unwrap();
    send(&txn, "out", "o1");
    let error = txn
        .send_offsets_to_transaction(&offsets("in", 1), &stale, TIMEOUT)
        .expect_err("a zombie of an old generation must not commit offsets");
    assert_eq!(
        error_code(&error),
        Some(RDKafkaErrorCode::IllegalGeneration),
        "{error}"
    );
    txn.abort_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap, "group-f", "in"), None);

    // The current generation's metadata is accepted.
    txn.begin_transaction().unwrap();
    send(&txn, "out", "o2");
    txn.send_offsets_to_transaction(&offsets("in", 1), &first.group_metadata().unwrap(), TIMEOUT)
        .unwrap();
    txn.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap, "group-f", "in"), Some(1));
}
