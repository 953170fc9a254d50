//! Classification: compiles `[[rules]]` into matchers and applies them to an alert, in order.
//!
//! Owns the matcher syntax (Alertmanager's: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`,
//! anchored regexes, a missing label reads as "") and what a rule may set. The tier decision that
//! follows is `triage`'s.

use regex::Regex;

use crate::alert::{AlertRecord, FastMap, Labels, NormalizedAlert, Severity};
use crate::config::{RuleAction, RuleConfig};
use crate::incident::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Re,
    NotRe,
}

/// What a matcher looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Label(String),
    /// `@source`: the wire format the alert came in by.
    Source,
    /// `@annotation.NAME`.
    Annotation(String),
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub target: Target,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Parse one matcher in Alertmanager syntax. The value may be double-quoted (with `\"`, `\\`,
    /// `\n` escapes) or bare.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '.'))
            .unwrap_or(t.len());
        let name = &t[..name_end];
        if name.is_empty() {
            return Err(format!(
                "matcher {text:?} does not start with a label name (expected e.g. 'alertname=\"X\"')"
            ));
        }
        let target = if let Some(meta) = name.strip_prefix('@') {
            if meta == "source" {
                Target::Source
            } else if let Some(a) = meta.strip_prefix("annotation.").filter(|a| !a.is_empty()) {
                Target::Annotation(a.to_string())
            } else {
                return Err(format!(
                    "matcher {text:?}: unknown field {name:?} (expected @source or @annotation.NAME)"
                ));
            }
        } else if name.contains('.') || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "matcher {text:?}: {name:?} is not a valid label name"
            ));
        } else {
            Target::Label(name.to_string())
        };
        let rest = t[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::NotEq, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Eq, r)
        } else {
            return Err(format!(
                "matcher {text:?} has no operator: expected =, !=, =~ or !~ after {name:?}"
            ));
        };
        let value = unquote(rest.trim()).map_err(|e| format!("matcher {text:?}: {e}"))?;
        Matcher::new(target, op, value).map_err(|e| format!("matcher {text:?}: {e}"))
    }

    /// A matcher on a label, from its parts (as silences carry them).
    pub fn label(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        if name.is_empty() {
            return Err("the label name is empty".into());
        }
        Matcher::new(Target::Label(name.to_string()), op, value.to_string())
    }

    fn new(target: Target, op: Op, value: String) -> Result<Matcher, String> {
        let regex = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                // regex's message draws a caret under the error over several lines; its last
                // line says what is wrong.
                let text_error = e.to_string();
                let why = text_error
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string();
                format!("invalid regex: {why}")
            })?),
            Op::Eq | Op::NotEq => None,
        };
        Ok(Matcher {
            target,
            op,
            value,
            regex,
        })
    }

    /// True for every alert: `=~".*"` and the like.
    pub fn is_always_true(&self) -> bool {
        self.op == Op::Re && matches!(self.value.as_str(), ".*" | "(.*)" | ".*?" | "(?s).*")
    }

    /// The same condition as `other`.
    pub fn same_as(&self, other: &Matcher) -> bool {
        self.target == other.target && self.op == other.op && self.value == other.value
    }

    /// Whether every value `other` admits is admitted by this matcher too, so that an alert
    /// `other` matches is matched by this one, as far as can be told for sure; false when not
    /// sure. Decided when `other` admits only listed values (`="v"`, `=~"a|b"` of plain words:
    /// each is tested), or when this one admits every value that is not empty (`!=""`), or every
    /// one not empty without a line feed (`=~".+"`: `.` takes no line feed) and `other` admits
    /// none that is empty (or, for `.+`, holds a line feed).
    pub fn covers(&self, other: &Matcher) -> bool {
        if self.is_always_true() || self.same_as(other) {
            return true;
        }
        if self.target != other.target {
            return false;
        }
        match other.op {
            Op::Eq => self.test(&other.value),
            Op::Re => {
                if let Some(values) = literal_alternatives(&other.value) {
                    return values.iter().all(|v| self.test(v));
                }
                let any_but_empty = self.op == Op::NotEq && self.value.is_empty();
                let any_line_but_empty =
                    self.op == Op::Re && matches!(self.value.as_str(), ".+" | "(.+)" | ".+?");
                (any_but_empty || any_line_but_empty)
                    && !other.test("")
                    && (any_but_empty || !may_match_a_line_feed(&other.value))
            }
            Op::NotEq | Op::NotRe => false,
        }
    }

    /// Match against labels alone (what silences see); `@` targets read as "".
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        match &self.target {
            Target::Label(name) => self.test(labels.get(name).map(String::as_str).unwrap_or("")),
            Target::Source | Target::Annotation(_) => self.test(""),
        }
    }

    fn test(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (Op::Eq, _) => value == self.value,
            (Op::NotEq, _) => value != self.value,
            (Op::Re, Some(re)) => re.is_match(value),
            (Op::NotRe, Some(re)) => !re.is_match(value),
            (Op::Re | Op::NotRe, None) => false,
        }
    }

    /// Match a stored alert: its labels (those rules set included), its source and annotations.
    pub fn matches_record(&self, record: &AlertRecord) -> bool {
        let value = match &self.target {
            Target::Label(name) => record.labels.get(name).map(String::as_str).unwrap_or(""),
            Target::Source => record.source.as_str(),
            Target::Annotation(name) => record
                .annotations
                .get(name)
                .map(String::as_str)
                .unwrap_or(""),
        };
        self.test(value)
    }

    pub fn matches(&self, labels: &Labels, alert: &NormalizedAlert) -> bool {
        let value = match &self.target {
            Target::Label(name) => labels.get(name).map(String::as_str).unwrap_or(""),
            Target::Source => alert.alert.source.as_str(),
            Target::Annotation(name) => alert
                .alert
                .annotations
                .get(name)
                .map(String::as_str)
                .unwrap_or(""),
        };
        self.test(value)
    }
}

fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("unbalanced quote in the value".into());
        }
        return Ok(s.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err("the value's closing quote is missing".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Regex escapes such as `\d` or `\.` pass through for the regex engine.
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("the value ends in a lone backslash".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!(
            "unexpected {:?} after the quoted value (one matcher per string)",
            chars.as_str().trim()
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub config: RuleConfig,
}

/// The ordered, compiled rule set.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    index: RuleIndex,
}

/// What the rules decided for one alert.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Classification {
    /// The alert's labels plus what rules set; grouping and storage see these.
    pub labels: Labels,
    /// Just what the rules set (they go onto the incident too).
    pub set_labels: Labels,
    /// Names of the rules that matched, in order.
    pub rules: Vec<String>,
    pub severity: Option<Severity>,
    pub tier: Option<Tier>,
    pub runbook: Option<String>,
    pub group_by: Option<Vec<String>>,
    /// The rule that dropped the alert.
    pub dropped_by: Option<String>,
}

/// Which rules an alert can possibly match, by label value, so that classification skips the
/// rules that cannot match instead of testing each in turn.
///
/// A rule is filed under one label when one of its matchers pins that label to known values:
/// `name="v"` (the value `v`; "" for a missing label, as matching reads it) or `name=~"a|b"`
/// where the regex is an alternation of plain words (anchored, so exactly those values). Such a
/// rule cannot match an alert whose label has another value, so it is a candidate only for the
/// alerts whose label has one of those values. Every other rule (only `!=`, `!~`, other regexes,
/// `@source`, `@annotation`) is always a candidate. Candidates are visited in rule order and the
/// matchers still decide, so the result is exactly the in-order scan's ([`Rules::classify_scan`]).
#[derive(Debug, Clone, Default)]
struct RuleIndex {
    /// Label name → label value → the positions of the rules filed under it, ascending.
    by_label: Vec<(String, FastMap<String, Vec<usize>>)>,
    /// Positions of the rules filed under no label, ascending.
    always: Vec<usize>,
}

impl RuleIndex {
    fn build(rules: &[Rule]) -> RuleIndex {
        let mut index = RuleIndex::default();
        for (position, rule) in rules.iter().enumerate() {
            let Some((name, values)) = Self::key(rule) else {
                index.always.push(position);
                continue;
            };
            let slot = match index.by_label.iter().position(|(n, _)| *n == name) {
                Some(slot) => slot,
                None => {
                    index.by_label.push((name.to_string(), FastMap::default()));
                    index.by_label.len() - 1
                }
            };
            // `a|a` names `a` once: a rule must be a candidate once.
            let mut values = values;
            values.sort();
            values.dedup();
            for value in values {
                index.by_label[slot]
                    .1
                    .entry(value)
                    .or_default()
                    .push(position);
            }
        }
        index
    }

    /// The label a rule is filed under, and the values it requires: from its first `=`
    /// matcher on a label, else its first `=~` on a label that lists plain words.
    fn key(rule: &Rule) -> Option<(&str, Vec<String>)> {
        let on_label = |m: &&Matcher| matches!(m.target, Target::Label(_));
        fn label(m: &Matcher) -> &str {
            match &m.target {
                Target::Label(name) => name,
                Target::Source | Target::Annotation(_) => "",
            }
        }
        if let Some(m) = rule
            .matchers
            .iter()
            .filter(on_label)
            .find(|m| m.op == Op::Eq)
        {
            return Some((label(m), vec![m.value.clone()]));
        }
        rule.matchers
            .iter()
            .filter(on_label)
            .filter(|m| m.op == Op::Re)
            .find_map(|m| Some((label(m), literal_alternatives(&m.value)?)))
    }

    /// The sorted lists of rule positions that are candidates for an alert with `labels`.
    fn candidates<'a>(&'a self, labels: &Labels, out: &mut Vec<&'a [usize]>) {
        out.clear();
        out.push(&self.always);
        for (name, by_value) in &self.by_label {
            let value = labels.get(name).map(String::as_str).unwrap_or("");
            if let Some(positions) = by_value.get(value) {
                out.push(positions);
            }
        }
    }
}

