//! The `triaged` command line: parse and validate the config before any runtime starts, then run.
//! Exit codes: 0 done, 1 runtime failure, 64 bad config or usage (so systemd does not crash-loop).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: ingestion allocates and frees many small strings (labels)
/// on the HTTP workers and the writer, and sled churns tree nodes; on the 2-vCPU benchmark
/// machine jemalloc took 26–39% more alerts/s at batch 100 with the same peak RSS
/// (`benches/compare.sh`; `benches/HISTORY.md`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (the `malloc_conf` string of jemalloc's manual, under
/// the prefixed name tikv-jemalloc-sys builds it with). Pages freed stay resident for 20 ms
/// instead of jemalloc's 10 s before they go back to the kernel, and go straight back rather
/// than through `MADV_FREE` (which still counts in RSS until the kernel needs the memory). With
/// 100,000 firing alerts this lowered peak RSS from 102–104 to 92–98 MB at the same alerts/s
/// (`benches/HISTORY.md`). And one arena for all threads instead of four per CPU: the writer,
/// the HTTP worker and sled's threads otherwise each keep their own arena's free pages, and
/// sharing one lowered the peak by about 4 MB (89 → 85 MB), at about 4 % of alerts/s at
/// batch 100 and none at batch 1. `_RJEM_MALLOC_CONF` in the environment is read after it and
/// wins.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 45] = b"narenas:1,dirty_decay_ms:20,muzzy_decay_ms:0\0";

use triaged::config::{Checks, Config, LogFormat};
use triaged::reload::ConfigSource;

/// The runtime's worker threads (HTTP, Kafka polling, sinks): one fewer than the CPUs, at least
/// one, so that a CPU is left to the writer, the one thread every change goes through (with
/// sled's IO threads, which it waits for). On the 2-vCPU benchmark machine one worker instead of
/// two took 7–20 % more alerts/s at batch 1 and 12–24 % more at batch 100 (`benches/HISTORY.md`).
/// `TOKIO_WORKER_THREADS`, when set, is tokio's own override and wins (`None` here).
fn http_workers() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(cpus.saturating_sub(1).max(1))
}

/// Bad config or usage: EX_USAGE, as linkerd and sysexits.h use it.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "triaged",
    version,
    about = "Alert ingestion and auto-triage daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (on the embedded default config unless --config is given).
    Run {
        /// TOML config file; without it, the embedded default (config/triaged.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, overriding server.listen (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory, overriding storage.path.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a config file: exit 0, or print every problem with its line and exit 64 (a
    /// syntax or type error stops the check at the first).
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Print the embedded default config.
    DefaultConfig,
    /// Run rule unit tests (TOML test files, see config/tests/): exit 0 all pass, 1 some fail,
    /// 64 a file cannot be read or parsed.
    TestRules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay recorded alerts through the rules and print what triaged would decide for each.
    Replay {
        /// TOML config file; without it, the embedded default (config/triaged.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON body in any supported format, or NDJSON (one body per line); `-` reads stdin.
        input: PathBuf,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Wire format of every body; default: detect each.
        #[arg(long, value_parser = triaged::tools::FORMAT_NAMES)]
        format: Option<String>,
        /// Replay as of this time (RFC 3339), e.g. when the input was recorded: Prometheus sends
        /// a firing alert with endsAt a few minutes on, so replayed later it is a resolution.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Load and validate a configuration, printing every problem (and warning) on stderr; `Err` is
/// the exit code to leave with.
fn load(source: &ConfigSource) -> Result<Config, ExitCode> {
    report(source.load())
}

/// [`load`] for a tool that serves no one (`replay`): the files the config names (tokens, TLS,
/// sink secrets) are not read.
fn load_text_only(source: &ConfigSource) -> Result<Config, ExitCode> {
    report(source.load_with(Checks::default()))
}

fn report(
    loaded: Result<(Config, Vec<String>), triaged::reload::LoadError>,
) -> Result<Config, ExitCode> {
    match loaded {
        Ok((config, warnings)) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn from_file(path: Option<PathBuf>) -> ConfigSource {
    ConfigSource {
        path,
        ..ConfigSource::default()
    }
}

fn init_logging(config: &Config) {
    // RUST_LOG wins when it is a filter; one that is not (or that tracing would read as a
    // target, losing every line, as `log.level` is checked) is said and left aside.
    let env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let from_env = env
        .as_deref()
        .filter(|f| triaged::config::is_log_filter(f))
        .and_then(|f| EnvFilter::try_new(f).ok());
    let ignored = env.filter(|_| from_env.is_none());
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Some(rust_log) = ignored {
        tracing::warn!(RUST_LOG = %rust_log, level = %config.log.level, "RUST_LOG is not a log filter (trace, debug, info, warn, error, or directives such as \"info,triaged=debug\"): ignored, log.level is used");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => match load(&from_file(Some(file.clone()))) {
            Ok(config) => {
                println!("{}: ok ({} rules)", file.display(), config.rules.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::DefaultConfig => {
            print!("{}", triaged::config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Cmd::TestRules { files } => {
            let mut out = std::io::stdout().lock();
            match triaged::tools::test_rules::run(&files, &mut out) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Cmd::Replay {
            config,
            input,
            json,
            format,
            at,
        } => {
            let config = match load_text_only(&from_file(config)) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let format = match format.as_deref().map(triaged::tools::format_from_name) {
                None => None,
                Some(Ok(format)) => format,
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let read = if input.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
            } else {
                std::fs::read(&input)
            };
            let body = match read {
                Ok(body) => body,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", input.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let mut out = std::io::stdout().lock();
            match triaged::tools::replay::run(&config, &body, format, at, json, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}: {e}", input.display());
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Cmd::Run {
            config,
            listen,
            data_dir,
        } => {
            let source = ConfigSource {
                path: config,
                listen,
                data_dir,
            };
            let config = match load(&source) {
                Ok(config) => config,
                Err(code) => return code,
            };
            init_logging(&config);
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.enable_all();
            if let Some(n) = http_workers() {
                runtime.worker_threads(n);
            }
            let runtime = match runtime.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the tokio runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let started = runtime.block_on(async {
                // Before anything is announced, so that no SIGTERM meets the default action.
                let shutdown =
                    triaged::shutdown::terminated().map_err(triaged::RunError::Signals)?;
                triaged::run(config, source, shutdown).await
            });
            match started {
                Ok(()) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "triaged failed");
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}
