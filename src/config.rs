//! Configuration: the TOML schema, its defaults, and validation that names the line of every
//! problem.
//!
//! `config/triaged.toml` is both the commented example and the embedded default ([`DEFAULT_TOML`]).
//! Every key is optional; a missing key takes the value the example shows (tested below), except
//! `[[rules]]`, which a given file replaces entirely. Validation happens before the runtime starts
//! (`main.rs`), and reports every problem at once. Compiling rules into matchers is
//! `pipeline::classify`'s job; this module only asks it whether they compile.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::alert::{Severity, SeverityMap};
use crate::incident::Tier;
use crate::pipeline::classify::Rules;

/// The commented example, embedded: what `triaged run` uses without `--config`.
pub const DEFAULT_TOML: &str = include_str!("../config/triaged.toml");

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub dedup: DedupConfig,
    pub grouping: GroupingConfig,
    pub severity: SeverityConfig,
    pub tiers: TiersConfig,
    pub incidents: IncidentsConfig,
    pub escalation: EscalationConfig,
    pub flapping: FlappingConfig,
    /// The Kafka source; none by default (the embedded default needs no broker).
    pub kafka: Option<KafkaConfig>,
    /// Where incident events go; nowhere by default.
    pub notify: NotifyConfig,
    /// Who may call which route; see [`AuthConfig`].
    pub auth: AuthConfig,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Commands that may wait for the writer; full ⇒ 503 + Retry-After (never unbounded buffering).
    pub queue_capacity: usize,
    /// A client must send a request's headers within this time of the server starting to wait
    /// for them; hyper starts waiting as soon as the previous response is written, so this is
    /// also the idle timeout of a keep-alive connection (slowloris protection either way).
    pub header_read_timeout: HumanDuration,
    /// A request body must arrive within this time once its headers are in (408 otherwise).
    pub body_read_timeout: HumanDuration,
    /// Open connections beyond this are answered 503 and closed at once.
    pub max_connections: usize,
    /// Request bodies being read or waiting for the writer, in bytes, across all connections;
    /// beyond it ingestion is answered 503 + Retry-After. With `queue_capacity`, this is what
    /// bounds memory whatever the offered load.
    pub max_inflight_bytes: usize,
    /// Alerts in one request (or one Kafka message) beyond this are refused whole (413).
    pub max_alerts_per_request: usize,
    /// Labels on one alert beyond this are refused (400).
    pub max_labels_per_alert: usize,
    /// Bytes in one label name or value beyond this are refused (400).
    pub max_label_bytes: usize,
    pub shutdown_grace: HumanDuration,
    /// HTTPS instead of HTTP; none by default.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9595)),
            max_body_bytes: 1024 * 1024,
            queue_capacity: 4096,
            header_read_timeout: HumanDuration::secs(10),
            body_read_timeout: HumanDuration::secs(30),
            max_connections: 1024,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_alerts_per_request: 10_000,
            max_labels_per_alert: 128,
            max_label_bytes: 4096,
            shutdown_grace: HumanDuration::secs(10),
            tls: None,
        }
    }
}

/// `[server.tls]`: a PEM certificate chain and its PEM private key. Both files are read again on
/// reload (SIGHUP), so a renewed certificate needs no restart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[auth]`: bearer tokens (or HTTP basic auth with the token's name as user and the token as
/// password), each with roles.
///
/// Without `enabled`, authentication is on when tokens are configured; with none it is off, which
/// is allowed only while `server.listen` is a loopback address. `enabled = false` turns it off
/// anywhere (with a warning at start beyond loopback); `enabled = true` requires tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: Option<bool>,
    /// `/metrics` answers without a token.
    pub metrics_public: bool,
    /// `/-/healthy` and `/-/ready` answer without a token.
    pub health_public: bool,
    pub tokens: Vec<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: None,
            metrics_public: true,
            health_public: true,
            tokens: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Whether requests must carry a token, for a daemon listening on `listen`.
    pub fn required(&self) -> bool {
        self.enabled.unwrap_or(!self.tokens.is_empty())
    }
}

/// What a token may do. `admin` may do everything; `operator` works incidents and silences and
/// reads the API; `ingest` posts alerts and reads the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// `[[auth.tokens]]`: a named token read from `token_file` (first line, surrounding whitespace
/// trimmed), or written inline as `token` when `allow_inline = true` says that is deliberate.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub allow_inline: bool,
    pub roles: Vec<Role>,
}

