//! Saying a condition that keeps coming once, then at most once per interval with how many
//! times it came meanwhile: a broker or a store that stays down, or a sink waiting for its
//! cursor, would otherwise fill the log (which may be on the disk that is full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a condition that keeps coming is said again, unless a [`Quiet`] says otherwise.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// Conditions said lately, by their text: whether to say one now.
pub struct Quiet {
    every: Duration,
    said: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Default for Quiet {
    fn default() -> Quiet {
        Quiet::every(REPEAT_EVERY)
    }
}

impl Quiet {
    /// Saying each condition at most once per `every`.
    pub fn every(every: Duration) -> Quiet {
        Quiet {
            every,
            said: Mutex::default(),
        }
    }

    /// Whether to log `text` now; if so, how many times it came, unsaid, since it was last
    /// said.
    pub fn say(&self, text: &str, now: Instant) -> Option<u64> {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, held)) = said.get_mut(text) {
            if now.duration_since(*at) < self.every {
                *held += 1;
                return None;
            }
            let held = std::mem::take(held);
            *at = now;
            return Some(held);
        }
        // Texts carry broker addresses and the like: a handful at a time, but bounded anyway.
        if said.len() >= 64 {
            said.clear();
        }
        said.insert(text.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that stays down is said once and then every REPEAT_EVERY with the count held
    /// back; another error is said at once.
    #[test]
    fn an_error_that_keeps_coming_is_said_once_then_at_most_every_repeat_every() {
        let quiet = Quiet::default();
        let t0 = Instant::now();
        let down = "all brokers down";
        assert_eq!(quiet.say(down, t0), Some(0));
        for ms in 1..=200 {
            assert_eq!(quiet.say(down, t0 + Duration::from_millis(ms * 50)), None);
        }
        assert_eq!(quiet.say("connection refused", t0), Some(0));
        assert_eq!(quiet.say(down, t0 + REPEAT_EVERY), Some(200));
        assert_eq!(quiet.say(down, t0 + REPEAT_EVERY), None);
        assert_eq!(quiet.say(down, t0 + 2 * REPEAT_EVERY), Some(1));
    }

    #[test]
    fn a_repeated_condition_is_logged_first_and_then_once_per_interval() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let quiet = Quiet::every(Duration::from_secs(60));
        let logged: Vec<u64> = (0..=130)
            .filter(|&s| quiet.say("waiting", at(s)).is_some())
            .collect();
        assert_eq!(logged, [0, 60, 120]);
    }
}
