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
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::alert::{Severity, SeverityMap};
use crate::incident::Tier;
use crate::pipeline::classify::Rules;

/// The commented example, embedded: what `triaged run` uses without `--config`.
pub const DEFAULT_TOML: &str = include_str!("../config/triaged.toml");

/// The whole configuration. Read it with [`Config::parse`] or [`Config::parse_with`]: the types
/// do not deny unknown keys themselves, so that every unknown key is found in one pass (with
/// `serde_ignored`) and refused there, each with its line.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
pub struct TierPolicy {
    /// Unacknowledged this long after reaching the tier ⇒ escalate to `next`.
    pub ack_timeout: Option<HumanDuration>,
    /// Unresolved this long after reaching the tier ⇒ escalate to `next`.
    pub resolve_timeout: Option<HumanDuration>,
    /// Where timeouts escalate to; default the tier above.
    pub next: Option<Tier>,
}

/// Why L4 is refused wherever a config would send incidents there by itself: it is the vendor
/// handover, made by hand from L3 only.
const L4_BY_HAND: &str =
    "L4 is the vendor handover, made by hand from L3 (naming the vendor): no alert goes there by itself";

/// `[escalation]`: `ceiling` and one `[escalation.Ln]` table per tier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
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
    /// severity_raised, auto_handled.
    pub kinds: Vec<String>,
    pub min_severity: Option<Severity>,
    /// Alertmanager matchers on the incident's labels.
    pub matchers: Vec<String>,
}

/// The event kinds sinks can be given.
pub const EVENT_KINDS: [&str; 10] = [
    "opened",
    "acknowledged",
    "escalated",
    "de_escalated",
    "assigned",
    "resolved",
    "reopened",
    "flapping",
    "severity_raised",
    "auto_handled",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
pub struct KafkaSinkConfig {
    pub topic: String,
    /// Defaults to `[kafka].brokers`.
    pub brokers: Option<String>,
    /// An attempt the brokers have not acknowledged within this has failed (librdkafka's
    /// `message.timeout.ms`): counted as an error, logged, and retried.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
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

    /// The longest duration a config may give: 100 years (36500d). Longer ones are refused as
    /// too long rather than taken: a deadline or expiry that far off cannot be dated (chrono's
    /// calendar ends), so it would silently mean "never".
    pub const MAX: HumanDuration = HumanDuration::secs(36_500 * 86_400);
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
            let too_long = || {
                format!(
                    "invalid duration {text:?}: too long (at most {})",
                    HumanDuration::MAX
                )
            };
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
                .filter(|&total| total <= HumanDuration::MAX.0)
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

/// What [`Config::parse_with`] checks beyond the text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// Read the files the config names (token files, the TLS certificate and key, the sinks'
    /// secret files), and create the Kafka clients (connected to nothing: librdkafka reads its
    /// TLS files then): one that cannot be read or created is a problem on the line that names
    /// it. For a daemon (`check-config`, `run`, a reload), not for `replay` and `test-rules`.
    pub files: bool,
    /// The retention of the running daemon, for a reload (`[storage]` waits for a restart):
    /// the new windows must fit in it too.
    pub retention_in_force: Option<HumanDuration>,
}

/// A syntax or type error as a problem: its line, and toml's first sentence (the location is
/// ours to print); for some characters (a control character in a comment) toml says nothing at
/// all, so say what it is.
fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
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
    Problem {
        line: e.span().map(|span| line_of(text, span.start)),
        key: String::new(),
        message,
    }
}

/// The key path of a key the schema does not have, as [`serde_ignored`] reports it.
fn ignored_path(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    let mut out = Vec::new();
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Seg::Index(*index));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Seg::Name(key.clone()));
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    walk(path, &mut out);
    out
}

/// A file path as the config gives it, with a leading `${CREDENTIALS_DIRECTORY}` replaced by
/// that variable: where systemd puts the credentials of a unit with `LoadCredential=` (readable
/// by the service's user alone, whatever the mode of the file they were loaded from).
pub fn resolve_file(path: &Path) -> Result<PathBuf, String> {
    let Ok(rest) = path.strip_prefix(CREDENTIALS_DIRECTORY) else {
        return Ok(path.to_path_buf());
    };
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join(rest)),
        _ => Err(format!(
            "{}: CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with \
             LoadCredential=; elsewhere, set it to the directory that holds these files)",
            path.display()
        )),
    }
}

/// How a config names systemd's credentials directory in a file path.
pub const CREDENTIALS_DIRECTORY: &str = "${CREDENTIALS_DIRECTORY}";

/// Whether `path` (resolved) lies in systemd's credentials directory, whose files only the
/// service can read whatever their mode says (systemd grants the service user access by an ACL,
/// which shows in the group bits).
pub fn is_credential(path: &Path) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|dir| !dir.is_empty())
        .is_some_and(|dir| path.starts_with(dir))
}