/// Never prints an inline token.
impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_inline", &self.allow_inline)
            .field("roles", &self.roles)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// sled's page cache, in MiB: bounds memory whatever the store holds.
    pub cache_mb: u64,
    /// KiB of journal after which sled is flushed and the journal starts again (a checkpoint):
    /// the journal's size on disk, and what a start applies again.
    pub checkpoint_kb: u64,
    /// How long resolved incidents, resolved alerts, expired silences and dead letters are kept
    /// (see [`crate::retention`]).
    pub retention: HumanDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data"),
            cache_mb: crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024),
            checkpoint_kb: crate::store::DEFAULT_CHECKPOINT_BYTES / 1024,
            retention: HumanDuration::secs(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub exclude_labels: Vec<String>,
    pub resolve_timeout: HumanDuration,
    /// An alert firing again this soon after its incident resolved reopens that incident.
    pub reopen_window: HumanDuration,
    /// Reopened this many times within `reopen_escalate_window` ⇒ escalate one tier; 0: never.
    pub reopen_escalate_after: u32,
    pub reopen_escalate_window: HumanDuration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exclude_labels: Vec::new(),
            resolve_timeout: HumanDuration::secs(5 * 60),
            reopen_window: HumanDuration::secs(10 * 60),
            reopen_escalate_after: 3,
            reopen_escalate_window: HumanDuration::secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingConfig {
    pub group_by: Vec<String>,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        GroupingConfig {
            group_by: vec!["alertname".into(), "service".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityConfig {
    pub labels: Vec<String>,
    pub default: Severity,
    pub aliases: BTreeMap<String, Severity>,
}

impl Default for SeverityConfig {
    fn default() -> Self {
        let map = SeverityMap::default();
        SeverityConfig {
            labels: map.labels,
            default: map.default,
            aliases: map.aliases,
        }
    }
}

impl SeverityConfig {
    pub fn to_map(&self) -> SeverityMap {
        SeverityMap {
            labels: self.labels.clone(),
            default: self.default,
            // Values are matched case-insensitively, so keys are kept lowercase.
            aliases: self
                .aliases
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersConfig {
    pub critical: Tier,
    pub major: Tier,
    pub minor: Tier,
    pub warning: Tier,
    pub info: Tier,
}

impl Default for TiersConfig {
    fn default() -> Self {
        TiersConfig {
            critical: Tier::L3,
            major: Tier::L2,
            minor: Tier::L1,
            warning: Tier::L1,
            info: Tier::L0,
        }
    }
}

impl TiersConfig {
    pub fn tier_for(&self, severity: Severity) -> Tier {
        match severity {
            Severity::Critical => self.critical,
            Severity::Major => self.major,
            Severity::Minor => self.minor,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Tiers whose incidents resolve by themselves when every member alert has resolved.
    pub auto_resolve: Vec<Tier>,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            auto_resolve: vec![Tier::L1, Tier::L2, Tier::L3, Tier::L4],
        }
    }
}

/// What happens to a tier's incidents when nobody acts on them.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicy {
    /// Unacknowledged this long after reaching the tier ⇒ escalate to `next`.
    pub ack_timeout: Option<HumanDuration>,
    /// Unresolved this long after reaching the tier ⇒ escalate to `next`.
    pub resolve_timeout: Option<HumanDuration>,
    /// Where timeouts escalate to; default the tier above.
    pub next: Option<Tier>,
}

/// `[escalation]`: `ceiling` and one `[escalation.Ln]` table per tier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Automatic escalation (timeouts, reopens, flapping) never goes above this tier; beyond it
    /// only an operator escalates (L4, the vendor handover, is by hand by default).
    pub ceiling: Tier,
    #[serde(rename = "L1")]
    pub l1: TierPolicy,
    #[serde(rename = "L2")]
    pub l2: TierPolicy,
    #[serde(rename = "L3")]
    pub l3: TierPolicy,
    #[serde(rename = "L4")]
    pub l4: TierPolicy,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            ceiling: Tier::L3,
            l1: TierPolicy {
                ack_timeout: Some(HumanDuration::secs(15 * 60)),
                resolve_timeout: Some(HumanDuration::secs(4 * 3600)),
                next: Some(Tier::L2),
            },
            l2: TierPolicy {
                ack_timeout: Some(HumanDuration::secs(30 * 60)),
                resolve_timeout: Some(HumanDuration::secs(8 * 3600)),
                next: Some(Tier::L3),
            },
            l3: TierPolicy::default(),
            l4: TierPolicy::default(),
        }
    }
}

impl EscalationConfig {
    pub fn policy(&self, tier: Tier) -> Option<&TierPolicy> {
        match tier {
            Tier::L0 => None,
            Tier::L1 => Some(&self.l1),
            Tier::L2 => Some(&self.l2),
            Tier::L3 => Some(&self.l3),
            Tier::L4 => Some(&self.l4),
        }
    }

    /// Where automatic escalation takes an incident at `tier`, if anywhere.
    pub fn auto_next(&self, tier: Tier) -> Option<Tier> {
        let next = self
            .policy(tier)
            .and_then(|p| p.next)
            .or_else(|| tier.next())?;
        (next > tier && next <= self.ceiling).then_some(next)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlapAction {
    /// Mark the alert and its incident flapping; notifications for it are held back.
    #[default]
    Suppress,
    /// Escalate its incident one tier (reason `flapping`).
    Escalate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlappingConfig {
    pub window: HumanDuration,
    /// More firing/resolved changes than this within `window` ⇒ flapping.
    pub max_changes: u32,
    pub action: FlapAction,
}

impl Default for FlappingConfig {
    fn default() -> Self {
        FlappingConfig {
            window: HumanDuration::secs(10 * 60),
            max_changes: 4,
            action: FlapAction::Suppress,
        }
    }
}

/// `[notify]`: sinks that receive every incident event from the outbox.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub webhook: Vec<WebhookSinkConfig>,
    pub kafka: Option<KafkaSinkConfig>,
}

impl NotifyConfig {
    /// The names of the sinks' outbox cursors.
    pub fn sink_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .webhook
            .iter()
            .map(|w| format!("webhook:{}", w.name))
            .collect();
        if self.kafka.is_some() {
            names.push("kafka".into());
        }
        names
    }
}

/// Which events a sink takes; every list empty or absent means all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventFilter {
    pub tiers: Vec<Tier>,
    /// opened, acknowledged, escalated, de_escalated, assigned, resolved, reopened, flapping,
    /// auto_handled.
    pub kinds: Vec<String>,
    pub min_severity: Option<Severity>,
    /// Alertmanager matchers on the incident's labels.
    pub matchers: Vec<String>,
}

/// The event kinds sinks can be given.
pub const EVENT_KINDS: [&str; 9] = [
    "opened",
    "acknowledged",
    "escalated",
    "de_escalated",
    "assigned",
    "resolved",
    "reopened",
    "flapping",
    "auto_handled",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Unique; names the sink's cursor and its metrics.
    pub name: String,
    pub url: String,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
    /// Retries back off exponentially (with jitter) up to this.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Only events of incidents at these tiers (empty: all).
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Only these event kinds (empty: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Alertmanager matchers on the incident's labels.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// File whose content is sent as the `Authorization` header value (e.g. "Bearer abc").
    pub authorization_file: Option<std::path::PathBuf>,
    /// File holding the shared secret: the body's HMAC-SHA256 goes in `X-Triaged-Signature:
    /// sha256=<hex>`.
    pub hmac_secret_file: Option<std::path::PathBuf>,
    /// A body template instead of the event JSON: `{{kind}}`, `{{event_id}}`, `{{actor}}`,
    /// `{{reason}}`, `{{incident.id}}`, `{{incident.tier}}`, `{{incident.severity}}`,
    /// `{{incident.state}}`, `{{incident.group_key}}`, `{{incident.runbook}}` are replaced
    /// (JSON-escaped; see `notify::webhook::PLACEHOLDERS`), any other `{{...}}` is refused.
    /// `"slack"` is a built-in Slack-compatible `{"text": ...}`.
    pub template: Option<String>,
}

impl WebhookSinkConfig {
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            tiers: self.tiers.clone(),
            kinds: self.kinds.clone(),
            min_severity: self.min_severity,
            matchers: self.matchers.clone(),
        }
    }
}

impl KafkaSinkConfig {
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            tiers: self.tiers.clone(),
            kinds: self.kinds.clone(),
            min_severity: self.min_severity,
            matchers: self.matchers.clone(),
        }
    }
}

fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration::secs(300)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub topic: String,
    /// Defaults to `[kafka].brokers`.
    pub brokers: Option<String>,
    /// Only events of incidents at these tiers (empty: all).
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Only these event kinds (empty: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Alertmanager matchers on the incident's labels.
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[kafka]`: consume alert topics as a member of a consumer group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: "host:9092,host2:9092".
    pub brokers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    pub topics: Vec<KafkaTopic>,
    /// Messages that cannot be read are also produced here (besides the `dead_letters` store).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Larger messages are dead letters.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most messages taken from the consumer before their durable write is awaited.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Passed to librdkafka as they are (security.protocol, sasl.*, ssl.* ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "triaged".into()
}

fn default_max_message_bytes() -> usize {
    1024 * 1024
}

fn default_max_batch() -> usize {
    500
}

/// librdkafka properties triaged sets itself: at-least-once depends on them.
pub const KAFKA_MANAGED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "statistics.interval.ms",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopic {
    pub name: String,
    /// The wire format of its messages: alertmanager, webhook, pagerduty, native, or auto (told
    /// by shape, per message).
    #[serde(default)]
    pub format: TopicFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TopicFormat {
    #[default]
    Auto,
    Alertmanager,
    Webhook,
    Pagerduty,
    Native,
}

impl TopicFormat {
    pub fn format(self) -> Option<crate::sources::formats::Format> {
        use crate::sources::formats::Format;
        match self {
            TopicFormat::Auto => None,
            TopicFormat::Alertmanager => Some(Format::Alertmanager),
            TopicFormat::Webhook => Some(Format::Webhook),
            TopicFormat::Pagerduty => Some(Format::Pagerduty),
            TopicFormat::Native => Some(Format::Native),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Drop,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub matchers: Vec<String>,
    #[serde(default)]
    pub set_labels: BTreeMap<String, String>,
    pub severity: Option<Severity>,
    pub tier: Option<Tier>,
    pub runbook: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub action: Option<RuleAction>,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// A duration written as Prometheus writes them: "500ms", "30s", "15m", "4h", "30d", "1h30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(s))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d, w), e.g. \"15m\" or \"1h30m\"")
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let too_long = || format!("invalid duration {text:?}: too long");
            let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let millis_per_unit: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            let millis = n.checked_mul(millis_per_unit).ok_or_else(too_long)?;
            total = total
                .checked_add(Duration::from_millis(millis))
                .ok_or_else(too_long)?;
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One problem with a config file: where (line, key) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// Every problem found in a config file; `Display` prints one per line as `origin:line: key: what`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{}: ", self.origin, line)?,
                None => write!(f, "{}: ", self.origin)?,
            }
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

/// A segment of a key path, for finding the line of a value.
#[derive(Debug, Clone)]
enum Seg {
    Key(&'static str),
    Index(usize),
    Name(String),
}

impl Config {
    /// Parse and validate `text`; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            // toml's message repeats the location and quotes the source; keep its first
            // sentence, the location is ours to print. For some characters (a control
            // character in a comment) toml says nothing at all: say what it is.
            let mut message = e.message().trim().to_string();
            if message.is_empty() {
                let found = e
                    .span()
                    .and_then(|span| text.get(span.start..))
                    .and_then(|rest| rest.chars().next());
                message = match found {
                    Some(c) => format!("{c:?} is not allowed here in TOML"),
                    None => "the file ends where TOML expects more".to_string(),
                };
            }
            ConfigError {
                origin: origin.to_string(),
                problems: vec![Problem {
                    line,
                    key: String::new(),
                    message,
                }],
            }
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            return Ok(config);
        }
        let doc = toml_edit::ImDocument::parse(text).ok();
        Err(ConfigError {
            origin: origin.to_string(),
            problems: problems
                .into_iter()
                .map(|(path, message)| Problem {
                    line: doc
                        .as_ref()
                        .and_then(|d| locate(d.as_item(), &path))
                        .map(|offset| line_of(text, offset)),
                    key: render_path(&path),
                    message,
                })
                .collect(),
        })
    }

    /// The embedded default (`config/triaged.toml`).
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_TOML, "embedded default")
            .expect("the embedded default config is valid")
    }

    /// Why `retention` is too short for this config's windows, if it is: a resolved incident
    /// must outlive the window in which its group may reopen it, and a resolved alert the
    /// flapping window its state changes are counted in. (A reload checks the retention in
    /// force, which only a restart changes, against the new windows.)
    pub fn retention_problem(&self, retention: HumanDuration) -> Option<String> {
        let needed = self.dedup.reopen_window.max(self.flapping.window);
        if retention >= needed {
            return None;
        }
        let which = if needed == self.dedup.reopen_window {
            "dedup.reopen_window"
        } else {
            "flapping.window"
        };
        Some(format!(
            "must be at least {which} ({needed}): what is resolved is kept while it may still reopen or flap"
        ))
    }

    /// Semantic checks serde cannot do, each with the key path it concerns.
    fn problems(&self) -> Vec<(Vec<Seg>, String)> {
        let mut out = Vec::new();
        if self.server.max_body_bytes == 0 {
            out.push((
                vec![Seg::Key("server"), Seg::Key("max_body_bytes")],
                "must be greater than 0".to_string(),
            ));
        }
        if self.storage.checkpoint_kb == 0 {
            out.push((
                vec![Seg::Key("storage"), Seg::Key("checkpoint_kb")],
                "must be greater than 0".to_string(),
            ));
        }
        if let Some(why) = self.retention_problem(self.storage.retention) {
            out.push((vec![Seg::Key("storage"), Seg::Key("retention")], why));
        }
        if self.server.queue_capacity == 0 {
            out.push((
                vec![Seg::Key("server"), Seg::Key("queue_capacity")],
                "must be greater than 0".to_string(),
            ));
        }
        for (key, n) in [
            ("max_connections", self.server.max_connections),
            ("max_inflight_bytes", self.server.max_inflight_bytes),
            ("max_alerts_per_request", self.server.max_alerts_per_request),
            ("max_labels_per_alert", self.server.max_labels_per_alert),
            ("max_label_bytes", self.server.max_label_bytes),
        ] {
            if n == 0 {
                out.push((
                    vec![Seg::Key("server"), Seg::Key(key)],
                    "must be greater than 0".to_string(),
                ));
            }
        }
        if self.server.max_inflight_bytes < self.server.max_body_bytes {
            out.push((
                vec![Seg::Key("server"), Seg::Key("max_inflight_bytes")],
                format!(
                    "must be at least max_body_bytes ({}), or no body of the largest allowed size could ever be read",
                    self.server.max_body_bytes
                ),
            ));
        }
        for (key, d) in [
            ("header_read_timeout", self.server.header_read_timeout),
            ("body_read_timeout", self.server.body_read_timeout),
        ] {
            if d.0.is_zero() {
                out.push((
                    vec![Seg::Key("server"), Seg::Key(key)],
                    "must be greater than 0".to_string(),
                ));
            }
        }
        self.auth_problems(&mut out);
        if !is_log_filter(&self.log.level) {
            out.push((
                vec![Seg::Key("log"), Seg::Key("level")],
                format!(
                    "invalid level {:?}: expected trace, debug, info, warn or error (or directives such as \"info,triaged=debug\")",
                    self.log.level
                ),
            ));
        }
        if self.dedup.resolve_timeout.0.is_zero() {
            out.push((
                vec![Seg::Key("dedup"), Seg::Key("resolve_timeout")],
                "must be greater than 0".to_string(),
            ));
        }
        for (key, d) in [
            ("reopen_window", self.dedup.reopen_window),
            ("reopen_escalate_window", self.dedup.reopen_escalate_window),
        ] {
            if d.0.is_zero() {
                out.push((
                    vec![Seg::Key("dedup"), Seg::Key(key)],
                    "must be greater than 0".to_string(),
                ));
            }
        }
        if self.flapping.window.0.is_zero() {
            out.push((
                vec![Seg::Key("flapping"), Seg::Key("window")],
                "must be greater than 0".to_string(),
            ));
        }
        if self.escalation.ceiling == Tier::L0 {
            out.push((
                vec![Seg::Key("escalation"), Seg::Key("ceiling")],
                "must be L1 or higher".to_string(),
            ));
        }
        for (name, tier) in [
            ("L1", Tier::L1),
            ("L2", Tier::L2),
            ("L3", Tier::L3),
            ("L4", Tier::L4),
        ] {
            let Some(policy) = self.escalation.policy(tier) else {
                continue;
            };
            let at =
                |key: &'static str| vec![Seg::Key("escalation"), Seg::Key(name), Seg::Key(key)];
            if matches!(policy.next, Some(next) if next <= tier) {
                out.push((at("next"), format!("must be a tier above {name}")));
            }
            for (key, d) in [
                ("ack_timeout", policy.ack_timeout),
                ("resolve_timeout", policy.resolve_timeout),
            ] {
                if d.is_some_and(|d| d.0.is_zero()) {
                    out.push((
                        at(key),
                        "must be greater than 0 (leave it out for none)".to_string(),
                    ));
                }
            }
        }
        let mut sink_names = std::collections::HashSet::new();
        for (i, w) in self.notify.webhook.iter().enumerate() {
            let at = |key: &'static str| {
                vec![
                    Seg::Key("notify"),
                    Seg::Key("webhook"),
                    Seg::Index(i),
                    Seg::Key(key),
                ]
            };
            if w.name.trim().is_empty() || !sink_names.insert(w.name.as_str()) {
                out.push((at("name"), "must be unique and not empty".to_string()));
            }
            if !(w.url.starts_with("http://") || w.url.starts_with("https://"))
                || w.url.parse::<hyper::Uri>().is_err()
            {
                out.push((at("url"), format!("{:?} is not an http(s) URL", w.url)));
            }
            if w.timeout.0.is_zero() {
                out.push((at("timeout"), "must be greater than 0".to_string()));
            }
            if w.max_backoff.0.is_zero() {
                // Every retry after the first would follow the last failure at once.
                out.push((at("max_backoff"), "must be greater than 0".to_string()));
            }
            if let Some(template) = &w.template {
                for unknown in crate::notify::webhook::unknown_placeholders(template) {
                    out.push((
                        at("template"),
                        format!(
                            "unknown placeholder {unknown}: it would be sent as it is; expected one of {}",
                            crate::notify::webhook::PLACEHOLDERS
                                .map(|p| format!("{{{{{p}}}}}"))
                                .join(", ")
                        ),
                    ));
                }
            }
            filter_problems(&w.filter(), &at, &mut out);
        }
        if let Some(k) = &self.notify.kafka {
            let at = |key: &'static str| vec![Seg::Key("notify"), Seg::Key("kafka"), Seg::Key(key)];
            if k.topic.trim().is_empty() {
                out.push((at("topic"), "must not be empty".to_string()));
            }
            if k.brokers.is_none() && self.kafka.is_none() {
                out.push((
                    at("brokers"),
                    "needed when there is no [kafka] section to take them from".to_string(),
                ));
            }
            for (key, value) in &k.properties {
                if let Some(why) = kafka_property_problem(key, value) {
                    let mut path = at("properties");
                    path.push(Seg::Name(key.clone()));
                    out.push((path, why));
                }
            }
            filter_problems(&k.filter(), &at, &mut out);
        }
        if let Some(kafka) = &self.kafka {
            let at = |key: &'static str| vec![Seg::Key("kafka"), Seg::Key(key)];
            if kafka.brokers.trim().is_empty() {
                out.push((at("brokers"), "must name at least one broker".to_string()));
            }
            if kafka.group_id.trim().is_empty() {
                out.push((at("group_id"), "must not be empty".to_string()));
            }
            if kafka.topics.is_empty() {
                out.push((at("topics"), "must name at least one topic".to_string()));
            }
            if kafka.max_message_bytes == 0 || kafka.max_batch == 0 {
                out.push((
                    at("max_batch"),
                    "max_batch and max_message_bytes must be greater than 0".to_string(),
                ));
            }
            for (key, value) in &kafka.properties {
                let mut path = at("properties");
                path.push(Seg::Name(key.clone()));
                if KAFKA_MANAGED_PROPERTIES.contains(&key.as_str()) {
                    out.push((path, format!("{key:?} is set by triaged itself (at-least-once delivery depends on it); use brokers/group_id")));
                } else if let Some(why) = kafka_property_problem(key, value) {
                    out.push((path, why));
                }
            }
        }
        if self.grouping.group_by.is_empty() {
            out.push((
                vec![Seg::Key("grouping"), Seg::Key("group_by")],
                "must name at least one label".to_string(),
            ));
        }
        if self.severity.labels.is_empty() {
            out.push((
                vec![Seg::Key("severity"), Seg::Key("labels")],
                "must name at least one label".to_string(),
            ));
        }
        // L4 is the vendor handover, by hand from L3 only: no alert is sent there.
        const L4_BY_HAND: &str =
            "L4 is the vendor handover, made by hand from L3 (naming the vendor): no alert goes there by itself; L0 to L3";
        let t = &self.tiers;
        for (key, tier) in [
            ("critical", t.critical),
            ("major", t.major),
            ("minor", t.minor),
            ("warning", t.warning),
            ("info", t.info),
        ] {
            if tier == Tier::L4 {
                let path = vec![Seg::Key("tiers"), Seg::Key(key)];
                out.push((path, L4_BY_HAND.to_string()));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |key: &'static str| vec![Seg::Key("rules"), Seg::Index(i), Seg::Key(key)];
            if rule.tier == Some(Tier::L4) {
                out.push((at("tier"), L4_BY_HAND.to_string()));
            }
            if rule.name.trim().is_empty() {
                out.push((at("name"), "must not be empty".to_string()));
            } else if !names.insert(rule.name.as_str()) {
                out.push((at("name"), format!("duplicate rule name {:?}", rule.name)));
            }
            if rule.matchers.is_empty() {
                out.push((
                    at("matchers"),
                    "must hold at least one matcher (use 'alertname=~\".+\"' to match everything)"
                        .to_string(),
                ));
            }
            for (j, matcher) in rule.matchers.iter().enumerate() {
                if let Err(e) = crate::pipeline::classify::Matcher::parse(matcher) {
                    let mut path = at("matchers");
                    path.push(Seg::Index(j));
                    out.push((path, e));
                }
            }
            if matches!(&rule.group_by, Some(g) if g.is_empty()) {
                out.push((at("group_by"), "must name at least one label".to_string()));
            }
            for name in rule.set_labels.keys() {
                if name.is_empty() {
                    let mut path = at("set_labels");
                    path.push(Seg::Name(name.clone()));
                    out.push((path, "label names must not be empty".to_string()));
                }
            }
        }
        out
    }

    /// Refuses a daemon reachable beyond loopback that was not told how to authenticate: with
    /// no tokens, only an explicit `[auth] enabled = false` runs it open.
    pub fn exposure_problem(&self) -> Option<String> {
        if self.auth.enabled.is_none()
            && self.auth.tokens.is_empty()
            && !self.server.listen.ip().is_loopback()
        {
            Some(format!(
                "{} is reachable beyond loopback and no [[auth.tokens]] are configured: add tokens, \
                 or set `enabled = false` under [auth] to run without authentication on purpose",
                self.server.listen
            ))
        } else {
            None
        }
    }

    fn auth_problems(&self, out: &mut Vec<(Vec<Seg>, String)>) {
        let auth = &self.auth;
        if auth.enabled == Some(true) && auth.tokens.is_empty() {
            out.push((
                vec![Seg::Key("auth"), Seg::Key("enabled")],
                "authentication is enabled but no [[auth.tokens]] are configured".to_string(),
            ));
        }
        if let Some(problem) = self.exposure_problem() {
            out.push((vec![Seg::Key("server"), Seg::Key("listen")], problem));
        }
        let mut names = std::collections::HashSet::new();
        for (i, token) in auth.tokens.iter().enumerate() {
            let at = |key: &'static str| {
                vec![
                    Seg::Key("auth"),
                    Seg::Key("tokens"),
                    Seg::Index(i),
                    Seg::Key(key),
                ]
            };
            if token.name.trim().is_empty() || token.name.contains(':') {
                out.push((
                    at("name"),
                    "must not be empty nor contain ':' (it is the user name of basic auth)"
                        .to_string(),
                ));
            } else if !names.insert(token.name.as_str()) {
                out.push((at("name"), format!("duplicate token name {:?}", token.name)));
            }
            match (&token.token_file, &token.token) {
                (Some(_), Some(_)) => out.push((
                    at("token"),
                    "give either token_file or token, not both".to_string(),
                )),
                (None, None) => out.push((
                    at("name"),
                    "needs token_file (the file holding the token)".to_string(),
                )),
                (None, Some(inline)) => {
                    if !token.allow_inline {
                        out.push((
                            at("token"),
                            "inline tokens end up in backups and diffs of the config: put the \
                             token in a file and name it in token_file, or set allow_inline = true"
                                .to_string(),
                        ));
                    } else if inline.trim().is_empty() {
                        out.push((at("token"), "must not be empty".to_string()));
                    }
                }
                (Some(_), None) => {}
            }
            if token.roles.is_empty() {
                out.push((
                    at("roles"),
                    "must name at least one of \"ingest\", \"operator\", \"admin\"".to_string(),
                ));
            }
        }
    }

    /// Things that are valid but almost certainly wrong, each as `origin:line: what`: rules that
    /// can never match because an earlier rule without `continue` matches every alert they would
    /// (its every matcher is one of theirs, or matches everything).
    pub fn warnings(&self, text: &str, origin: &str) -> Vec<String> {
        let Ok(rules) = self.compile_rules() else {
            return Vec::new();
        };
        let doc = toml_edit::ImDocument::parse(text).ok();
        let line = |i: usize| {
            doc.as_ref()
                .and_then(|d| {
                    locate(
                        d.as_item(),
                        &[Seg::Key("rules"), Seg::Index(i), Seg::Key("name")],
                    )
                })
                .map(|offset| line_of(text, offset).to_string())
                .unwrap_or_else(|| "?".into())
        };
        let mut out = Vec::new();
        for (j, later) in rules.rules().iter().enumerate() {
            let shadow = rules.rules()[..j].iter().enumerate().find(|(_, earlier)| {
                !earlier.config.continue_
                    && earlier
                        .matchers
                        .iter()
                        .all(|m| m.is_always_true() || later.matchers.iter().any(|n| m.same_as(n)))
            });
            if let Some((i, earlier)) = shadow {
                out.push(format!(
                    "{origin}:{}: rules[{j}] {:?} can never match: rule {:?} (line {}) matches every alert it would, and has no `continue`",
                    line(j),
                    later.name,
                    earlier.name,
                    line(i),
                ));
            }
        }
        out
    }

    /// The compiled rules; only fails on a config that did not come through [`Config::parse`].
    pub fn compile_rules(&self) -> Result<Rules, String> {
        Rules::compile(&self.rules)
    }
}

/// What is wrong with a sink's event filter, under the sink's key path.
fn filter_problems(
    filter: &EventFilter,
    at: &dyn Fn(&'static str) -> Vec<Seg>,
    out: &mut Vec<(Vec<Seg>, String)>,
) {
    for kind in &filter.kinds {
        if !EVENT_KINDS.contains(&kind.as_str()) {
            out.push((
                at("kinds"),
                format!(
                    "unknown event kind {kind:?}: expected one of {}",
                    EVENT_KINDS.join(", ")
                ),
            ));
        }
    }
    for (j, m) in filter.matchers.iter().enumerate() {
        if let Err(e) = crate::pipeline::classify::Matcher::parse(m) {
            let mut path = at("matchers");
            path.push(Seg::Index(j));
            out.push((path, e));
        }
    }
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Name(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Byte offset of the value at `path` in the parsed document, if it can be found; else of the
/// deepest part of the path that can.
fn locate(root: &toml_edit::Item, path: &[Seg]) -> Option<usize> {
    enum Node<'a> {
        Item(&'a toml_edit::Item),
        Table(&'a toml_edit::Table),
        Value(&'a toml_edit::Value),
    }
    let mut node = Node::Item(root);
    let mut best = None;
    for seg in path {
        let next = match (&node, seg) {
            (Node::Item(item), Seg::Key(k)) => item.get(*k).map(Node::Item),
            (Node::Item(item), Seg::Name(k)) => item.get(k.as_str()).map(Node::Item),
            (Node::Table(t), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Table(t), Seg::Name(k)) => t.get(k).map(Node::Item),
            (Node::Item(toml_edit::Item::ArrayOfTables(a)), Seg::Index(i)) => {
                a.get(*i).map(Node::Table)
            }
            (Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a))), Seg::Index(i)) => {
                a.get(*i).map(Node::Value)
            }
            (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Key(k)) => {
                t.get(k).map(Node::Value)
            }
            (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Name(k)) => {
                t.get(k).map(Node::Value)
            }
            _ => None,
        };
        let Some(next) = next else {
            return best;
        };
        let start = match next {
            Node::Item(toml_edit::Item::Value(v)) | Node::Value(v) => v.span().map(|s| s.start),
            Node::Item(toml_edit::Item::Table(t)) | Node::Table(t) => t.span().map(|s| s.start),
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.span().map(|s| s.start),
            Node::Item(toml_edit::Item::None) => None,
        };
        best = start.or(best);
        node = next;
    }
    best
}

/// 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Why librdkafka refuses property `key` = `value` (an unknown name, a bad value), if it does:
/// asked of librdkafka itself, without creating a client, so that `check-config` and the start
/// say it with the line rather than the consumer failing once the daemon runs.
fn kafka_property_problem(key: &str, value: &str) -> Option<String> {
    let mut config = rdkafka::ClientConfig::new();
    config.set(key, value);
    config.create_native_config().err().map(|e| match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description,
        other => other.to_string(),
    })
}

/// Whether `filter` is a level, or comma-separated directives each a level or `target=level`.
/// tracing's own parser takes any word as a target (`"eror"` enables one no event comes from,
/// so every log line would be lost without a word said): only level names are taken here.
fn is_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |word: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word));
    let is_target = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    tracing_subscriber::EnvFilter::try_new(filter).is_ok()
        && filter
            .split(',')
            .all(|directive| match directive.split_once('=') {
                Some((target, level)) => is_target(target) && is_level(level),
                None => is_level(directive),
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_equals_the_built_in_defaults_except_for_its_rules() {
        let example = Config::embedded_default();
        let mut without_rules = example.clone();
        without_rules.rules.clear();
        assert_eq!(without_rules, Config::default());
        assert_eq!(Config::parse("", "empty").unwrap(), Config::default());
        assert!(!example.rules.is_empty());
    }

    #[test]
    fn auth_is_off_on_loopback_without_tokens_and_must_be_said_off_beyond_it() {
        let c = Config::parse("", "t").unwrap();
        assert!(!c.auth.required());
        let e = Config::parse("[server]\nlisten = \"0.0.0.0:9595\"\n", "t").unwrap_err();
        assert_eq!(e.problems[0].line, Some(2), "{e}");
        assert!(e.to_string().contains("enabled = false"), "{e}");
        let off = Config::parse(
            "[server]\nlisten = \"0.0.0.0:9595\"\n[auth]\nenabled = false\n",
            "t",
        )
        .unwrap();
        assert!(!off.auth.required());
        let on = Config::parse(
            "[server]\nlisten = \"0.0.0.0:9595\"\n[[auth.tokens]]\nname = \"p\"\ntoken_file = \"/x\"\nroles = [\"ingest\"]\n",
            "t",
        )
        .unwrap();
        assert!(on.auth.required());
    }

    #[test]
    fn token_problems_name_their_line_and_never_print_the_token() {
        let text = "[[auth.tokens]]\nname = \"a:b\"\ntoken_file = \"/x\"\nroles = []\n\n[[auth.tokens]]\nname = \"c\"\ntoken = \"s3cret-inline\"\nroles = [\"admin\"]\n";
        let e = Config::parse(text, "t").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("t:2: auth.tokens[0].name"), "{shown}");
        assert!(shown.contains("t:4: auth.tokens[0].roles"), "{shown}");
        assert!(shown.contains("t:8: auth.tokens[1].token"), "{shown}");
        assert!(!shown.contains("s3cret-inline"), "{shown}");
        let c = Config::parse(
            "[[auth.tokens]]\nname = \"c\"\ntoken = \"s3cret-inline\"\nallow_inline = true\nroles = [\"admin\"]\n",
            "t",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret-inline"));
    }

    #[test]
    fn durations_read_like_prometheus() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(d("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("30d"), Ok(Duration::from_secs(30 * 86400)));
        for bad in ["", "15", "m", "15x", "1.5h", "-1s", "99999999999999999999d"] {
            assert!(d(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            HumanDuration(Duration::from_secs(5400)).to_string(),
            "1h30m"
        );
    }

    /// Regression (found by the fuzz pass, `tests/fuzz.rs`): toml gives no message for a control
    /// character in a comment, and the refusal said only "x.toml:2: ".
    #[test]
    fn regression_a_control_character_in_a_comment_is_refused_saying_so() {
        let err = Config::parse("[server]\n#\0\n", "x.toml").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].line, Some(2));
        assert_eq!(
            err.to_string(),
            "x.toml:2: '\\0' is not allowed here in TOML"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[dedup]\nresolve_timout = \"5m\"\n";
        let err = Config::parse(text, "t.toml").unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("t.toml:5: "), "{shown}");
        assert!(shown.contains("resolve_timout"), "{shown}");
    }

    #[test]
    fn a_bad_value_is_refused_with_its_line() {
        let text = "[dedup]\nresolve_timeout = \"5 minutes\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:2: "), "{shown}");
        assert!(shown.contains("invalid duration"), "{shown}");

        let text = "[tiers]\ncritical = \"L9\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:2: "), "{shown}");

        // L4 is reached by hand only (the vendor handover): not by severity, not by a rule.
        let text = "[tiers]\nmajor = \"L3\"\ncritical = \"L4\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:3: "), "{shown}");
        assert!(
            shown.contains("tiers.critical: L4 is the vendor handover"),
            "{shown}"
        );
        let text = "[[rules]]\nname = \"x\"\nmatchers = ['alertname=\"A\"']\ntier = \"L4\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:4: "), "{shown}");
        assert!(
            shown.contains("rules[0].tier: L4 is the vendor handover"),
            "{shown}"
        );

        let text = "[storage]\ncache_mb = 16\ncheckpoint_kb = 0\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:3: "), "{shown}");
        assert!(
            shown.contains("storage.checkpoint_kb: must be greater than 0"),
            "{shown}"
        );
    }

    /// Retention removes what is resolved: never while it may still reopen or flap.
    #[test]
    fn retention_is_a_duration_no_shorter_than_the_reopen_and_flapping_windows() {
        assert_eq!(
            Config::default().storage.retention,
            HumanDuration::secs(30 * 86_400)
        );
        let bad = Config::parse("[storage]\nretention = \"1y\"\n", "t.toml");
        assert!(bad.unwrap_err().to_string().contains("invalid duration"));
        for huge in ["999999999999d", "99999999999999999999999s"] {
            let text = format!("[storage]\nretention = \"{huge}\"\n");
            let shown = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(shown.contains("too long"), "{huge}: {shown}");
        }
        let config = Config::parse("[storage]\nretention = \"90d\"\n", "t.toml").unwrap();
        assert_eq!(config.storage.retention, HumanDuration::secs(90 * 86_400));

        let text = "[dedup]\nreopen_window = \"2h\"\n[storage]\nretention = \"1h\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:4: "), "{shown}");
        assert!(
            shown.contains("storage.retention: must be at least dedup.reopen_window (2h)"),
            "{shown}"
        );
        let text = "[flapping]\nwindow = \"3h\"\n[storage]\nretention = \"2h\"\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(
            shown.contains("storage.retention: must be at least flapping.window (3h)"),
            "{shown}"
        );
        let short = "[dedup]\nreopen_window = \"1s\"\n[flapping]\nwindow = \"1s\"\n\
                     [storage]\nretention = \"2s\"\n";
        assert!(Config::parse(short, "t.toml").is_ok());
    }

    /// Regression: a property librdkafka does not know passed the check, and the consumer failed
    /// once the daemon ran, said only at its stop.
    #[test]
    fn kafka_properties_librdkafka_refuses_are_refused_with_their_line() {
        let text = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{name = \"alerts\"}]\n\n\
                    [kafka.properties]\n\"bogus.property\" = \"1\"\n\"fetch.wait.max.ms\" = \"soon\"\n\
                    \"security.protocol\" = \"plaintext\"\n";
        let shown = Config::parse(text, "k.toml").unwrap_err().to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2, "{shown}");
        assert!(
            lines[0].starts_with("k.toml:6: kafka.properties.bogus.property: ")
                && lines[0].contains("No such configuration property"),
            "{shown}"
        );
        assert!(lines[1].starts_with("k.toml:7: "), "{shown}");
    }

    /// Regression: a misspelt level was taken as a target by tracing's parser and every log
    /// line was lost, with `check-config` saying ok.
    #[test]
    fn a_log_level_that_is_no_level_is_refused_with_its_line() {
        for bad in [
            "eror",
            "verbose",
            "",
            "info,triaged=loud",
            "info,=debug",
            "info warn",
            "warn, hyper=error",
        ] {
            let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n\n[log]\nlevel = {bad:?}\n");
            let shown = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(shown.starts_with("t.toml:5: "), "{bad:?}: {shown}");
            assert!(
                shown.contains("log.level: invalid level"),
                "{bad:?}: {shown}"
            );
        }
        for good in [
            "info",
            "WARN",
            "error",
            "off",
            "info,triaged=debug",
            "warn,hyper=error",
        ] {
            let text = format!("[log]\nlevel = {good:?}\n");
            let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{good:?}: {e}"));
            tracing_subscriber::EnvFilter::try_new(&config.log.level)
                .unwrap_or_else(|e| panic!("{good:?} taken here but not by tracing: {e}"));
        }
    }

    #[test]
    fn every_bad_rule_is_reported_with_its_line_and_key() {
        let text = r#"
[[rules]]
name = "a"
matchers = ['alertname="X"']

[[rules]]
name = "b"
matchers = [
  'env="prod"',
  'alertname=~"(unclosed"',
]

[[rules]]
name = "a"
matchers = ['no operator here']
"#;
        let err = Config::parse(text, "r.toml").unwrap_err();
        let shown = err.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(
            lines[0].starts_with("r.toml:10: rules[1].matchers[1]: "),
            "{shown}"
        );
        assert!(lines[0].contains("regex"), "{shown}");
        assert!(
            lines[1].starts_with("r.toml:14: rules[2].name: "),
            "{shown}"
        );
        assert!(lines[1].contains("duplicate"), "{shown}");
        assert!(
            lines[2].starts_with("r.toml:15: rules[2].matchers[0]: "),
            "{shown}"
        );
    }

    #[test]
    fn a_rule_behind_a_broader_one_without_continue_is_reported() {
        let text = r#"
[[rules]]
name = "all-db"
matchers = ['service="db"']

[[rules]]
name = "db-disk"
matchers = ['service="db"', 'alertname="DiskFull"']
tier = "L3"

[[rules]]
name = "team"
matchers = ['team=~".*"']
continue = true

[[rules]]
name = "web"
matchers = ['service="web"']

[[rules]]
name = "catch-all"
matchers = ['alertname=~".*"']

[[rules]]
name = "never"
matchers = ['service="api"']
"#;
        let config = Config::parse(text, "w.toml").unwrap();
        let warnings = config.warnings(text, "w.toml");
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].starts_with(
                "w.toml:7: rules[1] \"db-disk\" can never match: rule \"all-db\" (line 3)"
            ),
            "{warnings:#?}"
        );
        assert!(
            warnings[1].starts_with(
                "w.toml:25: rules[5] \"never\" can never match: rule \"catch-all\" (line 21)"
            ),
            "{warnings:#?}"
        );
        assert!(Config::embedded_default()
            .warnings(DEFAULT_TOML, "default")
            .is_empty());
    }

    #[test]
    fn sink_filters_are_checked_for_both_kinds_of_sink() {
        let text = "[kafka]\nbrokers = \"k:9092\"\ntopics = [{ name = \"a\" }]\n\n\
                    [[notify.webhook]]\nname = \"w\"\nurl = \"http://x/\"\nkinds = [\"opend\"]\n\n\
                    [notify.kafka]\ntopic = \"t\"\nmatchers = ['team=~\"(\"']\n";
        let shown = Config::parse(text, "s.toml").unwrap_err().to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2, "{shown}");
        assert!(
            lines[0].starts_with("s.toml:8: notify.webhook[0].kinds: unknown event kind \"opend\""),
            "{shown}"
        );
        assert!(
            lines[1].starts_with("s.toml:12: notify.kafka.matchers[0]: "),
            "{shown}"
        );
    }

    #[test]
    fn a_webhook_with_an_unknown_placeholder_or_no_backoff_is_refused_on_its_line() {
        let text = "[[notify.webhook]]\nname = \"chat\"\nurl = \"http://x/\"\n\
                    template = '{\"text\": \"{{incident.id}} {{incident.labels}}\"}'\n\n\
                    [[notify.webhook]]\nname = \"ok\"\nurl = \"http://y/\"\n\
                    template = '{\"text\": \"{{kind}} {{incident.runbook}}\"}'\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 1, "{shown}");
        assert!(
            lines[0].starts_with(
                "t.toml:4: notify.webhook[0].template: unknown placeholder {{incident.labels}}: it would be sent as it is; expected one of {{kind}}, {{event_id}}"
            ),
            "{shown}"
        );
        assert!(lines[0].contains("{{incident.runbook}}"), "{shown}");
        let slack = "[[notify.webhook]]\nname = \"s\"\nurl = \"http://x/\"\ntemplate = \"slack\"\n";
        Config::parse(slack, "s.toml").expect("the built-in template");
        let no_backoff =
            "[[notify.webhook]]\nname = \"s\"\nurl = \"http://x/\"\nmax_backoff = \"0s\"\n";
        let shown = Config::parse(no_backoff, "b.toml").unwrap_err().to_string();
        assert!(
            shown.starts_with("b.toml:4: notify.webhook[0].max_backoff: must be greater than 0"),
            "{shown}"
        );
    }
}
