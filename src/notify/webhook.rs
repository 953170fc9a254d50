//! The webhook sink: each event POSTed as versioned JSON (the event with the incident), or
//! through a body template for chat tools (`template = "slack"`: `{"text": "..."}`), with an
//! optional `Authorization` header and an HMAC-SHA256 signature of the body
//! (`X-Triaged-Signature: sha256=<hex>`) so the receiver can check it came from triaged.
//! Secrets are read from files and never logged.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use super::{DeliveryError, Filter, Sink};
use crate::config::WebhookSinkConfig;
use crate::outbox::OutboxEvent;

const SLACK_TEMPLATE: &str = r#"{"text": "[{{incident.tier}}] {{incident.id}} {{kind}}: {{incident.group_key}} ({{incident.severity}}, {{incident.state}}) {{reason}}"}"#;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

pub struct WebhookSink {
    name: String,
    url: hyper::Uri,
    timeout: Duration,
    max_backoff: Duration,
    filter: Filter,
    authorization: Option<HeaderValue>,
    hmac_secret: Option<Vec<u8>>,
    template: Option<String>,
    client: HttpsClient,
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    let resolved = crate::config::resolve_file(path)?;
    let bytes = std::fs::read(&resolved)
        .map_err(|e| format!("cannot read {what} {}: {e}", resolved.display()))?;
    // A trailing newline from `echo secret > file` is not part of the secret.
    let trimmed = bytes.trim_ascii_end().to_vec();
    if trimmed.is_empty() {
        return Err(format!("{what} {} is empty", resolved.display()));
    }
    Ok(trimmed)
}

