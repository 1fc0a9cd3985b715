//! The command line: `serve` (the default), `migrate`, `create-admin`, `export-schema`, and
//! `worker` (a VPS worker process).
//!
//! Settings come from flags, the environment and `.env` (in that order of precedence);
//! `tessera --help` and each subcommand's `--help` list every one with its variable and
//! default. A malformed value exits with code 2 and a message naming the variable; a failure
//! while running exits with code 1.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use migration::{Migrator, MigratorTrait};
use tokio_util::sync::CancellationToken;

use crate::{
    app::Application,
    config::Config,
    platform::{db::Db, telemetry},
};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: a GraphQL API server for a coin economy",
    long_about = "Tessera: a GraphQL API server for a coin economy.\n\nWith no subcommand it serves (see `tessera serve --help`). Every setting is a flag and an environment variable; a .env file in the working directory is read too.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve {
        #[command(flatten)]
        config: Config,
    },
    /// Apply or revert database migrations, or list them.
    Migrate {
        /// up: apply every pending migration; down: revert the newest STEPS; status: list them.
        #[arg(value_enum)]
        action: MigrateAction,
        /// How many migrations `down` reverts.
        #[arg(long, default_value_t = 1)]
        steps: u32,
        #[command(flatten)]
        config: Config,
    },
    /// Create the first admin account, or promote an existing account to admin.
    CreateAdmin {
        /// Email address of the account.
        #[arg(long)]
        email: String,
        /// Read the account's password from standard input (one line). Without it, the
        /// account signs in by other means (one-time code, a linked provider).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: Config,
    },
    /// Run a VPS worker for a server: heartbeats, pulls provision and teardown jobs, and
    /// reports each step (signed requests; key id and secret from `createWorker`).
    Worker {
        #[command(flatten)]
        args: crate::vps::worker::WorkerArgs,
    },
    /// Print the GraphQL schema (SDL) that this build serves.
    ExportSchema {
        /// Write to this file instead of standard output (e.g. schema.graphql).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MigrateAction {
    Up,
    Down,
    Status,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { config: cli.config });

    if let Command::ExportSchema { output } = &command {
        let sdl = crate::graphql::sdl();
        return match output {
            Some(path) => match std::fs::write(path, sdl) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            },
            None => {
                print!("{sdl}");
                ExitCode::SUCCESS
            }
        };
    }

    if let Command::Worker { args } = command {
        return run_worker(args);
    }

    let config = match &command {
        Command::Serve { config }
        | Command::Migrate { config, .. }
        | Command::CreateAdmin { config, .. } => config,
        Command::ExportSchema { .. } | Command::Worker { .. } => unreachable!("handled above"),
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }

    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve { config } => serve(config).await,
            Command::Migrate {
                action,
                steps,
                config,
            } => migrate(config, action, steps).await,
            Command::CreateAdmin {
                email,
                password_stdin,
                config,
            } => create_admin(config, &email, password_stdin).await,
            Command::ExportSchema { .. } | Command::Worker { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting after an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded runtime every command runs on.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `tessera worker`: runs until SIGINT or SIGTERM.
fn run_worker(args: crate::vps::worker::WorkerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let options = match crate::vps::worker::WorkerOptions::from_args(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        crate::vps::worker::run(options, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config)?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting");
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", config.listen_addr))?;
    let app = Application::build(config, listener).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
    token.cancel();
}

async fn create_admin(config: Config, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config)?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!line.is_empty(), "the password on standard input is empty");
        Some(line)
    } else {
        None
    };
    let db = Db::connect(&config).await?;
    if config.run_migrations {
        db.migrate_up().await?;
    }
    let passwords = crate::identity::password::Passwords::new(&config.identity)?;
    let (user, created) =
        crate::identity::service::create_admin(&db, &passwords, email, password.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} admin {} ({})",
        if created { "created" } else { "promoted" },
        user.email.as_deref().unwrap_or_default(),
        user.id
    );
    db.close().await;
    Ok(())
}

async fn migrate(config: Config, action: MigrateAction, steps: u32) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config)?;
    let db = Db::connect(&config).await?;
    let conn = db.conn();
    match action {
        MigrateAction::Up => {
            Migrator::up(conn, None).await?;
            println!("all migrations applied");
        }
        MigrateAction::Down => {
            Migrator::down(conn, Some(steps)).await?;
            println!("reverted {steps} migration(s)");
        }
        MigrateAction::Status => {
            for migration in Migrator::get_migration_with_status(conn).await? {
                println!("{:<8} {}", migration.status(), migration.name());
            }
        }
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_shows_its_variable_in_help() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("serve")
            .expect("serve exists")
            .render_long_help()
            .to_string();
        for var in [
            "LISTEN_ADDR",
            "PUBLIC_URL",
            "DATABASE_URL",
            "REDIS_URL",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "GRAPHQL_MAX_DEPTH",
            "BODY_LIMIT_BYTES",
        ] {
            assert!(
                help.contains(&format!("[env: {var}")),
                "{var} missing from help"
            );
        }
        assert!(help.contains("[default: 127.0.0.1:8000]"));
    }
}
