//! One group commit in the making: the decisions of the writer applied to an overlay of the
//! store. Reads see this batch's own writes first, then the store; nothing is durable, and no
//! metric moves, until the writer commits the batch ([`Tx::finish`]).
//!
//! The pipeline for one alert is spelled once, in [`Tx::ingest_one`]:
//! normalize ► dedup ► classify ► triage ► silence ► group (join, reopen or open) ► escalate.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::alert::{
    Alert, AlertRecord, FastMap, Fingerprint, Labels, NormalizedAlert, Severity, Source, Status,
};
use crate::config::FlapAction;
use crate::incident::{
    group_key, group_labels, EventKind, Incident, IncidentId, State, Tier, TransitionError,
    SYSTEM_ACTOR,
};
use crate::metrics::Metrics;
use crate::outbox::OutboxEvent;
use crate::retention::{Removed, Sweep};
use crate::silence::{self, PostableSilence, Silence, SilenceId, SilenceState};
use crate::store::{
    alert_expired, incident_expired, refresh, Batch, Refresh, Store, StoreError, Timer,
};

use super::classify::Classification;
use super::dedup::{self, Seen};
use super::{escalation, triage, Action, Decision, IngestSummary, PipelineError, Policy, Verdict};

/// What the writer keeps in memory between commits; rebuilt from the store at start, replaced
/// only when a batch commits.
#[derive(Debug, Clone, Default)]
pub(super) struct Memory {
    pub next_outbox: u64,
    /// Each sink's outbox cursor: what every sink has passed can be trimmed.
    pub cursors: BTreeMap<String, u64>,
    pub next_dead_letter: u64,
    pub next_incident: u64,
    pub open: BTreeMap<Tier, i64>,
    /// Silences not yet expired, compiled; shared until a batch changes them.
    pub silences: Arc<Vec<silence::Compiled>>,
}

/// A metric change that happens only once its batch is durable.
#[derive(Debug, Clone)]
pub(super) enum Effect {
    Deduplicated(Source),
    /// The rules that matched a firing alert.
    RulesMatched(Vec<String>),
    Dropped,
    Silenced,
    AutoHandled,
    Flapping,
    Opened(Tier, Severity),
    Reopened(Tier),
    Escalated {
        from: Tier,
        to: Tier,
        reason: &'static str,
    },
    Deescalated {
        from: Tier,
        to: Tier,
    },
    Resolved {
        tier: Tier,
        severity: Severity,
        /// Resolved at the tier it opened at: first-contact resolution.
        first_contact: bool,
        auto: bool,
        after: Duration,
    },
    Acknowledged {
        tier: Tier,
        severity: Severity,
        after: Duration,
    },
    OpenGauge(Tier, i64),
    /// What retention removed.
    Removed(Removed),
}

impl Effect {
    pub(super) fn record(self, m: &Metrics) {
        match self {
            Effect::Deduplicated(source) => m.source(source).deduplicated.inc(),
            Effect::RulesMatched(rules) => {
                for rule in rules {
                    m.rule_matches.with_label_values(&[&rule]).inc();
                }
            }
            Effect::Dropped => m.alerts_suppressed.with_label_values(&["drop"]).inc(),
            Effect::Silenced => m.alerts_suppressed.with_label_values(&["silence"]).inc(),
            Effect::AutoHandled => m.alerts_auto_handled.inc(),
            Effect::Flapping => m.alerts_flapping.inc(),
            Effect::Opened(tier, severity) => m
                .incidents_opened
                .with_label_values(&[tier.as_str(), severity.as_str()])
                .inc(),
            Effect::Reopened(tier) => m
                .incidents_reopened
                .with_label_values(&[tier.as_str()])
                .inc(),
            Effect::Escalated { from, to, reason } => m
                .incidents_escalated
                .with_label_values(&[from.as_str(), to.as_str(), reason])
                .inc(),
            Effect::Deescalated { from, to } => m
                .incidents_deescalated
                .with_label_values(&[from.as_str(), to.as_str()])
                .inc(),
            Effect::Resolved {
                tier,
                severity,
                first_contact,
                auto,
                after,
            } => {
                let by = if first_contact {
                    "first_contact"
                } else {
                    "escalated"
                };
                m.incidents_resolved
                    .with_label_values(&[tier.as_str(), by])
                    .inc();
                if auto {
                    m.incidents_auto_resolved
                        .with_label_values(&[tier.as_str()])
                        .inc();
                }
                m.incident_resolve_seconds
                    .with_label_values(&[tier.as_str(), severity.as_str()])
                    .observe(after.as_secs_f64());
            }
            Effect::Acknowledged {
                tier,
                severity,
                after,
            } => m
                .incident_ack_seconds
                .with_label_values(&[tier.as_str(), severity.as_str()])
                .observe(after.as_secs_f64()),
            Effect::OpenGauge(tier, n) => {
                m.incidents_open.with_label_values(&[tier.as_str()]).set(n)
            }
            Effect::Removed(removed) => {
                for (kind, n) in removed.by_kind() {
                    m.retention_removed.with_label_values(&[kind]).inc_by(n);
                }
            }
        }
    }
}

/// Outbox events one command removes at most.
const OUTBOX_TRIM: usize = 10_000;

pub(super) struct Tx {
    store: Arc<Store>,
    /// Shared, and replaceable mid-batch by a reload: commands after it see the new policy.
    policy: Arc<Policy>,
    now: DateTime<Utc>,
    alerts: FastMap<Fingerprint, AlertRecord>,
    /// Pure repeats of firing alerts not otherwise written by this batch: logged, not rewritten.
    refreshes: FastMap<Fingerprint, Refresh>,
    incidents: FastMap<IncidentId, Incident>,
    groups: FastMap<String, Option<IncidentId>>,
    /// Incidents and alerts this batch removed (retention): reads find them no more, unless
    /// this batch writes them again.
    removed_incidents: HashSet<IncidentId>,
    removed_alerts: HashSet<Fingerprint>,
    /// Alerts silenced in this batch (the store's index does not show them yet), each with the
    /// incident it was firing in when the silence took it (see [`Batch::set_silenced`]).
    silenced: Vec<(SilenceId, Fingerprint, Option<IncidentId>)>,
    batch: Batch,
    memory: Memory,
    effects: Vec<Effect>,
    /// Record a decision per alert in the summary.
    trace: bool,
}

impl Tx {
    pub(super) fn new(
        store: Arc<Store>,
        policy: Arc<Policy>,
        memory: Memory,
        now: DateTime<Utc>,
        trace: bool,
    ) -> Tx {
        Tx {
            store,
            policy,
            now,
            alerts: FastMap::default(),
            refreshes: FastMap::default(),
            incidents: FastMap::default(),
            groups: FastMap::default(),
            removed_incidents: HashSet::new(),
            removed_alerts: HashSet::new(),
            silenced: Vec::new(),
            batch: Batch::default(),
            memory,
            effects: Vec::new(),
            trace,
        }
    }

