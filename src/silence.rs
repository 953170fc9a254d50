//! Silences, in Alertmanager API v2's shape so that `amtool silence` and Grafana manage them:
//! time-boxed label matchers that suppress without dropping. A silenced alert is stored and
//! counted but opens and escalates nothing; when the silence ends, alerts still firing are
//! triaged normally.
//!
//! This module owns the model, its validation and matching. Applying silences is the pipeline's
//! job; storing them is the store's.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{check_readable, Labels};
use crate::pipeline::classify::{Matcher, Op, Target};

/// A silence's id: a UUID, as Alertmanager's.
pub type SilenceId = uuid::Uuid;

/// One matcher as the Alertmanager API writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// `false` negates (`!=`, `!~`); absent means `true`, as older clients omit it.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

impl SilenceMatcher {
    pub fn op(&self) -> Op {
        match (self.is_regex, self.is_equal) {
            (false, true) => Op::Eq,
            (false, false) => Op::NotEq,
            (true, true) => Op::Re,
            (true, false) => Op::NotRe,
        }
    }
}

fn yes() -> bool {
    true
}

/// The body of `POST /api/v2/silences`; with an `id`, it replaces that silence.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(deserialize_with = "crate::sources::formats::objects")]
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    /// `status` and `updatedAt`, the read-only fields of the form `GET` shows: accepted and
    /// ignored, as Alertmanager ignores them, so that a silence fetched can be posted back
    /// edited. Every other unknown field is still refused.
    #[serde(default)]
    pub status: serde::de::IgnoredAny,
    #[serde(default)]
    pub updated_at: serde::de::IgnoredAny,
}

impl PostableSilence {
    /// Read the body of `POST /api/v2/silences`: one JSON object, its matchers objects too
    /// (serde would also take arrays, fields by position).
    pub fn from_json(body: &[u8]) -> Result<PostableSilence, serde_json::Error> {
        crate::sources::formats::from_object(body, "a JSON object")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: SilenceId,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub updated_at: DateTime<Utc>,
}

/// A silence as `GET /api/v2/silences` shows it: with its state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableSilence<'a> {
    pub status: Status,
    #[serde(flatten)]
    pub silence: &'a Silence,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: SilenceState,
}

impl Silence {
    /// Validate a posted silence and make it a stored one (new id unless it replaces `existing`).
    pub fn from_postable(
        p: PostableSilence,
        id: SilenceId,
        now: DateTime<Utc>,
    ) -> Result<Silence, String> {
        check_readable("startsAt", p.starts_at)?;
        check_readable("endsAt", p.ends_at)?;
        if p.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if p.ends_at <= p.starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if p.ends_at <= now {
            return Err("endsAt must be in the future".into());
        }
        if p.created_by.trim().is_empty() {
            return Err("createdBy must not be empty".into());
        }
        if p.comment.trim().is_empty() {
            return Err("comment must not be empty".into());
        }
        // Times are kept to the millisecond, the precision of the timer that ends the silence.
        let silence = Silence {
            id,
            matchers: p.matchers,
            starts_at: p.starts_at.trunc_subsecs(3),
            ends_at: p.ends_at.trunc_subsecs(3),
            created_by: p.created_by,
            comment: p.comment,
            updated_at: now,
        };
        silence.compile()?;
        // Alertmanager refuses silences that would match every alert.
        if silence
            .compile()?
            .iter()
            .all(|m| m.matches_labels(&Labels::new()))
        {
            return Err("the matchers match every alert, even one without labels".into());
        }
        Ok(silence)
    }

    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now >= self.ends_at {
            SilenceState::Expired
        } else if now < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    pub fn gettable(&self, now: DateTime<Utc>) -> GettableSilence<'_> {
        GettableSilence {
            status: Status {
                state: self.state(now),
            },
            silence: self,
        }
    }

    pub fn compile(&self) -> Result<Vec<Matcher>, String> {
        self.matchers
            .iter()
            .map(|m| {
                Matcher::label(&m.name, m.op(), &m.value)
                    .map_err(|e| format!("matcher {:?}: {e}", m.name))
            })
            .collect()
    }

    /// Whether `GET /api/v2/silences` lists it for these `filter` matchers, as Alertmanager
    /// decides it (`CheckSilenceMatchesFilterLabels`, the same in 0.25 and since): for every
    /// filter matcher the silence has a matcher of the same label, operator and value, written
    /// alike (`alertname=~"Disk.*"` lists the silence made with that regex, not one on
    /// `alertname="DiskFull"`). No filter lists every silence.
    pub fn listed_by(&self, filter: &[Matcher]) -> bool {
        filter.iter().all(|f| {
            self.matchers.iter().any(|m| {
                matches!(&f.target, Target::Label(name) if *name == m.name)
                    && f.op == m.op()
                    && f.value == m.value
            })
        })
    }
}

