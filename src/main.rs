//! The `promptreg` command: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use promptreg::client::commands::{self, Output};
use promptreg::client::http::Client;
use promptreg::client::push::{self, PushOptions};
use promptreg::config::{Config, LogFormat, Overrides};
use promptreg::domain::LabelName;
use promptreg::telemetry::Telemetry;

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
    /// Run job workers only (evaluations), no HTTP server, until SIGINT or SIGTERM.
    Worker {
        #[command(flatten)]
        config: ConfigArgs,
        /// How many workers (default: worker.count, at least 1).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
    #[command(flatten)]
    Client(ClientCommand),
    /// Manage API keys directly in the database (for operators).
    Keys {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// The commands CI runs against a server (and `validate`, offline).
#[derive(Subcommand)]
enum ClientCommand {
    /// Push a folder of `*.prompt.yaml` files: new prompts are created,
    /// changed ones get a new version, unchanged ones nothing.
    Push {
        dir: PathBuf,
        /// Point this label at every pushed prompt's current version.
        #[arg(long)]
        label: Option<String>,
        /// The changelog entry of new versions (default: the last git commit subject).
        #[arg(long, short)]
        message: Option<String>,
        /// Print what would change, with a diff, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Prompts pushed at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[command(flatten)]
        provenance: Provenance,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write every prompt of the project as files that `push` reads back unchanged.
    Pull {
        dir: PathBuf,
        /// The version to write: a label or a semver.
        #[arg(long = "ref", default_value = "latest")]
        reference: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Check a folder of prompt files offline; problems as `path:line:column`.
    Validate {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// Show how two versions of a prompt differ.
    Diff {
        name: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Evaluate a version on a dataset; `--wait` follows it to the end and
    /// checks the prompt's gates on that dataset (exit 1 if one fails).
    Evaluate(Box<EvaluateArgs>),
    /// Optimize a version's template against a dataset; `--wait` follows
    /// the job and prints the baseline against the best candidate.
    Optimize(Box<OptimizeArgs>),
    /// Point a label at a version.
    Promote {
        name: String,
        #[arg(long)]
        label: String,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Move a label back to its previous version.
    Rollback {
        name: String,
        #[arg(long)]
        label: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(clap::Args)]
struct EvaluateArgs {
    name: String,
    /// A semver or label (default: the server's default label).
    #[arg(long = "ref")]
    reference: Option<String>,
    #[arg(long)]
    dataset: String,
    /// A provider configured on the server.
    #[arg(long)]
    provider: String,
    #[arg(long)]
    model: Option<String>,
    /// A metric to score with (repeat, or comma-separate).
    #[arg(long = "metric", value_delimiter = ',', required = true)]
    metrics: Vec<String>,
    #[arg(long)]
    concurrency: Option<u32>,
    /// Follow the evaluation to its end with a progress bar.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
struct OptimizeArgs {
    #[command(flatten)]
    options: promptreg::client::optimize::OptimizeOptions,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Where pushed content comes from, recorded in each new version's metadata.
/// GitHub Actions sets these variables; elsewhere `git` in the folder tells.
#[derive(clap::Args)]
struct Provenance {
    /// The commit being pushed (default: `git rev-parse HEAD`).
    #[arg(long, env = "GITHUB_SHA", value_name = "SHA")]
    git_commit: Option<String>,
    /// The branch being pushed (default: the checked-out branch).
    #[arg(long, env = "GITHUB_REF_NAME", value_name = "BRANCH")]
    git_branch: Option<String>,
    /// The CI run that pushes.
    #[arg(long, env = "GITHUB_RUN_ID", value_name = "ID")]
    ci_run: Option<String>,
}

/// Where the server is and how to reach it, for the client commands.
#[derive(clap::Args)]
struct RemoteArgs {
    /// The server's base URL.
    #[arg(long, env = "PROMPTREG_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API key (`pr_…`).
    #[arg(long, env = "PROMPTREG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// human (default) or json: exactly one JSON object on stdout.
    #[arg(long, value_enum, default_value = "human")]
    output: Output,
}

impl RemoteArgs {
    fn client(&self) -> Result<Client, ExitCode> {
        Client::new(&self.server, self.token.clone()).map_err(|e| {
            eprintln!("promptreg: {e}");
            ExitCode::from(2)
        })
    }
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

/// The configuration, with logging (and tracing, when configured) started;
/// the guard flushes the last spans when the command ends.
fn load(
    args: ConfigArgs,
    bind: Option<std::net::SocketAddr>,
) -> anyhow::Result<(Config, Telemetry)> {
    let overrides = Overrides {
        bind,
        log_format: args.log_format,
        database_url: args.database_url,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let telemetry = promptreg::telemetry::init(&config);
    Ok((config, telemetry))
}

/// Runs a command; the client commands answer their own exit status.
async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config, bind } => {
            let (config, _telemetry) = load(config, bind)?;
            promptreg::app::serve(config).await?
        }
        Command::Worker { config, count } => {
            let (config, _telemetry) = load(config, None)?;
            promptreg::app::run_workers(config, count).await?
        }
        Command::Migrate { config } => {
            let (config, _telemetry) = load(config, None)?;
            let store = promptreg::store::connect(&config.database_url, 1).await?;
            tracing::info!(backend = store.backend(), "migrations applied");
        }
        Command::Keys { config, command } => {
            let (config, _telemetry) = load(config, None)?;
            keys(config, command).await?
        }
        Command::Openapi => println!("{}", promptreg::api::openapi().to_pretty_json()?),
        Command::Client(command) => return Ok(client_command(command).await),
    }
    Ok(ExitCode::SUCCESS)
}

fn label(raw: &str) -> Result<LabelName, ExitCode> {
    LabelName::parse(raw).map_err(|e| {
        eprintln!("promptreg: --label: {e}");
        ExitCode::from(commands::USAGE)
    })
}

/// The client commands: they talk HTTP and report their own exit status.
async fn client_command(command: ClientCommand) -> ExitCode {
    match command {
        ClientCommand::Push {
            dir,
            label: raw_label,
            message,
            dry_run,
            concurrency,
            provenance,
            remote,
        } => {
            let label = match raw_label.as_deref().map(label).transpose() {
                Ok(label) => label,
                Err(code) => return code,
            };
            let client = match remote.client() {
                Ok(client) => client,
                Err(code) => return code,
            };
            let options = PushOptions {
                label,
                message,
                metadata: Default::default(),
                dry_run,
                concurrency,
            };
            let provenance = push::Provenance {
                git_commit: provenance.git_commit,
                git_branch: provenance.git_branch,
                ci_run: provenance.ci_run,
            };
            commands::push(&client, &dir, options, provenance, remote.output).await
        }
        ClientCommand::Pull {
            dir,
            reference,
            concurrency,
            remote,
        } => match remote.client() {
            Ok(client) => {
                commands::pull(&client, &dir, &reference, concurrency, remote.output).await
            }
            Err(code) => code,
        },
        ClientCommand::Validate { dir, output } => commands::validate(&dir, output),
        ClientCommand::Diff {
            name,
            from,
            to,
            remote,
        } => match remote.client() {
            Ok(client) => commands::diff(&client, &name, &from, &to, remote.output).await,
            Err(code) => code,
        },
        ClientCommand::Evaluate(args) => {
            let args = *args;
            let output = args.remote.output;
            match args.remote.client() {
                Ok(client) => {
                    let options = promptreg::client::evaluate::EvaluateOptions {
                        name: args.name,
                        reference: args.reference,
                        dataset: args.dataset,
                        provider: args.provider,
                        model: args.model,
                        metrics: args.metrics,
                        concurrency: args.concurrency,
                        wait: args.wait,
                        progress: output == Output::Human,
                    };
                    commands::evaluate(&client, &options, output).await
                }
                Err(code) => code,
            }
        }
        ClientCommand::Optimize(args) => {
            let OptimizeArgs {
                mut options,
                remote,
            } = *args;
            options.progress = remote.output == Output::Human;
            match remote.client() {
                Ok(client) => commands::optimize(&client, &options, remote.output).await,
                Err(code) => code,
            }
        }
        ClientCommand::Promote {
            name,
            label: raw_label,
            version,
            remote,
        } => match (label(&raw_label), remote.client()) {
            (Ok(label), Ok(client)) => {
                commands::promote(&client, &name, &label, &version, remote.output).await
            }
            (Err(code), _) | (_, Err(code)) => code,
        },
        ClientCommand::Rollback {
            name,
            label: raw_label,
            remote,
        } => match (label(&raw_label), remote.client()) {
            (Ok(label), Ok(client)) => {
                commands::rollback(&client, &name, &label, remote.output).await
            }
            (Err(code), _) | (_, Err(code)) => code,
        },
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(code) => code,
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
