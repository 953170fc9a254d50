//! The bounded fuzz pass: property tests (proptest) over every parser of outside input. The wire
//! formats (Alertmanager API v2, the Alertmanager webhook, PagerDuty Events v2, triaged's own
//! form, the `auto` detection the Kafka source and `replay` use, and the silence body) and the
//! config parser get (1) arbitrary bytes, (2) generated JSON and JSON mutated from the real
//! fixtures in `tests/fixtures/` (types changed, fields dropped or duplicated, huge and unicode
//! strings, deep nesting), and, for the config, (3) line-level mutations of
//! `config/triaged.toml`. The property is always: no panic, and a refusal says what is wrong (a
//! config problem about a place names its line). What parses is then run through the real
//! pipeline (the simulator that `replay` uses, on a throw-away store), so a value that parses but
//! breaks a later stage (an overflowing date, a duration too large to add) is found too.
//!
//! Each property runs `PROPTEST_CASES` cases (default below), so CI's pass stays well under a
//! minute; set `PROPTEST_CASES=20000` for a longer hunt. A failure prints the shrunk input.

mod common;

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::Value;
use triaged::alert::{Alert, Source};
use triaged::config::Config;
use triaged::pipeline::{Policy, Simulator};
use triaged::silence::PostableSilence;
use triaged::sources::formats::{self, alertmanager, native, pagerduty, webhook, Format};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 512;

fn runner(default_cases: u32) -> TestRunner {
    let mut config = RunnerConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    // Regressions found are kept as named unit tests next to the fix, not as seed files.
    config.failure_persistence = None;
    TestRunner::new(config)
}

fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    if let Err(e) = runner(default_cases).run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-26T16:12:10Z".parse().unwrap()
}

// ---- the wire formats ---------------------------------------------------------------------------

/// A format's `parse`, for the formats whose body is alerts only.
type AlertParser = fn(&[u8]) -> Result<Vec<Alert>, formats::ParseError>;

/// Every format's parser on `body`: never a panic; a refusal with a message that says what is
/// wrong (serde_json's with its line and column); alerts that come out obey the label rules.
/// Parsed alerts are returned for the pipeline.
fn check_body(body: &[u8]) -> Result<Vec<(Source, Vec<Alert>)>, TestCaseError> {
    let mut parsed = Vec::new();
    let fixed: [(Source, AlertParser); 3] = [
        (Source::Alertmanager, alertmanager::parse),
        (Source::Webhook, webhook::parse),
        (Source::Native, native::parse),
    ];
    for (source, parse) in fixed {
        match parse(body) {
            Ok(alerts) => {
                check_alerts(&alerts)?;
                parsed.push((source, alerts));
            }
            Err(e) => check_parse_error(&e)?,
        }
    }
    match pagerduty::parse(body, now()) {
        Ok(event) => {
            prop_assert!(!event.dedup_key.is_empty());
            prop_assert!(event.dedup_key.chars().count() <= pagerduty::DEDUP_KEY_MAX_CHARS);
            check_alerts(std::slice::from_ref(&event.alert))?;
        }
        Err(e) => check_parse_error(&e)?,
    }
    // `auto`, as the Kafka source and `replay` read a message: what is detected parses the same
    // way as when that format is named.
    let detected = formats::detect(body);
    match formats::parse(None, body, now()) {
        Ok(auto) => {
            let format = detected.map_err(|e| {
                TestCaseError::fail(format!("parsed as auto but detect failed: {e}"))
            })?;
            let named = formats::parse(Some(format), body, now()).map_err(|e| {
                TestCaseError::fail(format!("auto parsed, {format:?} did not: {e}"))
            })?;
            prop_assert_eq!(&auto, &named);
            let (source, alerts) = auto.into_alerts();
            prop_assert_eq!(source, format.source());
            check_alerts(&alerts)?;
            parsed.push((source, alerts));
        }
        Err(e) => check_parse_error(&e)?,
    }
    for format in [
        Format::Alertmanager,
        Format::Webhook,
        Format::Pagerduty,
        Format::Native,
    ] {
        if let Err(e) = formats::parse(Some(format), body, now()) {
            check_parse_error(&e)?;
        }
    }
    Ok(parsed)
}

