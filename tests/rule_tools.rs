//! The offline tools, through the real binary: `triaged test-rules` (rule unit tests) and
//! `triaged replay` (recorded alerts through the rules).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{fingerprint, labels};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_triaged");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/triaged.toml");

/// Run `triaged ARGS` in the crate root.
fn triaged(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .env_remove("RUST_LOG")
        .output()
        .expect("run triaged")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

// ---- test-rules --------------------------------------------------------------------------------

#[test]
fn the_shipped_rule_tests_pass() {
    let out = triaged(&["test-rules", "config/tests/triaged.test.toml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    let last = *lines.last().expect("output");
    assert!(last.ends_with(" passed, 0 failed"), "{text}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 10, "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("ok   ")).count(),
        passed,
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn a_failing_test_exits_1_and_shows_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "wrong.test.toml",
        &format!(
            r#"config = {EXAMPLE:?}

[[tests]]
name = "Watchdog is dropped"
alerts = [{{ labels = {{ alertname = "Watchdog" }} }}]
[[tests.expect]]
outcome = "dropped"
rule = "watchdog"

[[tests]]
name = "Disk full in prod goes to storage"
alerts = [{{ labels = {{ alertname = "DiskFull", env = "prod" }} }}]
[[tests.expect]]
outcome = "incident"
tier = "L3"
rule = "disk-rule"
labels = {{ team = "storage" }}
"#
        ),
    );
    let out = triaged(&["test-rules", &file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "ok   Watchdog is dropped",
            &format!("FAIL Disk full in prod goes to storage  ({file})"),
            r#"  alert 0 {alertname="DiskFull", env="prod"}"#,
            "    tier:  expected L3, got L2",
            r#"    rule:  expected "disk-rule", got "storage-capacity""#,
            "1 passed, 1 failed",
        ],
        "{text}"
    );
}

#[test]
fn a_bad_test_file_exits_64_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.test.toml",
        "[[tests]]\nname = \"typo\"\nalerts = [{ labels = { alertname = \"X\" } }]\n[[tests.expect]]\noutcome = \"dropped\"\ntierr = \"L2\"\n",
    );
    let out = triaged(&["test-rules", &file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("bad.test.toml:6: "), "{err}");
    assert!(err.contains("unknown field `tierr`"), "{err}");
    assert_eq!(stdout(&out), "", "nothing runs when a file is bad");

    // A config problem is reported as check-config reports it, with its line.
    write(dir.path(), "bad.toml", "[tiers]\ncritical = \"L9\"\n");
    let file = write(
        dir.path(),
        "config.test.toml",
        "config = \"bad.toml\"\n[[tests]]\nname = \"x\"\nalerts = []\n",
    );
    let out = triaged(&["test-rules", &file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("bad.toml:2: "), "{err}");
}

// ---- replay ------------------------------------------------------------------------------------

/// The rows of an aligned table, each cell cut at its header's column (so misalignment shows).
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut pos = 0;
    for name in header.split_whitespace() {
        let at = pos + header[pos..].find(name).unwrap();
        starts.push((at, name));
        pos = at + name.len();
    }
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(i, (at, name))| {
                    let end = starts.get(i + 1).map_or(line.len(), |n| n.0);
                    let cell = line.get(*at..end.min(line.len())).unwrap_or("");
                    if i + 1 < starts.len() {
                        assert!(
                            line[..end].ends_with("  "),
                            "column {name} not aligned in {line:?}"
                        );
                    }
                    (name.to_string(), cell.trim().to_string())
                })
                .collect()
        })
        .collect()
}

const MIXED: &str = "tests/fixtures/replay-mixed.ndjson";

