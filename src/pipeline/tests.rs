//! Writer tests: the pipeline driven command by command on a fake clock.
//!
//! No HTTP, no writer thread, no sleeping: each test builds [`Command`]s with a oneshot reply,
//! applies them with [`Writer::step`] (one group commit per call), reads the answers with
//! `try_recv`, and checks the outcome in the store and the metrics. Time only moves when a test
//! calls [`FakeClock::advance`]; an empty `step` is the writer waking up for due expiries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

use tempfile::TempDir;

use super::*;
use crate::alert::{AlertRecord, Severity, Status};
use crate::incident::{EventKind, State, SYSTEM_ACTOR};
use crate::store::IncidentFilter;

/// Whole seconds: the stored timer keys have millisecond resolution.
const T0: &str = "2026-03-02T09:00:00Z";
/// `dedup.resolve_timeout` of the lifetime tests.
const RESOLVE_30S: &str = "[dedup]\nresolve_timeout = \"30s\"\n";

struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    fn at(start: &str) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(start.parse().unwrap())))
    }

    fn advance(&self, secs: i64) {
        *self.0.lock().unwrap() += chrono::Duration::seconds(secs);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

type Answer = oneshot::Receiver<Result<Outcome, PipelineError>>;

/// One data directory, one store, one writer driven by hand. `dir` is last: dropped last.
struct Harness {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    clock: Arc<FakeClock>,
    policy: Policy,
    queue: Queue,
    writer: Writer,
    dir: TempDir,
}

impl Harness {
    fn new(toml: &str) -> Harness {
        Harness::build(toml, T0, 16)
    }

    fn build(toml: &str, start: &str, capacity: usize) -> Harness {
        let policy = Policy::from_config(&Config::parse(toml, "test").unwrap()).unwrap();
        Harness::open(
            tempfile::tempdir().unwrap(),
            FakeClock::at(start),
            policy,
            capacity,
        )
    }

    fn open(dir: TempDir, clock: Arc<FakeClock>, policy: Policy, capacity: usize) -> Harness {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (queue, writer) = channel(
            capacity,
            store.clone(),
            metrics.clone(),
            policy.clone(),
            clock.clone(),
        )
        .unwrap();
        Harness {
            store,
            metrics,
            clock,
            policy,
            queue,
            writer,
            dir,
        }
    }

    /// Close writer and store, reopen the same directory: a process restart, with fresh metrics.
    fn restart(self) -> Harness {
        let Harness {
            store,
            clock,
            policy,
            queue,
            writer,
            dir,
            ..
        } = self;
        drop((queue, writer, store));
        Harness::open(dir, clock, policy, 16)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn step(&mut self, commands: Vec<Command>) {
        assert!(!self.writer.step(commands), "no command asked to stop");
    }

    /// The writer waking up with nothing queued: only due expiries are applied.
    fn tick(&mut self) {
        self.step(vec![]);
    }

    fn ingest_as(&mut self, source: Source, alerts: Vec<Alert>) -> IngestSummary {
        let (command, answer) = ingest_command(source, alerts);
        self.step(vec![command]);
        summary(answer)
    }

    fn ingest(&mut self, alerts: Vec<Alert>) -> IngestSummary {
        self.ingest_as(Source::Alertmanager, alerts)
    }

    fn act(&mut self, id: u64, action: Action) -> Result<Incident, PipelineError> {
        let (command, answer) = incident_command(id, action);
        self.step(vec![command]);
        answered(answer).map(|outcome| match outcome {
            Outcome::Incident(incident) => *incident,
            other => panic!("expected an incident, got {other:?}"),
        })
    }

    fn ack_alert(&mut self, fingerprint: Fingerprint) -> Option<IncidentId> {
        let (reply, answer) = oneshot::channel();
        self.step(vec![Command::AcknowledgeAlert {
            fingerprint,
            actor: "pagerduty".into(),
            reply,
        }]);
        match answered(answer) {
            Ok(Outcome::AlertAcknowledged(id)) => id,
            other => panic!("expected an alert acknowledgement, got {other:?}"),
        }
    }

    fn incident(&self, id: u64) -> Incident {
        self.store
            .incident(IncidentId(id))
            .unwrap()
            .unwrap_or_else(|| panic!("INC-{id} is not stored"))
    }

    fn record(&self, alert: &Alert) -> AlertRecord {
        self.store
            .alert(fp(alert))
            .unwrap()
            .expect("the alert is stored")
    }

    fn members(&self, id: u64) -> Vec<Fingerprint> {
        self.store.members(IncidentId(id)).unwrap()
    }

    /// Ids of every stored incident, newest first.
    fn incident_ids(&self) -> Vec<u64> {
        let (page, _) = self
            .store
            .list_incidents(&IncidentFilter::default(), None, 10_000)
            .unwrap();
        page.iter().map(|i| i.id.0).collect()
    }

    fn opened(&self, tier: Tier, severity: Severity) -> u64 {
        self.metrics
            .incidents_opened
            .with_label_values(&[tier.as_str(), severity.as_str()])
            .get()
    }

    fn open_gauge(&self, tier: Tier) -> i64 {
        self.metrics
            .incidents_open
            .with_label_values(&[tier.as_str()])
            .get()
    }

    fn escalated(&self, from: Tier, to: Tier, reason: &str) -> u64 {
        self.metrics
            .incidents_escalated
            .with_label_values(&[from.as_str(), to.as_str(), reason])
            .get()
    }

    fn resolved(&self, tier: Tier, by: &str) -> u64 {
        self.metrics
            .incidents_resolved
            .with_label_values(&[tier.as_str(), by])
            .get()
    }

    /// MTTR samples: (count, sum of seconds).
    fn mttr(&self, tier: Tier, severity: Severity) -> (u64, f64) {
        let h = self
            .metrics
            .incident_resolve_seconds
            .with_label_values(&[tier.as_str(), severity.as_str()]);
        (h.get_sample_count(), h.get_sample_sum())
    }

    /// MTTA samples: (count, sum of seconds).
    fn mtta(&self, tier: Tier) -> (u64, f64) {
        let h = self
            .metrics
            .incident_ack_seconds
            .with_label_values(&[tier.as_str()]);
        (h.get_sample_count(), h.get_sample_sum())
    }
}

fn ingest_command(source: Source, alerts: Vec<Alert>) -> (Command, Answer) {
    let (reply, answer) = oneshot::channel();
    let command = Command::Ingest {
        source,
        alerts,
        reply,
    };
    (command, answer)
}

fn incident_command(id: u64, action: Action) -> (Command, Answer) {
    let (reply, answer) = oneshot::channel();
    let command = Command::Incident {
        id: IncidentId(id),
        action,
        reply,
    };
    (command, answer)
}

fn answered(mut answer: Answer) -> Result<Outcome, PipelineError> {
    answer.try_recv().expect("the step answered the command")
}

fn summary(answer: Answer) -> IngestSummary {
    match answered(answer) {
        Ok(Outcome::Ingested(summary)) => summary,
        other => panic!("expected an ingest summary, got {other:?}"),
    }
}

/// A firing Alertmanager alert with these labels and nothing else set.
fn alert(labels: &[(&str, &str)]) -> Alert {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Alert::new(Source::Alertmanager, labels)
}

/// As Alertmanager API v2 sends it: resolves by itself after `resolve_timeout` without a refresh.
fn refreshed(labels: &[(&str, &str)]) -> Alert {
    let mut a = alert(labels);
    a.expires_without_refresh = true;
    a
}

fn resolved(mut a: Alert) -> Alert {
    a.status = Status::Resolved;
    a
}

fn fp(a: &Alert) -> Fingerprint {
    a.fingerprint
        .unwrap_or_else(|| Fingerprint::of(&a.labels, &[]))
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn ids(ids: &[u64]) -> Vec<IncidentId> {
    ids.iter().copied().map(IncidentId).collect()
}

fn ack(actor: &str) -> Action {
    Action::Acknowledge {
        actor: actor.into(),
        reason: None,
    }
}

fn escalate(to: Option<Tier>, reason: Option<&str>) -> Action {
    Action::Escalate {
        actor: "bob".into(),
        reason: reason.map(String::from),
        to,
        vendor: None,
        vendor_ref: None,
    }
}

fn storm(n: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            alert(&[
                ("alertname", "NodeDown"),
                ("service", "edge"),
                ("instance", &format!("node-{i}")),
            ])
        })
        .collect()
}

#[test]
fn a_storm_opens_one_incident_in_one_command_or_in_one_group_commit() {
    let check = |h: &Harness| {
        assert_eq!(h.incident_ids(), [1]);
        let incident = h.incident(1);
        assert_eq!(incident.alert_count, 500);
        assert_eq!(incident.firing_count, 500);
        assert_eq!(incident.tier, Tier::L1);
        assert_eq!(incident.group_key, r#"alertname="NodeDown",service="edge""#);
        assert_eq!(h.members(1).len(), 500);
        assert_eq!(h.opened(Tier::L1, Severity::Warning), 1);
        assert_eq!(h.open_gauge(Tier::L1), 1);
        assert_eq!(h.store.next_incident_number().unwrap(), 2);
    };

    let mut h = Harness::new("");
    let s = h.ingest(storm(500));
    assert_eq!(
        s,
        IngestSummary {
            received: 500,
            accepted: 500,
            incidents: ids(&[1]),
            ..IngestSummary::default()
        }
    );
    check(&h);

    let mut h = Harness::new("");
    let (commands, answers): (Vec<_>, Vec<_>) = storm(500)
        .chunks(100)
        .map(|chunk| ingest_command(Source::Alertmanager, chunk.to_vec()))
        .unzip();
    h.step(commands);
    for answer in answers {
        let s = summary(answer);
        assert_eq!((s.received, s.accepted), (100, 100));
        assert_eq!(s.incidents, ids(&[1]), "every command joined INC-1");
    }
    check(&h);
}

#[test]
fn a_repeated_alert_is_one_member_counted_as_often_as_it_came() {
    let mut h = Harness::new("");
    let a = alert(&[
        ("alertname", "CpuHigh"),
        ("service", "api"),
        ("severity", "major"),
    ]);
    let s = h.ingest(vec![a.clone(); 4]);
    assert_eq!(
        s,
        IngestSummary {
            received: 4,
            accepted: 4,
            deduplicated: 3,
            incidents: ids(&[1]),
            ..IngestSummary::default()
        }
    );
    for _ in 0..6 {
        h.clock.advance(10);
        let s = h.ingest(vec![a.clone()]);
        assert_eq!((s.accepted, s.deduplicated), (1, 1));
        assert!(s.incidents.is_empty(), "a repeat joins nothing: {s:?}");
    }

    let record = h.record(&a);
    assert_eq!(record.count, 10);
    assert_eq!(record.status, Status::Firing);
    assert_eq!(record.first_seen, T0.parse::<DateTime<Utc>>().unwrap());
    assert_eq!(record.last_seen, h.now());
    assert_eq!(record.incident, Some(IncidentId(1)));
    assert_eq!(h.members(1), [fp(&a)]);
    let incident = h.incident(1);
    assert_eq!((incident.alert_count, incident.firing_count), (1, 1));
    assert_eq!(h.incident_ids(), [1]);
    let deduplicated = |source: &str| {
        h.metrics
            .alerts_deduplicated
            .with_label_values(&[source])
            .get()
    };
    assert_eq!(deduplicated("alertmanager"), 9);
    assert_eq!(deduplicated("webhook"), 0);
    assert_eq!(h.opened(Tier::L2, Severity::Major), 1);
}

#[test]
fn severity_decides_the_tier_and_info_opens_no_incident() {
    let mut h = Harness::new("");
    let cases = [
        ("critical", Tier::L3, Severity::Critical),
        ("major", Tier::L2, Severity::Major),
        ("warning", Tier::L1, Severity::Warning),
    ];
    for (n, (label, tier, severity)) in (1..).zip(cases) {
        let a = alert(&[("alertname", label), ("severity", label)]);
        let s = h.ingest(vec![a.clone()]);
        assert_eq!(s.incidents, ids(&[n]), "{label}");
        let incident = h.incident(n);
        assert_eq!(
            (incident.tier, incident.opened_tier, incident.severity),
            (tier, tier, severity),
            "{label}"
        );
        assert_eq!(h.record(&a).tier, tier);
        assert_eq!(h.opened(tier, severity), 1, "{label}");
        assert_eq!(h.open_gauge(tier), 1, "{label}");
    }

    let info = alert(&[("alertname", "Deployed"), ("severity", "info")]);
    let s = h.ingest(vec![info.clone()]);
    assert_eq!(
        s,
        IngestSummary {
            received: 1,
            accepted: 1,
            auto_handled: 1,
            ..IngestSummary::default()
        }
    );
    let record = h.record(&info);
    assert_eq!(record.tier, Tier::L0);
    assert_eq!(record.severity, Severity::Info);
    assert_eq!(record.incident, None);
    assert_eq!(h.metrics.alerts_auto_handled.get(), 1);
    assert_eq!(h.incident_ids(), [3, 2, 1]);
}

#[test]
fn rules_set_grouping_labels_and_runbook_else_the_annotation_gives_the_runbook() {
    let mut h = Harness::new(
        r#"
[[rules]]
name = "db"
matchers = ['service="db"']
group_by = ["cluster"]
set_labels = { team = "dba" }
runbook = "https://runbooks.example/db"
"#,
    );
    let pg_down = alert(&[
        ("alertname", "PgDown"),
        ("service", "db"),
        ("cluster", "eu-1"),
        ("severity", "critical"),
    ]);
    // Another alertname: the default group_by would open a second incident.
    let pg_lag = alert(&[
        ("alertname", "PgLag"),
        ("service", "db"),
        ("cluster", "eu-1"),
    ]);
    let mut api_slow = alert(&[("alertname", "ApiSlow"), ("service", "api")]);
    api_slow
        .annotations
        .insert("runbook_url".into(), "https://runbooks.example/api".into());

    let s = h.ingest(vec![pg_down.clone(), pg_lag.clone(), api_slow]);
    assert_eq!(s.incidents, ids(&[1, 2]));

    let db = h.incident(1);
    assert_eq!(db.group_key, r#"cluster="eu-1""#);
    let labels: Vec<(&str, &str)> = db
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, [("cluster", "eu-1"), ("team", "dba")]);
    assert_eq!(db.runbook.as_deref(), Some("https://runbooks.example/db"));
    assert_eq!(db.rule.as_deref(), Some("db"));
    assert_eq!((db.alert_count, db.tier), (2, Tier::L3));
    assert_eq!(h.members(1).len(), 2);
    let record = h.record(&pg_lag);
    assert_eq!(record.labels.get("team").map(String::as_str), Some("dba"));
    assert_eq!(record.rules, ["db"]);

    let api = h.incident(2);
    assert_eq!(api.group_key, r#"alertname="ApiSlow",service="api""#);
    assert_eq!(api.labels.len(), 2);
    assert_eq!(api.runbook.as_deref(), Some("https://runbooks.example/api"));
    assert_eq!(api.rule, None);
}

#[test]
fn a_more_severe_member_escalates_its_incident() {
    let mut h = Harness::new("");
    let member = |instance, severity| {
        alert(&[
            ("alertname", "Latency"),
            ("service", "checkout"),
            ("instance", instance),
            ("severity", severity),
        ])
    };
    h.ingest(vec![member("a", "warning")]);
    assert_eq!(h.incident(1).tier, Tier::L1);
    h.clock.advance(30);
    let s = h.ingest(vec![member("b", "critical")]);
    assert_eq!(s.incidents, ids(&[1]));

    let incident = h.incident(1);
    assert_eq!(
        (incident.tier, incident.opened_tier, incident.severity),
        (Tier::L3, Tier::L1, Severity::Critical)
    );
    assert_eq!((incident.alert_count, incident.firing_count), (2, 2));
    let last = incident.timeline.last().unwrap();
    assert_eq!(last.kind, EventKind::Escalated);
    assert_eq!(last.actor, SYSTEM_ACTOR);
    assert_eq!(last.reason.as_deref(), Some("severity"));
    assert_eq!((last.from, last.to), (Some(Tier::L1), Some(Tier::L3)));
    assert_eq!(last.at, h.now());

    assert_eq!(h.escalated(Tier::L1, Tier::L3, "severity"), 1);
    assert_eq!(h.open_gauge(Tier::L1), 0);
    assert_eq!(h.open_gauge(Tier::L3), 1);
    assert_eq!(h.opened(Tier::L1, Severity::Warning), 1);
    assert_eq!(
        h.opened(Tier::L3, Severity::Critical),
        0,
        "nothing new opened"
    );
    let open_l3 = IncidentFilter {
        state: Some(State::Open),
        tier: Some(Tier::L3),
    };
    let (page, _) = h.store.list_incidents(&open_l3, None, 10).unwrap();
    assert_eq!(page.len(), 1);
}

#[test]
fn an_alertmanager_end_resolves_the_alert_and_its_incident_when_the_clock_passes_it() {
    let mut h = Harness::new(RESOLVE_30S);
    let t0 = h.now();
    let mut a = refreshed(&[("alertname", "DiskFull"), ("service", "db")]);
    a.ends_at = Some(t0 + secs(60));
    h.ingest(vec![a.clone()]);
    let record = h.record(&a);
    assert_eq!(record.status, Status::Firing);
    assert_eq!(
        record.expires_at,
        Some(t0 + secs(60)),
        "endsAt, not the 30s"
    );
    assert_eq!(h.store.next_deadline().unwrap(), Some(t0 + secs(60)));

    h.clock.advance(59);
    h.tick();
    assert_eq!(h.record(&a).status, Status::Firing);

    h.clock.advance(2);
    h.tick();
    let record = h.record(&a);
    assert_eq!(record.status, Status::Resolved);
    assert_eq!(record.ends_at, Some(t0 + secs(60)));
    assert_eq!(record.expires_at, None);
    let incident = h.incident(1);
    assert_eq!(incident.state, State::Resolved);
    assert_eq!(incident.resolved_at, Some(t0 + secs(61)));
    assert_eq!(incident.firing_count, 0);
    let last = incident.timeline.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (EventKind::Resolved, SYSTEM_ACTOR)
    );
    assert_eq!(last.reason.as_deref(), Some("all alerts resolved"));
    assert_eq!(h.resolved(Tier::L1, "auto"), 1);
    assert_eq!(h.mttr(Tier::L1, Severity::Warning), (1, 61.0));
    assert_eq!(h.open_gauge(Tier::L1), 0);
    assert_eq!(h.store.next_deadline().unwrap(), None);
}

#[test]
fn resolve_timeout_expires_an_alert_unless_it_is_sent_again() {
    let mut h = Harness::new(RESOLVE_30S);
    let t0 = h.now();
    let quiet = refreshed(&[("alertname", "Quiet")]);
    let chatty = refreshed(&[("alertname", "Chatty")]);
    assert_eq!(
        h.ingest(vec![quiet.clone(), chatty.clone()]).incidents,
        ids(&[1, 2])
    );
    assert_eq!(h.record(&quiet).expires_at, Some(t0 + secs(30)));

    h.clock.advance(20);
    assert_eq!(h.ingest(vec![chatty.clone()]).deduplicated, 1);
    assert_eq!(h.record(&chatty).expires_at, Some(t0 + secs(50)));

    h.clock.advance(15); // t0+35
    h.tick();
    let record = h.record(&quiet);
    assert_eq!(record.status, Status::Resolved);
    assert_eq!(record.ends_at, Some(t0 + secs(30)));
    assert_eq!(h.incident(1).state, State::Resolved);
    assert_eq!(h.record(&chatty).status, Status::Firing);
    assert_eq!(h.incident(2).state, State::Open);

    h.clock.advance(16); // t0+51
    h.tick();
    let record = h.record(&chatty);
    assert_eq!(record.status, Status::Resolved);
    assert_eq!(record.ends_at, Some(t0 + secs(50)));
    assert_eq!(h.incident(2).state, State::Resolved);
    assert_eq!(h.resolved(Tier::L1, "auto"), 2);
    assert_eq!(h.mttr(Tier::L1, Severity::Warning), (2, 35.0 + 51.0));
}

#[test]
fn a_webhook_alert_without_an_end_never_expires() {
    let mut h = Harness::new(RESOLVE_30S);
    let mut a = alert(&[("alertname", "Backup"), ("service", "nas")]);
    a.source = Source::Webhook;
    h.ingest_as(Source::Webhook, vec![a.clone()]);
    assert_eq!(h.record(&a).expires_at, None);
    assert_eq!(h.store.next_deadline().unwrap(), None);

    h.clock.advance(86_400);
    h.tick();
    assert_eq!(h.record(&a).status, Status::Firing);
    assert_eq!(h.incident(1).state, State::Open);
    assert_eq!(h.open_gauge(Tier::L1), 1);
}

#[test]
fn an_expiry_fires_with_a_clock_that_has_sub_millisecond_precision() {
    // Utc::now() has nanoseconds; so does every resolve_timeout expiry computed from it. The
    // timer key keeps milliseconds only, so `expire_due` (mod.rs, `record.expires_at != Some(at)`)
    // takes the due timer for a stale one: it deletes the timer and leaves the alert firing for
    // ever (no deadline remains). Expected: Resolved at t0+30.123456789s; actual: Firing.
    let mut h = Harness::build(RESOLVE_30S, "2026-03-02T09:00:00.123456789Z", 16);
    let a = refreshed(&[("alertname", "Quiet")]);
    h.ingest(vec![a.clone()]);
    h.clock.advance(31);
    h.tick();
    assert_eq!(h.record(&a).status, Status::Resolved);
    assert_eq!(h.incident(1).state, State::Resolved);
}

#[test]
fn an_incident_resolves_when_all_its_members_have_and_frees_its_group() {
    let mut h = Harness::new("");
    let t0 = h.now();
    let key = r#"alertname="BackendDown",service="web""#;
    let member = |instance| {
        alert(&[
            ("alertname", "BackendDown"),
            ("service", "web"),
            ("instance", instance),
        ])
    };
    let (a, b) = (member("1"), member("2"));
    h.ingest(vec![a.clone(), b.clone()]);

    h.clock.advance(60);
    let s = h.ingest(vec![resolved(a.clone())]);
    assert_eq!((s.resolved, s.incidents.clone()), (1, ids(&[1])));
    let incident = h.incident(1);
    assert_eq!((incident.state, incident.firing_count), (State::Open, 1));
    assert_eq!(incident.resolved_at, None);
    assert_eq!(h.record(&a).ends_at, Some(t0 + secs(60)));

    h.clock.advance(60);
    let s = h.ingest(vec![resolved(b.clone())]);
    assert_eq!((s.resolved, s.incidents), (1, ids(&[1])));
    let incident = h.incident(1);
    assert_eq!(incident.state, State::Resolved);
    assert_eq!(incident.resolved_at, Some(t0 + secs(120)));
    assert_eq!(h.store.group(key).unwrap(), None);
    assert_eq!(h.open_gauge(Tier::L1), 0);
    assert_eq!(h.resolved(Tier::L1, "auto"), 1);
    assert_eq!(h.mttr(Tier::L1, Severity::Warning), (1, 120.0));

    // A repeat of the resolution changes nothing but the count (fired, resolved, resolved).
    let s = h.ingest(vec![resolved(b.clone())]);
    assert_eq!((s.resolved, s.incidents.len()), (0, 0));
    assert_eq!(h.record(&b).count, 3);
    assert_eq!(h.incident(1).resolved_at, Some(t0 + secs(120)));

    h.clock.advance(60);
    let s = h.ingest(vec![a.clone()]);
    assert_eq!(
        s.incidents,
        ids(&[2]),
        "a new incident, not the resolved one"
    );
    let reopened = h.incident(2);
    assert_eq!((reopened.state, reopened.alert_count), (State::Open, 1));
    assert_eq!(h.members(2), [fp(&a)]);
    assert_eq!(h.store.group(key).unwrap(), Some(IncidentId(2)));
    let record = h.record(&a);
    assert_eq!(record.incident, Some(IncidentId(2)));
    assert_eq!((record.count, record.first_seen), (3, t0));
    assert_eq!(
        h.incident(1).alert_count,
        2,
        "the old incident keeps its history"
    );
    assert_eq!(h.opened(Tier::L1, Severity::Warning), 2);
}

#[test]
fn without_auto_resolve_for_its_tier_an_incident_stays_open() {
    let mut h = Harness::new("[incidents]\nauto_resolve = [\"L3\"]\n");
    let warning = alert(&[("alertname", "Flaky")]);
    let critical = alert(&[("alertname", "Down"), ("severity", "critical")]);
    h.ingest(vec![warning.clone(), critical.clone()]);
    h.clock.advance(60);
    let s = h.ingest(vec![resolved(warning.clone()), resolved(critical)]);
    assert_eq!((s.resolved, s.incidents), (2, ids(&[1, 2])));

    let flaky = h.incident(1);
    assert_eq!((flaky.state, flaky.firing_count), (State::Open, 0));
    assert_eq!(flaky.resolved_at, None);
    assert_eq!(h.open_gauge(Tier::L1), 1);
    assert_eq!(h.resolved(Tier::L1, "auto"), 0);
    assert_eq!(h.incident(2).state, State::Resolved, "L3 is listed");
    assert_eq!(h.resolved(Tier::L3, "auto"), 1);

    // Firing again, it is back in the incident that stayed open.
    let s = h.ingest(vec![warning]);
    assert_eq!(s.incidents, ids(&[1]));
    let flaky = h.incident(1);
    assert_eq!((flaky.alert_count, flaky.firing_count), (1, 1));
}

#[test]
fn operators_acknowledge_escalate_assign_and_resolve() {
    let mut h = Harness::new("");
    let t0 = h.now();
    h.ingest(vec![alert(&[("alertname", "Queue"), ("service", "jobs")])]);
    h.clock.advance(120);

    let acked = h.act(1, ack("alice")).unwrap();
    assert_eq!(acked.state, State::Acknowledged);
    assert_eq!(acked.acknowledged_at, Some(t0 + secs(120)));
    assert_eq!(h.mtta(Tier::L1), (1, 120.0));
    assert!(matches!(
        h.act(1, ack("bob")),
        Err(PipelineError::Conflict(
            TransitionError::AlreadyAcknowledged(IncidentId(1))
        ))
    ));
    assert_eq!(h.mtta(Tier::L1).0, 1);

    let up = h.act(1, escalate(None, None)).unwrap();
    assert_eq!(up.tier, Tier::L2);
    let last = up.timeline.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (EventKind::Escalated, "bob")
    );
    assert_eq!(last.reason.as_deref(), Some("manual"));
    assert_eq!((last.from, last.to), (Some(Tier::L1), Some(Tier::L2)));
    assert_eq!(h.escalated(Tier::L1, Tier::L2, "manual"), 1);
    assert_eq!((h.open_gauge(Tier::L1), h.open_gauge(Tier::L2)), (0, 1));

    let vendor = h.act(1, escalate(Some(Tier::L4), Some("vendor"))).unwrap();
    assert_eq!(vendor.tier, Tier::L4);
    assert_eq!(
        vendor.timeline.last().unwrap().reason.as_deref(),
        Some("vendor")
    );
    assert_eq!(h.escalated(Tier::L2, Tier::L4, "manual"), 1);
    assert_eq!((h.open_gauge(Tier::L2), h.open_gauge(Tier::L4)), (0, 1));
    assert!(matches!(
        h.act(1, escalate(Some(Tier::L3), None)),
        Err(PipelineError::Conflict(TransitionError::NotUpward {
            at: Tier::L4,
            to: Tier::L3,
            ..
        }))
    ));
    assert!(matches!(
        h.act(1, escalate(None, None)),
        Err(PipelineError::Conflict(TransitionError::AtTop(_)))
    ));
    assert_eq!(
        h.incident(1).tier,
        Tier::L4,
        "refused escalations change nothing"
    );

    let assign = Action::Assign {
        actor: "alice".into(),
        assignee: "carol".into(),
    };
    assert_eq!(h.act(1, assign).unwrap().assignee.as_deref(), Some("carol"));

    h.clock.advance(180);
    let resolve = Action::Resolve {
        actor: "alice".into(),
        reason: Some("fixed".into()),
    };
    let done = h.act(1, resolve).unwrap();
    assert_eq!(done.state, State::Resolved);
    assert_eq!(done.resolved_at, Some(t0 + secs(300)));
    assert_eq!(h.resolved(Tier::L4, "operator"), 1);
    assert_eq!(h.mttr(Tier::L4, Severity::Warning), (1, 300.0));
    assert_eq!(h.open_gauge(Tier::L4), 0);
    assert_eq!(h.store.group(&done.group_key).unwrap(), None);
    assert!(matches!(
        h.act(1, ack("bob")),
        Err(PipelineError::Conflict(TransitionError::Resolved(
            IncidentId(1)
        )))
    ));
    assert!(matches!(
        h.act(99, ack("bob")),
        Err(PipelineError::NotFound(IncidentId(99)))
    ));

    let stored = h.incident(1);
    assert_eq!(stored, done);
    let kinds: Vec<EventKind> = stored.timeline.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Opened,
            EventKind::Acknowledged,
            EventKind::Escalated,
            EventKind::Escalated,
            EventKind::Assigned,
            EventKind::Resolved
        ]
    );
}