/// The values an anchored regex matches when it is an alternation of plain words (`a|b_c|d-1`):
/// letters, digits, `_`, `-`, `:` and `/` only, none empty. `None` for anything else.
fn literal_alternatives(regex: &str) -> Option<Vec<String>> {
    let plain = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/'))
    };
    let words: Vec<&str> = regex.split('|').collect();
    words
        .iter()
        .all(|w| plain(w))
        .then(|| words.iter().map(|w| w.to_string()).collect())
}

/// Whether a value `regex` matches may hold a line feed: only through a literal or a class that
/// holds one, as the regex's syntax tree tells (true when it cannot be read).
fn may_match_a_line_feed(regex: &str) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn walk(hir: &Hir) -> bool {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => false,
            HirKind::Literal(literal) => literal.0.contains(&b'\n'),
            HirKind::Class(Class::Unicode(class)) => class
                .ranges()
                .iter()
                .any(|r| r.start() <= '\n' && '\n' <= r.end()),
            HirKind::Class(Class::Bytes(class)) => class
                .ranges()
                .iter()
                .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
            HirKind::Repetition(repetition) => walk(&repetition.sub),
            HirKind::Capture(capture) => walk(&capture.sub),
            HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().any(walk),
        }
    }
    regex_syntax::parse(regex).map_or(true, |hir| walk(&hir))
}

/// Whether classification goes on after a rule matched.
enum Next {
    /// Stop: the rule decided (or dropped the alert).
    Stop,
    /// Go on with the labels as they are.
    Continue,
    /// Go on; the rule set labels, so later rules see different labels.
    Relabelled,
}

impl Rules {
    pub fn compile(configs: &[RuleConfig]) -> Result<Rules, String> {
        let mut rules = Vec::with_capacity(configs.len());
        for config in configs {
            let matchers = config
                .matchers
                .iter()
                .map(|m| Matcher::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("rule {:?}: {e}", config.name))?;
            rules.push(Rule {
                name: config.name.clone(),
                matchers,
                config: config.clone(),
            });
        }
        let index = RuleIndex::build(&rules);
        Ok(Rules { rules, index })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Apply the rules in order: the first that matches decides, unless it says `continue`, in
    /// which case later rules see the labels it set and may override what it set.
    ///
    /// Only the rules the index names as candidates are tested, in rule order; the result is
    /// the same as testing every rule in turn ([`Rules::classify_scan`]).
    pub fn classify(&self, alert: &NormalizedAlert) -> Classification {
        self.classify_labels(alert.alert.labels.clone(), alert)
    }

    /// [`Rules::classify`] of an alert whose labels the caller has taken out of it (the writer
    /// owns each alert and needs only the classified labels afterwards), so they are not
    /// copied. The matchers read labels from `labels` and everything else from `alert`.
    pub fn classify_labels(&self, labels: Labels, alert: &NormalizedAlert) -> Classification {
        let mut class = Classification {
            labels,
            ..Classification::default()
        };
        let mut lists: Vec<&[usize]> = Vec::with_capacity(self.index.by_label.len() + 1);
        // Every rule before `next` has been tested or cannot match.
        let mut next = 0;
        'labels: loop {
            self.index.candidates(&class.labels, &mut lists);
            for list in &mut lists {
                *list = &list[list.partition_point(|&p| p < next)..];
            }
            loop {
                // The earliest candidate left, over every list.
                let Some((which, position)) = lists
                    .iter()
                    .enumerate()
                    .filter_map(|(which, list)| Some((which, *list.first()?)))
                    .min_by_key(|&(_, position)| position)
                else {
                    break 'labels;
                };
                lists[which] = &lists[which][1..];
                next = position + 1;
                let rule = &self.rules[position];
                if !rule
                    .matchers
                    .iter()
                    .all(|m| m.matches(&class.labels, alert))
                {
                    continue;
                }
                match apply(rule, &mut class) {
                    Next::Stop => break 'labels,
                    Next::Continue => {}
                    // Other rules may be candidates now: look them up again.
                    Next::Relabelled => continue 'labels,
                }
            }
        }
        class
    }

