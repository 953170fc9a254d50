//! triaged: an alert-ingestion and auto-triage daemon.
//!
//! # Layout
//! The flow, in data order; no module reaches back upstream:
//!
//! ```text
//!  sources/ (http: Alertmanager v2, webhook, PagerDuty, native JSON)
//!     │  parse into Vec<Alert>, send one Command, await its durable outcome
//!     ▼
//!  pipeline/ ONE writer thread: normalize ► dedup ► classify ► triage ► incident changes
//!     │  one journal record + fdatasync for every command queued together, then sled
//!     ▼
//!  store (sled) ──► api (NOC incident API, summary) · metrics (/metrics)
//!                    web (the NOC board: embedded pages that call the api)
//! ```
//!
//! - [`alert`]: the one normalized alert model, fingerprints and severities.
//! - [`incident`]: incidents, tiers and their legal transitions (pure).
//! - [`config`]: the TOML schema, defaults, validation with line numbers.
//! - [`sources`]: wire formats and the HTTP server.
//! - [`pipeline`]: the writer loop and the decisions (dedup, classify, triage).
//! - [`store`]: the only user of sled.
//! - [`api`], [`summary`], [`metrics`], [`shutdown`]: reading, observing, stopping.
//! - [`web`]: the NOC board's pages and assets, embedded in the binary.
//! - [`sd_notify`]: telling systemd we are ready, reloading, stopping, and alive (watchdog).
#![forbid(unsafe_code)]

