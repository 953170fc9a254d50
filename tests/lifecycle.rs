//! The incident lifecycle of issue 3 against the real daemon: escalation deadlines (ack and
//! resolve timeouts, across restarts), reopening within `dedup.reopen_window`, silences over
//! Alertmanager's API v2 (by hand and with the real amtool), the L4 vendor handover and
//! de-escalation, and flapping alerts.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};

/// Long enough for any deadline of a few seconds to come due and be applied.
const DEADLINE_WAIT: Duration = Duration::from_secs(20);

fn alert_labels<'a>(alertname: &'a str, severity: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("alertname", alertname),
        ("service", "lifecycle"),
        ("severity", severity),
    ]
}

/// Fire one alert that opens (or joins) an incident; returns the incident id.
fn open(d: &Daemon, alertname: &str, severity: &str) -> String {
    let resp = post_native(
        d,
        vec![native_alert(&alert_labels(alertname, severity), "firing")],
    );
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "firing {alertname}: {resp}");
    ids[0].clone()
}

fn ok_incident(resp: &Response, id: &str) -> Value {
    assert_eq!(resp.status, 200, "{resp}");
    let v = resp.json();
    assert_eq!(v["id"], id, "{v}");
    v
}

/// An answer of the documented error shape with that status.
fn assert_error(resp: &Response, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {resp}");
    let v = resp.error_body();
    assert!(
        v["error"].is_string(),
        "{what}: error body without \"error\": {v}"
    );
}

fn timeline(inc: &Value) -> &Vec<Value> {
    inc["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("incident without a timeline: {inc}"))
}

fn kinds(inc: &Value) -> Vec<String> {
    timeline(inc)
        .iter()
        .map(|e| e["kind"].as_str().expect("event kind").to_string())
        .collect()
}

fn events<'a>(inc: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline(inc).iter().filter(|e| e["kind"] == kind).collect()
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

/// Deadlines are kept to the millisecond.
fn trunc_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(3)
}

/// Wait until the incident is at `tier`; returns it.
fn await_tier(d: &Daemon, id: &str, tier: &str) -> Value {
    poll_until_for(&format!("{id} at {tier}"), DEADLINE_WAIT, || {
        let inc = d.incident(id);
        if inc["tier"] == tier {
            Ok(inc)
        } else {
            Err(format!("tier {} state {}", inc["tier"], inc["state"]))
        }
    })
}

// ---- escalation deadlines ---------------------------------------------------------------------

#[test]
fn an_unacknowledged_incident_escalates_at_its_ack_timeout_and_an_acknowledged_one_does_not() {
    // 4 s: the test reads the incident at L1 before it escalates, on a machine that may stall.
    let d = Daemon::with("[escalation.L1]\nack_timeout = \"4s\"\n");
    // The acknowledged one opens first: its deadline, had it kept one, would fall before the
    // other's.
    let acked = open(&d, "AckedInTime", "warning");
    let v = ok_incident(
        &d.action(&acked, "ack", json!({"actor": "alice", "reason": "on it"})),
        &acked,
    );
    assert!(
        v["ack_deadline"].is_null(),
        "an acknowledged incident keeps an ack deadline: {v}"
    );

    let id = open(&d, "NobodyAcks", "warning");
    let inc = d.incident(&id);
    assert_eq!(
        (&inc["tier"], &inc["state"]),
        (&json!("L1"), &json!("open"))
    );
    let tier_since = parse_time(&inc["tier_since"]);
    let deadline = parse_time(&inc["ack_deadline"]);
    assert_eq!(
        deadline,
        trunc_ms(tier_since + chrono::Duration::seconds(4)),
        "ack_deadline is tier_since + ack_timeout: {inc}"
    );

    let inc = await_tier(&d, &id, "L2");
    assert_eq!(
        inc["state"], "open",
        "the new tier has to acknowledge: {inc}"
    );
    let esc = events(&inc, "escalated");
    assert_eq!(esc.len(), 1, "{inc}");
    let e = esc[0];
    assert_eq!(
        (&e["from"], &e["to"], &e["reason"], &e["actor"]),
        (
            &json!("L1"),
            &json!("L2"),
            &json!("ack_timeout"),
            &json!("triaged")
        ),
        "{e}"
    );
    let escalated_at = parse_time(&e["at"]);
    assert!(
        escalated_at >= deadline,
        "escalated at {escalated_at}, before its deadline {deadline}"
    );
    // At L2 the clock starts again, with L2's ack timeout (default 30m).
    assert_eq!(parse_time(&inc["tier_since"]), escalated_at, "{inc}");
    assert_eq!(
        parse_time(&inc["ack_deadline"]),
        trunc_ms(escalated_at + chrono::Duration::minutes(30)),
        "{inc}"
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L2"), ("reason", "ack_timeout")]
        ),
        1.0
    );

    // By now the acknowledged incident's would-be deadline has passed too.
    let other = d.incident(&acked);
    assert_eq!(other["tier"], "L1", "{other}");
    assert_eq!(other["state"], "acknowledged", "{other}");
    assert_eq!(kinds(&other), ["opened", "acknowledged"], "{other}");
    let m = d.metrics();
    assert_eq!(
        metric_sum(&m, "triaged_incidents_escalated_total", &[]),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "triaged_incidents_open", &[("tier", "L1")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "triaged_incidents_open", &[("tier", "L2")]),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn an_acknowledged_but_unresolved_incident_escalates_at_its_resolve_timeout() {
    let d = Daemon::with("[escalation.L1]\nack_timeout = \"15m\"\nresolve_timeout = \"2s\"\n");
    let id = open(&d, "NeverResolved", "minor");
    let v = ok_incident(&d.action(&id, "ack", json!({"actor": "alice"})), &id);
    assert_eq!(v["state"], "acknowledged", "{v}");
    assert!(v["ack_deadline"].is_null(), "{v}");
    let deadline = parse_time(&v["resolve_deadline"]);
    assert_eq!(
        deadline,
        trunc_ms(parse_time(&v["tier_since"]) + chrono::Duration::seconds(2)),
        "{v}"
    );

    let inc = await_tier(&d, &id, "L2");
    assert_eq!(
        inc["state"], "open",
        "the new tier has to acknowledge: {inc}"
    );
    let esc = events(&inc, "escalated");
    assert_eq!(esc.len(), 1, "{inc}");
    assert_eq!(esc[0]["reason"], "resolve_timeout", "{inc}");
    assert!(parse_time(&esc[0]["at"]) >= deadline, "{inc}");
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L2"), ("reason", "resolve_timeout")]
        ),
        1.0
    );
}

