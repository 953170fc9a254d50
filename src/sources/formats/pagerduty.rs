//! PagerDuty Events API v2: the body of `POST /api/v1/events/pagerduty`, in the shape PagerDuty's
//! own `POST https://events.pagerduty.com/v2/enqueue` accepts, so tools that page PagerDuty can
//! send to triaged unchanged.
//!
//! This module owns reading one event (`trigger`, `acknowledge` or `resolve`) and mapping it to an
//! [`Alert`]. The identity of a PagerDuty alert is its `dedup_key` within its `routing_key`, so
//! the parser sets the fingerprint itself. The routing key is a secret: it feeds the fingerprint
//! only and never appears in labels or annotations. A trigger without a `dedup_key` gets a
//! generated one, which the caller returns to the client as PagerDuty does.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{clean_labels, from_object, non_empty, ParseError};
use crate::alert::{
    check_readable, given_time, Alert, Fingerprint, Labels, Severity, Source, Status,
};

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const DEDUP_KEY_MAX_CHARS: usize = 255;

/// `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

impl Action {
    /// The wire spelling, also fit for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
        }
    }
}

/// One parsed event: what to do, the (given or generated) dedup key, and the alert it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyEvent {
    pub action: Action,
    pub dedup_key: String,
    pub alert: Alert,
}

impl PagerDutyEvent {
    /// The alert an `acknowledge` names: the fingerprint its dedup key gives, whether it comes
    /// over HTTP or from Kafka.
    pub fn fingerprint(&self) -> Fingerprint {
        self.alert
            .fingerprint
            .unwrap_or_else(|| Fingerprint::of(&self.alert.labels, &[]))
    }
}

/// The actor of the acknowledgements PagerDuty events make.
pub const ACTOR: &str = "pagerduty";

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(default)]
    routing_key: Option<String>,
    #[serde(default)]
    event_action: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default, deserialize_with = "super::object_or_null")]
    payload: Option<RawPayload>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    client_url: Option<String>,
    // `images` and `links` are accepted and ignored, like any unknown field.
}

#[derive(Debug, Deserialize)]
struct RawPayload {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    /// Kept as text so that a bad value is reported naming the field.
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    class: Option<String>,
    /// Its text as sent: read into numbers, a 20-digit id would be rounded to a float and a
    /// valid `1e400` refused.
    #[serde(default)]
    custom_details: Option<Box<serde_json::value::RawValue>>,
}

/// A payload whose given fields are valid; empty strings read as not given.
struct Payload {
    summary: Option<String>,
    source: Option<String>,
    severity: Option<(String, Severity)>,
    timestamp: Option<DateTime<Utc>>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    details: Option<String>,
}

fn invalid(why: impl Into<String>) -> ParseError {
    ParseError::invalid("event", why)
}

/// Valid JSON text without the whitespace between its tokens; strings and numbers as they are.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

