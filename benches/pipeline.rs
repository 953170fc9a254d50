//! Micro-benchmarks of the pure pipeline: what the writer does per alert before anything touches
//! sled or the network.
//!
//! ```text
//! cargo bench --bench pipeline              # 15 rounds, about a minute
//! cargo bench --bench pipeline -- --quick   # 5 rounds
//! cargo bench --bench pipeline -- rules/    # only the cases whose name contains "rules/"
//! cargo test --profile test-release --bench pipeline  # one pass of each, checking what they compute
//! ```
//!
//! The input is what `benches/loadgen` sends: Alertmanager API v2 bodies of 100 alerts, 1,000
//! distinct label sets (20 alert names × 50 services, one instance each, severity tied to the
//! alert name: critical 20 %, warning 50 %, info 30 %), with a `team` label, a summary, times
//! and a generator URL. The cases:
//!
//! - `ceiling`: `sources::formats::alertmanager::parse` + `Fingerprint::of`, per alert: what
//!   reading the body costs at least.
//! - `parse/auto`: the same through `sources::formats::parse` without a format, as a Kafka
//!   topic of the default `format = "auto"` reads each message: the format told from the body's
//!   shape, then the body read in it.
//! - `pipeline/repeat`: parse, normalize (fingerprint, severity), dedup against an in-memory
//!   map of what was seen (the writer's overlay and its hasher, here never missing), classify
//!   with the shipped default rules, triage (severity, tier, expiry), and the record update of a
//!   repeat, as the writer does it. Every label set has been seen: the steady state of
//!   Prometheus re-sending.
//! - `pipeline/first`: the same with the map emptied before each pass, so every alert fires for
//!   the first time: a new record and, unless L0, its group key. Incidents are not modelled
//!   (they live in the store), so neither is what only opening one builds.
//! - `rules/N/scan` and `rules/N/indexed`: `Rules::classify_scan` (every rule tested in order)
//!   and `Rules::classify` (only the candidates the rule index names), with N = 10, 100, 1,000
//!   generated rules (see [`rule_set`]), per alert.
//!
//! Rounds run the cases one after the other, so that a busy machine slows them alike; the
//! report gives each case's median over the rounds and the ratios of medians. Nothing here
//! asserts a time: `cargo test` runs one pass and checks the results only.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use triaged::alert::{AlertRecord, FastMap, Fingerprint, NormalizedAlert, Source, Status};
use triaged::config::Config;
use triaged::incident::{group_key, Tier};
use triaged::pipeline::classify::Rules;
use triaged::pipeline::dedup::{self, Seen};
use triaged::pipeline::{new_record, record_repeat, triage, Policy};
use triaged::sources::formats::{self, alertmanager};

/// The daemon's allocator (`src/main.rs`): what the writer allocates with, so the costs here are
/// its costs. Without it the allocations of a first sighting took glibc's malloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const LABEL_SETS: usize = 1_000;
const BATCH: usize = 100;
const RULE_COUNTS: [usize; 3] = [10, 100, 1_000];
/// Each timed sample runs a case this long (the pass count is calibrated once).
const SAMPLE: Duration = Duration::from_millis(40);

/// The fixed "now" of the run: alerts start at it and end 5 minutes later.
fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().expect("a valid time")
}

/// Alert `i` of the 1,000 label sets, as Prometheus posts it.
fn alert_json(i: usize) -> serde_json::Value {
    let rule = i % 20;
    let alertname = format!("LoadgenAlert{rule:02}");
    let service = format!("svc-{:03}", (i / 20) % 50);
    let instance = format!("host-{i:07}:9100");
    let severity = match rule % 10 {
        0 | 1 => "critical",
        2..=6 => "warning",
        _ => "info",
    };
    let starts = now();
    let ends = starts + chrono::Duration::minutes(5);
    serde_json::json!({
        "labels": {
            "alertname": alertname,
            "service": service,
            "instance": instance,
            "severity": severity,
            "team": format!("team-{}", (i / 20) % 10),
        },
        "annotations": {
            "summary": format!("{alertname} firing on {instance} ({service})"),
        },
        "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "generatorURL": format!("http://prometheus.loadgen:9090/graph?g0.expr=loadgen_rule_{rule:02}%3E0&g0.tab=1"),
    })
}

/// The 1,000 label sets as bodies of 100 alerts.
fn bodies() -> Vec<Vec<u8>> {
    (0..LABEL_SETS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            let alerts: Vec<_> = chunk.iter().map(|&i| alert_json(i)).collect();
            serde_json::to_vec(&alerts).expect("serializing JSON values")
        })
        .collect()
}