/// The `Authorization` header's value, read from `authorization_file`.
pub fn read_authorization(path: &std::path::Path) -> Result<HeaderValue, String> {
    let mut value =
        HeaderValue::from_bytes(&read_secret(path, "authorization_file")?).map_err(|_| {
            format!(
                "authorization_file {} is not a valid header value",
                path.display()
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The HMAC key, read from `hmac_secret_file`.
pub fn read_hmac_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    read_secret(path, "hmac_secret_file")
}

/// The sink's secrets, read from their files: the `Authorization` header's value and the HMAC
/// key. The config's check reads them too ([`crate::config::Checks::files`]: `check-config`, the
/// start, a reload), so that a file missing or empty is a config error on its line rather than a
/// sink that fails once the daemon runs.
pub fn secrets(
    config: &WebhookSinkConfig,
) -> Result<(Option<HeaderValue>, Option<Vec<u8>>), String> {
    let authorization = config
        .authorization_file
        .as_deref()
        .map(read_authorization)
        .transpose()?;
    let hmac_secret = config
        .hmac_secret_file
        .as_deref()
        .map(read_hmac_secret)
        .transpose()?;
    Ok((authorization, hmac_secret))
}

impl WebhookSink {
    pub fn new(config: &WebhookSinkConfig) -> Result<WebhookSink, String> {
        let url: hyper::Uri = config
            .url
            .parse()
            .map_err(|e| format!("webhook {:?}: bad url: {e}", config.name))?;
        let (authorization, hmac_secret) = secrets(config)?;
        let template = config.template.as_deref().map(|t| match t {
            "slack" => SLACK_TEMPLATE.to_string(),
            other => other.to_string(),
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebhookSink {
            name: format!("webhook:{}", config.name),
            url,
            timeout: config.timeout.0,
            max_backoff: config.max_backoff.0,
            filter: Filter::new(&config.filter())
                .map_err(|e| format!("webhook {:?}: {e}", config.name))?,
            authorization,
            hmac_secret,
            template,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The request body for `event`.
    pub fn body(&self, event: &OutboxEvent) -> Vec<u8> {
        match &self.template {
            None => serde_json::to_vec(event).unwrap_or_default(),
            Some(template) => render(template, event).into_bytes(),
        }
    }
}

/// The HMAC-SHA256 of `body` with `secret`, as hex.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The placeholders a body template may use, each written `{{name}}` (no spaces); the
/// `incident.` ones are fields of the incident (empty for `auto_handled`, which has none).
pub const PLACEHOLDERS: [&str; 10] = [
    "kind",
    "event_id",
    "actor",
    "reason",
    "incident.id",
    "incident.tier",
    "incident.severity",
    "incident.state",
    "incident.group_key",
    "incident.runbook",
];

/// Every `{{name}}` of `template` (a name without braces), in order: where it stands and its
/// name. What [`render`] fills in and [`unknown_placeholders`] checks.
fn placeholder_spans(template: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(start) = template[from..].find("{{").map(|i| from + i) {
        let Some(end) = template[start + 2..].find("}}").map(|i| start + 2 + i) else {
            break;
        };
        let name = &template[start + 2..end];
        if name.contains(['{', '}']) {
            // `{{{kind}}}`: look again from the next brace.
            from = start + 1;
            continue;
        }
        spans.push((start..end + 2, name));
        from = end + 2;
    }
    spans
}

/// The `{{...}}`s of `template` that are not [`PLACEHOLDERS`] (which would be sent as they
/// are), as written, in order.
pub fn unknown_placeholders(template: &str) -> Vec<&str> {
    placeholder_spans(template)
        .into_iter()
        .filter(|(_, name)| !PLACEHOLDERS.contains(name))
        .map(|(span, _)| &template[span])
        .collect()
}

/// Replace `{{placeholder}}`s with the event's values, JSON-string-escaped (without quotes).
fn render(template: &str, event: &OutboxEvent) -> String {
    let incident = |key: &str| {
        event
            .incident
            .as_ref()
            .and_then(|i| i.get(key))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let value = |key: &str| match key {
        "kind" => event.kind.clone(),
        "event_id" => event.event_id.clone(),
        "actor" => event.actor.clone(),
        "reason" => event.reason.clone().unwrap_or_default(),
        _ => key
            .strip_prefix("incident.")
            .map(incident)
            .unwrap_or_default(),
    };
    // One pass over the template: a value is never looked at again, so an operator's reason
    // that holds `{{incident.id}}` is sent as written, not filled in.
    let mut out = String::with_capacity(template.len() + 64);
    let mut done = 0;
    for (span, name) in placeholder_spans(template) {
        if !PLACEHOLDERS.contains(&name) {
            continue;
        }
        out.push_str(&template[done..span.start]);
        let escaped = serde_json::to_string(&value(name)).unwrap_or_default();
        out.push_str(&escaped[1..escaped.len().saturating_sub(1)]);
        done = span.end;
    }
    out.push_str(&template[done..]);
    out
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> &Filter {
        &self.filter
    }

    fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    async fn deliver(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let body = self.body(event);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("triaged/", env!("CARGO_PKG_VERSION")))
            .header("X-Triaged-Event-Id", event.event_id.as_str());
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(secret) = &self.hmac_secret {
            request = request.header(
                "X-Triaged-Signature",
                format!("sha256={}", signature(secret, &body)),
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::Retryable(format!("building the request: {e}")))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| DeliveryError::Retryable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| DeliveryError::Retryable(format!("request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            // 4xx too: a receiver that refuses is usually misconfigured or briefly broken;
            // dropping the event would lose it, so it is retried (and counted as an error).
            Err(DeliveryError::Retryable(format!("answered {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn templates_fill_in_escaped_values() {
        let event = sample_event();
        let body = render(SLACK_TEMPLATE, &event);
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(
            v["text"],
            "[L2] INC-1 opened: alertname=\"DiskFull\" (major, open) disk \"full\""
        );
    }

    /// Regression: placeholders were filled one after another, so a value holding one (an
    /// operator's reason) was filled in too.
    #[test]
    fn a_value_is_sent_as_written_even_when_it_holds_a_placeholder() {
        let mut event = sample_event();
        event.reason = Some("see {{incident.id}} and {{kind}}".into());
        assert_eq!(
            render(
                "{{reason}} / {{incident.id}} {{{kind}}} {{nope}} {{",
                &event
            ),
            "see {{incident.id}} and {{kind}} / INC-1 {opened} {{nope}} {{"
        );
    }

    fn sample_event() -> OutboxEvent {
        OutboxEvent {
            version: 1,
            seq: 1,
            event_id: "INC-1:0".into(),
            kind: "opened".into(),
            at: chrono::Utc::now(),
            actor: "triaged".into(),
            reason: Some("disk \"full\"".into()),
            from: None,
            to: None,
            incident: Some(serde_json::json!({
                "id": "INC-1", "tier": "L2", "severity": "major", "state": "open",
                "group_key": "alertname=\"DiskFull\""
            })),
            alert: None,
            runbook: None,
        }
    }

    #[test]
    fn unknown_placeholders_are_found_as_written() {
        assert!(unknown_placeholders(SLACK_TEMPLATE).is_empty());
        let every: String = PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{{{p}}}}} "))
            .collect();
        assert!(unknown_placeholders(&every).is_empty(), "{every}");
        assert_eq!(
            unknown_placeholders(
                r#"{"text": "{{kind}} {{incident.labels}} {{ kind }} {{{incident.id}}} {"a": {"b": 1}} {{open"}"#
            ),
            ["{{incident.labels}}", "{{ kind }}"]
        );
    }
}