#[test]
fn a_deadline_survives_a_restart_and_fires_exactly_once() {
    // 6 s: a stop and a restart must fit before the deadline (about 0.2 s here, unloaded).
    let mut d = Daemon::with("[escalation.L1]\nack_timeout = \"6s\"\n");
    let id = open(&d, "AcrossRestarts", "warning");
    let before = d.incident(&id);
    let deadline = parse_time(&before["ack_deadline"]);

    let status = d.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    d.restart();
    assert!(
        Utc::now() < deadline,
        "the restart took until past the deadline {deadline}: the test proves nothing"
    );
    let inc = d.incident(&id);
    assert_eq!(inc["tier"], "L1", "escalated before its deadline: {inc}");
    assert_eq!(
        inc["ack_deadline"], before["ack_deadline"],
        "the deadline moved across the restart"
    );

    let inc = await_tier(&d, &id, "L2");
    // A later condition: an ingest answered after the escalation was seen means the writer has
    // made at least one more pass over due deadlines.
    let later = open(&d, "AfterTheEscalation", "warning");
    assert_ne!(later, id);
    let inc_now = d.incident(&id);
    let esc = events(&inc_now, "escalated");
    assert_eq!(esc.len(), 1, "escalated more than once: {inc_now}");
    assert_eq!(esc[0]["reason"], "ack_timeout", "{inc_now}");
    assert!(parse_time(&esc[0]["at"]) >= deadline, "{inc_now}");
    assert_eq!(inc_now["timeline"], inc["timeline"], "{inc_now}");
    let m = d.metrics();
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L2"), ("reason", "ack_timeout")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "triaged_incidents_escalated_total", &[]),
        1.0,
        "{m}"
    );

    // A crash after it fired does not fire it again.
    d.kill9();
    d.restart();
    open(&d, "AfterTheCrash", "warning");
    let inc = d.incident(&id);
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert_eq!(
        events(&inc, "escalated").len(),
        1,
        "the deadline fired again after a crash: {inc}"
    );
    assert_eq!(
        metric_sum(&d.metrics(), "triaged_incidents_escalated_total", &[]),
        0.0,
        "the restarted daemon escalated something"
    );
}

// ---- reopen -----------------------------------------------------------------------------------

#[test]
fn an_alert_firing_again_within_the_reopen_window_reopens_its_incident() {
    let d = Daemon::with("");
    let l = alert_labels("ComesBack", "warning");
    let id = open(&d, "ComesBack", "warning");
    let resp = post_native(&d, vec![native_alert(&l, "resolved")]);
    assert_eq!(touched(&resp), vec![id.clone()], "{resp}");
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "resolved", "{inc}");

    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    assert_eq!(touched(&resp), vec![id.clone()], "not reopened: {resp}");
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L1", "{inc}");
    assert_eq!(inc["reopen_count"], 1, "{inc}");
    assert!(inc["resolved_at"].is_null(), "{inc}");
    assert_eq!(
        inc["reopened_at"].as_array().map(Vec::len),
        Some(1),
        "{inc}"
    );
    assert_eq!(
        (&inc["alert_count"], &inc["firing_count"]),
        (&json!(1), &json!(1)),
        "{inc}"
    );
    assert_eq!(kinds(&inc), ["opened", "resolved", "reopened"], "{inc}");
    assert_eq!(d.all_incidents("").len(), 1);
    let m = d.metrics();
    assert_eq!(
        metric_value(&m, "triaged_incidents_reopened_total", &[("tier", "L1")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_opened_total",
            &[("tier", "L1"), ("severity", "warning")]
        ),
        Some(1.0),
        "a reopen counted as an opening: {m}"
    );
    assert_eq!(
        metric_value(&m, "triaged_incidents_open", &[("tier", "L1")]),
        Some(1.0),
        "{m}"
    );

    // The reopened incident still follows its member.
    post_native(&d, vec![native_alert(&l, "resolved")]);
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(
        d.metric("triaged_incidents_auto_resolved_total", &[("tier", "L1")]),
        2.0
    );
}

#[test]
fn an_alert_firing_again_after_the_reopen_window_opens_a_new_incident() {
    let d = Daemon::with("[dedup]\nreopen_window = \"2s\"\n");
    let l = alert_labels("ComesBackLate", "warning");
    let first = open(&d, "ComesBackLate", "warning");

    // Within the window (at once): reopened.
    post_native(&d, vec![native_alert(&l, "resolved")]);
    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    assert_eq!(touched(&resp), vec![first.clone()], "{resp}");
    assert_eq!(d.incident(&first)["reopen_count"], 1);

    // After it: a new incident.
    post_native(&d, vec![native_alert(&l, "resolved")]);
    let inc = d.incident(&first);
    assert_eq!(inc["state"], "resolved", "{inc}");
    let resolved_at = parse_time(&inc["resolved_at"]);
    let window_end = resolved_at + chrono::Duration::seconds(2) + ms(100);
    poll_until_for(
        "the clock past the reopen window",
        Duration::from_secs(10),
        || {
            if Utc::now() > window_end {
                Ok(())
            } else {
                Err(Utc::now())
            }
        },
    );
    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    let ids = touched(&resp);
    assert_eq!(ids.len(), 1, "{resp}");
    let second = ids[0].clone();
    assert_ne!(second, first, "reopened after the window: {resp}");
    let old = d.incident(&first);
    assert_eq!(old["state"], "resolved", "{old}");
    assert_eq!(old["reopen_count"], 1, "{old}");
    let new = d.incident(&second);
    assert_eq!(new["state"], "open", "{new}");
    assert_eq!(new["reopen_count"], 0, "{new}");
    assert_eq!(kinds(&new), ["opened"], "{new}");
    let m = d.metrics();
    assert_eq!(
        metric_sum(&m, "triaged_incidents_reopened_total", &[]),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_opened_total",
            &[("tier", "L1"), ("severity", "warning")]
        ),
        Some(2.0),
        "{m}"
    );
}