/// Parse one event. `now` seeds the dedup key generated for a trigger that has none.
pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<PagerDutyEvent, ParseError> {
    let raw: RawEvent = from_object(body, "a PagerDuty Events API v2 event object")?;

    let routing_key = match raw.routing_key {
        None => return Err(invalid("routing_key is required")),
        Some(key) if key.is_empty() => return Err(invalid("routing_key must not be empty")),
        Some(key) => key,
    };
    let action = match raw.event_action.as_deref() {
        Some("trigger") => Action::Trigger,
        Some("acknowledge") => Action::Acknowledge,
        Some("resolve") => Action::Resolve,
        Some(_) => {
            return Err(invalid(
                "event_action must be one of trigger, acknowledge, resolve",
            ))
        }
        None => return Err(invalid("event_action is required")),
    };
    let given_key = non_empty(raw.dedup_key);
    if let Some(key) = &given_key {
        if key.chars().count() > DEDUP_KEY_MAX_CHARS {
            return Err(invalid(format!(
                "dedup_key must be at most {DEDUP_KEY_MAX_CHARS} characters"
            )));
        }
    }
    // The payload is required for a trigger only; on acknowledge/resolve PagerDuty ignores it,
    // triaged uses what it carries (but what it carries must still be valid).
    let payload = match raw.payload {
        Some(payload) => Some(read_payload(payload, action == Action::Trigger)?),
        None if action == Action::Trigger => {
            return Err(invalid("payload is required for event_action trigger"))
        }
        None => None,
    };
    let dedup_key = match given_key {
        Some(key) => key,
        None if action == Action::Trigger => {
            let summary = payload.as_ref().and_then(|p| p.summary.as_deref());
            let source = payload.as_ref().and_then(|p| p.source.as_deref());
            generate_dedup_key(
                &routing_key,
                summary.unwrap_or_default(),
                source.unwrap_or_default(),
                now,
            )
        }
        None => {
            return Err(invalid(format!(
                "dedup_key is required for event_action {}",
                action.as_str()
            )))
        }
    };

    let identity: Labels = [
        ("dedup_key".to_string(), dedup_key.clone()),
        ("routing_key".to_string(), routing_key),
    ]
    .into_iter()
    .collect();

    let mut labels = Labels::new();
    let mut annotations = Labels::new();
    labels.insert("dedup_key".into(), dedup_key.clone());
    let mut severity = None;
    let mut starts_at = None;
    if let Some(p) = payload {
        let alertname = p.class.clone().or_else(|| p.summary.clone());
        let label_values = [
            ("alertname", alertname),
            ("instance", p.source),
            ("service", p.component),
            ("group", p.group),
            ("class", p.class),
            (
                "severity",
                p.severity.as_ref().map(|(name, _)| name.clone()),
            ),
        ];
        for (name, value) in label_values {
            if let Some(value) = value {
                labels.insert(name.to_string(), value);
            }
        }
        for (name, value) in [("summary", p.summary), ("details", p.details)] {
            if let Some(value) = value {
                annotations.insert(name.to_string(), value);
            }
        }
        severity = p.severity.map(|(_, severity)| severity);
        starts_at = given_time(p.timestamp);
    }
    for (name, value) in [("client", raw.client), ("client_url", raw.client_url)] {
        if let Some(value) = non_empty(value) {
            annotations.insert(name.to_string(), value);
        }
    }

    let mut alert = Alert::new(Source::Pagerduty, clean_labels(labels, 0)?);
    alert.fingerprint = Some(Fingerprint::of(&identity, &[]));
    alert.annotations = annotations;
    alert.status = match action {
        Action::Resolve => Status::Resolved,
        Action::Trigger | Action::Acknowledge => Status::Firing,
    };
    alert.severity = if action == Action::Trigger {
        severity
    } else {
        None
    };
    alert.starts_at = starts_at;
    alert.ends_at = None;
    alert.expires_without_refresh = false;
    Ok(PagerDutyEvent {
        action,
        dedup_key,
        alert,
    })
}

/// Check the payload's fields; `trigger` makes summary, source and severity required.
fn read_payload(raw: RawPayload, trigger: bool) -> Result<Payload, ParseError> {
    let required = |value: Option<String>, field: &str| -> Result<Option<String>, ParseError> {
        let value = value.filter(|v| !v.trim().is_empty());
        if trigger && value.is_none() {
            return Err(invalid(format!("{field} is required")));
        }
        Ok(value)
    };
    let summary = required(raw.summary, "payload.summary")?;
    if let Some(summary) = &summary {
        if summary.chars().count() > SUMMARY_MAX_CHARS {
            return Err(invalid(format!(
                "payload.summary must be at most {SUMMARY_MAX_CHARS} characters"
            )));
        }
    }
    let source = required(raw.source, "payload.source")?;
    let severity = match required(raw.severity, "payload.severity")? {
        None => None,
        Some(name) => {
            let severity = match name.as_str() {
                "critical" => Severity::Critical,
                "error" => Severity::Major,
                "warning" => Severity::Warning,
                "info" => Severity::Info,
                _ => {
                    return Err(invalid(
                        "payload.severity must be one of critical, error, warning, info",
                    ))
                }
            };
            Some((name, severity))
        }
    };
    let timestamp = match non_empty(raw.timestamp) {
        None => None,
        // chrono's parser takes RFC 3339 and the `+0000` offsets of PagerDuty's examples.
        Some(text) => {
            let t = text.parse::<DateTime<Utc>>().map_err(|_| {
                invalid("payload.timestamp must be an ISO 8601 date and time, e.g. 2015-07-17T08:42:58.315+0000")
            })?;
            check_readable("payload.timestamp", t).map_err(invalid)?;
            Some(t)
        }
    };
    let details = match raw
        .custom_details
        .as_deref()
        .map(serde_json::value::RawValue::get)
    {
        None | Some("null") => None,
        // A string is its text, unescaped.
        Some(text) if text.starts_with('"') => non_empty(serde_json::from_str::<String>(text).ok()),
        // Anything else (an object, an array, a number, a boolean) is the JSON as sent, less
        // the whitespace between its tokens.
        Some(text) => Some(compact(text)),
    };
    Ok(Payload {
        summary,
        source,
        severity,
        timestamp,
        component: non_empty(raw.component),
        group: non_empty(raw.group),
        class: non_empty(raw.class),
        details,
    })
}

