//! The pipeline: THE writer. Every state change is a [`Command`] sent into one bounded queue and
//! applied, in order, by one thread:
//!
//! ```text
//! normalize ► dedup ► classify ► triage ► incident changes ► one sled batch ► flush ► answer
//! ```
//!
//! The writer takes whatever commands are queued together (up to [`MAX_BATCH`]), applies each to
//! a transaction overlay ([`Tx`]), commits the overlay as one sled batch with one flush and one
//! fdatasync (group commit), then answers every sender. Only after the commit do metrics move,
//! so a failed commit neither acknowledges nor counts anything. Alert expiries (an `endsAt`
//! passing, or `dedup.resolve_timeout` without a refresh) are deadlines in the store that the
//! same loop turns into resolutions.
//!
//! Sources own parsing and HTTP; the store owns encoding; this module owns the decisions.

pub mod classify;
pub mod dedup;
#[cfg(test)]
mod tests;
pub mod triage;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::alert::{
    Alert, AlertRecord, Fingerprint, Labels, Severity, SeverityMap, Source, Status,
};
use crate::config::{Config, TiersConfig};
use crate::incident::{group_key, Incident, IncidentId, Tier, TransitionError, SYSTEM_ACTOR};
use crate::metrics::Metrics;
use crate::store::{Batch, Store, StoreError};

use classify::Rules;
use dedup::Seen;

/// Most commands applied in one group commit: bounds the latency of the first in the batch.
pub const MAX_BATCH: usize = 1024;
/// Most alert expiries handled in one pass, so a backlog after downtime cannot stall ingestion.
const MAX_EXPIRIES_PER_PASS: usize = 5000;
/// The writer wakes at least this often even with no deadline pending.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// Where time comes from: the system clock in the daemon, a fake one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything from the config that decisions depend on, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub exclude_labels: Vec<String>,
    pub severities: SeverityMap,
    pub resolve_timeout: Duration,
    pub group_by: Vec<String>,
    pub tiers: TiersConfig,
    pub auto_resolve: Vec<Tier>,
    pub rules: Rules,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Policy, String> {
        Ok(Policy {
            exclude_labels: config.dedup.exclude_labels.clone(),
            severities: config.severity.to_map(),
            resolve_timeout: config.dedup.resolve_timeout.0,
            group_by: config.grouping.group_by.clone(),
            tiers: config.tiers.clone(),
            auto_resolve: config.incidents.auto_resolve.clone(),
            rules: config.compile_rules()?,
        })
    }
}

/// An operator action on an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Acknowledge {
        actor: String,
        reason: Option<String>,
    },
    Resolve {
        actor: String,
        reason: Option<String>,
    },
    Escalate {
        actor: String,
        reason: Option<String>,
        to: Option<Tier>,
    },
    Assign {
        actor: String,
        assignee: String,
    },
}

/// What a command achieved, once durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ingested(IngestSummary),
    Incident(Box<Incident>),
    /// An acknowledgement by alert (PagerDuty's `acknowledge`): the incident acked, if any.
    AlertAcknowledged(Option<IncidentId>),
}

/// The answer to an ingest request.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct IngestSummary {
    pub received: usize,
    pub accepted: usize,
    pub deduplicated: usize,
    pub dropped: usize,
    pub auto_handled: usize,
    pub resolved: usize,
    /// Incidents this request opened, joined or resolved.
    pub incidents: Vec<IncidentId>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("no incident {0}")]
    NotFound(IncidentId),
    #[error(transparent)]
    Conflict(#[from] TransitionError),
    /// The batch this command was in could not be committed; nothing of it is durable.
    #[error("the change could not be stored: {0}")]
    Commit(String),
}

pub type Reply = oneshot::Sender<Result<Outcome, PipelineError>>;

pub enum Command {
    Ingest {
        source: Source,
        alerts: Vec<Alert>,
        reply: Reply,
    },
    /// Acknowledge the incident an alert belongs to (PagerDuty `acknowledge`).
    AcknowledgeAlert {
        fingerprint: Fingerprint,
        actor: String,
        reply: Reply,
    },
    Incident {
        id: IncidentId,
        action: Action,
        reply: Reply,
    },
    /// Apply everything queued before, commit, and stop.
    Shutdown,
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the writer queue is full")]
    Full,
    #[error("triaged is shutting down")]
    Closed,
}

/// The sending side of the writer queue. Bounded: when full, [`Queue::submit`] fails at once
/// with [`SubmitError::Full`] (HTTP answers 503 + Retry-After) instead of buffering without end.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Command>,
    metrics: Arc<Metrics>,
}

