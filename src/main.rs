//! The `promptreg` command: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use promptreg::client::commands::{self, Output};
use promptreg::client::http::Client;
use promptreg::client::push::{self, PushOptions};
use promptreg::client::report::write_stdout;
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

/// Where the configuration comes from. Global: `keys create --database-url …`
/// works as well as `keys --database-url … create`.
#[derive(clap::Args)]
struct ConfigArgs {
    /// A TOML file overriding the defaults (see config/default.toml).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (overrides DATABASE_URL).
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
    /// pretty or json (pretty logs are coloured only on a terminal).
    #[arg(long, value_enum, global = true)]
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
    /// Run job workers only (evaluations and optimizations), no HTTP server,
    /// until SIGINT or SIGTERM.
    Worker {
        #[command(flatten)]
        config: ConfigArgs,
        /// How many workers (default: worker.count, at least 1).
        #[arg(long, value_name = "N")]
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
    /// Manage web UI users directly in the database (for operators).
    Users {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user who signs in to the web UI.
    ///
    /// Without --password-stdin a random password is made and printed once.
    Create {
        /// `[a-z0-9][a-z0-9._-]{0,63}`
        name: String,
        /// PROJECT=ROLE, repeatable; roles: viewer, editor, releaser, evaluator, admin.
        #[arg(long = "role", value_name = "PROJECT=ROLE", required = true)]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// The commands CI runs against a server (and `validate`, offline), and
/// the ones people browse the registry with.
#[derive(Subcommand)]
enum ClientCommand {
    /// Push a folder of `*.prompt.yaml` files: new prompts are created,
    /// changed ones get a new version, unchanged ones nothing.
    ///
    /// A prompt is pushed after the prompts of the folder it includes
    /// (`{{> common/tone}}`). A refused key stops the push at once.
    Push {
        /// The folder of prompt files; names are paths inside it.
        dir: PathBuf,
        /// Point this label at every pushed prompt's current version.
        #[arg(long, value_parser = parse_label)]
        label: Option<LabelName>,
        /// The changelog entry of new versions (default: the last git commit subject).
        #[arg(long, short)]
        message: Option<String>,
        /// Print what would change, with a diff, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Prompts pushed at once.
        #[arg(long, default_value_t = 16, value_name = "N")]
        concurrency: usize,
        #[command(flatten)]
        provenance: Provenance,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write every prompt of the project as files that `push` reads back unchanged.
    ///
    /// Exit 1 when no prompt has a version at `--ref`.
    Pull {
        /// The folder to write into (created if missing).
        dir: PathBuf,
        /// The version to write: a label or a semver.
        #[arg(long = "ref", default_value = "latest")]
        reference: String,
        /// Prompts fetched at once.
        #[arg(long, default_value_t = 16, value_name = "N")]
        concurrency: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Check prompt files offline; problems as `path:line:column`.
    ///
    /// Exit 1 on errors, or when there is no prompt file to check.
    Validate {
        /// Folders (every `*.prompt.yaml` and `*.prompt.yml` under them)
        /// and single files, e.g. the ones a pre-commit hook passes.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The folder prompt names start from, for files given by path
        /// (default: the current folder).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// human (default) or json: exactly one JSON object on stdout.
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// List the prompts: name, latest version, labels and their versions.
    ///
    /// Exit 1 when none matches.
    Ls {
        /// Only prompts whose name starts with this, e.g. `support/`.
        prefix: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one version of a prompt: its settings and template.
    Show {
        /// The prompt, optionally `@` a label or semver (default: `@production`),
        /// e.g. `support/greeting@1.0.2`.
        #[arg(value_name = "NAME[@REF]")]
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a label's moves, newest first.
    History {
        /// The prompt.
        name: String,
        /// The label whose moves to list.
        #[arg(long, default_value = "production", value_parser = parse_label)]
        label: LabelName,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show how two versions of a prompt differ.
    Diff {
        /// The prompt.
        name: String,
        /// The older version: a semver or a label.
        #[arg(long, value_name = "REF")]
        from: String,
        /// The newer version: a semver or a label.
        #[arg(long, value_name = "REF")]
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
        /// The prompt.
        name: String,
        /// The label to move, e.g. production.
        #[arg(long, value_parser = parse_label)]
        label: LabelName,
        /// The semver to point it at.
        #[arg(long, value_name = "SEMVER")]
        version: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Move a label back to its previous version.
    Rollback {
        /// The prompt.
        name: String,
        /// The label to move back.
        #[arg(long, value_parser = parse_label)]
        label: LabelName,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// The prompt.
    name: String,
    /// A semver or label (default: the server's default label).
    #[arg(long = "ref")]
    reference: Option<String>,
    /// The dataset whose items are run.
    #[arg(long)]
    dataset: String,
    /// A provider configured on the server.
    #[arg(long)]
    provider: String,
    /// The model (default: the version's model_config.model, else the provider's default).
    #[arg(long)]
    model: Option<String>,
    /// A metric to score with (repeat, or comma-separate).
    #[arg(long = "metric", value_delimiter = ',', required = true)]
    metrics: Vec<String>,
    /// Provider calls in flight at most (default: the server's).
    #[arg(long, value_name = "N")]
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
    /// The server's base URL; `http://` when it names no scheme (`127.0.0.1:8080`).
    #[arg(
        long,
        env = "PROMPTREG_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// An API key (`pr_…`).
    #[arg(
        long,
        env = "PROMPTREG_TOKEN",
        hide_env_values = true,
        value_name = "KEY"
    )]
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
    ///
    /// Exit 1 when there is no such project, or it has no keys.
    List {
        /// The project whose keys to list.
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: uuid::Uuid,
        /// The project the key belongs to.
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
            return keys(config, command).await;
        }
        Command::Users { config, command } => {
            let (config, _telemetry) = load(config, None)?;
            return users(config, command).await;
        }
        Command::Openapi => write_stdout(format_args!(
            "{}\n",
            promptreg::api::openapi().to_pretty_json()?
        )),
        Command::Client(command) => return Ok(client_command(command).await),
    }
    Ok(ExitCode::SUCCESS)
}

/// Clap refuses a bad label as a usage error (exit 2), naming the option.
fn parse_label(raw: &str) -> Result<LabelName, String> {
    LabelName::parse(raw).map_err(|e| e.to_string())
}

/// The client commands: they talk HTTP and report their own exit status.
async fn client_command(command: ClientCommand) -> ExitCode {
    match command {
        ClientCommand::Push {
            dir,
            label,
            message,
            dry_run,
            concurrency,
            provenance,
            remote,
        } => {
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
        ClientCommand::Validate {
            paths,
            root,
            output,
        } => commands::validate(&paths, root.as_deref(), output),
        ClientCommand::Ls { prefix, remote } => match remote.client() {
            Ok(client) => commands::ls(&client, prefix.as_deref(), remote.output).await,
            Err(code) => code,
        },
        ClientCommand::Show { name, remote } => match remote.client() {
            Ok(client) => commands::show(&client, &name, remote.output).await,
            Err(code) => code,
        },
        ClientCommand::History {
            name,
            label,
            remote,
        } => match remote.client() {
            Ok(client) => commands::history(&client, &name, &label, remote.output).await,
            Err(code) => code,
        },
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
            label,
            version,
            remote,
        } => match remote.client() {
            Ok(client) => commands::promote(&client, &name, &label, &version, remote.output).await,
            Err(code) => code,
        },
        ClientCommand::Rollback {
            name,
            label,
            remote,
        } => match remote.client() {
            Ok(client) => commands::rollback(&client, &name, &label, remote.output).await,
            Err(code) => code,
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

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<ExitCode> {
    use promptreg::auth::Authenticator;
    use promptreg::domain::auth::{Actor, Scope};
    use promptreg::domain::names::parse_project_name;

    let store = promptreg::store::connect(&config.database_url, 1).await?;
    let auth = Authenticator::new(store.clone(), &config.rate_limit)?;
    let system = Actor::system();
    // Creating a key creates its project; listing and revoking only look.
    let project_id = |name: &str| {
        let store = store.clone();
        let name = parse_project_name(name).map(|_| name.to_owned());
        async move { Ok::<_, anyhow::Error>(store.ensure_project(&name?).await?) }
    };
    let existing_project_id = |name: &str| {
        let store = store.clone();
        let name = parse_project_name(name).map(|_| name.to_owned());
        async move { Ok::<_, anyhow::Error>(store.get_project(&name?).await?.id) }
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
            write_stdout(format_args!("{}\n", secret.expose()));
        }
        KeysCommand::List { project } => {
            let keys = store
                .list_keys(existing_project_id(&project).await?)
                .await?;
            if keys.is_empty() {
                eprintln!("promptreg: project {project:?} has no keys");
                return Ok(ExitCode::from(commands::FAILED));
            }
            for key in keys {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                let state = if key.revoked { "revoked" } else { "active" };
                write_stdout(format_args!(
                    "{}  {}  {:<8} {}  [{}]\n",
                    key.id,
                    key.prefix,
                    state,
                    key.name,
                    scopes.join(",")
                ));
            }
        }
        KeysCommand::Revoke { id, project } => {
            let key = auth
                .revoke_key(existing_project_id(&project).await?, id, &system)
                .await?;
            eprintln!("revoked key {} ({})", key.id, key.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn users(config: Config, command: UsersCommand) -> anyhow::Result<ExitCode> {
    use promptreg::domain::auth::Actor;
    use promptreg::domain::users::{random_token, Role};
    use promptreg::domain::DEFAULT_PROJECT;
    use promptreg::services::{users, Registry};

    let store = promptreg::store::connect(&config.database_url, 1).await?;
    let registry = Registry::new(store.clone(), &config.cache);
    match command {
        UsersCommand::Create {
            name,
            roles,
            password_stdin,
        } => {
            let roles = roles
                .iter()
                .map(|pair| {
                    let (project, role) = pair
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--role {pair:?}: write PROJECT=ROLE"))?;
                    let role = Role::ALL
                        .into_iter()
                        .find(|r| r.as_str() == role.trim())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown role {role:?}; use viewer, editor, releaser, evaluator or admin"
                            )
                        })?;
                    Ok((project.trim().to_owned(), role))
                })
                .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (random_token(24), true)
            };
            let audit_project = store.ensure_project(DEFAULT_PROJECT).await?;
            let user = users::create_user(
                &registry,
                audit_project,
                &Actor::system(),
                &name,
                &password,
                roles,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}{}", field_detail(&e)))?;
            eprintln!("created user {}", user.name);
            if generated {
                eprintln!("its password is shown only now:");
                write_stdout(format_args!("{password}\n"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The fields a service error names, for a command's message.
fn field_detail(err: &promptreg::services::ServiceError) -> String {
    let fields: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
    if fields.is_empty() {
        String::new()
    } else {
        format!(": {}", fields.join("; "))
    }
}
