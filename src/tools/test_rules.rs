//! `triaged test-rules FILE...`: unit tests for classification rules, as `promtool test rules` is
//! for Prometheus rules.
//!
//! A test file is TOML: the `config` under test (relative to the test file; the embedded default
//! when left out) and `[[tests]]`, each with its input alerts, optional silences and one
//! `[[tests.expect]]` per input alert, in order:
//!
//! ```toml
//! config = "../triaged.toml"
//!
//! [[tests]]
//! name = "Watchdog is dropped"
//! alerts = [ { labels = { alertname = "Watchdog" } } ]   # or input = '...' / input_file = "..."
//! # format = "alertmanager"          for input/input_file; default: detect
//! # silences = ['alertname="Maintenance"', ['env="prod"', 'team!="db"']]   # one matcher, or a list
//! [[tests.expect]]
//! outcome = "dropped"                # dropped | silenced | L0 | incident | deduplicated | resolved | recorded
//! rule = "watchdog"                  # "" = no rule matched
//! # tier, severity, group_key, runbook, incident = "INC-1", labels = { ... } (set by rules)
//! ```
//!
//! Every test runs in a fresh [`Simulator`]: silences first, then the alerts in one ingest, and
//! the per-alert [`Decision`]s are compared with the expectations (only the keys given). Files
//! are all read and checked before any test runs: a bad file (unknown key, bad config, unreadable
//! input) is a [`ToolError::Input`] naming file and line, and nothing runs.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::{format_from_name, show_labels, ToolError};
use crate::alert::{given_time, Alert, Labels, Severity, Source, Status};
use crate::config::Config;
use crate::incident::{IncidentId, Tier};
use crate::pipeline::classify::{Matcher, Op, Target};
use crate::pipeline::{Decision, Simulator, Verdict};
use crate::silence::{PostableSilence, Silence, SilenceId, SilenceMatcher};
use crate::sources::formats::{self, clean_labels, non_empty};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    config: Option<Spanned<String>>,
    #[serde(default)]
    tests: Vec<Spanned<TestCase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    alerts: Option<Spanned<Vec<TomlAlert>>>,
    #[serde(default)]
    input: Option<Spanned<String>>,
    #[serde(default)]
    input_file: Option<Spanned<String>>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    #[serde(default)]
    silences: Vec<Spanned<SilenceMatchers>>,
    #[serde(default)]
    expect: Vec<Expect>,
}

/// A silence of a test: one matcher, or a list of them, all of which an alert must match (as
/// `amtool silence add alertname=X instance=Y` makes).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SilenceMatchers {
    One(String),
    All(Vec<String>),
}

impl SilenceMatchers {
    fn matchers(&self) -> &[String] {
        match self {
            SilenceMatchers::One(one) => std::slice::from_ref(one),
            SilenceMatchers::All(all) => all,
        }
    }
}

/// triaged's native alert, written as a TOML table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlAlert {
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    starts_at: Option<TomlTime>,
    #[serde(default)]
    ends_at: Option<TomlTime>,
    #[serde(default)]
    generator_url: Option<String>,
}

/// A time: a TOML offset date-time (`2026-11-26T16:00:00Z`) or an RFC 3339 string.
#[derive(Debug)]
struct TomlTime(DateTime<Utc>);

impl<'de> Deserialize<'de> for TomlTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match toml::Value::deserialize(d)? {
            toml::Value::String(s) => s,
            toml::Value::Datetime(dt) => dt.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a time, got {}",
                    other.type_str()
                )))
            }
        };
        text.parse::<DateTime<Utc>>().map(TomlTime).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid time {text:?} ({e}): expected RFC 3339 with an offset, e.g. 2026-11-26T16:12:09Z"
            ))
        })
    }
}

/// What became of an alert, as a test names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Outcome {
    #[serde(rename = "dropped")]
    Dropped,
    #[serde(rename = "silenced")]
    Silenced,
    #[serde(rename = "L0", alias = "auto_handled")]
    AutoHandled,
    #[serde(rename = "incident")]
    Incident,
    #[serde(rename = "deduplicated")]
    Deduplicated,
    #[serde(rename = "resolved")]
    Resolved,
    #[serde(rename = "recorded")]
    Recorded,
}

impl Outcome {
    fn verdict(self) -> Verdict {
        match self {
            Outcome::Dropped => Verdict::Dropped,
            Outcome::Silenced => Verdict::Silenced,
            Outcome::AutoHandled => Verdict::AutoHandled,
            Outcome::Incident => Verdict::Incident,
            Outcome::Deduplicated => Verdict::Deduplicated,
            Outcome::Resolved => Verdict::Resolved,
            Outcome::Recorded => Verdict::Recorded,
        }
    }
}