#[test]
fn a_failing_action_does_not_stop_an_ingest_in_the_same_group_commit() {
    let mut h = Harness::new("");
    let a = alert(&[("alertname", "Queue")]);
    let (unknown, unknown_answer) = incident_command(99, ack("alice"));
    let (ingest, ingest_answer) = ingest_command(Source::Alertmanager, vec![a.clone()]);
    let (downward, downward_answer) = incident_command(1, escalate(Some(Tier::L1), None));
    let (acked, acked_answer) = incident_command(1, ack("alice"));
    h.step(vec![unknown, ingest, downward, acked]);

    assert!(matches!(
        answered(unknown_answer),
        Err(PipelineError::NotFound(IncidentId(99)))
    ));
    assert_eq!(summary(ingest_answer).incidents, ids(&[1]));
    assert!(matches!(
        answered(downward_answer),
        Err(PipelineError::Conflict(TransitionError::NotUpward { .. }))
    ));
    assert!(matches!(answered(acked_answer), Ok(Outcome::Incident(_))));

    assert_eq!(h.record(&a).incident, Some(IncidentId(1)));
    let incident = h.incident(1);
    assert_eq!(
        (incident.state, incident.tier),
        (State::Acknowledged, Tier::L1)
    );
    assert_eq!(h.opened(Tier::L1, Severity::Warning), 1);
    assert_eq!(h.mtta(Tier::L1), (1, 0.0));
    assert_eq!(h.escalated(Tier::L1, Tier::L2, "manual"), 0);
}