impl Queue {
    fn send(&self, command: Command) -> Result<(), SubmitError> {
        self.metrics.queue_depth.inc();
        self.tx.try_send(command).map_err(|e| {
            self.metrics.queue_depth.dec();
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }
        })
    }

    /// Queue the command built around a reply handle and wait for its durable outcome.
    pub async fn submit(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Result<Result<Outcome, PipelineError>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply))?;
        answer.await.map_err(|_| SubmitError::Closed)
    }

    /// Ask the writer to finish what is queued and stop.
    pub fn shutdown(&self) {
        self.metrics.queue_depth.inc();
        // A full queue is drained before the writer looks again, so block for the slot.
        if self.tx.send(Command::Shutdown).is_err() {
            self.metrics.queue_depth.dec();
        }
    }
}

/// Create the queue and the writer that drains it.
pub fn channel(
    capacity: usize,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: Policy,
    clock: Arc<dyn Clock>,
) -> Result<(Queue, Writer), StoreError> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let writer = Writer::new(rx, store, metrics.clone(), policy, clock)?;
    Ok((Queue { tx, metrics }, writer))
}

/// State the writer keeps in memory between commits, rebuilt from the store at start.
#[derive(Debug, Clone, Default)]
struct Counters {
    next_incident: u64,
    open: BTreeMap<Tier, i64>,
}

pub struct Writer {
    rx: Receiver<Command>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    counters: Counters,
    next_deadline: Option<DateTime<Utc>>,
    /// Set once recovery is done and the loop runs: `/-/ready`.
    pub ready: Arc<AtomicBool>,
}