fn check_parse_error(e: &formats::ParseError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.trim().is_empty(), "an error without a message");
    match e {
        formats::ParseError::Json { error: j, .. } => {
            prop_assert!(
                text.contains("line ") && text.contains("column "),
                "a JSON error without its place: {}",
                text
            );
            prop_assert!(j.line() >= 1);
        }
        formats::ParseError::Invalid { what, why } => {
            prop_assert!(
                !what.trim().is_empty() && !why.trim().is_empty(),
                "{}",
                text
            );
        }
    }
    prop_assert!(["malformed_json", "invalid_alert"].contains(&e.reason()));
    Ok(())
}

/// The rules every format applies (Alertmanager's): no empty label set, name or value.
fn check_alerts(alerts: &[Alert]) -> Result<(), TestCaseError> {
    for alert in alerts {
        prop_assert!(!alert.labels.is_empty(), "an alert without labels");
        prop_assert!(
            alert
                .labels
                .iter()
                .all(|(k, v)| !k.is_empty() && !v.is_empty()),
            "an empty label name or value: {:?}",
            alert.labels
        );
    }
    Ok(())
}

/// The pipeline on a throw-away store, shared by the cases of one property so that they build
/// on each other (repeats, resolutions, reopens, expiries) as a real stream would.
struct Pipeline {
    sim: Simulator,
}

impl Pipeline {
    fn new() -> Pipeline {
        let mut config = Config::default();
        // Short lifetimes so that cases see expiries, deadlines and escalations fire.
        config.dedup.resolve_timeout = "1m".parse().unwrap();
        Pipeline {
            sim: Simulator::new(&config, now()).expect("a simulator on the default config"),
        }
    }

    /// Feed alerts through dedup, classification, triage and the store, then let some time pass.
    /// Refusals are fine (the pipeline may refuse); a panic is not.
    fn feed(&mut self, parsed: Vec<(Source, Vec<Alert>)>, advance_secs: i64) {
        for (source, alerts) in parsed {
            let _ = self.sim.ingest(source, alerts);
        }
        self.sim.advance(chrono::Duration::seconds(advance_secs));
    }
}