pub mod alert;
pub mod api;
pub mod config;
pub mod dead_letter;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod pipeline;
pub mod quiet;
pub mod reload;
pub mod retention;
pub mod sd_notify;
pub mod shutdown;
pub mod silence;
pub mod sources;
pub mod store;
pub mod summary;
pub mod tools;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Policy, SystemClock};
use crate::sd_notify::{Notifier, Watchdog};
use crate::sources::http::{self, App};
use crate::store::{Opened, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid rules: {0}")]
    Rules(String),
    #[error("cannot start the notification sinks: {0}")]
    Sinks(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the writer thread panicked")]
    WriterPanicked,
    #[error(transparent)]
    Kafka(#[from] sources::kafka::SourceError),
    #[error(transparent)]
    Secrets(#[from] reload::ReloadError),
}

/// Exit code of `triaged run` when what is on disk is damaged or not ours (EX_DATAERR in
/// sysexits.h): starting again cannot help, so the systemd unit does not restart on it.
pub const EXIT_DAMAGED: u8 = 65;

impl RunError {
    /// The code `triaged run` exits with for this failure: [`EXIT_DAMAGED`], or 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Store(e) if e.is_damaged() => EXIT_DAMAGED,
            _ => 1,
        }
    }
}

/// Say whether the store at `path` was there or has just been made: a mistyped `--data-dir`
/// would otherwise start on a new, empty store with nothing but `next_incident=1` to show it.
fn log_opened(store: &Store, path: &std::path::Path) {
    match store.opened() {
        Some(Opened::Existing) => {
            tracing::info!(data_dir = %path.display(), "opened the store at {}", path.display());
        }
        Some(Opened::Created { dir_existed }) => {
            let was = if dir_existed {
                "the directory held no store"
            } else {
                "the directory did not exist"
            };
            tracing::warn!(
                data_dir = %path.display(),
                "created a new, empty store at {} ({was})",
                path.display()
            );
        }
        // Down from the start: already said, with why.
        None => {}
    }
}

/// Run the daemon until `shutdown` resolves; then stop accepting, let in-flight requests finish
/// (within `server.shutdown_grace`), apply and flush everything queued, and return.
/// `source` says where the configuration came from, so that SIGHUP and `POST /-/reload` can read
/// it again.
///
/// Under systemd (`$NOTIFY_SOCKET`, read here), it says `READY=1` once the store is open, the
/// writer runs and the listener is bound; `STOPPING=1` when `shutdown` resolves; and, with
/// `$WATCHDOG_USEC`, pings the watchdog while the writer makes progress.
pub async fn run(
    config: Config,
    source: reload::ConfigSource,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // Alertmanager's `uptime` (GET /api/v2/status): when the daemon started, so before any
    // client can have connected.
    let started_at = chrono::Utc::now();
    let (auth, tls) = reload::load_secrets(&config)?;
    let notifier = Arc::new(Notifier::from_env());
    let watchdog_interval = sd_notify::watchdog_from_env().filter(|_| notifier.is_enabled());
    let metrics = Arc::new(Metrics::new());
    let cache_bytes = config.storage.cache_mb.saturating_mul(1024 * 1024);
    let checkpoint_bytes = config.storage.checkpoint_kb.saturating_mul(1024);
    let store = match Store::open_with(&config.storage.path, cache_bytes, checkpoint_bytes) {
        Ok(store) => store,
        // A full or read-only disk is fixed by an operator while triaged waits (answering 503
        // and saying why) rather than by a crash loop; a damaged or locked store stops here.
        Err(e) if e.is_disk_refusing_writes() => {
            tracing::error!(data_dir = %config.storage.path.display(), error = %e, "the store cannot be opened: its disk refuses writes; answering 503 until it takes them");
            Store::down(
                &config.storage.path,
                cache_bytes,
                checkpoint_bytes,
                e.reason(),
            )
        }
        Err(e) => return Err(e.into()),
    };
    log_opened(&store, &config.storage.path);
    let store = Arc::new(store);
    let policy = Policy::from_config(&config).map_err(RunError::Rules)?;
    let (queue, mut writer) = pipeline::channel(
        config.server.queue_capacity,
        store.clone(),
        metrics.clone(),
        policy,
        Arc::new(SystemClock),
    )?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let ready = writer.ready.clone();
    let outbox_committed = writer.outbox_watch();
    if let Some(interval) = watchdog_interval {
        writer.beat_at_least_every(Watchdog::beat_every(interval));
    }
    let heartbeat = writer.heartbeat();
    let writer_started = writer.started();
    let desk = writer.into_desk();
    // Made before the thread starts, so that the thread leaves commands to it from the first.
    let committer = desk.clone().commit_when_idle();
    let writer = {
        let desk = desk.clone();
        std::thread::Builder::new()
            .name("triaged-writer".into())
            .spawn(move || desk.run())
            .map_err(RunError::Thread)?
    };
    // Commits on this runtime while its worker is idle (see `pipeline::Desk`); ends with the
    // writer.
    let committer = tokio::spawn(committer);
    // Held only by the thread and the committer from here: if both died, the queue's receiver
    // goes with them and senders are told at once (503) instead of waiting on a full queue.
    drop(desk);
    // Ready means the writer runs (`/-/ready`); if it died instead, the join below reports it.
    let _ = writer_started.await;
    // Installed before the daemon says it listens: SIGHUP's default action ends the process, so
    // a `systemctl reload` that came before the reload task first ran would kill it.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(RunError::Signals)?;
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let data_dir = config.storage.path.clone();
    let (tls_on, auth_required) = (tls.is_some(), auth.required());

    let server_config = config.server.clone();
    let limits = sources::Limits::from_config(&config.server);
    let header_read_timeout = config.server.header_read_timeout.0;
    let shutdown_grace = config.server.shutdown_grace.0;
    let reloader = Arc::new(
        reload::Reloader::new(source, queue.clone(), metrics.clone(), config, auth, tls)
            .with_notifier(notifier.clone()),
    );
    let hangups = tokio::spawn(reload_on_sighup(reloader.clone(), hangup));
    let (stop_kafka, kafka_stopped) = tokio::sync::watch::channel(false);
    let (stop_sinks, sinks_stopped) = tokio::sync::watch::channel(false);
    let (stop_retention, retention_stopped) = tokio::sync::watch::channel(false);
    let retention = tokio::spawn(retention::run(
        store.clone(),
        queue.clone(),
        reloader.current().storage.retention.0,
        retention_stopped,
    ));
    let sinks = notify::spawn_sinks(
        &reloader.current(),
        store.clone(),
        queue.clone(),
        metrics.clone(),
        outbox_committed,
        sinks_stopped,
    )
    .map_err(RunError::Sinks)?;
    let kafka_config = reloader.current().kafka.clone();
    let kafka_enabled = kafka_config.is_some();
    // Created and subscribed before the daemon says it is ready: a source that cannot start
    // stops the start, rather than leave a daemon that consumes nothing.
    let kafka = match kafka_config {
        Some(kafka) => Some(sources::kafka::KafkaSource::start(
            kafka,
            metrics.clone(),
            limits,
            reloader.current().dedup.resolve_timeout.0,
        )?),
        None => None,
    }
    .map(|source| tokio::spawn(source.run(queue.clone(), store.clone(), kafka_stopped)));
    let app = Arc::new(
        App::new(
            queue.clone(),
            store,
            metrics,
            ready,
            reloader,
            kafka_enabled,
            &server_config,
        )
        .started(started_at),
    );
    // Store open, writer running, listener bound (connections queue in its backlog until `serve`
    // accepts them), sinks and Kafka source started (its broker may still be down: /-/ready
    // tells). Said only now, in the log as to systemd: a start that fails above never said it.
    tracing::info!(addr = %addr, data_dir = %data_dir.display(), tls = tls_on, "listening");
    if !auth_required {
        if addr.ip().is_loopback() {
            tracing::info!("authentication is off: listening on loopback only");
        } else {
            tracing::warn!(addr = %addr, "authentication is off ([auth] enabled = false) and triaged listens beyond loopback: anyone who reaches it can ingest, act on incidents and reload");
        }
    }
    notifier.ready(&format!("listening on {addr}"));
    let watchdog = watchdog_interval.map(|interval| {
        tracing::info!(
            watchdog_ms = interval.as_millis() as u64,
            "pinging systemd's watchdog while the writer makes progress"
        );
        tokio::spawn(Watchdog::new(notifier.clone(), heartbeat, interval).run())
    });
    let stopping = notifier.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.stopping();
    };
    http::serve(listener, app, header_read_timeout, shutdown_grace, shutdown).await;
    hangups.abort();
    // The consumer finishes its batch (answered by the still-running writer) and commits.
    let _ = stop_kafka.send(true);
    if let Some(kafka) = kafka {
        if let Err(e) = kafka.await {
            tracing::error!(error = %e, "the kafka source panicked");
        }
    }

    let _ = stop_sinks.send(true);
    for sink in sinks {
        let _ = sink.await;
    }
    // A sweep's command in flight is answered by the still-running writer.
    let _ = stop_retention.send(true);
    let _ = retention.await;
    tracing::info!("draining the writer queue");
    let joined = tokio::task::spawn_blocking(move || {
        queue.shutdown();
        writer.join()
    })
    .await;
    if let Err(e) = committer.await {
        tracing::error!(error = %e, "the committer panicked");
    }
    // The watchdog pinged through the drain, as long as the writer made progress.
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => Err(RunError::WriterPanicked),
    }
}

/// SIGHUP (`systemctl reload`): reload the configuration. A refused reload is logged by the
/// reloader and leaves the running configuration in force.
async fn reload_on_sighup(reloader: Arc<reload::Reloader>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading the configuration");
        let _ = reloader.reload().await;
    }
}
