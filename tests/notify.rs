//! Notifications end to end: the real daemon delivers its outbox to webhook receivers run by the
//! test (a tiny HTTP/1.1 server on loopback that records every request) and to a Kafka topic on
//! librdkafka's mock cluster. Covers order and signatures, retries while the receiver is down,
//! delivery after `kill -9`, filters, the Slack template, the L0 automation hook and the Kafka
//! sink's keys and per-incident order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::receiver::{Received, Receiver};
use common::*;
use hmac::{Hmac, Mac};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use sha2::Sha256;

/// Deadline of waits that span retries with backoff, a restart or the Kafka mock cluster.
const LONG_WAIT: Duration = Duration::from_secs(60);
const AUTH: &str = "Bearer notify-test-token";
const SECRET: &str = "notify-test-hmac-secret";

// ---- config and helpers -------------------------------------------------------------------------

/// The files holding the webhook's Authorization header and HMAC secret (each with the trailing
/// newline `echo` leaves, which is not part of the value).
struct Secrets {
    _dir: tempfile::TempDir,
    auth: PathBuf,
    key: PathBuf,
}

fn secrets() -> Secrets {
    let dir = tempfile::Builder::new()
        .prefix("triaged-notify-")
        .tempdir()
        .expect("create tempdir");
    let auth = dir.path().join("hook.auth");
    let key = dir.path().join("hook.key");
    std::fs::write(&auth, format!("{AUTH}\n")).unwrap();
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    Secrets {
        _dir: dir,
        auth,
        key,
    }
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One `[[notify.webhook]]` table named `name` posting to `r`, with a short `max_backoff`;
/// `extra` is more keys of the table.
fn webhook(name: &str, r: &Receiver, extra: &str) -> String {
    format!(
        "[[notify.webhook]]\nname = {}\nurl = {}\nmax_backoff = \"1s\"\n{extra}\n",
        toml_str(name),
        toml_str(&r.url())
    )
}

/// A webhook that signs and authorizes with `s`.
fn signed_webhook(name: &str, r: &Receiver, s: &Secrets) -> String {
    webhook(
        name,
        r,
        &format!(
            "authorization_file = {}\nhmac_secret_file = {}",
            toml_str(&s.auth.display().to_string()),
            toml_str(&s.key.display().to_string())
        ),
    )
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fire one native alert (group `alertname`/`service`) and return the incident it opened.
fn open(d: &Daemon, alertname: &str, severity: &str) -> String {
    let resp = post_native(
        d,
        vec![native_alert(
            &[
                ("alertname", alertname),
                ("service", "notify"),
                ("severity", severity),
            ],
            "firing",
        )],
    );
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "one incident for {alertname}: {resp}");
    ids[0].clone()
}

/// POST an incident action and assert 200.
fn act(d: &Daemon, id: &str, action: &str, body: Value) {
    let resp = d.action(id, action, body.clone());
    assert_eq!(resp.status, 200, "POST {id}/{action} {body}: {resp}");
}

fn notifications(d: &Daemon, sink: &str, result: &str) -> f64 {
    d.metric(
        "triaged_notifications_total",
        &[("sink", sink), ("result", result)],
    )
}

fn pending(d: &Daemon, sink: &str) -> f64 {
    d.metric("triaged_outbox_pending", &[("sink", sink)])
}

fn wait_pending_zero(d: &Daemon, sink: &str) {
    poll_until_for(
        &format!("triaged_outbox_pending{{sink=\"{sink}\"}} back to 0"),
        LONG_WAIT,
        || match pending(d, sink) {
            0.0 => Ok(()),
            n => Err(n),
        },
    );
}

/// Every series of `sink` is exported at 0 from the start, before any event: Prometheus'
/// `increase()` counts even the first notification (and first failure) of a sink.
fn assert_series_at_zero_from_the_start(d: &Daemon, sink: &str) {
    let text = d.metrics();
    for result in ["ok", "error", "filtered"] {
        assert_eq!(
            metric_value(
                &text,
                "triaged_notifications_total",
                &[("sink", sink), ("result", result)]
            ),
            Some(0.0),
            "triaged_notifications_total{{sink=\"{sink}\",result=\"{result}\"}} at 0 from the start in\n{text}"
        );
    }
    assert_eq!(
        metric_value(&text, "triaged_outbox_pending", &[("sink", sink)]),
        Some(0.0),
        "triaged_outbox_pending{{sink=\"{sink}\"}} at 0 from the start in\n{text}"
    );
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `ids` with later repeats removed (at-least-once redeliveries), keeping the first occurrences'
/// order.
fn first_occurrences(ids: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .filter(|i| seen.insert((*i).clone()))
        .cloned()
        .collect()
}

/// Every delivery of one event_id carries the same seq, distinct event_ids distinct seqs, and
/// the first deliveries come in seq order.
fn assert_stable_seqs(events: &[Value]) {
    let mut seq_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut order = Vec::new();
    for e in events {
        let id = e["event_id"].as_str().unwrap().to_string();
        let seq = e["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {e}"));
        match seq_of.get(&id) {
            Some(s) => assert_eq!(*s, seq, "{id} redelivered with another seq: {e}"),
            None => {
                seq_of.insert(id, seq);
                order.push(seq);
            }
        }
    }
    let distinct: BTreeSet<u64> = seq_of.values().copied().collect();
    assert_eq!(
        distinct.len(),
        seq_of.len(),
        "two events share a seq: {seq_of:?}"
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of seq order: {order:?} ({seq_of:?})"
    );
}

// ---- webhook ------------------------------------------------------------------------------------

/// Leaving L4 ends the vendor handover: the incident no longer names the vendor (in the API, and
/// in the de-escalation's notification), while the handover's timeline entry and notification
/// still do; so after a restart, read back from the store.
#[test]
fn a_de_escalation_from_l4_clears_the_vendor_and_the_handover_keeps_it() {
    let r = Receiver::start();
    let mut d = Daemon::with(&webhook("noc", &r, ""));
    let id = open(&d, "VendorDisk", "warning");
    act(
        &d,
        &id,
        "escalate",
        json!({"actor": "alice", "to": "L3", "reason": "storage"}),
    );
    act(
        &d,
        &id,
        "escalate",
        json!({"actor": "bob", "to": "L4", "reason": "firmware", "vendor": "Acme", "vendor_ref": "CASE-42"}),
    );
    let resp = d.action(
        &id,
        "deescalate",
        json!({"actor": "carol", "to": "L1", "reason": "config issue, L1 runbook"}),
    );
    assert_eq!(resp.status, 200, "{resp}");
    let answered = resp.json();
    let check = |inc: &Value| {
        assert_eq!(inc["tier"], "L1", "{inc}");
        assert!(inc["vendor"].is_null(), "{inc}");
        assert!(inc["vendor_ref"].is_null(), "{inc}");
        let timeline = inc["timeline"].as_array().unwrap();
        let handover: Vec<&Value> = timeline
            .iter()
            .filter(|e| e["kind"] == "escalated" && e["to"] == "L4")
            .collect();
        assert_eq!(handover.len(), 1, "{inc}");
        assert_eq!(
            (&handover[0]["vendor"], &handover[0]["vendor_ref"]),
            (&json!("Acme"), &json!("CASE-42")),
            "{inc}"
        );
        let with_vendor = timeline
            .iter()
            .filter(|e| e.get("vendor").is_some())
            .count();
        assert_eq!(with_vendor, 1, "only the handover names the vendor: {inc}");
    };
    check(&answered);
    check(&d.incident(&id));

    let expected = ids(&[
        &format!("{id}:0"),
        &format!("{id}:1"),
        &format!("{id}:2"),
        &format!("{id}:3"),
    ]);
    r.wait_for_ids("the 4 events", LONG_WAIT, &expected);
    let events: BTreeMap<String, Value> = r
        .delivered()
        .iter()
        .map(|e| (e.event_id(), e.json()))
        .collect();
    let handover = &events[&format!("{id}:2")];
    assert_eq!(handover["incident"]["vendor"], "Acme", "{handover}");
    assert_eq!(handover["incident"]["vendor_ref"], "CASE-42", "{handover}");
    let back = &events[&format!("{id}:3")];
    assert_eq!(back["kind"], "de_escalated", "{back}");
    assert!(back["incident"]["vendor"].is_null(), "{back}");
    assert!(back["incident"]["vendor_ref"].is_null(), "{back}");

    d.kill9();
    d.restart();
    check(&d.incident(&id));
    assert_eq!(d.terminate().code(), Some(0));
    d.restart();
    check(&d.incident(&id));
}

#[test]
fn a_receiver_gets_every_event_in_order_signed_and_authorized() {
    let r = Receiver::start();
    let s = secrets();
    let d = Daemon::with(&signed_webhook("noc", &r, &s));
    assert_series_at_zero_from_the_start(&d, "webhook:noc");

    let id = open(&d, "DiskFull", "warning");
    assert_eq!(id, "INC-1");
    act(&d, &id, "ack", json!({"actor": "alice"}));
    act(
        &d,
        &id,
        "escalate",
        json!({"actor": "alice", "reason": "needs the database team"}),
    );
    act(
        &d,
        &id,
        "resolve",
        json!({"actor": "bob", "note": "disk grown"}),
    );

    let expected = ids(&["INC-1:0", "INC-1:1", "INC-1:2", "INC-1:3"]);
    r.wait_for_ids("the 4 events of INC-1", LONG_WAIT, &expected);
    poll_until("4 ok notifications counted", || {
        match notifications(&d, "webhook:noc", "ok") {
            n if n >= 4.0 => Ok(()),
            n => Err(n),
        }
    });
    wait_pending_zero(&d, "webhook:noc");

    let delivered = r.delivered();
    let all = r.all();
    assert_eq!(
        all.len(),
        delivered.len(),
        "the receiver never failed, yet some requests were not answered 200"
    );
    assert_eq!(
        notifications(&d, "webhook:noc", "ok"),
        delivered.len() as f64,
        "ok notifications vs requests the receiver answered 200"
    );
    assert_eq!(notifications(&d, "webhook:noc", "error"), 0.0);

    let ids_seen: Vec<String> = delivered.iter().map(Received::event_id).collect();
    assert_eq!(
        first_occurrences(&ids_seen),
        ["INC-1:0", "INC-1:1", "INC-1:2", "INC-1:3"],
        "delivery order"
    );
    let bodies: Vec<Value> = delivered.iter().map(Received::json).collect();
    assert_stable_seqs(&bodies);

    for req in &delivered {
        let body = req.json();
        assert_eq!(req.method, "POST", "{req:?}");
        assert_eq!(req.path, "/hook", "{req:?}");
        assert_eq!(
            req.header("X-Triaged-Event-Id"),
            body["event_id"].as_str(),
            "X-Triaged-Event-Id vs the body: {body}"
        );
        assert_eq!(
            req.header("Authorization"),
            Some(AUTH),
            "Authorization (the file's content, newline trimmed)"
        );
        let expected_sig = format!("sha256={}", hmac_hex(&req.body));
        assert_eq!(
            req.header("X-Triaged-Signature"),
            Some(expected_sig.as_str()),
            "signature of {body}"
        );
        assert!(
            req.header("Content-Type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{req:?}"
        );
        assert_eq!(body["version"], 1, "{body}");
        assert_eq!(body["incident"]["id"], "INC-1", "{body}");
        assert!(
            body["incident"].get("timeline").is_none(),
            "the incident in an event has no timeline: {body}"
        );
        assert!(
            body["alert"].is_null() && body["runbook"].is_null(),
            "{body}"
        );
        parse_time(&body["at"]);
    }

    let by_id: BTreeMap<String, Value> = bodies
        .iter()
        .map(|b| (b["event_id"].as_str().unwrap().to_string(), b.clone()))
        .collect();
    let kinds: Vec<&str> = ["INC-1:0", "INC-1:1", "INC-1:2", "INC-1:3"]
        .iter()
        .map(|i| by_id[*i]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "acknowledged", "escalated", "resolved"]);

    let opened = &by_id["INC-1:0"];
    assert_eq!(opened["actor"], "triaged", "{opened}");
    assert_eq!(opened["incident"]["tier"], "L1", "{opened}");
    assert_eq!(opened["incident"]["state"], "open", "{opened}");
    let acked = &by_id["INC-1:1"];
    assert_eq!(acked["actor"], "alice", "{acked}");
    assert_eq!(acked["incident"]["state"], "acknowledged", "{acked}");
    let escalated = &by_id["INC-1:2"];
    assert_eq!(escalated["actor"], "alice", "{escalated}");
    assert_eq!(
        escalated["reason"], "needs the database team",
        "{escalated}"
    );
    assert_eq!(escalated["from"], "L1", "{escalated}");
    assert_eq!(escalated["to"], "L2", "{escalated}");
    assert_eq!(escalated["incident"]["tier"], "L2", "{escalated}");
    let resolved = &by_id["INC-1:3"];
    assert_eq!(resolved["actor"], "bob", "{resolved}");
    assert_eq!(resolved["reason"], "disk grown", "{resolved}");
    assert_eq!(resolved["incident"]["state"], "resolved", "{resolved}");
}

#[test]
fn a_receiver_that_is_down_gets_everything_once_it_is_back() {
    let r = Receiver::start();
    r.set_up(false);
    let s = secrets();
    let d = Daemon::with(&signed_webhook("flaky", &r, &s));

    let a = open(&d, "QueueBacklog", "warning");
    act(&d, &a, "ack", json!({"actor": "alice"}));
    let b = open(&d, "CertExpiry", "major");
    act(&d, &a, "resolve", json!({"actor": "alice"}));
    act(
        &d,
        &b,
        "escalate",
        json!({"actor": "bob", "reason": "customer facing"}),
    );

    poll_until_for("retries while the receiver is down", LONG_WAIT, || {
        let errors = notifications(&d, "webhook:flaky", "error");
        let backlog = pending(&d, "webhook:flaky");
        // All five events are committed and none delivered: the backlog shows all five
        // while the first is being retried (regression: it used to freeze at 1).
        if errors >= 3.0 && backlog >= 5.0 {
            Ok(())
        } else {
            Err(format!("errors {errors}, pending {backlog}"))
        }
    });
    assert!(
        r.delivered().is_empty(),
        "delivered while down: {:?}",
        r.all()
    );
    assert_eq!(notifications(&d, "webhook:flaky", "ok"), 0.0);
    // The sink holds back at the first event: it retries that one, in order.
    let tried: BTreeSet<String> = r.all().iter().map(Received::event_id).collect();
    assert_eq!(
        tried,
        ids(&[format!("{a}:0").as_str()]),
        "only the first event is retried while it fails"
    );

    r.set_up(true);
    let expected: BTreeSet<String> = [
        format!("{a}:0"),
        format!("{a}:1"),
        format!("{b}:0"),
        format!("{a}:2"),
        format!("{b}:1"),
    ]
    .into_iter()
    .collect();
    r.wait_for_ids(
        "every event after the receiver came back",
        LONG_WAIT,
        &expected,
    );
    wait_pending_zero(&d, "webhook:flaky");

    let delivered_ids = r.delivered_ids();
    let got: BTreeSet<String> = delivered_ids.iter().cloned().collect();
    assert_eq!(got, expected, "delivered event_ids (as a set)");
    assert_eq!(
        first_occurrences(&delivered_ids),
        [
            format!("{a}:0"),
            format!("{a}:1"),
            format!("{b}:0"),
            format!("{a}:2"),
            format!("{b}:1"),
        ],
        "delivery order"
    );
    let bodies: Vec<Value> = r.delivered().iter().map(Received::json).collect();
    assert_stable_seqs(&bodies);
    for req in r.all() {
        assert_eq!(
            req.header("X-Triaged-Signature"),
            Some(format!("sha256={}", hmac_hex(&req.body)).as_str()),
            "signature, retries included"
        );
    }
    assert!(notifications(&d, "webhook:flaky", "error") >= 3.0);
    assert!(notifications(&d, "webhook:flaky", "ok") >= 5.0);
}

#[test]
fn undelivered_events_survive_kill9_and_are_delivered_after_restart() {
    let r = Receiver::start();
    r.set_up(false);
    let s = secrets();
    let mut d = Daemon::with(&signed_webhook("durable", &r, &s));

    let a = open(&d, "PaymentsDown", "critical");
    act(&d, &a, "ack", json!({"actor": "alice"}));
    let b = open(&d, "LatencyHigh", "warning");
    poll_until_for(
        "a failed delivery before the kill",
        LONG_WAIT,
        || match notifications(&d, "webhook:durable", "error") {
            n if n >= 1.0 => Ok(()),
            n => Err(n),
        },
    );
    assert!(r.delivered().is_empty());

    d.kill9();
    r.set_up(true);
    d.restart();

    let before: BTreeSet<String> = [format!("{a}:0"), format!("{a}:1"), format!("{b}:0")]
        .into_iter()
        .collect();
    r.wait_for_ids("the events from before the kill", LONG_WAIT, &before);

    // The outbox goes on after the restart: new events get new seqs.
    act(&d, &a, "resolve", json!({"actor": "alice"}));
    let mut expected = before.clone();
    expected.insert(format!("{a}:2"));
    r.wait_for_ids("the event from after the restart", LONG_WAIT, &expected);
    wait_pending_zero(&d, "webhook:durable");

    let delivered_ids = r.delivered_ids();
    let got: BTreeSet<String> = delivered_ids.iter().cloned().collect();
    assert_eq!(got, expected, "delivered event_ids (as a set)");
    assert_eq!(
        first_occurrences(&delivered_ids),
        [
            format!("{a}:0"),
            format!("{a}:1"),
            format!("{b}:0"),
            format!("{a}:2"),
        ],
        "delivery order"
    );
    let bodies: Vec<Value> = r.delivered().iter().map(Received::json).collect();
    assert_stable_seqs(&bodies);
    for req in r.delivered() {
        assert_eq!(
            req.header("X-Triaged-Signature"),
            Some(format!("sha256={}", hmac_hex(&req.body)).as_str())
        );
    }
}

#[test]
fn filters_keep_out_what_a_sink_does_not_take() {
    let l3 = Receiver::start();
    let opened = Receiver::start();
    let d = Daemon::with(&format!(
        "{}\n{}",
        webhook("l3", &l3, "tiers = [\"L3\"]"),
        webhook("opened", &opened, "kinds = [\"opened\"]")
    ));
    assert_series_at_zero_from_the_start(&d, "webhook:l3");
    assert_series_at_zero_from_the_start(&d, "webhook:opened");

    let warn = open(&d, "SwapUsage", "warning");
    let crit = open(&d, "DatabaseDown", "critical");
    assert_eq!(d.incident(&warn)["tier"], "L1");
    assert_eq!(d.incident(&crit)["tier"], "L3");
    for id in [&warn, &crit] {
        act(&d, id, "ack", json!({"actor": "alice"}));
        act(&d, id, "resolve", json!({"actor": "alice"}));
    }

    // 6 events in all; a sink has passed them all once ok + filtered reaches 6.
    for (sink, ok, filtered) in [("webhook:l3", 3.0, 3.0), ("webhook:opened", 2.0, 4.0)] {
        poll_until_for(&format!("{sink} passed all 6 events"), LONG_WAIT, || {
            let o = notifications(&d, sink, "ok");
            let f = notifications(&d, sink, "filtered");
            if o + f >= 6.0 {
                Ok(())
            } else {
                Err(format!("ok {o}, filtered {f}"))
            }
        });
        assert_eq!(notifications(&d, sink, "ok"), ok, "{sink} ok");
        assert_eq!(
            notifications(&d, sink, "filtered"),
            filtered,
            "{sink} filtered"
        );
        wait_pending_zero(&d, sink);
    }

    let got_l3: BTreeSet<String> = l3.delivered_ids().into_iter().collect();
    assert_eq!(
        got_l3,
        [
            format!("{crit}:0"),
            format!("{crit}:1"),
            format!("{crit}:2")
        ]
        .into_iter()
        .collect::<BTreeSet<_>>(),
        "tiers = [\"L3\"] takes only the L3 incident's events"
    );
    for req in l3.delivered() {
        assert_eq!(req.json()["incident"]["tier"], "L3", "{}", req.json());
    }

    let got_opened: BTreeSet<String> = opened.delivered_ids().into_iter().collect();
    assert_eq!(
        got_opened,
        [format!("{warn}:0"), format!("{crit}:0")]
            .into_iter()
            .collect::<BTreeSet<_>>(),
        "kinds = [\"opened\"] takes only opened events"
    );
    for req in opened.delivered() {
        assert_eq!(req.json()["kind"], "opened", "{}", req.json());
        assert!(req.header("Authorization").is_none());
        assert!(req.header("X-Triaged-Signature").is_none());
    }
}

#[test]
fn the_slack_template_posts_text_naming_the_incident() {
    let r = Receiver::start();
    let d = Daemon::with(&webhook("chat", &r, "template = \"slack\""));

    let id = open(&d, "BackupFailed", "major");
    act(&d, &id, "ack", json!({"actor": "alice"}));

    poll_until_for("2 slack messages", LONG_WAIT, || {
        match r.delivered().len() {
            n if n >= 2 => Ok(()),
            n => Err(n),
        }
    });
    let delivered = r.delivered();
    let ids_seen: Vec<String> = delivered
        .iter()
        .map(|r| r.header("X-Triaged-Event-Id").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        first_occurrences(&ids_seen),
        [format!("{id}:0"), format!("{id}:1")],
        "X-Triaged-Event-Id of the slack messages"
    );
    for (req, kind) in delivered.iter().zip(["opened", "acknowledged"]) {
        let body = req.json();
        let obj = body
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {body}"));
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            ["text"],
            "a Slack body is {{\"text\": ...}}: {body}"
        );
        let text = body["text"].as_str().unwrap();
        assert!(text.contains(&id), "text names {id}: {text:?}");
        assert!(text.contains(kind), "text names {kind}: {text:?}");
        assert!(text.contains("[L2]"), "text names the tier: {text:?}");
        assert!(
            text.contains("BackupFailed"),
            "text names the group: {text:?}"
        );
    }
}

