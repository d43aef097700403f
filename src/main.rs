//! The `promptreg` command: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use promptreg::config::{Config, LogFormat, Overrides};

#[derive(Parser)]
#[command(name = "promptreg", version, about = "A self-hosted prompt registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// A TOML file overriding the defaults (see config/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (overrides DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// pretty or json.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Listen address (overrides PROMPTREG_BIND).
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
}

fn load(args: ConfigArgs, bind: Option<std::net::SocketAddr>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        bind,
        log_format: args.log_format,
        database_url: args.database_url,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    promptreg::telemetry::init(config.log_format, &config.log_level);
    Ok(config)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, bind } => promptreg::app::serve(load(config, bind)?).await,
        Command::Migrate { config } => {
            let config = load(config, None)?;
            let store = promptreg::store::connect(&config.database_url, 1).await?;
            tracing::info!(backend = store.backend(), "migrations applied");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", promptreg::api::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("promptreg: {err:#}");
            ExitCode::FAILURE
        }
    }
}
