//! The real senders, from Debian's packages, against the real daemon: Prometheus pointing its
//! `alerting.alertmanagers` at triaged, amtool posting alerts, and Alertmanager delivering its
//! webhook to triaged. `tests/run.sh` installs them (`prometheus`, `prometheus-alertmanager`).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{poll_until_for, Daemon};
use serde_json::{json, Value};

/// Find a program on PATH, or fail saying how to get it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run tests/run.sh, which installs Debian's prometheus and prometheus-alertmanager")
        })
}

/// A child process killed when the test ends, whatever way it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("create log file");
    Running(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display())),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The one incident of `alertname`, once it exists.
fn incident_of(daemon: &Daemon, alertname: &str, timeout: Duration) -> Value {
    poll_until_for(&format!("an incident for {alertname}"), timeout, || {
        daemon
            .all_incidents("")
            .into_iter()
            .find(|i| i["labels"]["alertname"] == alertname)
            .ok_or("none yet")
    })
}

fn wait_resolved(daemon: &Daemon, id: &str, timeout: Duration) -> Value {
    poll_until_for(&format!("{id} resolved"), timeout, || {
        let incident = daemon.incident(id);
        if incident["state"] == "resolved" {
            Ok(incident)
        } else {
            Err(incident["state"].clone())
        }
    })
}

#[test]
fn prometheus_sends_its_alerts_to_triaged_directly_and_their_resolution() {
    let daemon = Daemon::with("");
    let dir = daemon.dir().to_path_buf();
    // The rule fires from Prometheus' first evaluation until `until`, then resolves, so the test
    // sees both the firing alert (endsAt in the future) and the resolved one (endsAt in the past).
    let until = chrono::Utc::now().timestamp() + 8;
    std::fs::write(
        dir.join("rules.yml"),
        format!(
            r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: PromE2EDiskFull
        expr: vector(time()) < {until}
        labels: {{severity: critical, service: storage}}
        annotations: {{summary: "disk almost full", runbook_url: "https://runbooks.example/disk"}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            r#"global:
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs:
        - targets: ["{}"]
"#,
            daemon.addr
        ),
    )
    .unwrap();
    let _prometheus = spawn(
        &program("prometheus"),
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            "--web.listen-address=127.0.0.1:0".into(),
            // Prometheus drops the alerts of evaluations that run before it has discovered its
            // Alertmanagers, and by default re-sends only a minute later.
            "--rules.alert.resend-delay=1s".into(),
        ],
        &dir.join("prometheus.log"),
    );

    let incident = incident_of(&daemon, "PromE2EDiskFull", Duration::from_secs(20));
    assert_eq!(incident["tier"], "L3", "{incident}");
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["runbook"], "https://runbooks.example/disk");
    let id = incident["id"].as_str().unwrap().to_string();
    let detail = daemon.incident(&id);
    let member = &detail["members"][0];
    assert_eq!(member["source"], "alertmanager");
    // Prometheus gives a firing alert an endsAt four resend intervals ahead: an expiry that each
    // re-send pushes forward.
    assert!(member["expires_at"].is_string(), "{member}");

    let resolved = wait_resolved(&daemon, &id, Duration::from_secs(30));
    assert_eq!(resolved["members"][0]["status"], "resolved");
    assert_eq!(resolved["alert_count"], 1);
}

#[test]
fn amtool_alert_add_opens_an_incident() {
    let daemon = Daemon::with("");
    let out = Command::new(program("amtool"))
        .args([
            "alert",
            "add",
            "alertname=AmtoolE2E",
            "service=web",
            "severity=warning",
            "--annotation=summary=from amtool",
            &format!("--alertmanager.url=http://{}", daemon.addr),
        ])
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let incident = incident_of(&daemon, "AmtoolE2E", Duration::from_secs(10));
    assert_eq!(incident["tier"], "L1");
    assert_eq!(incident["severity"], "warning");
}

#[test]
fn alertmanager_delivers_its_webhook_to_triaged_firing_then_resolved() {
    let daemon = Daemon::with("");
    let dir = daemon.dir().to_path_buf();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            r#"route:
  receiver: triaged
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: triaged
    webhook_configs:
      - url: http://{}/api/v1/webhook/alertmanager
        send_resolved: true
"#,
            daemon.addr
        ),
    )
    .unwrap();
    let am_addr = format!("127.0.0.1:{}", free_port());
    let _alertmanager = spawn(
        &program("prometheus-alertmanager"),
        &[
            format!("--config.file={}", dir.join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address={am_addr}"),
            "--cluster.listen-address=".into(),
        ],
        &dir.join("alertmanager.log"),
    );
    poll_until_for("Alertmanager listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&am_addr).map_err(|e| e.to_string())
    });
    poll_until_for(
        "Alertmanager ready",
        Duration::from_secs(20),
        || match common::request(&am_addr, "GET", "/-/ready", &[], b"").status {
            200 => Ok(()),
            other => Err(other),
        },
    );

    let alert = |ends_at: Option<String>| {
        let mut a = json!({
            "labels": {"alertname": "AmE2EProbeFailure", "service": "edge", "instance": "edge-1", "severity": "major"},
            "annotations": {"summary": "probe failed"},
        });
        if let Some(end) = ends_at {
            a["endsAt"] = json!(end);
        }
        json!([a])
    };
    let posted = common::post_json(&am_addr, "/api/v2/alerts", alert(None));
    assert_eq!(posted.status, 200, "{posted}");

    let incident = incident_of(&daemon, "AmE2EProbeFailure", Duration::from_secs(20));
    assert_eq!(incident["tier"], "L2");
    let id = incident["id"].as_str().unwrap().to_string();
    let member = &daemon.incident(&id)["members"][0];
    assert_eq!(member["source"], "webhook");

    // Ending the alert in Alertmanager makes it send the resolved group.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let posted = common::post_json(&am_addr, "/api/v2/alerts", alert(Some(past)));
    assert_eq!(posted.status, 200, "{posted}");
    let resolved = wait_resolved(&daemon, &id, Duration::from_secs(20));
    assert_eq!(resolved["members"][0]["status"], "resolved");
}

#[test]
fn the_shipped_rules_pass_promtool_check_and_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus");
    for args in [
        ["check", "rules", "triaged.rules.yml"],
        ["test", "rules", "triaged.rules.test.yml"],
    ] {
        let out = Command::new(program("promtool"))
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
