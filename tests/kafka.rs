//! The Kafka source end to end: the real daemon consumes from librdkafka's mock cluster (owned by
//! the test process, listening on loopback), fed by an rdkafka producer in the test. Covers mixed
//! wire formats, at-least-once across `kill -9`, replays taken as repeats, dead letters,
//! backpressure (pause/resume), scale-out of one consumer group over two instances, and
//! readiness.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::ProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOPIC: &str = "alerts";
/// Deadline of the waits that involve a consumer group: joining one on the mock cluster takes 3 s
/// (its initial rebalance delay), a rebalance a few more.
const KAFKA_WAIT: Duration = Duration::from_secs(60);

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A one-broker mock cluster with the `alerts` topic. Dropping it stops the broker.
fn cluster(partitions: i32) -> Cluster {
    let cluster = MockCluster::new(1).expect("start the mock Kafka cluster");
    cluster
        .create_topic(TOPIC, partitions, 1)
        .expect("create the alerts topic");
    cluster
}

// ---- producing ----------------------------------------------------------------------------------

/// Delivery reports: (partition, offset) of each delivered message, or why it failed.
#[derive(Default)]
struct Deliveries {
    reports: Mutex<Vec<Result<(i32, i64), String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let report = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, m)) => Err(format!("partition {}: {e}", m.partition())),
        };
        self.reports.lock().unwrap().push(report);
    }
}

/// A producer that checks every message was delivered.
struct TestProducer {
    producer: BaseProducer<Deliveries>,
    sent: usize,
}

impl TestProducer {
    fn new(cluster: &Cluster) -> TestProducer {
        TestProducer::with(cluster, &[])
    }

    /// With more librdkafka properties.
    fn with(cluster: &Cluster, properties: &[(&str, &str)]) -> TestProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "5");
        for (key, value) in properties {
            config.set(*key, *value);
        }
        let producer = config
            .create_with_context(Deliveries::default())
            .expect("create the test producer");
        TestProducer { producer, sent: 0 }
    }

    /// Queue one message keyed `key` (the alert's group key, as the README asks producers to).
    fn send(&mut self, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(TOPIC).key(key).payload(payload);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => panic!("producing to {TOPIC} failed: {e}"),
            }
        }
        self.sent += 1;
    }

    fn send_json(&mut self, key: &str, payload: &Value) {
        self.send(key, &serde_json::to_vec(payload).unwrap());
    }

    /// Wait until every message sent so far is acknowledged by the broker; their
    /// (partition, offset) in delivery order.
    fn flush(&mut self) -> Vec<(i32, i64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = self.producer.flush(Duration::from_secs(5));
            let reports = self.producer.context().reports.lock().unwrap().clone();
            if reports.len() >= self.sent {
                let failed: Vec<&String> =
                    reports.iter().filter_map(|r| r.as_ref().err()).collect();
                assert!(failed.is_empty(), "deliveries failed: {failed:?}");
                return reports.into_iter().map(Result::unwrap).collect();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} messages delivered within 30 s",
                reports.len(),
                self.sent
            );
        }
    }
}

// ---- the daemon ---------------------------------------------------------------------------------

/// A daemon consuming `alerts` (format auto) from `brokers` as member of `group`. `kafka_extra`
/// goes into `[kafka]`, `tables` before it (e.g. `[server]`). A short session timeout lets a
/// restarted member replace a killed one quickly (librdkafka's default is 45 s).
fn kafka_daemon(brokers: &str, group: &str, kafka_extra: &str, tables: &str) -> Daemon {
    kafka_daemon_with(brokers, group, kafka_extra, tables, "")
}

/// [`kafka_daemon`] with more lines for `[kafka.properties]`.
fn kafka_daemon_with(
    brokers: &str,
    group: &str,
    kafka_extra: &str,
    tables: &str,
    properties: &str,
) -> Daemon {
    Daemon::with(&format!(
        "{tables}\n\
         [kafka]\n\
         brokers = \"{brokers}\"\n\
         group_id = \"{group}\"\n\
         topics = [{{ name = \"{TOPIC}\", format = \"auto\" }}]\n\
         {kafka_extra}\n\
         [kafka.properties]\n\
         \"session.timeout.ms\" = \"6000\"\n\
         {properties}\n"
    ))
}

fn kafka_messages(d: &Daemon, result: &str) -> f64 {
    d.metric(
        "triaged_kafka_messages_total",
        &[("topic", TOPIC), ("result", result)],
    )
}

fn assigned(d: &Daemon) -> f64 {
    d.metric("triaged_kafka_assigned_partitions", &[])
}

/// Poll until the daemon's `triaged_kafka_messages_total{result}` reaches `n` (and no further).
fn wait_messages(d: &Daemon, result: &str, n: usize) {
    poll_until_for(
        &format!("triaged_kafka_messages_total{{result=\"{result}\"}} = {n}"),
        KAFKA_WAIT,
        || {
            let got = kafka_messages(d, result);
            if got == n as f64 {
                Ok(())
            } else {
                assert!(
                    got < n as f64,
                    "more messages counted ({got}) than produced ({n})"
                );
                Err(got)
            }
        },
    );
}

