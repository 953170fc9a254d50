//! The NOC API: operator actions and their timeline and metrics, errors, paging and filters,
//! health endpoints.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

fn open_incident(d: &Daemon, alertname: &str, severity: &str) -> String {
    let resp = post_native(
        d,
        vec![native_alert(
            &[
                ("alertname", alertname),
                ("service", "noc"),
                ("severity", severity),
            ],
            "firing",
        )],
    );
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    ids[0].clone()
}

/// An answer of the documented error shape with that status; returns its body.
fn assert_error(resp: &Response, status: u16) -> Value {
    assert_eq!(resp.status, status, "{resp}");
    let v = resp.error_body();
    assert!(v["error"].is_string(), "error body without \"error\": {v}");
    v
}

fn ok_incident(resp: &Response, id: &str) -> Value {
    assert_eq!(resp.status, 200, "{resp}");
    let v = resp.json();
    assert_eq!(v["id"], id, "{v}");
    v
}

#[test]
fn health_ready_and_metrics() {
    let d = Daemon::with("");
    assert_eq!(d.get("/-/healthy").status, 200);
    assert_eq!(d.get("/-/ready").status, 200);
    open_incident(&d, "Something", "warning");
    let m = d.metrics();
    assert!(
        metric_value(&m, "triaged_store_flush_seconds_count", &[]).unwrap_or(0.0) >= 1.0,
        "no store flush counted after an ingest:\n{m}"
    );
    poll_until("queue depth back to 0", || {
        let depth = metric_value(&d.metrics(), "triaged_queue_depth", &[]);
        if depth == Some(0.0) {
            Ok(())
        } else {
            Err(depth)
        }
    });
}

#[test]
fn operator_lifecycle_ack_escalate_assign_resolve() {
    let d = Daemon::with("");
    let id = open_incident(&d, "LifeCycle", "warning");
    let inc = d.incident(&id);
    assert_eq!(
        (&inc["tier"], &inc["state"]),
        (&json!("L1"), &json!("open"))
    );
    assert!(inc["acknowledged_at"].is_null(), "{inc}");
    assert!(inc["assignee"].is_null(), "{inc}");

    let v = ok_incident(&d.action(&id, "ack", json!({"actor": "alice"})), &id);
    assert_eq!(v["state"], "acknowledged", "{v}");
    let acked_at = parse_time(&v["acknowledged_at"]);
    assert!(acked_at >= parse_time(&v["opened_at"]), "{v}");
    let m = d.metrics();
    assert_eq!(
        metric_value(
            &m,
            "triaged_incident_ack_seconds_count",
            &[("tier", "L1"), ("severity", "warning")]
        ),
        Some(1.0),
        "{m}"
    );

    let v = ok_incident(
        &d.action(
            &id,
            "escalate",
            json!({"actor": "alice", "reason": "needs DBA", "to": "L2"}),
        ),
        &id,
    );
    assert_eq!(v["tier"], "L2", "{v}");
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L2"), ("reason", "manual")]
        ),
        1.0
    );

    let v = ok_incident(
        &d.action(&id, "assign", json!({"actor": "alice", "assignee": "bob"})),
        &id,
    );
    assert_eq!(v["assignee"], "bob", "{v}");

    let v = ok_incident(
        &d.action(&id, "resolve", json!({"actor": "alice", "reason": "fixed"})),
        &id,
    );
    assert_eq!(v["state"], "resolved", "{v}");
    let resolved_at = parse_time(&v["resolved_at"]);
    assert!(resolved_at >= acked_at, "{v}");
    assert_eq!(parse_time(&v["acknowledged_at"]), acked_at, "{v}");
    assert_eq!(v["assignee"], "bob", "{v}");

    let inc = d.incident(&id);
    let timeline = inc["timeline"].as_array().expect("timeline");
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "acknowledged",
            "escalated",
            "assigned",
            "resolved"
        ],
        "{inc}"
    );
    assert_eq!(timeline[0]["actor"], "triaged", "{inc}");
    for e in &timeline[1..] {
        assert_eq!(e["actor"], "alice", "{e}");
    }
    let esc = &timeline[2];
    assert_eq!(esc["from"], "L1", "{esc}");
    assert_eq!(esc["to"], "L2", "{esc}");
    assert_eq!(esc["reason"], "needs DBA", "{esc}");
    assert_eq!(timeline[4]["reason"], "fixed", "{inc}");
    let times: Vec<_> = timeline.iter().map(|e| parse_time(&e["at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timeline out of order: {inc}"
    );

    // Resolved by an operator at L2, a tier above the one that opened it: not first contact,
    // and not automatic.
    let m = d.metrics();
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_resolved_total",
            &[("tier", "L2"), ("by", "escalated")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "triaged_incidents_resolved_total",
            &[("by", "first_contact")]
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "triaged_incidents_auto_resolved_total", &[]),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incident_resolve_seconds_count",
            &[("tier", "L2"), ("severity", "warning")]
        ),
        Some(1.0),
        "{m}"
    );
    for tier in ["L1", "L2"] {
        assert_eq!(
            metric_value(&m, "triaged_incidents_open", &[("tier", tier)]).unwrap_or(0.0),
            0.0,
            "{m}"
        );
    }

    // Illegal transition: ack after resolve.
    assert_error(&d.action(&id, "ack", json!({"actor": "alice"})), 409);
    assert_eq!(d.incident(&id)["state"], "resolved");
}

