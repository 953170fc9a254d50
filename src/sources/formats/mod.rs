//! Wire formats: turning a request body into [`Alert`](crate::alert::Alert)s.
//!
//! This module owns the parsing of every body format triaged accepts, one submodule each:
//! [`alertmanager`] (Alertmanager API v2 postable alerts, sent by Prometheus and amtool),
//! [`webhook`] (Alertmanager's webhook receiver payload), [`pagerduty`] (PagerDuty Events API v2)
//! and [`native`] (triaged's own JSON form). It also owns what they share: [`ParseError`], the
//! text a client sees in a 400, and [`clean_labels`], the label rules every format applies.
//!
//! Parsers do no I/O and no normalization: fingerprints (except PagerDuty's dedup-key identity),
//! severities read from labels and expiry are decided later by `Alert::normalize`.

pub mod alertmanager;
pub mod native;
pub mod pagerduty;
pub mod webhook;

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::alert::{check_readable, given_time, Alert, Labels, Source, Status};

/// Why a body could not be read as alerts. Display text is shown to the client in the
/// `error`/`detail` of a 400.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape (the text says which): serde_json's message carries
    /// line and column. `alert` is the alert (0-based position in its array) that is of the
    /// wrong shape, when the shape went wrong inside one.
    #[error("{}: {}", json_problem(.error), self.detail())]
    Json {
        alert: Option<usize>,
        error: serde_json::Error,
    },
    /// Well-formed JSON that breaks a rule of the format (empty labels, unknown event_action ...).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What is wrong: `"alert 3"` (0-based position in the body), `"event"`, `"payload"`.
        what: String,
        /// Human text: why it is wrong.
        why: String,
    },
}

/// serde_json's message without the ` at line L column C` it ends with, for a caller that
/// tells the place itself (in other terms: a line of a file, not of the body).
pub fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&place) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// What a JSON error is, for people: `"malformed JSON"` (not JSON: a syntax error or a body cut
/// short) or `"JSON of the wrong shape"` (well-formed, but not what the format reads).
pub fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Data => "JSON of the wrong shape",
        _ => "malformed JSON",
    }
}

impl From<serde_json::Error> for ParseError {
    fn from(error: serde_json::Error) -> ParseError {
        ParseError::Json { alert: None, error }
    }
}

impl ParseError {
    /// A bounded value for a metric label: `"malformed_json"` or `"invalid_alert"`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json { .. } => "malformed_json",
            ParseError::Invalid { .. } => "invalid_alert",
        }
    }

    /// What the client is told went wrong, without the kind of error (the `detail` of a 400
    /// whose `error` is the kind): `alert 1: missing field `labels` at line 1 column 49`.
    pub fn detail(&self) -> String {
        match self {
            ParseError::Json {
                alert: Some(index),
                error,
            } => format!("alert {index}: {error}"),
            ParseError::Json { alert: None, error } => error.to_string(),
            ParseError::Invalid { what, why } => format!("{what}: {why}"),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    /// An [`Invalid`](ParseError::Invalid) naming the alert at `index` (0-based) in the body.
    pub(crate) fn alert(index: usize, why: impl Into<String>) -> ParseError {
        ParseError::invalid(format!("alert {index}"), why)
    }
}

/// A wire format, as a config or a tool names it (`"auto"` is [`detect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Alertmanager,
    Webhook,
    Pagerduty,
    Native,
}

impl Format {
    pub fn source(self) -> Source {
        match self {
            Format::Alertmanager => Source::Alertmanager,
            Format::Webhook => Source::Webhook,
            Format::Pagerduty => Source::Pagerduty,
            Format::Native => Source::Native,
        }
    }
}

/// A body read in some format: alerts, or a PagerDuty event (which may be an acknowledgement
/// rather than an alert).
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Alerts(Source, Vec<Alert>),
    PagerDuty(pagerduty::PagerDutyEvent),
}

impl Parsed {
    /// The alerts it carries (a PagerDuty acknowledgement carries none).
    pub fn into_alerts(self) -> (Source, Vec<Alert>) {
        match self {
            Parsed::Alerts(source, alerts) => (source, alerts),
            Parsed::PagerDuty(event) => match event.action {
                pagerduty::Action::Acknowledge => (Source::Pagerduty, Vec::new()),
                pagerduty::Action::Trigger | pagerduty::Action::Resolve => {
                    (Source::Pagerduty, vec![event.alert])
                }
            },
        }
    }
}

/// Tell a body's format by its shape: a PagerDuty event has `event_action`; an Alertmanager
/// webhook payload has `alerts` with `version`/`receiver`/`groupKey`; an object with `alerts`, a
/// single alert object, or an array with snake_case alert fields (`status`, `starts_at` ...) is
/// triaged's own; any other array of alerts is Alertmanager API v2.
///
/// Only the keys are read (of the object, or of each object in the array); values are skipped,
/// not built, so telling the format costs a fraction of reading the body again in it.
pub fn detect(body: &[u8]) -> Result<Format, ParseError> {
    Shape::of(body)?.format()
}

/// What [`detect`] reads of a body: whether it is an object or an array, and which of the keys
/// it looks for appear (at the top of an object, or in any object of an array).
#[derive(Debug, Default)]
struct Shape {
    kind: ShapeKind,
    keys: Keys,
}