// ---- silences ---------------------------------------------------------------------------------

/// A silence body in the shape amtool sends (the captured fixture), with these matchers and
/// times relative to now.
fn silence_body(matchers: Value, starts_in: f64, ends_in: f64) -> Value {
    let mut s = fixture_json("amtool-0.25-silence-add.json");
    s["matchers"] = matchers;
    s["startsAt"] = json!(rfc3339_in(starts_in));
    s["endsAt"] = json!(rfc3339_in(ends_in));
    s
}

fn eq_matcher(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value, "isRegex": false, "isEqual": true})
}

/// POST a silence, assert 200 and return its id.
fn create_silence(d: &Daemon, body: &Value) -> String {
    let resp = d.post_json("/api/v2/silences", body);
    assert_eq!(resp.status, 200, "POST /api/v2/silences {body}: {resp}");
    let v = resp.json();
    let id = v["silenceID"]
        .as_str()
        .unwrap_or_else(|| panic!("no silenceID: {v}"))
        .to_string();
    assert!(uuid_like(&id), "silenceID {id:?} is not a UUID");
    id
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn get_silence(d: &Daemon, id: &str) -> Value {
    let (status, v) = d.get_json(&format!("/api/v2/silence/{id}"));
    assert_eq!(status, 200, "GET /api/v2/silence/{id}: {v}");
    v
}

fn silences(d: &Daemon) -> Vec<Value> {
    let (status, v) = d.get_json("/api/v2/silences");
    assert_eq!(status, 200, "GET /api/v2/silences: {v}");
    v.as_array()
        .unwrap_or_else(|| panic!("GET /api/v2/silences is not an array: {v}"))
        .clone()
}

fn delete(d: &Daemon, path: &str) -> Response {
    request(&d.addr, "DELETE", path, &[], b"")
}

/// The incidents whose group key names this alertname.
fn incidents_of(d: &Daemon, alertname: &str) -> Vec<Value> {
    let needle = format!("alertname=\"{alertname}\"");
    d.all_incidents("")
        .into_iter()
        .filter(|i| i["group_key"].as_str().unwrap_or("").contains(&needle))
        .collect()
}

/// Wait until exactly one incident of `alertname` exists; returns it.
fn await_incident_of(d: &Daemon, alertname: &str) -> Value {
    poll_until_for(
        &format!("an incident for {alertname}"),
        DEADLINE_WAIT,
        || {
            let found = incidents_of(d, alertname);
            match found.len() {
                1 => Ok(found[0].clone()),
                n => Err(format!("{n} incidents")),
            }
        },
    )
}

#[test]
fn a_silence_holds_matching_alerts_until_it_is_expired() {
    let d = Daemon::with("");
    let body = silence_body(
        json!([eq_matcher("alertname", "InMaintenance")]),
        0.0,
        3600.0,
    );
    let sid = create_silence(&d, &body);

    let s = get_silence(&d, &sid);
    assert_eq!(s["id"], sid.as_str(), "{s}");
    assert_eq!(s["status"]["state"], "active", "{s}");
    assert_eq!(s["matchers"], body["matchers"], "{s}");
    assert_eq!(s["createdBy"], body["createdBy"], "{s}");
    assert_eq!(s["comment"], body["comment"], "{s}");
    for key in ["startsAt", "endsAt", "updatedAt"] {
        parse_time(&s[key]);
    }
    let listed = silences(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], sid.as_str());
    assert_eq!(listed[0]["status"]["state"], "active");

    // A matching alert is stored and counted, and opens nothing.
    let held = alert_labels("InMaintenance", "critical");
    let resp = post_native(&d, vec![native_alert(&held, "firing")]);
    assert_eq!(resp["silenced"], 1, "{resp}");
    assert!(
        touched(&resp).is_empty(),
        "a silenced alert touched: {resp}"
    );
    let fp = fingerprint(&labels(&held));
    let (status, a) = d.alert(&fp);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["silenced_by"], sid.as_str(), "{a}");
    assert_eq!(a["status"], "firing", "{a}");
    assert!(a["incident"].is_null(), "{a}");
    // One that fired and resolved while silenced has nothing to open afterwards.
    let gone = [
        ("alertname", "InMaintenance"),
        ("service", "lifecycle"),
        ("severity", "critical"),
        ("instance", "gone"),
    ];
    let resp = post_native(&d, vec![native_alert(&gone, "firing")]);
    assert_eq!(resp["silenced"], 1, "{resp}");
    post_native(&d, vec![native_alert(&gone, "resolved")]);
    assert!(incidents_of(&d, "InMaintenance").is_empty());
    assert_eq!(
        d.metric("triaged_alerts_suppressed_total", &[("reason", "silence")]),
        2.0
    );

    // A non-matching alert opens as usual.
    let other = open(&d, "NotInMaintenance", "critical");
    assert_eq!(d.incident(&other)["state"], "open");

    // Expired by hand: the alert it held (still firing) is triaged now.
    let resp = delete(&d, &format!("/api/v2/silence/{sid}"));
    assert_eq!(resp.status, 200, "DELETE /api/v2/silence/{sid}: {resp}");
    let s = get_silence(&d, &sid);
    assert_eq!(s["status"]["state"], "expired", "{s}");
    assert!(parse_time(&s["endsAt"]) <= Utc::now(), "{s}");
    let inc = await_incident_of(&d, "InMaintenance");
    assert_eq!(
        (&inc["tier"], &inc["severity"], &inc["state"]),
        (&json!("L3"), &json!("critical"), &json!("open")),
        "{inc}"
    );
    let id = inc["id"].as_str().unwrap();
    let detail = d.incident(id);
    let members: Vec<&str> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        [fp.as_str()],
        "only the still-firing alert: {detail}"
    );
    let (_, a) = d.alert(&fp);
    assert!(a["silenced_by"].is_null(), "{a}");
    assert_eq!(a["incident"], id, "{a}");
    assert_eq!(
        d.metric(
            "triaged_incidents_opened_total",
            &[("tier", "L3"), ("severity", "critical")]
        ),
        2.0
    );

    // An expired silence holds nothing.
    let later = alert_labels("InMaintenance", "critical");
    let resp = post_native(
        &d,
        vec![native_alert(
            &[later[0], later[1], later[2], ("instance", "later")],
            "firing",
        )],
    );
    assert_eq!(resp["silenced"], 0, "{resp}");
    assert_eq!(touched(&resp), vec![id.to_string()], "{resp}");
}

