//! Topic creation through the admin API on the patched librdkafka mock cluster
//! (third_party/rdkafka-sys, see SLUICE-PATCH.md): the host creates the state
//! changelog topic with CreateTopics, so the mock must implement it as a
//! broker does.
//!
//! Every test here fails against the upstream mock of librdkafka 2.12.1, which
//! does not implement CreateTopics (it closes the connection of a request it
//! has no handler for) and names a controller (broker 0) that does not exist,
//! so librdkafka's admin client waits for it until it times out.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaErrorCode;

const TIMEOUT: Duration = Duration::from_secs(10);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Creates `topics` and returns the result of each, in order.
fn create(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[NewTopic<'_>],
    options: &AdminOptions,
) -> Vec<TopicResult> {
    futures::executor::block_on(admin.create_topics(topics, options))
        .expect("the CreateTopics request is answered")
}

/// The error of each topic's result (None = created).
fn errors(results: &[TopicResult]) -> Vec<Option<RDKafkaErrorCode>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.1))
        .collect()
}

/// `topic`'s partition count as the cluster reports it, None if it does not exist (read by a
/// consumer, which never auto-creates a topic).
fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

fn cluster(brokers: i32) -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(brokers).expect("mock cluster")
}

/// `topic`'s cleanup.policy as DescribeConfigs answers it (None: not among the answer's
/// configs; rdkafka 0.39 drops a resource's error code and gives its empty config list).
fn cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<String>, RDKafkaErrorCode> {
    use rdkafka::admin::ResourceSpecifier;
    let mut results = futures::executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
    )
    .expect("the DescribeConfigs request is answered");
    assert_eq!(results.len(), 1, "one result per resource");
    let resource = results.pop().unwrap()?;
    Ok(resource.get("cleanup.policy").and_then(|e| e.value.clone()))
}

#[test]
fn describe_configs_answers_the_cleanup_policy_a_topic_was_created_with() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let topics = [
        NewTopic::new("compacted", 2, TopicReplication::Fixed(1))
            .set("retention.ms", "1000")
            .set("cleanup.policy", "compact"),
        NewTopic::new("plain", 2, TopicReplication::Fixed(1)),
    ];
    assert_eq!(
        errors(&create(&admin, &topics, &AdminOptions::new())),
        [None, None]
    );
    cluster.create_topic("made-by-the-mock", 1, 1).unwrap();
    assert_eq!(
        cleanup_policy(&admin, "compacted"),
        Ok(Some("compact".into()))
    );
    // Not given: the broker default.
    assert_eq!(cleanup_policy(&admin, "plain"), Ok(Some("delete".into())));
    assert_eq!(
        cleanup_policy(&admin, "made-by-the-mock"),
        Ok(Some("delete".into()))
    );
    // UNKNOWN_TOPIC_OR_PART, and an injected error: no configs.
    assert_eq!(cleanup_policy(&admin, "missing"), Ok(None));
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::DescribeConfigs,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    assert_eq!(cleanup_policy(&admin, "compacted"), Ok(None));
    assert_eq!(
        cleanup_policy(&admin, "compacted"),
        Ok(Some("compact".into())),
        "the injected error answered one request"
    );
}

#[test]
fn create_topics_creates_the_requested_partitions() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let topics = [
        NewTopic::new("six", 6, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
        // -1: the cluster's default partition count (4 on the mock) and replication.
        NewTopic::new("default", -1, TopicReplication::Fixed(-1)),
    ];
    let results = create(&admin, &topics, &AdminOptions::new());
    assert_eq!(errors(&results), [None, None]);
    assert_eq!(partitions(&bootstrap, "six"), Some(6));
    assert_eq!(partitions(&bootstrap, "default"), Some(4));
}