/// xorshift64*: deterministic rule sets without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// `n` rules as SREs write them, on the labels the alerts carry, each kind in turn:
///
/// | share | matchers | sets |
/// |---|---|---|
/// | 30 % | `alertname="A"`, `service="S"` | tier, runbook |
/// | 20 % | `service="S"`, `severity=~"critical\|major"` | `team`, `continue` |
/// | 20 % | `team="T"`, `instance=~"host-0000NN.*"` | severity |
/// | 20 % | `alertname=~"A1\|A2"`, `severity!="info"` | tier |
/// | 10 % | `instance=~"db-.*"`, `service!~"svc-00.*"` | runbook |
///
/// Names, services and teams are drawn from 5× as many values as the alerts use, so each rule
/// matches few alerts and the scan goes through much of the list before the first match (or
/// all of it): the costly case. The last kind (a regex and a negation only) can be filed under
/// no label by the index: those rules stay candidates for every alert.
fn rule_set(n: usize) -> Rules {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ n as u64);
    let mut toml = String::new();
    for i in 0..n {
        let name = |rng: &mut Rng| format!("LoadgenAlert{:02}", rng.below(100));
        let service = |rng: &mut Rng| format!("svc-{:03}", rng.below(250));
        let (matchers, sets) = match i % 10 {
            0..=2 => (
                format!(
                    r#"'alertname="{}"', 'service="{}"'"#,
                    name(&mut rng),
                    service(&mut rng)
                ),
                format!(
                    "tier = \"L{}\"\nrunbook = \"https://runbooks.example/{i}\"",
                    1 + i % 3
                ),
            ),
            3 | 4 => (
                format!(
                    r#"'service="{}"', 'severity=~"critical|major"'"#,
                    service(&mut rng)
                ),
                format!(
                    "set_labels = {{ team = \"team-{}\" }}\ncontinue = true",
                    rng.below(50)
                ),
            ),
            5 | 6 => (
                format!(
                    r#"'team="team-{}"', 'instance=~"host-0000{:02}.*"'"#,
                    rng.below(50),
                    rng.below(100)
                ),
                "severity = \"major\"".to_string(),
            ),
            7 | 8 => (
                format!(
                    r#"'alertname=~"{}|{}"', 'severity!="info"'"#,
                    name(&mut rng),
                    name(&mut rng)
                ),
                format!("tier = \"L{}\"", 1 + i % 3),
            ),
            _ => (
                format!(
                    r#"'instance=~"db-{}.*"', 'service!~"svc-00.*"'"#,
                    rng.below(100)
                ),
                format!("runbook = \"https://runbooks.example/db/{i}\""),
            ),
        };
        toml.push_str(&format!(
            "[[rules]]\nname = \"rule-{i:04}\"\nmatchers = [{matchers}]\n{sets}\n\n"
        ));
    }
    Config::parse(&toml, "generated rules")
        .expect("the generated rules are valid")
        .compile_rules()
        .expect("the generated rules compile")
}

/// The writer's overlay of what was seen, and the policy it decides with.
struct Pipeline {
    policy: Policy,
    seen: FastMap<Fingerprint, AlertRecord>,
}

/// What one pass of the pipeline did, to check the benchmark computes what it should.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    alerts: usize,
    fires: usize,
    repeats: usize,
    auto_handled: usize,
    dropped: usize,
    group_key_bytes: usize,
}

impl Pipeline {
    fn new() -> Pipeline {
        Pipeline {
            policy: Policy::from_config(&Config::embedded_default()).expect("the default policy"),
            seen: FastMap::default(),
        }
    }

    /// One body through the pure pipeline, as the writer's `ingest_one` spells it: normalize ►
    /// dedup ► classify ► triage ► record (new, or updated as a repeat).
    fn ingest(&mut self, body: &[u8], now: DateTime<Utc>, tally: &mut Tally) {
        let alerts = alertmanager::parse(body).expect("a valid body");
        let policy = &self.policy;
        for alert in alerts {
            tally.alerts += 1;
            let mut alert = alert.normalize(&policy.exclude_labels, &policy.severities, now);
            let fp = alert.fingerprint;
            let seen = dedup::observe(self.seen.get(&fp), alert.alert.status);
            // As the writer: the labels move into the classification, then into the record.
            let labels = std::mem::take(&mut alert.alert.labels);
            let mut class = policy.rules.classify_labels(labels, &alert);
            if class.dropped_by.is_some() {
                tally.dropped += 1;
                continue;
            }
            let severity = triage::severity(&alert, &class);
            let tier = triage::tier(severity, &class, &policy.tiers);
            let expires_at = triage::expiry(&alert, policy.resolve_timeout);
            match (seen, self.seen.get_mut(&fp)) {
                (Seen::Repeats, Some(record)) => {
                    tally.repeats += 1;
                    // The writer's repeat (its timer aside, which the store keeps).
                    record.expires_at = expires_at;
                    black_box(record_repeat(record, alert, (severity, tier), now));
                    black_box(&class);
                }
                _ => {
                    tally.fires += 1;
                    let record = new_record(
                        alert,
                        Source::Alertmanager,
                        std::mem::take(&mut class.labels),
                        std::mem::take(&mut class.rules),
                        (severity, tier, expires_at),
                        now,
                    );
                    if tier == Tier::L0 {
                        tally.auto_handled += 1;
                    } else {
                        let group_by = class.group_by.as_deref().unwrap_or(&policy.group_by);
                        let key = group_key(&record.labels, group_by);
                        tally.group_key_bytes += key.len();
                        black_box(key);
                    }
                    self.seen.insert(record.fingerprint, record);
                }
            }
        }
    }
}