#[test]
fn a_silence_ends_by_itself_and_releases_what_it_held() {
    let d = Daemon::with("");
    let body = silence_body(
        json!([{"name": "alertname", "value": "Short.*", "isRegex": true, "isEqual": true}]),
        0.0,
        2.0,
    );
    let sid = create_silence(&d, &body);
    let ends_at = parse_time(&get_silence(&d, &sid)["endsAt"]);
    let resp = post_native(
        &d,
        vec![native_alert(
            &alert_labels("ShortWindow", "major"),
            "firing",
        )],
    );
    assert_eq!(resp["silenced"], 1, "{resp}");
    assert!(touched(&resp).is_empty(), "{resp}");

    let inc = await_incident_of(&d, "ShortWindow");
    assert_eq!(
        (&inc["tier"], &inc["state"]),
        (&json!("L2"), &json!("open")),
        "{inc}"
    );
    let opened_at = parse_time(&inc["opened_at"]);
    assert!(
        opened_at >= ends_at,
        "opened at {opened_at}, before the silence ended at {ends_at}"
    );
    let s = get_silence(&d, &sid);
    assert_eq!(s["status"]["state"], "expired", "{s}");
    let (_, a) = d.alert(&fingerprint(&labels(&alert_labels("ShortWindow", "major"))));
    assert!(a["silenced_by"].is_null(), "{a}");
}

/// `GET /api/v2/alerts` with `query`: the alerts listed.
fn alerts_listed(d: &Daemon, query: &str) -> Vec<Value> {
    let (status, v) = d.get_json(&format!("/api/v2/alerts{query}"));
    assert_eq!(status, 200, "GET /api/v2/alerts{query}: {v}");
    v.as_array()
        .unwrap_or_else(|| panic!("GET /api/v2/alerts{query} is not an array: {v}"))
        .clone()
}

/// The usual workflow: something fires and pages, the on-call silences it for maintenance. The
/// silence takes the firing alert at once, as Alertmanager does; its incident stays open but
/// escalates nothing until the silence is expired, and then gets a fresh ack window.
#[test]
fn a_silence_takes_an_alert_already_firing_and_its_incident_escalates_only_after_it() {
    let d = Daemon::with("[escalation.L1]\nack_timeout = \"3s\"\n");
    let id = open(&d, "FiringThenSilenced", "warning");
    let inc = d.incident(&id);
    assert_eq!(
        (&inc["tier"], &inc["state"]),
        (&json!("L1"), &json!("open")),
        "{inc}"
    );
    let first_deadline = parse_time(&inc["ack_deadline"]);

    let sid = create_silence(
        &d,
        &silence_body(
            json!([eq_matcher("alertname", "FiringThenSilenced")]),
            0.0,
            3600.0,
        ),
    );
    let inc = d.incident(&id);
    assert_eq!(
        inc["tier"], "L1",
        "escalated before the silence was set: {inc}"
    );
    assert!(
        inc["ack_deadline"].is_null(),
        "a silenced incident keeps a deadline: {inc}"
    );
    assert!(inc["escalation_held_since"].is_string(), "{inc}");
    assert_eq!(
        (&inc["silenced_count"], &inc["firing_count"]),
        (&json!(1), &json!(1)),
        "{inc}"
    );

    // Shown as Alertmanager shows a silenced alert, and hidden from amtool's default query.
    let labels_fired = alert_labels("FiringThenSilenced", "warning");
    let fp = fingerprint(&labels(&labels_fired));
    let filter = "?filter=alertname%3D%22FiringThenSilenced%22";
    let listed = alerts_listed(&d, filter);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["fingerprint"], fp.as_str(), "{listed:?}");
    assert_eq!(listed[0]["status"]["state"], "suppressed", "{listed:?}");
    assert_eq!(
        listed[0]["status"]["silencedBy"],
        json!([sid]),
        "{listed:?}"
    );
    let amtool_default =
        format!("{filter}&active=true&silenced=false&inhibited=false&unprocessed=false");
    assert!(alerts_listed(&d, &amtool_default).is_empty());
    let amtool_silenced =
        format!("{filter}&active=false&silenced=true&inhibited=false&unprocessed=false");
    assert_eq!(alerts_listed(&d, &amtool_silenced).len(), 1);
    let (_, a) = d.alert(&fp);
    assert_eq!(
        (&a["silenced_by"], &a["incident"]),
        (&json!(sid), &json!(id)),
        "{a}"
    );

    // A re-send is answered and counted as silenced.
    let suppressed = d.metric("triaged_alerts_suppressed_total", &[("reason", "silence")]);
    let resp = post_native(&d, vec![native_alert(&labels_fired, "firing")]);
    assert_eq!(
        (&resp["silenced"], &resp["deduplicated"]),
        (&json!(1), &json!(0)),
        "{resp}"
    );
    assert!(touched(&resp).is_empty(), "{resp}");
    assert_eq!(
        d.metric("triaged_alerts_suppressed_total", &[("reason", "silence")]),
        suppressed + 1.0
    );

    // Its first ack deadline passes (and the writer wakes for a deadline after it): no
    // escalation.
    wait_until("the first ack deadline to pass, and a second more", || {
        (Utc::now() > first_deadline + chrono::Duration::seconds(1)).then_some(())
    });
    let inc = d.incident(&id);
    assert_eq!(
        (&inc["tier"], &inc["state"]),
        (&json!("L1"), &json!("open")),
        "{inc}"
    );
    assert!(events(&inc, "escalated").is_empty(), "{inc}");

    // Expired by hand: the alert is unsilenced, and the incident escalates once a fresh ack
    // window from then has passed.
    let expired_at = trunc_ms(Utc::now());
    let resp = delete(&d, &format!("/api/v2/silence/{sid}"));
    assert_eq!(resp.status, 200, "DELETE /api/v2/silence/{sid}: {resp}");
    let (_, a) = d.alert(&fp);
    assert!(a["silenced_by"].is_null(), "{a}");
    assert_eq!(a["incident"], id.as_str(), "{a}");
    assert_eq!(alerts_listed(&d, filter)[0]["status"]["state"], "active");
    let inc = d.incident(&id);
    let read_at = Utc::now();
    assert_eq!(
        inc["tier"], "L1",
        "the deadline that fell due while silenced escalated it: {inc}"
    );
    let fresh_deadline = parse_time(&inc["ack_deadline"]);
    assert!(
        fresh_deadline >= expired_at + chrono::Duration::seconds(3)
            && fresh_deadline <= read_at + chrono::Duration::seconds(3),
        "the ack deadline {fresh_deadline} is not a fresh window from {expired_at}: {inc}"
    );
    let inc = await_tier(&d, &id, "L2");
    let esc = events(&inc, "escalated");
    assert_eq!(esc.len(), 1, "{inc}");
    assert_eq!(esc[0]["reason"], "ack_timeout", "{inc}");
    let escalated_at = parse_time(&esc[0]["at"]);
    assert!(
        escalated_at >= fresh_deadline,
        "escalated at {escalated_at}, before its fresh deadline {fresh_deadline}"
    );
    let resp = post_native(&d, vec![native_alert(&labels_fired, "firing")]);
    assert_eq!(
        (&resp["silenced"], &resp["deduplicated"]),
        (&json!(0), &json!(1)),
        "{resp}"
    );
    assert_eq!(incidents_of(&d, "FiringThenSilenced").len(), 1);
}

