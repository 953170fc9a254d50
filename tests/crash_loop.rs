//! Crash-loop proof: load runs against the real daemon while it is killed with SIGKILL at random
//! moments and restarted, again and again. Escalation deadlines are short, so timers fire all
//! through the run, and a webhook sink delivers the outbox to a receiver run by the test. At the
//! end (daemon up, load stopped, receiver drained):
//!
//! - every alert that got a 2xx is stored, in the state of its last answered request (or of a
//!   later one that got no answer: that one may or may not have been applied);
//! - no incident is duplicated (incident ids are unique, one active incident per group key, and
//!   a firing alert's incident is active);
//! - no timer fired twice (no incident escalated twice from one tier by a deadline, and every
//!   escalation starts from the tier the incident was at);
//! - every acknowledgement that got a 2xx is on its incident's timeline;
//! - no outbox event was lost: the receiver got `INC-n:<i>` for every timeline entry `i` of
//!   every incident (repeats are fine: delivery is at-least-once).
//!
//! `TRIAGED_CRASH_LOOPS` sets the number of kills (default 20; the whole test takes about
//! 20-40 s on 2 cores), `TRIAGED_CRASH_SEED` the seed of the random moments and loads (default:
//! from the clock; printed, so a failure can be replayed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};

const CLIENTS: usize = 3;
/// The shared alert groups (alertname, severity): each client posts into every one, with an
/// instance of its own.
const GROUPS: [(&str, &str); 10] = [
    ("CrashDisk", "warning"),
    ("CrashLatency", "major"),
    ("CrashErrors", "warning"),
    ("CrashDown", "critical"),
    ("CrashQueue", "minor"),
    ("CrashCert", "warning"),
    ("CrashMemory", "major"),
    ("CrashReplica", "warning"),
    ("CrashBackup", "minor"),
    ("CrashDns", "warning"),
];
/// How long the outbox and the deadlines get to settle after the load stops.
const SETTLE: Duration = Duration::from_secs(90);

/// SplitMix64: a small seeded generator, so a run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// 2xx: durable.
    Ok,
    /// Sent, and no 2xx came back (an error answer, a reset, a kill mid-request): it may or
    /// may not have been applied.
    Unknown,
}

/// One alert as one request carried it.
#[derive(Debug, Clone)]
struct Sent {
    fingerprint: String,
    status: &'static str,
    answer: Answer,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    unknown: AtomicU64,
    not_sent: AtomicU64,
}

/// Send one request to the daemon's current address. `None`: it could not even connect (the
/// daemon is down between a kill and its restart), so nothing was sent.
fn send(addr: &RwLock<String>, method: &str, path: &str, body: &Value) -> Option<Answer> {
    let addr = addr.read().unwrap().clone();
    let body = serde_json::to_vec(body).unwrap();
    match try_request(
        &addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
    ) {
        Ok(r) if (200..300).contains(&r.status) => Some(Answer::Ok),
        Ok(_) => Some(Answer::Unknown),
        Err(e) if e.starts_with("connect to ") => None,
        Err(_) => Some(Answer::Unknown),
    }
}