/// One benchmark: `run` does one pass and returns how many alerts it handled.
struct Case {
    name: String,
    run: Box<dyn FnMut() -> usize>,
    passes: u32,
    samples: Vec<f64>,
}

impl Case {
    fn new(name: impl Into<String>, run: impl FnMut() -> usize + 'static) -> Case {
        Case {
            name: name.into(),
            run: Box::new(run),
            passes: 1,
            samples: Vec::new(),
        }
    }

    /// Warm up, and find how many passes fill one sample.
    fn calibrate(&mut self) {
        let started = Instant::now();
        let mut passes = 0u32;
        while started.elapsed() < SAMPLE {
            black_box((self.run)());
            passes += 1;
        }
        self.passes = passes.max(1);
    }

    /// One timed sample, in ns per alert.
    fn sample(&mut self) {
        let started = Instant::now();
        let mut alerts = 0;
        for _ in 0..self.passes {
            alerts += black_box((self.run)());
        }
        let ns = started.elapsed().as_nanos() as f64;
        self.samples.push(ns / alerts.max(1) as f64);
    }

    fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }
}

/// The cases whose name contains one of `filters` (all without filters).
fn cases(
    bodies: &'static [Vec<u8>],
    alerts: &'static [NormalizedAlert],
    filters: &[&String],
) -> Vec<Case> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut cases = vec![Case::new("ceiling", move || {
        let mut n = 0;
        for body in bodies {
            for alert in alertmanager::parse(body).expect("a valid body") {
                black_box(Fingerprint::of(&alert.labels, &[]));
                n += 1;
            }
        }
        n
    })];
    cases.push(Case::new("parse/auto", move || {
        let mut n = 0;
        for body in bodies {
            let parsed = formats::parse(None, body, now()).expect("a valid body");
            let (source, alerts) = parsed.into_alerts();
            assert_eq!(source, Source::Alertmanager);
            for alert in alerts {
                black_box(Fingerprint::of(&alert.labels, &[]));
                n += 1;
            }
        }
        n
    }));
    let mut repeat = Pipeline::new();
    cases.push(Case::new("pipeline/repeat", move || {
        let mut tally = Tally::default();
        for body in bodies {
            repeat.ingest(body, now(), &mut tally);
        }
        tally.alerts
    }));
    let mut first = Pipeline::new();
    cases.push(Case::new("pipeline/first", move || {
        first.seen.clear();
        let mut tally = Tally::default();
        for body in bodies {
            first.ingest(body, now(), &mut tally);
        }
        tally.alerts
    }));
    for n in RULE_COUNTS {
        if !wanted(&format!("rules/{n}/scan")) && !wanted(&format!("rules/{n}/indexed")) {
            continue;
        }
        let rules: &'static Rules = Box::leak(Box::new(rule_set(n)));
        cases.push(Case::new(format!("rules/{n}/scan"), move || {
            for a in alerts {
                black_box(rules.classify_scan(a));
            }
            alerts.len()
        }));
        cases.push(Case::new(format!("rules/{n}/indexed"), move || {
            for a in alerts {
                black_box(rules.classify(a));
            }
            alerts.len()
        }));
    }
    cases.retain(|c| wanted(&c.name));
    cases
}

/// The 1,000 alerts, normalized: what classification sees.
fn normalized(bodies: &[Vec<u8>]) -> Vec<NormalizedAlert> {
    let policy = Policy::from_config(&Config::embedded_default()).expect("the default policy");
    bodies
        .iter()
        .flat_map(|b| alertmanager::parse(b).expect("a valid body"))
        .map(|a| a.normalize(&policy.exclude_labels, &policy.severities, now()))
        .collect()
}