#[test]
fn escalation_defaults_to_the_next_tier_and_never_goes_down() {
    let d = Daemon::with("");
    let l1 = open_incident(&d, "Low", "minor");
    let v = ok_incident(
        &d.action(&l1, "escalate", json!({"actor": "carol", "reason": "slow"})),
        &l1,
    );
    assert_eq!(
        v["tier"], "L2",
        "escalate without `to` goes one tier up: {v}"
    );

    let l3 = open_incident(&d, "High", "critical");
    for to in ["L2", "L3"] {
        assert_error(
            &d.action(
                &l3,
                "escalate",
                json!({"actor": "carol", "reason": "x", "to": to}),
            ),
            409,
        );
    }
    let inc = d.incident(&l3);
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert_eq!(
        inc["timeline"].as_array().unwrap().len(),
        1,
        "a refused escalation left a timeline event: {inc}"
    );
}

#[test]
fn incident_actions_answer_404_for_unknown_and_400_without_actor() {
    let d = Daemon::with("");
    let id = open_incident(&d, "Target", "major");
    let bodies = [
        ("ack", json!({"actor": "alice"})),
        ("resolve", json!({"actor": "alice", "reason": "fixed"})),
        (
            "escalate",
            json!({"actor": "alice", "reason": "r", "to": "L3"}),
        ),
        ("assign", json!({"actor": "alice", "assignee": "bob"})),
    ];
    for (action, body) in &bodies {
        let resp = d.action("INC-999999", action, body.clone());
        assert_error(&resp, 404);
    }
    let (status, body) = d.get_json("/api/v1/incidents/INC-999999");
    assert_eq!(status, 404, "{body}");

    for (action, body) in &bodies {
        let mut body = body.clone();
        body.as_object_mut().unwrap().remove("actor");
        let resp = d.action(&id, action, body);
        assert_error(&resp, 400);
    }
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert!(inc["assignee"].is_null(), "{inc}");
    assert_eq!(inc["timeline"].as_array().unwrap().len(), 1, "{inc}");
}

/// An incident has one id: `INC-01` or `INC-+1` is no alias of `INC-1` on any route that takes
/// an id (404, as for any other id of no incident), and no cursor (400, as a malformed cursor).
#[test]
fn only_the_canonical_incident_id_names_an_incident() {
    let d = Daemon::with("");
    let id = open_incident(&d, "OneName", "warning");
    let n = inc_num(&id);
    let aliases = [format!("INC-0{n}"), format!("INC-+{n}"), format!("inc-{n}")];
    for alias in &aliases {
        let (status, body) = d.get_json(&format!("/api/v1/incidents/{alias}"));
        assert_eq!(status, 404, "{alias}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("INC-<number>"),
            "{alias}: {body}"
        );
        for (action, body) in [
            ("ack", json!({"actor": "alice"})),
            ("assign", json!({"actor": "alice", "assignee": "bob"})),
        ] {
            assert_error(&d.action(alias, action, body), 404);
        }
        assert_eq!(d.get(&format!("/incident/{alias}")).status, 404, "{alias}");
        let (status, body) = d.get_json(&format!("/api/v1/incidents?cursor={alias}"));
        assert_eq!(status, 400, "cursor={alias}: {body}");
    }
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "open", "an alias acted on it: {inc}");
    assert!(inc["assignee"].is_null(), "{inc}");
    assert_eq!(d.get(&format!("/incident/{id}")).status, 200);
    let (status, body) = d.get_json(&format!("/api/v1/incidents?cursor={id}"));
    assert_eq!(status, 200, "{body}");
}