#[test]
fn a_restart_rebuilds_counters_keeps_expiries_and_never_reuses_ids() {
    let mut h = Harness::new(RESOLVE_30S);
    let mut webhook = alert(&[("alertname", "Backup"), ("severity", "warning")]);
    webhook.source = Source::Webhook;
    h.ingest_as(Source::Webhook, vec![webhook]);
    let mut down = refreshed(&[("alertname", "Down"), ("severity", "critical")]);
    down.ends_at = Some(h.now() + secs(60));
    h.ingest(vec![down.clone()]);
    assert_eq!(h.incident_ids(), [2, 1]);

    let mut h = h.restart();
    assert_eq!(h.writer.memory.next_incident, 3);
    let open: Vec<(Tier, i64)> = h.writer.memory.open.clone().into_iter().collect();
    assert_eq!(open, [(Tier::L1, 1), (Tier::L3, 1)]);
    assert_eq!((h.open_gauge(Tier::L1), h.open_gauge(Tier::L3)), (1, 1));
    assert_eq!(h.opened(Tier::L3, Severity::Critical), 0, "fresh metrics");

    h.clock.advance(61);
    h.tick();
    assert_eq!(h.record(&down).status, Status::Resolved);
    assert_eq!(h.incident(2).state, State::Resolved);
    assert_eq!(h.resolved(Tier::L3, "auto"), 1);
    assert_eq!((h.open_gauge(Tier::L1), h.open_gauge(Tier::L3)), (1, 0));

    let s = h.ingest(vec![alert(&[("alertname", "New")])]);
    assert_eq!(s.incidents, ids(&[3]));
    down.ends_at = None;
    let s = h.ingest(vec![down]);
    assert_eq!(
        s.incidents,
        ids(&[4]),
        "the resolved group opens a new incident"
    );

    let h = h.restart();
    assert_eq!(h.writer.memory.next_incident, 5);
    assert_eq!(h.incident_ids(), [4, 3, 2, 1]);
    assert_eq!((h.open_gauge(Tier::L1), h.open_gauge(Tier::L3)), (2, 1));
}

