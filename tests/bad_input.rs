//! Every kind of bad request is refused with the documented status and JSON error, counted in
//! `triaged_alerts_rejected_total{source,reason}`, and leaves the daemon healthy.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

const ENDPOINTS: [(&str, &str); 4] = [
    ("/api/v2/alerts", "alertmanager"),
    ("/api/v1/webhook/alertmanager", "webhook"),
    ("/api/v1/events/pagerduty", "pagerduty"),
    ("/api/v1/alerts", "native"),
];

/// A valid body for each ingest endpoint.
fn good_body(path: &str) -> Value {
    let l = json!({"alertname": "Good", "service": "ok", "severity": "warning"});
    match path {
        "/api/v2/alerts" => json!([{"labels": l, "annotations": {}}]),
        "/api/v1/webhook/alertmanager" => json!({
            "receiver": "triaged", "status": "firing", "version": "4",
            "groupKey": "{}:{alertname=\"Good\"}", "truncatedAlerts": 0,
            "groupLabels": {"alertname": "Good"}, "commonLabels": l, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093",
            "alerts": [{"status": "firing", "labels": l, "annotations": {},
                        "startsAt": rfc3339_in(0.0), "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": fingerprint(&l)}]
        }),
        "/api/v1/events/pagerduty" => json!({
            "routing_key": "R0UT1NGKEY0000000000000000000000", "event_action": "trigger",
            "dedup_key": "good-1",
            "payload": {"summary": "good", "source": "host-1", "severity": "warning"}
        }),
        "/api/v1/alerts" => json!({"alerts": [{"labels": l, "status": "firing"}]}),
        other => panic!("no body for {other}"),
    }
}

/// Expected rejection counters, checked at the end.
#[derive(Default)]
struct Expect(BTreeMap<(&'static str, &'static str), f64>);

impl Expect {
    fn add(&mut self, source: &'static str, reason: &'static str) {
        *self.0.entry((source, reason)).or_default() += 1.0;
    }
}

fn refused(resp: &Response, status: u16, what: &str) -> Value {
    assert_eq!(resp.status, status, "{what}: {resp}");
    let v = resp.error_body();
    assert!(
        v["error"].is_string(),
        "{what}: error body without \"error\": {v}"
    );
    assert!(
        v["detail"].is_string() || v["detail"].is_null(),
        "{what}: {v}"
    );
    v
}