#[test]
fn invalid_silences_are_refused_and_unknown_ones_are_404() {
    let d = Daemon::with("");
    let good = silence_body(json!([eq_matcher("alertname", "X")]), 0.0, 3600.0);
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut b = good.clone();
    b["endsAt"] = json!(rfc3339_in(-60.0));
    b["startsAt"] = json!(rfc3339_in(-30.0));
    cases.push(("endsAt before startsAt", b));
    let mut b = good.clone();
    b["endsAt"] = json!(rfc3339_in(1800.0));
    b["startsAt"] = json!(rfc3339_in(3600.0));
    cases.push(("endsAt before startsAt, both ahead", b));
    let mut b = good.clone();
    b["matchers"] = json!([]);
    cases.push(("no matchers", b));
    let mut b = good.clone();
    b["matchers"] = json!([{"name": "alertname", "value": "(", "isRegex": true, "isEqual": true}]);
    cases.push(("a bad regex", b));
    let mut b = good.clone();
    b["matchers"] = json!([{"name": "alertname", "value": ".*", "isRegex": true, "isEqual": true}]);
    cases.push(("matchers that match every alert", b));
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("createdBy");
    cases.push(("no createdBy", b));
    let mut b = good.clone();
    b["startsAt"] = json!("yesterday");
    cases.push(("a time that is not RFC 3339", b));
    for (what, body) in &cases {
        assert_error(&d.post_json("/api/v2/silences", body), 400, what);
    }
    assert_error(
        &d.post_json("/api/v2/silences", "{\"matchers\": ["),
        400,
        "malformed JSON",
    );
    assert!(
        silences(&d).is_empty(),
        "a refused silence was stored: {:?}",
        silences(&d)
    );
    // The good one is fine, so the refusals were about what each case changed.
    create_silence(&d, &good);

    let unknown = "0b7a2f3c-4d5e-4f60-8a1b-2c3d4e5f6a7b";
    let (status, body) = d.get_json(&format!("/api/v2/silence/{unknown}"));
    assert_eq!(status, 404, "{body}");
    assert_error(
        &delete(&d, &format!("/api/v2/silence/{unknown}")),
        404,
        "DELETE of an unknown silence",
    );
    let (status, body) = d.get_json("/api/v2/silence/not-a-uuid");
    assert_eq!(status, 404, "{body}");
    assert_eq!(silences(&d).len(), 1);
}

/// A silence fetched with GET posts back edited, its read-only `status` and `updatedAt` ignored
/// as Alertmanager ignores them; any other unknown field is still refused.
#[test]
fn a_fetched_silence_posts_back_edited() {
    let d = Daemon::with("");
    let id = create_silence(
        &d,
        &silence_body(json!([eq_matcher("alertname", "RoundTrip")]), 0.0, 3600.0),
    );
    let (status, mut fetched) = d.get_json(&format!("/api/v2/silence/{id}"));
    assert_eq!(status, 200, "{fetched}");
    assert!(fetched["status"]["state"].is_string(), "{fetched}");
    assert!(fetched["updatedAt"].is_string(), "{fetched}");
    let mut unknown = fetched.clone();
    unknown["note"] = json!("x");
    let resp = d.post_json("/api/v2/silences", &unknown);
    assert_error(&resp, 400, "an unknown field");
    assert!(resp.text().contains("unknown field `note`"), "{resp}");

    fetched["comment"] = json!("extended maintenance");
    fetched["endsAt"] = json!(rfc3339_in(7200.0));
    assert_eq!(create_silence(&d, &fetched), id, "replaced, not added");
    let all = silences(&d);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["comment"], "extended maintenance", "{all:?}");
    assert_eq!(all[0]["status"]["state"], "active", "{all:?}");
}

