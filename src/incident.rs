//! Incidents: [`Incident`], [`IncidentId`], [`Tier`], [`State`], the timeline, and the legal
//! transitions between states. Pure: no I/O, no clock (time is passed in).
//!
//! Who decides *when* a transition happens is the pipeline's business; storing the result is the
//! store's.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{Labels, Severity};

/// Support tiers, ordered: escalation only ever moves up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Tier {
    /// Self-service / automation: no human incident.
    L0,
    /// Service desk: first contact.
    #[default]
    L1,
    /// Technical escalation.
    L2,
    /// Subject-matter experts.
    L3,
    /// Vendor / external.
    L4,
}

impl Tier {
    pub const ALL: [Tier; 5] = [Tier::L0, Tier::L1, Tier::L2, Tier::L3, Tier::L4];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L0 => "L0",
            Tier::L1 => "L1",
            Tier::L2 => "L2",
            Tier::L3 => "L3",
            Tier::L4 => "L4",
        }
    }

    /// The tier above, if any.
    pub fn next(self) -> Option<Tier> {
        match self {
            Tier::L0 => Some(Tier::L1),
            Tier::L1 => Some(Tier::L2),
            Tier::L2 => Some(Tier::L3),
            Tier::L3 => Some(Tier::L4),
            Tier::L4 => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown tier {s:?}: expected L0, L1, L2, L3 or L4"))
    }
}

/// `INC-<n>`; numbers are allocated in order, so ids sort by opening time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl FromStr for IncidentId {
    type Err = String;
    /// Only the form [`Display`](fmt::Display) writes: `INC-` and the number in decimal digits,
    /// without a sign or leading zeros, so that one incident has one id (`INC-01` and
    /// `INC-+1` are not aliases of `INC-1`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("INC-")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (n.len() == 1 || !n.starts_with('0'))
            })
            .and_then(|n| n.parse().ok())
            .map(IncidentId)
            .ok_or_else(|| {
                format!(
                    "incident id {s:?} is not of the form INC-<number> \
                     (decimal digits, no sign or leading zeros)"
                )
            })
    }
}

impl Serialize for IncidentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IncidentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [State::Open, State::Acknowledged, State::Resolved]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}: expected open, acknowledged or resolved"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Acknowledged,
    Escalated,
    DeEscalated,
    Assigned,
    Resolved,
    Reopened,
    /// A member alert started flapping.
    Flapping,
    /// A more severe member raised the incident's severity without changing its tier (one that
    /// also takes it to a higher tier is an `Escalated` entry with reason `severity`).
    SeverityRaised,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    /// `triaged` for the daemon's own decisions, otherwise the operator or integration.
    pub actor: String,
    pub kind: EventKind,
    pub reason: Option<String>,
    pub from: Option<Tier>,
    pub to: Option<Tier>,
    /// On the L4 handover's entry: the vendor and its case number, kept here when the incident
    /// leaves L4 and its own `vendor` and `vendor_ref` are cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_ref: Option<String>,
}

