//! Fill a store with alerts and incidents, fast, through triaged's own writer: for measuring
//! start-up with a large store (`benches/startup.sh`).
//!
//! ```text
//! cargo run --release --example seed_store -- DIR N_ALERTS N_INCIDENTS [--resolved-pct P]
//! ```
//!
//! N_INCIDENTS groups (distinct `alertname`+`service`, the default `group_by`) of
//! N_ALERTS / N_INCIDENTS alerts each (distinct `instance`) are sent as Alertmanager API v2 alerts
//! straight into the writer queue, 5,000 alerts per command, several commands in flight, so that
//! every group commit holds thousands of alerts. Nothing goes through HTTP, but everything else is
//! the daemon's: the embedded default config, dedup, classify, triage, grouping, the outbox-free
//! group commit, and so the store's real layout (`alert/`, `firing/`, `incident/`, `open/`,
//! `group/`, `member/`, `timer/` ...). Severities are spread over critical (L3), major (L2) and
//! warning (L1), so every group opens an incident. Alerts carry `endsAt` 24 h ahead, so their
//! expiries are not due when the daemon starts soon after; the incidents' escalation deadlines
//! are the default policy's (L1 ack 15 min, L2 ack 30 min).
//!
//! With `--resolved-pct P`, the first P % of the groups are then resolved (each alert sent again
//! with an `endsAt` in the past), which auto-resolves their incidents: the store then holds
//! mostly history, as a long-running one does.
//!
//! DIR must not exist or be empty. Prints progress and a summary; exits 2 on bad arguments,
//! 1 when the store fails.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::oneshot;

use triaged::alert::{Alert, Labels, Source};
use triaged::config::Config;
use triaged::metrics::Metrics;
use triaged::pipeline::{self, Command, IngestSummary, Outcome, PipelineError, Policy};
use triaged::store::Store;

/// Alerts per ingest command.
const ALERTS_PER_COMMAND: usize = 5_000;
/// Commands in flight: the writer takes every queued one into the same group commit.
const IN_FLIGHT: usize = 4;
/// Alert names per service: N_INCIDENTS groups are spread over N_INCIDENTS / NAMES services.
const NAMES: usize = 200;

struct Args {
    dir: PathBuf,
    alerts: usize,
    incidents: usize,
    resolved_pct: usize,
}

fn usage() -> &'static str {
    "usage: seed_store DIR N_ALERTS N_INCIDENTS [--resolved-pct P]\n  \
     N_ALERTS a multiple of N_INCIDENTS (alerts per incident); P in 0..=100 (default 0)"
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut resolved_pct = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--resolved-pct" => {
                let v = args.next().ok_or("--resolved-pct needs a value")?;
                resolved_pct = v
                    .parse()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("--resolved-pct {v:?}: expected 0..=100"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ => positional.push(arg),
        }
    }
    let [dir, alerts, incidents] = <[String; 3]>::try_from(positional)
        .map_err(|p| format!("expected 3 arguments, got {}", p.len()))?;
    let count = |name: &str, v: &str| {
        v.replace('_', "")
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} {v:?}: expected a positive number"))
    };
    let alerts = count("N_ALERTS", &alerts)?;
    let incidents = count("N_INCIDENTS", &incidents)?;
    if alerts % incidents != 0 {
        return Err(format!(
            "N_ALERTS {alerts} is not a multiple of N_INCIDENTS {incidents}"
        ));
    }
    Ok(Args {
        dir: PathBuf::from(dir),
        alerts,
        incidents,
        resolved_pct,
    })
}

