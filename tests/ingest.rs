//! Every wire format, captured from the real senders, opens (and closes) the expected incident;
//! alert storms collapse into one incident; repeats are deduplicated.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{json, Value};

fn severity_rank(s: &str) -> u8 {
    match s {
        "info" => 0,
        "warning" => 1,
        "minor" => 2,
        "major" => 3,
        "critical" => 4,
        other => panic!("unexpected severity {other:?}"),
    }
}

/// Default tier of each severity.
fn default_tier(severity: &str) -> &'static str {
    match severity {
        "critical" => "L3",
        "major" => "L2",
        "minor" | "warning" => "L1",
        "info" => "L0",
        other => panic!("unexpected severity {other:?}"),
    }
}

/// Severity from labels as the default config reads it: `severity`, then `priority`, the five
/// names, default warning.
fn severity_of(labels: &Value) -> String {
    let v = labels
        .get("severity")
        .or_else(|| labels.get("priority"))
        .and_then(Value::as_str)
        .unwrap_or("warning")
        .to_ascii_lowercase();
    match v.as_str() {
        "critical" | "major" | "minor" | "warning" | "info" => v,
        _ => "warning".to_string(),
    }
}

/// PagerDuty severities map onto triaged's.
fn pagerduty_severity(s: &str) -> &'static str {
    match s {
        "critical" => "critical",
        "error" => "major",
        "warning" => "warning",
        "info" => "info",
        other => panic!("fixture has unexpected PagerDuty severity {other:?}"),
    }
}

fn members(inc: &Value) -> &Vec<Value> {
    inc["members"]
        .as_array()
        .unwrap_or_else(|| panic!("incident has no members array: {inc}"))
}

fn member_fingerprints(inc: &Value) -> BTreeSet<String> {
    members(inc)
        .iter()
        .map(|m| m["fingerprint"].as_str().expect("fingerprint").to_string())
        .collect()
}

#[test]
fn harness_fingerprint_equals_alertmanagers() {
    // Self-check of the test helper against the fingerprints Alertmanager computed itself.
    let fx = fixture_json("alertmanager-0.25-webhook-100-alerts.json");
    let alerts = fx["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 100);
    for a in alerts {
        assert_eq!(
            fingerprint(&a["labels"]),
            a["fingerprint"].as_str().unwrap()
        );
    }
}

#[test]
fn prometheus_fixture_as_captured_arrives_resolved_and_opens_nothing() {
    let d = Daemon::with("");
    // Its endsAt lies in the past by now: the alert has already ended.
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", fixture("prometheus-2.42-firing.json")));
    assert_eq!(resp["received"], 1, "{resp}");
    let open = d.all_incidents("state=open");
    assert!(open.is_empty(), "an ended alert opened incidents: {open:?}");
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L3")]), 0.0);
    // Recorded at the tier a critical alert has (L3), not as auto-handled (L0), and not counted
    // as auto-handled either.
    let labels = fixture_json("prometheus-2.42-firing.json")[0]["labels"].clone();
    let (status, a) = d.alert(&fingerprint(&labels));
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (&a["status"], &a["severity"], &a["tier"], &a["incident"]),
        (
            &json!("resolved"),
            &json!("critical"),
            &json!("L3"),
            &Value::Null
        ),
        "{a}"
    );
    assert_eq!(d.metric("triaged_alerts_auto_handled_total", &[]), 0.0);
}

