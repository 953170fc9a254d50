//! Where the configuration comes from, and hot reload (SIGHUP, `POST /-/reload`).
//!
//! A reload reads and validates the whole file first; a bad file leaves the running config in
//! force, logs why and sets `triaged_config_last_reload_successful` to 0. A good one becomes a
//! [`Command::Reload`] for the writer, so rules, tiers and policies swap between two commands:
//! no alert is decided by half of each. Sections that shape the process itself (`[server]`,
//! `[storage]`, `[log]`) and the tasks it starts once (`[kafka]`, the consumer; `[notify]`, the
//! sinks) take effect at the next restart; a reload says so when they changed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::config::{Checks, Config, ConfigError};
use crate::metrics::Metrics;
use crate::pipeline::{Command, PipelineError, Policy, Queue, SubmitError};
use crate::sd_notify::Notifier;
use crate::sources::auth::{Auth, AuthError};
use crate::sources::tls::{self, TlsError};

/// How to (re)load the configuration: a file or the embedded default, and the command-line
/// overrides that stay in force across reloads.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

impl ConfigSource {
    /// Read, parse and validate, the files the config names included (a daemon's check);
    /// returns the config and its warnings (rules that can never match).
    pub fn load(&self) -> Result<(Config, Vec<String>), LoadError> {
        self.load_with(Checks {
            files: true,
            ..Checks::default()
        })
    }