/// A dedup key for a trigger that has none: 32 hex digits, two FNV-1a 64 rounds with different
/// seeds over the routing key, summary, source and `now` in nanoseconds.
fn generate_dedup_key(
    routing_key: &str,
    summary: &str,
    source: &str,
    now: DateTime<Utc>,
) -> String {
    const SEEDS: [u64; 2] = [0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142];
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let nanos =
        i128::from(now.timestamp()) * 1_000_000_000 + i128::from(now.timestamp_subsec_nanos());
    let nanos = nanos.to_le_bytes();
    let parts: [&[u8]; 4] = [
        routing_key.as_bytes(),
        summary.as_bytes(),
        source.as_bytes(),
        &nanos,
    ];
    let [a, b] = SEEDS.map(|seed| {
        let mut hash = seed;
        for part in parts {
            // 0xff never occurs in UTF-8, so the parts cannot run into each other.
            for &byte in part.iter().chain(&[0xff]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
        hash
    });
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;

    const TRIGGER: &[u8] = include_bytes!("../../../tests/fixtures/pagerduty-trigger.json");
    const ACKNOWLEDGE: &[u8] = include_bytes!("../../../tests/fixtures/pagerduty-acknowledge.json");
    const RESOLVE: &str = include_str!("../../../tests/fixtures/pagerduty-resolve.json");
    const ROUTING_KEY: &str = "c9a4f1e07b3d42a8b6e5d0f2a1c3e4b7";
    const DEDUP_KEY: &str = "db-primary-01/disk/var-lib-mysql";

    fn now() -> DateTime<Utc> {
        "2026-11-26T16:12:10Z".parse().unwrap()
    }

    fn identity(dedup_key: &str) -> Fingerprint {
        Fingerprint::of(
            &labels(&[("dedup_key", dedup_key), ("routing_key", ROUTING_KEY)]),
            &[],
        )
    }

    fn why(body: &str) -> String {
        match parse(body.as_bytes(), now()) {
            Err(ParseError::Invalid { what, why }) => {
                assert_eq!(what, "event");
                why
            }
            other => panic!("expected an invalid event, got {other:?}"),
        }
    }

    fn trigger_with(payload: &str) -> String {
        format!(
            r#"{{"routing_key":"{ROUTING_KEY}","event_action":"trigger","dedup_key":"k","payload":{payload}}}"#
        )
    }

    #[test]
    fn trigger_fixture() {
        let event = parse(TRIGGER, now()).unwrap();
        assert_eq!(event.action, Action::Trigger);
        assert_eq!(event.dedup_key, DEDUP_KEY);
        let a = &event.alert;
        assert_eq!(a.source, Source::Pagerduty);
        assert_eq!(a.fingerprint, Some(identity(DEDUP_KEY)));
        assert_eq!(
            a.labels,
            labels(&[
                ("alertname", "disk"),
                ("class", "disk"),
                ("dedup_key", DEDUP_KEY),
                ("group", "prod-datapipe"),
                ("instance", "db-primary-01.example.com"),
                ("service", "mysql"),
                ("severity", "critical"),
            ])
        );
        assert_eq!(a.severity, Some(Severity::Critical));
        assert_eq!(a.status, Status::Firing);
        assert_eq!(
            a.starts_at,
            Some("2026-11-26T16:12:09.255Z".parse().unwrap())
        );
        assert_eq!(a.ends_at, None);
        assert_eq!(a.generator_url, None);
        assert!(!a.expires_without_refresh);

        assert_eq!(
            a.annotations.get("summary").map(String::as_str),
            Some("DISK CRITICAL - free space: /var/lib/mysql 2% on db-primary-01.example.com")
        );
        assert_eq!(
            a.annotations.get("client").map(String::as_str),
            Some("Sample Monitoring Service")
        );
        assert_eq!(
            a.annotations.get("client_url").map(String::as_str),
            Some("https://monitoring.example.com")
        );
        let details = a.annotations.get("details").unwrap();
        assert!(!details.contains('\n'), "compact JSON: {details}");
        let details: serde_json::Value = serde_json::from_str(details).unwrap();
        assert_eq!(
            details,
            serde_json::json!({"free space": "2%", "mount": "/var/lib/mysql", "load avg": 0.75})
        );
        assert_eq!(a.annotations.len(), 4);
    }

    #[test]
    fn the_routing_key_is_never_shown() {
        for body in [TRIGGER, ACKNOWLEDGE, RESOLVE.as_bytes()] {
            let a = parse(body, now()).unwrap().alert;
            for (name, value) in a.labels.iter().chain(&a.annotations) {
                assert!(!name.contains("routing"), "{name}");
                assert!(!value.contains(ROUTING_KEY), "{name}={value}");
            }
        }
    }

    #[test]
    fn acknowledge_and_resolve_fixtures_share_the_triggers_identity() {
        let ack = parse(ACKNOWLEDGE, now()).unwrap();
        assert_eq!(ack.action, Action::Acknowledge);
        assert_eq!(ack.dedup_key, DEDUP_KEY);
        assert_eq!(ack.alert.status, Status::Firing);
        assert_eq!(ack.alert.severity, None);
        assert_eq!(ack.alert.labels, labels(&[("dedup_key", DEDUP_KEY)]));
        assert!(ack.alert.annotations.is_empty());
        assert_eq!(ack.alert.fingerprint, Some(identity(DEDUP_KEY)));
        assert_eq!(ack.alert.starts_at, None);

        let resolve = parse(RESOLVE.as_bytes(), now()).unwrap();
        assert_eq!(resolve.action, Action::Resolve);
        assert_eq!(resolve.alert.status, Status::Resolved);
        assert_eq!(resolve.alert.severity, None);
        assert_eq!(resolve.alert.labels, labels(&[("dedup_key", DEDUP_KEY)]));
        assert_eq!(
            resolve.alert.fingerprint,
            parse(TRIGGER, now()).unwrap().alert.fingerprint
        );
        assert!(!resolve.alert.expires_without_refresh);
    }

    #[test]
    fn the_same_dedup_key_under_another_routing_key_is_another_alert() {
        let other = RESOLVE.replace(ROUTING_KEY, "00000000000000000000000000000000");
        let event = parse(other.as_bytes(), now()).unwrap();
        assert_eq!(event.dedup_key, DEDUP_KEY);
        assert_ne!(event.alert.fingerprint, Some(identity(DEDUP_KEY)));
    }

    #[test]
    fn a_trigger_without_dedup_key_gets_a_generated_one() {
        let body = r#"{"routing_key":"R","event_action":"trigger",
            "payload":{"summary":"s","source":"h","severity":"error"}}"#;
        let event = parse(body.as_bytes(), now()).unwrap();
        let key = &event.dedup_key;
        assert_eq!(key.len(), 32);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(event.alert.labels.get("dedup_key"), Some(key));
        assert_eq!(event.alert.fingerprint, {
            let id = labels(&[("dedup_key", key), ("routing_key", "R")]);
            Some(Fingerprint::of(&id, &[]))
        });
        // Deterministic for the same input and instant; different otherwise.
        assert_eq!(parse(body.as_bytes(), now()).unwrap().dedup_key, *key);
        let later = now() + chrono::Duration::nanoseconds(1);
        assert_ne!(parse(body.as_bytes(), later).unwrap().dedup_key, *key);
        let other = body.replace(r#""summary":"s""#, r#""summary":"t""#);
        assert_ne!(parse(other.as_bytes(), now()).unwrap().dedup_key, *key);
        // An empty dedup_key is not given.
        let empty = body.replace(r#""trigger","#, r#""trigger","dedup_key":"","#);
        assert_eq!(parse(empty.as_bytes(), now()).unwrap().dedup_key, *key);
    }

    #[test]
    fn a_minimal_trigger_maps_summary_to_alertname() {
        let event = parse(
            trigger_with(r#"{"summary":"Disk full","source":"h1","severity":"error"}"#).as_bytes(),
            now(),
        )
        .unwrap();
        assert_eq!(
            event.alert.labels,
            labels(&[
                ("alertname", "Disk full"),
                ("dedup_key", "k"),
                ("instance", "h1"),
                ("severity", "error"),
            ])
        );
        assert_eq!(event.alert.severity, Some(Severity::Major));
        assert_eq!(event.alert.annotations, labels(&[("summary", "Disk full")]));
        assert_eq!(event.alert.starts_at, None);
    }

    #[test]
    fn severities_map() {
        for (name, severity) in [
            ("critical", Severity::Critical),
            ("error", Severity::Major),
            ("warning", Severity::Warning),
            ("info", Severity::Info),
        ] {
            let payload = format!(r#"{{"summary":"s","source":"h","severity":"{name}"}}"#);
            let event = parse(trigger_with(&payload).as_bytes(), now()).unwrap();
            assert_eq!(event.alert.severity, Some(severity));
        }
    }

    #[test]
    fn string_custom_details_are_kept_as_text_and_timestamps_may_be_rfc3339() {
        let payload = r#"{"summary":"s","source":"h","severity":"info",
            "custom_details":"plain text","timestamp":"2026-11-26T17:12:09+01:00"}"#;
        let event = parse(trigger_with(payload).as_bytes(), now()).unwrap();
        assert_eq!(
            event.alert.annotations.get("details").map(String::as_str),
            Some("plain text")
        );
        assert_eq!(
            event.alert.starts_at,
            Some("2026-11-26T16:12:09Z".parse().unwrap())
        );
    }

    /// Regression (QA of the formats, F3): custom_details were read into JSON values and
    /// written again: an id beyond 64 bits came back rounded, `1e3` as `1000.0`, and a valid
    /// `1e400` refused the whole event. They are the text as sent now.
    #[test]
    fn custom_details_are_the_json_as_sent() {
        for (details, kept) in [
            (
                r#"{"order":123456789012345678901234,"ratio":1e3,"zero":-0,"huge":1e400}"#,
                Some(r#"{"order":123456789012345678901234,"ratio":1e3,"zero":-0,"huge":1e400}"#),
            ),
            (
                r#"[1, "two  three", {"3": null, "\"q\\" : 4}]"#,
                Some(r#"[1,"two  three",{"3":null,"\"q\\":4}]"#),
            ),
            ("18446744073709551616", Some("18446744073709551616")),
            ("true", Some("true")),
            (r#""line\nbreak \u00e9""#, Some("line\nbreak \u{e9}")),
            (r#""""#, None),
            ("null", None),
        ] {
            let payload = format!(
                r#"{{"summary":"s","source":"h","severity":"info","custom_details":{details}}}"#
            );
            let event = parse(trigger_with(&payload).as_bytes(), now())
                .unwrap_or_else(|e| panic!("{details}: {e}"));
            assert_eq!(
                event.alert.annotations.get("details").map(String::as_str),
                kept,
                "{details}"
            );
        }
    }

    #[test]
    fn resolve_with_a_payload_uses_what_it_carries() {
        let body = r#"{"routing_key":"R","event_action":"resolve","dedup_key":"k",
            "payload":{"summary":"Disk full","severity":"critical"}}"#;
        let event = parse(body.as_bytes(), now()).unwrap();
        assert_eq!(event.alert.status, Status::Resolved);
        assert_eq!(event.alert.severity, None);
        assert_eq!(
            event.alert.labels.get("alertname").map(String::as_str),
            Some("Disk full")
        );
    }

    #[test]
    fn summary_length_limit() {
        let ok = format!(
            r#"{{"summary":"{}","source":"h","severity":"info"}}"#,
            "é".repeat(SUMMARY_MAX_CHARS)
        );
        assert!(parse(trigger_with(&ok).as_bytes(), now()).is_ok());
        let long = format!(
            r#"{{"summary":"{}","source":"h","severity":"info"}}"#,
            "x".repeat(SUMMARY_MAX_CHARS + 1)
        );
        assert_eq!(
            why(&trigger_with(&long)),
            "payload.summary must be at most 1024 characters"
        );
    }

    #[test]
    fn rule_errors_name_the_field() {
        let cases = [
            (
                r#"{"event_action":"trigger"}"#.to_string(),
                "routing_key is required",
            ),
            (
                r#"{"routing_key":"","event_action":"trigger"}"#.to_string(),
                "routing_key must not be empty",
            ),
            (
                r#"{"routing_key":"R"}"#.to_string(),
                "event_action is required",
            ),
            (
                r#"{"routing_key":"R","event_action":"Trigger"}"#.to_string(),
                "event_action must be one of trigger, acknowledge, resolve",
            ),
            (
                r#"{"routing_key":"R","event_action":"resolve"}"#.to_string(),
                "dedup_key is required for event_action resolve",
            ),
            (
                r#"{"routing_key":"R","event_action":"acknowledge","dedup_key":""}"#.to_string(),
                "dedup_key is required for event_action acknowledge",
            ),
            (
                format!(
                    r#"{{"routing_key":"R","event_action":"resolve","dedup_key":"{}"}}"#,
                    "k".repeat(DEDUP_KEY_MAX_CHARS + 1)
                ),
                "dedup_key must be at most 255 characters",
            ),
            (
                r#"{"routing_key":"R","event_action":"trigger","dedup_key":"k"}"#.to_string(),
                "payload is required for event_action trigger",
            ),
            (
                trigger_with(r#"{"source":"h","severity":"info"}"#),
                "payload.summary is required",
            ),
            (
                trigger_with(r#"{"summary":" ","source":"h","severity":"info"}"#),
                "payload.summary is required",
            ),
            (
                trigger_with(r#"{"summary":"s","severity":"info"}"#),
                "payload.source is required",
            ),
            (
                trigger_with(r#"{"summary":"s","source":"h"}"#),
                "payload.severity is required",
            ),
            (
                trigger_with(r#"{"summary":"s","source":"h","severity":"major"}"#),
                "payload.severity must be one of critical, error, warning, info",
            ),
            (
                trigger_with(r#"{"summary":"s","source":"h","severity":"info","timestamp":"now"}"#),
                "payload.timestamp must be an ISO 8601 date and time, e.g. 2015-07-17T08:42:58.315+0000",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(why(&body), expected, "{body}");
        }
        let err = parse(br#"{"event_action":"trigger"}"#, now()).unwrap_err();
        assert_eq!(err.reason(), "invalid_alert");
        assert_eq!(err.to_string(), "invalid event: routing_key is required");
    }

    #[test]
    fn shape_errors_are_json_errors() {
        for body in [
            &b""[..],
            b"[]",
            b"{\"routing_key\":32}",
            b"{\"routing_key\":\"R\",\"event_action\":\"trigger\",\"payload\":\"text\"}",
            b"{\"routing_key\":\"R\",\"event_action\":\"trigger\",\"payload\":{\"summary\":1}}",
            b"{\"routing_key\":\"R\"",
        ] {
            let err = parse(body, now()).unwrap_err();
            assert_eq!(err.reason(), "malformed_json", "{err}");
        }
    }

    #[test]
    fn the_payload_is_an_object_not_an_array() {
        // serde's derived structs take an array too, fields by position.
        let body =
            br#"{"routing_key":"R","event_action":"trigger","payload":["s","h","critical"]}"#;
        let err = parse(body, now()).unwrap_err();
        assert_eq!(err.reason(), "malformed_json");
        assert!(
            err.to_string()
                .contains("expected a JSON object at line 1 column "),
            "{err}"
        );
        let err = parse(br#"["R","trigger"]"#, now()).unwrap_err();
        assert!(err.to_string().contains("expected a PagerDuty"), "{err}");
        // null is no payload, as before.
        let body =
            br#"{"routing_key":"R","event_action":"resolve","dedup_key":"k","payload":null}"#;
        assert!(parse(body, now()).is_ok());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = r#"{"routing_key":"R","event_action":"resolve","dedup_key":"k",
            "images":[],"links":[],"extra":{"x":1}}"#;
        assert!(parse(body.as_bytes(), now()).is_ok());
    }
}
