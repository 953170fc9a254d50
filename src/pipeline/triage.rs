//! Triage: the tier decision and the alert lifetime rules, as pure functions of their inputs.
//!
//! Which incident an alert joins, and the bookkeeping that follows, is the writer's (`mod.rs`);
//! this module only answers "which tier" and "until when does it fire".

use chrono::{DateTime, SubsecRound, Utc};

use crate::alert::{NormalizedAlert, Severity};
use crate::config::TiersConfig;
use crate::incident::Tier;

use super::classify::Classification;

/// Severity after rules: a rule's override wins over what the alert said.
pub fn severity(alert: &NormalizedAlert, class: &Classification) -> Severity {
    class.severity.unwrap_or(alert.severity)
}

/// Tier: the rule's forced tier, else the severity's tier from `[tiers]`.
pub fn tier(severity: Severity, class: &Classification, tiers: &TiersConfig) -> Tier {
    class.tier.unwrap_or_else(|| tiers.tier_for(severity))
}

/// When a firing alert resolves by itself unless refreshed, following Alertmanager: an `endsAt`
/// the sender gave (in the future, or normalization would have resolved it); else, for senders
/// that re-send (Alertmanager API v2), `resolve_timeout` after it was received; else never.
/// Deadlines are kept to the millisecond, the precision of the store's timer keys, so that the
/// deadline a timer fires with is exactly the one the alert record holds.
pub fn expiry(
    alert: &NormalizedAlert,
    resolve_timeout: std::time::Duration,
) -> Option<DateTime<Utc>> {
    let at = match alert.alert.ends_at {
        Some(end) => Some(end),
        None if alert.alert.expires_without_refresh => {
            let timeout =
                chrono::Duration::from_std(resolve_timeout).unwrap_or(chrono::Duration::MAX);
            alert.received_at.checked_add_signed(timeout)
        }
        None => None,
    };
    at.map(|t| t.trunc_subsecs(3))
}

/// The `(ends_at, expires_at)` a firing re-send leaves on a firing alert whose record holds
/// `kept`, as Alertmanager merges a re-sent alert (`Alert.Merge`): an expiry its sender gave
/// (an `endsAt`) stays when it is later than the re-send's, so a re-send only pushes it
/// forward (a delayed retry, or a second Prometheus of an HA pair, cannot shorten it); an
/// expiry that was only `resolve_timeout` (no `endsAt`) gives way to the re-send's. A re-send
/// with no expiry at all (a sender that reports resolution itself) leaves none. A re-send that
/// resolves (its `endsAt` past) is not merged: it resolves.
pub fn merge_expiry(
    kept: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    new: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    match (kept, new) {
        ((Some(_), Some(old)), (_, Some(newer))) if old > newer => kept,
        _ => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, SeverityMap, Source};
    use std::time::Duration;

    fn alert(source: Source, ends_in: Option<i64>, now: DateTime<Utc>) -> NormalizedAlert {
        let mut a = Alert::new(source, [("alertname".to_string(), "X".to_string())].into());
        a.expires_without_refresh = source == Source::Alertmanager;
        a.ends_at = ends_in.map(|s| now + chrono::Duration::seconds(s));
        a.normalize(&[], &SeverityMap::default(), now)
    }

    #[test]
    fn tiers_come_from_severity_unless_a_rule_forces_one() {
        let tiers = TiersConfig::default();
        let none = Classification::default();
        assert_eq!(tier(Severity::Critical, &none, &tiers), Tier::L3);
        assert_eq!(tier(Severity::Major, &none, &tiers), Tier::L2);
        assert_eq!(tier(Severity::Warning, &none, &tiers), Tier::L1);
        assert_eq!(tier(Severity::Info, &none, &tiers), Tier::L0);
        let forced = Classification {
            tier: Some(Tier::L3),
            ..Classification::default()
        };
        assert_eq!(tier(Severity::Info, &forced, &tiers), Tier::L3);
    }

    #[test]
    fn a_re_send_never_pulls_back_an_end_its_sender_gave() {
        let t = |s: i64| Some(Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(s));
        let (given, timeout) = ((t(60), t(60)), (None, t(60)));
        // An earlier endsAt, or none (resolve_timeout), keeps the later endsAt.
        assert_eq!(merge_expiry(given, (t(30), t(30))), given);
        assert_eq!(merge_expiry(given, (None, t(30))), given);
        // A later one pushes it forward.
        assert_eq!(merge_expiry(given, (t(90), t(90))), (t(90), t(90)));
        assert_eq!(merge_expiry(given, (None, t(90))), (None, t(90)));
        // An expiry that was only resolve_timeout gives way, as in Alertmanager.
        assert_eq!(merge_expiry(timeout, (t(30), t(30))), (t(30), t(30)));
        assert_eq!(merge_expiry(timeout, (None, t(30))), (None, t(30)));
        // No expiry on either side: the re-send's.
        assert_eq!(merge_expiry(given, (None, None)), (None, None));
        assert_eq!(merge_expiry((None, None), (t(30), t(30))), (t(30), t(30)));
    }

    #[test]
    fn expiry_follows_alertmanager() {
        let now = Utc::now().trunc_subsecs(3);
        let five = Duration::from_secs(300);
        let given = alert(Source::Alertmanager, Some(60), now);
        assert_eq!(
            expiry(&given, five),
            Some(now + chrono::Duration::seconds(60))
        );
        let zero = alert(Source::Alertmanager, None, now);
        assert_eq!(
            expiry(&zero, five),
            Some(now + chrono::Duration::seconds(300))
        );
        let precise = now + chrono::Duration::nanoseconds(1_234_567);
        let mut fine = alert(Source::Alertmanager, None, precise);
        fine.alert.ends_at = Some(precise + chrono::Duration::seconds(60));
        assert_eq!(
            expiry(&fine, five),
            Some(now + chrono::Duration::milliseconds(60_001)),
            "deadlines are kept to the millisecond of their timer keys"
        );
        let webhook = alert(Source::Webhook, None, now);
        assert_eq!(expiry(&webhook, five), None);
    }
}