#[test]
fn an_l0_alert_with_a_runbook_becomes_an_auto_handled_event() {
    let r = Receiver::start();
    let d = Daemon::with(&webhook("automation", &r, ""));
    let runbook = "https://runbooks.example/cache-warm";
    let l = labels(&[
        ("alertname", "CacheCold"),
        ("service", "edge"),
        ("severity", "info"),
    ]);
    let resp = post_native(
        &d,
        vec![json!({
            "labels": l,
            "annotations": {"runbook_url": runbook, "summary": "cache is cold"},
            "status": "firing"
        })],
    );
    assert_eq!(resp["auto_handled"], 1, "{resp}");
    assert!(
        touched(&resp).is_empty(),
        "an L0 alert opened an incident: {resp}"
    );

    let fp = fingerprint(&l);
    let expected = ids(&[format!("alert:{fp}:1").as_str()]);
    r.wait_for_ids("the auto_handled event", LONG_WAIT, &expected);
    wait_pending_zero(&d, "webhook:automation");
    let delivered = r.delivered();
    assert_eq!(
        delivered
            .iter()
            .map(Received::event_id)
            .collect::<BTreeSet<_>>(),
        expected
    );
    let event = delivered[0].json();
    assert_eq!(event["kind"], "auto_handled", "{event}");
    assert_eq!(event["runbook"], runbook, "{event}");
    assert_eq!(event["to"], "L0", "{event}");
    assert!(event["incident"].is_null(), "{event}");
    assert_eq!(event["alert"]["fingerprint"], fp.as_str(), "{event}");
    assert_eq!(
        event["alert"]["labels"]["alertname"], "CacheCold",
        "{event}"
    );
    assert_eq!(event["alert"]["tier"], "L0", "{event}");
    assert_eq!(
        delivered[0].header("X-Triaged-Event-Id"),
        Some(format!("alert:{fp}:1").as_str())
    );
}

