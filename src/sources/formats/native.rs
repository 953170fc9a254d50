//! triaged's own JSON form: the body of `POST /api/v1/alerts`, for scripts and tools without an
//! Alertmanager or PagerDuty integration.
//!
//! This module owns reading that body: either a JSON array of alerts or `{"alerts": [...]}`, each
//! alert `{labels, annotations, status, severity, starts_at, ends_at, generator_url}`. Being
//! triaged's own format it is strict: unknown fields are rejected (a typo such as `"lables"` is a
//! 400 naming the field), `status` is `firing` (the default) or `resolved`, and `severity`, when
//! given, is one of triaged's five severities and overrides any severity label. Senders report
//! resolution themselves, so these alerts do not expire without a refresh.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    clean_labels, from_json, from_object, non_empty, read_alerts, wire_times, AlertArray,
    ParseError,
};
use crate::alert::{Alert, Labels, Severity, Source, Status};

/// What the client is told when the body is neither an array nor an object.
const EXPECTING: &str = "a JSON array of alerts or an object {\"alerts\": [...]}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper {
    alerts: AlertArray<NativeAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeAlert {
    #[serde(deserialize_with = "super::labels")]
    labels: Labels,
    #[serde(default, deserialize_with = "super::annotations")]
    annotations: Labels,
    #[serde(default)]
    status: Option<Status>,
    /// Kept as text and read with `Severity`'s `FromStr`, whose message lists the valid names.
    #[serde(default)]
    severity: Option<String>,
    #[serde(default, deserialize_with = "super::time")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "super::time")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    generator_url: Option<String>,
}

/// Parse a `POST /api/v1/alerts` body. An empty array (or `{"alerts": []}`) yields no alerts.
pub fn parse(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    // Pick the shape by the first byte rather than with an untagged enum, so that serde_json's
    // own error (with line and column) reaches the client.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let AlertArray(raw) = read_alerts(|| match first {
        Some(b'[') => from_json::<AlertArray<NativeAlert>>(body),
        _ => from_object::<Wrapper>(body, EXPECTING).map(|w| w.alerts),
    })?;
    raw.into_iter()
        .enumerate()
        .map(|(index, raw)| read_alert(raw, index))
        .collect()
}

/// Parse one native alert object (a line of NDJSON, a Kafka message) as a list of one; a
/// problem in it is said of `alert 0`, and JSON errors have the body's own line and column.
pub fn parse_one(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    let raw = from_object::<NativeAlert>(body, "an alert object")?;
    Ok(vec![read_alert(raw, 0)?])
}