/// A client: posts 1-3 alerts at a time, firing or resolved, from label sets of its own (each
/// fingerprint belongs to one client, so its requests are ordered).
fn client(
    id: usize,
    seed: u64,
    addr: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<Sent> {
    let mut rng = Rng(seed);
    // Hot: the shared groups, with one instance of this client's each; busy, so their
    // incidents resolve and reopen all the time. Cold: groups of this client's own, made as it
    // goes and touched now and then, so their incidents sit through their deadlines, and open
    // anew after `dedup.reopen_window`.
    let hot: Vec<Value> = GROUPS
        .iter()
        .map(|(name, severity)| {
            labels(&[
                ("alertname", name),
                ("service", "crash"),
                ("severity", severity),
                ("instance", &format!("c{id}")),
            ])
        })
        .collect();
    let mut cold: Vec<Value> = Vec::new();
    let mut log = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut chosen: Vec<(Value, bool)> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (labels, is_hot) = if cold.is_empty() || rng.percent(4) {
                let severity = ["warning", "major", "minor"][rng.below(3) as usize];
                cold.push(labels(&[
                    ("alertname", &format!("CrashNew{id}x{}", cold.len())),
                    ("service", "crash"),
                    ("severity", severity),
                ]));
                (cold[cold.len() - 1].clone(), false)
            } else if rng.percent(50) {
                (hot[rng.below(hot.len() as u64) as usize].clone(), true)
            } else {
                (cold[rng.below(cold.len() as u64) as usize].clone(), false)
            };
            if !chosen.iter().any(|(l, _)| *l == labels) {
                chosen.push((labels, is_hot));
            }
        }
        let alerts: Vec<(String, &'static str, Value)> = chosen
            .into_iter()
            .map(|(labels, is_hot)| {
                let status = if rng.percent(if is_hot { 50 } else { 30 }) {
                    "resolved"
                } else {
                    "firing"
                };
                (fingerprint(&labels), status, labels)
            })
            .collect();
        let body = json!({"alerts": alerts
            .iter()
            .map(|(_, status, labels)| json!({"labels": labels, "status": status}))
            .collect::<Vec<_>>()});
        match send(&addr, "POST", "/api/v1/alerts", &body) {
            Some(answer) => {
                let counter = match answer {
                    Answer::Ok => &tally.ok,
                    Answer::Unknown => &tally.unknown,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                for (fingerprint, status, _) in alerts {
                    log.push(Sent {
                        fingerprint,
                        status,
                        answer,
                    });
                }
            }
            None => {
                tally.not_sent.fetch_add(1, Ordering::Relaxed);
                // Pace the retries while the daemon restarts.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log
}

/// An operator: acknowledges an open incident now and then, each time as a new actor, so each
/// acknowledgement can be found on its timeline. Returns the (incident, actor) pairs that got
/// a 2xx.
fn operator(seed: u64, addr: Arc<RwLock<String>>, stop: Arc<AtomicBool>) -> Vec<(String, String)> {
    let mut rng = Rng(seed);
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        // Pacing: an operator acknowledges a few incidents a second.
        thread::sleep(Duration::from_millis(80));
        let current = addr.read().unwrap().clone();
        let Ok(r) = try_request(&current, "GET", "/api/v1/incidents?state=open", &[], b"") else {
            continue;
        };
        let Ok(list) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        let Some(open) = list["incidents"].as_array().filter(|a| !a.is_empty()) else {
            continue;
        };
        let id = open[rng.below(open.len() as u64) as usize]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        n += 1;
        let actor = format!("op-{n}");
        let path = format!("/api/v1/incidents/{id}/ack");
        if send(&addr, "POST", &path, &json!({"actor": actor})) == Some(Answer::Ok) {
            acked.push((id, actor));
        }
    }
    acked
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged_and_duplicates_nothing() {
    let loops: usize = std::env::var("TRIAGED_CRASH_LOOPS")
        .ok()
        .map(|v| v.parse().expect("TRIAGED_CRASH_LOOPS is a number"))
        .unwrap_or(20);
    let seed: u64 = std::env::var("TRIAGED_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("TRIAGED_CRASH_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash loop: {loops} kills, seed {seed} (TRIAGED_CRASH_SEED={seed} replays it)");
    let started = Instant::now();

    let receiver = Receiver::start();
    let mut d = Daemon::with(&format!(
        r#"
[dedup]
reopen_window = "2s"

[escalation.L1]
ack_timeout = "1s"
resolve_timeout = "3s"
next = "L2"

[escalation.L2]
ack_timeout = "1s"
resolve_timeout = "2s"
next = "L3"

[flapping]
max_changes = 1000000

[[notify.webhook]]
name = "crash"
url = "{}"
timeout = "2s"
max_backoff = "500ms"
"#,
        receiver.url()
    ));

    let addr = Arc::new(RwLock::new(d.addr.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut rng = Rng(seed);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addr, stop, tally) = (addr.clone(), stop.clone(), tally.clone());
            let seed = rng.next();
            thread::spawn(move || client(id, seed, addr, stop, tally))
        })
        .collect();
    let operator = {
        let (addr, stop) = (addr.clone(), stop.clone());
        let seed = rng.next();
        thread::spawn(move || operator(seed, addr, stop))
    };

    for _ in 0..loops {
        // A random moment: the load runs this long, then the daemon dies mid-whatever.
        thread::sleep(Duration::from_millis(100 + rng.below(600)));
        d.kill9();
        d.restart();
        *addr.write().unwrap() = d.addr.clone();
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let sent: Vec<Sent> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client panicked"))
        .collect();
    let acks = operator.join().expect("the operator panicked");
    assert!(d.is_running(), "the daemon died by itself");

    // ---- every 2xx'd alert is stored, in a state it may be in ------------------------------
    let mut by_fingerprint: BTreeMap<&str, Vec<&Sent>> = BTreeMap::new();
    for s in &sent {
        by_fingerprint.entry(&s.fingerprint).or_default().push(s);
    }
    let all = d.all_incidents("");
    let incidents: BTreeMap<String, &Value> = all
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i))
        .collect();
    assert_eq!(incidents.len(), all.len(), "an incident id repeats");
    let mut alerts_checked = 0;
    for (fp, history) in &by_fingerprint {
        let Some(last_ok) = history.iter().rposition(|s| s.answer == Answer::Ok) else {
            continue;
        };
        let possible: BTreeSet<&str> = history[last_ok..].iter().map(|s| s.status).collect();
        let (status, alert) = d.alert(fp);
        assert_eq!(
            status, 200,
            "alert {fp} got a 2xx and is gone (seed {seed}): {alert}"
        );
        let now = alert["status"].as_str().unwrap_or_default();
        assert!(
            possible.contains(now),
            "alert {fp} is {now}, but its last answered request said {} and later ones {possible:?} (seed {seed})",
            history[last_ok].status
        );
        if now == "firing" {
            let id = alert["incident"].as_str().unwrap_or_else(|| {
                panic!("firing alert {fp} in no incident (seed {seed}): {alert}")
            });
            let incident = incidents
                .get(id)
                .unwrap_or_else(|| panic!("alert {fp} names {id}, which is not listed"));
            assert_ne!(
                incident["state"], "resolved",
                "a firing alert's incident is resolved (seed {seed}): {alert} {incident}"
            );
        }
        alerts_checked += 1;
    }
    assert!(alerts_checked > 0, "no alert ever got a 2xx");

    // ---- no incident duplicated ----------------------------------------------------------------
    let mut active_by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in &all {
        if i["state"] != "resolved" {
            active_by_group
                .entry(i["group_key"].as_str().unwrap())
                .or_default()
                .push(i["id"].as_str().unwrap());
        }
    }
    for (group, ids) in &active_by_group {
        assert_eq!(
            ids.len(),
            1,
            "group {group} has several active incidents: {ids:?}"
        );
    }

    // ---- the deadlines settle, the receiver drains; timelines and the outbox are checked ------
    let mut events = 0;
    let mut timer_escalations = 0;
    let timelines = poll_until_for("every event delivered", SETTLE, || {
        let mut expected = BTreeSet::new();
        let mut timelines = BTreeMap::new();
        for id in d
            .all_incidents("")
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
        {
            let inc = d.incident(&id);
            let timeline = inc["timeline"].as_array().unwrap().clone();
            for i in 0..timeline.len() {
                expected.insert(format!("{id}:{i}"));
            }
            timelines.insert(id, (inc["opened_tier"].clone(), timeline));
        }
        let delivered: BTreeSet<String> = receiver.delivered_ids().into_iter().collect();
        let missing: Vec<&String> = expected.difference(&delivered).collect();
        if missing.is_empty() {
            Ok(timelines)
        } else {
            Err(format!(
                "{} events not delivered, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ))
        }
    });
    for (id, (opened_tier, timeline)) in &timelines {
        events += timeline.len();
        let mut tier = opened_tier.as_str().unwrap().to_string();
        let mut fired_from = BTreeSet::new();
        for e in timeline {
            if e["kind"] != "escalated" {
                continue;
            }
            let from = e["from"].as_str().unwrap();
            assert_eq!(
                from, tier,
                "{id} escalated from {from} while at {tier} (seed {seed}): {timeline:?}"
            );
            tier = e["to"].as_str().unwrap().to_string();
            let reason = e["reason"].as_str().unwrap_or_default();
            if reason == "ack_timeout" || reason == "resolve_timeout" {
                timer_escalations += 1;
                assert!(
                    fired_from.insert(from.to_string()),
                    "{id}: a deadline fired twice at {from} (seed {seed}): {timeline:?}"
                );
            }
        }
    }
    for (id, actor) in &acks {
        let (_, timeline) = &timelines[id];
        assert!(
            timeline
                .iter()
                .any(|e| e["kind"] == "acknowledged" && e["actor"] == actor.as_str()),
            "{id}: the acknowledgement by {actor} got a 2xx and is not on the timeline (seed {seed})"
        );
    }

    eprintln!(
        "crash loop summary: seed {seed}, {loops} kills in {:.1}s; requests: {} ok, {} unknown, {} not sent (daemon down); \
         {alerts_checked} alerts acknowledged and found, {} incidents, {} acknowledgements, {events} events delivered \
         ({} deliveries), {timer_escalations} escalations by deadline",
        started.elapsed().as_secs_f64(),
        tally.ok.load(Ordering::Relaxed),
        tally.unknown.load(Ordering::Relaxed),
        tally.not_sent.load(Ordering::Relaxed),
        timelines.len(),
        acks.len(),
        receiver.delivered().len(),
    );
    assert!(
        timer_escalations > 0,
        "no deadline fired: the run tested no timer"
    );
}