/// A verdict in the words of a test file (`L0` for auto-handled).
fn outcome_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::AutoHandled => "L0",
        other => other.as_str(),
    }
}

/// One `[[tests.expect]]`: only the keys given are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    outcome: Option<Outcome>,
    /// The deciding rule (the last that matched); `""`: no rule matched.
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    group_key: Option<String>,
    #[serde(default)]
    runbook: Option<String>,
    #[serde(default)]
    incident: Option<IncidentId>,
    /// A subset of the labels the rules set.
    #[serde(default)]
    labels: Option<Labels>,
}

/// A test, read and checked, ready to run.
struct Test {
    name: String,
    source: Source,
    alerts: Vec<Alert>,
    silences: Vec<PostableSilence>,
    expect: Vec<Expect>,
}

/// A test file, read and checked.
struct Suite {
    file: PathBuf,
    config: Config,
    tests: Vec<Test>,
}

/// Run the tests of every file; write `ok`/`FAIL` lines and the `N passed, M failed` total to
/// `out`. `Ok(true)`: all passed; `Ok(false)`: some failed; `Err`: a file could not be read or
/// parsed (nothing ran), or the simulator could not start.
pub fn run(files: &[PathBuf], out: &mut impl Write) -> Result<bool, ToolError> {
    let now = Utc::now();
    let mut suites = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load(file, now) {
            Ok(suite) => suites.push(suite),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(ToolError::Input(problems.join("\n")));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for suite in &suites {
        for test in &suite.tests {
            let diff = run_test(&suite.config, test, now)?;
            if diff.is_empty() {
                passed += 1;
                writeln!(out, "ok   {}", test.name)?;
            } else {
                failed += 1;
                writeln!(out, "FAIL {}  ({})", test.name, suite.file.display())?;
                for line in diff {
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(failed == 0)
}

/// Read and check one test file; every problem as `file:line: what`.
fn load(file: &Path, now: DateTime<Utc>) -> Result<Suite, Vec<String>> {
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![format!("{origin}: cannot read the test file: {e}")])?;
    let parsed: TestFile = toml::from_str(&text).map_err(|e| {
        vec![match e.span() {
            Some(span) => format!(
                "{origin}:{}: {}",
                crate::config::line_of(&text, span.start),
                e.message().trim()
            ),
            None => format!("{origin}: {}", e.message().trim()),
        }]
    })?;
    let at = |offset: usize| format!("{origin}:{}", crate::config::line_of(&text, offset));
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();

    let config = match &parsed.config {
        None => Some(Config::embedded_default()),
        Some(path) => {
            let config_path = dir.join(path.get_ref());
            match std::fs::read_to_string(&config_path) {
                Err(e) => {
                    problems.push(format!(
                        "{}: config: cannot read {}: {e}",
                        at(path.span().start),
                        config_path.display()
                    ));
                    None
                }
                Ok(config_text) => {
                    match Config::parse(&config_text, &config_path.display().to_string()) {
                        Ok(config) => Some(config),
                        Err(e) => {
                            problems.push(e.to_string());
                            None
                        }
                    }
                }
            }
        }
    };

    let mut tests = Vec::new();
    for (i, spanned) in parsed.tests.into_iter().enumerate() {
        let test_at = at(spanned.span().start);
        let case = spanned.into_inner();
        match load_test(case, i, dir, &test_at, &at, now) {
            Ok(test) => tests.push(test),
            Err(mut p) => problems.append(&mut p),
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok(Suite {
            file: file.to_path_buf(),
            config,
            tests,
        }),
        _ => Err(problems),
    }
}

/// Check one `[[tests]]` and read its input. `test_at` is `file:line` of the test.
fn load_test(
    case: TestCase,
    index: usize,
    dir: &Path,
    test_at: &str,
    at: &dyn Fn(usize) -> String,
    now: DateTime<Utc>,
) -> Result<Test, Vec<String>> {
    let key = format!("tests[{index}]");
    let mut problems = Vec::new();
    let given = [
        case.alerts.is_some(),
        case.input.is_some(),
        case.input_file.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        problems.push(format!(
            "{test_at}: {key}: test {:?} needs exactly one of alerts, input and input_file",
            case.name
        ));
    }

    let format = match &case.format {
        None => None,
        Some(f) if case.alerts.is_some() => {
            problems.push(format!(
                "{}: {key}.format: applies to input and input_file only (alerts are native)",
                at(f.span().start)
            ));
            None
        }
        Some(f) => match format_from_name(f.get_ref()) {
            Ok(format) => format,
            Err(e) => {
                problems.push(format!("{}: {key}.format: {e}", at(f.span().start)));
                None
            }
        },
    };

    let mut source = Source::Native;
    let mut alerts = Vec::new();
    if let Some(list) = case.alerts {
        let list_at = at(list.span().start);
        for (i, a) in list.into_inner().into_iter().enumerate() {
            match native_alert(a, i) {
                Ok(alert) => alerts.push(alert),
                Err(e) => problems.push(format!("{list_at}: {key}.alerts[{i}]: {e}")),
            }
        }
    } else {
        let body = if let Some(input) = &case.input {
            Some((
                input.get_ref().as_bytes().to_vec(),
                at(input.span().start),
                "input",
            ))
        } else if let Some(file) = &case.input_file {
            let path = dir.join(file.get_ref());
            match std::fs::read(&path) {
                Ok(bytes) => Some((bytes, at(file.span().start), "input_file")),
                Err(e) => {
                    problems.push(format!(
                        "{}: {key}.input_file: cannot read {}: {e}",
                        at(file.span().start),
                        path.display()
                    ));
                    None
                }
            }
        } else {
            None
        };
        if let Some((body, body_at, what)) = body {
            match formats::parse(format, &body, now) {
                Ok(parsed) => (source, alerts) = parsed.into_alerts(),
                Err(e) => problems.push(format!("{body_at}: {key}.{what}: {e}")),
            }
        }
    }

    let mut silences = Vec::new();
    for (i, text) in case.silences.iter().enumerate() {
        match silence_from(text.get_ref().matchers(), &case.name, now) {
            Ok(s) => silences.push(s),
            Err(e) => problems.push(format!(
                "{}: {key}.silences[{i}]: {e}",
                at(text.span().start)
            )),
        }
    }

    if problems.is_empty() {
        Ok(Test {
            name: case.name,
            source,
            alerts,
            silences,
            expect: case.expect,
        })
    } else {
        Err(problems)
    }
}

/// A TOML alert table as `POST /api/v1/alerts` would read it.
fn native_alert(a: TomlAlert, index: usize) -> Result<Alert, String> {
    let labels = clean_labels(a.labels, index).map_err(|e| match e {
        formats::ParseError::Invalid { why, .. } => why,
        other => other.to_string(),
    })?;
    let mut alert = Alert::new(Source::Native, labels);
    alert.annotations = a.annotations;
    alert.status = a.status.unwrap_or(Status::Firing);
    alert.severity = a.severity;
    alert.starts_at = given_time(a.starts_at.map(|t| t.0));
    alert.ends_at = given_time(a.ends_at.map(|t| t.0));
    alert.generator_url = non_empty(a.generator_url);
    alert.expires_without_refresh = false;
    Ok(alert)
}

/// A silence of one matcher (Alertmanager syntax), active from a minute ago for an hour.
fn silence_from(
    texts: &[String],
    test: &str,
    now: DateTime<Utc>,
) -> Result<PostableSilence, String> {
    if texts.is_empty() {
        return Err("a silence needs at least one matcher".into());
    }
    let mut matchers = Vec::with_capacity(texts.len());
    for text in texts {
        let m = Matcher::parse(text)?;
        let Target::Label(name) = m.target else {
            return Err(format!(
                "matcher {text:?}: a silence matches labels only, not @source or @annotation"
            ));
        };
        let (is_regex, is_equal) = match m.op {
            Op::Eq => (false, true),
            Op::NotEq => (false, false),
            Op::Re => (true, true),
            Op::NotRe => (true, false),
        };
        matchers.push(SilenceMatcher {
            name,
            value: m.value,
            is_regex,
            is_equal,
        });
    }
    let silence = PostableSilence {
        id: None,
        matchers,
        starts_at: now - chrono::Duration::minutes(1),
        ends_at: now + chrono::Duration::hours(1),
        created_by: "test-rules".into(),
        comment: if test.trim().is_empty() {
            "test-rules".into()
        } else {
            test.to_string()
        },
        status: serde::de::IgnoredAny,
        updated_at: serde::de::IgnoredAny,
    };
    // Refuse here what the pipeline would refuse (a matcher that matches every alert ...).
    Silence::from_postable(silence.clone(), SilenceId::nil(), now)?;
    Ok(silence)
}

/// Run one test; the diff lines (empty: it passed).
fn run_test(config: &Config, test: &Test, now: DateTime<Utc>) -> Result<Vec<String>, ToolError> {
    let mut sim = Simulator::new(config, now).map_err(ToolError::Failed)?;
    let mut diff = Vec::new();
    for (i, silence) in test.silences.iter().enumerate() {
        if let Err(e) = sim.silence(silence.clone()) {
            diff.push(format!("  silence {i} could not be created: {e}"));
        }
    }
    if !diff.is_empty() {
        return Ok(diff);
    }
    let summary = match sim.ingest(test.source, test.alerts.clone()) {
        Ok(summary) => summary,
        Err(e) => return Ok(vec![format!("  the pipeline failed: {e}")]),
    };
    let mut decisions = summary.decisions;
    for decision in &mut decisions {
        super::complete(&sim, decision);
    }
    if decisions.len() != test.expect.len() {
        diff.push(format!(
            "  {} expected, but {} decided (one [[tests.expect]] per input alert)",
            plural(test.expect.len(), "alert"),
            plural(decisions.len(), "alert"),
        ));
    }
    for (i, decision) in decisions.iter().enumerate() {
        let labels = test.alerts.get(i).map_or(&decision.labels, |a| &a.labels);
        let header = format!("  alert {i} {}", show_labels(labels));
        match test.expect.get(i) {
            Some(expect) => {
                let lines = compare(expect, decision);
                if !lines.is_empty() {
                    diff.push(header);
                    diff.extend(lines);
                }
            }
            None => diff.push(format!(
                "{header}\n    not expected: {}{}, rule {}",
                outcome_name(decision.verdict),
                decision.tier.map(|t| format!(" {t}")).unwrap_or_default(),
                quoted(decision.rule())
            )),
        }
    }
    for i in decisions.len()..test.expect.len() {
        diff.push(format!("  expectation {i}: no such alert"));
    }
    Ok(diff)
}

/// `1 alert`, `2 alerts`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `"x"`, or `none`.
fn quoted(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_string(), |v| format!("{v:?}"))
}

fn bare(value: Option<impl Display>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// The mismatches between an expectation and a decision, one line each.
fn compare(expect: &Expect, decision: &Decision) -> Vec<String> {
    let mut lines = Vec::new();
    let mut differs = |field: &str, expected: String, got: String| {
        if expected != got {
            lines.push(format!(
                "    {:<6} expected {expected}, got {got}",
                format!("{field}:")
            ));
        }
    };
    if let Some(outcome) = expect.outcome {
        differs(
            "outcome",
            outcome_name(outcome.verdict()).to_string(),
            outcome_name(decision.verdict).to_string(),
        );
    }
    if let Some(tier) = expect.tier {
        differs("tier", tier.to_string(), bare(decision.tier));
    }
    if let Some(rule) = &expect.rule {
        let expected = (!rule.is_empty()).then_some(rule.as_str());
        differs("rule", quoted(expected), quoted(decision.rule()));
    }
    if let Some(severity) = expect.severity {
        differs("severity", severity.to_string(), bare(decision.severity));
    }
    if let Some(key) = &expect.group_key {
        differs(
            "group_key",
            quoted(Some(key)),
            quoted(decision.group_key.as_deref()),
        );
    }
    if let Some(runbook) = &expect.runbook {
        differs(
            "runbook",
            quoted(Some(runbook)),
            quoted(decision.runbook.as_deref()),
        );
    }
    if let Some(id) = expect.incident {
        differs("incident", id.to_string(), bare(decision.incident));
    }
    if let Some(labels) = &expect.labels {
        let subset = labels
            .iter()
            .all(|(k, v)| decision.set_labels.get(k) == Some(v));
        if !subset {
            differs(
                "labels",
                show_labels(labels),
                show_labels(&decision.set_labels),
            );
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_text(text: &str) -> (Result<bool, ToolError>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.test.toml", text);
        let mut out = Vec::new();
        let result = run(&[path], &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_passing_and_a_failing_test_on_the_embedded_default() {
        let (result, out) = run_text(
            r#"
[[tests]]
name = "watchdog"
alerts = [ { labels = { alertname = "Watchdog" } } ]
[[tests.expect]]
outcome = "dropped"
rule = "watchdog"

[[tests]]
name = "wrong"
alerts = [ { labels = { alertname = "DiskFull", env = "prod" } } ]
[[tests.expect]]
tier = "L3"
rule = ""
labels = { team = "dba" }
"#,
        );
        assert!(!result.unwrap());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ok   watchdog", "{out}");
        assert!(lines[1].starts_with("FAIL wrong  ("), "{out}");
        assert_eq!(lines[2], r#"  alert 0 {alertname="DiskFull", env="prod"}"#);
        assert_eq!(lines[3], "    tier:  expected L3, got L2");
        assert_eq!(
            lines[4],
            r#"    rule:  expected none, got "storage-capacity""#
        );
        assert_eq!(
            lines[5],
            r#"    labels: expected {team="dba"}, got {category="capacity", team="storage"}"#
        );
        assert_eq!(*lines.last().unwrap(), "1 passed, 1 failed");
    }

    #[test]
    fn more_alerts_than_expectations_fail() {
        let (result, out) = run_text(
            r#"
[[tests]]
name = "two alerts, one expect"
input = '[{"labels": {"alertname": "A", "severity": "critical"}}, {"labels": {"alertname": "B"}}]'
format = "alertmanager"
[[tests.expect]]
outcome = "incident"
tier = "L3"
"#,
        );
        assert!(!result.unwrap());
        assert!(
            out.contains("1 alert expected, but 2 alerts decided"),
            "{out}"
        );
        assert!(
            out.contains("not expected: incident L1, rule none"),
            "{out}"
        );
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let (result, _) = run_text(
            "[[tests]]\nname = \"x\"\nalerts = [ { labels = { alertname = \"X\" } } ]\n[[tests.expect]]\noutcom = \"dropped\"\n",
        );
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), 64);
        let text = err.to_string();
        assert!(text.contains("t.test.toml:5: "), "{text}");
        assert!(text.contains("outcom"), "{text}");
    }

    #[test]
    fn input_problems_name_their_line() {
        let (result, _) = run_text(
            "\n[[tests]]\nname = \"none\"\n\n[[tests]]\nname = \"bad body\"\ninput = '[{\"labels\": {}}]'\nformat = \"alertmanager\"\n\n[[tests]]\nname = \"bad silence\"\nalerts = [ { labels = { alertname = \"X\" } } ]\nsilences = ['alertname=~\".*\"']\n",
        );
        let text = result.unwrap_err().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("t.test.toml:2: tests[0]: "), "{text}");
        assert!(lines[0].contains("exactly one of"), "{text}");
        assert!(
            lines[1].contains("t.test.toml:7: tests[1].input: "),
            "{text}"
        );
        assert!(lines[1].contains("labels must not be empty"), "{text}");
        assert!(
            lines[2].contains("t.test.toml:13: tests[2].silences[0]: "),
            "{text}"
        );
    }

    #[test]
    fn a_bad_config_is_reported_as_config_parse_says() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.toml",
            "[dedup]\nresolve_timeout = \"5 minutes\"\n",
        );
        let path = write(
            dir.path(),
            "t.test.toml",
            "config = \"bad.toml\"\n[[tests]]\nname = \"x\"\nalerts = []\n",
        );
        let err = run(&[path], &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("bad.toml:2: "), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn silences_are_built_from_matchers() {
        let now = Utc::now();
        let one = |text: &str| silence_from(&[text.to_string()], "t", now);
        let s = one(r#"service=~"db|cache""#).unwrap();
        assert_eq!(
            s.matchers,
            vec![SilenceMatcher {
                name: "service".into(),
                value: "db|cache".into(),
                is_regex: true,
                is_equal: true,
            }]
        );
        assert_eq!(s.comment, "t");
        assert_eq!(s.created_by, "test-rules");
        let s = one(r#"env!="prod""#);
        assert!(s.unwrap_err().contains("match every alert"));
        assert!(one("@source=\"native\"").is_err());
        assert!(one("no operator").is_err());
        // Several matchers: one silence (QA: the usual `alertname=X instance=Y` could not be
        // written; a negative matcher is scoped by a positive one).
        let s = silence_from(&[r#"env="prod""#.into(), r#"team!="db""#.into()], "t", now).unwrap();
        assert_eq!(
            s.matchers
                .iter()
                .map(|m| (m.name.as_str(), m.is_equal))
                .collect::<Vec<_>>(),
            [("env", true), ("team", false)]
        );
        assert!(silence_from(&[], "t", now).is_err());
    }

    #[test]
    fn toml_times_and_strings_both_read() {
        let a: TomlAlert = toml::from_str(
            "labels = { alertname = \"X\", empty = \"\" }\nstarts_at = 2026-11-26T16:00:00Z\nends_at = \"2026-11-26T17:00:00+01:00\"\n",
        )
        .unwrap();
        let alert = native_alert(a, 0).unwrap();
        assert_eq!(alert.labels, labels_from(&[("alertname", "X")]));
        assert_eq!(alert.starts_at, alert.ends_at);
        let bad = toml::from_str::<TomlAlert>("labels = {}\nstarts_at = 2026-11-26T16:00:00\n");
        assert!(bad.unwrap_err().to_string().contains("invalid time"));
    }
}