/// The daemon's own name as an actor.
pub const SYSTEM_ACTOR: &str = "triaged";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub tier: Tier,
    /// The tier the incident was opened at: first-contact resolution is resolution at this tier.
    pub opened_tier: Tier,
    pub state: State,
    /// The worst severity of its members.
    pub severity: Severity,
    pub group_key: String,
    /// Distinct member alerts.
    pub alert_count: u64,
    /// Members currently firing; 0 ⇒ auto-resolve where configured.
    pub firing_count: u64,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub assignee: Option<String>,
    /// The group-by labels plus labels set by the deciding rule.
    pub labels: Labels,
    pub runbook: Option<String>,
    /// The rule that decided when the incident opened, if any.
    pub rule: Option<String>,
    /// When it reached its current tier (or reopened): escalation deadlines and MTTA count from here.
    pub tier_since: DateTime<Utc>,
    /// When it escalates unless acknowledged (the tier's `ack_timeout`).
    pub ack_deadline: Option<DateTime<Utc>>,
    /// When it escalates unless resolved (the tier's `resolve_timeout`).
    pub resolve_deadline: Option<DateTime<Utc>>,
    pub reopen_count: u64,
    /// Recent reopen times, newest last (bounded): "reopened N times within a window".
    pub reopened_at: Vec<DateTime<Utc>>,
    /// L4 handover: the vendor and the vendor's case number, while the incident is at L4 (the
    /// handover's timeline entry keeps them once it leaves).
    pub vendor: Option<String>,
    pub vendor_ref: Option<String>,
    pub resolution_note: Option<String>,
    /// A member alert is flapping.
    pub flapping: bool,
    pub timeline: Vec<TimelineEvent>,
    /// Timeline entries already appended to the outbox.
    #[serde(default)]
    pub events_published: usize,
    /// Its members that were firing in it when a silence took them: still counted in
    /// `firing_count` (they still fire, and resolve it when they stop), but while they are all
    /// the firing members there are, nothing escalates the incident by itself.
    #[serde(default)]
    pub silenced_count: u64,
    /// Since when its automatic escalation is held because every firing member is silenced;
    /// none while it escalates as usual. Kept so that the end of the hold is seen, whichever
    /// change ends it, and answered with a fresh window (`escalation_resumed_at`).
    #[serde(default)]
    pub escalation_held_since: Option<DateTime<Utc>>,
    /// When its automatic escalation last resumed after such a hold. Its deadlines count from
    /// the later of this and `tier_since`: a deadline that fell due while silenced would
    /// otherwise escalate the instant the silence ends, before anyone could acknowledge.
    #[serde(default)]
    pub escalation_resumed_at: Option<DateTime<Utc>>,
}

/// Reopen times kept per incident: enough for any sensible `reopen_escalate_after`.
const MAX_REOPENS_KEPT: usize = 32;

/// Why a requested transition is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{0} is already resolved")]
    Resolved(IncidentId),
    #[error("{0} is already acknowledged")]
    AlreadyAcknowledged(IncidentId),
    #[error("{id} is at {at}; escalation goes up only, not to {to}")]
    NotUpward { id: IncidentId, at: Tier, to: Tier },
    #[error("{0} is at L4, the highest tier")]
    AtTop(IncidentId),
    #[error("{id} is at {at}; de-escalation goes down only, to L1 at the lowest, not to {to}")]
    NotDownward { id: IncidentId, at: Tier, to: Tier },
    #[error("{0} is at L1, the lowest tier of an incident")]
    AtBottom(IncidentId),
    #[error("{id} is at {at}: the vendor handover to L4 is made from L3; escalate to L3 first")]
    HandoverFromL3Only { id: IncidentId, at: Tier },
    #[error("{0} is not resolved")]
    NotResolved(IncidentId),
}