// ---- the real amtool --------------------------------------------------------------------------

fn amtool_path() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("amtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("amtool is not installed: run tests/run.sh, which installs Debian's prometheus-alertmanager")
        })
}

/// Run amtool against the daemon with its own empty HOME (no user config); assert exit 0.
fn amtool(d: &Daemon, args: &[&str]) -> String {
    let home = d.dir().join("amtool-home");
    std::fs::create_dir_all(&home).unwrap();
    let out: Output = Command::new(amtool_path())
        .args(args)
        .arg(format!("--alertmanager.url=http://{}", d.addr))
        .arg("--timeout=10s")
        .env("HOME", &home)
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool {} exited {}:\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn amtool_adds_queries_and_expires_a_silence() {
    let d = Daemon::with("");
    let out = amtool(
        &d,
        &[
            "silence",
            "add",
            "alertname=AmtoolSilenced",
            "--comment=c",
            "--author=a",
            "--duration=1h",
        ],
    );
    let sid = out.trim().to_string();
    assert!(uuid_like(&sid), "amtool silence add printed {out:?}");
    let s = get_silence(&d, &sid);
    assert_eq!(s["status"]["state"], "active", "{s}");
    assert_eq!(s["createdBy"], "a", "{s}");
    assert_eq!(s["comment"], "c", "{s}");
    assert_eq!(s["matchers"][0]["name"], "alertname", "{s}");
    assert_eq!(s["matchers"][0]["value"], "AmtoolSilenced", "{s}");
    let length = parse_time(&s["endsAt"]) - parse_time(&s["startsAt"]);
    assert!(
        (length - chrono::Duration::hours(1)).num_seconds().abs() <= 60,
        "--duration=1h made a silence of {length}: {s}"
    );

    let listing = amtool(&d, &["silence", "query"]);
    assert!(
        listing.contains(&sid) && listing.contains("AmtoolSilenced"),
        "amtool silence query:\n{listing}"
    );
    let ids = amtool(&d, &["silence", "query", "-q"]);
    assert_eq!(
        ids.split_whitespace().collect::<Vec<_>>(),
        [sid.as_str()],
        "amtool silence query -q:\n{ids}"
    );

    // It silences.
    let l = alert_labels("AmtoolSilenced", "critical");
    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    assert_eq!(resp["silenced"], 1, "{resp}");

    amtool(&d, &["silence", "expire", &sid]);
    let s = get_silence(&d, &sid);
    assert_eq!(s["status"]["state"], "expired", "{s}");
    let ids = amtool(&d, &["silence", "query", "-q"]);
    assert!(
        ids.trim().is_empty(),
        "an expired silence is still listed as active:\n{ids}"
    );
    let ids = amtool(&d, &["silence", "query", "-q", "--expired"]);
    assert!(ids.contains(&sid), "amtool silence query --expired:\n{ids}");
    let inc = await_incident_of(&d, "AmtoolSilenced");
    assert_eq!(inc["tier"], "L3", "{inc}");
}

// ---- operators: handover, de-escalation, resolution -------------------------------------------

#[test]
fn the_l4_vendor_handover_and_de_escalation() {
    let d = Daemon::with("");
    let id = open(&d, "NeedsAVendor", "warning");
    let escalate = |body: Value| d.action(&id, "escalate", body);

    // Escalation requires a reason.
    assert_error(
        &escalate(json!({"actor": "alice", "to": "L3"})),
        400,
        "escalate without reason",
    );
    assert_error(
        &escalate(json!({"actor": "alice", "to": "L3", "reason": "  "})),
        400,
        "escalate with a blank reason",
    );
    assert_eq!(d.incident(&id)["tier"], "L1");

    let v = ok_incident(
        &escalate(json!({"actor": "alice", "to": "L3", "reason": "needs the storage team"})),
        &id,
    );
    assert_eq!(v["tier"], "L3", "{v}");

    // L4 needs the vendor.
    assert_error(
        &escalate(json!({"actor": "bob", "to": "L4", "reason": "hardware"})),
        400,
        "L4 without vendor",
    );
    assert_error(
        &escalate(json!({"actor": "bob", "reason": "hardware"})),
        400,
        "the next tier (L4) without vendor",
    );
    let inc = d.incident(&id);
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert!(inc["vendor"].is_null(), "{inc}");

    let v = ok_incident(
        &escalate(json!({
            "actor": "bob", "to": "L4", "reason": "controller fault",
            "vendor": "Acme", "vendor_ref": "CASE-42"
        })),
        &id,
    );
    assert_eq!(v["tier"], "L4", "{v}");
    assert_eq!(v["state"], "open", "{v}");
    assert_eq!(v["vendor"], "Acme", "{v}");
    assert_eq!(v["vendor_ref"], "CASE-42", "{v}");
    let inc = d.incident(&id);
    assert_eq!(
        (
            &inc["tier"],
            &inc["vendor"],
            &inc["vendor_ref"],
            &inc["opened_tier"]
        ),
        (
            &json!("L4"),
            &json!("Acme"),
            &json!("CASE-42"),
            &json!("L1")
        ),
        "{inc}"
    );
    let esc = events(&inc, "escalated");
    assert_eq!(esc.len(), 2, "{inc}");
    let e = esc[1];
    assert_eq!(
        (&e["from"], &e["to"], &e["reason"], &e["actor"]),
        (
            &json!("L3"),
            &json!("L4"),
            &json!("controller fault"),
            &json!("bob")
        ),
        "{e}"
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L3"), ("to", "L4"), ("reason", "manual")]
        ),
        1.0
    );

    // Nothing above L4.
    for body in [
        json!({"actor": "bob", "reason": "more"}),
        json!({"actor": "bob", "reason": "more", "to": "L4", "vendor": "Other"}),
    ] {
        assert_error(
            &escalate(body.clone()),
            409,
            &format!("escalate at L4: {body}"),
        );
    }
    let inc = d.incident(&id);
    assert_eq!(
        inc["vendor"], "Acme",
        "a refused escalation changed the vendor: {inc}"
    );
    assert_eq!(events(&inc, "escalated").len(), 2, "{inc}");

    // The handover is made from L3 only.
    let l2 = open(&d, "NotYetL3", "major");
    assert_eq!(d.incident(&l2)["tier"], "L2");
    assert_error(
        &d.action(
            &l2,
            "escalate",
            json!({"actor": "bob", "to": "L4", "reason": "skip", "vendor": "Acme", "vendor_ref": "CASE-43"}),
        ),
        409,
        "L4 from L2",
    );
    let inc = d.incident(&l2);
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert!(inc["vendor"].is_null(), "{inc}");

    // De-escalation: L3 -> L2 by default (one down), with a reason.
    ok_incident(
        &d.action(
            &l2,
            "escalate",
            json!({"actor": "carol", "reason": "looks bad"}),
        ),
        &l2,
    );
    assert_error(
        &d.action(&l2, "deescalate", json!({"actor": "carol"})),
        400,
        "de-escalate without reason",
    );
    assert_error(
        &d.action(
            &l2,
            "deescalate",
            json!({"actor": "carol", "reason": "up?", "to": "L4"}),
        ),
        409,
        "de-escalate upwards",
    );
    let v = ok_incident(
        &d.action(
            &l2,
            "deescalate",
            json!({"actor": "carol", "reason": "false alarm, L2 can handle it"}),
        ),
        &l2,
    );
    assert_eq!(v["tier"], "L2", "{v}");
    let inc = d.incident(&l2);
    let de = events(&inc, "de_escalated");
    assert_eq!(de.len(), 1, "{inc}");
    assert_eq!(
        (
            &de[0]["from"],
            &de[0]["to"],
            &de[0]["reason"],
            &de[0]["actor"]
        ),
        (
            &json!("L3"),
            &json!("L2"),
            &json!("false alarm, L2 can handle it"),
            &json!("carol")
        ),
        "{inc}"
    );
    assert_eq!(
        d.metric(
            "triaged_incidents_deescalated_total",
            &[("from", "L3"), ("to", "L2")]
        ),
        1.0
    );
    let v = ok_incident(
        &d.action(
            &l2,
            "deescalate",
            json!({"actor": "carol", "reason": "service desk", "to": "L1"}),
        ),
        &l2,
    );
    assert_eq!(v["tier"], "L1", "{v}");
    for body in [
        json!({"actor": "carol", "reason": "lower"}),
        json!({"actor": "carol", "reason": "lower", "to": "L0"}),
    ] {
        assert_error(
            &d.action(&l2, "deescalate", body.clone()),
            409,
            &format!("de-escalate below L1: {body}"),
        );
    }
    assert_eq!(d.incident(&l2)["tier"], "L1");

    assert_error(
        &d.action(
            "INC-999999",
            "deescalate",
            json!({"actor": "carol", "reason": "r"}),
        ),
        404,
        "de-escalate an unknown incident",
    );

    // Resolution with a note; nothing more on a resolved incident.
    let v = ok_incident(
        &d.action(
            &id,
            "resolve",
            json!({"actor": "bob", "note": "Acme replaced the controller"}),
        ),
        &id,
    );
    assert_eq!(v["state"], "resolved", "{v}");
    assert_eq!(v["resolution_note"], "Acme replaced the controller", "{v}");
    assert_eq!(
        d.incident(&id)["resolution_note"],
        "Acme replaced the controller"
    );
    let v = ok_incident(
        &d.action(&l2, "resolve", json!({"actor": "carol", "reason": "fixed"})),
        &l2,
    );
    assert_eq!(v["resolution_note"], "fixed", "`reason` as the note: {v}");
    let m = d.metrics();
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_resolved_total",
            &[("tier", "L4"), ("by", "escalated")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "triaged_incidents_resolved_total",
            &[("tier", "L1"), ("by", "escalated")]
        ),
        Some(1.0),
        "opened at L2, resolved at L1: not first contact: {m}"
    );
    for (action, body) in [
        ("ack", json!({"actor": "dave"})),
        ("escalate", json!({"actor": "dave", "reason": "again"})),
        ("deescalate", json!({"actor": "dave", "reason": "again"})),
        ("resolve", json!({"actor": "dave", "note": "again"})),
    ] {
        assert_error(
            &d.action(&id, action, body),
            409,
            &format!("{action} of a resolved incident"),
        );
    }
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "resolved", "{inc}");
    assert_eq!(
        inc["resolution_note"], "Acme replaced the controller",
        "{inc}"
    );
}