#[test]
fn prometheus_firing_opens_l3_critical_then_resolved_fixture_resolves_it() {
    let d = Daemon::with("");
    let mut firing = fixture_json("prometheus-2.42-firing.json");
    firing[0]["endsAt"] = json!(rfc3339_in(300.0));
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", &firing));
    assert_eq!(resp["received"], 1, "{resp}");
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "one incident expected: {resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["id"], ids[0].as_str());
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert_eq!(inc["severity"], "critical", "{inc}");
    assert_eq!(
        inc["group_key"], "alertname=\"CaptureDiskFull\",service=\"storage\"",
        "{inc}"
    );
    assert_eq!(inc["alert_count"], 1, "{inc}");
    assert_eq!(inc["firing_count"], 1, "{inc}");
    assert_eq!(inc["labels"]["alertname"], "CaptureDiskFull", "{inc}");
    assert_eq!(inc["labels"]["service"], "storage", "{inc}");
    assert!(inc["resolved_at"].is_null(), "{inc}");
    parse_time(&inc["opened_at"]);
    let m = &members(&inc)[0];
    assert_eq!(m["fingerprint"], fingerprint(&firing[0]["labels"]).as_str());
    assert_eq!(m["source"], "alertmanager");
    assert_eq!(m["status"], "firing");
    assert_eq!(m["severity"], "critical");
    assert_eq!(
        m["annotations"]["runbook_url"],
        "https://runbooks.example/disk"
    );
    assert_eq!(m["incident"], ids[0].as_str());
    assert_eq!(
        d.metric(
            "triaged_incidents_opened_total",
            &[("tier", "L3"), ("severity", "critical")]
        ),
        1.0
    );
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L3")]), 1.0);
    assert_eq!(
        d.metric(
            "triaged_alerts_received_total",
            &[("source", "alertmanager")]
        ),
        1.0
    );

    let resp = ingest_ok(&d.post_json("/api/v2/alerts", fixture("prometheus-2.42-resolved.json")));
    assert!(touched(&resp).contains(&ids[0]), "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(inc["firing_count"], 0, "{inc}");
    parse_time(&inc["resolved_at"]);
    assert_eq!(members(&inc)[0]["status"], "resolved", "{inc}");
    assert!(!members(&inc)[0]["ends_at"].is_null(), "{inc}");
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L3")]), 0.0);
    assert!(d.all_incidents("state=open").is_empty());
}

#[test]
fn amtool_alert_add_opens_l1_warning() {
    let d = Daemon::with("");
    let fx = fixture_json("amtool-0.25-alert-add.json");
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", fixture("amtool-0.25-alert-add.json")));
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L1", "{inc}");
    assert_eq!(inc["severity"], "warning", "{inc}");
    assert_eq!(
        inc["group_key"], "alertname=\"CaptureAmtool\",service=\"web\"",
        "{inc}"
    );
    let m = &members(&inc)[0];
    assert_eq!(m["fingerprint"], fingerprint(&fx[0]["labels"]).as_str());
    assert_eq!(m["status"], "firing");
    // Zero startsAt means "now", not year 1.
    let starts = parse_time(&m["starts_at"]);
    assert!(
        starts.timestamp() > 1_000_000_000,
        "zero startsAt taken literally: {m}"
    );
    // Zero endsAt means not given.
    assert!(m["ends_at"].is_null(), "zero endsAt taken literally: {m}");
}

/// Grafana's webhook contact point (payload version "1", pointed at the Alertmanager webhook
/// URL as the README says): both alerts are taken, the firing one opens an incident, the
/// resolved one (never seen firing) opens nothing.
#[test]
fn a_grafana_webhook_opens_an_incident_for_its_firing_alert() {
    let d = Daemon::with("");
    let resp = ingest_ok(&d.post_json(
        "/api/v1/webhook/alertmanager",
        fixture("grafana-11-webhook-firing.json"),
    ));
    assert_eq!(resp["received"], 2, "{resp}");
    assert_eq!(resp["accepted"], 2, "{resp}");
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(
        (inc["tier"].as_str(), inc["state"].as_str()),
        (Some("L2"), Some("open")),
        "{inc}"
    );
    let members = inc["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{inc}");
    assert_eq!(members[0]["labels"]["instance"], "db-1", "{inc}");
}

#[test]
fn alertmanager_webhook_opens_one_l2_incident_with_both_members_then_resolves() {
    let d = Daemon::with("");
    let fx = fixture_json("alertmanager-0.25-webhook-firing.json");
    let expected_fps: BTreeSet<String> = fx["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected_fps.len(), 2);

    let resp = ingest_ok(&d.post_json(
        "/api/v1/webhook/alertmanager",
        fixture("alertmanager-0.25-webhook-firing.json"),
    ));
    assert_eq!(resp["received"], 2, "{resp}");
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let all = d.all_incidents("");
    assert_eq!(all.len(), 1, "{all:?}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert_eq!(inc["severity"], "major", "{inc}");
    assert_eq!(
        inc["group_key"], "alertname=\"CaptureProbeFailure\",service=\"edge\"",
        "{inc}"
    );
    assert_eq!(inc["alert_count"], 2, "{inc}");
    assert_eq!(inc["firing_count"], 2, "{inc}");
    assert_eq!(member_fingerprints(&inc), expected_fps, "{inc}");
    for m in members(&inc) {
        assert_eq!(m["source"], "webhook", "{m}");
        assert_eq!(m["status"], "firing", "{m}");
        assert!(m["ends_at"].is_null(), "zero endsAt taken literally: {m}");
    }
    for fp in &expected_fps {
        let (status, a) = d.alert(fp);
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["fingerprint"], fp.as_str());
        assert_eq!(a["incident"], ids[0].as_str());
    }

    let resp = ingest_ok(&d.post_json(
        "/api/v1/webhook/alertmanager",
        fixture("alertmanager-0.25-webhook-resolved.json"),
    ));
    assert_eq!(touched(&resp), ids, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(inc["firing_count"], 0, "{inc}");
    assert_eq!(inc["alert_count"], 2, "{inc}");
    let resolved_at = parse_time(&inc["resolved_at"]);
    assert!(resolved_at >= parse_time(&inc["opened_at"]), "{inc}");
    for m in members(&inc) {
        assert_eq!(m["status"], "resolved", "{m}");
    }
    // Resolved by itself, at the tier that opened it.
    assert_eq!(
        d.metric("triaged_incidents_auto_resolved_total", &[("tier", "L2")]),
        1.0
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_resolved_total",
            &[("tier", "L2"), ("by", "first_contact")]
        ),
        1.0
    );
}

#[test]
fn webhook_with_100_alerts_opens_one_incident_per_group_at_the_worst_severity() {
    let d = Daemon::with("");
    let fx = fixture_json("alertmanager-0.25-webhook-100-alerts.json");
    let alerts = fx["alerts"].as_array().unwrap();

    // Expected: per (alertname, service) group, the most severe member decides the tier;
    // info-only groups open nothing.
    let mut worst: BTreeMap<String, String> = BTreeMap::new();
    for a in alerts {
        let l = &a["labels"];
        let key = format!(
            "alertname=\"{}\",service=\"{}\"",
            l["alertname"].as_str().unwrap(),
            l["service"].as_str().unwrap_or("")
        );
        let sev = severity_of(l);
        let e = worst.entry(key).or_insert_with(|| sev.clone());
        if severity_rank(&sev) > severity_rank(e) {
            *e = sev;
        }
    }
    let expected: BTreeSet<(String, String, String)> = worst
        .into_iter()
        .filter(|(_, sev)| sev != "info")
        .map(|(k, sev)| (k, default_tier(&sev).to_string(), sev))
        .collect();
    assert!(!expected.is_empty());

    let resp = ingest_ok(&d.post_json(
        "/api/v1/webhook/alertmanager",
        fixture("alertmanager-0.25-webhook-100-alerts.json"),
    ));
    assert_eq!(resp["received"], 100, "{resp}");

    let got: BTreeSet<(String, String, String)> = d
        .all_incidents("")
        .iter()
        .map(|i| {
            assert_eq!(i["state"], "open", "{i}");
            (
                i["group_key"].as_str().unwrap().to_string(),
                i["tier"].as_str().unwrap().to_string(),
                i["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        touched(&resp).len(),
        expected.len(),
        "incidents touched: {resp}"
    );

    // Every alert is recorded under Alertmanager's own fingerprint, with its own severity.
    for a in alerts {
        let fp = a["fingerprint"].as_str().unwrap();
        let (status, got) = d.alert(fp);
        assert_eq!(status, 200, "GET /api/v1/alerts/{fp}: {got}");
        assert_eq!(got["labels"], a["labels"], "{got}");
        assert_eq!(got["severity"], severity_of(&a["labels"]).as_str(), "{got}");
        assert_eq!(got["source"], "webhook", "{got}");
    }
}

fn post_pagerduty(d: &Daemon, event: &Value) -> Value {
    let resp = d.post_json("/api/v1/events/pagerduty", event);
    assert_eq!(resp.status, 202, "PagerDuty event {event}: {resp}");
    let body = resp.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["message"], "Event processed", "{body}");
    let key = body["dedup_key"].as_str().unwrap_or("");
    assert!(!key.is_empty(), "no dedup_key: {body}");
    if let Some(sent) = event["dedup_key"].as_str() {
        assert_eq!(key, sent, "{body}");
    }
    body
}

#[test]
fn pagerduty_trigger_acknowledge_resolve() {
    let d = Daemon::with("");
    let trigger = fixture_json("pagerduty-trigger.json");
    let ack = fixture_json("pagerduty-acknowledge.json");
    let resolve = fixture_json("pagerduty-resolve.json");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(ack["event_action"], "acknowledge");
    assert_eq!(resolve["event_action"], "resolve");

    let body = post_pagerduty(&d, &trigger);
    let key = body["dedup_key"].as_str().unwrap().to_string();
    let severity = pagerduty_severity(trigger["payload"]["severity"].as_str().unwrap());
    let tier = default_tier(severity);
    let open = d.all_incidents("state=open");
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let inc = d.incident(&id);
    assert_eq!(inc["tier"], tier, "{inc}");
    assert_eq!(inc["severity"], severity, "{inc}");
    let m = &members(&inc)[0];
    assert_eq!(m["source"], "pagerduty", "{m}");
    assert_eq!(m["status"], "firing", "{m}");
    assert_eq!(
        d.metric("triaged_alerts_received_total", &[("source", "pagerduty")]),
        1.0
    );

    // The fixtures must belong together.
    assert_eq!(ack["dedup_key"].as_str(), Some(key.as_str()));
    assert_eq!(resolve["dedup_key"].as_str(), Some(key.as_str()));

    post_pagerduty(&d, &ack);
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "acknowledged", "{inc}");
    parse_time(&inc["acknowledged_at"]);

    post_pagerduty(&d, &resolve);
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "resolved", "{inc}");
    parse_time(&inc["resolved_at"]);
    assert_eq!(members(&inc)[0]["status"], "resolved", "{inc}");
    assert!(d.all_incidents("state=open").is_empty());
}

#[test]
fn native_fixtures_open_then_resolve() {
    let d = Daemon::with("");
    let fx = fixture_json("native-firing.json");
    let sent = fx["alerts"].as_array().unwrap();
    let expected_fps: BTreeSet<String> = sent.iter().map(|a| fingerprint(&a["labels"])).collect();
    assert_eq!(expected_fps.len(), 2);

    // Object form: {"alerts": [...]}; the `severity` field overrides labels; the second alert has
    // no status (firing).
    let resp = ingest_ok(&d.post_json("/api/v1/alerts", fixture("native-firing.json")));
    assert_eq!(resp["received"], 2, "{resp}");
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert_eq!(inc["severity"], "major", "{inc}");
    assert_eq!(
        inc["group_key"], "alertname=\"QueueBacklog\",service=\"billing\"",
        "{inc}"
    );
    assert_eq!(inc["alert_count"], 2, "{inc}");
    assert_eq!(inc["firing_count"], 2, "{inc}");
    assert_eq!(member_fingerprints(&inc), expected_fps, "{inc}");
    for m in members(&inc) {
        assert_eq!(m["source"], "native", "{m}");
        assert_eq!(m["status"], "firing", "{m}");
        let expected = if m["labels"]["queue"] == "invoices" {
            "major"
        } else {
            "minor"
        };
        assert_eq!(m["severity"], expected, "{m}");
    }

    // Bare-array form.
    let resp = ingest_ok(&d.post_json("/api/v1/alerts", fixture("native-resolved.json")));
    assert_eq!(resp["received"], 2, "{resp}");
    assert_eq!(touched(&resp), ids, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(inc["firing_count"], 0, "{inc}");
    parse_time(&inc["resolved_at"]);
    for m in members(&inc) {
        assert_eq!(m["status"], "resolved", "{m}");
    }
    assert!(d.all_incidents("state=open").is_empty());
}

fn storm_labels(i: usize) -> Value {
    labels(&[
        ("alertname", "StormAlert"),
        ("service", "checkout"),
        ("severity", "major"),
        ("instance", &format!("host-{i:03}")),
    ])
}

fn assert_storm_incident(d: &Daemon, id: &str) {
    let all = d.all_incidents("");
    assert_eq!(all.len(), 1, "expected exactly one incident");
    assert_eq!(all[0]["id"], id);
    let inc = d.incident(id);
    assert_eq!(inc["alert_count"], 500, "alert_count");
    assert_eq!(inc["firing_count"], 500, "firing_count");
    assert_eq!(inc["tier"], "L2");
    let ms = members(&inc);
    assert_eq!(ms.len(), 500, "members");
    let fps = member_fingerprints(&inc);
    assert_eq!(fps.len(), 500, "distinct member fingerprints");
    let instances: BTreeSet<String> = ms
        .iter()
        .map(|m| m["labels"]["instance"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..500).map(|i| format!("host-{i:03}")).collect();
    assert_eq!(instances, expected);
    for m in ms {
        assert_eq!(m["fingerprint"], fingerprint(&m["labels"]).as_str(), "{m}");
    }
    assert_eq!(
        d.metric(
            "triaged_incidents_opened_total",
            &[("tier", "L2"), ("severity", "major")]
        ),
        1.0
    );
}

#[test]
fn storm_of_500_alerts_in_one_request_is_one_incident() {
    let d = Daemon::with("");
    let now = rfc3339_in(0.0);
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({"labels": storm_labels(i), "annotations": {"summary": "storm"}, "startsAt": now}))
        .collect();
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", json!(batch)));
    assert_eq!(resp["received"], 500, "{resp}");
    assert_eq!(resp["deduplicated"], 0, "{resp}");
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    assert_storm_incident(&d, &ids[0]);
}

#[test]
fn storm_of_500_alerts_in_five_requests_is_one_incident() {
    let d = Daemon::with("");
    let mut ids = BTreeSet::new();
    for chunk in 0..5 {
        let batch: Vec<Value> = (chunk * 100..chunk * 100 + 100)
            .map(|i| json!({"labels": storm_labels(i), "annotations": {}, "status": "firing"}))
            .collect();
        let resp = post_native(&d, batch);
        assert_eq!(resp["received"], 100, "{resp}");
        ids.extend(touched(&resp));
    }
    assert_eq!(ids.len(), 1, "requests touched {ids:?}");
    assert_storm_incident(&d, ids.first().unwrap());
}

#[test]
fn the_same_alert_ten_times_is_one_member_counted_ten_times() {
    let d = Daemon::with("");
    let l = [
        ("alertname", "RepeatAlert"),
        ("service", "api"),
        ("severity", "minor"),
        ("instance", "api-1"),
    ];
    let before = d.metric("triaged_alerts_deduplicated_total", &[("source", "native")]);
    let mut ids = BTreeSet::new();
    for n in 0..10 {
        let resp = post_native(&d, vec![native_alert(&l, "firing")]);
        assert_eq!(resp["received"], 1, "request {n}: {resp}");
        assert_eq!(
            resp["deduplicated"],
            if n == 0 { 0 } else { 1 },
            "request {n}: {resp}"
        );
        ids.extend(touched(&resp));
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.first().unwrap();
    assert_eq!(d.all_incidents("").len(), 1);
    let inc = d.incident(id);
    assert_eq!(inc["alert_count"], 1, "{inc}");
    assert_eq!(members(&inc).len(), 1, "{inc}");
    assert_eq!(members(&inc)[0]["count"], 10, "{inc}");
    let fp = fingerprint(&labels(&l));
    let (status, a) = d.alert(&fp);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["count"], 10, "{a}");
    assert!(
        parse_time(&a["last_seen"]) >= parse_time(&a["first_seen"]),
        "{a}"
    );
    let after = d.metric("triaged_alerts_deduplicated_total", &[("source", "native")]);
    assert_eq!(
        after - before,
        9.0,
        "deduplicated_total before {before}, after {after}"
    );
    assert_eq!(
        d.metric("triaged_alerts_received_total", &[("source", "native")]),
        10.0
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_opened_total",
            &[("tier", "L1"), ("severity", "minor")]
        ),
        1.0
    );
}