    /// Note what became of an alert, when tracing.
    #[allow(clippy::too_many_arguments)]
    fn decided(
        &self,
        summary: &mut IngestSummary,
        record: &AlertRecord,
        verdict: Verdict,
        class: Option<&Classification>,
        group_key: Option<String>,
        runbook: Option<String>,
    ) {
        if !self.trace {
            return;
        }
        summary.decisions.push(Decision {
            fingerprint: record.fingerprint,
            verdict,
            labels: record.labels.clone(),
            set_labels: class.map(|c| c.set_labels.clone()).unwrap_or_default(),
            rules: record.rules.clone(),
            severity: Some(record.severity),
            tier: Some(record.tier),
            incident: record.incident,
            group_key,
            runbook,
        });
    }

    /// The writes to commit, the memory to keep once they are durable, the metrics to move,
    /// and the policy in force at the end (a reload may have replaced it).
    pub(super) fn finish(mut self) -> (Batch, Memory, Vec<Effect>, Arc<Policy>) {
        // Everything in the overlay was written by this batch (reads do not fill it).
        for record in self.alerts.values() {
            self.batch.put_alert(record);
        }
        for refresh in self.refreshes.values() {
            self.batch.refresh(*refresh);
        }
        for (_, incident) in self.incidents.drain() {
            self.batch.put_incident(incident);
        }
        (self.batch, self.memory, self.effects, self.policy)
    }

    /// Swap in a new policy: commands after this one in the batch are decided by it.
    pub(super) fn reload(&mut self, policy: Policy) {
        self.policy = Arc::new(policy);
    }

    // ---- the overlay -------------------------------------------------------------------------

    fn alert(&mut self, fp: Fingerprint) -> Result<Option<AlertRecord>, StoreError> {
        if let Some(r) = self.alerts.get(&fp) {
            return Ok(Some(r.clone()));
        }
        if self.removed_alerts.contains(&fp) {
            return Ok(None);
        }
        let mut record = self.store.alert(fp)?;
        if let (Some(record), Some(refresh)) = (&mut record, self.refreshes.get(&fp)) {
            refresh.apply(record);
        }
        Ok(record)
    }

    /// Alerts and incidents are encoded once, when the batch is finished: a storm that touches
    /// one incident 500 times writes it once. A record read through [`Tx::alert`] carries its
    /// refreshes, so writing it supersedes them.
    fn put_alert(&mut self, record: AlertRecord) {
        self.refreshes.remove(&record.fingerprint);
        self.alerts.insert(record.fingerprint, record);
    }

    /// Fold the refreshes the store says are due into their records (see
    /// [`crate::store::refresh`]): at most `limit` alerts, each written in full once.
    pub(super) fn fold_refreshes(&mut self, limit: usize) -> Result<(), StoreError> {
        for fp in self.store.refreshes_due(limit)? {
            if self.alerts.contains_key(&fp) || self.refreshes.contains_key(&fp) {
                continue;
            }
            if let Some(record) = self.alert(fp)? {
                self.put_alert(record);
            }
        }
        Ok(())
    }