#[derive(Debug, Default, PartialEq)]
enum ShapeKind {
    Object,
    Array,
    /// A string, number, boolean or null.
    #[default]
    Scalar,
}

/// A set of the keys [`detect`] looks for.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Keys(u16);

impl Keys {
    /// snake_case alert fields only triaged's own form has.
    const NATIVE_FIELDS: Keys = Keys(1);
    const PAGERDUTY: Keys = Keys(1 << 1);
    const ALERTS: Keys = Keys(1 << 2);
    const WEBHOOK: Keys = Keys(1 << 3);
    const LABELS: Keys = Keys(1 << 4);

    fn of(key: &str) -> Keys {
        match key {
            "status" | "starts_at" | "ends_at" | "severity" | "generator_url" => {
                Keys::NATIVE_FIELDS
            }
            "event_action" | "routing_key" => Keys::PAGERDUTY,
            "alerts" => Keys::ALERTS,
            "version" | "receiver" | "groupKey" | "groupLabels" => Keys::WEBHOOK,
            "labels" => Keys::LABELS,
            _ => Keys(0),
        }
    }
}

impl std::ops::BitOr for Keys {
    type Output = Keys;
    fn bitor(self, other: Keys) -> Keys {
        Keys(self.0 | other.0)
    }
}

impl Shape {
    fn of(body: &[u8]) -> Result<Shape, ParseError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let shape = de.deserialize_any(ShapeVisitor { top: true })?;
        de.end()?;
        Ok(shape)
    }

    /// Whether any of `keys` appears.
    fn has(&self, keys: Keys) -> bool {
        self.keys.0 & keys.0 != 0
    }

    /// The format this shape tells (see [`detect`]).
    fn format(&self) -> Result<Format, ParseError> {
        let format = match self.kind {
            ShapeKind::Array if self.has(Keys::NATIVE_FIELDS) => Format::Native,
            ShapeKind::Array => Format::Alertmanager,
            ShapeKind::Object if self.has(Keys::PAGERDUTY) => Format::Pagerduty,
            ShapeKind::Object if self.has(Keys::ALERTS) && self.has(Keys::WEBHOOK) => {
                Format::Webhook
            }
            ShapeKind::Object if self.has(Keys::ALERTS | Keys::LABELS) => Format::Native,
            _ => {
                return Err(ParseError::invalid(
                    "body",
                    "cannot tell its format: expected an array of alerts, an object with `alerts`, an alert with `labels`, or a PagerDuty event",
                ))
            }
        };
        Ok(format)
    }

    /// One native alert object (a line of NDJSON), not a list of them or a wrapper.
    fn is_one_alert(&self) -> bool {
        self.kind == ShapeKind::Object && self.has(Keys::LABELS) && !self.has(Keys::ALERTS)
    }
}

/// Reads a value's shape. At the top, an array's shape is the union of its objects' keys;
/// below it, only objects' keys count and anything else is skipped.
struct ShapeVisitor {
    top: bool,
}

impl ShapeVisitor {
    fn scalar<E>(self) -> Result<Shape, E> {
        Ok(Shape::default())
    }
}

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<KeyName>()? {
            keys = keys | key.0;
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(Shape {
            kind: ShapeKind::Object,
            keys,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut keys = Keys::default();
        if self.top {
            while let Some(item) = seq.next_element_seed(ShapeVisitor { top: false })? {
                keys = keys | item.keys;
            }
        } else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        }
        Ok(Shape {
            kind: ShapeKind::Array,
            keys,
        })
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        self.scalar()
    }
}