/// `cargo test`: one pass of each, and what they compute checked.
fn check(bodies: &[Vec<u8>], alerts: &[NormalizedAlert]) {
    let fingerprints: std::collections::HashSet<_> = alerts.iter().map(|a| a.fingerprint).collect();
    assert_eq!(fingerprints.len(), LABEL_SETS, "distinct label sets");
    assert!(alerts.iter().all(|a| a.alert.status == Status::Firing));

    let mut p = Pipeline::new();
    let mut first = Tally::default();
    for body in bodies {
        p.ingest(body, now(), &mut first);
    }
    // 6 of 20 alert names are info (L0); every other alert opens or joins an incident.
    let expected_first = Tally {
        alerts: LABEL_SETS,
        fires: LABEL_SETS,
        repeats: 0,
        auto_handled: 300,
        dropped: 0,
        group_key_bytes: first.group_key_bytes,
    };
    assert_eq!(first, expected_first);
    assert!(first.group_key_bytes > 0);
    let mut again = Tally::default();
    for body in bodies {
        p.ingest(body, now(), &mut again);
    }
    assert_eq!((again.fires, again.repeats), (0, LABEL_SETS));
    assert!(p.seen.values().all(|r| r.count == 2));

    for n in RULE_COUNTS {
        let rules = rule_set(n);
        assert_eq!(rules.rules().len(), n);
        let mut matched = 0;
        for a in alerts {
            let scan = rules.classify_scan(a);
            assert_eq!(
                rules.classify(a),
                scan,
                "{n} rules, alert {:?}",
                a.alert.labels
            );
            matched += usize::from(!scan.rules.is_empty());
        }
        println!(
            "rules/{n}: {matched} of {} alerts match a rule",
            alerts.len()
        );
        assert!(
            matched > 0,
            "{n} rules match nothing: the benchmark would measure no work"
        );
    }
    println!("pipeline bench: every case computes what it should (cargo bench --bench pipeline times them)");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bodies: &'static [Vec<u8>] = Box::leak(bodies().into_boxed_slice());
    let alerts: &'static [NormalizedAlert] = Box::leak(normalized(bodies).into_boxed_slice());
    if !args.iter().any(|a| a == "--bench") {
        check(bodies, alerts);
        return;
    }
    let rounds = if args.iter().any(|a| a == "--quick") {
        5
    } else {
        15
    };

    println!("pipeline micro-benchmarks: {} bodies of {BATCH} alerts, {LABEL_SETS} label sets, {rounds} rounds", bodies.len());
    println!(
        "date {}, {} CPUs, {}, load average {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_else(|| "unknown CPU".into()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "?".into()),
    );
    // Arguments other than flags select cases by name (for profiling one case).
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let mut cases = cases(bodies, alerts, &filters);
    for case in &mut cases {
        case.calibrate();
    }
    for _ in 0..rounds {
        for case in &mut cases {
            case.sample();
        }
    }

    println!();
    println!(
        "{:<20} {:>12} {:>14} {:>12} {:>12}",
        "case", "ns/alert", "alerts/s", "min ns", "max ns"
    );
    let mut median = HashMap::new();
    for case in &cases {
        let m = case.median();
        median.insert(case.name.clone(), m);
        let min = case.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = case.samples.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<20} {:>12.0} {:>14.0} {:>12.0} {:>12.0}",
            case.name,
            m,
            1e9 / m,
            min,
            max
        );
    }
    let m = |name: &str| median.get(name).copied().unwrap_or(f64::NAN);
    println!();
    for which in ["repeat", "first"] {
        let p = m(&format!("pipeline/{which}"));
        if p.is_nan() || m("ceiling").is_nan() {
            continue;
        }
        println!(
            "RESULT pipeline/{which}: {:.0} alerts/s = {:.0} % of the parse+fingerprint ceiling ({:.0} alerts/s); target >= 50 %",
            1e9 / p,
            100.0 * m("ceiling") / p,
            1e9 / m("ceiling"),
        );
    }
    if !m("parse/auto").is_nan() && !m("ceiling").is_nan() {
        println!(
            "RESULT parse/auto: {:.0} alerts/s = {:.0} % of the ceiling: telling the format costs {:.0} ns an alert",
            1e9 / m("parse/auto"),
            100.0 * m("ceiling") / m("parse/auto"),
            m("parse/auto") - m("ceiling"),
        );
    }
    for n in RULE_COUNTS {
        let (scan, indexed) = (
            m(&format!("rules/{n}/scan")),
            m(&format!("rules/{n}/indexed")),
        );
        if scan.is_nan() || indexed.is_nan() {
            continue;
        }
        println!(
            "RESULT rules/{n}: scan {scan:.0} ns/alert, indexed {indexed:.0} ns/alert ({:.1}x faster); per rule: scan {:.1} ns, indexed {:.1} ns",
            scan / indexed,
            scan / n as f64,
            indexed / n as f64,
        );
    }
}