/// Strings chosen to reach the corners: the words of the formats, times at the ends of what
/// RFC 3339 and chrono can hold, empties, huge ones and arbitrary unicode.
fn interesting_string() -> impl Strategy<Value = String> {
    let words: Vec<String> = [
        "",
        " ",
        "firing",
        "resolved",
        "trigger",
        "acknowledge",
        "resolve",
        "critical",
        "error",
        "warning",
        "info",
        "major",
        "sev-1",
        "P1",
        "alertname",
        "severity",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00.001Z",
        "2026-11-26T16:12:09.255Z",
        "2026-11-26T17:12:09.255+0100",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "2026-02-30T00:00:00Z",
        "2026-11-26T16:12:09.2550000000000000000001Z",
        "\u{0}",
        "\u{fffd}",
        "🦀🔥",
        "e\u{301}",
        "\u{202e}reversed",
        "a=~\"(\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prop_oneof![
        4 => proptest::sample::select(words),
        3 => any::<String>(),
        1 => "\\PC{0,64}",
        1 => (1usize..300_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

/// Object keys: mostly the fields the formats know, so that generated objects get past the
/// first checks; sometimes anything.
fn key() -> impl Strategy<Value = String> {
    let known: Vec<String> = [
        "labels",
        "annotations",
        "status",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
        "alerts",
        "version",
        "receiver",
        "groupKey",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "truncatedAlerts",
        "event_action",
        "routing_key",
        "dedup_key",
        "payload",
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
        "client",
        "client_url",
        "starts_at",
        "ends_at",
        "generator_url",
        "alertname",
        "matchers",
        "name",
        "value",
        "isRegex",
        "isEqual",
        "createdBy",
        "comment",
        "id",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prop_oneof![4 => proptest::sample::select(known), 1 => interesting_string()]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        interesting_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document, at a node chosen by `at` (pre-order, modulo the node count).
#[derive(Debug, Clone)]
enum Mutation {
    /// Drop the node from its parent.
    Remove,
    /// Insert a copy next to it (in an object: the same key written twice, in the text).
    Duplicate,
    /// Replace it with another value (mostly of another type).
    Replace(Value),
    /// Put it inside this many arrays (past serde_json's recursion limit, sometimes).
    Nest(usize),
    /// Replace every string under it with this one.
    Strings(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => Just(Mutation::Remove),
        2 => Just(Mutation::Duplicate),
        4 => json_value().prop_map(Mutation::Replace),
        1 => (1usize..300).prop_map(Mutation::Nest),
        2 => interesting_string().prop_map(Mutation::Strings),
    ]
}

fn node_count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(node_count).sum(),
        Value::Object(map) => map.values().map(node_count).sum(),
        _ => 0,
    }
}

/// Apply `m` at node `at` (pre-order; 0 is `v` itself). Object duplicates cannot live in a
/// `Value`: those are returned as the pre-order number of the object whose key `key` is to be
/// written twice.
fn mutate(v: &mut Value, at: usize, m: &Mutation) -> Option<(usize, String)> {
    let at = at % node_count(v);
    if at == 0 {
        replace_here(v, m);
        return None;
    }
    let mut seen = 0;
    let mut dup = None;
    walk(v, at, &mut seen, m, &mut dup);
    dup
}

/// `seen`: the pre-order number of `v`. Returns true once the target was handled.
fn walk(
    v: &mut Value,
    at: usize,
    seen: &mut usize,
    m: &Mutation,
    dup: &mut Option<(usize, String)>,
) -> bool {
    let here = *seen;
    match v {
        Value::Array(items) => {
            for i in 0..items.len() {
                *seen += 1;
                if *seen == at {
                    match m {
                        Mutation::Remove => {
                            items.remove(i);
                        }
                        Mutation::Duplicate => {
                            let copy = items[i].clone();
                            items.insert(i, copy);
                        }
                        _ => replace_here(&mut items[i], m),
                    }
                    return true;
                }
                if walk(&mut items[i], at, seen, m, dup) {
                    return true;
                }
            }
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                *seen += 1;
                if *seen == at {
                    match m {
                        Mutation::Remove => {
                            map.remove(&k);
                        }
                        Mutation::Duplicate => *dup = Some((here, k)),
                        _ => replace_here(map.get_mut(&k).expect("a key just listed"), m),
                    }
                    return true;
                }
                if walk(
                    map.get_mut(&k).expect("a key just listed"),
                    at,
                    seen,
                    m,
                    dup,
                ) {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}

fn replace_here(v: &mut Value, m: &Mutation) {
    match m {
        Mutation::Remove => *v = Value::Null,
        Mutation::Duplicate => *v = Value::Array(vec![v.clone(), v.clone()]),
        Mutation::Replace(other) => *v = other.clone(),
        Mutation::Nest(depth) => {
            for _ in 0..*depth {
                *v = Value::Array(vec![v.take()]);
            }
        }
        Mutation::Strings(s) => set_strings(v, s),
    }
}

fn set_strings(v: &mut Value, s: &str) {
    match v {
        Value::String(text) => *text = s.to_string(),
        Value::Array(items) => items.iter_mut().for_each(|i| set_strings(i, s)),
        Value::Object(map) => map.values_mut().for_each(|i| set_strings(i, s)),
        _ => {}
    }
}

/// JSON text of `v`, writing `dup`'s key (of the object with that pre-order number) twice.
fn to_text(v: &Value, dup: Option<&(usize, String)>) -> String {
    fn write(v: &Value, seen: &mut usize, dup: Option<&(usize, String)>, out: &mut String) {
        let here = *seen;
        match v {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    *seen += 1;
                    write(item, seen, dup, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                let mut first = true;
                for (k, item) in map {
                    let times = match dup {
                        Some((at, key)) if *at == here && key == k => 2,
                        _ => 1,
                    };
                    *seen += 1;
                    let start = *seen;
                    for _ in 0..times {
                        *seen = start;
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        write(item, seen, dup, out);
                    }
                }
                out.push('}');
            }
            leaf => out.push_str(&leaf.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut 0, dup, &mut out);
    out
}

const FIXTURES: &[&str] = &[
    "prometheus-2.42-firing.json",
    "prometheus-2.42-resolved.json",
    "amtool-0.25-alert-add.json",
    "alertmanager-0.25-webhook-firing.json",
    "alertmanager-0.25-webhook-resolved.json",
    "alertmanager-0.25-webhook-100-alerts.json",
    "grafana-11-webhook-firing.json",
    "pagerduty-trigger.json",
    "pagerduty-acknowledge.json",
    "pagerduty-resolve.json",
    "native-firing.json",
    "native-resolved.json",
    "amtool-0.25-silence-add.json",
];

fn fixtures() -> Vec<Value> {
    FIXTURES.iter().map(|f| common::fixture_json(f)).collect()
}

#[test]
fn the_fixtures_themselves_parse() {
    // The mutations start from valid bodies: if these stopped parsing, the mutated ones would
    // test only the first checks.
    for (name, value) in FIXTURES.iter().zip(fixtures()) {
        let body = to_text(&value, None);
        if name.contains("silence") {
            assert!(
                PostableSilence::from_json(body.as_bytes()).is_ok(),
                "{name}"
            );
        } else {
            assert!(
                formats::parse(None, body.as_bytes(), now()).is_ok(),
                "{name}"
            );
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic_a_wire_format_parser() {
    let pipeline = RefCell::new(Pipeline::new());
    run(
        "arbitrary bytes",
        DEFAULT_CASES,
        prop::collection::vec(any::<u8>(), 0..2048),
        |bytes| {
            let parsed = check_body(&bytes)?;
            pipeline.borrow_mut().feed(parsed, 1);
            Ok(())
        },
    );
}

#[test]
fn arbitrary_json_never_panics_a_wire_format_parser() {
    let pipeline = RefCell::new(Pipeline::new());
    run(
        "arbitrary JSON",
        DEFAULT_CASES,
        (json_value(), 0i64..3600),
        |(value, advance)| {
            let parsed = check_body(to_text(&value, None).as_bytes())?;
            pipeline.borrow_mut().feed(parsed, advance);
            Ok(())
        },
    );
}

#[test]
fn mutated_fixtures_never_panic_a_wire_format_parser_or_the_pipeline() {
    let originals = fixtures();
    let pipeline = RefCell::new(Pipeline::new());
    let strategy = (
        0..originals.len(),
        prop::collection::vec((any::<usize>(), mutation()), 1..5),
        0i64..7200,
    );
    run(
        "mutated fixtures",
        DEFAULT_CASES,
        strategy,
        |(which, mutations, advance)| {
            let mut value = originals[which].clone();
            let mut dup = None;
            for (at, m) in &mutations {
                dup = mutate(&mut value, *at, m).or(dup);
            }
            // A duplicate key names an object by its place, which later mutations may shift; it
            // then applies to whatever object is there now, or to none. Either is a fine test.
            let text = to_text(&value, dup.as_ref());
            let parsed = check_body(text.as_bytes())?;
            pipeline.borrow_mut().feed(parsed, advance);
            Ok(())
        },
    );
}

#[test]
fn mutated_silences_never_panic_the_parser_or_the_pipeline() {
    let original = common::fixture_json("amtool-0.25-silence-add.json");
    let pipeline = RefCell::new(Pipeline::new());
    let strategy = (
        prop::collection::vec((any::<usize>(), mutation()), 0..4),
        0i64..7200,
    );
    run(
        "mutated silences",
        DEFAULT_CASES / 2,
        strategy,
        |(mutations, advance)| {
            let mut value = original.clone();
            let mut dup = None;
            for (at, m) in &mutations {
                dup = mutate(&mut value, *at, m).or(dup);
            }
            let text = to_text(&value, dup.as_ref());
            // As `POST /api/v2/silences` reads it: one object, then the writer's validation.
            match PostableSilence::from_json(text.as_bytes()) {
                Ok(silence) => {
                    let mut p = pipeline.borrow_mut();
                    if let Err(e) = p.sim.silence(silence) {
                        prop_assert!(!e.to_string().trim().is_empty());
                    }
                    p.sim.advance(chrono::Duration::seconds(advance));
                }
                Err(e) => prop_assert!(e.line() >= 1 && !e.to_string().is_empty()),
            }
            Ok(())
        },
    );
}

// ---- the config ---------------------------------------------------------------------------------

const DEFAULT_TOML: &str = include_str!("../config/triaged.toml");

/// The default file with its commented examples switched on (webhook and Kafka sinks, the Kafka
/// source): the mutations then reach those sections too.
fn with_examples() -> String {
    DEFAULT_TOML
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.starts_with("  {")
                    || rest.starts_with(']')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ') || k.starts_with('"')) =>
            {
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Values to put where a value was: each type, the edges of durations and integers, bad
/// tiers, bad matchers, unicode, and any string.
fn toml_value() -> impl Strategy<Value = String> {
    let values: Vec<String> = [
        "\"0s\"",
        "\"0ms\"",
        "\"1ms\"",
        "\"1h30m\"",
        "\"15m\"",
        "\"1x\"",
        "\"9999999999999d\"",
        "\"18446744073709551615ms\"",
        "\"106751991167d\"",
        "\"300000000d\"",
        "\"2562047788015w\"",
        "\"L0\"",
        "\"L4\"",
        "\"L9\"",
        "\"suppress\"",
        "\"escalate\"",
        "\"json\"",
        "\"critical\"",
        "\"127.0.0.1:0\"",
        "\"[::1]:99999\"",
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "9223372036854775807",
        "-9223372036854775808",
        "1e400",
        "nan",
        "true",
        "[]",
        "[\"\"]",
        "[\"L1\", \"L1\"]",
        "{}",
        "{ \"\" = \"x\" }",
        "['a=~\"(\"']",
        "['alertname=~\".+\"']",
        "\"\"",
        "\"\\u0000\"",
        "\"🦀\"",
        "1979-05-27T07:32:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prop_oneof![
        5 => proptest::sample::select(values),
        1 => any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// Durations from nothing to more than any calendar holds.
fn duration() -> impl Strategy<Value = String> {
    let units = proptest::sample::select(vec!["ms", "s", "m", "h", "d", "w"]);
    prop_oneof![
        (0u64..100, units.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (any::<u64>(), units).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (0u32..64).prop_map(|shift| format!("\"{}ms\"", 1u64 << shift)),
    ]
}

#[derive(Debug, Clone)]
enum LineMutation {
    Drop(usize),
    Duplicate(usize),
    /// Swap the values of two `key = value` lines.
    SwapValues(usize, usize),
    SetValue(usize, String),
    /// Set a duration-valued key (`"15m"` ...) to another duration, often an extreme one.
    SetDuration(usize, String),
    /// Remove a leading `# ` (switch a commented example on, or turn prose into garbage).
    Uncomment(usize),
    Insert(usize, String),
    /// Cut the file at this byte (on a char boundary at or before it).
    Truncate(usize),
}

fn line_mutation() -> impl Strategy<Value = LineMutation> {
    let n = any::<usize>;
    prop_oneof![
        3 => n().prop_map(LineMutation::Drop),
        2 => n().prop_map(LineMutation::Duplicate),
        3 => (n(), n()).prop_map(|(a, b)| LineMutation::SwapValues(a, b)),
        6 => (n(), toml_value()).prop_map(|(a, v)| LineMutation::SetValue(a, v)),
        4 => (n(), duration()).prop_map(|(a, v)| LineMutation::SetDuration(a, v)),
        2 => n().prop_map(LineMutation::Uncomment),
        1 => (n(), interesting_string()).prop_map(|(a, s)| LineMutation::Insert(a, s)),
        1 => n().prop_map(LineMutation::Truncate),
    ]
}

fn mutate_lines(text: &str, mutations: &[LineMutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // `key = value` lines, by index, for the value mutations.
    let assignments = |lines: &[String]| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| !lines[i].starts_with('#') && lines[i].contains(" = "))
            .collect()
    };
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let len = lines.len();
        match m {
            LineMutation::Drop(i) => {
                lines.remove(i % len);
            }
            LineMutation::Duplicate(i) => {
                let copy = lines[i % len].clone();
                lines.insert(i % len, copy);
            }
            LineMutation::SwapValues(a, b) => {
                let with = assignments(&lines);
                if with.len() >= 2 {
                    let (a, b) = (with[a % with.len()], with[b % with.len()]);
                    let (ka, va) = split_assignment(&lines[a]);
                    let (kb, vb) = split_assignment(&lines[b]);
                    lines[a] = format!("{ka} = {vb}");
                    lines[b] = format!("{kb} = {va}");
                }
            }
            LineMutation::SetValue(i, value) => {
                let with = assignments(&lines);
                if !with.is_empty() {
                    let at = with[i % with.len()];
                    let (k, _) = split_assignment(&lines[at]);
                    lines[at] = format!("{k} = {value}");
                }
            }
            LineMutation::SetDuration(i, value) => {
                let durations: Vec<usize> = assignments(&lines)
                    .into_iter()
                    .filter(|&j| {
                        let (_, v) = split_assignment(&lines[j]);
                        v.starts_with("\"") && v[1..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .collect();
                if !durations.is_empty() {
                    let at = durations[i % durations.len()];
                    let (k, _) = split_assignment(&lines[at]);
                    lines[at] = format!("{k} = {value}");
                }
            }
            LineMutation::Uncomment(i) => {
                let commented: Vec<usize> =
                    (0..len).filter(|&j| lines[j].starts_with("# ")).collect();
                if !commented.is_empty() {
                    let at = commented[i % commented.len()];
                    lines[at] = lines[at][2..].to_string();
                }
            }
            LineMutation::Insert(i, s) => lines.insert(i % (len + 1), s.clone()),
            LineMutation::Truncate(at) => {
                let mut text = lines.join("\n");
                let mut cut = at % (text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                lines = text.lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n")
}

fn split_assignment(line: &str) -> (String, String) {
    match line.split_once(" = ") {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (line.to_string(), String::new()),
    }
}

/// `Config::parse` on `text`: never a panic; each problem says what is wrong, and where (a line
/// within the file). A config that passes must also be usable: rules compile, the warnings
/// check runs, and the pipeline runs on it (alerts fire, resolve, reopen and sit through their
/// deadlines) without panicking.
fn check_config(text: &str) -> Result<(), TestCaseError> {
    let line_count = text.lines().count().max(1);
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            let policy = Policy::from_config(&config);
            prop_assert!(
                policy.is_ok(),
                "a valid config whose rules do not compile: {:?}",
                policy.err()
            );
            let _ = config.warnings(text, "fuzz.toml");
            exercise(&config);
        }
        Err(e) => {
            prop_assert!(!e.problems.is_empty(), "a refusal without problems");
            for p in &e.problems {
                prop_assert!(
                    !p.message.trim().is_empty(),
                    "a problem without text: {:?}",
                    p
                );
                let line = p.line.ok_or_else(|| {
                    TestCaseError::fail(format!("a problem without its line: {p:?}\n{e}"))
                })?;
                prop_assert!(
                    (1..=line_count + 1).contains(&line),
                    "line {} of a {}-line file: {}",
                    line,
                    line_count,
                    e
                );
            }
            prop_assert!(e.to_string().starts_with("fuzz.toml:"), "{}", e);
        }
    }
    Ok(())
}

/// A short life of two alert groups under `config`, with the clock jumping across every kind of
/// deadline.
fn exercise(config: &Config) {
    let mut sim = Simulator::new(config, now()).expect("a simulator on a valid config");
    let alert = |name: &str, severity: &str, resolved: bool| {
        let labels = triaged::alert::labels_from(&[
            ("alertname", name),
            ("service", "db"),
            ("severity", severity),
            ("env", "prod"),
        ]);
        let mut a = Alert::new(Source::Native, labels);
        if resolved {
            a.status = triaged::alert::Status::Resolved;
        }
        a
    };
    let minute = chrono::Duration::minutes(1);
    for round in 0..4 {
        for (name, severity) in [("DiskFull", "warning"), ("Down", "critical")] {
            let _ = sim.ingest(Source::Native, vec![alert(name, severity, false)]);
            sim.advance(minute);
            let _ = sim.ingest(Source::Native, vec![alert(name, severity, true)]);
            sim.advance(minute * (round + 1));
        }
    }
    let _ = sim.ingest(Source::Native, vec![alert("Down", "critical", false)]);
    for jump in [
        chrono::Duration::hours(1),
        chrono::Duration::days(1),
        chrono::Duration::days(400),
    ] {
        sim.advance(jump);
    }
}

#[test]
fn the_config_bases_are_valid() {
    Config::parse(DEFAULT_TOML, "triaged.toml").unwrap();
    let examples = with_examples();
    let parsed = Config::parse(&examples, "examples.toml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{examples}"));
    assert!(parsed.kafka.is_some() && !parsed.notify.webhook.is_empty());
}

#[test]
fn arbitrary_text_never_panics_the_config_parser() {
    run(
        "arbitrary config text",
        DEFAULT_CASES,
        prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..1024)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            "(\\[[a-z.L0-9]{0,20}\\]\n|[a-z_.]{1,20} = (\"[0-9a-z]{0,6}\"|[0-9-]{1,20}|\\[\\]|\\{\\})\n){0,12}",
        ],
        |text| check_config(&text),
    );
}

#[test]
fn mutated_configs_never_panic_the_parser_or_the_pipeline() {
    let bases = [DEFAULT_TOML.to_string(), with_examples()];
    // Each valid config gets a pipeline run (a throw-away store): fewer cases than the parsers.
    run(
        "mutated configs",
        DEFAULT_CASES / 2,
        (0..bases.len(), prop::collection::vec(line_mutation(), 1..6)),
        |(which, mutations)| check_config(&mutate_lines(&bases[which], &mutations)),
    );
}

/// Not random: every duration key of the default file, set in turn to each extreme, through
/// the parser and the pipeline. (Random mutations reach one key at a far edge only now and then.)
#[test]
fn every_duration_key_at_its_extremes_never_panics_the_pipeline() {
    let extremes = [
        "\"1ms\"",
        "\"36500d\"",
        "\"300000000d\"",
        "\"106751991167d\"",
        "\"18446744073709551615ms\"",
        "\"2562047788015w\"",
    ];
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    let mut tried = 0;
    for (i, line) in lines.iter().enumerate() {
        let (key, value) = split_assignment(line);
        if line.starts_with('#')
            || !value.starts_with('"')
            || !value[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        for extreme in extremes {
            let mut changed = lines.clone();
            let replaced = format!("{key} = {extreme}");
            changed[i] = &replaced;
            let text = changed.join("\n");
            if let Err(e) = check_config(&text) {
                panic!("{key} = {extreme}: {e}");
            }
            tried += 1;
        }
    }
    assert!(tried >= 40, "only {tried} duration settings tried");
}
