//! Escalation policy as pure functions: when an incident's deadlines fall, when reopens call for
//! escalation, and when an alert is flapping. The writer (`tx.rs`) stores the deadlines as timers
//! and acts when they come due.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::config::EscalationConfig;
use crate::incident::{Incident, State};

/// The incident's ack and resolve deadlines under `policy`: counted from when it reached its
/// tier, or from when a silence that held it ended if that is later
/// ([`Incident::escalation_since`]); none once acknowledged (ack) or resolved (both), none while
/// every firing member is silenced, and none where no automatic escalation could follow (at the
/// ceiling), so a deadline always means an escalation. Kept to the millisecond, the precision of
/// timer keys.
pub fn deadlines(
    incident: &Incident,
    policy: &EscalationConfig,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let tier_policy = policy.policy(incident.tier);
    if !incident.is_active()
        || incident.silenced()
        || tier_policy.is_none()
        || policy.auto_next(incident.tier).is_none()
    {
        return (None, None);
    }
    let since = incident.escalation_since();
    let after = |d: Option<crate::config::HumanDuration>| {
        d.and_then(|d| chrono::Duration::from_std(d.0).ok())
            .and_then(|d| since.checked_add_signed(d))
            .map(|t| t.trunc_subsecs(3))
    };
    let ack = match incident.state {
        State::Open => after(tier_policy.and_then(|p| p.ack_timeout)),
        State::Acknowledged | State::Resolved => None,
    };
    (ack, after(tier_policy.and_then(|p| p.resolve_timeout)))
}

/// This reopen makes `after`, `2 × after` ... reopens within `window` up to `now` (`after` 0:
/// never): each run of `after` reopens escalates once, not every reopen after the first run.
pub fn reopens_call_for_escalation(
    incident: &Incident,
    after: u32,
    window: Duration,
    now: DateTime<Utc>,
) -> bool {
    // A window reaching back past the calendar's start (a config may say "300000000d") counts
    // every reopen; `now - window` would panic there.
    let since = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let n = incident.reopens_since(since);
    after > 0 && n > 0 && n % after as usize == 0
}

/// Record a firing/resolved change at `now` in `changes` (kept within `window`, bounded) and
/// say whether the alert is flapping: more than `max_changes` changes within the window.
pub fn note_change(
    changes: &mut Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: Duration,
    max_changes: u32,
) -> bool {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    changes.retain(|t| now - *t <= window);
    changes.push(now);
    let keep = max_changes as usize + 1;
    if changes.len() > keep {
        changes.drain(..changes.len() - keep);
    }
    changes.len() > max_changes as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use crate::incident::{IncidentId, Tier};

    fn incident(tier: Tier, now: DateTime<Utc>) -> Incident {
        Incident::open(
            IncidentId(1),
            tier,
            Severity::Warning,
            "k".into(),
            Default::default(),
            None,
            None,
            now,
        )
    }

    #[test]
    fn deadlines_follow_the_tier_policy_and_state() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let policy = EscalationConfig::default();
        let mut inc = incident(Tier::L1, now);
        assert_eq!(
            deadlines(&inc, &policy),
            (
                Some(now + chrono::Duration::minutes(15)),
                Some(now + chrono::Duration::hours(4))
            )
        );
        inc.acknowledge("a", None, now).unwrap();
        assert_eq!(
            deadlines(&inc, &policy),
            (None, Some(now + chrono::Duration::hours(4)))
        );
        // L3 has no timeouts by default, and the ceiling is L3 anyway.
        let l3 = incident(Tier::L3, now);
        assert_eq!(deadlines(&l3, &policy), (None, None));
        inc.resolve("a", None, now).unwrap();
        assert_eq!(deadlines(&inc, &policy), (None, None));
    }

    #[test]
    fn flapping_is_more_changes_than_allowed_within_the_window() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let window = Duration::from_secs(600);
        let mut changes = Vec::new();
        let at = |s| t0 + chrono::Duration::seconds(s);
        assert!(!note_change(&mut changes, at(0), window, 2));
        assert!(!note_change(&mut changes, at(10), window, 2));
        assert!(note_change(&mut changes, at(20), window, 2));
        // Long quiet: the old changes leave the window.
        assert!(!note_change(&mut changes, at(2000), window, 2));
        assert!(changes.len() <= 3);
    }

    /// Regression (found by the fuzz pass, `tests/fuzz.rs`): `dedup.reopen_escalate_window =
    /// "300000000d"` is a valid config, and the first reopen panicked the writer thread
    /// (`DateTime - TimeDelta` overflowed). A window longer than the calendar counts every reopen.
    #[test]
    fn regression_a_reopen_window_beyond_the_calendar_does_not_panic() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut inc = incident(Tier::L1, t0);
        inc.resolve("a", None, t0).unwrap();
        inc.reopen("again", t0 + chrono::Duration::seconds(1))
            .unwrap();
        for window in [Duration::from_secs(300_000_000 * 86_400), Duration::MAX] {
            assert!(reopens_call_for_escalation(&inc, 1, window, t0));
        }
    }
}
