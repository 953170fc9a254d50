//! The one normalized alert model every wire format is parsed into: [`Alert`], its [`Labels`],
//! [`Fingerprint`], [`Severity`] and [`Status`].
//!
//! This module owns identity (the fingerprint) and severity mapping. It knows nothing about wire
//! formats (`sources::formats`), rules (`pipeline::classify`) or storage (`store`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::incident::{IncidentId, Tier};

/// Label and annotation maps are ordered so that fingerprints, JSON output and group keys are stable.
pub type Labels = BTreeMap<String, String>;

/// Which door an alert came in by. Bounded, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Alertmanager API v2 postable alerts (`POST /api/v2/alerts`): Prometheus, amtool.
    Alertmanager,
    /// Alertmanager webhook receiver payload (`POST /api/v1/webhook/alertmanager`).
    Webhook,
    /// PagerDuty Events API v2 (`POST /api/v1/events/pagerduty`).
    Pagerduty,
    /// triaged's own JSON form (`POST /api/v1/alerts`).
    Native,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Alertmanager,
        Source::Webhook,
        Source::Pagerduty,
        Source::Native,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Webhook => "webhook",
            Source::Pagerduty => "pagerduty",
            Source::Native => "native",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable 64-bit identity of an alert: FNV-1a over the sorted label set, computed exactly as
/// Alertmanager computes `model.LabelSet.Fingerprint()`, so with no excluded labels triaged's
/// fingerprint equals Alertmanager's for the same alert. Shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

/// A hash map for the writer's maps (the refresh log's and a batch's by fingerprint, a batch's
/// incidents by id and groups by group key, the rule index's label values): foldhash, seeded at random like std's SipHash
/// (senders choose the labels, so they must not be able to aim at one bucket), at a fraction of
/// SipHash's cost, which the writer paid several times per alert.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Prometheus' label separator byte: it cannot occur in valid UTF-8, so `a=bc` and `ab=c` differ.
const SEPARATOR: u8 = 0xff;