#[test]
fn acknowledging_by_alert_acknowledges_its_incident() {
    let mut h = Harness::new("");
    let a = alert(&[("alertname", "Paged")]);
    let info = alert(&[("alertname", "Note"), ("severity", "info")]);
    h.ingest(vec![a.clone(), info.clone()]);
    h.clock.advance(45);

    assert_eq!(h.ack_alert(fp(&a)), Some(IncidentId(1)));
    let incident = h.incident(1);
    assert_eq!(incident.state, State::Acknowledged);
    let last = incident.timeline.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (EventKind::Acknowledged, "pagerduty")
    );
    assert_eq!(h.mtta(Tier::L1), (1, 45.0));

    // Already acknowledged: still answered with the incident, counted once.
    assert_eq!(h.ack_alert(fp(&a)), Some(IncidentId(1)));
    assert_eq!(h.mtta(Tier::L1).0, 1);
    assert_eq!(h.ack_alert(Fingerprint(0xdead_beef)), None);
    assert_eq!(h.ack_alert(fp(&info)), None, "an L0 alert has no incident");
}

#[test]
fn the_queue_is_bounded_and_closes_with_the_writer() {
    /// Poll once: `Pending` means queued and waiting for the writer.
    async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }
    let submit = |queue: &Queue, name: &'static str| {
        let queue = queue.clone();
        Box::pin(async move {
            queue
                .submit(|reply| Command::Ingest {
                    source: Source::Alertmanager,
                    alerts: vec![alert(&[("alertname", name)])],
                    reply,
                })
                .await
        })
    };

    let mut h = Harness::build("", T0, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut first = submit(&h.queue, "First");
        assert!(poll_once(&mut first).await.is_pending());
        assert!(matches!(
            submit(&h.queue, "Second").await,
            Err(SubmitError::Full)
        ));
        assert_eq!(
            h.metrics.queue_depth.get(),
            1,
            "the refused one is not counted"
        );

        // What the writer loop does: take the queued command and commit it.
        let queued = h.writer.rx.try_recv().expect("one command queued");
        h.step(vec![queued]);
        match poll_once(&mut first).await {
            Poll::Ready(Ok(Ok(Outcome::Ingested(s)))) => assert_eq!(s.incidents, ids(&[1])),
            other => panic!("expected the durable outcome, got {other:?}"),
        }

        let mut third = submit(&h.queue, "Third");
        assert!(poll_once(&mut third).await.is_pending());
        drop(h.writer);
        assert!(matches!(
            poll_once(&mut third).await,
            Poll::Ready(Err(SubmitError::Closed))
        ));
        assert!(matches!(
            submit(&h.queue, "Fourth").await,
            Err(SubmitError::Closed)
        ));
    });
}

