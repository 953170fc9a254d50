//! The `triaged` command line: parse and validate the config before any runtime starts, then run.
//! Exit codes: 0 done, 1 runtime failure, 64 bad config or usage (so systemd does not crash-loop).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use triaged::config::{Config, LogFormat};

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
    /// Validate a config file: exit 0, or print every problem with its line and exit 64.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Print the embedded default config.
    DefaultConfig,
}

fn load(path: &std::path::Path) -> anyhow::Result<Result<Config, triaged::config::ConfigError>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    Ok(Config::parse(&text, &path.display().to_string()))
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => match load(&file) {
            Ok(Ok(config)) => {
                println!("{}: ok ({} rules)", file.display(), config.rules.len());
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Cmd::DefaultConfig => {
            print!("{}", triaged::config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Cmd::Run {
            config,
            listen,
            data_dir,
        } => {
            let mut config = match config {
                None => Config::embedded_default(),
                Some(path) => match load(&path) {
                    Ok(Ok(config)) => config,
                    Ok(Err(e)) => {
                        eprintln!("{e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                },
            };
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.storage.path = dir;
            }
            init_logging(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the tokio runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(triaged::run(config, triaged::shutdown::terminated())) {
                Ok(()) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "triaged failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
