//! A 2xx means "on disk": everything acknowledged survives SIGKILL; SIGTERM and SIGINT shut down
//! cleanly with status 0 and keep the data.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

const N: usize = 200;

fn crash_labels(i: usize) -> Value {
    labels(&[
        ("alertname", "CrashTest"),
        ("service", "db"),
        ("severity", "major"),
        ("instance", &format!("db-{i:03}")),
    ])
}

fn members_instances(inc: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let ms = inc["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {inc}"));
    let fps = ms
        .iter()
        .map(|m| m["fingerprint"].as_str().unwrap().to_string())
        .collect();
    let instances = ms
        .iter()
        .map(|m| m["labels"]["instance"].as_str().unwrap().to_string())
        .collect();
    (fps, instances)
}

#[test]
fn everything_acknowledged_survives_sigkill() {
    let mut d = Daemon::with("");
    // An incident acknowledged before the crash.
    let acked = touched(&post_native(
        &d,
        vec![native_alert(
            &[
                ("alertname", "AckedBefore"),
                ("service", "db"),
                ("severity", "critical"),
            ],
            "firing",
        )],
    ))[0]
        .clone();
    let resp = d.action(&acked, "ack", json!({"actor": "alice"}));
    assert_eq!(resp.status, 200, "{resp}");
    let acked_at = resp.json()["acknowledged_at"].clone();
    parse_time(&acked_at);

    let mut incident_ids = BTreeSet::new();
    for i in 0..N {
        let resp = d.post_json(
            "/api/v1/alerts",
            json!({"alerts": [{"labels": crash_labels(i), "status": "firing"}]}),
        );
        assert_eq!(resp.status, 200, "alert {i}: {resp}");
        incident_ids.extend(touched(&resp.json()));
    }
    assert_eq!(incident_ids.len(), 1, "{incident_ids:?}");
    let id = incident_ids.into_iter().next().unwrap();

    d.kill9();
    d.restart();

    let inc = d.incident(&id);
    assert_eq!(inc["alert_count"], N, "alert_count after restart");
    assert_eq!(inc["firing_count"], N, "firing_count after restart");
    assert_eq!(inc["state"], "open");
    let (fps, instances) = members_instances(&inc);
    let expected_instances: BTreeSet<String> = (0..N).map(|i| format!("db-{i:03}")).collect();
    let expected_fps: BTreeSet<String> = (0..N).map(|i| fingerprint(&crash_labels(i))).collect();
    assert_eq!(fps.len(), N, "distinct member fingerprints after restart");
    assert_eq!(fps, expected_fps);
    assert_eq!(instances, expected_instances);
    let (status, a) = d.alert(&fingerprint(&crash_labels(N - 1)));
    assert_eq!(
        status, 200,
        "the last alert acknowledged before SIGKILL: {a}"
    );
    assert_eq!(a["incident"], id.as_str(), "{a}");

    let inc = d.incident(&acked);
    assert_eq!(inc["state"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged_at"], acked_at, "{inc}");
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "acknowledged"], "{inc}");

    let all = d.all_incidents("");
    assert_eq!(all.len(), 2, "incidents after restart: {all:?}");
    assert_eq!(
        d.metric("triaged_incidents_open", &[("tier", "L2")]),
        1.0,
        "the open-incidents gauge after restart"
    );

    // New incidents after the restart get new ids; old ones keep taking members.
    let resp = post_native(
        &d,
        vec![native_alert(
            &[
                ("alertname", "AfterRestart"),
                ("service", "db"),
                ("severity", "warning"),
            ],
            "firing",
        )],
    );
    let new_id = touched(&resp)[0].clone();
    assert!(
        new_id != id && new_id != acked,
        "incident id {new_id} reused after restart"
    );
    let resp = post_native(
        &d,
        vec![json!({"labels": crash_labels(N), "status": "firing"})],
    );
    assert_eq!(touched(&resp), vec![id.clone()], "{resp}");
    assert_eq!(d.incident(&id)["alert_count"], N + 1);
}

