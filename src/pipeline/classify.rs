//! Classification: compiles `[[rules]]` into matchers and applies them to an alert, in order.
//!
//! Owns the matcher syntax (Alertmanager's: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`,
//! anchored regexes, a missing label reads as "") and what a rule may set. The tier decision that
//! follows is `triage`'s.

use regex::Regex;

use crate::alert::{AlertRecord, Labels, NormalizedAlert, Severity};
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
    pub rules: Vec<Rule>,
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
        Ok(Rules { rules })
    }

    /// Apply the rules in order: the first that matches decides, unless it says `continue`, in
    /// which case later rules see the labels it set and may override what it set.
    pub fn classify(&self, alert: &NormalizedAlert) -> Classification {
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
            class.rules.push(rule.name.clone());
            let c = &rule.config;
            if c.action == Some(RuleAction::Drop) {
                class.dropped_by = Some(rule.name.clone());
                return class;
            }
            for (k, v) in &c.set_labels {
                class.labels.insert(k.clone(), v.clone());
                class.set_labels.insert(k.clone(), v.clone());
            }
            class.severity = c.severity.or(class.severity);
            class.tier = c.tier.or(class.tier);
            class.runbook = c.runbook.clone().or(class.runbook.take());
            class.group_by = c.group_by.clone().or(class.group_by.take());
            if !c.continue_ {
                break;
            }
        }
        class
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
}
