//! Severity tiers, rules (forced tiers, drops), automatic resolution and Alertmanager's alert
//! lifetime (endsAt, resolve_timeout).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn post_one(d: &Daemon, l: &[(&str, &str)]) -> Value {
    post_native(d, vec![native_alert(l, "firing")])
}

#[test]
fn severity_decides_the_tier_and_info_is_auto_handled() {
    let d = Daemon::with("");
    let crit = [
        ("alertname", "CritThing"),
        ("service", "a"),
        ("severity", "critical"),
    ];
    let warn = [
        ("alertname", "WarnThing"),
        ("service", "a"),
        ("severity", "warning"),
    ];
    let info = [
        ("alertname", "InfoThing"),
        ("service", "a"),
        ("severity", "info"),
    ];

    let resp = post_one(&d, &crit);
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(
        (&inc["tier"], &inc["severity"]),
        (&json!("L3"), &json!("critical")),
        "{inc}"
    );

    let resp = post_one(&d, &warn);
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(
        (&inc["tier"], &inc["severity"]),
        (&json!("L1"), &json!("warning")),
        "{inc}"
    );

    let resp = post_one(&d, &info);
    assert_eq!(resp["auto_handled"], 1, "{resp}");
    assert!(touched(&resp).is_empty(), "info opened an incident: {resp}");
    let all = d.all_incidents("");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter()
            .all(|i| !i["group_key"].as_str().unwrap().contains("InfoThing")),
        "{all:?}"
    );
    let fp = fingerprint(&labels(&info));
    let (status, a) = d.alert(&fp);
    assert_eq!(status, 200, "GET /api/v1/alerts/{fp}: {a}");
    assert_eq!(a["fingerprint"], fp.as_str(), "{a}");
    assert_eq!(a["tier"], "L0", "{a}");
    assert!(a["incident"].is_null(), "{a}");
    assert_eq!(a["severity"], "info", "{a}");
    assert_eq!(a["status"], "firing", "{a}");
    assert_eq!(d.metric("triaged_alerts_auto_handled_total", &[]), 1.0);

    let (status, body) = d.alert("0123456789abcdef");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn a_more_severe_member_escalates_the_incident() {
    let d = Daemon::with("");
    let base = [("alertname", "Mixed"), ("service", "b")];
    let w = post_one(
        &d,
        &[base[0], base[1], ("instance", "1"), ("severity", "warning")],
    );
    let id = touched(&w)[0].clone();
    assert_eq!(d.incident(&id)["tier"], "L1");
    let c = post_one(
        &d,
        &[
            base[0],
            base[1],
            ("instance", "2"),
            ("severity", "critical"),
        ],
    );
    assert_eq!(touched(&c), vec![id.clone()], "{c}");
    let inc = d.incident(&id);
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert_eq!(inc["severity"], "critical", "{inc}");
    assert_eq!(inc["alert_count"], 2, "{inc}");
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "escalated"], "{inc}");
    let esc = &inc["timeline"][1];
    assert_eq!(
        (&esc["from"], &esc["to"]),
        (&json!("L1"), &json!("L3")),
        "{esc}"
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L3"), ("reason", "severity")]
        ),
        1.0
    );
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L1")]), 0.0);
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L3")]), 1.0);
}

const RULES: &str = r#"
[[rules]]
name = "db-to-l3"
matchers = ['alertname=~"Db.*"']
tier = "L3"

[[rules]]
name = "drop-noise"
matchers = ['alertname="Noise"']
action = "drop"
"#;

#[test]
fn a_regex_rule_forces_the_tier() {
    let d = Daemon::with(RULES);
    let db = [
        ("alertname", "DbSlowQueries"),
        ("service", "pg"),
        ("severity", "warning"),
    ];
    let resp = post_one(&d, &db);
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let inc = d.incident(&ids[0]);
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert_eq!(inc["rule"], "db-to-l3", "{inc}");
    let m = &inc["members"][0];
    assert!(
        m["rules"].as_array().unwrap().contains(&json!("db-to-l3")),
        "{m}"
    );
    assert_eq!(m["tier"], "L3", "{m}");

    // Not matching (regexes are anchored: "MyDb..." does not match "Db.*").
    for name in ["WebSlow", "MyDbSlow"] {
        let l = [
            ("alertname", name),
            ("service", "pg"),
            ("severity", "warning"),
        ];
        let resp = post_one(&d, &l);
        let ids = touched(&resp);
        assert_eq!(ids.len(), 1, "{resp}");
        let inc = d.incident(&ids[0]);
        assert_eq!(inc["tier"], "L1", "{name}: {inc}");
        assert!(inc["rule"].is_null(), "{name}: {inc}");
        let rules = inc["members"][0]["rules"].as_array().unwrap();
        assert!(rules.is_empty(), "{name}: {inc}");
    }
}

#[test]
fn a_drop_rule_drops_and_counts() {
    let d = Daemon::with(RULES);
    let noise = [
        ("alertname", "Noise"),
        ("service", "x"),
        ("severity", "critical"),
    ];
    let resp = post_one(&d, &noise);
    assert_eq!(resp["received"], 1, "{resp}");
    assert_eq!(resp["dropped"], 1, "{resp}");
    assert!(touched(&resp).is_empty(), "{resp}");
    assert!(d.all_incidents("").is_empty());
    assert_eq!(
        d.metric("triaged_alerts_suppressed_total", &[("reason", "drop")]),
        1.0
    );
    let fp = fingerprint(&labels(&noise));
    let (status, body) = d.alert(&fp);
    assert_eq!(status, 404, "a dropped alert is stored: {body}");
    assert_eq!(
        d.metric(
            "triaged_incidents_opened_total",
            &[("tier", "L3"), ("severity", "critical")]
        ),
        0.0
    );
}