// ---- flapping ---------------------------------------------------------------------------------

const FLAP_ESCALATE: &str =
    "[flapping]\nmax_changes = 2\naction = \"escalate\"\n\n[dedup]\nreopen_escalate_after = 0\n";

/// Fire and resolve `l` (native format, explicit status) until the daemon counts a flapping
/// alert; returns the number of posts it took. Fails if it never flaps.
fn flap_until_flapping(d: &Daemon, l: &[(&str, &str)], max_posts: usize) -> usize {
    for n in 1..=max_posts {
        let status = if n % 2 == 1 { "firing" } else { "resolved" };
        post_native(d, vec![native_alert(l, status)]);
        if d.metric("triaged_alerts_flapping_total", &[]) >= 1.0 {
            return n;
        }
    }
    panic!(
        "{} never counted as flapping after {max_posts} posts alternating firing/resolved",
        fingerprint(&labels(l))
    );
}

fn assert_flapping_escalated(d: &Daemon, id: &str) {
    let inc = d.incident(id);
    assert_eq!(inc["flapping"], true, "{inc}");
    assert_eq!(events(&inc, "flapping").len(), 1, "{inc}");
    let esc = events(&inc, "escalated");
    assert_eq!(esc.len(), 1, "{inc}");
    assert_eq!(
        (&esc[0]["from"], &esc[0]["to"], &esc[0]["reason"]),
        (&json!("L1"), &json!("L2"), &json!("flapping")),
        "{inc}"
    );
    assert_eq!(inc["tier"], "L2", "{inc}");
    assert_eq!(
        d.metric(
            "triaged_incidents_escalated_total",
            &[("from", "L1"), ("to", "L2"), ("reason", "flapping")]
        ),
        1.0
    );
    assert_eq!(d.metric("triaged_alerts_flapping_total", &[]), 1.0);
}