fn page(d: &Daemon, query: &str) -> (Vec<String>, Option<String>) {
    let (status, body) = d.get_json(&format!("/api/v1/incidents?{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    let ids = body["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {body}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let next = match &body["next_cursor"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("{query}: next_cursor {other}"),
    };
    (ids, next)
}

fn ids_of(d: &Daemon, query: &str) -> BTreeSet<String> {
    d.all_incidents(query)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn paging_is_newest_first_and_filters_work() {
    let d = Daemon::with("");
    // A: L1, B: L3 (acked), C: L3, D: L2 (resolved), E: L1
    let a = open_incident(&d, "PageA", "warning");
    let b = open_incident(&d, "PageB", "critical");
    let c = open_incident(&d, "PageC", "critical");
    let dd = open_incident(&d, "PageD", "major");
    let e = open_incident(&d, "PageE", "warning");
    let all = [&a, &b, &c, &dd, &e];
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 5);
    assert_eq!(
        d.action(&b, "ack", json!({"actor": "x"})).status,
        200,
        "ack"
    );
    assert_eq!(
        d.action(&dd, "resolve", json!({"actor": "x", "reason": "done"}))
            .status,
        200,
        "resolve"
    );

    let mut expected: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    expected.sort_by_key(|id| std::cmp::Reverse(inc_num(id)));

    let (p1, c1) = page(&d, "limit=2");
    assert_eq!(p1.len(), 2, "page 1: {p1:?}");
    let c1 = c1.expect("page 1 has a next_cursor");
    let (p2, c2) = page(&d, &format!("limit=2&cursor={c1}"));
    assert_eq!(p2.len(), 2, "page 2: {p2:?}");
    let c2 = c2.expect("page 2 has a next_cursor");
    let (p3, c3) = page(&d, &format!("limit=2&cursor={c2}"));
    assert_eq!(p3.len(), 1, "page 3: {p3:?}");
    assert_eq!(c3, None, "last page's next_cursor");
    let got: Vec<String> = p1.into_iter().chain(p2).chain(p3).collect();
    assert_eq!(got, expected, "pages, newest first, no duplicates");

    // A large limit: everything on one page, in the same order.
    let (one, next) = page(&d, "limit=100");
    assert_eq!(one, expected);
    assert_eq!(next, None);

    let set = |xs: &[&String]| -> BTreeSet<String> { xs.iter().map(|s| s.to_string()).collect() };
    assert_eq!(ids_of(&d, "state=open"), set(&[&a, &c, &e]));
    assert_eq!(ids_of(&d, "state=acknowledged"), set(&[&b]));
    assert_eq!(ids_of(&d, "state=resolved"), set(&[&dd]));
    assert_eq!(ids_of(&d, "tier=L3"), set(&[&b, &c]));
    assert_eq!(ids_of(&d, "tier=L1"), set(&[&a, &e]));
    assert_eq!(ids_of(&d, "state=open&tier=L3"), set(&[&c]));
    // Given twice, `state` counts once, its last value, as the other parameters do.
    assert_eq!(ids_of(&d, "state=active&state=resolved"), set(&[&dd]));
    assert_eq!(
        ids_of(&d, "state=resolved&state=active"),
        set(&[&a, &b, &c, &e])
    );
    assert_eq!(ids_of(&d, "state=resolved&state=open"), set(&[&a, &c, &e]));
    for inc in d.all_incidents("state=open") {
        assert_eq!(inc["state"], "open", "{inc}");
    }

    // Filtered paging: 3 open incidents in pages of 2 and 1.
    let (f1, fc1) = page(&d, "state=open&limit=2");
    assert_eq!(f1.len(), 2, "{f1:?}");
    let (f2, fc2) = page(
        &d,
        &format!("state=open&limit=2&cursor={}", fc1.expect("cursor")),
    );
    assert_eq!(f2.len(), 1, "{f2:?}");
    assert_eq!(fc2, None);
    let mut open_expected = vec![a.clone(), c.clone(), e.clone()];
    open_expected.sort_by_key(|id| std::cmp::Reverse(inc_num(id)));
    assert_eq!(f1.into_iter().chain(f2).collect::<Vec<_>>(), open_expected);
}

/// `team` and `service` filter on the incident's labels (the group-by labels and those rules
/// set), with the other filters and paging; values are percent-decoded.
#[test]
fn incidents_filter_by_team_and_service() {
    let d = Daemon::with(
        "[[rules]]\nname = \"storage\"\nmatchers = ['alertname=~\"Disk.*\"']\n\
         set_labels = { team = \"storage ops\" }\n",
    );
    let fire = |name: &str, service: &str| {
        let resp = post_native(
            &d,
            vec![native_alert(
                &[
                    ("alertname", name),
                    ("service", service),
                    ("severity", "warning"),
                ],
                "firing",
            )],
        );
        touched(&resp)[0].clone()
    };
    let disk_db = fire("DiskFull", "db");
    let disk_web = fire("DiskSlow", "web");
    let cpu_db = fire("CpuHigh", "db");
    let set = |xs: &[&String]| -> BTreeSet<String> { xs.iter().map(|s| s.to_string()).collect() };
    assert_eq!(ids_of(&d, "team=storage+ops"), set(&[&disk_db, &disk_web]));
    assert_eq!(
        ids_of(&d, "team=storage%20ops"),
        set(&[&disk_db, &disk_web])
    );
    assert_eq!(ids_of(&d, "service=db"), set(&[&disk_db, &cpu_db]));
    assert_eq!(ids_of(&d, "team=storage+ops&service=db"), set(&[&disk_db]));
    assert_eq!(ids_of(&d, "team=network"), set(&[]));
    assert_eq!(ids_of(&d, "team="), set(&[&cpu_db]), "no team label");
    assert_eq!(
        ids_of(&d, "team=network&team=storage+ops&service=web"),
        set(&[&disk_web]),
        "the last team given"
    );
    let (first, cursor) = page(&d, "team=storage+ops&limit=1");
    assert_eq!(first, std::slice::from_ref(&disk_web), "newest first");
    let (second, end) = page(
        &d,
        &format!("team=storage+ops&limit=1&cursor={}", cursor.unwrap()),
    );
    assert_eq!((second, end), (vec![disk_db.clone()], None));
    assert_eq!(
        d.action(&disk_db, "resolve", json!({"actor": "x", "reason": "done"}))
            .status,
        200
    );
    assert_eq!(
        ids_of(&d, "state=active&team=storage+ops"),
        set(&[&disk_web])
    );
    let (status, body) = d.get_json("/api/v1/incidents?team=%zz");
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("team"), "{body}");
}

/// `GET /api/v2/alerts?...`: the alertnames listed, in order.
fn am_alertnames(d: &Daemon, query: &str) -> Vec<String> {
    let (status, body) = d.get_json(&format!("/api/v2/alerts{query}"));
    assert_eq!(status, 200, "GET /api/v2/alerts{query}: {body}");
    let mut names: Vec<String> = body
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn alertmanager_v2_alerts_lists_what_fires_from_every_source_across_a_restart() {
    let mut d = Daemon::with("");
    // Firing: one per source, an L0 one (auto-handled: no incident, still firing) among them.
    post_native(
        &d,
        vec![
            native_alert(
                &[("alertname", "NativeUp"), ("severity", "major")],
                "firing",
            ),
            native_alert(&[("alertname", "InfoOnly"), ("severity", "info")], "firing"),
            native_alert(&[("alertname", "Gone"), ("severity", "major")], "firing"),
        ],
    );
    ingest_ok(&d.post_json(
        "/api/v2/alerts",
        json!([{"labels": {"alertname": "PromUp", "severity": "critical"},
                "generatorURL": "http://prometheus.example/graph"}]),
    ));
    // Resolved: not listed.
    post_native(
        &d,
        vec![native_alert(
            &[("alertname", "Gone"), ("severity", "major")],
            "resolved",
        )],
    );
    let all = ["InfoOnly", "NativeUp", "PromUp"];
    assert_eq!(am_alertnames(&d, ""), all);

    let (_, body) = d.get_json("/api/v2/alerts?filter=alertname%3D%22PromUp%22");
    let prom = &body[0];
    assert_eq!(prom["generatorURL"], "http://prometheus.example/graph");
    assert_eq!(prom["fingerprint"], fingerprint(&prom["labels"]));
    assert_eq!(prom["status"]["state"], "active");
    // An expiry for the Alertmanager API's alerts; none (Go's zero time) for the native ones.
    assert!(
        parse_time(&prom["endsAt"]) > parse_time(&prom["startsAt"]),
        "{prom}"
    );
    let (_, body) = d.get_json("/api/v2/alerts?filter=alertname%3DNativeUp");
    assert_eq!(body[0]["endsAt"], "0001-01-01T00:00:00.000Z", "{body}");

    assert_eq!(
        am_alertnames(&d, "?filter=severity%3D~%22crit.*%7Cinfo%22"),
        ["InfoOnly", "PromUp"]
    );
    assert_eq!(
        am_alertnames(&d, "?filter=%40source%3Dnative"),
        ["InfoOnly", "NativeUp"]
    );
    assert_eq!(am_alertnames(&d, "?receiver=triaged"), all);
    assert!(am_alertnames(&d, "?receiver=pager").is_empty());
    assert!(am_alertnames(&d, "?active=false").is_empty());

    // The index of firing alerts is in the store: a restart lists the same.
    d.kill9();
    d.restart();
    assert_eq!(am_alertnames(&d, ""), all);

    // Bad parameters are refused with what is wrong; other methods are not allowed.
    let v = assert_error(&d.get("/api/v2/alerts?filter=alertname"), 400);
    assert!(v["detail"].as_str().unwrap().contains("no operator"), "{v}");
    let v = assert_error(&d.get("/api/v2/alerts?silenced=maybe"), 400);
    assert!(
        v["detail"].as_str().unwrap().contains("true or false"),
        "{v}"
    );
    let resp = request(&d.addr, "PUT", "/api/v2/alerts", &[], b"");
    assert_error(&resp, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
}

#[test]
fn alertmanager_v2_status_says_what_its_clients_need() {
    let d = Daemon::with("");
    let before = chrono::Utc::now();
    let (status, body) = d.get_json("/api/v2/status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster"]["status"], "ready");
    assert_eq!(body["cluster"]["peers"], json!([]));
    assert!(body["cluster"]["name"].is_string(), "{body}");
    assert_eq!(body["versionInfo"]["version"], env!("CARGO_PKG_VERSION"));
    let original = body["config"]["original"].as_str().unwrap();
    assert!(original.contains("receiver: triaged"), "{original}");
    // Uptime is when the process started: before this request.
    assert!(parse_time(&body["uptime"]) <= before, "{body}");
    let resp = d.post_json("/api/v2/status", "{}");
    assert_error(&resp, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
}

/// `GET /api/v2/silences?filter=...`: the silences Alertmanager would list, those with a
/// matcher of the same label, operator and value as each filter (amtool's `silence query
/// MATCHER`, whose ids `amtool silence expire` may be given), not every silence; a malformed
/// filter is a 400, as for alerts.
#[test]
fn alertmanager_v2_silences_are_filtered_as_alertmanager_filters_them() {
    let d = Daemon::with("");
    let silence = |matchers: Value| {
        let mut body = fixture_json("amtool-0.25-silence-add.json");
        body["matchers"] = matchers;
        body["startsAt"] = json!(rfc3339_in(0.0));
        body["endsAt"] = json!(rfc3339_in(3600.0));
        let resp = d.post_json("/api/v2/silences", &body);
        assert_eq!(resp.status, 200, "{resp}");
        resp.json()["silenceID"].as_str().unwrap().to_string()
    };
    let m = |name: &str, value: &str, is_regex: bool| json!({"name": name, "value": value, "isRegex": is_regex, "isEqual": true});
    let keep = silence(json!([m("alertname", "KeepMe", false)]));
    let expire = silence(json!([
        m("alertname", "ExpireMe", false),
        m("env", "prod", false)
    ]));
    let regex = silence(json!([m("alertname", "Exp.*", true)]));
    let listed = |query: &str| -> BTreeSet<String> {
        let (status, body) = d.get_json(&format!("/api/v2/silences{query}"));
        assert_eq!(status, 200, "GET /api/v2/silences{query}: {body}");
        body.as_array()
            .unwrap_or_else(|| panic!("not an array: {body}"))
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(listed(""), set(&[&keep, &expire, &regex]));
    // As amtool sends `silence query alertname=ExpireMe`.
    assert_eq!(
        listed("?filter=alertname%3D%22ExpireMe%22"),
        set(&[&expire])
    );
    assert_eq!(
        listed("?filter=alertname%3DExpireMe&filter=env%3Dprod"),
        set(&[&expire])
    );
    assert_eq!(listed("?filter=alertname%3D~%22Exp.%2A%22"), set(&[&regex]));
    assert!(listed("?filter=alertname%3DNothing").is_empty());
    assert!(listed("?filter=alertname%3DKeepMe&filter=env%3Dprod").is_empty());

    for query in [
        "filter=bogus",
        "filter=alertname%3D~%22(%22",
        "filter=%40source%3Dalertmanager",
    ] {
        let v = assert_error(&d.get(&format!("/api/v2/silences?{query}")), 400);
        assert!(
            v["detail"].as_str().unwrap().contains("filter"),
            "{query}: {v}"
        );
    }
}
