//! Hot reload, over `POST /-/reload` and SIGHUP, against the real daemon: a good config changes
//! the next decision; a bad one is refused, reported, and leaves the old decisions in force.

mod common;

use common::*;
use serde_json::json;

fn post_alert(d: &Daemon, alertname: &str) -> serde_json::Value {
    let answer = d.post_json(
        "/api/v1/alerts",
        json!({"alerts": [{"labels": {"alertname": alertname, "service": "pay", "severity": "warning"}}]}),
    );
    assert_eq!(answer.status, 200, "{answer}");
    let id = answer.json()["incidents"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no incident in {answer}"))
        .to_string();
    d.incident(&id)
}

const FORCE_L3: &str = r#"
[[rules]]
name = "payments-to-l3"
matchers = ['service="pay"', 'alertname=~"Pay.*"']
tier = "L3"
"#;

fn write_config(d: &Daemon, rest: &str) {
    std::fs::write(d.dir().join("triaged.toml"), config(rest)).expect("write config");
}

/// Reload with the rules of [`FORCE_L3`] and `rest`, which must be taken: the sections the
/// answer says wait for a restart.
fn restart_required(d: &Daemon, rest: &str) -> serde_json::Value {
    write_config(d, &format!("{FORCE_L3}\n{rest}"));
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 200, "{answer}");
    answer.json()["restart_required"].clone()
}

fn reload_gauge(d: &Daemon) -> f64 {
    d.metric("triaged_config_last_reload_successful", &[])
}

#[test]
fn a_good_reload_changes_the_next_decision_and_a_bad_one_changes_nothing() {
    let d = Daemon::with("");
    assert_eq!(reload_gauge(&d), 1.0);
    let started_at = d.metric("triaged_config_last_reload_success_timestamp_seconds", &[]);
    assert!(started_at > 0.0);
    assert_eq!(post_alert(&d, "PayLatency")["tier"], "L1");

    write_config(&d, FORCE_L3);
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(answer.json()["restart_required"], json!([]), "{answer}");
    assert_eq!(reload_gauge(&d), 1.0);
    let incident = post_alert(&d, "PayErrors");
    assert_eq!(incident["tier"], "L3", "{incident}");
    assert_eq!(incident["rule"], "payments-to-l3");

    let (status, rules) = d.get_json("/api/v1/rules");
    assert_eq!(status, 200);
    assert_eq!(rules["rules"][0]["name"], "payments-to-l3", "{rules}");
    assert_eq!(rules["rules"][0]["matches"], 1, "{rules}");
    assert_eq!(
        d.metric("triaged_rule_matches_total", &[("rule", "payments-to-l3")]),
        1.0
    );

    // A change that waits for a restart: taken, and the answer says which section.
    let storage = "[storage]\ncache_mb = 32\n";
    assert_eq!(restart_required(&d, storage), json!(["storage"]));
    // Sinks are started once: a new one waits for a restart too, and is said so.
    let sink = "[[notify.webhook]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/\"\n";
    assert_eq!(restart_required(&d, sink), json!(["notify"]));
    // Its secret file is checked now, not found missing at the next restart.
    let missing = d.dir().join("no-such.key");
    write_config(
        &d,
        &format!(
            "{FORCE_L3}\n{sink}hmac_secret_file = {:?}\n",
            missing.to_str().unwrap()
        ),
    );
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 500, "{answer}");
    let detail = answer.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains(
            "triaged.toml:14: notify.webhook[0].hmac_secret_file: cannot read hmac_secret_file"
        ),
        "{detail}"
    );

    // A bad file: refused with the line that is wrong; the old rules stay.
    write_config(
        &d,
        "[[rules]]\nname = \"broken\"\nmatchers = ['alertname=~\"(\"']\ntier = \"L1\"\n",
    );
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 500, "{answer}");
    let detail = answer.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains("triaged.toml:7: rules[0].matchers[0]") && detail.contains("regex"),
        "{detail}"
    );
    assert_eq!(reload_gauge(&d), 0.0);
    let incident = post_alert(&d, "PayTimeouts");
    assert_eq!(
        incident["tier"], "L3",
        "the old rules must stay: {incident}"
    );
}

/// `POST /-/reload` takes no body, as Prometheus's and Alertmanager's do not: whatever is sent
/// (none, as `curl -XPOST` and reloader sidecars send; an empty form, as `curl -d ''` sends;
/// text) is not read, so its type is not refused, while a route that reads JSON refuses it.
#[test]
fn a_reload_takes_no_body_so_its_type_does_not_matter() {
    let d = Daemon::with("");
    assert_eq!(post_alert(&d, "PayLatency")["tier"], "L1");
    write_config(&d, FORCE_L3);
    for (content_type, body) in [
        (None, ""),
        (Some("application/x-www-form-urlencoded"), ""),
        (Some("text/plain"), "x"),
        (Some("application/json"), "{}"),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("Content-Type", t))
            .into_iter()
            .collect();
        let answer = request(&d.addr, "POST", "/-/reload", &headers, body.as_bytes());
        assert_eq!(answer.status, 200, "{content_type:?} {body:?}: {answer}");
        assert_eq!(answer.json()["status"], "success", "{answer}");
    }
    assert_eq!(post_alert(&d, "PayErrors")["tier"], "L3", "the reload took");
    let ack = request(
        &d.addr,
        "POST",
        "/api/v1/incidents/INC-1/ack",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(ack.status, 415, "{ack}");
}

#[test]
fn sighup_reloads_the_config() {
    let d = Daemon::with("");
    assert_eq!(post_alert(&d, "PayDown")["tier"], "L1");
    write_config(&d, FORCE_L3);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_until("the reload to take effect", || {
        d.stderr_text()
            .contains("configuration reloaded")
            .then_some(())
    });
    assert_eq!(post_alert(&d, "PaySlow")["tier"], "L3");
    assert!(
        d.get("/-/healthy").status == 200,
        "SIGHUP must not stop the daemon"
    );
}

/// `[storage]` waits for a restart, so a reload checks the retention in force, not the file's,
/// against the new windows: one that would let the sweep remove what may still reopen is
/// refused, saying so, and the old windows stay.
#[test]
fn a_reload_is_refused_when_its_windows_outgrow_the_retention_in_force() {
    let short = "[storage]\nretention = \"3s\"\n[dedup]\nreopen_window = \"1s\"\n[flapping]\nwindow = \"1s\"\n";
    let d = Daemon::with(short);
    write_config(
        &d,
        "[storage]\nretention = \"30s\"\n[dedup]\nreopen_window = \"20s\"\n[flapping]\nwindow = \"1s\"\n",
    );
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 500, "{answer}");
    let detail = answer.json()["detail"].as_str().unwrap_or("").to_string();
    // Named on the line of the window that outgrew it, as every other refusal names its line.
    assert!(
        detail.contains("triaged.toml:8: dedup.reopen_window: storage.retention in force (3s, changed only by a restart)")
            && detail.contains("must be at least dedup.reopen_window (20s)"),
        "{detail}"
    );
    assert_eq!(reload_gauge(&d), 0.0);
    // Within the file's retention and windows both: taken, the retention still waiting.
    let answer = {
        write_config(
            &d,
            "[storage]\nretention = \"30s\"\n[dedup]\nreopen_window = \"2s\"\n[flapping]\nwindow = \"1s\"\n",
        );
        d.post_json("/-/reload", json!({}))
    };
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(answer.json()["restart_required"], json!(["storage"]));
}