#[test]
fn a_flapping_alert_escalates_its_incident() {
    let d = Daemon::with(FLAP_ESCALATE);
    let l = alert_labels("Flappy", "warning");
    let posts = flap_until_flapping(&d, &l, 8);
    // More than max_changes (2) changes: fire, resolve, fire, resolve is the third change.
    assert_eq!(posts, 4, "flapping counted after {posts} posts");
    let (_, a) = d.alert(&fingerprint(&labels(&l)));
    assert_eq!(a["flapping"], true, "{a}");
    let all = incidents_of(&d, "Flappy");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_flapping_escalated(&d, all[0]["id"].as_str().unwrap());
}

#[test]
fn a_flapping_member_escalates_an_incident_that_stays_open() {
    let d = Daemon::with(FLAP_ESCALATE);
    // A steady member keeps the incident open while the other one flaps.
    let steady = [
        ("alertname", "FlappyGroup"),
        ("service", "lifecycle"),
        ("severity", "warning"),
        ("instance", "steady"),
    ];
    let id = touched(&post_native(&d, vec![native_alert(&steady, "firing")]))[0].clone();
    let flappy = [
        ("alertname", "FlappyGroup"),
        ("service", "lifecycle"),
        ("severity", "warning"),
        ("instance", "flappy"),
    ];
    let posts = flap_until_flapping(&d, &flappy, 8);
    assert_eq!(posts, 4, "flapping counted after {posts} posts");
    assert_flapping_escalated(&d, &id);
    assert_eq!(d.incident(&id)["state"], "open");
}

#[test]
fn with_action_suppress_a_flapping_incident_is_marked_but_not_escalated() {
    let d = Daemon::with("[flapping]\nmax_changes = 2\n\n[dedup]\nreopen_escalate_after = 0\n");
    let steady = [
        ("alertname", "FlappyQuiet"),
        ("service", "lifecycle"),
        ("severity", "warning"),
        ("instance", "steady"),
    ];
    let id = touched(&post_native(&d, vec![native_alert(&steady, "firing")]))[0].clone();
    let flappy = [
        ("alertname", "FlappyQuiet"),
        ("service", "lifecycle"),
        ("severity", "warning"),
        ("instance", "flappy"),
    ];
    flap_until_flapping(&d, &flappy, 8);
    let inc = d.incident(&id);
    assert_eq!(inc["flapping"], true, "{inc}");
    assert_eq!(events(&inc, "flapping").len(), 1, "{inc}");
    assert_eq!(inc["tier"], "L1", "{inc}");
    assert!(events(&inc, "escalated").is_empty(), "{inc}");
    assert_eq!(
        metric_sum(&d.metrics(), "triaged_incidents_escalated_total", &[]),
        0.0
    );
}

/// `storage.retention`: a resolved incident and its alert leave the store once it has passed
/// (the API answers 404, the removals are counted, and they stay removed after kill -9 and a
/// restart); an open incident and its firing alert stay, and incident numbers go on.
#[test]
fn retention_removes_what_resolved_long_enough_ago_and_nothing_that_fires() {
    let mut d = Daemon::with(
        "[storage]\nretention = \"2s\"\n[dedup]\nreopen_window = \"1s\"\n[flapping]\nwindow = \"1s\"\n",
    );
    let gone = alert_labels("RetentionGone", "warning");
    let stays = alert_labels("RetentionStays", "warning");
    let gone_id = touched(&post_native(&d, vec![native_alert(&gone, "firing")]))[0].clone();
    let stays_id = touched(&post_native(&d, vec![native_alert(&stays, "firing")]))[0].clone();
    post_native(&d, vec![native_alert(&gone, "resolved")]);
    assert_eq!(d.incident(&gone_id)["state"], "resolved");
    let gone_fp = fingerprint(&labels(&gone));
    let stays_fp = fingerprint(&labels(&stays));

    poll_until_for(
        "the resolved incident and its alert removed",
        DEADLINE_WAIT,
        || {
            let (incident, _) = d.get_json(&format!("/api/v1/incidents/{gone_id}"));
            let (alert, _) = d.alert(&gone_fp);
            if (incident, alert) == (404, 404) {
                Ok(())
            } else {
                Err((incident, alert))
            }
        },
    );
    assert_eq!(
        d.metric("triaged_retention_removed_total", &[("kind", "incident")]),
        1.0
    );
    assert_eq!(
        d.metric("triaged_retention_removed_total", &[("kind", "alert")]),
        1.0
    );
    assert_eq!(d.incident(&stays_id)["state"], "open");
    assert_eq!(d.alert(&stays_fp).0, 200);

    d.kill9();
    d.restart();
    assert_eq!(d.get_json(&format!("/api/v1/incidents/{gone_id}")).0, 404);
    assert_eq!(d.alert(&gone_fp).0, 404);
    assert_eq!(d.incident(&stays_id)["state"], "open");
    let again = touched(&post_native(&d, vec![native_alert(&gone, "firing")]))[0].clone();
    assert!(
        inc_num(&again) > inc_num(&stays_id),
        "{again} reuses a number"
    );
    assert_eq!(d.alert(&gone_fp).1["count"], 1, "a new alert");
}