fn graceful(stop: impl FnOnce(&mut Daemon) -> std::process::ExitStatus) {
    let mut d = Daemon::with("");
    let l = [
        ("alertname", "Graceful"),
        ("service", "web"),
        ("severity", "critical"),
    ];
    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    let id = touched(&resp)[0].clone();
    let resp = d.action(&id, "assign", json!({"actor": "alice", "assignee": "bob"}));
    assert_eq!(resp.status, 200, "{resp}");

    let journal = d.data_dir().join("triaged.journal");
    assert!(
        std::fs::metadata(&journal).expect("the journal").len() > 0,
        "the changes are in the journal while triaged runs"
    );
    let status = stop(&mut d);
    assert!(
        status.success(),
        "triaged exited with {status} on a shutdown signal; stderr:\n{}",
        d.stderr_text()
    );
    // A clean stop flushes sled and empties the journal: the next start applies nothing again.
    assert_eq!(std::fs::metadata(&journal).expect("the journal").len(), 0);

    d.restart();
    let inc = d.incident(&id);
    assert_eq!(inc["state"], "open", "{inc}");
    assert_eq!(inc["tier"], "L3", "{inc}");
    assert_eq!(inc["assignee"], "bob", "{inc}");
    assert_eq!(inc["alert_count"], 1, "{inc}");
    let (status, a) = d.alert(&fingerprint(&labels(&l)));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["count"], 1, "{a}");
    // The restarted daemon still deduplicates against what it had.
    let resp = post_native(&d, vec![native_alert(&l, "firing")]);
    assert_eq!(resp["deduplicated"], 1, "{resp}");
    let all = d.all_incidents("");
    assert_eq!(
        all.len(),
        1,
        "a repeat after restart opened another incident: {all:?}"
    );
    let (_, a) = d.alert(&fingerprint(&labels(&l)));
    assert_eq!(a["count"], 2, "{a}");
    assert_eq!(a["incident"], id.as_str(), "{a}");
}

#[test]
fn sigterm_exits_zero_and_keeps_the_data() {
    graceful(|d| d.terminate());
}

#[test]
fn sigint_exits_zero_and_keeps_the_data() {
    graceful(|d| d.interrupt());
}

/// Re-sends of firing alerts are logged compactly rather than rewritten (the refresh log), and
/// what they change is acknowledged like any other write: count, last-seen time and `endsAt`
/// survive SIGKILL, and a resolution after them is not undone by the log on restart.
#[test]
fn repeats_of_firing_alerts_survive_sigkill() {
    let mut d = Daemon::with("");
    let names = ["RepeatA", "RepeatB", "RepeatC"];
    let am_alert = |name: &str, ends_in: f64| {
        json!({
            "labels": {"alertname": name, "service": "web", "severity": "warning"},
            "annotations": {"summary": "re-sent"},
            "endsAt": rfc3339_in(ends_in),
        })
    };
    const SENDS: u64 = 6;
    for i in 0..SENDS {
        let body: Vec<Value> = names
            .iter()
            .map(|n| am_alert(n, 600.0 + i as f64 * 60.0))
            .collect();
        let resp = d.post_json("/api/v2/alerts", Value::Array(body));
        assert_eq!(resp.status, 200, "send {i}: {resp}");
    }
    // The last re-send of RepeatC resolves it.
    let mut resolved = am_alert("RepeatC", 0.0);
    resolved["endsAt"] = json!(rfc3339_in(-1.0));
    let resp = d.post_json("/api/v2/alerts", json!([resolved]));
    assert_eq!(resp.status, 200, "{resp}");

    let fp = |name: &str| {
        fingerprint(&labels(&[
            ("alertname", name),
            ("service", "web"),
            ("severity", "warning"),
        ]))
    };
    let before: Vec<Value> = names
        .iter()
        .map(|n| {
            let (status, a) = d.alert(&fp(n));
            assert_eq!(status, 200, "{a}");
            a
        })
        .collect();
    assert_eq!(before[0]["count"], SENDS, "{}", before[0]);
    assert_eq!(before[2]["count"], SENDS + 1, "{}", before[2]);
    assert_eq!(before[2]["status"], "resolved", "{}", before[2]);
    let last_ends = parse_time(&before[0]["ends_at"]);
    let expected = chrono::Utc::now() + chrono::Duration::seconds(600 + 60 * (SENDS as i64 - 1));
    assert!(
        (last_ends - expected).num_seconds().abs() < 30,
        "ends_at is the last send's endsAt: {}",
        before[0]
    );

    d.kill9();
    d.restart();
    for (name, was) in names.iter().zip(&before) {
        let (status, a) = d.alert(&fp(name));
        assert_eq!(status, 200, "{a}");
        for field in ["count", "status", "last_seen", "ends_at", "incident"] {
            assert_eq!(a[field], was[field], "{name}.{field} after SIGKILL: {a}");
        }
    }
    // And the restarted daemon keeps counting from there.
    let resp = d.post_json("/api/v2/alerts", json!([am_alert("RepeatA", 900.0)]));
    assert_eq!(resp.status, 200, "{resp}");
    let (_, a) = d.alert(&fp("RepeatA"));
    assert_eq!(a["count"], SENDS + 1, "{a}");
}