#[test]
fn bad_requests_are_refused_counted_and_harmless() {
    let d = Daemon::with("[server]\nmax_body_bytes = 1024\n");
    let mut expect = Expect::default();

    // Malformed JSON on every ingest endpoint: 400, the detail says where.
    for (path, source) in ENDPOINTS {
        let body = b"{\"alerts\": [\n  {\"labels\": {\"alertname\": }}\n]}";
        let v = refused(
            &d.post_json(path, &body[..]),
            400,
            &format!("malformed JSON to {path}"),
        );
        let detail = v["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("line"),
            "malformed JSON to {path}: detail does not say the line: {v}"
        );
        expect.add(source, "malformed_json");
    }

    // Wrong media types, on a body that would otherwise be fine.
    for (path, source) in ENDPOINTS {
        for ct in ["text/plain", "application/x-www-form-urlencoded"] {
            let body = serde_json::to_vec(&good_body(path)).unwrap();
            let resp = request(&d.addr, "POST", path, &[("Content-Type", ct)], &body);
            refused(&resp, 415, &format!("{ct} to {path}"));
            expect.add(source, "unsupported_media_type");
        }
        // A content coding is not read: a JSON body said to be gzip'd is refused, not guessed.
        let body = serde_json::to_vec(&good_body(path)).unwrap();
        let headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ];
        let resp = request(&d.addr, "POST", path, &headers, &body);
        refused(&resp, 415, &format!("Content-Encoding gzip to {path}"));
        expect.add(source, "unsupported_media_type");
    }

    // Too large: valid JSON, 2000 bytes, limit 1024.
    for (path, source) in ENDPOINTS {
        let mut body = good_body(path);
        let pad = "x".repeat(2000);
        match path {
            "/api/v2/alerts" => body[0]["annotations"]["pad"] = json!(pad),
            "/api/v1/webhook/alertmanager" => body["alerts"][0]["annotations"]["pad"] = json!(pad),
            "/api/v1/events/pagerduty" => body["payload"]["summary"] = json!(pad),
            _ => body["alerts"][0]["annotations"] = json!({ "pad": pad }),
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(bytes.len() > 2000);
        refused(
            &d.post_json(path, bytes),
            413,
            &format!("2000 bytes to {path}"),
        );
        expect.add(source, "body_too_large");
    }

    // Empty labels.
    refused(
        &d.post_json("/api/v2/alerts", json!([{"labels": {}, "annotations": {}}])),
        400,
        "v2 alert with empty labels",
    );
    expect.add("alertmanager", "invalid_alert");
    refused(
        &d.post_json(
            "/api/v1/alerts",
            json!({"alerts": [{"labels": {}, "status": "firing"}]}),
        ),
        400,
        "native alert with empty labels",
    );
    expect.add("native", "invalid_alert");
    let mut hook = good_body("/api/v1/webhook/alertmanager");
    hook["alerts"][0]["labels"] = json!({});
    refused(
        &d.post_json("/api/v1/webhook/alertmanager", &hook),
        400,
        "webhook alert with empty labels",
    );
    expect.add("webhook", "invalid_alert");

    // Native: an unknown field is refused, and the answer names it.
    let v = refused(
        &d.post_json(
            "/api/v1/alerts",
            json!({"alerts": [{"labels": {"alertname": "X"}, "status": "firing", "bogus_field": 1}]}),
        ),
        400,
        "native alert with an unknown field",
    );
    assert!(
        v.to_string().contains("bogus_field"),
        "the answer does not name the unknown field: {v}"
    );
    // JSON of the wrong shape is refused by the JSON reader, with line and column: malformed_json.
    expect.add("native", "malformed_json");

    // Unknown routes and wrong methods: not ingest requests, not counted.
    for (method, path) in [
        ("GET", "/api/v1/nope"),
        ("POST", "/nope"),
        ("GET", "/api/v3/alerts"),
    ] {
        let resp = request(
            &d.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        refused(&resp, 404, &format!("{method} {path}"));
    }
    for (method, path) in [
        ("PUT", "/api/v2/alerts"),
        ("DELETE", "/api/v1/alerts"),
        ("GET", "/api/v1/webhook/alertmanager"),
        ("GET", "/api/v1/events/pagerduty"),
        ("DELETE", "/api/v1/incidents"),
        ("POST", "/-/healthy"),
    ] {
        let resp = request(
            &d.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        refused(&resp, 405, &format!("{method} {path}"));
    }

    // Every rejection counted with its source and reason, and nothing else counted. Mismatches
    // are collected and reported at the end, after the health checks below have run too.
    let m = d.metrics();
    let mut mismatches = Vec::new();
    for ((source, reason), n) in &expect.0 {
        let got = metric_value(
            &m,
            "triaged_alerts_rejected_total",
            &[("source", source), ("reason", reason)],
        );
        if got != Some(*n) {
            mismatches.push(format!(
                "triaged_alerts_rejected_total{{source={source:?},reason={reason:?}}} = {got:?}, \
                 expected {n}"
            ));
        }
    }
    for s in parse_metrics(&m) {
        if s.name != "triaged_alerts_rejected_total" || s.value == 0.0 {
            continue;
        }
        let key = (
            s.labels.get("source").cloned().unwrap_or_default(),
            s.labels.get("reason").cloned().unwrap_or_default(),
        );
        if !expect
            .0
            .keys()
            .any(|(src, r)| (src.to_string(), r.to_string()) == key)
        {
            mismatches.push(format!(
                "unexpected triaged_alerts_rejected_total{:?} = {}",
                s.labels, s.value
            ));
        }
    }
    let expected_total: f64 = expect.0.values().sum();
    let total = metric_sum(&m, "triaged_alerts_rejected_total", &[]);
    if total != expected_total {
        mismatches.push(format!(
            "sum of triaged_alerts_rejected_total = {total}, expected {expected_total}"
        ));
    }

    // Nothing of it was taken in.
    assert!(
        d.all_incidents("").is_empty(),
        "a refused request opened an incident"
    );

    // Still healthy, and still ingesting on every endpoint.
    assert_eq!(d.get("/-/healthy").status, 200);
    assert_eq!(d.get("/-/ready").status, 200);
    for (path, _) in ENDPOINTS {
        let resp = d.post_json(path, good_body(path));
        assert!(
            resp.status == 200 || resp.status == 202,
            "good request to {path} after the bad ones: {resp}"
        );
    }
    let open = d.all_incidents("state=open");
    assert!(!open.is_empty(), "the good alerts opened nothing");
    let fp = fingerprint(&json!({"alertname": "Good", "service": "ok", "severity": "warning"}));
    let (status, a) = d.alert(&fp);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["tier"], "L1", "{a}");

    assert!(
        mismatches.is_empty(),
        "rejections miscounted:\n  {}\n{m}",
        mismatches.join("\n  ")
    );
}

/// Times Go's RFC 3339 parser cannot read (a year past 9999 or before 0000, a leap second) are
/// refused with a 400 naming the alert and the field, in every format and for silences:
/// stored, one would be written back in `GET /api/v2/alerts` (`/silences`) and make amtool
/// fail on every listing.
#[test]
fn times_alertmanager_clients_cannot_read_are_refused_naming_alert_and_field() {
    let d = Daemon::with("");
    let l = json!({"alertname": "BadTime"});
    for (path, source, body, says) in [
        (
            "/api/v2/alerts",
            "alertmanager",
            json!([{"labels": {"alertname": "Fine"}},
                   {"labels": l, "startsAt": "+10000-01-01T00:00:00Z"}]),
            "alert 1: startsAt +10000-01-01T00:00:00Z",
        ),
        (
            "/api/v2/alerts",
            "alertmanager",
            json!([{"labels": l, "startsAt": "2016-12-31T23:59:60Z"}]),
            "alert 0: startsAt 2016-12-31T23:59:60Z",
        ),
        (
            "/api/v2/alerts",
            "alertmanager",
            json!([{"labels": l, "endsAt": "9999-12-31T23:30:00-01:00"}]),
            "alert 0: endsAt +10000-01-01T00:30:00Z",
        ),
        (
            "/api/v1/webhook/alertmanager",
            "webhook",
            json!({"version": "4", "alerts": [{"status": "firing", "labels": l,
                                                "startsAt": "-0001-06-01T00:00:00Z"}]}),
            "alert 0: startsAt -0001-06-01T00:00:00Z",
        ),
        (
            "/api/v1/alerts",
            "native",
            json!([{"labels": l, "ends_at": "+12345-01-01T00:00:00Z"}]),
            "alert 0: ends_at +12345-01-01T00:00:00Z",
        ),
        (
            "/api/v1/events/pagerduty",
            "pagerduty",
            json!({"routing_key": "R0UT1NGKEY0000000000000000000000", "event_action": "trigger",
                   "payload": {"summary": "s", "source": "h", "severity": "info",
                               "timestamp": "2016-12-31T23:59:60Z"}}),
            "payload.timestamp 2016-12-31T23:59:60Z",
        ),
    ] {
        let v = refused(&d.post_json(path, &body), 400, &format!("{body} to {path}"));
        let detail = v.to_string();
        assert!(detail.contains(says), "{path}: {v}");
        assert!(detail.contains("years 0000 to 9999"), "{path}: {v}");
        assert!(
            d.metric(
                "triaged_alerts_rejected_total",
                &[("source", source), ("reason", "invalid_alert")]
            ) >= 1.0,
            "{path}: not counted"
        );
    }
    // Nothing was stored: the listing amtool reads stays readable (and empty).
    let (status, listed) = d.get_json("/api/v2/alerts");
    assert_eq!((status, listed), (200, json!([])));

    let mut silence = fixture_json("amtool-0.25-silence-add.json");
    silence["startsAt"] = json!(rfc3339_in(0.0));
    silence["endsAt"] = json!("+10000-01-01T00:00:00Z");
    let v = refused(&d.post_json("/api/v2/silences", &silence), 400, "silence");
    assert!(
        v.to_string()
            .contains("endsAt +10000-01-01T00:00:00Z is out of the range"),
        "{v}"
    );
    let (status, listed) = d.get_json("/api/v2/silences");
    assert_eq!((status, listed), (200, json!([])));
}

/// Regression (QA of the formats, F2): an API v2 alert with a `startsAt` later than its expiry
/// without `endsAt` (received + `dedup.resolve_timeout`) was taken, and stored and listed with its
/// end before its start once it expired. Alertmanager refuses it ("start time must be before end
/// time"); so does triaged now, the whole request, naming the alert.
#[test]
fn an_alert_that_would_expire_before_it_starts_is_refused() {
    let d = Daemon::with("");
    let body = json!([{"labels": {"alertname": "Fine"}},
                      {"labels": {"alertname": "Future"}, "startsAt": "9999-12-31T23:59:59Z"}]);
    let v = refused(
        &d.post_json("/api/v2/alerts", &body),
        400,
        "a start after its expiry",
    );
    assert_eq!(v["error"], "invalid alert", "{v}");
    assert!(
        v.to_string().contains(
            "alert 1: startsAt 9999-12-31T23:59:59Z is after the alert would expire without an endsAt"
        ),
        "{v}"
    );
    let (status, listed) = d.get_json("/api/v2/alerts");
    assert_eq!(
        (status, listed),
        (200, json!([])),
        "nothing of the request stored"
    );
    // Counted as the invalid alert it is, and not as received (QA re-verification, N1).
    let source = ("source", "alertmanager");
    assert_eq!(
        d.metric(
            "triaged_alerts_rejected_total",
            &[source, ("reason", "invalid_alert")]
        ),
        1.0
    );
    assert_eq!(d.metric("triaged_alerts_received_total", &[source]), 0.0);

    // Within the resolve timeout (5m), or with an endsAt after it, it is taken, as Alertmanager
    // takes it; and a webhook's alert, which never expires by itself, too.
    for (path, body) in [
        (
            "/api/v2/alerts",
            json!([{"labels": {"alertname": "Soon"}, "startsAt": rfc3339_in(60.0)}]),
        ),
        (
            "/api/v2/alerts",
            json!([{"labels": {"alertname": "Later"}, "startsAt": rfc3339_in(3600.0),
                    "endsAt": rfc3339_in(7200.0)}]),
        ),
        (
            "/api/v1/webhook/alertmanager",
            json!({"version": "4", "alerts": [{"status": "firing",
                   "labels": {"alertname": "Hooked"}, "startsAt": rfc3339_in(3600.0)}]}),
        ),
    ] {
        let r = d.post_json(path, &body);
        assert_eq!(r.status, 200, "{body}: {r}");
    }
    let (_, listed) = d.get_json("/api/v2/alerts");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
}

/// Errors under `/api/v2/` (Alertmanager's API) are its bare JSON strings for 400, 404 and 500,
/// as its OpenAPI spec has them and amtool reads them; triaged's own API keeps its object.
#[test]
fn alertmanager_api_errors_are_bare_strings_and_triageds_own_are_objects() {
    let d = Daemon::with("");
    let bad_alert = json!([{"labels": {}}]);
    for (method, path, body, status) in [
        ("POST", "/api/v2/alerts", bad_alert.to_string(), 400),
        ("POST", "/api/v2/silences", "{}".to_string(), 400),
        (
            "GET",
            "/api/v2/silence/00000000-0000-4000-8000-000000000000",
            String::new(),
            404,
        ),
    ] {
        let r = request(
            &d.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, status, "{method} {path}: {r}");
        let v = r.json();
        assert!(
            v.as_str().is_some_and(|text| text.contains(": ")),
            "{method} {path}: not a bare \"<error>: <detail>\" string: {v}"
        );
    }
    let r = d.post_json("/api/v1/alerts", &bad_alert);
    assert_eq!(r.status, 400, "{r}");
    let v = r.json();
    assert!(v["error"].is_string() && v["detail"].is_string(), "{v}");
}

/// serde's derived structs read a JSON array too, fields by position: a silence posted as
/// `[null, [matchers], startsAt, endsAt, createdBy, comment]` was created, and an action body
/// read from an array. Both are refused as JSON of the wrong shape, and change nothing.
#[test]
fn object_bodies_sent_as_arrays_are_refused() {
    let d = Daemon::with("");
    let (start, end) = (rfc3339_in(0.0), rfc3339_in(3600.0));
    let matcher = json!({"name": "alertname", "value": "ArrSil", "isRegex": false});
    for body in [
        json!([null, [matcher], start, end, "me", "array-shaped silence"]),
        json!({"matchers": [["alertname", "ArrSil", false, true]], "startsAt": start,
               "endsAt": end, "createdBy": "me", "comment": "array-shaped matcher"}),
    ] {
        let v = refused(&d.post_json("/api/v2/silences", &body), 400, "silence");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("JSON of the wrong shape: ")
                && detail.contains("expected a JSON object at line 1 column "),
            "{body}: {v}"
        );
    }
    let (status, listed) = d.get_json("/api/v2/silences");
    assert_eq!((status, listed), (200, json!([])));

    let resp = d.post_json(
        "/api/v2/alerts",
        json!([{"labels": {"alertname": "ArrAct", "severity": "warning"}}]),
    );
    assert_eq!(resp.status, 200, "{resp}");
    for (action, body) in [
        ("ack", json!(["alice"])),
        ("escalate", json!(["alice", "needs a DBA", null, "L3"])),
        ("assign", json!([])),
    ] {
        let v = refused(&d.action("INC-1", action, body.clone()), 400, action);
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("JSON of the wrong shape: ")
                && detail.contains("expected a JSON object at line 1 column "),
            "{action} {body}: {v}"
        );
    }
    let incident = d.incident("INC-1");
    assert_eq!(
        (&incident["state"], &incident["tier"], &incident["assignee"]),
        (&json!("open"), &json!("L1"), &Value::Null),
        "{incident}"
    );
    // An object still does.
    let resp = d.action("INC-1", "ack", json!({"actor": "alice"}));
    assert_eq!(resp.status, 200, "{resp}");
}

