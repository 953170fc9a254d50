//! The NOC API: incidents and alerts as JSON, and the read side of Alertmanager's API v2
//! (firing alerts, status, silences) for amtool, Grafana and other Alertmanager clients. Reads go
//! straight to the store; operator actions (ack, resolve, escalate, assign) are commands for the
//! writer, answered once durable. Routing and error rendering are `sources::http`'s.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::{StatusCode, Uri};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert::{AlertRecord, Fingerprint, Labels};
use crate::incident::{Incident, IncidentId, State, Tier};
use crate::pipeline::classify::{Matcher, Target};
use crate::pipeline::{Action, Command, Outcome};
use crate::silence::{PostableSilence, SilenceId};
use crate::sources::http::{json_response, ApiError, App, Response};
use crate::store::{IncidentFilter, StoreError};

/// Page size of the incident list when none is asked for, and the most one page may hold.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn store_error(e: StoreError) -> ApiError {
    let mut err =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable").detail(e.to_string());
    err.retry_after = Some(5);
    err
}

/// `key=value` pairs of a query string (values are not percent-decoded: most of ours need not
/// be; label values are, with [`percent_decode`]).
fn query_pairs(uri: &Uri) -> impl Iterator<Item = (&str, &str)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!("limit must be a number from 1 to {MAX_LIMIT}"))
        })
}

/// The incident as the API shows it in lists: without its timeline.
fn summary_json(incident: &Incident) -> Value {
    let mut v = serde_json::to_value(incident).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("timeline");
    }
    v
}

/// `GET /api/v1/incidents?state=&tier=&team=&service=&limit=&cursor=`: newest first, cursor
/// paging. `state` is `open`, `acknowledged`, `resolved` or `active` (open and acknowledged);
/// `team` and `service` match the incident's labels of those names (empty: incidents without
/// the label, as a matcher reads a missing label).
pub fn list_incidents(app: &Arc<App>, uri: &Uri) -> Result<Response, ApiError> {
    let mut filter = IncidentFilter::default();
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (key, value) in query_pairs(uri) {
        match key {
            // `active`: open and acknowledged together, in one consistent page. Given twice,
            // the last counts, as for the other parameters.
            "state" if value == "active" => (filter.active, filter.state) = (true, None),
            "state" => {
                filter.state = Some(value.parse::<State>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "unknown state {value:?}: expected open, acknowledged, resolved or active"
                    ))
                })?);
                filter.active = false;
            }
            "tier" => filter.tier = Some(value.parse::<Tier>().map_err(ApiError::bad_request)?),
            "team" | "service" => {
                let name = if key == "team" { "team" } else { "service" };
                let value = percent_decode(value)
                    .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
                // Given twice, the last counts, as for the other parameters.
                filter.labels.retain(|(n, _)| *n != name);
                filter.labels.push((name, value));
            }
            "limit" => limit = parse_limit(value)?,
            "cursor" => cursor = Some(value.parse::<IncidentId>().map_err(ApiError::bad_request)?),
            other => {
                return Err(ApiError::bad_request(format!(
                "unknown parameter {other:?}: expected state, tier, team, service, limit or cursor"
            )))
            }
        }
    }
    let (page, next) = app
        .store
        .list_incidents(&filter, cursor, limit)
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "incidents": page.iter().map(summary_json).collect::<Vec<_>>(),
            "next_cursor": next,
        }),
    ))
}