    /// [`Rules::classify`] by testing every rule in turn: the reference the index is checked
    /// against, and the baseline the rules benchmark compares with.
    pub fn classify_scan(&self, alert: &NormalizedAlert) -> Classification {
        let mut class = Classification {
            labels: alert.alert.labels.clone(),
            ..Classification::default()
        };
        for rule in &self.rules {
            if !rule
                .matchers
                .iter()
                .all(|m| m.matches(&class.labels, alert))
            {
                continue;
            }
            if let Next::Stop = apply(rule, &mut class) {
                break;
            }
        }
        class
    }
}

/// What a matching rule does to the classification.
fn apply(rule: &Rule, class: &mut Classification) -> Next {
    class.rules.push(rule.name.clone());
    let c = &rule.config;
    if c.action == Some(RuleAction::Drop) {
        class.dropped_by = Some(rule.name.clone());
        return Next::Stop;
    }
    for (k, v) in &c.set_labels {
        class.labels.insert(k.clone(), v.clone());
        class.set_labels.insert(k.clone(), v.clone());
    }
    class.severity = c.severity.or(class.severity);
    class.tier = c.tier.or(class.tier);
    class.runbook = c.runbook.clone().or(class.runbook.take());
    class.group_by = c.group_by.clone().or(class.group_by.take());
    match (c.continue_, c.set_labels.is_empty()) {
        (false, _) => Next::Stop,
        (true, true) => Next::Continue,
        (true, false) => Next::Relabelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, SeverityMap, Source};

    fn alert(pairs: &[(&str, &str)]) -> NormalizedAlert {
        let labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Alert::new(Source::Alertmanager, labels).normalize(
            &[],
            &SeverityMap::default(),
            chrono::Utc::now(),
        )
    }

    fn rules(toml_rules: &str) -> Rules {
        let config = crate::config::Config::parse(toml_rules, "test").unwrap();
        config.compile_rules().unwrap()
    }

    fn m(text: &str, pairs: &[(&str, &str)]) -> bool {
        let a = alert(pairs);
        Matcher::parse(text).unwrap().matches(&a.alert.labels, &a)
    }

    #[test]
    fn matchers_follow_alertmanager_semantics() {
        assert!(m(r#"env="prod""#, &[("env", "prod")]));
        assert!(!m(r#"env="prod""#, &[("env", "production")]));
        assert!(m(r#"env!="prod""#, &[]));
        assert!(m(r#"env="""#, &[]), "a missing label reads as empty");
        assert!(!m(r#"env!="""#, &[]));
        // Regexes are anchored at both ends.
        assert!(m(r#"alertname=~"Disk.*""#, &[("alertname", "DiskFull")]));
        assert!(!m(r#"alertname=~"Disk""#, &[("alertname", "DiskFull")]));
        assert!(!m(r#"alertname=~"Full""#, &[("alertname", "DiskFull")]));
        assert!(m(r#"alertname!~"Disk.*""#, &[("alertname", "CPU")]));
        assert!(m(r"instance=~db-\d+", &[("instance", "db-12")]));
        assert!(m(r#"team = "a b""#, &[("team", "a b")]));
        assert!(m(r#"@source="alertmanager""#, &[]));
        assert!(!m(r#"@source="pagerduty""#, &[]));
    }

    #[test]
    fn bad_matchers_are_refused_with_a_reason() {
        for (text, says) in [
            ("env", "no operator"),
            (r#"="x""#, "label name"),
            (r#"env="x"#, "closing quote"),
            (r#"a=~"(""#, "invalid regex"),
            (r#"a="x", b="y""#, "one matcher per string"),
            (r#"@nope="x""#, "unknown field"),
        ] {
            let err = Matcher::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let r = rules(
            r#"
[[rules]]
name = "db"
matchers = ['alertname=~"Db.*"']
tier = "L3"
set_labels = { team = "dba" }
[[rules]]
name = "all"
matchers = ['alertname=~".+"']
tier = "L1"
runbook = "https://r/all"
"#,
        );
        let c = r.classify(&alert(&[("alertname", "DbDown")]));
        assert_eq!(c.rules, ["db"]);
        assert_eq!(c.tier, Some(Tier::L3));
        assert_eq!(c.runbook, None);
        assert_eq!(c.labels.get("team").map(String::as_str), Some("dba"));
        let c = r.classify(&alert(&[("alertname", "CpuHigh")]));
        assert_eq!(c.rules, ["all"]);
        assert_eq!(c.tier, Some(Tier::L1));
    }

    #[test]
    fn continue_lets_later_rules_refine_and_see_set_labels() {
        let r = rules(
            r#"
[[rules]]
name = "team"
matchers = ['service="pg"']
set_labels = { team = "dba" }
runbook = "https://r/pg"
continue = true
[[rules]]
name = "dba-critical"
matchers = ['team="dba"']
severity = "critical"
"#,
        );
        let c = r.classify(&alert(&[("alertname", "X"), ("service", "pg")]));
        assert_eq!(c.rules, ["team", "dba-critical"]);
        assert_eq!(c.severity, Some(Severity::Critical));
        assert_eq!(c.runbook.as_deref(), Some("https://r/pg"));
    }

    #[test]
    fn drop_stops_classification() {
        let r = rules(
            r#"
[[rules]]
name = "noise"
matchers = ['alertname="Watchdog"']
action = "drop"
"#,
        );
        let c = r.classify(&alert(&[("alertname", "Watchdog")]));
        assert_eq!(c.dropped_by.as_deref(), Some("noise"));
        assert!(r
            .classify(&alert(&[("alertname", "Other")]))
            .dropped_by
            .is_none());
    }

    #[test]
    fn only_alternations_of_plain_words_are_read_as_value_lists() {
        let words = |re: &str| literal_alternatives(re);
        assert_eq!(words("DiskFull"), Some(vec!["DiskFull".to_string()]));
        assert_eq!(
            words("Watchdog|InfoInhibitor|a_b-c:d/e"),
            Some(vec![
                "Watchdog".to_string(),
                "InfoInhibitor".to_string(),
                "a_b-c:d/e".to_string()
            ])
        );
        for re in [
            "", "a|", "|a", ".*", "Disk.*", "a.b", "(a|b)", "a|b+", r"db-\d", "a b",
        ] {
            assert_eq!(words(re), None, "{re:?}");
        }
    }

    #[test]
    fn rules_are_filed_under_the_label_their_matchers_pin() {
        let r = rules(
            r#"
[[rules]]
name = "eq"
matchers = ['severity!="info"', 'alertname="A"']
[[rules]]
name = "words"
matchers = ['service=~"db|db|web"', 'team="x"']
[[rules]]
name = "words-only"
matchers = ['service=~"db|web"']
[[rules]]
name = "missing"
matchers = ['env=""']
[[rules]]
name = "regex"
matchers = ['alertname=~"Disk.*"', 'instance!="a"']
[[rules]]
name = "meta"
matchers = ['@source="pagerduty"']
"#,
        );
        let filed = |label: &str, value: &str| -> Vec<usize> {
            r.index
                .by_label
                .iter()
                .find(|(name, _)| name == label)
                .and_then(|(_, values)| values.get(value).cloned())
                .unwrap_or_default()
        };
        assert_eq!(filed("alertname", "A"), [0]);
        // An equality wins over an alternation in the same rule; `db|db` files it once.
        assert_eq!(filed("team", "x"), [1]);
        assert_eq!(filed("service", "db"), [2]);
        assert_eq!(filed("service", "web"), [2]);
        assert_eq!(filed("env", ""), [3]);
        assert_eq!(r.index.always, [4, 5]);
        // A missing label reads as "": the rule on env="" is a candidate without env.
        let a = alert(&[("alertname", "B")]);
        assert_eq!(r.classify(&a).rules, ["missing"]);
        assert_eq!(r.classify(&a), r.classify_scan(&a));
    }

    #[test]
    fn a_continue_rule_that_sets_an_indexed_label_brings_in_that_labels_rules() {
        let r = rules(
            r#"
[[rules]]
name = "rename"
matchers = ['alertname="Old"']
set_labels = { alertname = "New", team = "t" }
continue = true
[[rules]]
name = "old"
matchers = ['alertname="Old"']
tier = "L1"
[[rules]]
name = "new"
matchers = ['alertname="New"', 'team="t"']
tier = "L3"
"#,
        );
        let a = alert(&[("alertname", "Old")]);
        let c = r.classify(&a);
        assert_eq!(c.rules, ["rename", "new"]);
        assert_eq!(c.tier, Some(Tier::L3));
        assert_eq!(c, r.classify_scan(&a));
    }

    /// xorshift64*: a deterministic source of test cases, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    const NAMES: [&str; 5] = ["alertname", "service", "team", "severity", "env"];
    const VALUES: [&str; 4] = ["a", "b", "c", "db-1"];

    fn random_matcher(rng: &mut Rng) -> String {
        let target = match rng.below(12) {
            0 => "@source",
            1 => "@annotation.summary",
            _ => rng.pick(&NAMES),
        };
        let value = match rng.below(8) {
            0 => String::new(),
            1 => format!("{}|{}", rng.pick(&VALUES), rng.pick(&VALUES)),
            2 => ".*".into(),
            3 => format!("{}.*", &rng.pick(&VALUES)[..1]),
            4 if target == "@source" => rng.pick(&["alertmanager", "pagerduty"]).into(),
            _ => rng.pick(&VALUES).into(),
        };
        let op = rng.pick(&["=", "=", "=", "!=", "=~", "=~", "!~"]);
        format!("{target}{op}\"{value}\"")
    }

    fn random_rules(rng: &mut Rng) -> Rules {
        let n = 1 + rng.below(30);
        let configs: Vec<RuleConfig> = (0..n)
            .map(|i| {
                let matchers = (0..1 + rng.below(3)).map(|_| random_matcher(rng)).collect();
                let set_labels = (0..rng.below(3))
                    .map(|_| (rng.pick(&NAMES).to_string(), rng.pick(&VALUES).to_string()))
                    .collect();
                RuleConfig {
                    name: format!("r{i}"),
                    matchers,
                    set_labels,
                    severity: rng
                        .chance(30)
                        .then(|| Severity::ALL[rng.below(Severity::ALL.len())]),
                    tier: rng
                        .chance(30)
                        .then(|| [Tier::L1, Tier::L2, Tier::L3][rng.below(3)]),
                    runbook: rng.chance(20).then(|| format!("https://r/{i}")),
                    group_by: rng.chance(10).then(|| vec![rng.pick(&NAMES).to_string()]),
                    action: rng.chance(5).then_some(RuleAction::Drop),
                    continue_: rng.chance(60),
                }
            })
            .collect();
        Rules::compile(&configs).unwrap()
    }

    fn random_alert(rng: &mut Rng) -> NormalizedAlert {
        let mut labels = Labels::new();
        for name in NAMES {
            if rng.chance(70) {
                labels.insert(name.to_string(), rng.pick(&VALUES).to_string());
            }
        }
        let source = [Source::Alertmanager, Source::Pagerduty][rng.below(2)];
        let mut a = Alert::new(source, labels);
        if rng.chance(50) {
            a.annotations
                .insert("summary".into(), rng.pick(&VALUES).to_string());
        }
        a.normalize(&[], &SeverityMap::default(), chrono::Utc::now())
    }

    /// The index only skips rules that cannot match: on random rule sets (equalities, negations,
    /// regexes, word lists, `@` fields, `continue`, labels set and overwritten, drops) every
    /// alert is classified exactly as the in-order scan classifies it.
    #[test]
    fn the_index_decides_exactly_as_the_in_order_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut compared, mut chains, mut relabelled) = (0, 0, 0);
        for _ in 0..400 {
            let r = random_rules(&mut rng);
            for _ in 0..40 {
                let a = random_alert(&mut rng);
                let scan = r.classify_scan(&a);
                assert_eq!(r.classify(&a), scan, "rules {:#?}\nalert {:?}", r.rules, a);
                compared += 1;
                chains += usize::from(scan.rules.len() >= 2);
                relabelled += usize::from(!scan.set_labels.is_empty() && scan.rules.len() >= 2);
            }
        }
        // The cases exercised what matters: chains of matching rules, some after relabelling.
        assert_eq!(compared, 16_000);
        assert!(chains > 1_000, "{chains} chains");
        assert!(relabelled > 500, "{relabelled} relabelled chains");
    }
}