#[test]
fn a_reload_leaves_the_sinks_as_they_are_until_the_next_restart() {
    let a = Receiver::start();
    let b = Receiver::start();
    let mut d = Daemon::with(&webhook("a", &a, ""));

    // Sink a replaced by sink b: taken, but only at the next restart, and the answer says so.
    std::fs::write(d.dir().join("triaged.toml"), config(&webhook("b", &b, ""))).unwrap();
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(
        answer.json()["restart_required"],
        json!(["notify"]),
        "{answer}"
    );
    let id = open(&d, "SinksReloaded", "warning");
    let opened = ids(&[format!("{id}:0").as_str()]);
    a.wait_for_ids(
        "the event, delivered by the running sink",
        LONG_WAIT,
        &opened,
    );
    wait_pending_zero(&d, "webhook:a");
    assert!(
        b.all().is_empty(),
        "sink b ran before a restart: {:?}",
        b.all()
    );

    assert!(d.terminate().success());
    d.restart();
    act(&d, &id, "ack", json!({"actor": "alice"}));
    let acked = ids(&[format!("{id}:1").as_str()]);
    b.wait_for_ids("the event after the restart, by sink b", LONG_WAIT, &acked);
    wait_pending_zero(&d, "webhook:b");
    assert_eq!(
        b.delivered_ids().into_iter().collect::<BTreeSet<_>>(),
        acked,
        "sink b starts after what sink a passed"
    );
    assert_eq!(
        a.delivered_ids().into_iter().collect::<BTreeSet<_>>(),
        opened,
        "sink a is gone after the restart"
    );
}