/// `GET /api/v1/incidents/{id}`: the incident with its members and timeline.
pub fn get_incident(app: &Arc<App>, id: &str) -> Result<Response, ApiError> {
    let id: IncidentId = id.parse().map_err(ApiError::not_found)?;
    let incident = app
        .store
        .incident(id)
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let mut members = Vec::new();
    for fp in app.store.members(id).map_err(store_error)? {
        if let Some(record) = app.store.alert(fp).map_err(store_error)? {
            members.push(record);
        }
    }
    let mut v = serde_json::to_value(&incident).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert(
            "members".into(),
            serde_json::to_value(members).unwrap_or(Value::Null),
        );
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// `GET /api/v1/alerts/{fingerprint}`: what triaged knows of one alert.
pub fn get_alert(app: &Arc<App>, fp: &str) -> Result<Response, ApiError> {
    let fp: Fingerprint = fp.parse().map_err(ApiError::not_found)?;
    let record = app
        .store
        .alert(fp)
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {fp}")))?;
    Ok(json_response(StatusCode::OK, &record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    actor: Option<String>,
    reason: Option<String>,
    /// The resolution note; `reason` is taken when `note` is absent.
    note: Option<String>,
    to: Option<String>,
    assignee: Option<String>,
    vendor: Option<String>,
    vendor_ref: Option<String>,
}

/// `POST /api/v1/incidents/{id}/{ack|resolve|escalate|assign}`.
pub async fn act(
    app: &Arc<App>,
    id: &str,
    action: &str,
    body: &[u8],
    principal: Option<&str>,
) -> Result<Response, ApiError> {
    let id: IncidentId = id.parse().map_err(ApiError::not_found)?;
    let body = if body.is_empty() { b"{}" } else { body };
    let body: ActionBody =
        crate::sources::formats::from_object(body, "a JSON object").map_err(|e| {
            let what = crate::sources::formats::json_problem(&e);
            ApiError::bad_request(format!("{what}: {e}"))
        })?;
    // With authentication, the token's name stands in for an actor the body does not give.
    let actor = body
        .actor
        .filter(|a| !a.trim().is_empty())
        .or_else(|| principal.map(str::to_string))
        .ok_or_else(|| ApiError::bad_request("`actor` is required: who does this"))?;
    let to = body
        .to
        .map(|t| t.parse::<Tier>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let reason_required = |reason: Option<String>, what: &str| {
        reason
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("`reason` is required: why {what}")))
    };
    let action = match action {
        "ack" | "acknowledge" => Action::Acknowledge {
            actor,
            reason: body.reason,
        },
        "resolve" => Action::Resolve {
            actor,
            reason: body.note.or(body.reason),
        },
        "escalate" => Action::Escalate {
            actor,
            reason: Some(reason_required(body.reason, "escalate")?),
            to,
            vendor: body.vendor,
            vendor_ref: body.vendor_ref,
        },
        "deescalate" => Action::Deescalate {
            actor,
            reason: Some(reason_required(body.reason, "de-escalate")?),
            to,
        },
        "assign" => Action::Assign {
            actor,
            assignee: body
                .assignee
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("`assignee` is required"))?,
        },
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other:?}: expected ack, resolve, escalate, deescalate or assign"
            )))
        }
    };
    let outcome = app
        .queue
        .submit(|reply| Command::Incident { id, action, reply })
        .await??;
    match outcome {
        Outcome::Incident(incident) => Ok(json_response(StatusCode::OK, &*incident)),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected outcome of an incident command",
        )),
    }
}

/// `GET /api/v1/summary`: the NOC board's summary strip (see `summary`).
pub fn summary(app: &Arc<App>) -> Result<Response, ApiError> {
    let summary = crate::summary::compute(&app.store, chrono::Utc::now()).map_err(store_error)?;
    Ok(json_response(StatusCode::OK, &summary))
}

/// `GET /api/v2/silences?filter=...`: the silences, in Alertmanager's form; with `filter`s,
/// those listed by every one of them as Alertmanager lists them ([`Silence::listed_by`]: the
/// silence has a matcher of the same label, operator and value), so that `amtool silence
/// query MATCHER` lists only those. A malformed filter is a 400, as for alerts.
///
/// [`Silence::listed_by`]: crate::silence::Silence::listed_by
pub fn list_silences(app: &Arc<App>, uri: &Uri) -> Result<Response, ApiError> {
    let filter = silence_filter(uri.query().unwrap_or("")).map_err(ApiError::bad_request)?;
    let now = chrono::Utc::now();
    let mut silences = app.store.silences().map_err(store_error)?;
    silences.retain(|s| s.listed_by(&filter));
    silences.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
    let shown: Vec<_> = silences.iter().map(|s| s.gettable(now)).collect();
    Ok(json_response(StatusCode::OK, &shown))
}