impl Writer {
    fn new(
        rx: Receiver<Command>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Writer, StoreError> {
        let mut counters = Counters {
            next_incident: store.next_incident_number()?,
            open: BTreeMap::new(),
        };
        for incident in store.active_incidents()? {
            *counters.open.entry(incident.tier).or_default() += 1;
        }
        for (tier, n) in &counters.open {
            metrics
                .incidents_open
                .with_label_values(&[tier.as_str()])
                .set(*n);
        }
        let next_deadline = store.next_deadline()?;
        Ok(Writer {
            rx,
            store,
            metrics,
            policy,
            clock,
            counters,
            next_deadline,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The loop: runs on its own thread until [`Command::Shutdown`] or every sender is gone.
    pub fn run(mut self) {
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            next_incident = self.counters.next_incident,
            "writer started"
        );
        loop {
            let wait = match self.next_deadline {
                Some(at) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_WAKE),
                None => IDLE_WAKE,
            };
            let mut commands = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(c) => commands.push(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while commands.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => commands.push(c),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.metrics.queue_depth.sub(commands.len() as i64);
            if self.step(commands) {
                break;
            }
        }
        self.ready.store(false, Ordering::SeqCst);
        tracing::info!("writer stopped");
    }

    /// Apply one batch of commands and due expiries; returns true when asked to stop.
    fn step(&mut self, commands: Vec<Command>) -> bool {
        let now = self.clock.now();
        let mut tx = Tx::new(&self.store, &self.policy, self.counters.clone(), now);
        let mut replies = Vec::with_capacity(commands.len());
        let mut stop = false;
        let mut failed: Option<StoreError> = None;

        if let Err(e) = tx.expire_due() {
            failed = Some(e);
        }
        for command in commands {
            let (reply, result) = match command {
                Command::Shutdown => {
                    stop = true;
                    continue;
                }
                Command::Ingest {
                    source,
                    alerts,
                    reply,
                } => (reply, tx.ingest(source, alerts).map(Outcome::Ingested)),
                Command::AcknowledgeAlert {
                    fingerprint,
                    actor,
                    reply,
                } => (
                    reply,
                    tx.acknowledge_alert(fingerprint, &actor)
                        .map(Outcome::AlertAcknowledged),
                ),
                Command::Incident { id, action, reply } => (
                    reply,
                    tx.act(id, action).map(|i| Outcome::Incident(Box::new(i))),
                ),
            };
            let result = match result {
                Err(PipelineError::Store(e)) => {
                    // A read failed halfway: the overlay may hold half of this command.
                    failed.get_or_insert(e);
                    Err(PipelineError::Commit("store read failed".into()))
                }
                other => other,
            };
            replies.push((reply, result));
        }

        let Tx {
            batch,
            counters,
            effects,
            ..
        } = tx;
        let committed = match failed {
            Some(e) => Err(e),
            None => {
                let started = Instant::now();
                let r = self.store.commit(batch);
                self.metrics
                    .store_flush_seconds
                    .observe(started.elapsed().as_secs_f64());
                r
            }
        };
        match committed {
            Ok(()) => {
                self.counters = counters;
                for effect in effects {
                    effect.record(&self.metrics);
                }
                for reply in replies {
                    // A sender that gave up (client gone) is no error: the change is durable.
                    let _ = reply.0.send(reply.1);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; nothing of this batch is acknowledged");
                for (reply, _) in replies {
                    let _ = reply.send(Err(PipelineError::Commit(e.to_string())));
                }
            }
        }
        match self.store.next_deadline() {
            Ok(d) => self.next_deadline = d,
            Err(e) => {
                tracing::error!(error = %e, "reading the next alert expiry failed");
                self.next_deadline = Some(now + chrono::Duration::seconds(1));
            }
        }
        stop
    }
}

/// A metric change that happens only once its batch is durable.
#[derive(Debug, Clone)]
enum Effect {
    Deduplicated(Source),
    Dropped,
    AutoHandled,
    Opened(Tier, Severity),
    Escalated {
        from: Tier,
        to: Tier,
        reason: &'static str,
    },
    Resolved {
        tier: Tier,
        severity: Severity,
        by: &'static str,
        after: Duration,
        /// Resolved at the tier it opened at: first-contact resolution.
        first_contact: bool,
    },
    Acknowledged {
        tier: Tier,
        after: Duration,
    },
    OpenGauge(Tier, i64),
}

impl Effect {
    fn record(self, m: &Metrics) {
        match self {
            Effect::Deduplicated(source) => m
                .alerts_deduplicated
                .with_label_values(&[source.as_str()])
                .inc(),
            Effect::Dropped => m.alerts_suppressed.with_label_values(&["drop"]).inc(),
            Effect::AutoHandled => m.alerts_auto_handled.inc(),
            Effect::Opened(tier, severity) => m
                .incidents_opened
                .with_label_values(&[tier.as_str(), severity.as_str()])
                .inc(),
            Effect::Escalated { from, to, reason } => m
                .incidents_escalated
                .with_label_values(&[from.as_str(), to.as_str(), reason])
                .inc(),
            Effect::Resolved {
                tier,
                severity,
                by,
                after,
                first_contact,
            } => {
                if first_contact {
                    m.incidents_resolved_first_contact
                        .with_label_values(&[tier.as_str()])
                        .inc();
                }
                m.incidents_resolved
                    .with_label_values(&[tier.as_str(), by])
                    .inc();
                m.incident_resolve_seconds
                    .with_label_values(&[tier.as_str(), severity.as_str()])
                    .observe(after.as_secs_f64());
            }
            Effect::Acknowledged { tier, after } => m
                .incident_ack_seconds
                .with_label_values(&[tier.as_str()])
                .observe(after.as_secs_f64()),
            Effect::OpenGauge(tier, n) => {
                m.incidents_open.with_label_values(&[tier.as_str()]).set(n)
            }
        }
    }
}

/// One group commit in the making: reads see this batch's own writes first, then the store.
struct Tx<'a> {
    store: &'a Store,
    policy: &'a Policy,
    now: DateTime<Utc>,
    alerts: HashMap<Fingerprint, AlertRecord>,
    incidents: HashMap<IncidentId, Incident>,
    groups: HashMap<String, Option<IncidentId>>,
    batch: Batch,
    counters: Counters,
    effects: Vec<Effect>,
}

impl<'a> Tx<'a> {
    fn new(store: &'a Store, policy: &'a Policy, counters: Counters, now: DateTime<Utc>) -> Tx<'a> {
        Tx {
            store,
            policy,
            now,
            alerts: HashMap::new(),
            incidents: HashMap::new(),
            groups: HashMap::new(),
            batch: Batch::default(),
            counters,
            effects: Vec::new(),
        }
    }

    fn alert(&mut self, fp: Fingerprint) -> Result<Option<AlertRecord>, StoreError> {
        match self.alerts.get(&fp) {
            Some(r) => Ok(Some(r.clone())),
            None => self.store.alert(fp),
        }
    }

    fn put_alert(&mut self, record: AlertRecord) {
        self.batch.put_alert(&record);
        self.alerts.insert(record.fingerprint, record);
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        match self.incidents.get(&id) {
            Some(i) => Ok(Some(i.clone())),
            None => self.store.incident(id),
        }
    }

    fn put_incident(&mut self, incident: Incident) {
        self.batch.put_incident(&incident);
        self.incidents.insert(incident.id, incident);
    }

    fn group(&mut self, key: &str) -> Result<Option<IncidentId>, StoreError> {
        match self.groups.get(key) {
            Some(id) => Ok(*id),
            None => self.store.group(key),
        }
    }

    fn set_group(&mut self, key: &str, id: Option<IncidentId>) {
        self.batch.set_group(key, id);
        self.groups.insert(key.to_string(), id);
    }

    fn set_expiry(
        &mut self,
        fp: Fingerprint,
        old: Option<DateTime<Utc>>,
        new: Option<DateTime<Utc>>,
    ) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.batch.set_timer(old, fp, false);
        }
        if let Some(new) = new {
            self.batch.set_timer(new, fp, true);
        }
    }