// ---- kafka --------------------------------------------------------------------------------------

const EVENTS_TOPIC: &str = "incident-events";

#[test]
fn the_kafka_sink_keys_events_by_incident_in_order() {
    let cluster = MockCluster::new(1).expect("start the mock Kafka cluster");
    cluster
        .create_topic(EVENTS_TOPIC, 3, 1)
        .expect("create the events topic");
    let brokers = cluster.bootstrap_servers();
    let d = Daemon::with(&format!(
        "[notify.kafka]\ntopic = {}\nbrokers = {}\n",
        toml_str(EVENTS_TOPIC),
        toml_str(&brokers)
    ));
    assert_series_at_zero_from_the_start(&d, "kafka");

    let names = ["KafkaLag", "NodeDown", "ApiErrors", "TlsExpiry"];
    let severities = ["warning", "critical", "major", "warning"];
    let incidents: Vec<String> = names
        .iter()
        .zip(severities)
        .map(|(n, s)| open(&d, n, s))
        .collect();
    let mut expected: BTreeSet<String> = incidents.iter().map(|i| format!("{i}:0")).collect();
    for (n, id) in incidents.iter().enumerate() {
        act(&d, id, "ack", json!({"actor": "alice"}));
        expected.insert(format!("{id}:1"));
        if n % 2 == 0 {
            act(
                &d,
                id,
                "escalate",
                json!({"actor": "alice", "reason": "not ours"}),
            );
            expected.insert(format!("{id}:2"));
            act(&d, id, "resolve", json!({"actor": "bob"}));
            expected.insert(format!("{id}:3"));
        } else {
            act(&d, id, "resolve", json!({"actor": "bob"}));
            expected.insert(format!("{id}:2"));
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("notify-test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create the test consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(EVENTS_TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign the events topic");

    // (partition, key, event) in consumption order.
    let mut messages: Vec<(i32, String, Value)> = Vec::new();
    let deadline = Instant::now() + LONG_WAIT;
    loop {
        let seen: BTreeSet<String> = messages
            .iter()
            .map(|(_, _, e)| e["event_id"].as_str().unwrap_or("").to_string())
            .collect();
        if expected.is_subset(&seen) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading {EVENTS_TOPIC}: missing {:?}; read {seen:?}",
            expected.difference(&seen).collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => eprintln!("consumer: {e}"),
            Some(Ok(m)) => {
                let key = String::from_utf8(m.key().expect("a keyed event").to_vec()).unwrap();
                let event: Value = serde_json::from_slice(m.payload().expect("a payload"))
                    .unwrap_or_else(|e| panic!("the event on {EVENTS_TOPIC} is not JSON: {e}"));
                messages.push((m.partition(), key, event));
            }
        }
    }
    wait_pending_zero(&d, "kafka");
    assert!(notifications(&d, "kafka", "ok") >= expected.len() as f64);

    let seen: BTreeSet<String> = messages
        .iter()
        .map(|(_, _, e)| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected, "event_ids on {EVENTS_TOPIC}");

    let mut per_key: BTreeMap<String, Vec<(i32, Value)>> = BTreeMap::new();
    for (partition, key, event) in &messages {
        assert_eq!(
            event["incident"]["id"].as_str(),
            Some(key.as_str()),
            "the key is the incident id: {event}"
        );
        per_key
            .entry(key.clone())
            .or_default()
            .push((*partition, event.clone()));
    }
    assert_eq!(
        per_key.keys().cloned().collect::<BTreeSet<_>>(),
        incidents.iter().cloned().collect::<BTreeSet<_>>()
    );
    for (key, events) in &per_key {
        let partitions: BTreeSet<i32> = events.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            partitions.len(),
            1,
            "{key} spread over partitions {partitions:?}"
        );
        let bodies: Vec<Value> = events.iter().map(|(_, e)| e.clone()).collect();
        assert_stable_seqs(&bodies);
        let order: Vec<String> = first_occurrences(
            &bodies
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
        let want: Vec<String> = (0..order.len()).map(|i| format!("{key}:{i}")).collect();
        assert_eq!(order, want, "{key}: events in timeline order");
        let kinds: Vec<&str> = order
            .iter()
            .map(|id| {
                bodies
                    .iter()
                    .find(|e| e["event_id"] == id.as_str())
                    .and_then(|e| e["kind"].as_str())
                    .unwrap()
            })
            .collect();
        assert_eq!(kinds.first(), Some(&"opened"), "{key}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"resolved"), "{key}: {kinds:?}");
    }
}

/// Regression (QA F5): with its broker down, the Kafka sink showed `outbox_pending` frozen at 1
/// and no `result="error"` for up to 5 minutes: one attempt waited librdkafka's default
/// `message.timeout.ms`. An attempt is bounded by the sink's `timeout`: errors are counted, the
/// backlog grows, librdkafka's own complaints are said once (then every 30 s), and everything
/// is delivered once the broker is back.
#[test]
fn a_kafka_sink_whose_broker_is_down_counts_errors_and_shows_its_backlog() {
    let cluster = MockCluster::new(1).expect("start the mock Kafka cluster");
    cluster
        .create_topic(EVENTS_TOPIC, 1, 1)
        .expect("create the events topic");
    let d = Daemon::with(&format!(
        "[notify.kafka]\ntopic = {}\nbrokers = {}\ntimeout = \"1s\"\n",
        toml_str(EVENTS_TOPIC),
        toml_str(&cluster.bootstrap_servers())
    ));
    open(&d, "SinkFirst", "warning");
    wait_pending_zero(&d, "kafka");
    assert_eq!(notifications(&d, "kafka", "ok"), 1.0);

    cluster.broker_down(1).expect("broker down");
    for i in 0..3 {
        open(&d, &format!("SinkDown{i}"), "warning");
    }
    poll_until_for(
        "errors counted and the backlog shown while the broker is down",
        Duration::from_secs(20),
        || {
            let (errors, pending) = (notifications(&d, "kafka", "error"), pending(&d, "kafka"));
            if errors >= 2.0 && pending == 3.0 {
                Ok(())
            } else {
                Err((errors, pending))
            }
        },
    );
    // One more while down: the backlog follows, attempt or not under way.
    open(&d, "SinkDownLast", "warning");
    poll_until_for(
        "the backlog grown to 4",
        Duration::from_secs(10),
        || match pending(&d, "kafka") {
            4.0 => Ok(()),
            n => Err(n),
        },
    );

    cluster.broker_up(1).expect("broker up");
    wait_pending_zero(&d, "kafka");
    assert!(notifications(&d, "kafka", "ok") >= 5.0);
    let log = d.stderr_text();
    let complaints = log
        .lines()
        .filter(|l| l.contains("Global error") || l.contains("kafka sink client error"))
        .count();
    assert!(
        complaints <= 6,
        "{complaints} lines of librdkafka errors while the broker was down:\n{log}"
    );
    eprintln!("{complaints} lines of librdkafka errors while the broker was down");
}