    /// Read, parse and validate, checking what `checks` asks besides the text.
    pub fn load_with(&self, checks: Checks) -> Result<(Config, Vec<String>), LoadError> {
        let (mut config, warnings) = match &self.path {
            None => {
                let config = Config::embedded_default();
                let warnings = config.warnings(crate::config::DEFAULT_TOML, "embedded default");
                (config, warnings)
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                    path: path.clone(),
                    source,
                })?;
                let origin = path.display().to_string();
                let config = Config::parse_with(&text, &origin, checks)?;
                let warnings = config.warnings(&text, &origin);
                (config, warnings)
            }
        };
        if let Some(listen) = self.listen {
            config.server.listen = listen;
            if let Some(problem) = config.exposure_problem() {
                return Err(LoadError::Invalid(ConfigError {
                    origin: "--listen".to_string(),
                    problems: vec![crate::config::Problem {
                        line: None,
                        key: String::new(),
                        message: problem,
                    }],
                }));
            }
        }
        if let Some(dir) = &self.data_dir {
            config.storage.path = dir.clone();
        }
        Ok((config, warnings))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("invalid rules: {0}")]
    Rules(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A sink's secret file cannot be read (missing, empty, not a header value).
    #[error("notify.webhook {name:?}: {why}")]
    Sink { name: String, why: String },
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Reloads the configuration into the running daemon; one reload at a time.
pub struct Reloader {
    source: ConfigSource,
    queue: Queue,
    metrics: Arc<Metrics>,
    current: RwLock<Arc<Config>>,
    auth: RwLock<Arc<Auth>>,
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    serial: tokio::sync::Mutex<()>,
    /// Tells systemd a reload is under way (`RELOADING=1`) and over (`READY=1`).
    notifier: Arc<Notifier>,
}

/// Read what `config` names outside itself: token files and the TLS certificate and key.
pub fn load_secrets(
    config: &Config,
) -> Result<(Auth, Option<Arc<rustls::ServerConfig>>), ReloadError> {
    let auth = Auth::load(&config.auth)?;
    let tls = config.server.tls.as_ref().map(tls::load).transpose()?;
    sink_secrets(config)?;
    Ok((auth, tls))
}

/// The sinks' secret files load (a missing or empty one is a config error, not a sink that
/// fails once the daemon runs).
fn sink_secrets(config: &Config) -> Result<(), ReloadError> {
    for sink in &config.notify.webhook {
        crate::notify::webhook::secrets(sink).map_err(|why| ReloadError::Sink {
            name: sink.name.clone(),
            why,
        })?;
    }
    Ok(())
}

impl Reloader {
    /// `auth` and `tls` are what [`load_secrets`] read from `config` at start.
    pub fn new(
        source: ConfigSource,
        queue: Queue,
        metrics: Arc<Metrics>,
        config: Config,
        auth: Auth,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        metrics.config_loaded(&config.rules);
        Reloader {
            source,
            queue,
            metrics,
            current: RwLock::new(Arc::new(config)),
            auth: RwLock::new(Arc::new(auth)),
            tls: RwLock::new(tls),
            serial: tokio::sync::Mutex::new(()),
            notifier: Arc::new(Notifier::disabled()),
        }
    }

    /// The tokens in force.
    pub fn auth(&self) -> Arc<Auth> {
        self.auth.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The TLS configuration in force; `None` serves plain HTTP.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tell systemd about reloads through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reload the config file. On success, the sections that changed but take effect only at
    /// the next restart (`server`, `storage`, `log`, `notify`), for the answer to say so.
    pub async fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let _one_at_a_time = self.serial.lock().await;
        let mut reloading = Reloading::start(&self.notifier);
        match self.try_reload().await {
            Ok(restart_required) => {
                tracing::info!(
                    restart_required = ?restart_required,
                    "configuration reloaded"
                );
                reloading.status = "configuration reloaded".into();
                Ok(restart_required)
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0);
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
                reloading.status =
                    format!("configuration reload refused, the running configuration stays: {e}");
                Err(e)
            }
        }
    }

    async fn try_reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let old = self.current();
        // `[storage]` waits for a restart, so the new windows must fit in the retention in force.
        let (mut config, warnings) = self.source.load_with(Checks {
            files: true,
            retention_in_force: Some(old.storage.retention),
        })?;
        for warning in &warnings {
            tracing::warn!(warning = %warning, "config");
        }
        // Sinks are started once, at start-up, and run until shutdown: `[notify]` takes effect at
        // the next restart. The writer keeps the running sinks' names too (what the outbox takes,
        // and whose cursors hold its events), or a sink removed by a reload would still run
        // with its events leaving the outbox unseen, and one added would hold them all.
        let notify_changed = old.notify != config.notify;
        // The new sinks' secret files were read all the same (`Checks::files`), so that what
        // the next restart will read is known good now.
        config.notify = old.notify.clone();
        let policy = Policy::from_config(&config).map_err(ReloadError::Rules)?;
        // TLS certificates are re-read from the new paths; turning TLS on or off needs a restart.
        let tls_switched = old.server.tls.is_some() != config.server.tls.is_some();
        let without_tls = |server: &crate::config::ServerConfig| crate::config::ServerConfig {
            tls: None,
            ..server.clone()
        };
        let restart_required: Vec<&'static str> = [
            (
                "server",
                without_tls(&old.server) != without_tls(&config.server) || tls_switched,
            ),
            ("storage", old.storage != config.storage),
            ("log", old.log != config.log),
            ("kafka", old.kafka != config.kafka),
            ("notify", notify_changed),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect();
        if !restart_required.is_empty() {
            tracing::warn!(
                sections = ?restart_required,
                "changes to [server] (but TLS certificate renewals), [storage], [log], [kafka] and [notify] take effect at the next restart"
            );
        }
        // What is in force: the new decisions, the old process settings, the new TLS files.
        let tls_paths = if tls_switched {
            old.server.tls.clone()
        } else {
            config.server.tls.clone()
        };
        config.server = crate::config::ServerConfig {
            tls: tls_paths,
            ..old.server.clone()
        };
        config.storage = old.storage.clone();
        config.log = old.log.clone();
        config.kafka = old.kafka.clone();
        let (auth, tls) = load_secrets(&config)?;
        self.queue
            .submit(|reply| Command::Reload {
                policy: Box::new(policy),
                reply,
            })
            .await??;
        self.metrics.config_loaded(&config.rules);
        if auth.required() != self.auth().required() {
            tracing::warn!(
                required = auth.required(),
                "authentication switched by reload"
            );
        }
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
        if tls.is_some() {
            *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(restart_required)
    }
}

/// systemd hears `RELOADING=1` when a reload starts and `READY=1` when it ends, however it ends:
/// also when the request that asked for it goes away mid-reload (its future is dropped), so the
/// unit never stays in "reloading".
struct Reloading<'a> {
    notifier: &'a Notifier,
    status: String,
}

impl<'a> Reloading<'a> {
    fn start(notifier: &'a Notifier) -> Self {
        notifier.reloading();
        Reloading {
            notifier,
            status: "reload interrupted".into(),
        }
    }
}

impl Drop for Reloading<'_> {
    fn drop(&mut self) {
        self.notifier.ready(&self.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        while let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// The request that asked for a reload may go away mid-reload (its future dropped): systemd
    /// must still hear the reload end, or the unit stays "reloading".
    #[test]
    fn an_abandoned_reload_still_ends_in_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::new(Some(path.as_os_str()));

        let reloading = Reloading::start(&notifier);
        let sent = received(&socket);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("RELOADING=1\n"), "{sent:?}");
        drop(reloading);
        let sent = received(&socket);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("READY=1\n"), "{sent:?}");
        assert!(sent[0].ends_with("STATUS=reload interrupted"), "{sent:?}");
    }
}
