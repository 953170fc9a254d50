//! `GET /api/v1/summary`, the NOC board's summary strip, against the real daemon: active
//! incidents per tier, and MTTA, MTTR and the escalation rate of the last 24 hours, checked
//! against the incidents' own timestamps as the API shows them.

mod common;

use common::*;
use serde_json::{json, Value};

fn seconds(from: &Value, to: &Value) -> f64 {
    (parse_time(to) - parse_time(from)).num_milliseconds() as f64 / 1000.0
}

fn open_one(d: &Daemon, alertname: &str, severity: &str) -> String {
    let body = post_native(
        d,
        vec![native_alert(
            &[("alertname", alertname), ("severity", severity)],
            "firing",
        )],
    );
    touched(&body)[0].clone()
}

#[test]
fn the_summary_counts_active_incidents_per_tier_and_the_days_rates() {
    let d = Daemon::with("");
    let (status, empty) = d.get_json("/api/v1/summary");
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["window_seconds"], 86400);
    for tier in ["L1", "L2", "L3", "L4"] {
        assert_eq!(
            empty["tiers"][tier],
            json!({"open": 0, "acknowledged": 0}),
            "{empty}"
        );
    }
    assert_eq!(empty["window"]["opened"], 0);
    assert!(empty["window"]["mtta_seconds"].is_null(), "{empty}");
    assert!(empty["window"]["mttr_seconds"].is_null(), "{empty}");
    assert!(empty["window"]["escalation_rate"].is_null(), "{empty}");

    let acked = open_one(&d, "SummaryAcked", "warning"); // L1
    let escalated = open_one(&d, "SummaryEscalated", "major"); // L2
    let untouched = open_one(&d, "SummaryUntouched", "critical"); // L3
    let resolved = open_one(&d, "SummaryResolved", "warning"); // L1
    let ok = |r: Response| assert_eq!(r.status, 200, "{r}");
    ok(d.action(&acked, "ack", json!({"actor": "alice"})));
    ok(d.action(
        &escalated,
        "escalate",
        json!({"actor": "alice", "to": "L3", "reason": "needs a DBA"}),
    ));
    ok(d.action(
        &resolved,
        "resolve",
        json!({"actor": "bob", "note": "fixed"}),
    ));

    let (status, s) = d.get_json("/api/v1/summary");
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["tiers"]["L1"],
        json!({"open": 0, "acknowledged": 1}),
        "{s}"
    );
    assert_eq!(
        s["tiers"]["L2"],
        json!({"open": 0, "acknowledged": 0}),
        "{s}"
    );
    // The escalated incident is open again, at L3, beside the untouched critical one.
    assert_eq!(
        s["tiers"]["L3"],
        json!({"open": 2, "acknowledged": 0}),
        "{s}"
    );
    assert_eq!(
        s["tiers"]["L4"],
        json!({"open": 0, "acknowledged": 0}),
        "{s}"
    );
    // The tiers agree with the incident list.
    let active = d.all_incidents("state=active");
    for tier in ["L1", "L2", "L3", "L4"] {
        let listed = active.iter().filter(|i| i["tier"] == tier).count() as u64;
        let counted = s["tiers"][tier]["open"].as_u64().unwrap()
            + s["tiers"][tier]["acknowledged"].as_u64().unwrap();
        assert_eq!(listed, counted, "{tier}: {s}");
    }
    assert_eq!(d.incident(&untouched)["state"], "open");

    let w = &s["window"];
    assert_eq!(w["opened"], 4, "{s}");
    assert_eq!(w["acknowledged"], 1, "{s}");
    assert_eq!(w["resolved"], 1, "{s}");
    assert_eq!(w["escalated"], 1, "{s}");
    assert_eq!(w["escalation_rate"], 0.25, "{s}");
    assert_eq!(w["truncated"], false, "{s}");
    let a = d.incident(&acked);
    let expected_mtta = seconds(&a["opened_at"], &a["acknowledged_at"]);
    let mtta = w["mtta_seconds"].as_f64().expect("mtta_seconds");
    assert!(
        (mtta - expected_mtta).abs() < 0.002,
        "MTTA {mtta} vs {expected_mtta}"
    );
    let r = d.incident(&resolved);
    let expected_mttr = seconds(&r["opened_at"], &r["resolved_at"]);
    let mttr = w["mttr_seconds"].as_f64().expect("mttr_seconds");
    assert!(
        (mttr - expected_mttr).abs() < 0.002,
        "MTTR {mttr} vs {expected_mttr}"
    );

    // Read-only, and survives a restart: the figures come from the store.
    let post = d.post_json("/api/v1/summary", "{}");
    assert_eq!(post.status, 405, "{post}");
    let mut d = d;
    assert_eq!(d.terminate().code(), Some(0));
    d.restart();
    let (_, after) = d.get_json("/api/v1/summary");
    assert_eq!(after["tiers"], s["tiers"]);
    assert_eq!(after["window"]["opened"], 4);
}