// ---- alerts and incidents -----------------------------------------------------------------------

fn group_key(alertname: &str, service: &str) -> String {
    format!("alertname=\"{alertname}\",service=\"{service}\"")
}

/// One native alert object (a whole message by itself).
fn single(alertname: &str, service: &str, instance: &str, severity: &str) -> Value {
    json!({
        "labels": {
            "alertname": alertname,
            "service": service,
            "instance": instance,
            "severity": severity,
        },
        "annotations": { "summary": format!("{alertname} on {instance}") },
        "status": "firing",
    })
}

fn members(inc: &Value) -> Vec<Value> {
    inc["members"]
        .as_array()
        .unwrap_or_else(|| panic!("incident has no members array: {inc}"))
        .clone()
}

/// Every member of every incident of `d`, with the incident's full record fetched.
fn all_members(d: &Daemon) -> Vec<Value> {
    d.all_incidents("")
        .iter()
        .flat_map(|i| members(&d.incident(i["id"].as_str().expect("incident id"))))
        .collect()
}

fn fingerprints_of(ms: &[Value]) -> Vec<String> {
    ms.iter()
        .map(|m| {
            m["fingerprint"]
                .as_str()
                .expect("member fingerprint")
                .to_string()
        })
        .collect()
}

fn sum_alert_counts(d: &Daemon) -> u64 {
    d.all_incidents("")
        .iter()
        .map(|i| i["alert_count"].as_u64().expect("alert_count"))
        .sum()
}

fn dead_letters(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.get_json("/api/v1/dead-letters?limit=1000");
    assert_eq!(status, 200, "GET /api/v1/dead-letters: {body}");
    let mut letters = body["dead_letters"]
        .as_array()
        .unwrap_or_else(|| panic!("no dead_letters array: {body}"))
        .clone();
    letters.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
    letters
}

// ---- 1. mixed formats ---------------------------------------------------------------------------

#[test]
fn messages_of_every_format_open_the_expected_incidents() {
    let cluster = cluster(3);
    let mut p = TestProducer::new(&cluster);

    // Alertmanager v2 arrays: Prometheus (still firing: endsAt ahead) and amtool.
    let mut prometheus = fixture_json("prometheus-2.42-firing.json");
    prometheus[0]["endsAt"] = json!(rfc3339_in(600.0));
    p.send_json(&group_key("CaptureDiskFull", "storage"), &prometheus);
    p.send(
        &group_key("CaptureAmtool", "web"),
        &fixture("amtool-0.25-alert-add.json"),
    );
    // An Alertmanager webhook payload (one group, two alerts).
    let webhook = fixture_json("alertmanager-0.25-webhook-firing.json");
    p.send_json(&group_key("CaptureProbeFailure", "edge"), &webhook);
    // triaged's own form: an object with `alerts`, and two single alert objects.
    p.send(
        &group_key("QueueBacklog", "billing"),
        &fixture("native-firing.json"),
    );
    let singles = [
        single("KafkaSingle", "payments", "pay-1", "minor"),
        single("KafkaSingle", "payments", "pay-2", "minor"),
    ];
    for s in &singles {
        p.send_json(&group_key("KafkaSingle", "payments"), s);
    }
    // A PagerDuty trigger (class "disk", component "mysql").
    p.send(
        &group_key("disk", "mysql"),
        &fixture("pagerduty-trigger.json"),
    );
    let messages = p.sent;
    assert_eq!(messages, 7);
    p.flush();

    let d = kafka_daemon(&cluster.bootstrap_servers(), "mixed", "", "");
    wait_messages(&d, "ok", messages);
    assert_eq!(kafka_messages(&d, "dead_letter"), 0.0);

    // (group key) -> (tier, severity, alert_count, member source)
    let expected: BTreeMap<String, (&str, &str, u64, &str)> = [
        (
            group_key("CaptureDiskFull", "storage"),
            ("L3", "critical", 1, "alertmanager"),
        ),
        (
            group_key("CaptureAmtool", "web"),
            ("L1", "warning", 1, "alertmanager"),
        ),
        (
            group_key("CaptureProbeFailure", "edge"),
            ("L2", "major", 2, "webhook"),
        ),
        (
            group_key("QueueBacklog", "billing"),
            ("L2", "major", 2, "native"),
        ),
        (
            group_key("KafkaSingle", "payments"),
            ("L1", "minor", 2, "native"),
        ),
        (
            group_key("disk", "mysql"),
            ("L3", "critical", 1, "pagerduty"),
        ),
    ]
    .into_iter()
    .collect();

    let all = d.all_incidents("");
    let ids: BTreeSet<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "incident ids repeat: {all:?}");
    let got_keys: BTreeSet<String> = all
        .iter()
        .map(|i| i["group_key"].as_str().unwrap().to_string())
        .collect();
    let want_keys: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(
        got_keys,
        want_keys,
        "incidents: {}",
        Value::Array(all.clone())
    );
    assert_eq!(all.len(), expected.len(), "{}", Value::Array(all.clone()));

    for summary in &all {
        let id = summary["id"].as_str().unwrap();
        let inc = d.incident(id);
        let key = inc["group_key"].as_str().unwrap();
        let (tier, severity, count, source) = expected[key];
        assert_eq!(inc["id"], id, "{inc}");
        assert_eq!(inc["state"], "open", "{inc}");
        assert_eq!(inc["tier"], tier, "{inc}");
        assert_eq!(inc["severity"], severity, "{inc}");
        assert_eq!(inc["alert_count"], count, "{inc}");
        let ms = members(&inc);
        assert_eq!(ms.len() as u64, count, "{inc}");
        for m in &ms {
            assert_eq!(m["source"], source, "{m}");
            assert_eq!(m["status"], "firing", "{m}");
            assert_eq!(m["count"], 1, "each alert was produced once: {m}");
            assert_eq!(m["incident"], id, "{m}");
        }
    }

    // Alertmanager's own fingerprints, and ours for the single objects.
    for a in webhook["alerts"].as_array().unwrap() {
        let (status, got) = d.alert(a["fingerprint"].as_str().unwrap());
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["source"], "webhook", "{got}");
    }
    for s in &singles {
        let (status, got) = d.alert(&fingerprint(&s["labels"]));
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["source"], "native", "{got}");
    }
    for (source, n) in [
        ("alertmanager", 2.0),
        ("webhook", 2.0),
        ("native", 4.0),
        ("pagerduty", 1.0),
    ] {
        assert_eq!(
            d.metric("triaged_alerts_received_total", &[("source", source)]),
            n,
            "triaged_alerts_received_total{{source=\"{source}\"}}"
        );
    }
}