/// The alerts of group `group`, firing until `ends_at` (in the past: resolved).
fn group_alerts(
    group: usize,
    per_group: usize,
    now: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Vec<Alert> {
    let alertname = format!("SeedAlert{:03}", group % NAMES);
    let service = format!("svc-{:04}", group / NAMES);
    let severity = match group % 10 {
        0..=2 => "critical",
        3..=5 => "major",
        _ => "warning",
    };
    (0..per_group)
        .map(|i| {
            let labels: Labels = [
                ("alertname", alertname.as_str()),
                ("service", service.as_str()),
                ("instance", &format!("host-{i:03}.example:9100")),
                ("severity", severity),
                ("job", "node"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let mut alert = Alert::new(Source::Alertmanager, labels);
            alert.annotations = [(
                "summary".to_string(),
                format!("{alertname} on {service} host-{i:03}"),
            )]
            .into();
            alert.starts_at = Some(now);
            alert.ends_at = Some(ends_at);
            alert.generator_url = Some(format!(
                "http://prometheus.example:9090/graph?g0.expr={alertname}"
            ));
            alert.expires_without_refresh = true;
            alert
        })
        .collect()
}

/// Sends ingest commands, keeping a few in flight, and adds up their summaries.
struct Sender {
    queue: pipeline::Queue,
    pending: VecDeque<oneshot::Receiver<Result<Outcome, PipelineError>>>,
    total: IngestSummary,
}

impl Sender {
    fn send(&mut self, alerts: Vec<Alert>) -> Result<(), String> {
        while self.pending.len() >= IN_FLIGHT {
            self.wait_one()?;
        }
        let (reply, answer) = oneshot::channel();
        let mut command = Command::Ingest {
            source: Source::Alertmanager,
            alerts,
            reply,
        };
        // The queue is larger than IN_FLIGHT, so it is never full here; retry anyway.
        loop {
            match self.queue.try_send(command) {
                Ok(()) => break,
                Err((pipeline::SubmitError::Full, back)) => {
                    command = *back;
                    std::thread::yield_now();
                }
                Err((e, _)) => return Err(format!("the writer is gone: {e}")),
            }
        }
        self.pending.push_back(answer);
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), String> {
        let Some(answer) = self.pending.pop_front() else {
            return Ok(());
        };
        match answer.blocking_recv() {
            Ok(Ok(Outcome::Ingested(s))) => {
                self.total.received += s.received;
                self.total.accepted += s.accepted;
                self.total.deduplicated += s.deduplicated;
                self.total.dropped += s.dropped;
                self.total.resolved += s.resolved;
                Ok(())
            }
            Ok(Ok(other)) => Err(format!("unexpected outcome {other:?}")),
            Ok(Err(e)) => Err(format!("ingest failed: {e}")),
            Err(_) => Err("the writer dropped a command unanswered".into()),
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        while !self.pending.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }
}

/// Send every group's alerts, `ends_at` relative to now, printing progress.
fn send_groups(
    sender: &mut Sender,
    groups: std::ops::Range<usize>,
    per_group: usize,
    ends_in: Duration,
    what: &str,
) -> Result<(), String> {
    let started = Instant::now();
    let total = groups.len() * per_group;
    let mut sent = 0;
    let mut next_report = 100_000;
    let mut buffer = Vec::with_capacity(ALERTS_PER_COMMAND + per_group);
    for group in groups {
        let now = Utc::now();
        buffer.extend(group_alerts(group, per_group, now, now + ends_in));
        if buffer.len() >= ALERTS_PER_COMMAND {
            sent += buffer.len();
            sender.send(std::mem::take(&mut buffer))?;
            if sent >= next_report {
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "seed_store: {what} {sent}/{total} alerts in {secs:.1} s ({:.0} alerts/s)",
                    sent as f64 / secs
                );
                next_report += 100_000;
            }
        }
    }
    if !buffer.is_empty() {
        sender.send(buffer)?;
    }
    sender.drain()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seed_store: {what} {total} alerts in {secs:.1} s ({:.0} alerts/s)",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn seed(args: &Args) -> Result<(), String> {
    if std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} is not empty: seed_store fills a new store only",
            args.dir.display()
        ));
    }
    let config = Config::embedded_default();
    let policy = Policy::from_config(&config)?;
    let store = Arc::new(Store::open(&args.dir).map_err(|e| e.to_string())?);
    let (queue, writer) = pipeline::channel(
        IN_FLIGHT * 4,
        store,
        Arc::new(Metrics::new()),
        policy,
        Arc::new(pipeline::SystemClock),
    )
    .map_err(|e| e.to_string())?;
    let writer = std::thread::Builder::new()
        .name("triaged-writer".into())
        .spawn(move || writer.run())
        .map_err(|e| format!("cannot start the writer: {e}"))?;
    let mut sender = Sender {
        queue: queue.clone(),
        pending: VecDeque::new(),
        total: IngestSummary::default(),
    };
    let per_group = args.alerts / args.incidents;
    let started = Instant::now();
    let result = send_groups(
        &mut sender,
        0..args.incidents,
        per_group,
        Duration::hours(24),
        "firing",
    )
    .and_then(|()| {
        let resolved = args.incidents * args.resolved_pct / 100;
        if resolved == 0 {
            return Ok(());
        }
        send_groups(
            &mut sender,
            0..resolved,
            per_group,
            Duration::seconds(-1),
            "resolving",
        )
    });
    queue.shutdown();
    writer
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?;
    result?;
    let t = &sender.total;
    println!(
        "seed_store: {} alerts in {} incidents ({} per incident), {} resolved again, {} deduplicated, {} dropped; {:.1} s; store {} ({:.0} MB on disk)",
        t.accepted - t.resolved,
        args.incidents,
        per_group,
        t.resolved,
        t.deduplicated,
        t.dropped,
        started.elapsed().as_secs_f64(),
        args.dir.display(),
        dir_size(&args.dir) as f64 / 1e6,
    );
    if t.deduplicated != 0 || t.dropped != 0 {
        return Err("some alerts were not new: the label sets are expected to be distinct".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("seed_store: {e}");
            }
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    match seed(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seed_store: {e}");
            ExitCode::FAILURE
        }
    }
}