impl<'de> DeserializeSeed<'de> for ShapeVisitor {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object key, read as the [`Keys`] it names without copying it (escaped keys, which
/// serde_json must unescape first, are read all the same).
struct KeyName(Keys);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyName, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, key: &str) -> Result<KeyName, E> {
                Ok(KeyName(Keys::of(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Read `body` in `format` (`None`: [`detect`] it). A single native alert object (one line of
/// NDJSON) is read as a list of one.
pub fn parse(
    format: Option<Format>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Parsed, ParseError> {
    // Told from the shape, the shape also says whether a native body is one alert.
    let (format, shape) = match format {
        Some(f) => (f, None),
        None => {
            let shape = Shape::of(body)?;
            (shape.format()?, Some(shape))
        }
    };
    Ok(match format {
        Format::Alertmanager => Parsed::Alerts(Source::Alertmanager, alertmanager::parse(body)?),
        Format::Webhook => Parsed::Alerts(Source::Webhook, webhook::parse(body)?),
        Format::Pagerduty => Parsed::PagerDuty(pagerduty::parse(body, now)?),
        Format::Native => {
            let trimmed = body.trim_ascii_start();
            let single = match shape {
                Some(shape) => shape.is_one_alert(),
                None => {
                    trimmed.first() == Some(&b'{')
                        && Shape::of(trimmed).is_ok_and(|shape| shape.is_one_alert())
                }
            };
            if single {
                Parsed::Alerts(Source::Native, native::parse_one(body)?)
            } else {
                Parsed::Alerts(Source::Native, native::parse(body)?)
            }
        }
    })
}

/// The label rules every format applies, as Alertmanager applies them: labels with an empty value
/// are dropped (an empty value means "no such label"), an empty label name is rejected, and so is
/// a set left empty. `index` is the alert's 0-based position in the body, for the error text.
pub(crate) fn clean_labels(mut labels: Labels, index: usize) -> Result<Labels, ParseError> {
    if labels.contains_key("") {
        return Err(ParseError::alert(index, "label names must not be empty"));
    }
    labels.retain(|_, value| !value.is_empty());
    if labels.is_empty() {
        return Err(ParseError::alert(index, "labels must not be empty"));
    }
    Ok(labels)
}

/// A time of alert `index` as read from the wire: refused if Alertmanager's clients could not
/// read it back ([`check_readable`]), then "not given" for the zero time ([`given_time`]).
pub(crate) fn wire_time(
    t: Option<DateTime<Utc>>,
    field: &str,
    index: usize,
) -> Result<Option<DateTime<Utc>>, ParseError> {
    if let Some(t) = t {
        check_readable(field, t).map_err(|why| ParseError::alert(index, why))?;
    }
    Ok(given_time(t))
}

/// An alert's start and end, each if given.
pub(crate) type StartEnd = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The start and end of alert `index` as read from the wire ([`wire_time`], named `names`),
/// refused when both are given and it ends before it starts, as Alertmanager refuses it ("end
/// time must not be before start time"): such an alert would be stored resolved before it began.
pub(crate) fn wire_times(
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    names: [&str; 2],
    index: usize,
) -> Result<StartEnd, ParseError> {
    let starts = wire_time(starts_at, names[0], index)?;
    let ends = wire_time(ends_at, names[1], index)?;
    if let (Some(s), Some(e)) = (starts, ends) {
        if e < s {
            let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            return Err(ParseError::alert(
                index,
                format!(
                    "{} {} is before {} {}: an alert cannot end before it starts",
                    names[1],
                    at(e),
                    names[0],
                    at(s)
                ),
            ));
        }
    }
    Ok((starts, ends))
}

/// Refuse an alert that would expire before it starts: one without `endsAt` from a sender that
/// re-sends (Alertmanager API v2) expires `dedup.resolve_timeout` after it is received, so a
/// `startsAt` later than that would leave it resolved before it began. Alertmanager refuses it
/// alike ("start time must be before end time"). `resolve_timeout` is asked for only when an
/// alert starts in the future (reading the config costs a lock).
pub fn check_starts_before_expiry(
    alerts: &[Alert],
    now: DateTime<Utc>,
    resolve_timeout: impl FnOnce() -> std::time::Duration,
) -> Result<(), ParseError> {
    let mut future = alerts.iter().enumerate().filter(|(_, a)| {
        a.status == Status::Firing
            && a.ends_at.is_none()
            && a.expires_without_refresh
            && a.starts_at.is_some_and(|start| start > now)
    });
    let Some(first) = future.next() else {
        return Ok(());
    };
    let timeout = chrono::Duration::from_std(resolve_timeout()).unwrap_or(chrono::Duration::MAX);
    let Some(expires) = now.checked_add_signed(timeout) else {
        return Ok(());
    };
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    for (index, alert) in std::iter::once(first).chain(future) {
        let starts = alert.starts_at.unwrap_or(now);
        if starts > expires {
            return Err(ParseError::alert(
                index,
                format!(
                    "startsAt {} is after the alert would expire without an endsAt ({}, \
                     dedup.resolve_timeout after it was received): an alert cannot end before \
                     it starts",
                    at(starts),
                    at(expires)
                ),
            ));
        }
    }
    Ok(())
}

/// For `#[serde(deserialize_with)]` on an alert's labels: a JSON object of strings, a name
/// given twice refused naming it (a plain map keeps the last value, silently).
pub(crate) fn labels<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
    deserializer.deserialize_map(UniqueKeys::LABELS)
}

/// [`labels`], or `null` (Go's nil map) for none.
pub(crate) fn labels_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Labels, D::Error> {
    deserializer.deserialize_option(UniqueKeys::LABELS)
}

/// [`labels`], for annotations.
pub(crate) fn annotations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
    deserializer.deserialize_map(UniqueKeys::ANNOTATIONS)
}

/// [`labels_or_null`], for annotations.
pub(crate) fn annotations_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Labels, D::Error> {
    deserializer.deserialize_option(UniqueKeys::ANNOTATIONS)
}

/// Reads a JSON object into [`Labels`] as serde reads a map (a key, then its value, no copy),
/// refusing a key given twice: the lookup that inserts the value finds the first one, so the
/// check costs nothing beyond reading the map.
#[derive(Clone, Copy)]
struct UniqueKeys {
    /// What a key is called in the error: `label`, `annotation`.
    what: &'static str,
}

impl UniqueKeys {
    const LABELS: UniqueKeys = UniqueKeys { what: "label" };
    const ANNOTATIONS: UniqueKeys = UniqueKeys { what: "annotation" };
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Labels;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
        use std::collections::btree_map::Entry;
        let mut labels = Labels::new();
        while let Some(key) = map.next_key::<String>()? {
            match labels.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value()?);
                }
                Entry::Occupied(slot) => {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate {} `{}`",
                        self.what,
                        slot.key()
                    )))
                }
            }
        }
        Ok(labels)
    }

    /// `null`, read by [`labels_or_null`] and [`annotations_or_null`] only.
    fn visit_none<E>(self) -> Result<Labels, E> {
        Ok(Labels::new())
    }

    fn visit_unit<E>(self) -> Result<Labels, E> {
        Ok(Labels::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Labels, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// For `#[serde(deserialize_with)]`: reads JSON `null` as the type's default. Go encodes a nil map
/// or slice as `null`, so the foreign formats may carry `"annotations": null`.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// For `#[serde(deserialize_with)]` on `Option<DateTime<Utc>>` fields: RFC 3339 (chrono's relaxed
/// reading, which also takes `+0000` offsets), `null` as not given, and an error that quotes the
/// bad value (chrono's own says only "input contains invalid characters").
pub(crate) fn time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct TimeVisitor;

    impl<'de> Visitor<'de> for TimeVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 time, e.g. 2026-11-26T16:12:09Z, or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        // Borrowed straight from the body when it has no escapes: no allocation per time.
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            parse_time(text).map(Some).map_err(|err| {
                E::custom(format!(
                    "invalid time {text:?} ({err}): expected RFC 3339, e.g. 2026-11-26T16:12:09Z"
                ))
            })
        }
    }

    deserializer.deserialize_option(TimeVisitor)
}