fn silence_id(id: &str) -> Result<SilenceId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no silence {id:?}: not a silence id")))
}

/// `GET /api/v2/silence/{id}`.
pub fn get_silence(app: &Arc<App>, id: &str) -> Result<Response, ApiError> {
    let id = silence_id(id)?;
    let silence = app
        .store
        .silence(id)
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no silence {id}")))?;
    Ok(json_response(
        StatusCode::OK,
        &silence.gettable(chrono::Utc::now()),
    ))
}

/// `POST /api/v2/silences`: create (or, with an `id`, replace) a silence; answers
/// `{"silenceID": "..."}`, which amtool prints.
pub async fn post_silence(app: &Arc<App>, body: &[u8]) -> Result<Response, ApiError> {
    let silence = PostableSilence::from_json(body).map_err(|e| {
        let what = crate::sources::formats::json_problem(&e);
        ApiError::bad_request(format!("{what}: {e}"))
    })?;
    match app
        .queue
        .submit(|reply| Command::PutSilence { silence, reply })
        .await??
    {
        Outcome::Silence(id) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "silenceID": id }),
        )),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected outcome of a silence command",
        )),
    }
}

/// `DELETE /api/v2/silence/{id}`: expire it now.
pub async fn expire_silence(app: &Arc<App>, id: &str) -> Result<Response, ApiError> {
    let id = silence_id(id)?;
    app.queue
        .submit(|reply| Command::ExpireSilence { id, reply })
        .await??;
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

/// `GET /api/v1/rules`: the rules in force, in order, with how often each matched, so that dead
/// rules show.
pub fn list_rules(app: &Arc<App>) -> Result<Response, ApiError> {
    let config = app.reloader.current();
    let rules: Vec<Value> = config
        .rules
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "matchers": r.matchers,
                "action": r.action.map(|_| "drop"),
                "set_labels": r.set_labels,
                "severity": r.severity,
                "tier": r.tier,
                "runbook": r.runbook,
                "group_by": r.group_by,
                "continue": r.continue_,
                "matches": app.metrics.rule_matches.with_label_values(&[&r.name]).get(),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "rules": rules }),
    ))
}

/// `GET /api/v1/dead-letters?limit=N`: messages a source could not read, newest first.
pub fn list_dead_letters(app: &Arc<App>, uri: &Uri) -> Result<Response, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query_pairs(uri) {
        match key {
            "limit" => limit = parse_limit(value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: expected limit"
                )))
            }
        }
    }
    let letters = app.store.dead_letters(limit).map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "dead_letters": letters }),
    ))
}

/// The one receiver triaged is, to Alertmanager clients: every alert is "routed" to it.
pub const RECEIVER: &str = "triaged";

/// What `GET /api/v2/status` shows as the configuration: an Alertmanager configuration that
/// says what triaged is to its clients, one receiver taking every alert. `amtool config show`
/// prints it and `amtool config routes` draws it; triaged's own configuration is TOML.
const STATUS_CONFIG: &str =
    "# triaged answers as an Alertmanager with one receiver that takes every alert;\n\
# its own configuration is TOML: see `triaged check-config`.\n\
route:\n  receiver: triaged\nreceivers:\n  - name: triaged\n";

/// Alertmanager writes "no end" as Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00.000Z";

/// Decode `%XX` escapes and `+` (a space, in a query string, as Go's clients encode it).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("{text:?} has a bad %-escape at byte {i}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

/// The `key=value` pairs of a raw query string, both percent-decoded.
fn decoded_pairs(query: &str) -> impl Iterator<Item = Result<(String, String), String>> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        Ok((percent_decode(key)?, percent_decode(value)?))
    })
}

/// One `filter` parameter: one matcher in Alertmanager's syntax.
fn filter_matcher(value: &str) -> Result<Matcher, String> {
    Matcher::parse(value).map_err(|e| {
        format!("filter: {e} (one matcher per filter parameter, e.g. alertname=\"X\")")
    })
}