// ---- 2. kill -9 mid-stream ----------------------------------------------------------------------

#[test]
fn kill9_mid_stream_replays_without_loss_or_duplicate_incidents() {
    const N: usize = 300;
    let cluster = cluster(1);
    // One record batch per message: a fetch returns whole batches, whatever its size limit.
    let mut p = TestProducer::with(&cluster, &[("batch.num.messages", "1")]);
    let key = group_key("CrashStorm", "ledger");
    let sent: Vec<Value> = (0..N)
        .map(|i| single("CrashStorm", "ledger", &format!("host-{i:03}"), "major"))
        .collect();
    for a in &sent {
        p.send_json(&key, a);
    }
    p.flush();
    let expected: BTreeSet<String> = sent.iter().map(|a| fingerprint(&a["labels"])).collect();
    assert_eq!(expected.len(), N);

    // Small batches (many durable writes) from a slow broker, so that the kill lands
    // mid-stream however fast the commits are: every fetch answers after 20 ms with a few
    // messages (1 KiB at most per partition), so reading all of them takes the first run about
    // two seconds, and the kill follows the first processed one within milliseconds.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(20))
        .expect("slow the mock broker down");
    let mut d = kafka_daemon_with(
        &cluster.bootstrap_servers(),
        "crash",
        "max_batch = 5",
        "",
        "\"max.partition.fetch.bytes\" = \"1024\"",
    );
    let before_kill = poll_until_for("the first messages processed", KAFKA_WAIT, || {
        let ok = kafka_messages(&d, "ok");
        if ok > 0.0 {
            Ok(ok)
        } else {
            Err(ok)
        }
    });
    d.kill9();
    eprintln!("kill -9 after at least {before_kill} of {N} messages were processed");
    cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("the mock broker at full speed again");

    d.restart();
    let total = poll_until_for("every alert a member after the restart", KAFKA_WAIT, || {
        let n = sum_alert_counts(&d);
        if n == N as u64 {
            Ok(n)
        } else {
            assert!(
                n < N as u64,
                "alert_count {n} above the {N} alerts produced"
            );
            Err(n)
        }
    });
    assert_eq!(total, N as u64);

    let all = d.all_incidents("");
    assert_eq!(
        all.len(),
        1,
        "exactly one incident expected: {}",
        Value::Array(all.clone())
    );
    let inc = d.incident(all[0]["id"].as_str().unwrap());
    assert_eq!(inc["group_key"], key.as_str(), "{inc}");
    assert_eq!(inc["alert_count"], N, "{inc}");
    let ms = members(&inc);
    assert_eq!(ms.len(), N, "members");
    let fps = fingerprints_of(&ms);
    let distinct: BTreeSet<String> = fps.iter().cloned().collect();
    assert_eq!(distinct.len(), N, "a fingerprint is a member twice");
    assert_eq!(
        distinct, expected,
        "members differ from the alerts produced"
    );
    let mut replayed = 0;
    for m in &ms {
        let count = m["count"].as_u64().unwrap_or(0);
        assert!(count >= 1, "{m}");
        if count > 1 {
            replayed += 1;
        }
    }
    eprintln!(
        "after the restart: {replayed} members seen more than once (replays recognised by dedup); \
         second run counted {} ok messages",
        kafka_messages(&d, "ok")
    );
    // The second run read at least what the first had not committed.
    assert!(
        kafka_messages(&d, "ok") >= 1.0 || before_kill >= N as f64,
        "the restarted daemon read nothing although the first stopped after {before_kill}"
    );
}