/// A silence with its matchers compiled, as the writer keeps it.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub silence: Silence,
    pub matchers: Vec<Matcher>,
}

impl Compiled {
    pub fn new(silence: Silence) -> Result<Compiled, String> {
        let matchers = silence.compile()?;
        Ok(Compiled { silence, matchers })
    }

    /// Active at `now` and every matcher matches.
    pub fn silences(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        self.silence.state(now) == SilenceState::Active
            && self.matchers.iter().all(|m| m.matches_labels(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;
    use serde::de::IgnoredAny;

    const AMTOOL: &[u8] = include_bytes!("../tests/fixtures/amtool-0.25-silence-add.json");

    #[test]
    fn amtools_silence_reads_and_matches() {
        let posted = PostableSilence::from_json(AMTOOL).unwrap();
        let now: DateTime<Utc> = "2026-11-26T16:30:00Z".parse().unwrap();
        let s = Compiled::new(Silence::from_postable(posted, SilenceId::new_v4(), now).unwrap())
            .unwrap();
        assert!(s.silences(&labels(&[("alertname", "CaptureAmtool")]), now));
        assert!(!s.silences(&labels(&[("alertname", "Other")]), now));
        let after: DateTime<Utc> = "2026-11-26T18:12:43.032Z".parse().unwrap();
        assert_eq!(s.silence.state(after), SilenceState::Expired);
        assert!(!s.silences(&labels(&[("alertname", "CaptureAmtool")]), after));
    }

    /// serde's derived structs take a JSON array too, fields by position: a silence, and each
    /// of its matchers, is read from an object only.
    #[test]
    fn a_silence_and_its_matchers_are_objects_not_arrays() {
        let matcher = r#"{"name":"alertname","value":"X","isRegex":false}"#;
        let times = r#""2026-11-26T16:12:43Z","2026-11-26T18:12:43Z""#;
        for body in [
            // The QA report's body: fields by position.
            format!(r#"[null,[{matcher}],{times},"me","c"]"#),
            format!(r#"[null,[["alertname","X",false,true]],{times},"me","c"]"#),
            r#"{"matchers":[["alertname","X",false,true]],"startsAt":"2026-11-26T16:12:43Z","endsAt":"2026-11-26T18:12:43Z","createdBy":"me","comment":"c"}"#
                .to_string(),
        ] {
            let err = PostableSilence::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(
                err.classify(),
                serde_json::error::Category::Data,
                "{body}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("expected a JSON object at line 1 column "),
                "{body}: {err}"
            );
        }
        let object = format!(
            r#"{{"matchers":[{matcher}],"startsAt":"2026-11-26T16:12:43Z","endsAt":"2026-11-26T18:12:43Z","createdBy":"me","comment":"c"}}"#
        );
        let silence = PostableSilence::from_json(object.as_bytes()).unwrap();
        assert_eq!(silence.matchers.len(), 1);
        let err = PostableSilence::from_json(br#"{"matchers":{}}"#).unwrap_err();
        assert!(
            err.to_string().contains("expected a JSON array of objects"),
            "{err}"
        );
    }

    /// A silence as `GET /api/v2/silence/{id}` shows it can be posted back (edited): its
    /// read-only `status` and `updatedAt` are ignored, as Alertmanager ignores them; any other
    /// unknown field is refused still.
    #[test]
    fn a_fetched_silence_posts_back_and_other_unknown_fields_are_refused() {
        let now: DateTime<Utc> = "2026-11-26T16:30:00Z".parse().unwrap();
        let posted = PostableSilence::from_json(AMTOOL).unwrap();
        let stored = Silence::from_postable(posted.clone(), SilenceId::new_v4(), now).unwrap();
        let mut fetched = serde_json::to_value(stored.gettable(now)).unwrap();
        assert!(fetched["status"]["state"].is_string(), "{fetched}");
        assert!(fetched["updatedAt"].is_string(), "{fetched}");
        fetched["comment"] = "extended".into();
        let post = |body: &serde_json::Value| {
            PostableSilence::from_json(&serde_json::to_vec(body).unwrap())
        };
        let again = post(&fetched).unwrap();
        assert_eq!(again.id.as_deref(), Some(stored.id.to_string().as_str()));
        assert_eq!(
            (
                again.matchers,
                again.starts_at,
                again.ends_at,
                again.comment
            ),
            (
                posted.matchers,
                posted.starts_at,
                posted.ends_at,
                "extended".into()
            )
        );
        // Whatever they hold, they are not read.
        fetched["status"] = serde_json::json!([1, {"x": null}]);
        fetched["updatedAt"] = serde_json::json!("not a time");
        post(&fetched).unwrap();
        for unknown in ["state", "silenceID", "updated_at", "Status"] {
            let mut body = fetched.clone();
            body[unknown] = "x".into();
            let err = post(&body).unwrap_err().to_string();
            assert!(err.contains(&format!("unknown field `{unknown}`")), "{err}");
        }
    }

    /// What Alertmanager 0.25 lists for each filter, checked against a real one with the same
    /// silences: the filter names a matcher the silence has, not labels it would silence.
    #[test]
    fn filters_list_silences_as_alertmanager_does() {
        let now = Utc::now();
        let silence = |matchers: &[(&str, &str, bool, bool)]| {
            let p = PostableSilence {
                id: None,
                matchers: matchers
                    .iter()
                    .map(|&(name, value, is_regex, is_equal)| SilenceMatcher {
                        name: name.into(),
                        value: value.into(),
                        is_regex,
                        is_equal,
                    })
                    .collect(),
                starts_at: now,
                ends_at: now + chrono::Duration::hours(1),
                created_by: "z".into(),
                comment: "c".into(),
                status: IgnoredAny,
                updated_at: IgnoredAny,
            };
            Silence::from_postable(p, SilenceId::new_v4(), now).unwrap()
        };
        let keep = silence(&[("alertname", "KeepMe", false, true)]);
        let expire = silence(&[("alertname", "ExpireMe", false, true)]);
        let regex = silence(&[("alertname", "Exp.*", true, true)]);
        let negative = silence(&[
            ("alertname", "Foo", false, false),
            ("env", "prod", false, true),
        ]);
        let all = [&keep, &expire, &regex, &negative];
        let listed = |filter: &[&str]| -> Vec<usize> {
            let filter: Vec<Matcher> = filter.iter().map(|f| Matcher::parse(f).unwrap()).collect();
            (0..all.len())
                .filter(|&i| all[i].listed_by(&filter))
                .collect()
        };
        assert_eq!(listed(&[]), [0, 1, 2, 3], "no filter: every silence");
        assert_eq!(listed(&["alertname=ExpireMe"]), [1]);
        assert_eq!(listed(&["alertname=\"ExpireMe\""]), [1]);
        assert_eq!(
            listed(&["alertname=~\"Exp.*\""]),
            [2],
            "the regex as written"
        );
        assert_eq!(listed(&["alertname=~\"Expire.*\""]), Vec::<usize>::new());
        assert_eq!(listed(&["alertname!=ExpireMe"]), Vec::<usize>::new());
        assert_eq!(listed(&["alertname!=Foo"]), [3]);
        assert_eq!(listed(&["env=prod"]), [3]);
        assert_eq!(listed(&["env=prod", "alertname!=Foo"]), [3]);
        assert_eq!(
            listed(&["env=prod", "alertname=KeepMe"]),
            Vec::<usize>::new()
        );
        assert_eq!(listed(&["missing=\"\""]), Vec::<usize>::new());
        assert_eq!(listed(&["env!=\"\""]), Vec::<usize>::new());
    }

    #[test]
    fn bad_silences_are_refused_with_a_reason() {
        let now = Utc::now();
        let base = || PostableSilence {
            id: None,
            matchers: vec![SilenceMatcher {
                name: "alertname".into(),
                value: "X".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            created_by: "carol".into(),
            comment: "maintenance".into(),
            status: IgnoredAny,
            updated_at: IgnoredAny,
        };
        let refuse = |p: PostableSilence, says: &str| {
            let err = Silence::from_postable(p, SilenceId::new_v4(), now).unwrap_err();
            assert!(err.contains(says), "{err}");
        };
        let mut p = base();
        p.matchers.clear();
        refuse(p, "at least one matcher");
        let mut p = base();
        p.ends_at = now - chrono::Duration::seconds(1);
        refuse(p, "after startsAt");
        let mut p = base();
        p.matchers[0].is_regex = true;
        p.matchers[0].value = "(".into();
        refuse(p, "regex");
        let mut p = base();
        p.matchers[0].is_regex = true;
        p.matchers[0].value = ".*".into();
        refuse(p, "match every alert");
        let mut p = base();
        p.comment = " ".into();
        refuse(p, "comment");
        let mut p = base();
        p.ends_at = "+10000-01-01T00:00:00Z".parse().unwrap();
        refuse(p, "endsAt +10000-01-01T00:00:00Z is out of the range");
        let mut p = base();
        p.starts_at = "2016-12-31T23:59:60Z".parse().unwrap();
        refuse(p, "startsAt 2016-12-31T23:59:60Z is out of the range");
    }
}
