//! The NOC board's summary strip, served as `GET /api/v1/summary`: active incidents per tier,
//! and MTTA, MTTR and the escalation rate of the incidents opened in the last 24 hours.
//!
//! Computed on demand from the store, nothing kept in memory: the arithmetic is a pure
//! accumulator ([`Window`]) fed by [`compute`], which reads the active-incident index and then
//! walks the incidents newest first until it passes the start of the window. The cost is one
//! decode per active incident plus one per incident opened in the window (bounded by
//! [`MAX_SCANNED`]); incident ids are allocated in opening order, which is what lets the walk stop.
//! The Prometheus recording rules in `config/prometheus/` are the long-term view; this is the
//! glance an operator takes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::incident::{EventKind, Incident, IncidentId, State, Tier};
use crate::store::{IncidentFilter, Store, StoreError};

/// The window of the rates: the last 24 hours.
pub const WINDOW_SECONDS: u64 = 24 * 3600;
/// Incidents read per store page. Each page holds the store's read lock once, so a long walk
/// never keeps the writer from committing for long.
const PAGE: usize = 256;
/// At most this many incidents of the window are read per request; past it the figures cover
/// the newest ones and `truncated` says so. It bounds the cost of a request whatever the history.
pub const MAX_SCANNED: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub generated_at: DateTime<Utc>,
    pub window_seconds: u64,
    /// Active incidents per tier, L1 to L4 (each present, at zero when none).
    pub tiers: BTreeMap<Tier, TierCounts>,
    /// The incidents opened within the window.
    pub window: WindowStats,
}

/// Active incidents of one tier, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierCounts {
    /// Waiting for someone at this tier to acknowledge.
    pub open: u64,
    pub acknowledged: u64,
}

/// Figures over the incidents opened within the window (a cohort: an incident opened earlier
/// does not count, even when it was acknowledged or resolved within the window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub opened: u64,
    /// Of those, acknowledged at least once.
    pub acknowledged: u64,
    /// Of those, resolved now.
    pub resolved: u64,
    /// Of those, escalated at least once (by hand or by triaged).
    pub escalated: u64,
    /// Mean seconds from opening to the first acknowledgement, to the millisecond; `null` when
    /// none was.
    pub mtta_seconds: Option<f64>,
    /// Mean seconds from opening to resolution, to the millisecond; `null` when none resolved.
    pub mttr_seconds: Option<f64>,
    /// `escalated / opened`; `null` when none opened.
    pub escalation_rate: Option<f64>,
    /// True when more than [`MAX_SCANNED`] incidents opened in the window: the figures cover
    /// the newest of them.
    pub truncated: bool,
}

/// Active incidents per tier, L1 to L4 always present.
pub fn tier_counts<'a>(
    active: impl IntoIterator<Item = &'a Incident>,
) -> BTreeMap<Tier, TierCounts> {
    let mut tiers: BTreeMap<Tier, TierCounts> = Tier::ALL
        .into_iter()
        .filter(|t| *t != Tier::L0)
        .map(|t| (t, TierCounts::default()))
        .collect();
    for incident in active {
        let counts = tiers.entry(incident.tier).or_default();
        match incident.state {
            State::Open => counts.open += 1,
            State::Acknowledged => counts.acknowledged += 1,
            State::Resolved => {}
        }
    }
    tiers
}

/// The accumulator of [`WindowStats`]: feed it every incident opened in the window.
#[derive(Debug, Default)]
pub struct Window {
    opened: u64,
    acknowledged: u64,
    ack_seconds: f64,
    resolved: u64,
    resolve_seconds: f64,
    escalated: u64,
}

impl Window {
    pub fn add(&mut self, incident: &Incident) {
        self.opened += 1;
        let first_ack = incident
            .timeline
            .iter()
            .find(|e| e.kind == EventKind::Acknowledged);
        if let Some(ack) = first_ack {
            self.acknowledged += 1;
            self.ack_seconds += seconds_between(incident.opened_at, ack.at);
        }
        if let (State::Resolved, Some(at)) = (incident.state, incident.resolved_at) {
            self.resolved += 1;
            self.resolve_seconds += seconds_between(incident.opened_at, at);
        }
        if incident
            .timeline
            .iter()
            .any(|e| e.kind == EventKind::Escalated)
        {
            self.escalated += 1;
        }
    }