/// The journal starts again from its beginning after every checkpoint (`storage.checkpoint_kb`:
/// sled flushed, then the journal overwritten): it stays about that size, and what was
/// acknowledged before, across and after checkpoints survives SIGKILL, re-sends included.
#[test]
fn acknowledged_writes_survive_sigkill_across_journal_checkpoints() {
    const CHECKPOINT_KB: u64 = 4;
    let mut d = Daemon::with(&format!("[storage]\ncheckpoint_kb = {CHECKPOINT_KB}\n"));
    let journal = d.data_dir().join("triaged.journal");
    let alert = |i: usize| {
        json!({
            "labels": {"alertname": "Journal", "service": "web", "severity": "warning",
                       "instance": format!("web-{i:03}")},
            "endsAt": rfc3339_in(600.0),
        })
    };
    const ALERTS: usize = 150;
    let mut largest = 0;
    // New alerts, then each re-sent (the refresh log): ~300 commits, well past 4 KiB of journal.
    for round in 0..2 {
        for i in 0..ALERTS {
            let resp = d.post_json("/api/v2/alerts", json!([alert(i)]));
            assert_eq!(resp.status, 200, "round {round}, alert {i}: {resp}");
            let size = std::fs::metadata(&journal).expect("the journal").len();
            largest = largest.max(size);
        }
    }
    // A checkpoint comes after the commit that passes the size, so the journal may exceed it by
    // that commit's record, but never holds all ~300 commits (each record is over 100 bytes).
    assert!(
        largest <= 4 * CHECKPOINT_KB * 1024,
        "the journal grew to {largest} bytes with checkpoints every {CHECKPOINT_KB} KiB"
    );

    d.kill9();
    d.restart();
    for i in 0..ALERTS {
        let labels = alert(i)["labels"].clone();
        let (status, a) = d.alert(&fingerprint(&labels));
        assert_eq!(status, 200, "alert {i} after SIGKILL: {a}");
        assert_eq!(a["count"], 2, "alert {i}'s re-send after SIGKILL: {a}");
        assert_eq!(a["status"], "firing", "{a}");
    }
}

/// A journal record damaged after its commit was acknowledged, with intact records after it, is
/// damage, not the torn end a crash leaves: the start stops (exit 65, which the unit does not
/// restart on) and says how to go on; cut where it says, the daemon starts with the commits
/// before the damage.
#[test]
fn a_journal_damaged_after_acknowledging_its_commits_stops_the_start() {
    let mut d = Daemon::with("");
    let alert = |n: u32| {
        native_alert(
            &[("alertname", &format!("Damaged{n}")), ("service", "x")],
            "firing",
        )
    };
    for n in 1..=3 {
        post_native(&d, vec![alert(n)]); // one commit each
    }
    d.kill9();
    let journal = d.data_dir().join("triaged.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let second = bytes
        .windows(8)
        .position(|w| w == b"Damaged2")
        .expect("the second commit's record");
    bytes[second] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();

    let mut start = KilledOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_triaged"))
            .arg("run")
            .arg("--config")
            .arg(d.dir().join("triaged.toml"))
            .arg("--data-dir")
            .arg(d.data_dir())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run triaged"),
    );
    // A daemon that started on the damaged journal would run until stopped: stop it and fail.
    let exited = poll_until_for(
        "the start on a damaged journal to stop",
        std::time::Duration::from_secs(15),
        || match start.0.try_wait().expect("try_wait") {
            Some(status) => Ok(status),
            None => Err("still running"),
        },
    );
    let mut said = String::new();
    std::io::Read::read_to_string(&mut start.0.stderr.take().unwrap(), &mut said).unwrap();
    assert_eq!(
        exited.code(),
        Some(i32::from(triaged::EXIT_DAMAGED)),
        "{said}"
    );
    assert!(said.contains("is damaged"), "{said}");
    let cut: u64 = said
        .split("`truncate -s ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no truncate command in: {said}"));
    assert!(
        cut < second as u64,
        "the cut {cut} is before the damage at {second}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        bytes,
        "the journal is untouched"
    );

    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(cut)
        .unwrap();
    d.restart();
    let (status, first) = d.alert(&fingerprint(&alert(1)["labels"]));
    assert_eq!(status, 200, "the commit before the damage: {first}");
}

/// A child process killed and reaped when dropped (a failed assertion included).
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