    fn open_gauge(&mut self, tier: Tier, delta: i64) {
        let n = self.counters.open.entry(tier).or_default();
        *n += delta;
        let n = *n;
        self.effects.push(Effect::OpenGauge(tier, n));
    }

    fn ingest(
        &mut self,
        source: Source,
        alerts: Vec<Alert>,
    ) -> Result<IngestSummary, PipelineError> {
        let mut summary = IngestSummary {
            received: alerts.len(),
            ..IngestSummary::default()
        };
        for alert in alerts {
            self.ingest_one(source, alert, &mut summary)?;
        }
        summary.accepted = summary.received - summary.dropped;
        Ok(summary)
    }

    /// The pipeline for one alert, spelled once.
    fn ingest_one(
        &mut self,
        source: Source,
        alert: Alert,
        summary: &mut IngestSummary,
    ) -> Result<(), PipelineError> {
        let policy = self.policy;
        let now = self.now;
        let alert = alert.normalize(&policy.exclude_labels, &policy.severities, now);
        let fp = alert.fingerprint;
        let previous = self.alert(fp)?;
        let seen = dedup::observe(previous.as_ref(), alert.alert.status);

        if let Seen::Resolves | Seen::AlreadyResolved = seen {
            let ended = alert.alert.ends_at.unwrap_or(now);
            match previous {
                Some(mut record) => {
                    record.count += 1;
                    record.last_seen = now;
                    if seen == Seen::Resolves {
                        if let Some(id) = self.resolve_member(&mut record, ended)? {
                            push_unique(&mut summary.incidents, id);
                        }
                        summary.resolved += 1;
                    }
                    self.put_alert(record);
                }
                None => {
                    // A resolution of something never seen firing is still recorded: what was
                    // acknowledged must be findable.
                    let record = new_record(
                        &alert,
                        source,
                        alert.alert.labels.clone(),
                        Tier::L0,
                        vec![],
                        None,
                        now,
                    );
                    self.put_alert(record);
                }
            }
            return Ok(());
        }

        let class = policy.rules.classify(&alert);
        if let Some(rule) = &class.dropped_by {
            tracing::debug!(fingerprint = %fp, rule = %rule, "alert dropped by rule");
            self.effects.push(Effect::Dropped);
            summary.dropped += 1;
            return Ok(());
        }
        let severity = triage::severity(&alert, &class);
        let tier = triage::tier(severity, &class, &policy.tiers);
        let expires_at = triage::expiry(&alert, policy.resolve_timeout);

        // A repeat opens nothing, unless it now needs a person where it did not before (an L0
        // alert re-sent with a higher severity under the same identity, as PagerDuty allows).
        let needs_incident_now = previous
            .as_ref()
            .is_some_and(|r| r.incident.is_none() && tier > Tier::L0);
        if let (Seen::Repeats, Some(mut record), false) =
            (seen, previous.clone(), needs_incident_now)
        {
            self.effects.push(Effect::Deduplicated(source));
            summary.deduplicated += 1;
            self.set_expiry(fp, record.expires_at, expires_at);
            record.count += 1;
            record.last_seen = now;
            record.expires_at = expires_at;
            record.ends_at = alert.alert.ends_at;
            record.annotations = alert.alert.annotations.clone();
            let raised = severity > record.severity;
            record.severity = record.severity.max(severity);
            if let (true, Some(id)) = (raised, record.incident) {
                self.raise_severity(id, severity, tier)?;
                push_unique(&mut summary.incidents, id);
            }
            self.put_alert(record);
            return Ok(());
        }

        // Fires: new, or firing again after it resolved.
        let (first_seen, count, old_expiry, old_incident) = match &previous {
            Some(r) => (r.first_seen, r.count + 1, r.expires_at, r.incident),
            None => (now, 1, None, None),
        };
        self.set_expiry(fp, old_expiry, expires_at);
        let mut record = new_record(
            &alert,
            source,
            class.labels.clone(),
            tier,
            class.rules.clone(),
            expires_at,
            now,
        );
        record.severity = severity;
        record.first_seen = first_seen;
        record.count = count;

        if tier == Tier::L0 {
            self.effects.push(Effect::AutoHandled);
            summary.auto_handled += 1;
            self.put_alert(record);
            return Ok(());
        }

        let group_by = class.group_by.as_deref().unwrap_or(&policy.group_by);
        let (key, group_labels) = group_key(&class.labels, group_by);
        let joined = match self.group(&key)? {
            Some(id) => self.incident(id)?.filter(Incident::is_active),
            None => None,
        };
        let mut incident = match joined {
            Some(incident) => incident,
            None => {
                let id = IncidentId(self.counters.next_incident);
                self.counters.next_incident += 1;
                self.batch
                    .set_next_incident_number(self.counters.next_incident);
                let mut labels = group_labels;
                labels.extend(class.labels_set_by_rules(&alert.alert.labels));
                let runbook = class
                    .runbook
                    .clone()
                    .or_else(|| runbook_annotation(&alert.alert.annotations));
                let incident = Incident::open(
                    id,
                    tier,
                    severity,
                    key.clone(),
                    labels,
                    runbook,
                    class.rules.last().cloned(),
                    now,
                );
                tracing::info!(incident = %id, tier = %tier, severity = %severity, group = %key, "incident opened");
                self.effects.push(Effect::Opened(tier, severity));
                self.open_gauge(tier, 1);
                self.set_group(&key, Some(id));
                incident
            }
        };
        if old_incident != Some(incident.id) {
            incident.alert_count += 1;
            self.batch.add_member(incident.id, fp);
        }
        incident.firing_count += 1;
        record.incident = Some(incident.id);
        push_unique(&mut summary.incidents, incident.id);
        let id = incident.id;
        self.put_incident(incident);
        self.put_alert(record);
        self.raise_severity(id, severity, tier)?;
        Ok(())
    }