impl Incident {
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: IncidentId,
        tier: Tier,
        severity: Severity,
        group_key: String,
        labels: Labels,
        runbook: Option<String>,
        rule: Option<String>,
        now: DateTime<Utc>,
    ) -> Incident {
        Incident {
            id,
            tier,
            opened_tier: tier,
            state: State::Open,
            severity,
            group_key,
            alert_count: 0,
            firing_count: 0,
            opened_at: now,
            acknowledged_at: None,
            resolved_at: None,
            assignee: None,
            labels,
            runbook,
            rule,
            tier_since: now,
            ack_deadline: None,
            resolve_deadline: None,
            reopen_count: 0,
            reopened_at: Vec::new(),
            vendor: None,
            vendor_ref: None,
            resolution_note: None,
            flapping: false,
            events_published: 0,
            silenced_count: 0,
            escalation_held_since: None,
            escalation_resumed_at: None,
            timeline: vec![TimelineEvent {
                at: now,
                actor: SYSTEM_ACTOR.into(),
                kind: EventKind::Opened,
                reason: None,
                from: None,
                to: Some(tier),
                vendor: None,
                vendor_ref: None,
            }],
        }
    }

    pub fn is_active(&self) -> bool {
        self.state != State::Resolved
    }

    /// Active, and every member firing in it is held by a silence: it escalates nothing by
    /// itself (operators still act on it). An incident with no firing member at all is not
    /// silenced: it still waits for someone to resolve it.
    pub fn silenced(&self) -> bool {
        self.is_active() && self.silenced_count > 0 && self.silenced_count >= self.firing_count
    }

    /// The highest tier its members have asked for: the tier it opened at, or one a member took
    /// it to since (an escalation by `triaged` for `severity` or `member_tier`). An operator's
    /// de-escalation lowers the incident's tier, not this.
    pub fn members_tier(&self) -> Tier {
        self.timeline
            .iter()
            .filter(|e| {
                e.kind == EventKind::Escalated
                    && e.actor == SYSTEM_ACTOR
                    && matches!(e.reason.as_deref(), Some("severity" | "member_tier"))
            })
            .filter_map(|e| e.to)
            .fold(self.opened_tier, Tier::max)
    }

    /// When its escalation deadlines count from: reaching its tier, or the end of a silence
    /// that held it, whichever is later.
    pub fn escalation_since(&self) -> DateTime<Utc> {
        self.escalation_resumed_at
            .map_or(self.tier_since, |resumed| resumed.max(self.tier_since))
    }

    /// Acknowledge; returns the time to acknowledgement (MTTA sample).
    pub fn acknowledge(
        &mut self,
        actor: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<std::time::Duration, TransitionError> {
        match self.state {
            State::Resolved => return Err(TransitionError::Resolved(self.id)),
            State::Acknowledged => return Err(TransitionError::AlreadyAcknowledged(self.id)),
            State::Open => {}
        }
        self.state = State::Acknowledged;
        self.acknowledged_at = Some(now);
        self.push(actor, EventKind::Acknowledged, reason, None, None, now);
        // Time to acknowledge at this tier: since it reached the tier (or opened, or reopened).
        Ok(elapsed(self.tier_since, now))
    }

    /// Resolve; returns the time to resolution (MTTR sample).
    pub fn resolve(
        &mut self,
        actor: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<std::time::Duration, TransitionError> {
        if self.state == State::Resolved {
            return Err(TransitionError::Resolved(self.id));
        }
        self.state = State::Resolved;
        self.resolved_at = Some(now);
        self.resolution_note = reason.clone();
        self.push(actor, EventKind::Resolved, reason, None, None, now);
        Ok(elapsed(self.opened_at, now))
    }

    /// Move up to `to` (default: the next tier); returns the tier left. The incident is open
    /// again: the new tier has to acknowledge it.
    pub fn escalate(
        &mut self,
        actor: &str,
        to: Option<Tier>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Tier, TransitionError> {
        if self.state == State::Resolved {
            return Err(TransitionError::Resolved(self.id));
        }
        let to = match to {
            Some(to) => to,
            None => self.tier.next().ok_or(TransitionError::AtTop(self.id))?,
        };
        if self.tier == Tier::L4 {
            return Err(TransitionError::AtTop(self.id));
        }
        if to <= self.tier {
            return Err(TransitionError::NotUpward {
                id: self.id,
                at: self.tier,
                to,
            });
        }
        Ok(self.move_to(actor, EventKind::Escalated, to, reason, now))
    }

    /// The L4 vendor handover: from L3 only, recording the vendor and its case number.
    pub fn hand_over(
        &mut self,
        actor: &str,
        vendor: String,
        vendor_ref: Option<String>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Tier, TransitionError> {
        if self.state == State::Resolved {
            return Err(TransitionError::Resolved(self.id));
        }
        if self.tier != Tier::L3 {
            return Err(if self.tier == Tier::L4 {
                TransitionError::AtTop(self.id)
            } else {
                TransitionError::HandoverFromL3Only {
                    id: self.id,
                    at: self.tier,
                }
            });
        }
        let from = self.move_to(actor, EventKind::Escalated, Tier::L4, reason, now);
        if let Some(event) = self.timeline.last_mut() {
            event.vendor = Some(vendor.clone());
            event.vendor_ref = vendor_ref.clone();
        }
        self.vendor = Some(vendor);
        self.vendor_ref = vendor_ref;
        Ok(from)
    }

    /// Move down to `to` (default: the tier below, L1 at the lowest); returns the tier left.
    /// Leaving L4 ends the vendor handover: `vendor` and `vendor_ref` are cleared (the
    /// handover's timeline entry keeps them).
    pub fn deescalate(
        &mut self,
        actor: &str,
        to: Option<Tier>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Tier, TransitionError> {
        if self.state == State::Resolved {
            return Err(TransitionError::Resolved(self.id));
        }
        let to = match to {
            Some(to) => to,
            None if self.tier > Tier::L1 => Tier::ALL[self.tier as usize - 1],
            None => return Err(TransitionError::AtBottom(self.id)),
        };
        if to >= self.tier || to == Tier::L0 {
            return Err(TransitionError::NotDownward {
                id: self.id,
                at: self.tier,
                to,
            });
        }
        if self.tier == Tier::L4 {
            self.end_handover();
        }
        Ok(self.move_to(actor, EventKind::DeEscalated, to, reason, now))
    }

    /// Clear `vendor` and `vendor_ref`, first copying them to the latest handover's timeline
    /// entry when it does not name them (an older triaged kept them on the incident only).
    fn end_handover(&mut self) {
        let handover = self
            .timeline
            .iter_mut()
            .rev()
            .find(|e| e.kind == EventKind::Escalated && e.to == Some(Tier::L4));
        if let Some(entry) = handover {
            if entry.vendor.is_none() && entry.vendor_ref.is_none() {
                entry.vendor = self.vendor.clone();
                entry.vendor_ref = self.vendor_ref.clone();
            }
        }
        self.vendor = None;
        self.vendor_ref = None;
    }

    /// An incident below L4 that still names a vendor was de-escalated from L4 by an older
    /// triaged, which kept them: end that handover as a de-escalation now does (the store calls
    /// this on every incident it reads; for any other incident it does nothing).
    pub fn end_handover_left_behind(&mut self) {
        if self.tier != Tier::L4 && (self.vendor.is_some() || self.vendor_ref.is_some()) {
            self.end_handover();
        }
    }

    fn move_to(
        &mut self,
        actor: &str,
        kind: EventKind,
        to: Tier,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Tier {
        let from = self.tier;
        self.tier = to;
        self.tier_since = now;
        self.state = State::Open;
        self.push(
            actor,
            kind,
            Some(reason.to_string()),
            Some(from),
            Some(to),
            now,
        );
        from
    }

    /// Open a resolved incident again (an alert fired again soon after it resolved).
    pub fn reopen(&mut self, reason: &str, now: DateTime<Utc>) -> Result<(), TransitionError> {
        if self.state != State::Resolved {
            return Err(TransitionError::NotResolved(self.id));
        }
        self.state = State::Open;
        self.resolved_at = None;
        self.acknowledged_at = None;
        self.resolution_note = None;
        self.tier_since = now;
        self.reopen_count += 1;
        self.reopened_at.push(now);
        if self.reopened_at.len() > MAX_REOPENS_KEPT {
            self.reopened_at.remove(0);
        }
        self.push(
            SYSTEM_ACTOR,
            EventKind::Reopened,
            Some(reason.to_string()),
            None,
            None,
            now,
        );
        Ok(())
    }

    /// Reopens at or after `since`.
    pub fn reopens_since(&self, since: DateTime<Utc>) -> usize {
        self.reopened_at.iter().filter(|t| **t >= since).count()
    }

    /// Raise the severity to `to` for a more severe member `detail` names, without a tier
    /// change: a timeline entry says from what to what.
    pub fn raise_severity(&mut self, to: Severity, detail: &str, now: DateTime<Utc>) {
        let reason = format!("{} → {to}: {detail}", self.severity);
        self.severity = to;
        self.push(
            SYSTEM_ACTOR,
            EventKind::SeverityRaised,
            Some(reason),
            None,
            None,
            now,
        );
    }

    /// Record that a member alert started flapping.
    pub fn mark_flapping(&mut self, detail: String, now: DateTime<Utc>) {
        self.flapping = true;
        self.push(
            SYSTEM_ACTOR,
            EventKind::Flapping,
            Some(detail),
            None,
            None,
            now,
        );
    }

    pub fn assign(
        &mut self,
        actor: &str,
        assignee: String,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        if self.state == State::Resolved {
            return Err(TransitionError::Resolved(self.id));
        }
        self.push(
            actor,
            EventKind::Assigned,
            Some(assignee.clone()),
            None,
            None,
            now,
        );
        self.assignee = Some(assignee);
        Ok(())
    }

    fn push(
        &mut self,
        actor: &str,
        kind: EventKind,
        reason: Option<String>,
        from: Option<Tier>,
        to: Option<Tier>,
        now: DateTime<Utc>,
    ) {
        self.timeline.push(TimelineEvent {
            at: now,
            actor: actor.to_string(),
            kind,
            reason,
            from,
            to,
            vendor: None,
            vendor_ref: None,
        });
    }
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> std::time::Duration {
    (to - from).to_std().unwrap_or_default()
}

/// The group key of `labels` for `group_by`: `name="value"` pairs in `group_by` order, as
/// Alertmanager prints group keys. Missing labels read as "".
pub fn group_key(labels: &Labels, group_by: &[String]) -> String {
    let mut key = String::with_capacity(64);
    for (i, name) in group_by.iter().enumerate() {
        let value = labels.get(name).map(String::as_str).unwrap_or("");
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push('=');
        push_quoted(&mut key, value);
    }
    key
}

/// The labels a group is named by: those of `group_by` that `labels` has with a value. An
/// incident opened for the group starts with them; only opening needs them, so they are not
/// part of [`group_key`].
pub fn group_labels(labels: &Labels, group_by: &[String]) -> Labels {
    group_by
        .iter()
        .filter_map(|name| {
            let value = labels.get(name).filter(|v| !v.is_empty())?;
            Some((name.clone(), value.clone()))
        })
        .collect()
}

/// `value` as Rust's `Debug` quotes a string, which group keys have always been written with
/// (they are stored: the text must not change). Printable ASCII other than `"` and `\` is
/// written as it is, so such values (nearly all) skip `Debug`, which looks every character up in
/// Unicode's tables and took most of a group key's cost.
fn push_quoted(key: &mut String, value: &str) {
    if value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        key.push('"');
        key.push_str(value);
        key.push('"');
    } else {
        use std::fmt::Write as _;
        let _ = write!(key, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(now: DateTime<Utc>) -> Incident {
        Incident::open(
            IncidentId(7),
            Tier::L1,
            Severity::Warning,
            "alertname=\"X\"".into(),
            Labels::new(),
            None,
            None,
            now,
        )
    }

    proptest::proptest! {
        /// A group key quotes each value exactly as `Debug` does, escapes and all.
        #[test]
        fn values_are_quoted_as_debug_quotes_them(
            value in proptest::prop_oneof!["[ -~]*", "(\\PC|[\"\\\\\n\t\u{7f}\u{301}])*"],
        ) {
            let mut key = String::new();
            push_quoted(&mut key, &value);
            proptest::prop_assert_eq!(key, format!("{value:?}"));
        }
    }

    #[test]
    fn a_group_key_names_each_label_in_order_quoted() {
        let labels =
            crate::alert::labels_from(&[("alertname", "Disk \"full\""), ("service", "db")]);
        let by = ["service".to_string(), "alertname".into(), "team".into()];
        assert_eq!(
            group_key(&labels, &by),
            r#"service="db",alertname="Disk \"full\"",team="""#
        );
        assert_eq!(group_labels(&labels, &by), labels);
    }

    #[test]
    fn ids_and_tiers_read_and_print() {
        assert_eq!(IncidentId(42).to_string(), "INC-42");
        assert_eq!("INC-42".parse(), Ok(IncidentId(42)));
        assert!("42".parse::<IncidentId>().is_err());
        assert_eq!("l3".parse(), Ok(Tier::L3));
        assert!(Tier::L1 < Tier::L2);
        assert_eq!(Tier::L4.next(), None);
    }

    #[test]
    fn leaving_l4_ends_the_handover_and_its_timeline_entry_keeps_the_vendor() {
        let t0 = Utc::now();
        let mut inc = incident(t0);
        inc.escalate("alice", Some(Tier::L3), "needs storage", t0)
            .unwrap();
        inc.hand_over(
            "bob",
            "Acme".into(),
            Some("CASE-42".into()),
            "controller",
            t0,
        )
        .unwrap();
        assert_eq!(
            (inc.vendor.as_deref(), inc.vendor_ref.as_deref()),
            (Some("Acme"), Some("CASE-42"))
        );
        let handover = inc.timeline.last().unwrap().clone();
        assert_eq!(
            (handover.vendor.as_deref(), handover.vendor_ref.as_deref()),
            (Some("Acme"), Some("CASE-42"))
        );
        // Only the handover's entry names the vendor.
        assert!(inc.timeline[..inc.timeline.len() - 1]
            .iter()
            .all(|e| e.vendor.is_none() && e.vendor_ref.is_none()));

        inc.deescalate("carol", Some(Tier::L1), "config issue", t0)
            .unwrap();
        assert_eq!((inc.vendor.as_ref(), inc.vendor_ref.as_ref()), (None, None));
        assert_eq!(inc.timeline[inc.timeline.len() - 2], handover);
        let de = inc.timeline.last().unwrap();
        assert_eq!(
            (de.kind, de.vendor.as_ref(), de.vendor_ref.as_ref()),
            (EventKind::DeEscalated, None, None)
        );
        // The incident's JSON no longer names a vendor; the handover's entry does, and the other
        // entries have no vendor fields at all.
        let json = serde_json::to_value(&inc).unwrap();
        assert!(
            json["vendor"].is_null() && json["vendor_ref"].is_null(),
            "{json}"
        );
        let timeline = json["timeline"].as_array().unwrap();
        let named: Vec<_> = timeline
            .iter()
            .filter(|e| e.get("vendor").is_some() || e.get("vendor_ref").is_some())
            .collect();
        assert_eq!(named.len(), 1, "{json}");
        assert_eq!(
            (
                &named[0]["to"],
                &named[0]["vendor"],
                &named[0]["vendor_ref"]
            ),
            (
                &serde_json::json!("L4"),
                &serde_json::json!("Acme"),
                &serde_json::json!("CASE-42")
            )
        );

        // Handed over again from L3: the new vendor, and both entries kept.
        inc.escalate("dave", Some(Tier::L3), "back again", t0)
            .unwrap();
        assert_eq!(inc.vendor, None);
        inc.hand_over("dave", "Other".into(), None, "second opinion", t0)
            .unwrap();
        assert_eq!(
            (inc.vendor.as_deref(), inc.vendor_ref.as_deref()),
            (Some("Other"), None)
        );
        let vendors: Vec<_> = inc
            .timeline
            .iter()
            .filter_map(|e| e.vendor.as_deref())
            .collect();
        assert_eq!(vendors, ["Acme", "Other"]);
        // Handed over by an older triaged (the entry names no vendor): a de-escalation copies
        // the incident's to the entry before it clears them.
        let mut older = incident(t0);
        older.escalate("alice", Some(Tier::L3), "r", t0).unwrap();
        older
            .hand_over("bob", "Acme".into(), Some("CASE-1".into()), "r", t0)
            .unwrap();
        let entry = older.timeline.len() - 1;
        (
            older.timeline[entry].vendor,
            older.timeline[entry].vendor_ref,
        ) = (None, None);
        older.deescalate("carol", None, "r", t0).unwrap();
        assert_eq!(
            (older.vendor.as_ref(), older.vendor_ref.as_ref()),
            (None, None)
        );
        assert_eq!(
            (
                older.timeline[entry].vendor.as_deref(),
                older.timeline[entry].vendor_ref.as_deref()
            ),
            (Some("Acme"), Some("CASE-1"))
        );
        // De-escalated by an older triaged, vendor kept: read, it is ended the same way.
        let mut left = older.clone();
        (left.vendor, left.vendor_ref) = (Some("Acme".into()), Some("CASE-1".into()));
        (left.timeline[entry].vendor, left.timeline[entry].vendor_ref) = (None, None);
        left.end_handover_left_behind();
        assert_eq!(left, older);
        // At L4, or without a vendor, there is nothing to end.
        let at_l4 = inc.clone();
        inc.end_handover_left_behind();
        assert_eq!(inc, at_l4);
        // A de-escalation within L1..L3 has no handover to end.
        let mut low = incident(t0);
        low.escalate("alice", Some(Tier::L3), "r", t0).unwrap();
        low.deescalate("alice", None, "r", t0).unwrap();
        assert_eq!(low.tier, Tier::L2);
    }

    #[test]
    fn only_the_canonical_form_of_an_incident_id_is_read() {
        assert_eq!("INC-1".parse(), Ok(IncidentId(1)));
        assert_eq!("INC-0".parse(), Ok(IncidentId(0)));
        assert_eq!("INC-10".parse(), Ok(IncidentId(10)));
        let max = format!("INC-{}", u64::MAX);
        assert_eq!(max.parse(), Ok(IncidentId(u64::MAX)));
        for alias in [
            "INC-01",
            "INC-+1",
            "INC-00",
            "INC--1",
            "INC-",
            "INC- 1",
            "INC-1 ",
            "inc-1",
            "INC-1a",
            "INC-18446744073709551616",
        ] {
            let err = alias.parse::<IncidentId>().unwrap_err();
            assert!(
                err.contains("not of the form INC-<number>"),
                "{alias}: {err}"
            );
        }
    }

    #[test]
    fn the_lifecycle_records_every_step_on_the_timeline() {
        let t0 = Utc::now();
        let mut inc = incident(t0);
        let mtta = inc
            .acknowledge("alice", None, t0 + chrono::Duration::seconds(30))
            .unwrap();
        assert_eq!(mtta.as_secs(), 30);
        assert_eq!(
            inc.acknowledge("bob", None, t0),
            Err(TransitionError::AlreadyAcknowledged(inc.id))
        );
        assert_eq!(inc.escalate("alice", None, "manual", t0), Ok(Tier::L1));
        assert_eq!(inc.tier, Tier::L2);
        assert!(matches!(
            inc.escalate("alice", Some(Tier::L1), "manual", t0),
            Err(TransitionError::NotUpward { .. })
        ));
        let mttr = inc
            .resolve("alice", None, t0 + chrono::Duration::seconds(90))
            .unwrap();
        assert_eq!(mttr.as_secs(), 90);
        assert!(inc.resolve("alice", None, t0).is_err());
        let kinds: Vec<EventKind> = inc.timeline.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Opened,
                EventKind::Acknowledged,
                EventKind::Escalated,
                EventKind::Resolved
            ]
        );
    }

    #[test]
    fn group_keys_follow_group_by_order_and_read_missing_labels_as_empty() {
        let labels: Labels = [("service", "db"), ("alertname", "Down")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let by = ["alertname".into(), "service".into(), "cluster".into()];
        assert_eq!(
            group_key(&labels, &by),
            r#"alertname="Down",service="db",cluster="""#
        );
        let mut with_empty = labels.clone();
        with_empty.insert("cluster".into(), String::new());
        with_empty.insert("instance".into(), "db-1".into());
        assert_eq!(group_labels(&with_empty, &by), labels);
    }
}