/// The alert at `index` in its body, checked against the format's rules.
fn read_alert(raw: NativeAlert, index: usize) -> Result<Alert, ParseError> {
    let severity = match raw.severity {
        None => None,
        Some(name) => Some(
            name.parse::<Severity>()
                .map_err(|why| ParseError::alert(index, why))?,
        ),
    };
    let mut alert = Alert::new(Source::Native, clean_labels(raw.labels, index)?);
    alert.annotations = raw.annotations;
    alert.status = raw.status.unwrap_or(Status::Firing);
    alert.severity = severity;
    (alert.starts_at, alert.ends_at) =
        wire_times(raw.starts_at, raw.ends_at, ["starts_at", "ends_at"], index)?;
    alert.generator_url = non_empty(raw.generator_url);
    alert.expires_without_refresh = false;
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;

    const FIRING: &[u8] = include_bytes!("../../../tests/fixtures/native-firing.json");
    const RESOLVED: &[u8] = include_bytes!("../../../tests/fixtures/native-resolved.json");

    fn time(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn json_error(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(err @ ParseError::Json { .. }) => {
                assert_eq!(err.reason(), "malformed_json");
                err.to_string()
            }
            other => panic!("expected a JSON error for {body}, got {other:?}"),
        }
    }

    #[test]
    fn firing_fixture_in_the_wrapper_form() {
        let alerts = parse(FIRING).unwrap();
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!(a.source, Source::Native);
        assert_eq!(a.fingerprint, None);
        assert_eq!(
            a.labels,
            labels(&[
                ("alertname", "QueueBacklog"),
                ("env", "prod"),
                ("queue", "invoices"),
                ("service", "billing"),
            ])
        );
        assert_eq!(
            a.annotations,
            labels(&[
                ("runbook_url", "https://runbooks.example/queue-backlog"),
                ("summary", "invoices queue backlog above 10000 messages"),
            ])
        );
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.severity, Some(Severity::Major));
        assert_eq!(a.starts_at, Some(time("2026-11-26T16:10:00Z")));
        assert_eq!(a.ends_at, None);
        assert_eq!(
            a.generator_url.as_deref(),
            Some("https://grafana.example/d/queues?var-queue=invoices")
        );
        assert!(!a.expires_without_refresh);

        let b = &alerts[1];
        assert_eq!(b.status, Status::Firing, "status defaults to firing");
        assert_eq!(b.severity, Some(Severity::Minor));
        assert_eq!(b.labels.get("queue").map(String::as_str), Some("payments"));
        assert_eq!(b.generator_url, None);
    }

    #[test]
    fn resolved_fixture_in_the_array_form() {
        let firing = parse(FIRING).unwrap();
        let alerts = parse(RESOLVED).unwrap();
        assert_eq!(alerts.len(), 2);
        for (resolved, firing) in alerts.iter().zip(&firing) {
            assert_eq!(resolved.labels, firing.labels);
            assert_eq!(resolved.severity, firing.severity);
            assert_eq!(resolved.starts_at, firing.starts_at);
            assert_eq!(resolved.status, Status::Resolved);
            assert_eq!(resolved.ends_at, Some(time("2026-11-26T16:42:15Z")));
        }
    }

    #[test]
    fn both_forms_read_the_same() {
        let one = r#"{"labels":{"alertname":"X"}}"#;
        let array = parse(format!("[{one}]").as_bytes()).unwrap();
        let wrapped = parse(format!(" \n{{\"alerts\": [{one}]}}").as_bytes()).unwrap();
        assert_eq!(array, wrapped);
        assert_eq!(array[0].status, Status::Firing);
        assert_eq!(array[0].severity, None);
        assert!(array[0].annotations.is_empty());
    }

    #[test]
    fn empty_lists_are_no_alerts() {
        assert!(parse(b"[]").unwrap().is_empty());
        assert!(parse(br#"{"alerts": []}"#).unwrap().is_empty());
    }

    #[test]
    fn zero_times_and_empty_values_are_not_given() {
        let body = r#"[{"labels":{"alertname":"X","pod":""},"starts_at":"0001-01-01T00:00:00Z",
            "ends_at":null,"generator_url":""}]"#;
        let a = &parse(body.as_bytes()).unwrap()[0];
        assert_eq!(a.labels, labels(&[("alertname", "X")]));
        assert_eq!(a.starts_at, None);
        assert_eq!(a.ends_at, None);
        assert_eq!(a.generator_url, None);
    }

    #[test]
    fn a_typo_is_a_json_error_naming_the_field() {
        let err = json_error(r#"[{"lables":{"alertname":"X"}}]"#);
        assert!(err.contains("unknown field `lables`"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        let err = json_error(r#"{"alerts":[],"source":"cron"}"#);
        assert!(err.contains("unknown field `source`"), "{err}");
        let err = json_error(r#"{"alert":[]}"#);
        assert!(err.contains("unknown field `alert`"), "{err}");
    }

    #[test]
    fn shape_errors() {
        let err = json_error("{}");
        assert!(err.contains("missing field `alerts`"), "{err}");
        let err = json_error(r#"[{"annotations":{}}]"#);
        assert!(err.contains("missing field `labels`"), "{err}");
        let err = json_error(r#""alerts""#);
        assert!(err.contains(EXPECTING), "{err}");
        let err = json_error(r#"[{"labels":{"alertname":"X"},"status":"open"}]"#);
        assert!(err.contains("unknown variant `open`"), "{err}");
        let err = json_error(r#"[{"labels":{"alertname":"X"},"ends_at":"soon"}]"#);
        assert!(err.contains(r#"invalid time "soon""#), "{err}");
        let err = json_error(r#"{"alerts":{}}"#);
        assert!(err.contains("expected a JSON array of alerts"), "{err}");
        for body in [
            "",
            "   ",
            "[",
            "[{}",
            "nul",
            "[1]",
            "[[]]",
            "{\"alerts\":[]} x",
        ] {
            json_error(body);
        }
    }

    #[test]
    fn rule_errors_name_the_alert() {
        let body =
            r#"[{"labels":{"alertname":"A"}},{"labels":{"alertname":"B"},"severity":"high"}]"#;
        let err = parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "invalid_alert");
        assert_eq!(
            err.to_string(),
            r#"invalid alert 1: unknown severity "high": expected critical, major, minor, warning or info"#
        );
        let err = parse(br#"{"alerts":[{"labels":{}}]}"#).unwrap_err();
        assert_eq!(err.to_string(), "invalid alert 0: labels must not be empty");
        let err = parse(br#"[{"labels":{"":"x"}}]"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid alert 0: label names must not be empty"
        );
    }
}