    /// A member of higher severity raises the incident's severity and, where its tier is higher,
    /// escalates the incident to it (reason `severity`).
    fn raise_severity(
        &mut self,
        id: IncidentId,
        severity: Severity,
        tier: Tier,
    ) -> Result<(), PipelineError> {
        let Some(mut incident) = self.incident(id)? else {
            return Ok(());
        };
        if !incident.is_active() {
            return Ok(());
        }
        let mut changed = false;
        if severity > incident.severity {
            incident.severity = severity;
            changed = true;
        }
        if tier > incident.tier {
            let from = incident.escalate(SYSTEM_ACTOR, Some(tier), "severity", self.now)?;
            tracing::info!(incident = %id, from = %from, to = %tier, reason = "severity", "escalated");
            self.effects.push(Effect::Escalated {
                from,
                to: tier,
                reason: "severity",
            });
            self.open_gauge(from, -1);
            self.open_gauge(tier, 1);
            changed = true;
        }
        if changed {
            self.put_incident(incident);
        }
        Ok(())
    }

    /// Mark a firing member resolved at `at`; auto-resolves its incident when it was the last
    /// firing member. Returns the incident touched.
    fn resolve_member(
        &mut self,
        record: &mut AlertRecord,
        at: DateTime<Utc>,
    ) -> Result<Option<IncidentId>, PipelineError> {
        self.set_expiry(record.fingerprint, record.expires_at, None);
        record.status = Status::Resolved;
        record.ends_at = Some(at);
        record.expires_at = None;
        let Some(id) = record.incident else {
            return Ok(None);
        };
        let Some(mut incident) = self.incident(id)? else {
            return Ok(None);
        };
        incident.firing_count = incident.firing_count.saturating_sub(1);
        if incident.firing_count == 0
            && incident.is_active()
            && self.policy.auto_resolve.contains(&incident.tier)
        {
            let after =
                incident.resolve(SYSTEM_ACTOR, Some("all alerts resolved".into()), self.now)?;
            tracing::info!(incident = %id, tier = %incident.tier, "incident resolved: all alerts resolved");
            self.closed(&incident, "auto", after);
        }
        self.put_incident(incident);
        Ok(Some(id))
    }