    pub fn finish(self, truncated: bool) -> WindowStats {
        let mean = |total: f64, n: u64| (n > 0).then(|| total / n as f64);
        WindowStats {
            opened: self.opened,
            acknowledged: self.acknowledged,
            resolved: self.resolved,
            escalated: self.escalated,
            mtta_seconds: mean(self.ack_seconds, self.acknowledged).map(to_millisecond),
            mttr_seconds: mean(self.resolve_seconds, self.resolved).map(to_millisecond),
            escalation_rate: mean(self.escalated as f64, self.opened),
            truncated,
        }
    }
}

/// Seconds rounded to the millisecond, the precision of the times they come from: a mean of
/// three durations printed as 1.893, not 1.8926666666666667. (The division is correctly
/// rounded, so the result is the double nearest the decimal, which JSON prints as such.)
fn to_millisecond(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Seconds from `from` to `to`, never negative (a clock stepped back reads as 0).
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds().max(0) as f64) / 1000.0
}

/// The summary as of `now`, read from the store.
pub fn compute(store: &Store, now: DateTime<Utc>) -> Result<Summary, StoreError> {
    let tiers = tier_counts(&store.active_incidents()?);
    let since = now - chrono::Duration::seconds(WINDOW_SECONDS as i64);
    let mut window = Window::default();
    let mut scanned = 0usize;
    let mut truncated = false;
    let mut cursor: Option<IncidentId> = None;
    'pages: loop {
        let (page, next) = store.list_incidents(&IncidentFilter::default(), cursor, PAGE)?;
        for incident in &page {
            // Newest first, and ids follow opening order: the first one older than the window
            // ends the walk.
            if incident.opened_at < since {
                break 'pages;
            }
            if scanned == MAX_SCANNED {
                truncated = true;
                break 'pages;
            }
            scanned += 1;
            window.add(incident);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Summary {
        generated_at: now,
        window_seconds: WINDOW_SECONDS,
        tiers,
        window: window.finish(truncated),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use crate::store::Batch;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn incident(n: u64, tier: Tier, opened: i64) -> Incident {
        Incident::open(
            IncidentId(n),
            tier,
            Severity::Major,
            format!("alertname=\"A{n}\""),
            Default::default(),
            None,
            None,
            at(opened),
        )
    }

    #[test]
    fn tier_counts_split_open_from_acknowledged_and_list_every_tier() {
        let mut acked = incident(2, Tier::L2, 0);
        acked.acknowledge("alice", None, at(5)).unwrap();
        let counts = tier_counts(&[incident(1, Tier::L2, 0), acked, incident(3, Tier::L3, 0)]);
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            [Tier::L1, Tier::L2, Tier::L3, Tier::L4]
        );
        assert_eq!(counts[&Tier::L1], TierCounts::default());
        assert_eq!(
            counts[&Tier::L2],
            TierCounts {
                open: 1,
                acknowledged: 1
            }
        );
        assert_eq!(counts[&Tier::L3].open, 1);
    }

    #[test]
    fn mtta_counts_the_first_acknowledgement_and_mttr_only_resolved_incidents() {
        let mut w = Window::default();
        // Acknowledged after 60 s, escalated (open again), acknowledged again at the new tier:
        // MTTA takes the first acknowledgement.
        let mut a = incident(1, Tier::L1, 0);
        a.acknowledge("alice", None, at(60)).unwrap();
        a.escalate("alice", None, "needs L2", at(100)).unwrap();
        a.acknowledge("bob", None, at(400)).unwrap();
        a.resolve("bob", None, at(600)).unwrap();
        w.add(&a);
        // Acknowledged after 120 s, still unresolved.
        let mut b = incident(2, Tier::L2, 10);
        b.acknowledge("carol", None, at(130)).unwrap();
        w.add(&b);
        // Resolved without acknowledgement after 300 s.
        let mut c = incident(3, Tier::L1, 20);
        c.resolve("triaged", None, at(320)).unwrap();
        w.add(&c);
        // Untouched.
        w.add(&incident(4, Tier::L3, 30));
        let stats = w.finish(false);
        assert_eq!(
            stats,
            WindowStats {
                opened: 4,
                acknowledged: 2,
                resolved: 2,
                escalated: 1,
                mtta_seconds: Some(90.0),
                mttr_seconds: Some(450.0),
                escalation_rate: Some(0.25),
                truncated: false,
            }
        );
    }

    #[test]
    fn means_are_printed_to_the_millisecond() {
        let mut w = Window::default();
        // Resolved after 1.5 s, 2.1 s and 2.078 s (the QA's 1.8926666666666667), acknowledged
        // after 1 s, 1 s and 2 s (1.3333333333333333).
        for (n, ack_ms, resolve_ms) in [(1, 1_000, 1_500), (2, 1_000, 2_100), (3, 2_000, 2_078)] {
            let mut i = incident(n, Tier::L1, 0);
            i.acknowledge(
                "alice",
                None,
                at(0) + chrono::Duration::milliseconds(ack_ms),
            )
            .unwrap();
            i.resolve(
                "alice",
                None,
                at(0) + chrono::Duration::milliseconds(resolve_ms),
            )
            .unwrap();
            w.add(&i);
        }
        w.add(&incident(4, Tier::L1, 0));
        let stats = w.finish(false);
        assert_eq!(stats.mttr_seconds, Some(1.893));
        assert_eq!(stats.mtta_seconds, Some(1.333));
        let json = serde_json::to_string(&stats).unwrap();
        assert!(
            json.contains(r#""mtta_seconds":1.333,"mttr_seconds":1.893,"#),
            "{json}"
        );
        // A ratio, not seconds: as computed.
        assert_eq!(stats.escalation_rate, Some(0.0));
        assert_eq!(to_millisecond(0.0004), 0.0);
        assert_eq!(to_millisecond(6.0451999999999995), 6.045);
        assert_eq!(to_millisecond(3120.0), 3120.0);
    }

    #[test]
    fn an_empty_window_has_no_means_rather_than_zero() {
        let stats = Window::default().finish(false);
        assert_eq!(stats.opened, 0);
        assert_eq!(stats.mtta_seconds, None);
        assert_eq!(stats.mttr_seconds, None);
        assert_eq!(stats.escalation_rate, None);
    }

    #[test]
    fn compute_reads_only_the_incidents_opened_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = at(WINDOW_SECONDS as i64 + 10_000);
        let mut batch = Batch::default();
        // Opened before the window (ids in opening order, as the pipeline allocates them),
        // resolved within it: outside the cohort.
        let mut old = incident(1, Tier::L2, 0);
        old.resolve("alice", None, at(WINDOW_SECONDS as i64 + 9_000))
            .unwrap();
        batch.put_incident(old);
        batch.put_incident(incident(2, Tier::L1, 5_000));
        // 600 incidents within the window: more than one store page.
        for n in 3..603 {
            let mut i = incident(n, Tier::L1, 10_001 + n as i64);
            if n % 3 == 0 {
                i.acknowledge("bob", None, at(10_001 + n as i64 + 30))
                    .unwrap();
            }
            batch.put_incident(i);
        }
        store.commit(batch, || {}).unwrap();

        let summary = compute(&store, now).unwrap();
        assert_eq!(summary.window.opened, 600);
        assert_eq!(summary.window.acknowledged, 200);
        assert_eq!(summary.window.mtta_seconds, Some(30.0));
        assert_eq!(
            summary.window.resolved, 0,
            "the old incident is not counted"
        );
        assert!(!summary.window.truncated);
        // Active: incident 2 (outside the window, still open) counts in the tiers.
        assert_eq!(summary.tiers[&Tier::L1].open, 1 + 400);
        assert_eq!(summary.tiers[&Tier::L1].acknowledged, 200);
        assert_eq!(summary.tiers[&Tier::L2], TierCounts::default());
    }
}