#[test]
fn create_topics_refuses_an_existing_topic_and_keeps_it() {
    let cluster = cluster(1);
    cluster.create_topic("taken", 2, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let results = create(
        &admin,
        &[
            NewTopic::new("taken", 8, TopicReplication::Fixed(1)),
            NewTopic::new("fresh", 3, TopicReplication::Fixed(1)),
        ],
        &AdminOptions::new(),
    );
    // One topic's error does not fail the others of the request.
    assert_eq!(
        errors(&results),
        [Some(RDKafkaErrorCode::TopicAlreadyExists), None]
    );
    assert_eq!(partitions(&bootstrap, "taken"), Some(2), "left as it was");
    assert_eq!(partitions(&bootstrap, "fresh"), Some(3));
    // A topic the request itself created is as taken as one made otherwise.
    let again = create(
        &admin,
        &[NewTopic::new("fresh", 3, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    );
    assert_eq!(errors(&again), [Some(RDKafkaErrorCode::TopicAlreadyExists)]);
}

#[test]
fn create_topics_refuses_bad_replication_and_names() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let results = create(
        &admin,
        &[
            // Two replicas on a one-broker cluster.
            NewTopic::new("replicated", 1, TopicReplication::Fixed(2)),
            NewTopic::new("no spaces", 1, TopicReplication::Fixed(1)),
        ],
        &AdminOptions::new(),
    );
    assert_eq!(
        errors(&results),
        [
            Some(RDKafkaErrorCode::InvalidReplicationFactor),
            Some(RDKafkaErrorCode::InvalidTopic),
        ]
    );
    for t in ["replicated", "no spaces"] {
        assert_eq!(partitions(&bootstrap, t), None, "{t} was not created");
    }
}

/// Sends one CreateTopics v4 request (no replica assignments, no configs, validate_only
/// false) for `(name, partitions, replication)` straight over the wire, and returns the
/// response's `(name, error code, error message)` of each topic. (librdkafka refuses partition
/// counts below -1 and 0 before sending them, and names given twice, so only a raw request
/// reaches those checks of the broker.)
fn raw_create_topics(
    bootstrap: &str,
    topics: &[(&str, i32, i16)],
) -> Vec<(String, i16, Option<String>)> {
    use std::io::{Read, Write};
    let addr = bootstrap.split(',').next().unwrap();
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the mock broker");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let str16 = |b: &mut Vec<u8>, v: &str| {
        b.extend((v.len() as i16).to_be_bytes());
        b.extend(v.as_bytes());
    };
    let mut req = Vec::new();
    req.extend(19i16.to_be_bytes()); // ApiKey CreateTopics
    req.extend(4i16.to_be_bytes()); // ApiVersion
    req.extend(7i32.to_be_bytes()); // CorrelationId
    str16(&mut req, "raw"); // ClientId
    req.extend((topics.len() as i32).to_be_bytes());
    for (name, partitions, replication) in topics {
        str16(&mut req, name);
        req.extend(partitions.to_be_bytes());
        req.extend(replication.to_be_bytes());
        req.extend(0i32.to_be_bytes()); // Assignments
        req.extend(0i32.to_be_bytes()); // Configs
    }
    req.extend(5000i32.to_be_bytes()); // TimeoutMs
    req.push(0); // ValidateOnly
    s.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a response");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    let mut at = 0;
    let mut take = |n: usize| {
        at += n;
        &resp[at - n..at]
    };
    assert_eq!(
        i32::from_be_bytes(take(4).try_into().unwrap()),
        7,
        "CorrelationId"
    );
    let _throttle = i32::from_be_bytes(take(4).try_into().unwrap());
    let count = i32::from_be_bytes(take(4).try_into().unwrap());
    let mut out = Vec::new();
    for _ in 0..count {
        let n = i16::from_be_bytes(take(2).try_into().unwrap());
        let name = String::from_utf8(take(n as usize).to_vec()).unwrap();
        let code = i16::from_be_bytes(take(2).try_into().unwrap());
        let m = i16::from_be_bytes(take(2).try_into().unwrap());
        let message = (m >= 0).then(|| String::from_utf8(take(m as usize).to_vec()).unwrap());
        out.push((name, code, message));
    }
    assert_eq!(at, resp.len(), "nothing after the topics");
    out
}

#[test]
fn create_topics_refuses_bad_partition_counts_and_repeated_names_on_the_wire() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let answered = raw_create_topics(
        &bootstrap,
        &[
            ("zero", 0, 1),
            ("negative", -2, 1),
            ("twice", 2, 1),
            ("fine", 2, 1),
            ("twice", 2, 1),
        ],
    );
    let codes: Vec<(&str, i16)> = answered.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
    // 37 INVALID_PARTITIONS, 42 INVALID_REQUEST (a repeated name is answered once).
    assert_eq!(
        codes,
        [("zero", 37), ("negative", 37), ("twice", 42), ("fine", 0)]
    );
    assert!(answered[0].2.is_some(), "an error comes with a message");
    assert_eq!(answered[3].2, None, "success has no message");
    for t in ["zero", "negative", "twice"] {
        assert_eq!(partitions(&bootstrap, t), None, "{t} was not created");
    }
    assert_eq!(partitions(&bootstrap, "fine"), Some(2));
}

#[test]
fn create_topics_validate_only_creates_nothing() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let validate = AdminOptions::new().validate_only(true);
    let results = create(
        &admin,
        &[
            NewTopic::new("checked", 5, TopicReplication::Fixed(1)),
            NewTopic::new("bad", 0, TopicReplication::Fixed(1)),
        ],
        &validate,
    );
    assert_eq!(
        errors(&results),
        [None, Some(RDKafkaErrorCode::InvalidPartitions)],
        "validated as a real request would be"
    );
    assert_eq!(partitions(&bootstrap, "checked"), None);
}

#[test]
fn create_topics_reaches_the_controller_of_a_cluster_with_several_brokers() {
    // The admin client sends CreateTopics to the controller Metadata names: it must be one
    // of the brokers (numbered from 1), and move when that broker goes down.
    let cluster = cluster(3);
    let bootstrap = cluster.bootstrap_servers();
    let admin = admin(&bootstrap);
    let results = create(
        &admin,
        &[NewTopic::new("spread", 6, TopicReplication::Fixed(3))],
        &AdminOptions::new(),
    );
    assert_eq!(errors(&results), [None]);
    assert_eq!(partitions(&bootstrap, "spread"), Some(6));

    cluster.broker_down(1).expect("broker 1 down");
    let admin = self::admin(&bootstrap);
    let results = create(
        &admin,
        &[NewTopic::new("after", 2, TopicReplication::Fixed(1))],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(20))),
    );
    assert_eq!(errors(&results), [None], "a live broker became controller");
    assert_eq!(partitions(&bootstrap, "after"), Some(2));
}