    /// Bookkeeping when an incident resolves, whoever resolved it.
    fn closed(&mut self, incident: &Incident, by: &'static str, after: Duration) {
        self.effects.push(Effect::Resolved {
            tier: incident.tier,
            severity: incident.severity,
            by,
            after,
            first_contact: incident.tier == incident.opened_tier,
        });
        self.open_gauge(incident.tier, -1);
        if self.group(&incident.group_key).ok().flatten() == Some(incident.id) {
            self.set_group(&incident.group_key, None);
        }
    }

    /// Alert expiries that are due: each resolves its alert as an explicit resolution would.
    fn expire_due(&mut self) -> Result<(), StoreError> {
        let due = self.store.due_timers(self.now, MAX_EXPIRIES_PER_PASS)?;
        for (at, fp) in due {
            self.batch.set_timer(at, fp, false);
            let Some(mut record) = self.alert(fp)? else {
                continue;
            };
            if record.status != Status::Firing || record.expires_at != Some(at) {
                continue; // refreshed or resolved since: a stale deadline
            }
            tracing::debug!(fingerprint = %fp, "alert expired");
            match self.resolve_member(&mut record, at) {
                Ok(_) => {}
                Err(PipelineError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!(fingerprint = %fp, error = %e, "expiring alert"),
            }
            // resolve_member cleared the expiry; the timer key is already removed above.
            self.put_alert(record);
        }
        Ok(())
    }

    fn acknowledge_alert(
        &mut self,
        fp: Fingerprint,
        actor: &str,
    ) -> Result<Option<IncidentId>, PipelineError> {
        let Some(id) = self.alert(fp)?.and_then(|r| r.incident) else {
            return Ok(None);
        };
        let action = Action::Acknowledge {
            actor: actor.to_string(),
            reason: None,
        };
        match self.act(id, action) {
            Ok(_) | Err(PipelineError::Conflict(_)) => Ok(Some(id)),
            Err(e) => Err(e),
        }
    }

    fn act(&mut self, id: IncidentId, action: Action) -> Result<Incident, PipelineError> {
        let mut incident = self.incident(id)?.ok_or(PipelineError::NotFound(id))?;
        let now = self.now;
        match action {
            Action::Acknowledge { actor, reason } => {
                let after = incident.acknowledge(&actor, reason, now)?;
                tracing::info!(incident = %id, actor = %actor, "acknowledged");
                self.effects.push(Effect::Acknowledged {
                    tier: incident.tier,
                    after,
                });
            }
            Action::Resolve { actor, reason } => {
                let after = incident.resolve(&actor, reason, now)?;
                tracing::info!(incident = %id, actor = %actor, "resolved by operator");
                self.closed(&incident, "operator", after);
            }
            Action::Escalate { actor, reason, to } => {
                let reason_text = reason.unwrap_or_else(|| "manual".into());
                let from = incident.escalate(&actor, to, &reason_text, now)?;
                tracing::info!(incident = %id, from = %from, to = %incident.tier, reason = "manual", actor = %actor, "escalated");
                self.effects.push(Effect::Escalated {
                    from,
                    to: incident.tier,
                    reason: "manual",
                });
                self.open_gauge(from, -1);
                self.open_gauge(incident.tier, 1);
            }
            Action::Assign { actor, assignee } => {
                incident.assign(&actor, assignee, now)?;
            }
        }
        self.put_incident(incident.clone());
        Ok(incident)
    }
}

fn new_record(
    alert: &crate::alert::NormalizedAlert,
    source: Source,
    labels: Labels,
    tier: Tier,
    rules: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> AlertRecord {
    AlertRecord {
        fingerprint: alert.fingerprint,
        source,
        status: alert.alert.status,
        severity: alert.severity,
        labels,
        annotations: alert.alert.annotations.clone(),
        starts_at: alert.alert.starts_at.unwrap_or(now),
        ends_at: alert.alert.ends_at,
        expires_at,
        generator_url: alert.alert.generator_url.clone(),
        first_seen: now,
        last_seen: now,
        count: 1,
        incident: None,
        tier,
        rules,
    }
}

fn runbook_annotation(annotations: &Labels) -> Option<String> {
    ["runbook_url", "runbook"]
        .iter()
        .find_map(|k| annotations.get(*k))
        .filter(|v| !v.is_empty())
        .cloned()
}

fn push_unique(ids: &mut Vec<IncidentId>, id: IncidentId) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}