/// The `filter` parameters of `GET /api/v2/silences` (other parameters are ignored, as
/// Alertmanager ignores them). A matcher on `@source` or `@annotation.NAME` is refused: a
/// silence has label matchers only.
pub fn silence_filter(query: &str) -> Result<Vec<Matcher>, String> {
    let mut filter = Vec::new();
    for pair in decoded_pairs(query) {
        let (key, value) = pair?;
        if key == "filter" {
            let matcher = filter_matcher(&value)?;
            if !matches!(matcher.target, Target::Label(_)) {
                return Err(format!(
                    "filter {value:?}: a silence filter names a label (silences match labels only)"
                ));
            }
            filter.push(matcher);
        }
    }
    Ok(filter)
}

/// The parameters of `GET /api/v2/alerts`, read as Alertmanager reads them: `active`,
/// `silenced`, `inhibited` and `unprocessed` (booleans, default true) say which states to show;
/// `filter` (repeatable) is one matcher each, all of which must match; `receiver` is an
/// anchored regex on the receiver's name, which is always [`RECEIVER`].
#[derive(Debug)]
pub struct AlertQuery {
    pub active: bool,
    pub silenced: bool,
    pub inhibited: bool,
    pub unprocessed: bool,
    pub filter: Vec<Matcher>,
    pub receiver: Option<Regex>,
}

impl Default for AlertQuery {
    fn default() -> Self {
        AlertQuery {
            active: true,
            silenced: true,
            inhibited: true,
            unprocessed: true,
            filter: Vec::new(),
            receiver: None,
        }
    }
}