#[test]
fn resolving_every_member_resolves_the_incident() {
    let d = Daemon::with("");
    let a = [
        ("alertname", "TwoHosts"),
        ("service", "s"),
        ("severity", "major"),
        ("instance", "a"),
    ];
    let b = [
        ("alertname", "TwoHosts"),
        ("service", "s"),
        ("severity", "major"),
        ("instance", "b"),
    ];
    let resp = post_native(
        &d,
        vec![native_alert(&a, "firing"), native_alert(&b, "firing")],
    );
    let id = touched(&resp)[0].clone();
    assert_eq!(d.metric("triaged_incidents_open", &[("tier", "L2")]), 1.0);
    let inc = d.incident(&id);
    assert_eq!(
        (&inc["alert_count"], &inc["firing_count"]),
        (&json!(2), &json!(2)),
        "{inc}"
    );

    post_native(&d, vec![native_alert(&a, "resolved")]);
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "open", "one member still fires: {inc}");
    assert_eq!(
        (&inc["alert_count"], &inc["firing_count"]),
        (&json!(2), &json!(1)),
        "{inc}"
    );
    assert!(inc["resolved_at"].is_null(), "{inc}");

    post_native(&d, vec![native_alert(&b, "resolved")]);
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(inc["firing_count"], 0, "{inc}");
    parse_time(&inc["resolved_at"]);
    let last = inc["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "resolved", "{inc}");
    assert_eq!(last["actor"], "triaged", "{inc}");

    let m = d.metrics();
    assert_eq!(
        metric_value(
            &m,
            "triaged_incident_resolve_seconds_count",
            &[("tier", "L2"), ("severity", "major")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_auto_resolved_total",
            &[("tier", "L2")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_resolved_total",
            &[("tier", "L2"), ("by", "first_contact")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "triaged_incidents_open", &[("tier", "L2")]).unwrap_or(0.0),
        0.0,
        "{m}"
    );
}

fn v2_alert(l: &[(&str, &str)], ends_in_secs: Option<f64>) -> Value {
    let mut a = json!({"labels": labels(l), "annotations": {}, "startsAt": rfc3339_in(0.0)});
    if let Some(s) = ends_in_secs {
        a["endsAt"] = json!(rfc3339_in(s));
    }
    a
}

/// Wait until the alert with these labels is resolved and its incident too.
fn wait_resolved(d: &Daemon, l: &[(&str, &str)], id: &str) {
    let fp = fingerprint(&labels(l));
    poll_until(
        &format!("alert {fp} and {id} to resolve by themselves"),
        || {
            let (_, a) = d.alert(&fp);
            let inc = d.incident(id);
            if a["status"] == "resolved" && inc["state"] == "resolved" {
                Ok(())
            } else {
                Err(format!("alert {a}\nincident {inc}"))
            }
        },
    );
}

#[test]
fn an_alert_whose_ends_at_passes_resolves_by_itself() {
    let d = Daemon::with("");
    let l = [
        ("alertname", "EndsSoon"),
        ("service", "e"),
        ("severity", "critical"),
    ];
    let started = std::time::Instant::now();
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", json!([v2_alert(&l, Some(2.0))])));
    let id = touched(&resp)[0].clone();
    assert_eq!(d.incident(&id)["state"], "open");
    wait_resolved(&d, &l, &id);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "resolved after {:?}, before its endsAt",
        started.elapsed()
    );
    assert_eq!(
        d.metric("triaged_incidents_auto_resolved_total", &[("tier", "L3")]),
        1.0
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_resolved_total",
            &[("tier", "L3"), ("by", "first_contact")]
        ),
        1.0
    );
}

#[test]
fn amtool_alert_resolves_after_resolve_timeout() {
    let d = Daemon::with("[dedup]\nresolve_timeout = \"1s\"\n");
    let fx = fixture_json("amtool-0.25-alert-add.json");
    let l: Vec<(String, String)> = fx[0]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", fixture("amtool-0.25-alert-add.json")));
    let id = touched(&resp)[0].clone();
    assert_eq!(d.incident(&id)["state"], "open");
    wait_resolved(&d, &l, &id);
}

#[test]
fn a_resend_with_a_later_ends_at_keeps_the_alert_firing() {
    let d = Daemon::with("");
    let l = [
        ("alertname", "Refreshed"),
        ("service", "r"),
        ("severity", "major"),
    ];
    // Margins of 3 s on either side of the watch, for a machine that stalls.
    let first_end = chrono::Utc::now() + chrono::Duration::seconds(3);
    let resp = ingest_ok(&d.post_json("/api/v2/alerts", json!([v2_alert(&l, Some(3.0))])));
    let id = touched(&resp)[0].clone();
    ingest_ok(&d.post_json("/api/v2/alerts", json!([v2_alert(&l, Some(9.0))])));
    let fp = fingerprint(&labels(&l));
    // Watch it continuously until well past the first endsAt: it must stay firing throughout.
    let watch_until = first_end + chrono::Duration::milliseconds(3000);
    let mut polls = 0;
    while chrono::Utc::now() < watch_until {
        let (_, a) = d.alert(&fp);
        let inc = d.incident(&id);
        assert_eq!(a["status"], "firing", "expired at the first endsAt: {a}");
        assert_eq!(inc["state"], "open", "{inc}");
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(polls > 0);
    // ...and still expires at the later one.
    wait_resolved(&d, &l, &id);
}