/// What the kill -9 test above cannot force: every message read a second time. The daemon is
/// restarted on the same store as a member of a group that has committed nothing, so it reads
/// every message again; dedup takes each replay as a repeat of its alert (its count goes up),
/// and no incident is opened, joined or counted anew.
#[test]
fn messages_read_again_are_repeats_not_new_alerts_or_incidents() {
    const N: usize = 40;
    let cluster = cluster(1);
    let mut p = TestProducer::new(&cluster);
    let key = group_key("Replayed", "ledger");
    for i in 0..N {
        p.send_json(
            &key,
            &single("Replayed", "ledger", &format!("host-{i:02}"), "major"),
        );
    }
    assert_eq!(p.flush().len(), N);
    let mut d = kafka_daemon(&cluster.bootstrap_servers(), "replay", "", "");
    wait_messages(&d, "ok", N);
    let first = d.all_incidents("");
    assert_eq!(first.len(), 1, "{}", Value::Array(first.clone()));
    let id = first[0]["id"].as_str().unwrap().to_string();
    assert_eq!(d.incident(&id)["alert_count"], N);
    assert!(d.terminate().success());
    assert_eq!(
        committed(&cluster, "replay", 1),
        [N as i64],
        "all committed at the stop"
    );

    // Read from the start again: the same store, as a group that has committed nothing (what
    // a lost commit, or an operator resetting the group's offsets, comes to).
    let config = d.dir().join("triaged.toml");
    let text = std::fs::read_to_string(&config).expect("read the config");
    std::fs::write(&config, text.replace("\"replay\"", "\"replay-again\"")).expect("write it");
    d.restart();
    wait_messages(&d, "ok", N);
    poll_until_for("the replays committed", KAFKA_WAIT, || {
        let at = committed(&cluster, "replay-again", 1);
        if at == [N as i64] {
            Ok(())
        } else {
            Err(at)
        }
    });
    let after = d.all_incidents("");
    assert_eq!(after.len(), 1, "{}", Value::Array(after.clone()));
    let inc = d.incident(&id);
    assert_eq!(inc["alert_count"], N, "{inc}");
    assert_eq!(inc["state"], "open", "{inc}");
    for m in members(&inc) {
        assert_eq!(m["count"], 2, "each alert received twice: {m}");
    }
    let opened: f64 = parse_metrics(&d.metrics())
        .iter()
        .filter(|s| s.name == "triaged_incidents_opened_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(opened, 0.0, "the replays opened incidents");
    let deduplicated: f64 = parse_metrics(&d.metrics())
        .iter()
        .filter(|s| s.name == "triaged_alerts_deduplicated_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(deduplicated, N as f64, "each replay counted as a repeat");
}

// ---- 3. poison messages -------------------------------------------------------------------------

#[test]
fn poison_messages_become_dead_letters_and_do_not_block_the_partition() {
    let cluster = cluster(1);
    let mut p = TestProducer::new(&cluster);
    let key = group_key("PoisonGood", "queue");
    let good = |i: &str| single("PoisonGood", "queue", i, "warning");

    p.send_json(&key, &good("a")); // offset 0
    p.send(&key, b"not json"); // 1
    p.send(&key, br#"{"hello": "world", "n": 1}"#); // 2
    let mut big = good("big");
    big["annotations"]["description"] = json!("x".repeat(2000));
    let big = serde_json::to_vec(&big).unwrap();
    assert!(big.len() > 1024);
    p.send(&key, &big); // 3
    p.send(&key, br#"{"labels": {}, "status": "firing"}"#); // 4
    let mut long = good("long");
    long["labels"]["instance"] = json!("i".repeat(100));
    p.send_json(&key, &long); // 5: a label over server.max_label_bytes
    p.send_json(&key, &good("b")); // 6
    p.send_json(&key, &good("c")); // 7
    let offsets: Vec<i64> = p.flush().iter().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        (0..8).collect::<Vec<i64>>(),
        "one partition, in order"
    );

    let mut d = kafka_daemon(
        &cluster.bootstrap_servers(),
        "poison",
        "max_message_bytes = 1024",
        "[server]\nmax_label_bytes = 64\n",
    );
    wait_messages(&d, "ok", 3);
    wait_messages(&d, "dead_letter", 5);

    let letters = dead_letters(&d);
    assert_eq!(letters.len(), 5, "{letters:?}");
    let at: Vec<(i64, i64)> = letters
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        vec![(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)],
        "{letters:?}"
    );
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l["error"].as_str().unwrap())
        .collect();
    for (l, err) in letters.iter().zip(&errors) {
        assert_eq!(l["topic"], TOPIC, "{l}");
        assert_eq!(l["key"], key.as_str(), "{l}");
        assert!(!err.is_empty(), "{l}");
    }
    assert_eq!(letters[0]["raw"], "not json", "{}", letters[0]);
    assert!(
        errors[1].contains("cannot tell its format"),
        "unknown shape: {}",
        letters[1]
    );
    assert!(
        errors[2].contains("max_message_bytes"),
        "oversize: {}",
        letters[2]
    );
    assert_eq!(letters[2]["size"], big.len(), "{}", letters[2]);
    assert!(
        errors[3].contains("labels must not be empty"),
        "invalid alert: {}",
        letters[3]
    );
    assert!(
        errors[4].contains("max_label_bytes"),
        "shape limit: {}",
        letters[4]
    );

    // The good messages after the poison ones went through.
    let inc = only_incident_matching(&d, "PoisonGood");
    let instances: BTreeSet<String> = members(&d.incident(inc["id"].as_str().unwrap()))
        .iter()
        .map(|m| m["labels"]["instance"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(instances, want);

    // Their offsets were stored like any other: after a clean restart nothing is read again.
    d.terminate();
    d.restart();
    p.send_json(&key, &good("d"));
    p.flush();
    wait_messages(&d, "ok", 1);
    assert_eq!(
        kafka_messages(&d, "dead_letter"),
        0.0,
        "dead letters read again after a clean restart"
    );
    assert_eq!(dead_letters(&d).len(), 5);
    let inc = d.incident(inc["id"].as_str().unwrap());
    assert_eq!(inc["alert_count"], 4, "{inc}");
    for m in members(&inc) {
        assert_eq!(m["count"], 1, "a good message was read again: {m}");
    }
}

/// Regression (QA F3): a PagerDuty `acknowledge` consumed from Kafka was counted ok and changed
/// nothing (an empty list of alerts was ingested); over HTTP it acknowledges the incident its
/// alert belongs to. An acknowledge of an alert triaged has never seen is done with, as over
/// HTTP (202): neither read again nor a dead letter.
#[test]
fn a_pagerduty_acknowledge_acknowledges_the_incident_as_over_http() {
    let cluster = cluster(1);
    let mut p = TestProducer::new(&cluster);
    let key = group_key("disk", "mysql");
    p.send(&key, &fixture("pagerduty-trigger.json"));
    p.send(&key, &fixture("pagerduty-acknowledge.json"));
    let mut unknown = fixture_json("pagerduty-acknowledge.json");
    unknown["dedup_key"] = json!("never-triggered");
    p.send_json(&key, &unknown);
    p.flush();

    let d = kafka_daemon(&cluster.bootstrap_servers(), "pd-ack", "", "");
    wait_messages(&d, "ok", 3);
    assert_eq!(kafka_messages(&d, "dead_letter"), 0.0);
    let all = d.all_incidents("");
    assert_eq!(all.len(), 1, "{}", Value::Array(all.clone()));
    let inc = d.incident(all[0]["id"].as_str().unwrap());
    assert_eq!(inc["state"], "acknowledged", "{inc}");
    parse_time(&inc["acknowledged_at"]);
    let acked: Vec<&Value> = inc["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["kind"] == "acknowledged")
        .collect();
    assert_eq!(acked.len(), 1, "{inc}");
    assert_eq!(acked[0]["actor"], "pagerduty", "{inc}");
    // Only the trigger is an alert received, as over HTTP.
    assert_eq!(
        d.metric("triaged_alerts_received_total", &[("source", "pagerduty")]),
        1.0
    );
}

/// The messages on partition 0 of `topic`, from the start: (key, JSON payload), `n` of them.
fn read_topic(cluster: &Cluster, topic: &str, n: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "topic-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create the topic reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition 0");
    consumer.assign(&tpl).expect("assign partition 0");
    let mut got = Vec::new();
    let deadline = Instant::now() + KAFKA_WAIT;
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages on {topic}: {got:?}",
            got.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("a message on {topic} is not JSON: {e}"));
                got.push((key, value));
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    got
}

/// Regressions: the copies produced to `dead_letter_topic` all carried `"id": 0` (QA F8: made
/// before the store numbered them), and librdkafka warned at each start that the consumer's
/// properties (`session.timeout.ms`, which these daemons set) are ignored by the dead-letter
/// producer (QA F9).
#[test]
fn dead_letters_are_produced_to_the_topic_with_their_stored_id() {
    let cluster = cluster(1);
    cluster
        .create_topic("dead", 1, 1)
        .expect("create the dead-letter topic");
    let mut p = TestProducer::new(&cluster);
    let key = group_key("DeadCopies", "queue");
    p.send(&key, b"junk 1"); // offset 0
    p.send_json(&key, &single("DeadCopies", "queue", "a", "warning")); // 1
    p.send(&key, b"junk 2"); // 2
    p.flush();

    let d = kafka_daemon(
        &cluster.bootstrap_servers(),
        "dead-copies",
        "dead_letter_topic = \"dead\"",
        "",
    );
    wait_messages(&d, "ok", 1);
    wait_messages(&d, "dead_letter", 2);
    let stored: Vec<(i64, i64)> = dead_letters(&d)
        .iter()
        .map(|l| (l["offset"].as_i64().unwrap(), l["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    let mut copies = read_topic(&cluster, "dead", 2);
    copies.sort_by_key(|(_, l)| l["offset"].as_i64());
    for ((key, copy), (offset, id)) in copies.iter().zip(&stored) {
        assert_eq!(key, &format!("{TOPIC}/0/{offset}"), "{copy}");
        assert_eq!(copy["offset"], *offset, "{copy}");
        assert_eq!(copy["id"], *id, "the copy's id is the stored one: {copy}");
        assert!(*id > 0, "stored ids count from 1: {stored:?}");
    }
    let log = d.stderr_text();
    assert!(!log.contains("CONFWARN"), "{log}");
}

/// Create `topic` on the cluster as one its broker says it does not know (until told otherwise).
fn unknown_topic(cluster: &Cluster, topic: &str) {
    cluster
        .create_topic(topic, 1, 1)
        .expect("create the dead-letter topic");
    cluster
        .topic_error(
            topic,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .expect("make the dead-letter topic unknown");
}

/// Regression (QA F4): a `dead_letter_topic` the brokers do not know held the whole consumer
/// ~30 s per batch holding a poison message: the copy's delivery was awaited before the batch
/// went on, and librdkafka waits `topic.metadata.propagation.max.ms` (30 s) to fail it. The
/// dead letter is durable in the store first; its copy must not hold the partition.
#[test]
fn a_dead_letter_topic_the_brokers_do_not_know_does_not_hold_the_partition() {
    let cluster = cluster(1);
    unknown_topic(&cluster, "unknown");
    let mut p = TestProducer::new(&cluster);
    let key = group_key("AfterJunk", "queue");
    p.send(&key, b"junk");
    p.send_json(&key, &single("AfterJunk", "queue", "a", "warning"));
    p.flush();

    let started = Instant::now();
    let d = kafka_daemon(
        &cluster.bootstrap_servers(),
        "unknown-dead",
        "dead_letter_topic = \"unknown\"",
        "",
    );
    wait_messages(&d, "dead_letter", 1);
    wait_messages(&d, "ok", 1);
    let took = started.elapsed();
    // Joining the group takes the mock cluster 3 s; the copy's failure would have held the
    // batch 30 s.
    assert!(
        took < Duration::from_secs(20),
        "the good message after a poison one took {took:?}"
    );
    // And the next batch is not held either.
    let again = Instant::now();
    p.send(&key, b"junk again");
    p.send_json(&key, &single("AfterJunk", "queue", "b", "warning"));
    p.flush();
    wait_messages(&d, "dead_letter", 2);
    wait_messages(&d, "ok", 2);
    let took = again.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the second batch took {took:?}"
    );
}

/// Regression (QA, left open last session): a copy to `dead_letter_topic` that failed was
/// logged and never made again. The copies now follow the stored dead letters from a durable
/// cursor: a failed one is tried again until delivered, and one delivered is not made again
/// after a restart.
#[test]
fn a_dead_letter_copy_that_failed_is_made_again_and_only_once() {
    let cluster = cluster(1);
    unknown_topic(&cluster, "later");
    let mut p = TestProducer::new(&cluster);
    p.send("k", b"junk 1");
    p.flush();
    // Each copy's attempt fails within 1 s while the topic is unknown (librdkafka would wait
    // 30 s for a topic to appear, and the forwarder's own default is 30 s).
    let mut d = kafka_daemon_with(
        &cluster.bootstrap_servers(),
        "dead-retry",
        "dead_letter_topic = \"later\"",
        "",
        "\"message.timeout.ms\" = \"1000\"",
    );
    let copies = |d: &Daemon, result: &str| {
        d.metric(
            "triaged_kafka_dead_letter_copies_total",
            &[("result", result)],
        )
    };
    // Until `triaged_kafka_dead_letter_copies_total{result}` is at least `n`.
    let wait_copies = |d: &Daemon, result: &str, n: f64| {
        poll_until_for(
            &format!("{n} copies {result}"),
            KAFKA_WAIT,
            || match copies(d, result) {
                got if got >= n => Ok(()),
                got => Err(got),
            },
        )
    };
    wait_messages(&d, "dead_letter", 1);
    wait_copies(&d, "error", 1.0);
    assert_eq!(copies(&d, "ok"), 0.0);
    cluster
        .topic_error(
            "later",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        )
        .expect("make the dead-letter topic known");
    wait_copies(&d, "ok", 1.0);

    // Restarted, it does not copy the first again; a new one is copied.
    assert!(d.terminate().success());
    d.restart();
    p.send("k", b"junk 2");
    p.flush();
    wait_messages(&d, "dead_letter", 1);
    wait_copies(&d, "ok", 1.0);
    let stored: Vec<i64> = dead_letters(&d)
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    let copied: Vec<i64> = read_topic(&cluster, "later", 2)
        .iter()
        .map(|(_, l)| l["id"].as_i64().unwrap())
        .collect();
    let mut expected = stored.clone();
    expected.sort_unstable();
    assert_eq!(
        copied, expected,
        "each stored dead letter copied once, in order"
    );
    assert_eq!(stored.len(), 2, "{stored:?}");
}

/// Regression (QA F6): a `[kafka]` the consumer cannot start with passed `check-config`; `run`
/// then served without its Kafka source, `/-/ready` blamed the broker, and SIGTERM exited 1.
/// Both refuse it now, exit 64, naming the line, before binding or opening anything.
#[test]
fn check_config_and_run_refuse_a_kafka_source_that_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "topics.toml",
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [{ name = \"\" }, { name = \"a\" }, { name = \"a\" }]\n",
            "topics.toml:3: kafka.topics[0].name: must not be empty",
        ),
        (
            "tls.toml",
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [{ name = \"a\" }]\n[kafka.properties]\n\
             \"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
            "tls.toml:6: kafka.properties.ssl.ca.location: librdkafka cannot create the consumer: ",
        ),
    ];
    for (name, text, said) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let data = dir.path().join(format!("{name}.data"));
        let path = path.to_str().unwrap();
        for args in [
            vec!["check-config", path],
            vec![
                "run",
                "--config",
                path,
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_triaged"))
                .args(&args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
            assert!(err.contains(said), "{args:?}: {err}");
        }
        assert!(
            !data.exists(),
            "{name}: a refused config must not create the store"
        );
    }
}

// ---- 4. backpressure ----------------------------------------------------------------------------

#[test]
fn a_full_writer_queue_pauses_and_resumes_the_consumer_without_loss() {
    const N: usize = 1000;
    let cluster = cluster(1);
    let mut p = TestProducer::new(&cluster);
    let key = group_key("Backpressure", "ingest");
    let sent: Vec<Value> = (0..N)
        .map(|i| single("Backpressure", "ingest", &format!("node-{i:04}"), "major"))
        .collect();
    for a in &sent {
        p.send_json(&key, a);
    }
    p.flush();
    let expected: BTreeSet<String> = sent.iter().map(|a| fingerprint(&a["labels"])).collect();

    let d = kafka_daemon(
        &cluster.bootstrap_servers(),
        "backpressure",
        "max_batch = 200",
        "[server]\nqueue_capacity = 1\n",
    );
    wait_messages(&d, "ok", N);

    let pauses = d.metric("triaged_kafka_pauses_total", &[]);
    eprintln!("triaged_kafka_pauses_total = {pauses}");
    assert!(
        pauses > 0.0,
        "the consumer never paused with queue_capacity = 1"
    );
    let inc = only_incident_matching(&d, "Backpressure");
    let inc = d.incident(inc["id"].as_str().unwrap());
    assert_eq!(inc["alert_count"], N, "{}", inc["alert_count"]);
    let fps = fingerprints_of(&members(&inc));
    assert_eq!(fps.len(), N);
    let distinct: BTreeSet<String> = fps.into_iter().collect();
    assert_eq!(
        distinct, expected,
        "members differ from the alerts produced"
    );
    assert_eq!(kafka_messages(&d, "dead_letter"), 0.0);
}

// ---- 5. scale-out -------------------------------------------------------------------------------

/// The offsets `group` has committed on each partition of `alerts` (0 when none), read by a
/// consumer that does not join the group.
fn committed(cluster: &Cluster, group: &str, partitions: i32) -> Vec<i64> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", group)
        .create()
        .expect("create the offset probe");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    let got = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("fetch committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .collect()
}

/// The next offset of each partition after the delivered messages in `reports`.
fn ends(reports: &[(i32, i64)], partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| {
            reports
                .iter()
                .filter(|(part, _)| *part == p)
                .map(|(_, o)| o + 1)
                .max()
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn two_instances_in_one_group_split_the_partitions_and_the_alerts() {
    const GROUPS: usize = 16;
    let cluster = cluster(4);
    let brokers = cluster.bootstrap_servers();
    let mut p = TestProducer::new(&cluster);
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut produce_round = |p: &mut TestProducer, round: usize| {
        for g in 0..GROUPS {
            let (name, service) = (format!("Split{g:02}"), format!("svc-{g}"));
            let a = single(&name, &service, &format!("round-{round}"), "major");
            produced.insert(fingerprint(&a["labels"]));
            p.send_json(&group_key(&name, &service), &a);
        }
        p.flush()
    };

    // One instance first: it takes every partition and reads a first round, whose offsets the
    // auto-commit then commits (stored only once written).
    let a = kafka_daemon(&brokers, "split", "", "");
    poll_until_for("instance A assigned all 4 partitions", KAFKA_WAIT, || {
        let n = assigned(&a);
        if n == 4.0 {
            Ok(())
        } else {
            Err(n)
        }
    });
    let reports = produce_round(&mut p, 0);
    wait_messages(&a, "ok", GROUPS);
    let round0 = ends(&reports, 4);
    poll_until_for("the first round committed by A", KAFKA_WAIT, || {
        let c = committed(&cluster, "split", 4);
        if c == round0 {
            Ok(())
        } else {
            Err((c, round0.clone()))
        }
    });

    // A second instance joins: the partitions are split.
    let b = kafka_daemon(&brokers, "split", "", "");
    poll_until_for("partitions split between A and B", KAFKA_WAIT, || {
        let (na, nb) = (assigned(&a), assigned(&b));
        if na > 0.0 && nb > 0.0 && na + nb == 4.0 {
            Ok(())
        } else {
            Err((na, nb))
        }
    });
    let reports = produce_round(&mut p, 1);
    let partitions: BTreeSet<i32> = reports[GROUPS..].iter().map(|(part, _)| *part).collect();
    assert_eq!(
        partitions,
        (0..4).collect::<BTreeSet<i32>>(),
        "the keys of the second round should cover every partition"
    );
    assert_eq!(produced.len(), 2 * GROUPS);

    // Every partition got a second-round message, read after any replay of the first round on
    // it: once all alerts are in, replays (if any) are in too.
    let (on_a, on_b) = poll_until_for(
        "every alert on one instance or the other",
        KAFKA_WAIT,
        || {
            let on_a: BTreeSet<String> = fingerprints_of(&all_members(&a)).into_iter().collect();
            let on_b: BTreeSet<String> = fingerprints_of(&all_members(&b)).into_iter().collect();
            let union: BTreeSet<String> = on_a.union(&on_b).cloned().collect();
            if union == produced {
                Ok((on_a, on_b))
            } else {
                Err((on_a.len(), on_b.len(), union.len()))
            }
        },
    );
    let both: Vec<&String> = on_a.intersection(&on_b).collect();
    assert!(both.is_empty(), "alerts stored on both instances: {both:?}");
    assert!(!on_b.is_empty(), "instance B holds nothing");
    for fp in &produced {
        let hits = [&a, &b]
            .iter()
            .filter(|d| {
                let (status, body) = d.alert(fp);
                assert!(
                    status == 200 || status == 404,
                    "GET /api/v1/alerts/{fp}: {body}"
                );
                status == 200
            })
            .count();
        assert_eq!(hits, 1, "alert {fp} found on {hits} instances");
    }
    let total = kafka_messages(&a, "ok") + kafka_messages(&b, "ok");
    assert_eq!(
        total,
        (2 * GROUPS) as f64,
        "messages read more than once across the rebalance"
    );
    let (na, nb) = (assigned(&a), assigned(&b));
    assert!(
        na > 0.0 && nb > 0.0 && na + nb == 4.0,
        "assigned {na} + {nb}"
    );
    // Regression (QA F10): A kept exporting the lag of the partitions it had lost to B. Each
    // instance reports the lag of the partitions it holds, and together they cover all four.
    poll_until_for(
        "each instance's lag series are those of its partitions",
        KAFKA_WAIT,
        || {
            let (la, lb) = (lag_partitions(&a), lag_partitions(&b));
            let (na, nb) = (assigned(&a), assigned(&b));
            let disjoint = la.intersection(&lb).next().is_none();
            if la.len() as f64 == na
                && lb.len() as f64 == nb
                && disjoint
                && la.len() + lb.len() == 4
            {
                Ok(())
            } else {
                Err((la, lb, na, nb))
            }
        },
    );
}

/// The partitions of `alerts` that `d` exports `triaged_kafka_consumer_lag` for.
fn lag_partitions(d: &Daemon) -> BTreeSet<String> {
    parse_metrics(&d.metrics())
        .into_iter()
        .filter(|s| {
            s.name == "triaged_kafka_consumer_lag"
                && s.labels.get("topic").map(String::as_str) == Some(TOPIC)
        })
        .map(|s| s.labels["partition"].clone())
        .collect()
}

// ---- 6. readiness -------------------------------------------------------------------------------

#[test]
fn ready_is_503_without_a_broker_and_200_when_connected() {
    // A loopback port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().unwrap().to_string()
    };
    let down = kafka_daemon(&closed, "unreachable", "", "");
    assert_eq!(down.get("/-/healthy").status, 200);
    wait_until("the consumer reporting the broker unreachable", || {
        down.stderr_text()
            .contains("kafka client error")
            .then_some(())
    });
    let resp = down.get("/-/ready");
    assert_eq!(resp.status, 503, "{resp}");
    assert_eq!(down.metric("triaged_kafka_connected", &[]), 0.0);
    // Every series at zero before its first event (README, Metrics), so that `increase()`
    // counts the first message and the first rebalance.
    let text = down.metrics();
    for result in ["ok", "dead_letter"] {
        let labels = [("topic", TOPIC), ("result", result)];
        assert_eq!(
            metric_value(&text, "triaged_kafka_messages_total", &labels),
            Some(0.0),
            "{result}"
        );
    }
    for kind in ["assign", "revoke"] {
        let labels = [("kind", kind)];
        assert_eq!(
            metric_value(&text, "triaged_kafka_rebalances_total", &labels),
            Some(0.0),
            "{kind}"
        );
    }

    let cluster = cluster(1);
    let up = kafka_daemon(&cluster.bootstrap_servers(), "ready", "", "");
    poll_until_for("/-/ready 200 when connected", KAFKA_WAIT, || {
        let status = up.get("/-/ready").status;
        if status == 200 {
            Ok(())
        } else {
            Err(status)
        }
    });
    assert_eq!(up.metric("triaged_kafka_connected", &[]), 1.0);
    // Still not ready, the unreachable one.
    let resp = down.get("/-/ready");
    assert_eq!(resp.status, 503, "{resp}");

    // The broker goes away, then comes back.
    cluster.broker_down(1).expect("broker down");
    poll_until_for("/-/ready 503 once the broker is down", KAFKA_WAIT, || {
        let status = up.get("/-/ready").status;
        if status == 503 {
            Ok(())
        } else {
            Err(status)
        }
    });
    cluster.broker_up(1).expect("broker up");
    poll_until_for("/-/ready 200 once the broker is back", KAFKA_WAIT, || {
        let status = up.get("/-/ready").status;
        if status == 200 {
            Ok(())
        } else {
            Err(status)
        }
    });
}
