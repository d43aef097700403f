//! The `promptreg` command: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use promptreg::config::{Config, LogFormat, Overrides};

// Request handling allocates many small, short-lived objects; mimalloc
// serves them markedly faster than the system allocator (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

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
    /// Manage API keys directly in the database (for operators).
    Keys {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        /// The project the key acts in; created if missing.
        #[arg(long, default_value = "default")]
        project: String,
        /// Comma-separated: read, write, promote, evaluate, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// What the key is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List the keys of a project.
    List {
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Revoke a key by id.
    Revoke {
        id: uuid::Uuid,
        #[arg(long, default_value = "default")]
        project: String,
    },
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
        Command::Keys { config, command } => keys(load(config, None)?, command).await,
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

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    use promptreg::auth::Authenticator;
    use promptreg::domain::auth::{Actor, Scope};
    use promptreg::domain::names::parse_project_name;

    let store = promptreg::store::connect(&config.database_url, 1).await?;
    let auth = Authenticator::new(store.clone(), &config.rate_limit)?;
    let system = Actor::system();
    let project_id = |name: &str| {
        let store = store.clone();
        let name = parse_project_name(name).map(|_| name.to_owned());
        async move { Ok::<_, anyhow::Error>(store.ensure_project(&name?).await?) }
    };
    match command {
        KeysCommand::Create {
            project,
            scopes,
            name,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s.trim()).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown scope {s:?}; use read, write, promote, evaluate or admin"
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (key, secret) = auth
                .create_key(project_id(&project).await?, &name, scopes, &system)
                .await?;
            eprintln!(
                "created key {} ({}) in project {}; the secret is shown only now:",
                key.id, key.name, key.project
            );
            println!("{}", secret.expose());
        }
        KeysCommand::List { project } => {
            for key in store.list_keys(project_id(&project).await?).await? {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                let state = if key.revoked { "revoked" } else { "active" };
                println!(
                    "{}  {}  {:<8} {}  [{}]",
                    key.id,
                    key.prefix,
                    state,
                    key.name,
                    scopes.join(",")
                );
            }
        }
        KeysCommand::Revoke { id, project } => {
            let key = auth
                .revoke_key(project_id(&project).await?, id, &system)
                .await?;
            eprintln!("revoked key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}