impl Fingerprint {
    /// Fingerprint of `labels` without the names in `exclude`.
    pub fn of(labels: &Labels, exclude: &[String]) -> Fingerprint {
        let mut hash = FNV_OFFSET;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        };
        // BTreeMap iterates in sorted name order, as Alertmanager sorts before hashing.
        for (name, value) in labels {
            if exclude.iter().any(|e| e == name) {
                continue;
            }
            feed(name.as_bytes());
            feed(&[SEPARATOR]);
            feed(value.as_bytes());
            feed(&[SEPARATOR]);
        }
        Fingerprint(hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(format!("fingerprint {s:?} is not 16 hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| format!("fingerprint {s:?} is not 16 hex digits"))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Five severities, ordered from least to most severe, so `max` picks the worst.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Warning,
        Severity::Minor,
        Severity::Major,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The built-in spellings: the five names and the common synonyms monitoring tools use
    /// (PagerDuty's `error`, priorities `p1`..`p5`, ...). Case-insensitive.
    pub fn from_builtin(value: &str) -> Option<Severity> {
        // Lowercased on the stack: no built-in name is longer than "informational", so a longer
        // value is none of them.
        let value = value.trim().as_bytes();
        let mut lower = [0u8; "informational".len()];
        let lower = lower.get_mut(..value.len())?;
        lower.copy_from_slice(value);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"critical" | b"crit" | b"fatal" | b"emergency" | b"emerg" | b"alert" | b"page"
            | b"p1" => Severity::Critical,
            b"major" | b"error" | b"err" | b"high" | b"p2" => Severity::Major,
            b"minor" | b"medium" | b"p3" => Severity::Minor,
            b"warning" | b"warn" | b"low" | b"p4" => Severity::Warning,
            b"info" | b"informational" | b"information" | b"none" | b"ok" | b"debug"
            | b"notice" | b"p5" => Severity::Info,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity {s:?}: expected critical, major, minor, warning or info")
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// An alert as a wire format delivered it, before normalization: fingerprint and severity are
/// filled in by [`Alert::normalize`] with the configured excluded labels and severity map.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub source: Source,
    /// Set by the parser only when the wire format has its own identity (PagerDuty's `dedup_key`);
    /// otherwise computed from the labels during normalization.
    pub fingerprint: Option<Fingerprint>,
    pub labels: Labels,
    pub annotations: Labels,
    pub status: Status,
    /// Set by the parser when the wire format carries its own severity field (PagerDuty); otherwise
    /// read from labels during normalization.
    pub severity: Option<Severity>,
    /// `None`: not given (zero time or missing): the alert starts when it is received.
    pub starts_at: Option<DateTime<Utc>>,
    /// `None`: not given: the alert lasts until refreshed or resolved. In the future: an expiry that
    /// each re-send pushes forward. In the past: the alert has resolved.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
    /// Whether a firing alert without `ends_at` resolves after `dedup.resolve_timeout` without a
    /// refresh: true for formats whose senders re-send (Alertmanager API v2), false where the sender
    /// reports resolution itself (webhook, PagerDuty, native).
    pub expires_without_refresh: bool,
}

/// An alert after normalization: identity and severity decided.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedAlert {
    pub alert: Alert,
    pub fingerprint: Fingerprint,
    pub severity: Severity,
    pub received_at: DateTime<Utc>,
}

/// How severities are read from labels; built from `[severity]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityMap {
    pub labels: Vec<String>,
    pub default: Severity,
    pub aliases: BTreeMap<String, Severity>,
}

impl Default for SeverityMap {
    fn default() -> Self {
        SeverityMap {
            labels: vec!["severity".into(), "priority".into()],
            default: Severity::Warning,
            aliases: BTreeMap::new(),
        }
    }
}

impl SeverityMap {
    /// The severity a label value names: a configured alias (keys are lowercase), else a
    /// built-in name, both case-insensitively. Allocates only to lowercase a value with
    /// capitals when aliases are configured.
    pub fn map_value(&self, value: &str) -> Option<Severity> {
        let alias = if self.aliases.is_empty() {
            None
        } else if value.bytes().any(|b| b.is_ascii_uppercase()) {
            self.aliases.get(&value.to_ascii_lowercase())
        } else {
            self.aliases.get(value)
        };
        alias.copied().or_else(|| Severity::from_builtin(value))
    }

    pub fn severity_of(&self, labels: &Labels) -> Severity {
        self.labels
            .iter()
            .find_map(|name| labels.get(name))
            .and_then(|value| self.map_value(value))
            .unwrap_or(self.default)
    }
}

impl Alert {
    /// A firing alert with the given labels and everything else unset; parsers and tests start here.
    pub fn new(source: Source, labels: Labels) -> Alert {
        Alert {
            source,
            fingerprint: None,
            labels,
            annotations: Labels::new(),
            status: Status::Firing,
            severity: None,
            starts_at: None,
            ends_at: None,
            generator_url: None,
            expires_without_refresh: false,
        }
    }

    /// Decide identity and severity. The status of an alert whose `ends_at` lies in the past is
    /// resolved, whatever the wire format said.
    pub fn normalize(
        mut self,
        exclude_labels: &[String],
        severities: &SeverityMap,
        now: DateTime<Utc>,
    ) -> NormalizedAlert {
        let fingerprint = self
            .fingerprint
            .unwrap_or_else(|| Fingerprint::of(&self.labels, exclude_labels));
        let severity = self
            .severity
            .unwrap_or_else(|| severities.severity_of(&self.labels));
        if matches!(self.ends_at, Some(end) if end <= now) {
            self.status = Status::Resolved;
        }
        NormalizedAlert {
            alert: self,
            fingerprint,
            severity,
            received_at: now,
        }
    }
}

/// What triaged remembers of one alert (one fingerprint): the latest of what was received, and
/// what was decided. Stored under `alert/<fingerprint>`; it is also the member JSON of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: Fingerprint,
    pub source: Source,
    pub status: Status,
    pub severity: Severity,
    /// The alert's labels plus those set by rules.
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    /// When it resolved, or the expiry the sender gave.
    pub ends_at: Option<DateTime<Utc>>,
    /// When it resolves by itself unless refreshed (`endsAt`, or `dedup.resolve_timeout`).
    pub expires_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// How many times it was received.
    pub count: u64,
    /// The incident it is a member of; `None` for L0 (auto-handled) alerts.
    pub incident: Option<IncidentId>,
    pub tier: Tier,
    /// The rules that matched it, in order.
    pub rules: Vec<String>,
    /// The silence holding it back, if any: stored, but in no incident.
    #[serde(default)]
    pub silenced_by: Option<crate::silence::SilenceId>,
    /// Recent firing/resolved changes, for flapping detection (bounded).
    #[serde(default)]
    pub state_changes: Vec<DateTime<Utc>>,
    #[serde(default)]
    pub flapping: bool,
    /// When the stored expiry timer fires: at or before `expires_at` (see `arm_expiry`).
    #[serde(default)]
    pub timer_at: Option<DateTime<Utc>>,
}

/// A label set from pairs: for tests and examples.
pub fn labels_from(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether a time can be written for Alertmanager's clients to read back: Go's RFC 3339 parser
/// (amtool, Grafana, Alertmanager itself) takes years 0000 to 9999 and no leap second (`:60`),
/// and triaged writes times in UTC. Alertmanager refuses other times with a 400, and so does
/// triaged, naming `field`: stored, one such time would make `amtool alert query` (or `silence
/// query`) fail for every alert (silence) listed with it.
pub fn check_readable(field: &str, t: DateTime<Utc>) -> Result<(), String> {
    use chrono::{Datelike, Timelike};
    if (0..=9999).contains(&t.year()) && t.nanosecond() < 1_000_000_000 {
        return Ok(());
    }
    Err(format!(
        "{field} {} is out of the range Alertmanager's clients read (RFC 3339 as Go reads it: \
         years 0000 to 9999 in UTC, no leap second)",
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    ))
}

/// Alertmanager and Go write "not given" as the zero time `0001-01-01T00:00:00Z`; treat it, and
/// anything before the Unix epoch, as absent.
pub fn given_time(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.filter(|t| t.timestamp() > 0)
}

/// A minimal record for tests: a warning at L1 from Alertmanager, seen once, now.
#[cfg(test)]
impl AlertRecord {
    pub(crate) fn sample(fingerprint: Fingerprint, status: Status, labels: Labels) -> AlertRecord {
        let now = Utc::now();
        AlertRecord {
            fingerprint,
            source: Source::Alertmanager,
            status,
            severity: Severity::Warning,
            labels,
            annotations: Default::default(),
            starts_at: now,
            ends_at: None,
            expires_at: None,
            generator_url: None,
            first_seen: now,
            last_seen: now,
            count: 1,
            incident: None,
            tier: Tier::L1,
            rules: vec![],
            silenced_by: None,
            state_changes: vec![],
            flapping: false,
            timer_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        labels_from(pairs)
    }

    proptest::proptest! {
        /// Built-in severity names are read trimmed and case-insensitively, whatever the value.
        #[test]
        fn builtin_severities_ignore_case_and_surrounding_space(
            value in proptest::prop_oneof![
                "\\PC{0,20}",
                "[ \t]{0,2}(?i:critical|crit|p1|major|err|minor|warn|low|informational|information|info|ok)[ \t]{0,2}x?",
            ],
        ) {
            proptest::prop_assert_eq!(
                Severity::from_builtin(&value),
                Severity::from_builtin(&value.trim().to_ascii_lowercase()),
            );
        }
    }

    #[test]
    fn builtin_severity_names_are_read_up_to_the_longest() {
        assert_eq!(
            Severity::from_builtin(" InFoRmAtIoNaL "),
            Some(Severity::Info)
        );
        assert_eq!(Severity::from_builtin("CRIT"), Some(Severity::Critical));
        assert_eq!(Severity::from_builtin("informationalx"), None);
        assert_eq!(Severity::from_builtin("informationa"), None);
        assert_eq!(Severity::from_builtin(""), None);
        assert_eq!(Severity::from_builtin("sev-1"), None);
    }

    #[test]
    fn fingerprint_equals_alertmanagers_for_the_captured_webhook_alerts() {
        // Both values are Alertmanager 0.25's own, from shared/fixtures/alertmanager-0.25-webhook-firing.json.
        let edge1 = labels(&[
            ("alertname", "CaptureProbeFailure"),
            ("instance", "edge-1"),
            ("service", "edge"),
            ("severity", "major"),
        ]);
        assert_eq!(Fingerprint::of(&edge1, &[]).to_string(), "144ba4c113e82cf0");
        let mut edge2 = edge1.clone();
        edge2.insert("instance".into(), "edge-2".into());
        assert_eq!(Fingerprint::of(&edge2, &[]).to_string(), "131abf6533d9e66b");
    }

    #[test]
    fn excluded_labels_do_not_change_the_fingerprint() {
        let a = labels(&[("alertname", "X"), ("pod", "x-1")]);
        let b = labels(&[("alertname", "X"), ("pod", "x-2")]);
        let exclude = vec!["pod".to_string()];
        assert_ne!(Fingerprint::of(&a, &[]), Fingerprint::of(&b, &[]));
        assert_eq!(Fingerprint::of(&a, &exclude), Fingerprint::of(&b, &exclude));
    }

    #[test]
    fn fingerprint_round_trips_through_text() {
        let fp = Fingerprint(0x00ab_cdef_0123_4567);
        assert_eq!(fp.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<Fingerprint>(), Ok(fp));
        assert!("xyz".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn severity_is_read_from_the_first_label_present_with_aliases() {
        let mut map = SeverityMap::default();
        assert_eq!(
            map.severity_of(&labels(&[("severity", "critical")])),
            Severity::Critical
        );
        assert_eq!(
            map.severity_of(&labels(&[("priority", "P2")])),
            Severity::Major
        );
        assert_eq!(
            map.severity_of(&labels(&[("severity", "error")])),
            Severity::Major
        );
        assert_eq!(map.severity_of(&labels(&[])), Severity::Warning);
        assert_eq!(
            map.severity_of(&labels(&[("severity", "sev-1")])),
            Severity::Warning
        );
        map.aliases.insert("sev-1".into(), Severity::Critical);
        assert_eq!(
            map.severity_of(&labels(&[("severity", "SEV-1")])),
            Severity::Critical
        );
        assert_eq!(
            map.severity_of(&labels(&[("severity", "sev-1")])),
            Severity::Critical
        );
        // With aliases configured, built-in names still read case-insensitively.
        assert_eq!(
            map.severity_of(&labels(&[("severity", "Info")])),
            Severity::Info
        );
    }

    #[test]
    fn an_end_in_the_past_resolves() {
        let now = Utc::now();
        let mut alert = Alert::new(Source::Alertmanager, labels(&[("alertname", "X")]));
        alert.ends_at = Some(now - chrono::Duration::seconds(1));
        let n = alert.normalize(&[], &SeverityMap::default(), now);
        assert_eq!(n.alert.status, Status::Resolved);
    }

    #[test]
    fn times_go_cannot_read_are_refused() {
        for text in [
            "2026-11-26T16:12:09.255Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let t: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(check_readable("startsAt", t), Ok(()), "{text}");
        }
        for text in [
            "+10000-01-01T00:00:00Z",
            "9999-12-31T23:30:00-01:00",
            "-0001-01-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
        ] {
            let t: DateTime<Utc> = text.parse().unwrap();
            let err = check_readable("endsAt", t).unwrap_err();
            assert!(
                err.starts_with("endsAt ") && err.contains("years 0000 to 9999"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_zero_time_is_not_given() {
        let zero: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(given_time(Some(zero)), None);
        let t: DateTime<Utc> = "2026-11-26T16:12:09.255Z".parse().unwrap();
        assert_eq!(given_time(Some(t)), Some(t));
    }
}