    /// A firing alert, classified and triaged, that only repeats what its stored record says,
    /// the way Prometheus and Alertmanager re-send: same annotations, no higher severity,
    /// placed already, and an expiry no earlier than the armed timer. It is logged as a
    /// [`Refresh`] and its record is neither read nor rewritten. False when it is anything more:
    /// the full path decides it.
    fn refreshed(
        &mut self,
        source: Source,
        alert: &NormalizedAlert,
        (severity, tier, expires_at): (Severity, Tier, Option<DateTime<Utc>>),
        summary: &mut IngestSummary,
    ) -> Result<bool, PipelineError> {
        let fp = alert.fingerprint;
        if self.trace || self.alerts.contains_key(&fp) {
            return Ok(false);
        }
        let Some((digest, logged)) = self.store.repeat_view(fp)? else {
            return Ok(false);
        };
        let placed = digest.incident.is_some() || digest.silenced || tier == Tier::L0;
        let kept = match self.refreshes.get(&fp) {
            Some(r) => (r.ends_at, r.expires_at),
            None => (digest.ends_at, digest.expires_at),
        };
        let (ends_at, expires_at) = triage::merge_expiry(kept, (alert.alert.ends_at, expires_at));
        let timer_stays = match (digest.timer_at, expires_at) {
            (Some(armed), Some(new)) => armed <= new,
            (armed, new) => armed == new,
        };
        if !placed
            || severity > digest.severity
            || !timer_stays
            || refresh::annotations_hash(&alert.alert.annotations) != digest.annotations
        {
            return Ok(false);
        }
        let count = [
            Some(digest.count),
            logged,
            self.refreshes.get(&fp).map(|r| r.count),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
            + 1;
        self.refreshes.insert(
            fp,
            Refresh {
                fingerprint: fp,
                count,
                last_seen: self.now,
                ends_at,
                expires_at,
            },
        );
        if digest.silenced {
            self.effects.push(Effect::Silenced);
            summary.silenced += 1;
        } else {
            self.effects.push(Effect::Deduplicated(source));
            summary.deduplicated += 1;
        }
        Ok(true)
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        match self.incidents.get(&id) {
            Some(i) => Ok(Some(i.clone())),
            None if self.removed_incidents.contains(&id) => Ok(None),
            None => self.store.incident(id),
        }
    }

    /// Store the incident with its escalation deadlines brought in line with its tier and state:
    /// every change to an incident passes here, so its timers can never disagree with it.
    fn put_incident(&mut self, mut incident: Incident) {
        // Every change to an incident passes here, so here too is where a hold on its
        // escalation by silences begins and ends, whichever change (a silence taking or letting
        // go of its alerts, a member resolving or joining) brings it about.
        match (incident.silenced(), incident.escalation_held_since) {
            (true, None) => {
                tracing::info!(incident = %incident.id, "every firing alert of the incident is silenced: its automatic escalation is held");
                incident.escalation_held_since = Some(self.now);
            }
            (false, Some(_)) => {
                tracing::info!(incident = %incident.id, "the incident has firing alerts no silence holds: its automatic escalation resumes, with fresh deadlines");
                incident.escalation_held_since = None;
                incident.escalation_resumed_at = Some(self.now);
            }
            _ => {}
        }
        let (ack, resolve) = escalation::deadlines(&incident, &self.policy.escalation);
        self.move_timer(incident.ack_deadline, ack, Timer::AckTimeout(incident.id));
        self.move_timer(
            incident.resolve_deadline,
            resolve,
            Timer::ResolveTimeout(incident.id),
        );
        incident.ack_deadline = ack;
        incident.resolve_deadline = resolve;
        self.publish(&mut incident);
        self.incidents.insert(incident.id, incident);
    }

    /// Append the incident's new timeline entries to the outbox, in this same batch.
    fn publish(&mut self, incident: &mut Incident) {
        let new = incident.events_published..incident.timeline.len();
        incident.events_published = incident.timeline.len();
        if self.policy.sinks.is_empty() || new.is_empty() {
            return;
        }
        // A flapping incident under `flapping.action = "suppress"` says only that it flaps and,
        // at the end, that it resolved: its ups and downs are held back.
        let hold_back = incident.flapping && self.policy.flapping.action == FlapAction::Suppress;
        let snapshot = OutboxEvent::incident_snapshot(incident);
        for index in new {
            let entry = &incident.timeline[index];
            if hold_back && !matches!(entry.kind, EventKind::Flapping | EventKind::Resolved) {
                continue;
            }
            let kind = serde_json::to_value(entry.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let event = OutboxEvent {
                version: crate::outbox::EVENT_VERSION,
                seq: self.memory.next_outbox,
                event_id: format!("{}:{index}", incident.id),
                kind,
                at: entry.at,
                actor: entry.actor.clone(),
                reason: entry.reason.clone(),
                from: entry.from,
                to: entry.to,
                incident: Some(snapshot.clone()),
                alert: None,
                runbook: None,
            };
            self.append(event);
        }
    }

    fn append(&mut self, event: OutboxEvent) {
        self.memory.next_outbox += 1;
        self.batch.put_outbox(&event);
    }

    /// The L0 automation hook: an auto-handled alert is an outbox event too (with its runbook).
    fn publish_auto_handled(&mut self, record: &AlertRecord, runbook: Option<String>) {
        if self.policy.sinks.is_empty() {
            return;
        }
        let event = OutboxEvent {
            version: crate::outbox::EVENT_VERSION,
            seq: self.memory.next_outbox,
            event_id: format!("alert:{}:{}", record.fingerprint, record.count),
            kind: "auto_handled".into(),
            at: self.now,
            actor: SYSTEM_ACTOR.into(),
            reason: None,
            from: None,
            to: Some(Tier::L0),
            incident: None,
            alert: Some(record.clone()),
            runbook,
        };
        self.append(event);
    }

    /// A sink passed everything up to `seq`; what every sink has passed leaves the outbox.
    pub(super) fn advance_cursor(&mut self, sink: &str, seq: u64) -> Result<(), PipelineError> {
        self.batch.set_cursor(sink, seq);
        self.memory.cursors.insert(sink.to_string(), seq);
        let passed_by_all = self
            .policy
            .sinks
            .iter()
            .map(|s| self.memory.cursors.get(s).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        for old in self.store.outbox_up_to(passed_by_all, OUTBOX_TRIM)? {
            self.batch.remove_outbox(old);
        }
        Ok(())
    }

    /// Remove what `storage.retention` has outlived (see [`crate::retention`]): each candidate
    /// is checked again here, against this batch and the store, so that what changed since the
    /// sweep's scan (an incident reopened, an alert firing again, a silence replaced) stays.
    pub(super) fn sweep(&mut self, sweep: Sweep) -> Result<Removed, PipelineError> {
        let cutoff = sweep.cutoff;
        let mut removed = Removed::default();
        for id in sweep.incidents {
            let Some(incident) = self.incident(id)? else {
                continue;
            };
            if !incident_expired(&incident, cutoff) {
                continue;
            }
            if self.group(&incident.group_key)? == Some(id) {
                self.batch.set_group(&incident.group_key, None);
                self.groups.insert(incident.group_key.clone(), None);
            }
            let member_keys = self.store.member_keys(id)?;
            self.batch.remove_incident(id, member_keys);
            self.removed_incidents.insert(id);
            removed.incidents += 1;
        }
        for fp in sweep.alerts {
            let Some(record) = self.alert(fp)? else {
                continue;
            };
            if !alert_expired(&record, cutoff) {
                continue;
            }
            // A member goes with its incident, not before: the incident lists it.
            if let Some(id) = record.incident {
                if self.incident(id)?.is_some() {
                    continue;
                }
            }
            self.refreshes.remove(&fp);
            self.batch.remove_alert(fp);
            self.removed_alerts.insert(fp);
            removed.alerts += 1;
        }
        for id in sweep.silences {
            // Active or pending silences are in memory; only an expired one can go.
            if self.silence(id).is_some() {
                continue;
            }
            let Some(silence) = self.store.silence(id)? else {
                continue;
            };
            if silence.ends_at > cutoff {
                continue;
            }
            let held: Vec<Fingerprint> = self.held(id)?.into_keys().collect();
            self.batch.remove_silence(id, &held);
            removed.silences += 1;
        }
        for id in sweep.dead_letters {
            self.batch.remove_dead_letter(id);
            removed.dead_letters += 1;
        }
        // Events are appended only while sinks are configured; those left when the last one
        // was removed are read by none.
        if sweep.outbox && self.policy.sinks.is_empty() {
            for seq in self.store.outbox_up_to(u64::MAX, OUTBOX_TRIM)? {
                self.batch.remove_outbox(seq);
                removed.outbox += 1;
            }
        }
        if !removed.is_empty() {
            self.effects.push(Effect::Removed(removed));
        }
        Ok(removed)
    }

    fn group(&mut self, key: &str) -> Result<Option<IncidentId>, StoreError> {
        match self.groups.get(key) {
            Some(id) => Ok(*id),
            None => self.store.group(key),
        }
    }

    fn set_group(&mut self, key: &str, id: IncidentId) {
        self.batch.set_group(key, Some(id));
        self.groups.insert(key.to_string(), Some(id));
    }

    fn move_timer(&mut self, old: Option<DateTime<Utc>>, new: Option<DateTime<Utc>>, timer: Timer) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.batch.set_timer(old, timer, false);
        }
        if let Some(new) = new {
            self.batch.set_timer(new, timer, true);
        }
    }

    fn open_gauge(&mut self, tier: Tier, delta: i64) {
        let n = self.memory.open.entry(tier).or_default();
        *n += delta;
        let n = *n;
        self.effects.push(Effect::OpenGauge(tier, n));
    }

    // ---- alerts ------------------------------------------------------------------------------

    pub(super) fn ingest(
        &mut self,
        source: Source,
        alerts: Vec<Alert>,
    ) -> Result<IngestSummary, PipelineError> {
        // The sources check it as they read (an invalid alert, counted so); checked again here,
        // with the policy in force, before any alert of the request changes anything.
        crate::sources::formats::check_starts_before_expiry(&alerts, self.now, || {
            self.policy.resolve_timeout
        })
        .map_err(|e| PipelineError::Invalid(e.detail()))?;
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

    /// An alert a rule dropped: counted, never stored.
    fn dropped(
        &mut self,
        fingerprint: Fingerprint,
        class: Classification,
        summary: &mut IngestSummary,
    ) {
        self.effects.push(Effect::Dropped);
        summary.dropped += 1;
        if self.trace {
            summary.decisions.push(Decision {
                fingerprint,
                verdict: Verdict::Dropped,
                labels: class.labels,
                set_labels: class.set_labels,
                rules: class.rules,
                severity: None,
                tier: None,
                incident: None,
                group_key: None,
                runbook: None,
            });
        }
    }

    /// The pipeline for one alert, spelled once.
    fn ingest_one(
        &mut self,
        source: Source,
        alert: Alert,
        summary: &mut IngestSummary,
    ) -> Result<(), PipelineError> {
        let policy = Arc::clone(&self.policy);
        let now = self.now;
        let mut alert = alert.normalize(&policy.exclude_labels, &policy.severities, now);
        let fp = alert.fingerprint;
        if alert.alert.status == Status::Resolved {
            let previous = self.alert(fp)?;
            let seen = dedup::observe(previous.as_ref(), Status::Resolved);
            return self.resolution(source, alert, previous, seen, summary);
        }

        // From here on the alert's labels are read from the classification only.
        let labels = std::mem::take(&mut alert.alert.labels);
        let mut class = policy.rules.classify_labels(labels, &alert);
        if let Some(rule) = &class.dropped_by {
            tracing::debug!(fingerprint = %fp, rule = %rule, "alert dropped by rule");
            // A dropped alert is not stored, so each of its re-sends counts as a match.
            self.effects.push(Effect::RulesMatched(class.rules.clone()));
            self.dropped(fp, class, summary);
            return Ok(());
        }
        let severity = triage::severity(&alert, &class);
        let tier = triage::tier(severity, &class, &policy.tiers);
        let expires_at = triage::expiry(&alert, policy.resolve_timeout);
        if self.refreshed(source, &alert, (severity, tier, expires_at), summary)? {
            return Ok(());
        }
        let previous = self.alert(fp)?;
        let seen = dedup::observe(previous.as_ref(), Status::Firing);

        // A repeat opens nothing, unless it now needs a person where it did not before (an L0
        // alert re-sent with a higher severity under the same identity, as PagerDuty allows).
        let needs_incident_now = previous
            .as_ref()
            .is_some_and(|r| r.incident.is_none() && r.silenced_by.is_none() && tier > Tier::L0);
        let previous = match previous {
            Some(mut record) if seen == Seen::Repeats && !needs_incident_now => {
                // A repeat of a silenced alert is answered and counted as what it is, held back
                // by a silence, whether the silence held it from its arrival or took it firing.
                let silenced = record.silenced_by.is_some();
                let verdict = if silenced {
                    self.effects.push(Effect::Silenced);
                    summary.silenced += 1;
                    Verdict::Silenced
                } else {
                    self.effects.push(Effect::Deduplicated(source));
                    summary.deduplicated += 1;
                    Verdict::Deduplicated
                };
                let (ends_at, expires_at) = triage::merge_expiry(
                    (record.ends_at, record.expires_at),
                    (alert.alert.ends_at, expires_at),
                );
                alert.alert.ends_at = ends_at;
                self.arm_expiry(&mut record, expires_at);
                let raised = record_repeat(&mut record, alert, (severity, tier), now);
                let incident = record.incident;
                self.decided(summary, &record, verdict, Some(&class), None, None);
                self.put_alert(record);
                // A silenced alert escalates nothing: its higher severity counts once it is
                // released (see `release`).
                if let (true, Some(id), false) = (raised, incident, silenced) {
                    self.raise_severity(id, fp, severity, tier)?;
                    push_unique(&mut summary.incidents, id);
                }
                return Ok(());
            }
            previous => previous,
        };

        // Fires: new, firing again after it resolved, or an L0 alert now needing a person.
        // Only these count as the rules' matches: a repeat is the same alert, sent again.
        if !class.rules.is_empty() {
            self.effects.push(Effect::RulesMatched(class.rules.clone()));
        }
        // The record takes the classified labels and matched rules: `place` reads the rest of
        // the classification (set labels, runbook, grouping) and the record for these.
        let mut record = new_record(
            alert,
            source,
            std::mem::take(&mut class.labels),
            std::mem::take(&mut class.rules),
            (severity, tier, expires_at),
            now,
        );
        let mut started_flapping = false;
        match &previous {
            Some(p) => {
                record.timer_at = p.timer_at;
                let expires_at = if p.status == Status::Firing {
                    let (ends_at, expires_at) = triage::merge_expiry(
                        (p.ends_at, p.expires_at),
                        (record.ends_at, expires_at),
                    );
                    record.ends_at = ends_at;
                    expires_at
                } else {
                    expires_at
                };
                self.arm_expiry(&mut record, expires_at);
                record.first_seen = p.first_seen;
                record.count = p.count + 1;
                record.incident = p.incident;
                record.state_changes = p.state_changes.clone();
                record.flapping = p.flapping;
                if p.status == Status::Resolved {
                    started_flapping = self.note_change(&mut record)?;
                }
            }
            None => {
                record.timer_at = None;
                self.arm_expiry(&mut record, expires_at);
            }
        }
        self.place(record, &class, summary, started_flapping)
    }

    /// Where a firing alert goes: auto-handled (L0), held back by a silence, or into the
    /// incident of its group, which it joins, reopens or opens.
    fn place(
        &mut self,
        mut record: AlertRecord,
        class: &Classification,
        summary: &mut IngestSummary,
        started_flapping: bool,
    ) -> Result<(), PipelineError> {
        let now = self.now;
        let fp = record.fingerprint;
        let (severity, tier) = (record.severity, record.tier);
        if tier == Tier::L0 {
            self.effects.push(Effect::AutoHandled);
            summary.auto_handled += 1;
            let runbook = class
                .runbook
                .clone()
                .or_else(|| runbook_annotation(&record.annotations));
            self.publish_auto_handled(&record, runbook);
            self.decided(
                summary,
                &record,
                Verdict::AutoHandled,
                Some(class),
                None,
                None,
            );
            self.put_alert(record);
            return Ok(());
        }
        if let Some(s) = self
            .memory
            .silences
            .iter()
            .find(|s| s.silences(&record.labels, now))
        {
            let id = s.silence.id;
            tracing::debug!(fingerprint = %fp, silence = %id, "alert silenced");
            record.silenced_by = Some(id);
            self.batch.set_silenced(id, fp, true, None);
            self.silenced.push((id, fp, None));
            self.effects.push(Effect::Silenced);
            summary.silenced += 1;
            self.decided(summary, &record, Verdict::Silenced, Some(class), None, None);
            self.put_alert(record);
            return Ok(());
        }

        let policy = Arc::clone(&self.policy);
        let group_by = class.group_by.as_deref().unwrap_or(&policy.group_by);
        let key = group_key(&record.labels, group_by);
        let latest = match self.group(&key)? {
            Some(id) => self.incident(id)?,
            None => None,
        };
        let reopen_window =
            chrono::Duration::from_std(self.policy.reopen_window).unwrap_or(chrono::Duration::MAX);
        let mut incident = match latest {
            Some(incident) if incident.is_active() => incident,
            Some(mut incident)
                if incident
                    .resolved_at
                    .is_some_and(|at| now - at <= reopen_window) =>
            {
                incident.reopen("an alert fired again within dedup.reopen_window", now)?;
                tracing::info!(incident = %incident.id, tier = %incident.tier, "incident reopened");
                self.effects.push(Effect::Reopened(incident.tier));
                self.open_gauge(incident.tier, 1);
                if escalation::reopens_call_for_escalation(
                    &incident,
                    self.policy.reopen_escalate_after,
                    self.policy.reopen_escalate_window,
                    now,
                ) {
                    self.auto_escalate(&mut incident, "reopened")?;
                }
                incident
            }
            _ => {
                let id = IncidentId(self.memory.next_incident);
                self.memory.next_incident += 1;
                self.batch
                    .set_next_incident_number(self.memory.next_incident);
                let mut labels = group_labels(&record.labels, group_by);
                labels.extend(class.set_labels.clone());
                let runbook = class
                    .runbook
                    .clone()
                    .or_else(|| runbook_annotation(&record.annotations));
                let incident = Incident::open(
                    id,
                    tier,
                    severity,
                    key.clone(),
                    labels,
                    runbook,
                    record.rules.last().cloned(),
                    now,
                );
                tracing::info!(incident = %id, tier = %tier, severity = %severity, group = %key, "incident opened");
                self.effects.push(Effect::Opened(tier, severity));
                self.open_gauge(tier, 1);
                self.set_group(&key, id);
                incident
            }
        };
        let id = incident.id;
        if record.incident != Some(id) {
            incident.alert_count += 1;
            self.batch.add_member(id, fp);
        }
        incident.firing_count += 1;
        record.incident = Some(id);
        push_unique(&mut summary.incidents, id);
        self.decided(
            summary,
            &record,
            Verdict::Incident,
            Some(class),
            Some(incident.group_key.clone()),
            incident.runbook.clone(),
        );
        self.put_incident(incident);
        self.put_alert(record);
        self.raise_severity(id, fp, severity, tier)?;
        if started_flapping {
            self.flapping_started(fp, Some(id))?;
        }
        Ok(())
    }

    /// A resolved alert: its membership resolves (and with the last one, where configured, its
    /// incident); a resolution of something never seen firing is still recorded.
    fn resolution(
        &mut self,
        source: Source,
        mut alert: NormalizedAlert,
        previous: Option<AlertRecord>,
        seen: Seen,
        summary: &mut IngestSummary,
    ) -> Result<(), PipelineError> {
        let now = self.now;
        let ended = alert.alert.ends_at.unwrap_or(now);
        let Some(mut record) = previous else {
            // Never seen firing: recorded as its firing would have been triaged (rules, labels,
            // severity, tier), so that it does not read as auto-handled (L0, where it was
            // stored before), and dropped if a rule drops it. It opens, notifies and counts
            // nothing else: it is no decision about a firing alert (no rule match counted).
            let policy = Arc::clone(&self.policy);
            let labels = std::mem::take(&mut alert.alert.labels);
            let mut class = policy.rules.classify_labels(labels, &alert);
            if class.dropped_by.is_some() {
                self.dropped(alert.fingerprint, class, summary);
                return Ok(());
            }
            let severity = triage::severity(&alert, &class);
            let tier = triage::tier(severity, &class, &policy.tiers);
            let record = new_record(
                alert,
                source,
                std::mem::take(&mut class.labels),
                std::mem::take(&mut class.rules),
                (severity, tier, None),
                now,
            );
            self.decided(
                summary,
                &record,
                Verdict::Recorded,
                Some(&class),
                None,
                None,
            );
            self.put_alert(record);
            return Ok(());
        };
        record.count += 1;
        record.last_seen = now;
        // A resolution's annotations are its sender's latest (Prometheus sends the description
        // as it reads when the alert resolves), kept as Alertmanager keeps them; one that
        // carries none (PagerDuty's resolve) leaves those the alert had.
        if !alert.alert.annotations.is_empty() {
            record.annotations = std::mem::take(&mut alert.alert.annotations);
        }
        if seen != Seen::Resolves {
            self.decided(summary, &record, Verdict::Recorded, None, None, None);
            self.put_alert(record);
            return Ok(());
        }
        // Flapping is marked (and escalated) before the resolution may auto-resolve the
        // incident: with an even max_changes the change that crosses the limit is a resolution.
        if self.note_change(&mut record)? {
            self.flapping_started(record.fingerprint, record.incident)?;
        }
        let touched = self.resolve_member(&mut record, ended)?;
        summary.resolved += 1;
        self.decided(summary, &record, Verdict::Resolved, None, None, None);
        self.put_alert(record);
        if let Some(id) = touched {
            push_unique(&mut summary.incidents, id);
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
        self.arm_expiry(record, None);
        record.status = Status::Resolved;
        record.ends_at = Some(at);
        // Held on arrival, a silenced alert is in no incident's count; taken by a silence while
        // it fired in an incident, it still counts there, as silenced too.
        let mut silenced_member = false;
        if let Some(silence) = record.silenced_by.take() {
            let member_of = self.held_member_of(silence, record.fingerprint)?;
            self.batch
                .set_silenced(silence, record.fingerprint, false, None);
            if member_of.is_none() || member_of != record.incident {
                return Ok(None);
            }
            silenced_member = true;
        }
        let Some(id) = record.incident else {
            return Ok(None);
        };
        let Some(mut incident) = self.incident(id)? else {
            return Ok(None);
        };
        incident.firing_count = incident.firing_count.saturating_sub(1);
        if silenced_member {
            incident.silenced_count = incident.silenced_count.saturating_sub(1);
        }
        if incident.firing_count == 0
            && incident.is_active()
            && self.policy.auto_resolve.contains(&incident.tier)
        {
            // Resolved when its last alert ended, not when triaged learned of it: an expiry
            // that fell due while triaged was stopped, or a resolution sent late, would put
            // the delay into MTTR. Never before its last event, never after now.
            let when = incident
                .timeline
                .last()
                .map_or(at, |last| at.max(last.at))
                .min(self.now);
            let after = incident.resolve(SYSTEM_ACTOR, Some("all alerts resolved".into()), when)?;
            tracing::info!(incident = %id, tier = %incident.tier, "incident resolved: all alerts resolved");
            self.closed(&incident, true, after);
        }
        self.put_incident(incident);
        Ok(Some(id))
    }

    /// Bookkeeping when an incident resolves, whoever resolved it. Its group keeps pointing at
    /// it, so that an alert firing again within the reopen window reopens it.
    fn closed(&mut self, incident: &Incident, auto: bool, after: Duration) {
        self.effects.push(Effect::Resolved {
            tier: incident.tier,
            severity: incident.severity,
            first_contact: incident.tier == incident.opened_tier,
            auto,
            after,
        });
        self.open_gauge(incident.tier, -1);
    }

    /// Note a firing/resolved change; true when the alert has just started flapping.
    fn note_change(&mut self, record: &mut AlertRecord) -> Result<bool, PipelineError> {
        let flapping = escalation::note_change(
            &mut record.state_changes,
            self.now,
            self.policy.flapping.window.0,
            self.policy.flapping.max_changes,
        );
        let started = flapping && !record.flapping;
        let stopped = !flapping && record.flapping;
        record.flapping = flapping;
        if stopped {
            // Calm again: its incident's notifications flow again.
            if let Some(mut incident) = record
                .incident
                .map(|id| self.incident(id))
                .transpose()?
                .flatten()
            {
                if incident.flapping {
                    incident.flapping = false;
                    self.put_incident(incident);
                }
            }
        }
        Ok(started)
    }

    /// An alert started flapping: count it, mark its incident, and escalate it where the policy
    /// says so.
    fn flapping_started(
        &mut self,
        fp: Fingerprint,
        incident: Option<IncidentId>,
    ) -> Result<(), PipelineError> {
        tracing::info!(fingerprint = %fp, "alert is flapping");
        self.effects.push(Effect::Flapping);
        let Some(mut incident) = incident.map(|id| self.incident(id)).transpose()?.flatten() else {
            return Ok(());
        };
        if !incident.is_active() {
            return Ok(());
        }
        // One change of an alert escalates its incident one tier at most: the fire that reopens
        // it once too often (reason `reopened`) can be the change that makes the alert flapping.
        let now = self.now;
        let escalated_now = incident
            .timeline
            .iter()
            .rev()
            .take_while(|e| e.at == now)
            .any(|e| e.kind == EventKind::Escalated && e.actor == SYSTEM_ACTOR);
        incident.mark_flapping(format!("alert {fp} is flapping"), now);
        if self.policy.flapping.action == FlapAction::Escalate && !escalated_now {
            self.auto_escalate(&mut incident, "flapping")?;
        }
        self.put_incident(incident);
        Ok(())
    }

    /// A member of higher severity raises the incident's severity and, where its tier is higher,
    /// escalates the incident straight to it (reason `severity`). A member of no higher severity
    /// escalates it only if it asks a higher tier than any member has (a rule's tier, a reload's
    /// mapping; reason `member_tier`): one asking no more leaves an operator's de-escalation be.
    fn raise_severity(
        &mut self,
        id: IncidentId,
        fp: Fingerprint,
        severity: Severity,
        tier: Tier,
    ) -> Result<(), PipelineError> {
        let Some(mut incident) = self.incident(id)? else {
            return Ok(());
        };
        if !incident.is_active() || (severity <= incident.severity && tier <= incident.tier) {
            return Ok(());
        }
        let more_severe = severity > incident.severity;
        let escalate = tier > incident.tier
            && !incident.silenced()
            && (more_severe || tier > incident.members_tier());
        if !more_severe && !escalate {
            return Ok(());
        }
        if escalate {
            incident.severity = incident.severity.max(severity);
            let reason = if more_severe {
                "severity"
            } else {
                "member_tier"
            };
            let from = incident.escalate(SYSTEM_ACTOR, Some(tier), reason, self.now)?;
            self.escalated(id, from, tier, reason);
        } else {
            // More severe, same tier (its mapping, a silence holding the escalation, or an
            // operator's de-escalation below it): said on the timeline and to sinks all the same.
            incident.raise_severity(severity, &format!("alert {fp}"), self.now);
        }
        self.put_incident(incident);
        Ok(())
    }

    /// Escalate one step under the policy (never above the ceiling); false when there is none.
    fn auto_escalate(
        &mut self,
        incident: &mut Incident,
        reason: &'static str,
    ) -> Result<bool, PipelineError> {
        if incident.silenced() {
            tracing::debug!(incident = %incident.id, reason, "not escalated: every firing alert of the incident is silenced");
            return Ok(false);
        }
        let Some(to) = self.policy.escalation.auto_next(incident.tier) else {
            return Ok(false);
        };
        let from = incident.escalate(SYSTEM_ACTOR, Some(to), reason, self.now)?;
        self.escalated(incident.id, from, to, reason);
        Ok(true)
    }

    fn escalated(&mut self, id: IncidentId, from: Tier, to: Tier, reason: &'static str) {
        tracing::info!(incident = %id, from = %from, to = %to, reason = reason, "escalated");
        self.effects.push(Effect::Escalated { from, to, reason });
        self.open_gauge(from, -1);
        self.open_gauge(to, 1);
    }

    // ---- deadlines ---------------------------------------------------------------------------

    /// Deadlines that are due. Each timer is removed in this batch; one whose owner's deadline
    /// has moved since is stale and does nothing, so none fires twice.
    pub(super) fn run_timers(&mut self, limit: usize) -> Result<(), StoreError> {
        for (at, timer) in self.store.due_timers(self.now, limit)? {
            self.batch.set_timer(at, timer, false);
            let result = match timer {
                Timer::AlertExpiry(fp) => self.expire_alert(fp, at),
                Timer::AckTimeout(id) => self.deadline_passed(id, at, true),
                Timer::ResolveTimeout(id) => self.deadline_passed(id, at, false),
                Timer::SilenceEnd(id) => self.release(id, Some(at)),
                Timer::SilenceStart(id) => self.silence_started(id, at),
            };
            match result {
                Ok(()) => {}
                Err(PipelineError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(timer = ?timer, error = %e, "deadline could not be applied")
                }
            }
        }
        Ok(())
    }

    /// An alert's expiry: it resolves as an explicit resolution would.
    fn expire_alert(&mut self, fp: Fingerprint, at: DateTime<Utc>) -> Result<(), PipelineError> {
        let Some(mut record) = self.alert(fp)? else {
            return Ok(());
        };
        if record.timer_at != Some(at) {
            return Ok(()); // not the timer the record has armed: a stale deadline
        }
        record.timer_at = None; // its key is already removed
        match record.expires_at {
            _ if record.status != Status::Firing => {}
            // Refreshed since the timer was armed: arm it for the new expiry.
            Some(later) if later > at => self.arm_expiry(&mut record, Some(later)),
            _ => {
                tracing::debug!(fingerprint = %fp, "alert expired");
                if self.note_change(&mut record)? {
                    self.flapping_started(fp, record.incident)?;
                }
                self.resolve_member(&mut record, at)?;
            }
        }
        self.put_alert(record);
        Ok(())
    }

    /// Set when the alert expires. The stored timer only ever moves earlier: a refresh that
    /// pushes the expiry later (Prometheus re-sends every minute) writes nothing, and the timer,
    /// when it fires early, re-arms itself for the later expiry. That spares two writes per
    /// repeat on the hot path.
    fn arm_expiry(&mut self, record: &mut AlertRecord, expires_at: Option<DateTime<Utc>>) {
        record.expires_at = expires_at;
        match (record.timer_at, expires_at) {
            (Some(armed), Some(new)) if armed <= new => {}
            (armed, new) => {
                self.move_timer(armed, new, Timer::AlertExpiry(record.fingerprint));
                record.timer_at = new;
            }
        }
    }

    /// An ack or resolve deadline passed: escalate, if it still stands.
    fn deadline_passed(
        &mut self,
        id: IncidentId,
        at: DateTime<Utc>,
        ack: bool,
    ) -> Result<(), PipelineError> {
        let Some(mut incident) = self.incident(id)? else {
            return Ok(());
        };
        let (deadline, reason) = if ack {
            (&mut incident.ack_deadline, "ack_timeout")
        } else {
            (&mut incident.resolve_deadline, "resolve_timeout")
        };
        if *deadline != Some(at) {
            return Ok(()); // acknowledged, resolved or moved since
        }
        *deadline = None; // its timer is already removed
        self.auto_escalate(&mut incident, reason)?;
        self.put_incident(incident);
        Ok(())
    }

    // ---- silences ----------------------------------------------------------------------------

    pub(super) fn put_silence(
        &mut self,
        posted: PostableSilence,
    ) -> Result<SilenceId, PipelineError> {
        let replaced = match &posted.id {
            Some(text) if !text.is_empty() => {
                let id: SilenceId = text
                    .parse()
                    .map_err(|_| PipelineError::SilenceNotFound(text.clone()))?;
                let old = self
                    .store
                    .silence(id)?
                    .ok_or_else(|| PipelineError::SilenceNotFound(text.clone()))?;
                // An expired silence is not revived: as Alertmanager does, the post makes a new
                // silence, with a new id, and the expired one stays as it ended.
                Some(old).filter(|s| s.state(self.now) != SilenceState::Expired)
            }
            _ => None,
        };
        let id = replaced.as_ref().map_or_else(SilenceId::new_v4, |s| s.id);
        let silence =
            Silence::from_postable(posted, id, self.now).map_err(PipelineError::Invalid)?;
        let compiled = silence::Compiled::new(silence.clone()).map_err(PipelineError::Invalid)?;
        self.move_timer(
            replaced.as_ref().map(|s| s.ends_at),
            Some(silence.ends_at),
            Timer::SilenceEnd(id),
        );
        // A silence that starts later takes the alerts already firing when it starts.
        let now = self.now;
        let pending = |s: &Silence| (s.state(now) == SilenceState::Pending).then_some(s.starts_at);
        self.move_timer(
            replaced.as_ref().and_then(pending),
            pending(&silence),
            Timer::SilenceStart(id),
        );
        self.batch.put_silence(&silence);
        let active = silence.state(now) == SilenceState::Active;
        let silences = Arc::make_mut(&mut self.memory.silences);
        silences.retain(|s| s.silence.id != id);
        silences.push(compiled.clone());
        tracing::info!(silence = %id, created_by = %silence.created_by, starts_at = %silence.starts_at, ends_at = %silence.ends_at, "silence set");
        if replaced.is_some() {
            // What the silence held and no longer covers (its matchers changed, or it now
            // starts later) is let go at once, as if the silence had ended for it.
            let mut summary = IngestSummary::default();
            for (fp, member_of) in self.held(id)? {
                let covered = self.alert(fp)?.is_some_and(|record| {
                    active
                        && compiled
                            .matchers
                            .iter()
                            .all(|m| m.matches_labels(&record.labels))
                });
                if !covered {
                    self.unsilence(id, fp, member_of, &mut summary)?;
                }
            }
        }
        if active {
            self.silence_firing(id)?;
        }
        Ok(id)
    }

    /// A silence's start came: it takes the firing alerts it matches, unless the timer is
    /// stale (the silence was replaced with another start, or has ended).
    fn silence_started(&mut self, id: SilenceId, at: DateTime<Utc>) -> Result<(), PipelineError> {
        if self.silence(id).map(|s| s.starts_at) != Some(at) {
            return Ok(());
        }
        self.silence_firing(id)
    }

    /// Silence `id` as in force in this batch, if it is.
    fn silence(&self, id: SilenceId) -> Option<&Silence> {
        self.memory
            .silences
            .iter()
            .map(|s| &s.silence)
            .find(|s| s.id == id)
    }

    /// An active silence takes every firing alert it matches that no silence holds yet, as it
    /// holds the alerts that arrive while it is active: each is shown silenced and its repeats
    /// are answered so. An alert that fires in an incident stays its member and still counts
    /// among its firing alerts (it resolves it when it stops); while every firing alert of
    /// the incident is silenced, nothing escalates it by itself (see [`Incident::silenced`]).
    /// Auto-handled (L0) alerts are left alone, as on arrival.
    ///
    /// The firing alerts are read once, here, from the `firing/` index (and this batch's own
    /// writes): creating a silence costs one pass over them, and nothing per request after.
    fn silence_firing(&mut self, id: SilenceId) -> Result<(), PipelineError> {
        let silences = Arc::clone(&self.memory.silences);
        let Some(silence) = silences.iter().find(|s| s.silence.id == id) else {
            return Ok(());
        };
        if silence.silence.state(self.now) != SilenceState::Active {
            return Ok(());
        }
        let matches = |labels: &Labels| silence.matchers.iter().all(|m| m.matches_labels(labels));
        let mut candidates: Vec<Fingerprint> = self.store.firing_matching(matches)?;
        candidates.extend(
            self.alerts
                .values()
                .filter(|r| r.status == Status::Firing && matches(&r.labels))
                .map(|r| r.fingerprint),
        );
        candidates.sort_unstable();
        candidates.dedup();
        let mut taken = 0usize;
        for fp in candidates {
            // The batch may have changed it since it was stored.
            let Some(mut record) = self.alert(fp)? else {
                continue;
            };
            if record.status != Status::Firing
                || record.silenced_by.is_some()
                || record.tier == Tier::L0
                || !matches(&record.labels)
            {
                continue;
            }
            let member_of = match record.incident {
                Some(incident_id) => match self.incident(incident_id)? {
                    Some(mut incident) => {
                        incident.silenced_count += 1;
                        self.put_incident(incident);
                        Some(incident_id)
                    }
                    None => None,
                },
                None => None,
            };
            tracing::debug!(fingerprint = %fp, silence = %id, incident = ?member_of, "firing alert silenced");
            record.silenced_by = Some(id);
            self.batch.set_silenced(id, fp, true, member_of);
            self.silenced.push((id, fp, member_of));
            self.put_alert(record);
            taken += 1;
        }
        if taken > 0 {
            tracing::info!(silence = %id, alerts = taken, "silence took firing alerts");
        }
        Ok(())
    }

    /// The incident alert `fp` was firing in when silence `id` took it, if any: this batch's
    /// word first, then the store's.
    fn held_member_of(
        &self,
        id: SilenceId,
        fp: Fingerprint,
    ) -> Result<Option<IncidentId>, StoreError> {
        match self
            .silenced
            .iter()
            .rev()
            .find(|(s, f, _)| *s == id && *f == fp)
        {
            Some((_, _, member_of)) => Ok(*member_of),
            None => self.store.held_member_of(id, fp),
        }
    }

    pub(super) fn expire_silence(&mut self, id: SilenceId) -> Result<(), PipelineError> {
        let mut silence = self
            .store
            .silence(id)?
            .ok_or_else(|| PipelineError::SilenceNotFound(id.to_string()))?;
        if silence.state(self.now) == silence::SilenceState::Expired {
            return Ok(());
        }
        self.move_timer(Some(silence.ends_at), None, Timer::SilenceEnd(id));
        let now = self.now.trunc_subsecs(3);
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        silence.updated_at = self.now;
        self.batch.put_silence(&silence);
        tracing::info!(silence = %id, "silence expired");
        self.release(id, None)
    }

    /// A silence ended (at its time, or expired by hand): forget it, and triage the alerts it
    /// held back that still fire.
    fn release(&mut self, id: SilenceId, at: Option<DateTime<Utc>>) -> Result<(), PipelineError> {
        if let Some(at) = at {
            // Replaced with a later end since this timer was set? Then it is stale.
            if self.silence(id).is_some_and(|s| s.ends_at != at) {
                return Ok(());
            }
        }
        Arc::make_mut(&mut self.memory.silences).retain(|s| s.silence.id != id);
        let mut summary = IngestSummary::default();
        for (fp, member_of) in self.held(id)? {
            self.unsilence(id, fp, member_of, &mut summary)?;
        }
        Ok(())
    }

    /// The alerts silence `id` holds, each with the incident it was firing in when the silence
    /// took it: the store's index, then this batch's word on each alert, which is the later.
    fn held(&self, id: SilenceId) -> Result<BTreeMap<Fingerprint, Option<IncidentId>>, StoreError> {
        let mut held: BTreeMap<Fingerprint, Option<IncidentId>> =
            self.store.held_by(id)?.into_iter().collect();
        held.extend(
            self.silenced
                .iter()
                .filter(|(s, _, _)| *s == id)
                .map(|(_, fp, member_of)| (*fp, *member_of)),
        );
        Ok(held)
    }

    /// Silence `id` lets go of alert `fp` (its end came, or it no longer covers the alert):
    /// one that resolved meanwhile stays resolved, one taken while firing in an incident counts
    /// there again, one held from its arrival is triaged as if it had just arrived.
    fn unsilence(
        &mut self,
        id: SilenceId,
        fp: Fingerprint,
        member_of: Option<IncidentId>,
        summary: &mut IngestSummary,
    ) -> Result<(), PipelineError> {
        self.batch.set_silenced(id, fp, false, None);
        self.silenced.retain(|(s, f, _)| !(*s == id && *f == fp));
        let Some(mut record) = self.alert(fp)? else {
            return Ok(());
        };
        if record.silenced_by != Some(id) {
            return Ok(());
        }
        record.silenced_by = None;
        if record.status != Status::Firing {
            self.put_alert(record);
            return Ok(());
        }
        if let Some(incident_id) = member_of {
            // Taken while it fired in its incident, it never left it: it counts there as
            // firing again, which resumes the incident's escalation with fresh deadlines
            // (see `put_incident`), and a severity that rose meanwhile counts now.
            self.put_alert(record.clone());
            let Some(mut incident) = self.incident(incident_id)? else {
                return Ok(());
            };
            incident.silenced_count = incident.silenced_count.saturating_sub(1);
            self.put_incident(incident);
            if record.incident == Some(incident_id) {
                self.raise_severity(incident_id, fp, record.severity, record.tier)?;
            }
            return Ok(());
        }
        // Triage it as if it had just arrived, with today's rules.
        let mut alert = Alert::new(record.source, record.labels.clone());
        alert.fingerprint = Some(fp);
        alert.annotations = record.annotations.clone();
        // The severity it was triaged with may not be in its labels (PagerDuty's field).
        alert.severity = Some(record.severity);
        let alert = alert.normalize(&[], &self.policy.severities, self.now);
        let class = self.policy.rules.classify(&alert);
        if class.dropped_by.is_some() {
            self.put_alert(record);
            return Ok(());
        }
        record.severity = triage::severity(&alert, &class);
        record.tier = triage::tier(record.severity, &class, &self.policy.tiers);
        record.labels = class.labels.clone();
        record.rules = class.rules.clone();
        self.place(record, &class, summary, false)?;
        Ok(())
    }

    // ---- dead letters ------------------------------------------------------------------------

    pub(super) fn dead_letter(&mut self, mut letter: crate::dead_letter::DeadLetter) -> u64 {
        letter.id = self.memory.next_dead_letter;
        self.memory.next_dead_letter += 1;
        tracing::warn!(
            id = letter.id,
            topic = %letter.topic,
            partition = letter.partition,
            offset = letter.offset,
            error = %letter.error,
            "message kept as a dead letter"
        );
        self.batch.put_dead_letter(&letter);
        letter.id
    }

    // ---- operators ---------------------------------------------------------------------------

    pub(super) fn acknowledge_alert(
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

    pub(super) fn act(
        &mut self,
        id: IncidentId,
        action: Action,
    ) -> Result<Incident, PipelineError> {
        let mut incident = self.incident(id)?.ok_or(PipelineError::NotFound(id))?;
        let now = self.now;
        match action {
            Action::Acknowledge { actor, reason } => {
                let after = incident.acknowledge(&actor, reason, now)?;
                tracing::info!(incident = %id, actor = %actor, "acknowledged");
                self.effects.push(Effect::Acknowledged {
                    tier: incident.tier,
                    severity: incident.severity,
                    after,
                });
            }
            Action::Resolve { actor, reason } => {
                let after = incident.resolve(&actor, reason, now)?;
                tracing::info!(incident = %id, actor = %actor, "resolved by operator");
                self.closed(&incident, false, after);
            }
            Action::Escalate {
                actor,
                reason,
                to,
                vendor,
                vendor_ref,
            } => {
                // A resolved incident escalates nowhere: say so (409) before asking what an
                // escalation from its tier would need (a vendor, at L3).
                if incident.state == State::Resolved {
                    return Err(TransitionError::Resolved(id).into());
                }
                let reason_text = reason.unwrap_or_else(|| "manual".into());
                let target = to.or(incident.tier.next());
                let from = if target == Some(Tier::L4) {
                    let vendor = vendor.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                        PipelineError::Invalid(
                            "the L4 handover names the vendor: give `vendor` (and `vendor_ref`, its case number)".into(),
                        )
                    })?;
                    incident.hand_over(&actor, vendor, vendor_ref, &reason_text, now)?
                } else if vendor.is_some() || vendor_ref.is_some() {
                    // Kept nowhere below L4: refused rather than dropped without a word.
                    return Err(PipelineError::Invalid(format!(
                        "`vendor` and `vendor_ref` are for the L4 handover, and this escalation goes to {}",
                        target.map_or_else(|| "no tier above".to_string(), |t| t.to_string())
                    )));
                } else {
                    incident.escalate(&actor, to, &reason_text, now)?
                };
                let to = incident.tier;
                tracing::info!(incident = %id, from = %from, to = %to, reason = "manual", actor = %actor, "escalated");
                self.effects.push(Effect::Escalated {
                    from,
                    to,
                    reason: "manual",
                });
                self.open_gauge(from, -1);
                self.open_gauge(to, 1);
            }
            Action::Deescalate { actor, reason, to } => {
                let reason_text = reason.unwrap_or_else(|| "manual".into());
                let from = incident.deescalate(&actor, to, &reason_text, now)?;
                let to = incident.tier;
                tracing::info!(incident = %id, from = %from, to = %to, actor = %actor, "de-escalated");
                self.effects.push(Effect::Deescalated { from, to });
                self.open_gauge(from, -1);
                self.open_gauge(to, 1);
            }
            Action::Assign { actor, assignee } => {
                incident.assign(&actor, assignee, now)?;
            }
        }
        self.put_incident(incident);
        Ok(self.incidents[&id].clone())
    }
}

/// The record of an alert seen for the first time (or firing again: the caller carries over
/// what the previous record knew), built from the alert, its classified labels and matched rules,
/// and the triage decision (severity, tier, expiry). It takes them all by value: the record is
/// where they end up, so nothing is copied. Public for the pipeline benchmark, which does what
/// the writer does per alert without a store.
pub fn new_record(
    alert: NormalizedAlert,
    source: Source,
    labels: Labels,
    rules: Vec<String>,
    (severity, tier, expires_at): (Severity, Tier, Option<DateTime<Utc>>),
    now: DateTime<Utc>,
) -> AlertRecord {
    let fingerprint = alert.fingerprint;
    let alert = alert.alert;
    AlertRecord {
        fingerprint,
        source,
        status: alert.status,
        severity,
        labels,
        annotations: alert.annotations,
        starts_at: alert.starts_at.unwrap_or(now),
        ends_at: alert.ends_at,
        expires_at,
        generator_url: alert.generator_url,
        first_seen: now,
        last_seen: now,
        count: 1,
        incident: None,
        tier,
        rules,
        silenced_by: None,
        state_changes: Vec::new(),
        flapping: false,
        timer_at: None,
    }
}

/// What a repeat of a firing alert changes in its record (its expiry is the caller's, which
/// also moves the timer): count, last seen, end, annotations, and the severity, which only
/// rises. Whether it rose. The alert's annotations move into the record. Public for the
/// pipeline benchmark, like [`new_record`].
pub fn record_repeat(
    record: &mut AlertRecord,
    alert: NormalizedAlert,
    (severity, tier): (Severity, Tier),
    now: DateTime<Utc>,
) -> bool {
    record.count += 1;
    record.last_seen = now;
    record.ends_at = alert.alert.ends_at;
    record.annotations = alert.alert.annotations;
    let raised = severity > record.severity;
    if raised {
        // The tier goes with the severity that gave it: a silence's release (`unsilence`) and
        // the alert's own view read the record's tier, not the classification of this repeat.
        record.severity = severity;
        record.tier = record.tier.max(tier);
    }
    raised
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