impl AlertQuery {
    /// Parse a raw (percent-encoded) query string.
    pub fn parse(query: &str) -> Result<AlertQuery, String> {
        let mut q = AlertQuery::default();
        for pair in decoded_pairs(query) {
            let (key, value) = pair?;
            let flag = |value: &str| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("{key} must be true or false, not {other:?}")),
            };
            match key.as_str() {
                "active" => q.active = flag(&value)?,
                "silenced" => q.silenced = flag(&value)?,
                "inhibited" => q.inhibited = flag(&value)?,
                "unprocessed" => q.unprocessed = flag(&value)?,
                "filter" => q.filter.push(filter_matcher(&value)?),
                // Go's clients leave an empty receiver out; an empty one selects nothing else.
                "receiver" if value.is_empty() => {}
                "receiver" => {
                    q.receiver = Some(
                        Regex::new(&format!("^(?:{value})$"))
                            .map_err(|e| format!("receiver {value:?} is not a valid regex: {e}"))?,
                    )
                }
                // As Alertmanager does: other parameters (a client's cache-busters, newer
                // clients' additions) are ignored rather than refused.
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether a stored alert is listed: firing (and not past its expiry, which the writer is
    /// about to turn into a resolution), in a state asked for, matching every filter.
    pub fn shows(&self, record: &AlertRecord, now: DateTime<Utc>) -> bool {
        use crate::alert::Status;
        if record.status != Status::Firing || record.expires_at.is_some_and(|at| at <= now) {
            return false;
        }
        // triaged has no inhibition and processes every alert before it is stored: an alert is
        // suppressed (held back by a silence) or active.
        let state_shown = if record.silenced_by.is_some() {
            self.silenced
        } else {
            self.active
        };
        state_shown
            && self.receiver.as_ref().is_none_or(|r| r.is_match(RECEIVER))
            && self.filter.iter().all(|m| m.matches_record(record))
    }
}

fn am_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
struct NamedReceiver {
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertStatus {
    state: &'static str,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
}

/// An alert in Alertmanager API v2's `gettableAlert` shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert<'a> {
    labels: &'a Labels,
    annotations: &'a Labels,
    starts_at: String,
    /// The expiry (an `endsAt` given, or `dedup.resolve_timeout` after the last refresh); none,
    /// for alerts whose sender reports the resolution itself: the zero time.
    ends_at: String,
    updated_at: String,
    fingerprint: Fingerprint,
    receivers: [NamedReceiver; 1],
    status: AlertStatus,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
}

impl<'a> GettableAlert<'a> {
    fn of(record: &'a AlertRecord) -> GettableAlert<'a> {
        let silenced_by: Vec<String> = record.silenced_by.iter().map(|id| id.to_string()).collect();
        GettableAlert {
            labels: &record.labels,
            annotations: &record.annotations,
            starts_at: am_time(record.starts_at),
            ends_at: record
                .expires_at
                .or(record.ends_at)
                .map_or_else(|| ZERO_TIME.to_string(), am_time),
            updated_at: am_time(record.last_seen),
            fingerprint: record.fingerprint,
            receivers: [NamedReceiver { name: RECEIVER }],
            status: AlertStatus {
                state: if silenced_by.is_empty() {
                    "active"
                } else {
                    "suppressed"
                },
                silenced_by,
                inhibited_by: Vec::new(),
            },
            generator_url: record.generator_url.as_deref().unwrap_or(""),
        }
    }
}

/// `GET /api/v2/alerts`: the firing alerts, in Alertmanager's form (`amtool alert query`,
/// Grafana's Alertmanager data source). Read through the index of firing alerts; resolved
/// history is not walked.
pub fn list_alerts(app: &Arc<App>, uri: &Uri) -> Result<Response, ApiError> {
    let query = AlertQuery::parse(uri.query().unwrap_or("")).map_err(ApiError::bad_request)?;
    let now = Utc::now();
    let records = app.store.firing_alerts().map_err(store_error)?;
    let shown: Vec<GettableAlert<'_>> = records
        .iter()
        .filter(|r| query.shows(r, now))
        .map(GettableAlert::of)
        .collect();
    Ok(json_response(StatusCode::OK, &shown))
}

/// `GET /api/v2/status`: enough of Alertmanager's status for its clients (`amtool`, Grafana):
/// a cluster of one, the version, the configuration as clients should see it, and uptime.
pub fn status(app: &Arc<App>) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "cluster": { "name": RECEIVER, "status": "ready", "peers": [] },
            "versionInfo": {
                "version": env!("CARGO_PKG_VERSION"),
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": "",
            },
            "config": { "original": STATUS_CONFIG },
            "uptime": am_time(app.started_at),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{labels_from, Status};

    fn record(labels: &[(&str, &str)]) -> AlertRecord {
        AlertRecord {
            annotations: labels_from(&[("summary", "disk almost full")]),
            ..AlertRecord::sample(
                Fingerprint::of(&labels_from(labels), &[]),
                Status::Firing,
                labels_from(labels),
            )
        }
    }

    fn shown(query: &str, record: &AlertRecord) -> bool {
        AlertQuery::parse(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .shows(record, Utc::now())
    }

    #[test]
    fn the_query_amtool_sends_is_read() {
        // Captured from `amtool alert query 'alertname=~"Disk.*"' severity=critical` (0.25).
        let q = AlertQuery::parse(
            "active=true&filter=alertname%3D~%22Disk.%2A%22&filter=severity%3Dcritical\
             &inhibited=false&silenced=false&unprocessed=false",
        )
        .unwrap();
        assert!(q.active && !q.silenced && !q.inhibited && !q.unprocessed);
        assert_eq!(q.filter.len(), 2);
        assert_eq!(q.filter[0].value, "Disk.*");
        assert_eq!(q.filter[1].value, "critical");
        let disk = record(&[("alertname", "DiskFull"), ("severity", "critical")]);
        assert!(q.shows(&disk, Utc::now()));
        let warn = record(&[("alertname", "DiskFull"), ("severity", "warning")]);
        assert!(!q.shows(&warn, Utc::now()));
        let other = record(&[("alertname", "NotDisk"), ("severity", "critical")]);
        assert!(!q.shows(&other, Utc::now()));
    }

    #[test]
    fn every_operator_and_plus_as_space_decode() {
        let r = record(&[("alertname", "Disk Full"), ("env", "prod")]);
        assert!(shown("filter=alertname%3D%22Disk+Full%22", &r));
        assert!(shown("filter=env!%3D%22dev%22", &r));
        assert!(shown("filter=env%21~%22d.%2A%22", &r));
        assert!(
            !shown("filter=env%3D~%22pro%22", &r),
            "regexes are anchored"
        );
        assert!(
            shown("filter=missing%3D%22%22", &r),
            "a missing label reads as empty"
        );
        assert!(shown(
            "filter=%40annotation.summary%3D~%22.%2Adisk.%2A%22",
            &r
        ));
        assert!(shown("filter=%40source%3Dalertmanager", &r));
    }

    #[test]
    fn states_are_shown_as_alertmanager_shows_them() {
        let active = record(&[("alertname", "A")]);
        let mut silenced = record(&[("alertname", "B")]);
        silenced.silenced_by = Some(uuid::Uuid::from_u128(1));
        // By default, every firing alert.
        assert!(shown("", &active) && shown("", &silenced));
        // amtool's default: active only; `-s`: silenced only.
        let amtool_default = "active=true&silenced=false&inhibited=false&unprocessed=false";
        assert!(shown(amtool_default, &active) && !shown(amtool_default, &silenced));
        let amtool_s = "active=false&silenced=true&inhibited=false&unprocessed=false";
        assert!(!shown(amtool_s, &active) && shown(amtool_s, &silenced));
        let json = serde_json::to_value(GettableAlert::of(&silenced)).unwrap();
        assert_eq!(json["status"]["state"], "suppressed");
        assert_eq!(
            json["status"]["silencedBy"][0],
            "00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(json["status"]["inhibitedBy"], serde_json::json!([]));
        assert_eq!(json["receivers"], serde_json::json!([{"name": "triaged"}]));
        assert_eq!(json["endsAt"], ZERO_TIME);
        assert_eq!(json["generatorURL"], "");
        assert_eq!(json["fingerprint"], silenced.fingerprint.to_string());
    }

    #[test]
    fn resolved_and_expired_alerts_are_not_listed() {
        let mut r = record(&[("alertname", "A")]);
        r.status = Status::Resolved;
        assert!(!shown("", &r));
        let mut r = record(&[("alertname", "A")]);
        r.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        assert!(!shown("", &r), "past its expiry: about to resolve");
        r.expires_at = Some(Utc::now() + chrono::Duration::seconds(60));
        assert!(shown("", &r));
    }

    #[test]
    fn the_receiver_is_an_anchored_regex_on_triaged() {
        let r = record(&[("alertname", "A")]);
        assert!(shown("receiver=triaged", &r));
        assert!(shown("receiver=tri.%2A", &r));
        assert!(!shown("receiver=tri", &r));
        assert!(!shown("receiver=team-x", &r));
        assert!(shown("receiver=", &r), "empty: not given");
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        for (query, says) in [
            ("active=yes", "active must be true or false"),
            ("filter=alertname", "no operator"),
            ("filter=alertname%3D~%22(%22", "invalid regex"),
            ("receiver=(", "not a valid regex"),
            ("filter=%ZZ", "bad %-escape"),
            ("filter=%FF", "UTF-8"),
        ] {
            let err = AlertQuery::parse(query).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
        for (query, says) in [
            ("filter=bogus", "no operator"),
            ("filter=alertname%3D~%22(%22", "invalid regex"),
            ("filter=%40source%3Dalertmanager", "names a label"),
            ("filter=%ZZ", "bad %-escape"),
        ] {
            let err = silence_filter(query).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
        let filter = silence_filter("filter=alertname%3D%22X%22&silenced=false").unwrap();
        assert_eq!(filter.len(), 1);
        assert_eq!(filter[0].value, "X");
        let ignored = AlertQuery::parse("limit=3&_=1700000000").unwrap();
        assert!(ignored.active && ignored.silenced && ignored.filter.is_empty());
    }
}