/// A label given twice, and a missing field, are refused naming the alert (its 0-based
/// position in the request) with line and column, counted as malformed_json.
#[test]
fn duplicate_labels_and_missing_fields_name_the_alert() {
    let d = Daemon::with("");
    for (path, body, says) in [
        (
            "/api/v2/alerts",
            &br#"[{"labels":{"alertname":"X","alertname":"Y"}}]"#[..],
            "alert 0: duplicate label `alertname` at line 1 column 39",
        ),
        (
            "/api/v2/alerts",
            br#"[{"labels":{"alertname":"ok"}},{"annotations":{}}]"#,
            "alert 1: missing field `labels` at line 1 column 49",
        ),
        (
            "/api/v1/alerts",
            br#"{"alerts":[{"labels":{"a":"b"}},{"labels":{"a":"b"},"annotations":{"s":"1","s":"2"}}]}"#,
            "alert 1: duplicate annotation `s` at line 1 column ",
        ),
        (
            "/api/v1/webhook/alertmanager",
            br#"{"version":"4","alerts":[{"status":"firing","labels":{"a":"b","a":"c"}}]}"#,
            "alert 0: duplicate label `a` at line 1 column ",
        ),
    ] {
        let v = refused(&d.post_json(path, body), 400, path);
        assert_eq!(v["error"], "JSON of the wrong shape", "{path}: {v}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(says), "{path}: {v}");
    }
    assert_eq!(
        d.metric(
            "triaged_alerts_rejected_total",
            &[("source", "alertmanager"), ("reason", "malformed_json")]
        ),
        2.0
    );
    assert!(
        d.all_incidents("").is_empty(),
        "a refused alert was taken in"
    );
}