#[test]
fn replay_prints_a_row_per_alert_across_formats() {
    let out = triaged(&["replay", "--config", "config/triaged.toml", MIXED]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.starts_with("#  fingerprint"), "{text}");
    let rows = table(&text);
    assert_eq!(rows.len(), 8, "{text}");
    let row = |i: usize, col: &str| rows[i][col].as_str();

    // Line 1, Alertmanager v2: DiskFull in prod is the storage rule's, at L2.
    let disk = fingerprint(&labels(&[
        ("alertname", "DiskFull"),
        ("env", "prod"),
        ("instance", "db-1"),
        ("service", "db"),
        ("severity", "warning"),
    ]));
    assert_eq!(row(0, "#"), "0");
    assert_eq!(row(0, "fingerprint"), disk);
    assert_eq!(row(0, "alertname"), "DiskFull");
    assert_eq!(row(0, "rule"), "storage-capacity");
    assert_eq!(row(0, "decision"), "incident L2");
    assert_eq!(row(0, "incident"), "INC-1");
    assert_eq!(row(0, "group"), r#"alertname="DiskFull",service="db""#);
    assert_eq!(row(1, "alertname"), "HighLatency");
    assert_eq!(row(1, "rule"), "-");
    assert_eq!(row(1, "decision"), "incident L3");
    assert_eq!(row(1, "incident"), "INC-2");

    // Line 2, an Alertmanager webhook payload: the fingerprint is Alertmanager's own, and an alert
    // of the same group as line 1's joins its incident.
    assert_eq!(row(2, "fingerprint"), "144ba4c113e82cf0");
    assert_eq!(
        row(2, "fingerprint"),
        fingerprint(&labels(&[
            ("alertname", "CaptureProbeFailure"),
            ("instance", "edge-1"),
            ("service", "edge"),
            ("severity", "major"),
        ]))
    );
    assert_eq!(row(2, "decision"), "incident L2");
    assert_eq!(row(2, "incident"), "INC-3");
    assert_eq!(row(3, "alertname"), "HighLatency");
    assert_eq!(row(3, "incident"), "INC-2");

    // Line 3, a native alert of severity info: auto-handled, no incident.
    assert_eq!(row(4, "alertname"), "CertExpiry");
    assert_eq!(row(4, "decision"), "auto_handled");
    assert_eq!(row(4, "incident"), "-");
    assert_eq!(row(4, "group"), "-");

    // Line 5 (after a blank line): line 1's DiskFull again, deduplicated into INC-1.
    assert_eq!(row(5, "fingerprint"), disk);
    assert_eq!(row(5, "decision"), "deduplicated");
    assert_eq!(row(5, "incident"), "INC-1");
    assert_eq!(row(5, "rule"), "storage-capacity");

    // Line 6: the Watchdog, dropped by the example rule.
    assert_eq!(row(6, "alertname"), "Watchdog");
    assert_eq!(row(6, "rule"), "watchdog");
    assert_eq!(row(6, "decision"), "dropped");
    assert_eq!(row(6, "incident"), "-");

    // Line 7, a PagerDuty trigger: class is the alertname, critical is L3.
    assert_eq!(row(7, "alertname"), "disk");
    assert_eq!(row(7, "decision"), "incident L3");
    assert_eq!(row(7, "incident"), "INC-4");
    assert_eq!(row(7, "group"), r#"alertname="disk",service="mysql""#);
}

#[test]
fn replay_json_carries_the_same_facts() {
    let out = triaged(&["replay", "--config", "config/triaged.toml", MIXED, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 8);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i, "{row}");
    }
    let disk = &rows[0];
    assert_eq!(disk["alertname"], "DiskFull");
    assert_eq!(disk["verdict"], "incident");
    assert_eq!(disk["rule"], "storage-capacity");
    assert_eq!(disk["rules"], serde_json::json!(["storage-capacity"]));
    assert_eq!(disk["tier"], "L2");
    assert_eq!(disk["severity"], "major");
    assert_eq!(disk["incident"], "INC-1");
    assert_eq!(disk["set_labels"]["team"], "storage");
    assert_eq!(disk["runbook"], "https://runbooks.example/disk");
    assert_eq!(disk["group_key"], r#"alertname="DiskFull",service="db""#);
    assert_eq!(rows[2]["fingerprint"], "144ba4c113e82cf0");
    assert_eq!(rows[4]["verdict"], "auto_handled");
    assert_eq!(rows[4]["incident"], Value::Null);
    assert_eq!(rows[5]["verdict"], "deduplicated");
    assert_eq!(rows[5]["fingerprint"], disk["fingerprint"]);
    assert_eq!(rows[5]["incident"], "INC-1");
    assert_eq!(rows[6]["verdict"], "dropped");
    assert_eq!(rows[6]["rule"], "watchdog");
    assert_eq!(rows[7]["incident"], "INC-4");
}

#[test]
fn replay_touches_no_state_and_defaults_to_the_embedded_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(ROOT).join(MIXED);
    let out = Command::new(BIN)
        .args(["replay", input.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(table(&stdout(&out))[0]["rule"], "storage-capacity");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "replay wrote into its working directory"
    );
}

/// Prometheus sends a firing alert with `endsAt` a few minutes on: a recording replayed later
/// is a resolution, replayed `--at` the time it was recorded it is the alert that fired.
#[test]
fn replay_at_the_recording_time_sees_prometheus_alerts_firing() {
    let fixture = "tests/fixtures/prometheus-2.42-firing.json";
    let now = table(&stdout(&triaged(&["replay", fixture])));
    assert_eq!(now[0]["decision"], "recorded", "{now:?}");
    // The fixture's startsAt and endsAt: 16:12:09 and 16:17:10 on 2026-11-26.
    let out = triaged(&["replay", fixture, "--at", "2026-11-26T16:13:00Z"]);
    let then = table(&stdout(&out));
    assert_eq!(then[0]["decision"], "incident L3", "{then:?}");
    assert_eq!(then[0]["incident"], "INC-1", "{then:?}");
    let out = Command::new(BIN)
        .args(["replay", fixture, "--at", "yesterday"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn replay_names_the_line_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.ndjson",
        "[{\"labels\": {\"alertname\": \"A\"}}]\n\n{\"labels\": {\"alertname\": \"B\"}\n",
    );
    let out = triaged(&["replay", &file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    // The file's line and the column in it, not serde_json's "at line 1" of the line read alone.
    assert!(err.contains("line 3 column 29: not JSON"), "{err}");
    assert!(!err.contains(" at line "), "{err}");
    assert_eq!(stdout(&out), "");

    let out = triaged(&["replay", "--format", "pagerduty", MIXED]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(!err.contains(" at line "), "{err}");
}