#[test]
fn a_drop_rule_stores_nothing_and_counts_the_drop() {
    let mut h = Harness::new(
        r#"
[[rules]]
name = "watchdog"
matchers = ['alertname="Watchdog"']
action = "drop"
"#,
    );
    let watchdog = alert(&[("alertname", "Watchdog"), ("severity", "critical")]);
    let real = alert(&[("alertname", "Real")]);
    let s = h.ingest(vec![watchdog.clone(), real]);
    assert_eq!(
        s,
        IngestSummary {
            received: 2,
            accepted: 1,
            dropped: 1,
            incidents: ids(&[1]),
            ..IngestSummary::default()
        }
    );
    assert_eq!(h.store.alert(fp(&watchdog)).unwrap(), None);
    assert_eq!(
        h.metrics
            .alerts_suppressed
            .with_label_values(&["drop"])
            .get(),
        1
    );
    assert_eq!(h.incident_ids(), [1]);
    assert_eq!(h.opened(Tier::L3, Severity::Critical), 0);
}

/// Regression: an alert first seen at info (L0) and re-sent critical under the same identity
/// (PagerDuty's dedup_key keeps the fingerprint while severity changes) must open an incident.
#[test]
fn an_l0_alert_resent_more_severe_opens_an_incident() {
    let mut h = Harness::new("");
    let mut a = alert(&[("alertname", "Queue"), ("service", "billing")]);
    a.fingerprint = Some(Fingerprint(42));
    a.severity = Some(Severity::Info);
    let s = h.ingest(vec![a.clone()]);
    assert_eq!((s.auto_handled, s.incidents.len()), (1, 0));

    a.severity = Some(Severity::Critical);
    let s = h.ingest(vec![a.clone()]);
    assert_eq!(s.incidents, ids(&[1]));
    let incident = h.incident(1);
    assert_eq!(
        (incident.tier, incident.severity),
        (Tier::L3, Severity::Critical)
    );
    let record = h.record(&a);
    assert_eq!((record.count, record.incident), (2, Some(IncidentId(1))));

    // Further repeats are plain repeats again.
    let s = h.ingest(vec![a]);
    assert_eq!((s.deduplicated, s.incidents.len()), (1, 0));
    assert_eq!(h.incident(1).alert_count, 1);
}