impl Config {
    /// Parse and validate `text`; `origin` names the file in messages. Reads no file the config
    /// names: [`Config::parse_with`] does, for a daemon.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, origin, Checks::default())
    }

    /// Parse and validate `text`, and check what `checks` asks besides. A syntax error or a
    /// value of the wrong type stops at the first; every other problem (unknown keys, values
    /// that do not fit together, files that cannot be read) is listed, each with its line.
    pub fn parse_with(text: &str, origin: &str, checks: Checks) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let config: Config = serde_ignored::deserialize(toml::Deserializer::new(text), |path| {
            unknown.push(ignored_path(&path))
        })
        .map_err(|e| ConfigError {
            origin: origin.to_string(),
            problems: vec![toml_problem(text, &e)],
        })?;
        let doc = toml_edit::ImDocument::parse(text).ok();
        let present = |path: &[Seg]| doc.as_ref().is_some_and(|d| is_present(d.as_item(), path));
        let mut problems: Vec<(Vec<Seg>, String)> = unknown
            .into_iter()
            .map(|path| {
                let (key, parent) = path.split_last().expect("an ignored key has a path");
                let name = match key {
                    Seg::Key(k) => k.to_string(),
                    Seg::Name(k) => k.clone(),
                    Seg::Index(i) => i.to_string(),
                };
                let message = match schema::fields_at(parent) {
                    Some(fields) => {
                        <serde::de::value::Error as serde::de::Error>::unknown_field(&name, fields)
                            .to_string()
                    }
                    None => format!("unknown field `{name}`"),
                };
                (path, message)
            })
            .collect();
        problems.extend(config.problems());
        if let Some(retention) = checks.retention_in_force {
            if let Some((window, why)) = config.retention_problem(retention) {
                // The line of the window that outgrew it, else of the file's retention (which
                // waits for a restart), else none: neither is in the file.
                let retention_key = vec![Seg::Key("storage"), Seg::Key("retention")];
                let path = if !present(&window) && present(&retention_key) {
                    retention_key
                } else {
                    window
                };
                problems.push((
                    path,
                    format!(
                        "storage.retention in force ({retention}, changed only by a restart) {why}"
                    ),
                ));
            }
        }
        if checks.files {
            problems.extend(config.file_problems());
        }
        if problems.is_empty() {
            return Ok(config);
        }
        let mut problems: Vec<Problem> = problems
            .into_iter()
            .map(|(path, message)| Problem {
                line: doc
                    .as_ref()
                    .and_then(|d| locate(d.as_item(), &path))
                    .map(|offset| line_of(text, offset)),
                key: render_path(&path),
                message,
            })
            .collect();
        // In the file's order, as an editor walks it.
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(ConfigError {
            origin: origin.to_string(),
            problems,
        })
    }

    /// The embedded default (`config/triaged.toml`).
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_TOML, "embedded default")
            .expect("the embedded default config is valid")
    }

    /// Why `retention` is too short for this config's windows, if it is, with the window's key
    /// path: a resolved incident must outlive the window in which its group may reopen it, and
    /// a resolved alert the flapping window its state changes are counted in. (A reload checks
    /// the retention in force, which only a restart changes, against the new windows.)
    fn retention_problem(&self, retention: HumanDuration) -> Option<(Vec<Seg>, String)> {
        let needed = self.dedup.reopen_window.max(self.flapping.window);
        if retention >= needed {
            return None;
        }
        let (section, key) = if needed == self.dedup.reopen_window {
            ("dedup", "reopen_window")
        } else {
            ("flapping", "window")
        };
        Some((
            vec![Seg::Key(section), Seg::Key(key)],
            format!(
                "must be at least {section}.{key} ({needed}): what is resolved is kept while it may still reopen or flap"
            ),
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
        if self.storage.cache_mb == 0 {
            // sled refuses a page cache under 256 bytes with a panic when the store opens.
            out.push((
                vec![Seg::Key("storage"), Seg::Key("cache_mb")],
                "must be at least 1 (MiB): sled cannot run without a page cache".to_string(),
            ));
        }
        if let Some((_, why)) = self.retention_problem(self.storage.retention) {
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
        if self.flapping.max_changes == 0 {
            out.push((
                vec![Seg::Key("flapping"), Seg::Key("max_changes")],
                "must be greater than 0, or an alert's first resolution would mark it flapping"
                    .to_string(),
            ));
        }
        let ceiling = vec![Seg::Key("escalation"), Seg::Key("ceiling")];
        match self.escalation.ceiling {
            Tier::L0 => out.push((ceiling, "must be L1 or higher".to_string())),
            // Timeouts, reopens and flapping would hand incidents to L4 with no vendor named.
            Tier::L4 => out.push((ceiling, format!("{L4_BY_HAND}; L1 to L3"))),
            _ => {}
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
            match policy.next {
                Some(next) if next <= tier => {
                    out.push((at("next"), format!("must be a tier above {name}")));
                }
                Some(Tier::L4) => {
                    out.push((at("next"), format!("{L4_BY_HAND}; up to L3")));
                }
                // Automatic escalation stops at the ceiling: a tier below it whose `next` is
                // above it would never escalate, its timeouts silently off.
                Some(next) if tier < self.escalation.ceiling && next > self.escalation.ceiling => {
                    out.push((
                        at("next"),
                        format!(
                            "{next} is above escalation.ceiling ({}): {name}'s timeouts would never escalate; \
                             name a tier up to {} or raise the ceiling",
                            self.escalation.ceiling, self.escalation.ceiling
                        ),
                    ));
                }
                _ => {}
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
            if k.timeout.0.is_zero() {
                // librdkafka's 0: no timeout at all.
                out.push((at("timeout"), "must be greater than 0".to_string()));
            }
            if k.brokers.is_none() && self.kafka.is_none() {
                out.push((
                    at("brokers"),
                    "needed when there is no [kafka] section to take them from".to_string(),
                ));
            }
            for (key, value) in &k.properties {
                let mut path = at("properties");
                path.push(Seg::Name(key.clone()));
                if crate::notify::kafka::MANAGED_PROPERTIES.contains(&key.as_str()) {
                    out.push((path, format!("{key:?} is set by triaged itself (an idempotent producer with acks=all; timeout is message.timeout.ms); use brokers/timeout")));
                } else if let Some(why) = kafka_property_problem(key, value) {
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
            for (i, topic) in kafka.topics.iter().enumerate() {
                let path = vec![
                    Seg::Key("kafka"),
                    Seg::Key("topics"),
                    Seg::Index(i),
                    Seg::Key("name"),
                ];
                // librdkafka subscribes to a name starting with ^ as a regular expression.
                let why = if topic.name.starts_with('^') {
                    None
                } else {
                    topic_name_problem(&topic.name)
                };
                if let Some(why) = why {
                    out.push((path, why));
                } else if let Some(j) = kafka.topics[..i].iter().position(|t| t.name == topic.name)
                {
                    out.push((
                        path,
                        format!("{:?} is named twice (also topics[{j}])", topic.name),
                    ));
                }
            }
            if let Some(dead) = &kafka.dead_letter_topic {
                if dead.is_empty() {
                    out.push((
                        at("dead_letter_topic"),
                        "must not be empty (leave it out for none)".to_string(),
                    ));
                } else if let Some(why) = topic_name_problem(dead) {
                    out.push((at("dead_letter_topic"), why));
                } else if kafka.topics.iter().any(|t| &t.name == dead) {
                    out.push((
                        at("dead_letter_topic"),
                        format!("{dead:?} is consumed too: each dead letter would be read back as a poison message, without end"),
                    ));
                }
            }
            for (key, value) in [
                ("max_message_bytes", kafka.max_message_bytes),
                ("max_batch", kafka.max_batch),
            ] {
                if value == 0 {
                    out.push((at(key), "must be greater than 0".to_string()));
                }
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
                out.push((path, format!("{L4_BY_HAND}; L0 to L3")));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |key: &'static str| vec![Seg::Key("rules"), Seg::Index(i), Seg::Key(key)];
            if rule.tier == Some(Tier::L4) {
                out.push((at("tier"), format!("{L4_BY_HAND}; L0 to L3")));
            }
            if rule.name.trim().is_empty() {
                out.push((at("name"), "must not be empty".to_string()));
            } else if !names.insert(rule.name.as_str()) {
                out.push((at("name"), format!("duplicate rule name {:?}", rule.name)));
            }
            if rule.matchers.is_empty() {
                out.push((
                    at("matchers"),
                    format!("must hold at least one matcher (use '{MATCH_EVERY_ALERT}' to match every alert)"),
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

    /// The files this config names that cannot be read, or do not hold what they should: token
    /// files, the TLS certificate and key, the webhook sinks' secret files.
    fn file_problems(&self) -> Vec<(Vec<Seg>, String)> {
        let mut out = Vec::new();
        for (i, token) in self.auth.tokens.iter().enumerate() {
            if let Some(path) = &token.token_file {
                if let Err(why) = crate::sources::auth::read_token_file(path) {
                    let at = [Seg::Key("auth"), Seg::Key("tokens"), Seg::Index(i)];
                    out.push(([&at[..], &[Seg::Key("token_file")]].concat(), why));
                }
            }
        }
        if let Some(tls) = &self.server.tls {
            use crate::sources::tls::TlsError;
            for e in crate::sources::tls::problems(tls) {
                let (key, why) = match e {
                    TlsError::Cert { path, why } => ("cert_file", format!("{path}: {why}")),
                    TlsError::Key { path, why } => ("key_file", format!("{path}: {why}")),
                    pair @ TlsError::Pair(_) => ("key_file", pair.to_string()),
                };
                out.push((
                    vec![Seg::Key("server"), Seg::Key("tls"), Seg::Key(key)],
                    why,
                ));
            }
        }
        for (i, sink) in self.notify.webhook.iter().enumerate() {
            let at = |key: &'static str| {
                vec![
                    Seg::Key("notify"),
                    Seg::Key("webhook"),
                    Seg::Index(i),
                    Seg::Key(key),
                ]
            };
            if let Some(path) = &sink.authorization_file {
                if let Err(why) = crate::notify::webhook::read_authorization(path) {
                    out.push((at("authorization_file"), why));
                }
            }
            if let Some(path) = &sink.hmac_secret_file {
                if let Err(why) = crate::notify::webhook::read_hmac_secret(path) {
                    out.push((at("hmac_secret_file"), why));
                }
            }
        }
        kafka_client_problems(self, &mut out);
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
    /// (each of its matchers admits every value one of theirs does, or matches everything: see
    /// [`crate::pipeline::classify::Matcher::covers`]).
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
        let all = rules.rules();
        for (j, later) in all.iter().enumerate() {
            // The labels the two rules see differ when a rule between them that goes on
            // (`continue`) sets labels: then nothing is said.
            let relabelled_after = |i: usize| {
                all[i + 1..j]
                    .iter()
                    .any(|r| r.config.continue_ && !r.config.set_labels.is_empty())
            };
            let stops = |r: &crate::pipeline::classify::Rule| {
                !r.config.continue_ || r.config.action == Some(RuleAction::Drop)
            };
            let shadow = all[..j].iter().enumerate().find(|&(i, earlier)| {
                stops(earlier)
                    && earlier
                        .matchers
                        .iter()
                        .all(|m| later.matchers.iter().any(|n| m.covers(n)) || m.is_always_true())
                    && !relabelled_after(i)
            });
            if let Some((i, earlier)) = shadow {
                let stop = if earlier.config.action == Some(RuleAction::Drop) {
                    "drops it"
                } else {
                    "has no `continue`"
                };
                out.push(format!(
                    "{origin}:{}: rules[{j}] {:?} can never match: rule {:?} (line {}) matches every alert it would, and {stop}",
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
                if !out.is_empty() {
                    out.push('.');
                }
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
    walk_to(root, path).0
}

/// [`locate`]'s offset, and whether the whole path was found.
fn walk_to(root: &toml_edit::Item, path: &[Seg]) -> (Option<usize>, bool) {
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
            return (best, false);
        };
        let start = match next {
            Node::Item(toml_edit::Item::Value(v)) | Node::Value(v) => v.span().map(|s| s.start),
            // A table made by dotted keys (`a.b = 1`) has no span of its own: its first key's.
            Node::Item(toml_edit::Item::Table(t)) | Node::Table(t) => table_start(t),
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.span().map(|s| s.start),
            Node::Item(toml_edit::Item::None) => None,
        };
        best = start.or(best);
        node = next;
    }
    (best, true)
}

/// Whether the value at `path` is in the document (not only a table above it).
fn is_present(root: &toml_edit::Item, path: &[Seg]) -> bool {
    walk_to(root, path).1
}

/// Where a table starts: its header, else (made by dotted keys) the first value in it.
fn table_start(table: &toml_edit::Table) -> Option<usize> {
    fn first(item: &toml_edit::Item) -> Option<usize> {
        match item {
            toml_edit::Item::Value(v) => v.span().map(|s| s.start),
            toml_edit::Item::Table(t) => table_start(t),
            toml_edit::Item::ArrayOfTables(a) => a.span().map(|s| s.start),
            toml_edit::Item::None => None,
        }
    }
    table
        .span()
        .map(|s| s.start)
        .or_else(|| table.iter().find_map(|(_, item)| first(item)))
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

/// Why Kafka refuses `name` as a topic name, if it does (its rules: 1 to 249 characters, each
/// an ASCII letter, a digit, `.`, `_` or `-`, and neither `.` nor `..`).
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_string());
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a topic name"));
    }
    if name.len() > 249 {
        return Some(format!(
            "a topic name has at most 249 characters; this one has {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "{name:?} is not a topic name: {c:?} is not allowed (only ASCII letters, digits, '.', '_' and '-')"
        ));
    }
    None
}

/// The property of `properties` that librdkafka's `why` names (its name, else its value), if
/// any: where to report it.
fn blamed_property<'a>(properties: &'a BTreeMap<String, String>, why: &str) -> Option<&'a String> {
    properties
        .keys()
        .filter(|key| why.contains(key.as_str()))
        .max_by_key(|key| key.len())
        .or_else(|| {
            properties
                .iter()
                .filter(|(_, value)| value.len() >= 3 && why.contains(value.as_str()))
                .map(|(key, _)| key)
                .next()
        })
}

/// The `[kafka]` source's consumer (and dead-letter producer) and the `[notify.kafka]` sink's
/// producer, created as the daemon would but connected to nothing: whatever librdkafka refuses
/// only when it creates the client (a TLS file it cannot read, a SASL mechanism it has no
/// provider for, settings that contradict each other) is a problem on the line of the property
/// it names, else of the table. Asked only when every property passed alone.
fn kafka_client_problems(config: &Config, out: &mut Vec<(Vec<Seg>, String)>) {
    use crate::sources::kafka::{client_problem, ClientKind};
    let alone_ok = |properties: &BTreeMap<String, String>, managed: &[&str]| {
        properties.iter().all(|(key, value)| {
            !managed.contains(&key.as_str()) && kafka_property_problem(key, value).is_none()
        })
    };
    let mut report =
        |table: &[&'static str], properties: &BTreeMap<String, String>, what: &str, why: String| {
            let mut path: Vec<Seg> = table.iter().map(|k| Seg::Key(k)).collect();
            if let Some(key) = blamed_property(properties, &why) {
                path.push(Seg::Key("properties"));
                path.push(Seg::Name(key.clone()));
            }
            out.push((path, format!("librdkafka cannot create {what}: {why}")));
        };
    if let Some(kafka) = &config.kafka {
        if alone_ok(&kafka.properties, &KAFKA_MANAGED_PROPERTIES) {
            let consumer = crate::sources::kafka::consumer_config(kafka);
            if let Some(why) = client_problem(consumer, ClientKind::Consumer) {
                report(&["kafka"], &kafka.properties, "the consumer", why);
            } else if kafka.dead_letter_topic.is_some() {
                let producer = crate::sources::kafka::dead_letter_producer_config(kafka);
                if let Some(why) = client_problem(producer, ClientKind::Producer) {
                    report(
                        &["kafka"],
                        &kafka.properties,
                        "the dead-letter producer",
                        why,
                    );
                }
            }
        }
    }
    if let Some(sink) = &config.notify.kafka {
        if alone_ok(&sink.properties, &crate::notify::kafka::MANAGED_PROPERTIES) {
            let producer = crate::notify::kafka::producer_config(sink, "");
            if let Some(why) = client_problem(producer, ClientKind::Producer) {
                report(
                    &["notify", "kafka"],
                    &sink.properties,
                    "the sink's producer",
                    why,
                );
            }
        }
    }
}

/// Whether `filter` is a level, or comma-separated directives each a level or `target=level`.
/// tracing's own parser takes any word as a target (`"eror"` enables one no event comes from,
/// so every log line would be lost without a word said): only level names are taken here.
pub fn is_log_filter(filter: &str) -> bool {
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

/// The keys a table of the config may hold, asked of the types themselves: [`Probe`] is a
/// deserializer that walks a key path into [`Config`] and, at its end, stops with the field
/// names the type there declares. So an unknown key is refused listing the known ones, as
/// serde's `deny_unknown_fields` would, without a second copy of the schema.
mod schema {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

    use super::Seg;

    /// How a probe ends: the fields of the struct at the path, or nothing known there.
    #[derive(Debug)]
    pub struct Found(pub Option<&'static [&'static str]>);

    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("schema probe")
        }
    }

    impl std::error::Error for Found {}

    impl de::Error for Found {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Found(None)
        }
    }

    /// The field names of the table at `path` in a config (`[]`: the top level), if it is one.
    pub fn fields_at(path: &[Seg]) -> Option<&'static [&'static str]> {
        match <super::Config as serde::Deserialize>::deserialize(Probe(path)) {
            Err(Found(fields)) => fields,
            Ok(_) => None,
        }
    }

    struct Probe<'a>(&'a [Seg]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Found;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(None))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Found> {
            if self.0.is_empty() {
                return Err(Found(Some(fields)));
            }
            self.deserialize_map(visitor)
        }

        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
            match self.0.split_first() {
                Some((Seg::Key(k), rest)) => visitor.visit_map(Entry(Some(k), rest)),
                Some((Seg::Name(k), rest)) => visitor.visit_map(Entry(Some(k), rest)),
                _ => Err(Found(None)),
            }
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
            match self.0.split_first() {
                Some((Seg::Index(_), rest)) => visitor.visit_seq(Element(Some(rest))),
                _ => Err(Found(None)),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
            visitor.visit_some(self)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Found> {
            visitor.visit_newtype_struct(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            unit unit_struct tuple tuple_struct enum identifier ignored_any
        }
    }

    /// A map of one entry: the next key of the path, and a probe for the rest as its value.
    struct Entry<'a>(Option<&'a str>, &'a [Seg]);

    impl<'de> MapAccess<'de> for Entry<'_> {
        type Error = Found;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Found> {
            match self.0.take() {
                Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
                None => Ok(None),
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Found> {
            seed.deserialize(Probe(self.1))
        }
    }

    /// A sequence of one element: a probe for the rest of the path.
    struct Element<'a>(Option<&'a [Seg]>);

    impl<'de> SeqAccess<'de> for Element<'_> {
        type Error = Found;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Found> {
            match self.0.take() {
                Some(rest) => seed.deserialize(Probe(rest)).map(Some),
                None => Ok(None),
            }
        }
    }
}

/// A rule with no matchers is refused; this one, which the refusal suggests, takes every alert
/// (a label that is absent reads as empty, and alerts need not have an `alertname`).
const MATCH_EVERY_ALERT: &str = r#"alertname=~".*""#;

#[cfg(test)]
mod tests {
    use super::*;

    /// `err` lists exactly these problems, in this order, each line starting as given.
    fn assert_problems(err: &ConfigError, expect: &[&str]) {
        let shown = err.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), expect.len(), "{shown}");
        for (line, expect) in lines.iter().zip(expect) {
            assert!(line.starts_with(expect), "{expect:?} in\n{shown}");
        }
    }

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

    /// Regression (found by the fuzz pass): an unknown table made by dotted keys has no span of
    /// its own, and its problem came without a line.
    #[test]
    fn regression_an_unknown_dotted_key_is_refused_with_its_line() {
        let err = Config::parse(
            "[log]\nlevel = \"info\"\n_._ = []\nsevrity.default = 1\n",
            "x.toml",
        )
        .unwrap_err();
        assert_problems(
            &err,
            &[
                "x.toml:3: log._: unknown field `_`",
                "x.toml:4: log.sevrity: unknown field `sevrity`",
            ],
        );
        let err = Config::parse("_._ = []\n", "x.toml").unwrap_err();
        assert_problems(
            &err,
            &["x.toml:1: _: unknown field `_`, expected one of `server`"],
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

    /// Regression: `next` above the ceiling was taken and turned the tier's timeouts off
    /// (`ack_deadline` null) without a word.
    #[test]
    fn a_next_tier_above_the_ceiling_is_refused_on_its_line() {
        let text = "[escalation]\nceiling = \"L2\"\n[escalation.L1]\nack_timeout = \"2s\"\nnext = \"L3\"\n\
                    [escalation.L2]\nnext = \"L2\"\n";
        assert_problems(
            &Config::parse(text, "e.toml").unwrap_err(),
            &[
                "e.toml:5: escalation.L1.next: L3 is above escalation.ceiling (L2): L1's timeouts would never escalate",
                "e.toml:7: escalation.L2.next: must be a tier above L2",
            ],
        );
        // At or above the ceiling a tier's policy waits for a higher ceiling: lowering the
        // ceiling alone (L2's default next is L3) is what the ceiling is for.
        for fine in [
            "[escalation]\nceiling = \"L2\"\n",
            "[escalation]\nceiling = \"L2\"\n[escalation.L1]\nnext = \"L2\"\n",
            "[escalation]\nceiling = \"L2\"\n[escalation.L2]\nack_timeout = \"1h\"\nnext = \"L3\"\n",
        ] {
            Config::parse(fine, "e.toml").unwrap_or_else(|e| panic!("{fine:?}: {e}"));
        }
    }

    /// Regression: `cache_mb = 0` passed the check and sled panicked at the start (exit 101).
    #[test]
    fn knobs_that_break_at_zero_are_refused_with_their_line() {
        let text = "[storage]\ncache_mb = 0\n\n[flapping]\nmax_changes = 0\n";
        assert_problems(
            &Config::parse(text, "z.toml").unwrap_err(),
            &[
                "z.toml:2: storage.cache_mb: must be at least 1",
                "z.toml:5: flapping.max_changes: must be greater than 0",
            ],
        );
        let ok = Config::parse(
            "[storage]\ncache_mb = 1\n[flapping]\nmax_changes = 1\n",
            "t",
        );
        assert_eq!(ok.unwrap().storage.cache_mb, 1);
    }

    /// Regression: a duration too long for any calendar passed and silently meant "never".
    #[test]
    fn a_duration_beyond_a_hundred_years_is_too_long() {
        let text = "[escalation.L1]\nack_timeout = \"99999999999d\"\nnext = \"L2\"\n";
        let shown = Config::parse(text, "d.toml").unwrap_err().to_string();
        assert_eq!(
            shown,
            "d.toml:2: invalid duration \"99999999999d\": too long (at most 36500d)"
        );
        for longest in ["36500d", "5214w2d", "876000h"] {
            let parsed: HumanDuration = longest.parse().unwrap();
            assert_eq!(parsed, HumanDuration::MAX, "{longest}");
        }
        assert!("36500d1ms".parse::<HumanDuration>().is_err());
    }

    /// Every unknown key is listed in one pass, each with its line and the keys its table knows,
    /// beside the other problems; unknown keys are still refusals.
    #[test]
    fn every_unknown_key_is_listed_with_its_line() {
        let text = "[server]\nlistn = \"127.0.0.1:9595\"\n\n[dedup]\nreopen_windw = \"10m\"\n\n\
                    [[rules]]\nname = \"a\"\nmatchers = ['alertname=\"X\"']\nteir = \"L2\"\n\n\
                    [kafka]\nbrokers = \"k:9092\"\ntopics = [{ name = \"t\", fromat = \"native\" }]\n\n\
                    [grouping]\ngroup_by = []\n\n[servr]\n";
        assert_problems(
            &Config::parse(text, "u.toml").unwrap_err(),
            &[
                "u.toml:2: server.listn: unknown field `listn`, expected one of `listen`,",
                "u.toml:5: dedup.reopen_windw: unknown field `reopen_windw`, expected one of \
                 `exclude_labels`, `resolve_timeout`, `reopen_window`,",
                "u.toml:10: rules[0].teir: unknown field `teir`, expected one of `name`, \
                 `matchers`, `set_labels`, `severity`, `tier`,",
                "u.toml:14: kafka.topics[0].fromat: unknown field `fromat`, expected `name` or `format`",
                "u.toml:17: grouping.group_by: must name at least one label",
                "u.toml:19: servr: unknown field `servr`, expected one of `server`,",
            ],
        );
    }

    /// A reload keeps the retention in force: windows that outgrow it are refused on the line of
    /// the window (or, when the window is the default, of the file's retention).
    #[test]
    fn windows_beyond_the_retention_in_force_are_refused_on_their_line() {
        let checks = Checks {
            files: false,
            retention_in_force: Some(HumanDuration::secs(30 * 86_400)),
        };
        let text = "[storage]\nretention = \"40d\"\n[dedup]\nreopen_window = \"35d\"\n";
        let shown = Config::parse_with(text, "r.toml", checks)
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            "r.toml:4: dedup.reopen_window: storage.retention in force (30d, changed only by a restart) \
             must be at least dedup.reopen_window (35d): what is resolved is kept while it may still reopen or flap"
        );
        let short = Checks {
            files: false,
            retention_in_force: Some(HumanDuration::secs(60)),
        };
        let shown = Config::parse_with("[storage]\nretention = \"1h\"\n", "r.toml", short)
            .unwrap_err()
            .to_string();
        assert!(
            shown.starts_with("r.toml:2: storage.retention: storage.retention in force (1m, "),
            "{shown}"
        );
        assert!(Config::parse(
            "[storage]\nretention = \"40d\"\n[dedup]\nreopen_window = \"35d\"\n",
            "r"
        )
        .is_ok());
    }

    /// The files a config names are read only when asked (a daemon's check), and every one that
    /// cannot be read is a problem on its line, listed with the rest.
    #[test]
    fn unreadable_files_are_problems_on_their_lines_listed_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let missing = |name: &str| dir.path().join(name).display().to_string();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let text = format!(
            "[[auth.tokens]]\nname = \"t\"\ntoken_file = {:?}\nroles = [\"ingest\"]\n\n\
             [server.tls]\ncert_file = {:?}\nkey_file = {:?}\n\n\
             [[notify.webhook]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/\"\nhmac_secret_file = {:?}\n\
             authorization_file = {:?}\n\n[dedup]\nresolve_timeout = \"0s\"\n",
            missing("token"),
            missing("cert.pem"),
            missing("key.pem"),
            empty.display().to_string(),
            missing("auth"),
        );
        assert!(Config::parse(&text, "f.toml").unwrap_err().problems.len() == 1);
        let files = Checks {
            files: true,
            retention_in_force: None,
        };
        let err = Config::parse_with(&text, "f.toml", files).unwrap_err();
        assert_problems(
            &err,
            &[
                "f.toml:3: auth.tokens[0].token_file: cannot read token_file ",
                "f.toml:7: server.tls.cert_file: ",
                "f.toml:8: server.tls.key_file: ",
                "f.toml:13: notify.webhook[0].hmac_secret_file: hmac_secret_file ",
                "f.toml:14: notify.webhook[0].authorization_file: cannot read authorization_file ",
                "f.toml:17: dedup.resolve_timeout: must be greater than 0",
            ],
        );
        assert!(err.problems[3].message.ends_with(" is empty"), "{err}");
    }

    #[test]
    fn the_matcher_a_rule_without_matchers_is_told_to_use_takes_every_alert() {
        let e = Config::parse("[[rules]]\nname = \"all\"\nmatchers = []\n", "t").unwrap_err();
        assert!(e.to_string().contains(MATCH_EVERY_ALERT), "{e}");
        let every = crate::pipeline::classify::Matcher::parse(MATCH_EVERY_ALERT).unwrap();
        let without_alertname: crate::alert::Labels =
            [("job".to_string(), "node".to_string())].into();
        let with_one: crate::alert::Labels = [("alertname".to_string(), "X".to_string())].into();
        assert!(every.matches_labels(&without_alertname) && every.matches_labels(&with_one));
    }

    #[test]
    fn a_bad_value_is_refused_with_its_line() {
        let refused = |text: &str| Config::parse(text, "t.toml").unwrap_err();
        let e = refused("[dedup]\nresolve_timeout = \"5 minutes\"\n");
        assert_problems(&e, &["t.toml:2: "]);
        assert!(e.to_string().contains("invalid duration"), "{e}");

        assert_problems(&refused("[tiers]\ncritical = \"L9\"\n"), &["t.toml:2: "]);

        // L4 is reached by hand only (the vendor handover): not by severity, not by a rule.
        assert_problems(
            &refused("[tiers]\nmajor = \"L3\"\ncritical = \"L4\"\n"),
            &["t.toml:3: tiers.critical: L4 is the vendor handover"],
        );
        assert_problems(
            &refused("[[rules]]\nname = \"x\"\nmatchers = ['alertname=\"A\"']\ntier = \"L4\"\n"),
            &["t.toml:4: rules[0].tier: L4 is the vendor handover"],
        );
        // Nor by timeouts, reopens or flapping: they would hand it over naming no vendor.
        assert_problems(
            &refused("[escalation]\nceiling = \"L4\"\n[escalation.L3]\nack_timeout = \"1s\"\nnext = \"L4\"\n"),
            &[
                "t.toml:2: escalation.ceiling: L4 is the vendor handover",
                "t.toml:5: escalation.L3.next: L4 is the vendor handover",
            ],
        );
        assert_problems(
            &refused("[escalation.L2]\nnext = \"L4\"\n"),
            &["t.toml:2: escalation.L2.next: L4 is the vendor handover"],
        );
        assert_problems(
            &refused("[storage]\ncache_mb = 16\ncheckpoint_kb = 0\n"),
            &["t.toml:3: storage.checkpoint_kb: must be greater than 0"],
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

    /// Regression (QA F6): `[kafka]` settings the consumer cannot start with passed
    /// check-config; the daemon then ran without its Kafka source, `/-/ready` blamed the broker
    /// and SIGTERM exited 1. Topic names are checked here, and what librdkafka refuses only when
    /// it creates a client (the consumer, the dead-letter producer, the sink's producer) is found
    /// by creating it, connected to nothing: each on its line.
    #[test]
    fn kafka_settings_no_client_can_start_with_are_refused_with_their_line() {
        let files = Checks {
            files: true,
            retention_in_force: None,
        };
        let refused = |text: &str| -> Vec<String> {
            let started = std::time::Instant::now();
            let shown = match Config::parse_with(text, "k.toml", files) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the check took {:?}",
                started.elapsed()
            );
            shown.lines().map(str::to_string).collect()
        };
        let lines = refused(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\n\
             topics = [\n  { name = \"\" },\n  { name = \"a\" },\n  { name = \"a\" },\n  { name = \"b c\" },\n]\n\
             dead_letter_topic = \"\"\n",
        );
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert_eq!(
            lines[0],
            "k.toml:4: kafka.topics[0].name: must not be empty"
        );
        assert_eq!(
            lines[1],
            "k.toml:6: kafka.topics[2].name: \"a\" is named twice (also topics[1])"
        );
        assert!(
            lines[2].starts_with("k.toml:7: kafka.topics[3].name: \"b c\" is not a topic name"),
            "{lines:#?}"
        );
        assert_eq!(
            lines[3],
            "k.toml:9: kafka.dead_letter_topic: must not be empty (leave it out for none)"
        );
        let lines = refused(
            "[kafka]\nbrokers = \"k:9092\"\ntopics = [{ name = \"a\" }]\ndead_letter_topic = \"a\"\n",
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("k.toml:4: kafka.dead_letter_topic: \"a\" is consumed too"),
            "{lines:#?}"
        );

        let lines = refused(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"a\" }]\n\n\
             [kafka.properties]\n\"security.protocol\" = \"SSL\"\n\
             \"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "k.toml:7: kafka.properties.ssl.ca.location: librdkafka cannot create the consumer: "
            ),
            "{lines:#?}"
        );
        let lines = refused(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"a\" }]\n\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanisms\" = \"GSSAPI\"\n",
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("k.toml:7: kafka.properties.sasl.mechanisms: librdkafka cannot create the consumer: ")
                && lines[0].contains("GSSAPI"),
            "{lines:#?}"
        );
        // Settings each fine alone, not together: on the line of [kafka].
        let lines = refused(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"a\" }]\n\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"60000\"\n\
             \"max.poll.interval.ms\" = \"10000\"\n",
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("k.toml:")
                && lines[0].contains("librdkafka cannot create the consumer: "),
            "{lines:#?}"
        );
        // The sink's producer.
        let lines = refused(
            "[notify.kafka]\ntopic = \"events\"\nbrokers = \"127.0.0.1:9092\"\n\n\
             [notify.kafka.properties]\n\"security.protocol\" = \"SSL\"\n\
             \"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "k.toml:7: notify.kafka.properties.ssl.ca.location: librdkafka cannot create the sink's producer: "
            ),
            "{lines:#?}"
        );
        // What is fine stays fine, and a text-only check (replay, test-rules) creates nothing.
        let ok = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"a\" }, { name = \"b.c_d-1\" }]\n\
                  dead_letter_topic = \"dead\"\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\n\
                  [notify.kafka]\ntopic = \"events\"\n";
        assert_eq!(refused(ok), Vec::<String>::new());
        let tls = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"a\" }]\n\n\
                   [kafka.properties]\n\"security.protocol\" = \"SSL\"\n\
                   \"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n";
        assert!(Config::parse(tls, "k.toml").is_ok());
    }

    /// Regressions: `max_message_bytes = 0` was reported on key `max_batch` and the line of
    /// `[kafka]` (QA F12); `[notify.kafka.properties]` `acks`, `enable.idempotence` and
    /// `bootstrap.servers` were silently overridden while `[kafka.properties]` refuses what
    /// triaged sets itself (F13).
    #[test]
    fn kafka_keys_are_refused_on_their_own_key_and_line() {
        let text = "[kafka]\nbrokers = \"k:9092\"\ntopics = [{ name = \"a\" }]\n\
                    max_message_bytes = 0\nmax_batch = 0\n";
        let shown = Config::parse(text, "z.toml").unwrap_err().to_string();
        assert_eq!(
            shown,
            "z.toml:4: kafka.max_message_bytes: must be greater than 0\n\
             z.toml:5: kafka.max_batch: must be greater than 0",
        );
        let text = "[notify.kafka]\ntopic = \"events\"\nbrokers = \"k:9092\"\n\n\
                    [notify.kafka.properties]\n\"acks\" = \"0\"\n\"enable.idempotence\" = \"false\"\n\
                    \"bootstrap.servers\" = \"elsewhere:9092\"\n\"message.timeout.ms\" = \"1000\"\n\
                    \"linger.ms\" = \"20\"\n";
        let shown = Config::parse(text, "n.toml").unwrap_err().to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 4, "{shown}");
        for (line, (n, key)) in lines.iter().zip([
            (6, "acks"),
            (7, "enable.idempotence"),
            (8, "bootstrap.servers"),
            (9, "message.timeout.ms"),
        ]) {
            assert!(
                line.starts_with(&format!(
                    "n.toml:{n}: notify.kafka.properties.{key}: \"{key}\" is set by triaged itself"
                )),
                "{shown}"
            );
        }
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

    /// Regression: `alertname=~".+"`, the catch-all the empty-matchers error recommends, hid
    /// later rules on the same label without a warning. It takes every alert whose label is not
    /// empty (nor holds a line feed): what is warned about is exactly what it is sure to take.
    #[test]
    fn a_rule_behind_a_non_empty_catch_all_is_reported_and_nothing_it_may_miss() {
        let text = r#"
[[rules]]
name = "all"
matchers = ['alertname=~".+"']

[[rules]]
name = "x"
matchers = ['alertname="X"', 'env="prod"']

[[rules]]
name = "disk"
matchers = ['alertname=~"Disk.*"']

[[rules]]
name = "x-or-y"
matchers = ['alertname=~"X|Y"']

[[rules]]
name = "x-or-none"
matchers = ['alertname=~"X|"']

[[rules]]
name = "lines"
matchers = ['alertname=~"A\\s+B"']

[[rules]]
name = "no-alertname"
matchers = ['service="db"']

[[rules]]
name = "empty"
matchers = ['alertname=""']
"#;
        let config = Config::parse(text, "w.toml").unwrap();
        let warnings = config.warnings(text, "w.toml");
        let named: Vec<&str> = warnings
            .iter()
            .map(|w| w.split('"').nth(1).unwrap_or(""))
            .collect();
        // `alertname=""` is hidden, but by the rule that takes "", not by the catch-all.
        assert_eq!(named, ["x", "disk", "x-or-y", "empty"], "{warnings:#?}");
        assert!(
            warnings[3].contains("rule \"x-or-none\" (line 19)"),
            "{warnings:#?}"
        );
        assert!(
            warnings[0].starts_with(
                "w.toml:7: rules[1] \"x\" can never match: rule \"all\" (line 3) matches every alert it would, and has no `continue`"
            ),
            "{warnings:#?}"
        );

        // Labels set between the two by a rule that goes on: the later one may still match.
        let relabel = r#"
[[rules]]
name = "team-x"
matchers = ['team="x"']

[[rules]]
name = "y-joins-x"
matchers = ['alertname="Y"']
set_labels = { team = "x" }
continue = true

[[rules]]
name = "team-x-again"
matchers = ['team="x"']

[[rules]]
name = "drop-z"
matchers = ['alertname="Z"']
action = "drop"
continue = true

[[rules]]
name = "z"
matchers = ['alertname="Z"', 'env="prod"']
"#;
        let config = Config::parse(relabel, "r.toml").unwrap();
        let warnings = config.warnings(relabel, "r.toml");
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].starts_with("r.toml:23: rules[4] \"z\" can never match: rule \"drop-z\" (line 17) matches every alert it would, and drops it"),
            "{warnings:#?}"
        );
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
