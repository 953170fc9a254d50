//! The NOC API: incidents and alerts as JSON. Reads go straight to the store; operator actions
//! (ack, resolve, escalate, assign) are commands for the writer, answered once durable.
//! Routing and error rendering are `sources::http`'s.

use std::sync::Arc;

use hyper::{StatusCode, Uri};
use serde::Deserialize;
use serde_json::Value;

use crate::alert::Fingerprint;
use crate::incident::{Incident, IncidentId, State, Tier};
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

/// `key=value` pairs of a query string (values are not percent-decoded: ours need not be).
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

/// `GET /api/v1/incidents?state=&tier=&limit=&cursor=`: newest first, cursor paging.
pub fn list_incidents(app: &Arc<App>, uri: &Uri) -> Result<Response, ApiError> {
    let mut filter = IncidentFilter::default();
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (key, value) in query_pairs(uri) {
        match key {
            "state" => filter.state = Some(value.parse::<State>().map_err(ApiError::bad_request)?),
            "tier" => filter.tier = Some(value.parse::<Tier>().map_err(ApiError::bad_request)?),
            "limit" => limit = parse_limit(value)?,
            "cursor" => cursor = Some(value.parse::<IncidentId>().map_err(ApiError::bad_request)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: expected state, tier, limit or cursor"
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
) -> Result<Response, ApiError> {
    let id: IncidentId = id.parse().map_err(ApiError::not_found)?;
    let body: ActionBody = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let actor = body
        .actor
        .filter(|a| !a.trim().is_empty())
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

/// `GET /api/v2/silences`: every silence, in Alertmanager's form.
pub fn list_silences(app: &Arc<App>) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let mut silences = app.store.silences().map_err(store_error)?;
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
    let silence: PostableSilence = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed silence: {e}")))?;
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