/// RFC 3339 as chrono reads it (`DateTime<Utc>::from_str`, relaxed), with a fast path for the
/// form every sender uses, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`: chrono's general parser
/// was a sixth of the cost of reading an Alertmanager alert. Anything else goes to chrono.
fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_time_fast(text.as_bytes()) {
        Some(t) => Ok(t),
        None => text.parse::<DateTime<Utc>>(),
    }
}

fn parse_time_fast(b: &[u8]) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveTime};

    fn digits(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[0..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    let (hour, min, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&frac[..n])? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // A leap second (60) and anything out of range are left to chrono.
    if sec > 59 {
        return None;
    }
    let local = date.and_time(NaiveTime::from_hms_nano_opt(hour, min, sec, nanos)?);
    let utc = local.checked_sub_signed(chrono::Duration::seconds(i64::from(offset_secs)))?;
    Some(DateTime::from_naive_utc_and_offset(utc, Utc))
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_fast_path_reads_what_senders_send() {
        for (text, expected) in [
            ("2026-11-26T16:12:09Z", "2026-11-26T16:12:09Z"),
            ("2026-11-26T16:12:09.5Z", "2026-11-26T16:12:09.500Z"),
            (
                "2026-11-26T16:12:09.123456789Z",
                "2026-11-26T16:12:09.123456789Z",
            ),
            ("2026-11-26T16:12:09+02:00", "2026-11-26T14:12:09Z"),
            ("2026-11-26T00:12:09.25-01:30", "2026-11-26T01:42:09.250Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ] {
            let fast = parse_time_fast(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(fast, expected.parse::<DateTime<Utc>>().unwrap(), "{text}");
        }
        // Left to chrono: relaxed forms, leap seconds, nonsense.
        for text in [
            "2026-11-26 16:12:09Z",
            "2026-11-26t16:12:09z",
            "2026-11-26T16:12:09+0200",
            "2016-12-31T23:59:60Z",
            "2026-11-26T16:12:09.1234567890Z",
            "2026-02-30T16:12:09Z",
            "2026-11-26T16:12:09",
        ] {
            assert_eq!(parse_time_fast(text.as_bytes()), None, "{text}");
        }
    }

    fn agrees(text: &str) -> Result<(), TestCaseError> {
        let ours = parse_time(text).ok();
        let chrono = text.parse::<DateTime<Utc>>().ok();
        prop_assert_eq!(ours, chrono, "{:?}", text);
        Ok(())
    }

    proptest! {
        #[test]
        fn it_reads_exactly_what_chrono_reads(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            s in 0u32..62, frac in proptest::option::of("[0-9]{0,11}"),
            tz in prop_oneof!["Z", "z", "[+-][0-9]{2}:[0-9]{2}", "[+-][0-9]{4}", ""],
        ) {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            agrees(&format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{tz}"))?;
        }

        #[test]
        fn mutated_times_are_read_as_chrono_reads_them(
            pos in 0usize..30, byte in any::<u8>(),
        ) {
            let mut text = b"2026-11-26T16:12:09.123+05:30".to_vec();
            let pos = pos % text.len();
            text[pos] = byte;
            if let Ok(text) = std::str::from_utf8(&text) {
                agrees(text)?;
            }
        }
    }
}

thread_local! {
    /// The position of the alert an [`AlertArray`] failed to read, for [`read_alerts`] to name
    /// it: serde_json's errors cannot be rebuilt with more text and the same line and column.
    static FAILED_ALERT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Run `read`, which reads alerts through an [`AlertArray`]: JSON of the wrong shape inside one
/// alert (a missing or unknown field, a value of the wrong type) names that alert, keeping
/// serde_json's line and column. A syntax error is not the alert's: it is told by position only.
pub(crate) fn read_alerts<T>(
    read: impl FnOnce() -> Result<T, serde_json::Error>,
) -> Result<T, ParseError> {
    FAILED_ALERT.set(None);
    read().map_err(|error| {
        let alert = FAILED_ALERT
            .take()
            .filter(|_| error.classify() == serde_json::error::Category::Data);
        ParseError::Json { alert, error }
    })
}

/// A JSON array of alerts, each a JSON object. Unlike a plain `Vec`, whose error for any other
/// JSON value says "expected a sequence", this one says "expected a JSON array of alerts".
/// Read through [`read_alerts`], an error in one alert names it.
#[derive(Debug)]
pub(crate) struct AlertArray<T>(pub(crate) Vec<T>);

impl<T> Default for AlertArray<T> {
    fn default() -> Self {
        AlertArray(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for AlertArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ArrayVisitor<T> {
            type Value = AlertArray<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array of alerts")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut alerts = Vec::new();
                loop {
                    match seq.next_element_seed(Object::new("an alert object")) {
                        Ok(Some(alert)) => alerts.push(alert),
                        Ok(None) => return Ok(AlertArray(alerts)),
                        Err(e) => {
                            FAILED_ALERT.set(Some(alerts.len()));
                            return Err(e);
                        }
                    }
                }
            }
        }

        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

/// Parse `body` as exactly one JSON object of type `T`. serde's derived structs also accept a JSON
/// array (fields by position), which only confuses clients; this accepts an object only and
/// otherwise fails saying "expected {expecting}", with line and column.
pub(crate) fn from_object<'de, T: Deserialize<'de>>(
    body: &'de [u8],
    expecting: &'static str,
) -> Result<T, serde_json::Error> {
    fn read<'de, R: serde_json::de::Read<'de>, T: Deserialize<'de>>(
        mut deserializer: serde_json::Deserializer<R>,
        expecting: &'static str,
    ) -> Result<T, serde_json::Error> {
        let value = Object::new(expecting).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
    match std::str::from_utf8(body) {
        Ok(text) => read(serde_json::Deserializer::from_str(text), expecting),
        Err(_) => read(serde_json::Deserializer::from_slice(body), expecting),
    }
}

/// For `#[serde(deserialize_with)]` on a `Vec` of structs: a JSON array of JSON objects only
/// (serde's derived structs also take an array, fields by position, as in [`from_object`]).
pub(crate) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectsVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectsVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Object::new("a JSON object"))? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(ObjectsVisitor(PhantomData))
}

/// For `#[serde(default, deserialize_with)]` on an `Option` of a struct: a JSON object, or
/// `null` for none (not an array: see [`from_object`]).
pub(crate) fn object_or_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OptionVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object or null")
        }

        fn visit_none<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            Object::new("a JSON object").deserialize(d).map(Some)
        }
    }

    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// `serde_json::from_slice`, with the body's UTF-8 checked once: read from a byte slice,
/// serde_json checks every string it takes on its own (about 2,000 instructions of a one-alert
/// request); read from a `str`, none. A body that is not UTF-8 is read as bytes all the same,
/// so that serde_json's own error, with line and column, is what the client gets.
pub(crate) fn from_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Deserializes a `T` from a JSON object only (see [`from_object`]).
struct Object<T> {
    expecting: &'static str,
    target: PhantomData<T>,
}

impl<T> Object<T> {
    fn new(expecting: &'static str) -> Self {
        Object {
            expecting,
            target: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Object<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// Generator URLs, client URLs and the like: an empty string means not given.
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;
    use proptest::prelude::*;

    #[test]
    fn an_alert_that_ends_before_it_starts_is_refused_in_every_format_that_gives_both() {
        let bodies: [(&str, String); 3] = [
            (
                "alertmanager",
                r#"[{"labels":{"alertname":"A"},"startsAt":"2026-11-29T10:00:00Z","endsAt":"END"}]"#
                    .into(),
            ),
            (
                "native",
                r#"[{"labels":{"alertname":"A"},"starts_at":"2026-11-29T10:00:00Z","ends_at":"END"}]"#
                    .into(),
            ),
            (
                "webhook",
                r#"{"version":"4","status":"resolved","receiver":"r","groupKey":"g","alerts":[{"status":"resolved","labels":{"alertname":"A"},"startsAt":"2026-11-29T10:00:00Z","endsAt":"END"}]}"#
                    .into(),
            ),
        ];
        for (format, body) in &bodies {
            let parse = |end: &str| -> Result<Vec<Alert>, ParseError> {
                let body = body.replace("END", end);
                match *format {
                    "alertmanager" => alertmanager::parse(body.as_bytes()),
                    "native" => native::parse(body.as_bytes()),
                    _ => webhook::parse(body.as_bytes()),
                }
            };
            let err = parse("2026-11-29T09:59:59Z").unwrap_err().to_string();
            assert!(
                err.contains("alert 0") && err.contains("is before") && err.contains("10:00:00Z"),
                "{format}: {err}"
            );
            let same = parse("2026-11-29T10:00:00Z").unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(same.len(), 1, "{format}: an end at the start is an alert");
        }
    }

    /// `alerts` (a JSON array) read in each format that carries an array of alerts, wrapped as
    /// the format wants it. `STATUS` is replaced by a webhook alert's status (an unknown field,
    /// ignored, to Alertmanager API v2; the native form's own), `START` by the format's name of
    /// the start time.
    fn in_every_alert_array(alerts: &str) -> [(&'static str, Result<Vec<Alert>, ParseError>); 4] {
        let alerts = alerts.replace("STATUS", r#""status":"firing","#);
        let (camel, snake) = (
            alerts.replace("START", "startsAt"),
            alerts.replace("START", "starts_at"),
        );
        [
            ("alertmanager", alertmanager::parse(camel.as_bytes())),
            ("native", native::parse(snake.as_bytes())),
            (
                "native wrapped",
                native::parse(format!(r#"{{"alerts":{snake}}}"#).as_bytes()),
            ),
            (
                "webhook",
                webhook::parse(format!(r#"{{"version":"4","alerts":{camel}}}"#).as_bytes()),
            ),
        ]
    }

    #[test]
    fn json_of_the_wrong_shape_in_an_alert_names_the_alert() {
        // The QA report's body: the second alert has no labels.
        let err = alertmanager::parse(br#"[{"labels":{"alertname":"ok"}},{"annotations":{}}]"#)
            .unwrap_err();
        assert_eq!(err.reason(), "malformed_json");
        assert_eq!(
            err.detail(),
            "alert 1: missing field `labels` at line 1 column 49"
        );
        assert_eq!(
            err.to_string(),
            "JSON of the wrong shape: alert 1: missing field `labels` at line 1 column 49"
        );

        for (alerts, says) in [
            (
                r#"[{STATUS"labels":{"a":"b"}},{STATUS"annotations":{}}]"#,
                "alert 1: missing field `labels` at line 1 column ",
            ),
            (
                r#"[{STATUS"labels":{"a":"b"}},{STATUS"labels":{"a":"b"}},{STATUS"labels":{"a":1}}]"#,
                "alert 2: invalid type: integer `1`, expected a string at line 1 column ",
            ),
            (
                r#"[{STATUS"labels":{"a":"b"},"START":"soon"}]"#,
                r#"alert 0: invalid time "soon""#,
            ),
            (
                r#"[{STATUS"labels":{"a":"b"}},7]"#,
                "alert 1: invalid type: integer `7`, expected an alert object at line 1 column ",
            ),
        ] {
            for (format, result) in in_every_alert_array(alerts) {
                let err = result.unwrap_err();
                let text = err.to_string();
                assert_eq!(err.reason(), "malformed_json", "{format}: {text}");
                assert_eq!(text, format!("JSON of the wrong shape: {}", err.detail()));
                assert!(err.detail().starts_with(says), "{format}: {text}");
                assert!(text.contains(" at line 1 column "), "{format}: {text}");
            }
        }

        // Not JSON: told by position only, whichever alert it is in.
        for (format, result) in in_every_alert_array(r#"[{"labels":{"a":"b"}},{"labels":}]"#) {
            let err = result.unwrap_err();
            assert!(
                err.detail().starts_with("expected value at line 1"),
                "{format}: {err}"
            );
        }
        // Of the wrong shape outside any alert: no alert named.
        let err = webhook::parse(br#"{"version":"4","alerts":{}}"#).unwrap_err();
        assert!(err.detail().starts_with("invalid type: map"), "{err}");
        // An earlier failure on the same thread is not taken for a later one's.
        alertmanager::parse(br#"[{"annotations":{}}]"#).unwrap_err();
        let err = alertmanager::parse(br#"{}"#).unwrap_err();
        assert!(err.detail().starts_with("invalid type: map"), "{err}");
    }

    #[test]
    fn a_label_or_annotation_given_twice_is_refused_naming_the_alert_and_the_key() {
        for (alerts, says) in [
            (
                r#"[{STATUS"labels":{"alertname":"X","alertname":"Y"}}]"#,
                "alert 0: duplicate label `alertname` at line 1 column ",
            ),
            (
                r#"[{STATUS"labels":{"a":"b"}},{STATUS"labels":{"b":"1","a":"2","b":"3"}}]"#,
                "alert 1: duplicate label `b` at line 1 column ",
            ),
            // The same name however it is written.
            (
                r#"[{STATUS"labels":{"alertname":"X","alertname":"X"}}]"#,
                "alert 0: duplicate label `alertname` at line 1 column ",
            ),
            (
                r#"[{STATUS"labels":{"a":"b"},"annotations":{"summary":"s","summary":"t"}}]"#,
                "alert 0: duplicate annotation `summary` at line 1 column ",
            ),
        ] {
            for (format, result) in in_every_alert_array(alerts) {
                let err = result.unwrap_err();
                assert_eq!(err.reason(), "malformed_json", "{format}: {err}");
                assert!(err.detail().starts_with(says), "{format}: {err}");
            }
        }
        // The column is that of the second key (its closing quote, as serde_json counts).
        let err =
            alertmanager::parse(br#"[{"labels":{"alertname":"X","alertname":"Y"}}]"#).unwrap_err();
        assert_eq!(
            err.detail(),
            "alert 0: duplicate label `alertname` at line 1 column 39"
        );
        // Distinct keys, and the same key in labels and annotations, are fine.
        let body = r#"[{STATUS"labels":{"a":"1","b":"2"},"annotations":{"a":"1","b":"2"}}]"#;
        for (format, result) in in_every_alert_array(body) {
            let alerts = result.unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(
                alerts[0].labels,
                labels(&[("a", "1"), ("b", "2")]),
                "{format}"
            );
            assert_eq!(alerts[0].annotations, alerts[0].labels, "{format}");
        }
    }

    /// Bytes that JSON is made of, a few non-ASCII sequences (whole, cut short, not UTF-8 at all)
    /// and a control character: most of what can go wrong inside and around a string.
    const PIECES: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b" ",
        b"\n",
        b"a",
        b"1",
        b"-",
        b".",
        b"e",
        b"\\",
        b"\\u00e9",
        b"\\ud83d",
        b"null",
        b"true",
        b"\xc3\xa9",
        b"\xf0\x9f\x94\xa5",
        b"\xc3",
        b"\xe2\x82",
        b"\xff",
        b"\x80",
        b"\x01",
    ];

    /// A body made of [`PIECES`], after a start that most often gets into an alert's labels.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let start = prop_oneof![
            Just(&b""[..]),
            Just(&b"[{\"labels\":{\"a\":\""[..]),
            Just(&b"{\"alerts\":[{\"labels\":{\""[..]),
        ];
        (start, proptest::collection::vec(0..PIECES.len(), 0..40)).prop_map(|(start, picks)| {
            let mut body = start.to_vec();
            for i in picks {
                body.extend_from_slice(PIECES[i]);
            }
            body
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Taking UTF-8 text instead of bytes changes nothing but the cost: the same value, or
        /// the same error with the same line and column.
        #[test]
        fn reading_text_agrees_with_reading_bytes(body in body()) {
            let as_text = from_json::<AlertArray<Labels>>(&body).map(|a| a.0);
            let as_bytes = serde_json::from_slice::<AlertArray<Labels>>(&body).map(|a| a.0);
            prop_assert_eq!(as_text.map_err(|e| e.to_string()), as_bytes.map_err(|e| e.to_string()));

            let object = from_object::<std::collections::BTreeMap<String, serde_json::Value>>(&body, "an object");
            let mut deserializer = serde_json::Deserializer::from_slice(&body);
            let reference = Object::new("an object")
                .deserialize(&mut deserializer)
                .and_then(|v| deserializer.end().map(|()| v));
            prop_assert_eq!(object.map_err(|e| e.to_string()), reference.map_err(|e| e.to_string()));
        }
    }

    #[test]
    fn a_body_that_is_not_utf_8_is_malformed_json_with_its_position() {
        let err: ParseError = from_json::<AlertArray<Labels>>(b"[{\"a\":\n\"\xff\"}]")
            .unwrap_err()
            .into();
        assert_eq!(err.reason(), "malformed_json");
        assert!(err.to_string().contains("line 2 column"), "{err}");
        let AlertArray(alerts) =
            from_json::<AlertArray<Labels>>("[{\"a\":\"é\\u00e9🔥\"}]".as_bytes()).unwrap();
        assert_eq!(alerts, vec![labels(&[("a", "éé🔥")])]);
    }

    #[test]
    fn empty_label_values_are_dropped() {
        let cleaned = clean_labels(labels(&[("alertname", "X"), ("instance", "")]), 0).unwrap();
        assert_eq!(cleaned, labels(&[("alertname", "X")]));
    }

    #[test]
    fn an_empty_label_set_is_rejected_naming_the_alert() {
        let err = clean_labels(labels(&[("instance", "")]), 3).unwrap_err();
        assert_eq!(err.to_string(), "invalid alert 3: labels must not be empty");
        assert_eq!(err.reason(), "invalid_alert");
        let err = clean_labels(Labels::new(), 0).unwrap_err();
        assert_eq!(err.to_string(), "invalid alert 0: labels must not be empty");
    }

    #[test]
    fn an_empty_label_name_is_rejected() {
        let err = clean_labels(labels(&[("alertname", "X"), ("", "v")]), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid alert 1: label names must not be empty"
        );
    }

    #[test]
    fn json_errors_carry_position_and_reason() {
        // Well-formed JSON, not what the format reads: said so, in the same category.
        let cases: [(&[u8], &str); 2] = [
            (b"[{\"a\": }]", "malformed JSON: "),
            (b"{\"a\": 1}", "JSON of the wrong shape: "),
        ];
        for (body, says) in cases {
            let err: ParseError = serde_json::from_slice::<AlertArray<Labels>>(body)
                .unwrap_err()
                .into();
            assert_eq!(err.reason(), "malformed_json");
            let text = err.to_string();
            assert!(text.starts_with(says), "{text}");
            assert!(text.contains("line 1 column"), "{text}");
        }
    }

    #[test]
    fn alert_array_says_an_array_is_expected() {
        let err = serde_json::from_slice::<AlertArray<Labels>>(b"{}").unwrap_err();
        assert!(
            err.to_string().contains("expected a JSON array of alerts"),
            "{err}"
        );
        let AlertArray(empty) = serde_json::from_slice::<AlertArray<Labels>>(b" [] ").unwrap();
        assert!(empty.is_empty());
        let err = serde_json::from_slice::<AlertArray<Labels>>(b"[[]]").unwrap_err();
        assert!(
            err.to_string().contains("expected an alert object"),
            "{err}"
        );
    }

    #[test]
    fn from_object_takes_objects_only() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(default)]
            a: Option<String>,
        }
        let t: T = from_object(br#" {"a": "x"} "#, "a T object").unwrap();
        assert_eq!(t.a.as_deref(), Some("x"));
        for body in [&b"[]"[..], b"[\"x\"]", b"\"x\"", b"null"] {
            let err = from_object::<T>(body, "a T object").unwrap_err();
            assert!(err.to_string().contains("expected a T object"), "{err}");
            assert!(err.to_string().contains("line 1 column"), "{err}");
        }
        let err = from_object::<T>(br#"{"a": 1}"#, "a T object").unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");
        let err = from_object::<T>(br#"{} {}"#, "a T object").unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn times_are_rfc3339_or_null() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "time")]
            t: Option<DateTime<Utc>>,
        }
        let parse = |s: &str| serde_json::from_str::<T>(s).map(|t| t.t);
        let expected: DateTime<Utc> = "2026-11-26T16:12:09.255Z".parse().unwrap();
        assert_eq!(
            parse(r#"{"t":"2026-11-26T16:12:09.255Z"}"#).unwrap(),
            Some(expected)
        );
        assert_eq!(
            parse(r#"{"t":"2026-11-26T17:12:09.255+0100"}"#).unwrap(),
            Some(expected)
        );
        assert_eq!(parse(r#"{"t":null}"#).unwrap(), None);
        assert_eq!(parse("{}").unwrap(), None);
        let err = parse(r#"{"t":"yesterday"}"#).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid time "yesterday""#), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        assert!(parse(r#"{"t":5}"#).is_err());
    }

    #[test]
    fn null_reads_as_default() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "null_as_default")]
            m: Labels,
        }
        let t: T = serde_json::from_str(r#"{"m": null}"#).unwrap();
        assert!(t.m.is_empty());
        let t: T = serde_json::from_str("{}").unwrap();
        assert!(t.m.is_empty());
    }

    #[test]
    fn every_fixture_is_detected_as_its_format() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (file, format) in [
            ("prometheus-2.42-firing.json", Format::Alertmanager),
            ("amtool-0.25-alert-add.json", Format::Alertmanager),
            ("alertmanager-0.25-webhook-firing.json", Format::Webhook),
            ("alertmanager-0.25-webhook-100-alerts.json", Format::Webhook),
            ("grafana-11-webhook-firing.json", Format::Webhook),
            ("pagerduty-trigger.json", Format::Pagerduty),
            ("pagerduty-resolve.json", Format::Pagerduty),
            ("native-firing.json", Format::Native),
            ("native-resolved.json", Format::Native),
        ] {
            let body = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(detect(&body).unwrap(), format, "{file}");
            assert!(parse(None, &body, chrono::Utc::now()).is_ok(), "{file}");
        }
        let one = br#"{"labels": {"alertname": "X"}, "status": "resolved"}"#;
        let (source, alerts) = parse(None, one, chrono::Utc::now()).unwrap().into_alerts();
        assert_eq!((source, alerts.len()), (Source::Native, 1));
        assert!(detect(b"42").is_err());
        assert!(detect(br#"{"foo": 1}"#).is_err());
        assert!(matches!(detect(b"[] x"), Err(ParseError::Json { .. })));
        assert!(matches!(
            detect(br#"{"alerts": [}"#),
            Err(ParseError::Json { .. })
        ));
    }

    /// How `detect` read a body before it read keys only: the whole body as a `Value`.
    fn detect_by_value(body: &[u8]) -> Option<Format> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let has = |v: &serde_json::Value, keys: &[&str]| keys.iter().any(|k| v.get(*k).is_some());
        match &value {
            serde_json::Value::Array(items) => Some(
                if items.iter().any(|a| {
                    has(
                        a,
                        &[
                            "status",
                            "starts_at",
                            "ends_at",
                            "severity",
                            "generator_url",
                        ],
                    )
                }) {
                    Format::Native
                } else {
                    Format::Alertmanager
                },
            ),
            serde_json::Value::Object(_) if has(&value, &["event_action", "routing_key"]) => {
                Some(Format::Pagerduty)
            }
            serde_json::Value::Object(_)
                if has(&value, &["alerts"])
                    && has(&value, &["version", "receiver", "groupKey", "groupLabels"]) =>
            {
                Some(Format::Webhook)
            }
            serde_json::Value::Object(_) if has(&value, &["alerts", "labels"]) => {
                Some(Format::Native)
            }
            _ => None,
        }
    }

    /// JSON values built from the keys `detect` looks for, some escaped, and a few others.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let key = prop_oneof![
            proptest::sample::select(vec![
                "status",
                "starts_at",
                "ends_at",
                "severity",
                "generator_url",
                "event_action",
                "routing_key",
                "alerts",
                "version",
                "receiver",
                "groupKey",
                "groupLabels",
                "labels",
                "startsAt",
                "x",
                "",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z ]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|pairs| serde_json::Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Reading keys only tells every body's format exactly as reading the whole `Value` did,
        /// whether a key is written plainly or with `\u` escapes.
        #[test]
        fn detect_agrees_with_reading_the_whole_value(value in json_value(), escape in any::<bool>()) {
            let mut body = serde_json::to_string(&value).unwrap();
            if escape {
                // `\u0073` is `s`: serde_json must unescape such a key (`status`, `severity`
                // ...) before it can be matched.
                body = body.replace("\"s", "\"\\u0073");
            }
            let before = detect_by_value(body.as_bytes());
            let now = detect(body.as_bytes()).ok();
            prop_assert_eq!(now, before, "{}", body);
        }
    }
}
