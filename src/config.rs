//! Configuration, read once at start-up: compiled-in defaults (the text of
//! `config/default.toml`) < a file given with `--config` < `DATABASE_URL` <
//! `PROMPTREG_*` environment variables < command-line flags. The only module
//! that reads the environment: LLM providers' API keys too, resolved here from
//! the variables their `api_key_env` names and kept [`Redacted`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    /// The label a request means when it names no version.
    pub default_ref: String,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub log_level: String,
    /// `pr_` and at least 32 letters and digits: `serve` makes sure an admin
    /// key with exactly this secret exists. Empty: none.
    pub init_admin_key: Redacted,
    /// The password `serve` gives user `admin` when it creates it (on a
    /// database without that user). Empty: with no user at all, `serve`
    /// creates `admin` with a random password and prints it once.
    pub init_admin_password: Redacted,
    pub ui: UiConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub render: RenderConfig,
    /// Token buckets per key, one per scope a route requires.
    pub rate_limit: RateLimits,
    /// LLM providers by name (`[providers.NAME]`); none by default.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    pub worker: WorkerConfig,
    pub webhooks: WebhooksConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
}

/// `GET /metrics`, the Prometheus exposition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Off: nothing is recorded and `/metrics` answers 404.
    pub enabled: bool,
    /// Whether a scrape needs an `admin` key.
    pub require_auth: bool,
}

/// OpenTelemetry trace export (OTLP over HTTP, protobuf).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's base URL (`/v1/traces` is appended); empty: no
    /// tracing. `OTEL_EXPORTER_OTLP_ENDPOINT` sets it too.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute; `OTEL_SERVICE_NAME` sets it too.
    pub service_name: String,
}

/// The web UI's sessions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// How long a sign-in lasts.
    pub session_hours: u32,
    /// Whether the session cookie carries `Secure` (sent over HTTPS only).
    /// Turn off only to use the UI over plain HTTP (local use, tests).
    pub secure_cookies: bool,
}

/// The job workers: how many `serve` runs in-process, and their lease.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Workers `serve` runs beside the HTTP server (0: none; run `promptreg worker`).
    pub count: usize,
    /// How long a claimed job stays a worker's without a heartbeat.
    pub lease_secs: u64,
    /// How often an idle worker looks for jobs (new jobs also wake it).
    pub poll_interval_ms: u64,
}

/// Webhook delivery: signing-secret encryption, retries and where
/// deliveries may go.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Base64 of 32 random bytes: the key that encrypts the endpoints'
    /// signing secrets at rest. Empty: webhooks cannot be created.
    pub secret_key: Redacted,
    /// The first retry's delay; each next one doubles (with jitter).
    pub retry_base_ms: u64,
    /// Tries per delivery before it fails.
    pub max_attempts: u32,
    /// The longest wait between two tries (and the most a `Retry-After` gets).
    pub max_retry_delay_secs: u64,
    /// An endpoint is disabled after this many failed attempts in a row.
    pub disable_after_failures: u32,
    /// How long one attempt may take, connection included.
    pub timeout_secs: u64,
    /// Deliveries in flight at once per process, over all endpoints.
    pub concurrency: usize,
    /// Lets endpoints be plain `http://` and on private, loopback or
    /// link-local addresses.
    pub allow_private_networks: bool,
    /// Hosts (names or addresses) exempt from the https and public-address
    /// rules, such as an internal receiver.
    pub allowed_hosts: Vec<String>,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// A token bucket per key for the routes that need each scope.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub read: RateLimit,
    pub write: RateLimit,
    pub promote: RateLimit,
    pub evaluate: RateLimit,
    pub feedback: RateLimit,
    pub admin: RateLimit,
}

impl RateLimits {
    /// Every bucket, to tune them all at once.
    pub fn each_mut(&mut self) -> [&mut RateLimit; 6] {
        [
            &mut self.read,
            &mut self.write,
            &mut self.promote,
            &mut self.evaluate,
            &mut self.feedback,
            &mut self.admin,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second (may be fractional: 0.5 is one every 2 s).
    pub per_second: f64,
    /// Bucket size: how many requests may come at once.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 200,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    /// Dataset item uploads, which stream rather than buffer.
    pub upload_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// After SIGTERM, how long open connections may take to finish before
    /// they are closed: a client holding a connection open (an idle
    /// keep-alive, a half-sent request) must not keep the process alive.
    pub shutdown_grace_secs: u64,
    /// Origins browsers may call the API from (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Immutable versions kept in memory, by id and by exact semver.
    pub max_versions: usize,
    /// Prompts whose label resolutions are kept in memory.
    pub max_prompts: usize,
    /// Compiled templates kept in memory, by version and partials.
    pub max_compiled: usize,
}

/// Bounds on every render (API, Langfuse, evaluations, optimizations) and
/// on templates written out with their partials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenderConfig {
    /// The most bytes one render may produce; also the most a template
    /// with its partials written out in place may take.
    pub max_output_bytes: usize,
    /// The most steps one render may take (jinja: fuel; handlebars: loop
    /// iterations and entries into blocks and partials).
    pub max_steps: u64,
    /// The longest one render may take, in milliseconds.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

// An LLM provider's wire format: the `kind` of a `[providers.NAME]`, and
// the request shape the render endpoint's `format` asks for (a provider's
// kind is exactly the request it takes). `RequestFormat` in the OpenAPI
// document, as before; not a doc comment, which would become the schema's
// description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RequestFormat)]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
}

/// One LLM provider, `[providers.NAME]`. API keys never live in files: the
/// config names the environment variable (`api_key_env`) and [`Config::load`]
/// reads it into `api_key`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The wire format: `openai` (also any OpenAI-compatible server: vLLM,
    /// Ollama, LM Studio, LiteLLM, OpenRouter…), `anthropic` or `gemini`.
    pub kind: ProviderKind,
    /// Omitted: the kind's public API ([`ProviderConfig::base_url`]). For
    /// `openai` it ends in `/v1`, as OpenAI's SDK takes it; for `anthropic`
    /// and `gemini` it is the host root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The name of the environment variable holding the key. Omitted:
    /// `ANTHROPIC_API_KEY` or `GEMINI_API_KEY` for those kinds; none for
    /// `openai`, which then sends no `Authorization` header (local servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The key read from that variable at load: never read from a file,
    /// never serialized, `***` in `Debug`. `None` when the variable is unset
    /// or empty; calls needing a key then fail, naming the variable.
    #[serde(skip)]
    pub api_key: Option<Redacted>,
    /// The model used when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Seconds one attempt may take (fractions allowed).
    #[serde(default = "default_provider_timeout")]
    pub timeout: f64,
    /// Calls in flight at once; more wait their turn.
    #[serde(default = "default_provider_concurrency")]
    pub max_concurrency: usize,
    /// Retries after a failed attempt (429, 5xx, timeout, network error).
    #[serde(default = "default_provider_retries")]
    pub max_retries: u32,
    /// USD per million tokens, by model name as requests give it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, ModelPrice>,
}

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

fn default_provider_timeout() -> f64 {
    60.0
}

fn default_provider_concurrency() -> usize {
    8
}

fn default_provider_retries() -> u32 {
    3
}

/// Bounds that catch typos (a timeout in milliseconds, say) at start-up.
const MAX_PROVIDER_TIMEOUT_SECS: f64 = 3600.0;
const MAX_PROVIDER_CONCURRENCY: usize = 10_000;
const MAX_PROVIDER_RETRIES: u32 = 10;

impl ProviderConfig {
    /// A provider of `kind` with every default and no key.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            base_url: None,
            api_key_env: None,
            api_key: None,
            default_model: None,
            timeout: default_provider_timeout(),
            max_concurrency: default_provider_concurrency(),
            max_retries: default_provider_retries(),
            prices: BTreeMap::new(),
        }
    }

    /// The base URL without a trailing slash: the configured one, else the
    /// kind's public API.
    pub fn base_url(&self) -> String {
        let url = self.base_url.as_deref().unwrap_or(match self.kind {
            ProviderKind::Openai => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        });
        url.trim_end_matches('/').to_owned()
    }

    /// The environment variable the key comes from: the configured one, else
    /// the kind's usual one (none for OpenAI-compatible servers).
    pub fn key_env(&self) -> Option<&str> {
        self.api_key_env.as_deref().or(match self.kind {
            ProviderKind::Openai => None,
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::Gemini => Some("GEMINI_API_KEY"),
        })
    }

    /// Checks every value; errors name `providers.NAME.field`.
    pub fn validate(&self, name: &str) -> anyhow::Result<()> {
        let at = |field: &str| format!("providers.{name}.{field}");
        let name_ok = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
        if !name_ok {
            anyhow::bail!(
                "provider name {name:?} must match [a-z0-9][a-z0-9._-]* (at most 64 characters)"
            );
        }
        let base = self.base_url();
        match reqwest::Url::parse(&base) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none() => {}
            _ => anyhow::bail!(
                "{}: {base:?} is not an http(s) URL without query or fragment",
                at("base_url")
            ),
        }
        if let Some(env) = &self.api_key_env {
            let valid =
                !env.is_empty() && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            // The value is not echoed: it may be a key pasted by mistake.
            if !valid {
                anyhow::bail!(
                    "{}: must be the name of an environment variable \
                     (letters, digits, _), not the key itself",
                    at("api_key_env")
                );
            }
        }
        if self
            .default_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            anyhow::bail!("{}: must not be empty", at("default_model"));
        }
        if !(self.timeout > 0.0 && self.timeout <= MAX_PROVIDER_TIMEOUT_SECS) {
            anyhow::bail!(
                "{}: {} must be seconds in (0, {MAX_PROVIDER_TIMEOUT_SECS}]",
                at("timeout"),
                self.timeout
            );
        }
        if !(1..=MAX_PROVIDER_CONCURRENCY).contains(&self.max_concurrency) {
            anyhow::bail!(
                "{}: {} must be between 1 and {MAX_PROVIDER_CONCURRENCY}",
                at("max_concurrency"),
                self.max_concurrency
            );
        }
        if self.max_retries > MAX_PROVIDER_RETRIES {
            anyhow::bail!(
                "{}: {} must be at most {MAX_PROVIDER_RETRIES}",
                at("max_retries"),
                self.max_retries
            );
        }
        for (model, price) in &self.prices {
            let ok = |p: f64| p.is_finite() && p >= 0.0;
            if !(ok(price.input_per_million) && ok(price.output_per_million)) {
                anyhow::bail!(
                    "{}: prices must be finite and not negative",
                    at(&format!("prices.{model:?}"))
                );
            }
        }
        Ok(())
    }
}

/// Values given on the command line; they win over every other source.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let config = figment
            .merge(Env::raw().only(&["DATABASE_URL"]))
            // The OpenTelemetry SDKs' standard variables, below our own.
            .merge(
                Env::raw()
                    .only(&["OTEL_EXPORTER_OTLP_ENDPOINT"])
                    .map(|_| "telemetry.otlp_endpoint".into()),
            )
            .merge(
                Env::raw()
                    .only(&["OTEL_SERVICE_NAME"])
                    .map(|_| "telemetry.service_name".into()),
            )
            .merge(
                Env::prefixed("PROMPTREG_")
                    .filter(is_config_key)
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()?;
        Self::finish(config)
    }

    /// The defaults alone, as tests and tools start from.
    pub fn defaults() -> anyhow::Result<Self> {
        Self::finish(Figment::from(Toml::string(DEFAULTS)).extract()?)
    }

    /// Checks what serde cannot and reads providers' keys from the environment.
    fn finish(mut config: Self) -> anyhow::Result<Self> {
        let render = &config.render;
        anyhow::ensure!(
            render.max_output_bytes > 0 && render.max_steps > 0 && render.timeout_ms > 0,
            "render.max_output_bytes, render.max_steps and render.timeout_ms must be greater than 0"
        );
        resolve_provider_keys(&mut config.providers, |name| std::env::var(name).ok())?;
        Ok(config)
    }
}

/// Validates each provider and fills in `api_key` from the variable its
/// `key_env` names (`lookup`); unset or empty leaves `None`, which is not an
/// error here: only calls that need the key fail.
fn resolve_provider_keys(
    providers: &mut BTreeMap<String, ProviderConfig>,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for (name, provider) in providers.iter_mut() {
        provider.validate(name)?;
        provider.api_key = provider
            .key_env()
            .and_then(&lookup)
            .filter(|key| !key.trim().is_empty())
            .map(Redacted);
    }
    Ok(())
}

/// Whether a `PROMPTREG_*` variable (prefix stripped) names a configuration
/// key; others (`PROMPTREG_URL` of the client commands, say) are not ours.
fn is_config_key(key: &figment::value::UncasedStr) -> bool {
    let top = key.as_str().split("__").next().unwrap_or_default();
    Figment::from(Toml::string(DEFAULTS))
        .find_value(&top.to_ascii_lowercase())
        .is_ok()
}

/// Whether `RUST_LOG` is set; it then replaces `log_level`.
pub fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
mod tests {
    use super::*;

    #[test]
    fn compiled_defaults_parse() {
        let config = Config::defaults().expect("defaults parse");
        assert_eq!(config.database_url, "sqlite://data/promptreg.db");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.http.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.default_ref, "production");
        assert_eq!(config.init_admin_key, Redacted::default());
        assert!(format!("{:?}", Redacted("pr_secret".into())).contains("***"));
        assert!(config.providers.is_empty(), "no provider by default");
    }

    #[test]
    fn providers_take_defaults_and_keys_from_the_named_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "providers.toml",
                r#"
[providers.openai]
kind = "openai"
api_key_env = "PROMPTREG_TEST_OPENAI_KEY"
default_model = "gpt-4o-mini"
timeout = 2.5
[providers.openai.prices."gpt-4o-mini"]
input_per_million = 0.15
output_per_million = 0.6

[providers.claude]
kind = "anthropic"
api_key_env = "PROMPTREG_TEST_UNSET_KEY"
base_url = "http://127.0.0.1:9999/"
"#,
            )?;
            jail.set_env("PROMPTREG_TEST_OPENAI_KEY", "sk-test-secret-123");
            jail.set_env("PROMPTREG_PROVIDERS__LOCAL__KIND", "openai");
            jail.set_env(
                "PROMPTREG_PROVIDERS__LOCAL__BASE_URL",
                "http://127.0.0.1:11434/v1",
            );
            let config = Config::load(Some(Path::new("providers.toml")), &Overrides::default())
                .expect("load");

            let openai = &config.providers["openai"];
            assert_eq!(openai.kind, ProviderKind::Openai);
            assert_eq!(openai.base_url(), "https://api.openai.com/v1");
            assert_eq!(openai.api_key, Some(Redacted("sk-test-secret-123".into())));
            assert_eq!(openai.timeout, 2.5);
            assert_eq!((openai.max_concurrency, openai.max_retries), (8, 3));
            assert_eq!(openai.prices["gpt-4o-mini"].output_per_million, 0.6);

            let claude = &config.providers["claude"];
            assert_eq!(claude.base_url(), "http://127.0.0.1:9999");
            assert_eq!(claude.api_key, None, "an unset variable is not an error");
            assert_eq!(claude.timeout, 60.0);

            let local = &config.providers["local"];
            assert_eq!(local.base_url(), "http://127.0.0.1:11434/v1");
            assert_eq!(local.key_env(), None);

            let shown = format!("{config:?}");
            assert!(!shown.contains("sk-test-secret"), "{shown}");
            let serialized = serde_json::to_string(&config).expect("serialize");
            assert!(!serialized.contains("sk-test-secret"), "{serialized}");
            Ok(())
        });
    }

    #[test]
    fn kinds_default_their_base_url_and_key_variable() {
        let cases = [
            (ProviderKind::Openai, "https://api.openai.com/v1", None),
            (
                ProviderKind::Anthropic,
                "https://api.anthropic.com",
                Some("ANTHROPIC_API_KEY"),
            ),
            (
                ProviderKind::Gemini,
                "https://generativelanguage.googleapis.com",
                Some("GEMINI_API_KEY"),
            ),
        ];
        for (kind, url, env) in cases {
            let config = ProviderConfig::new(kind);
            assert_eq!(config.base_url(), url);
            assert_eq!(config.key_env(), env);
            config.validate("p").expect("defaults are valid");
        }
    }

    #[test]
    fn bad_provider_values_are_refused_with_where() {
        let cases = [
            ("kind = \"azure\"", "azure", "an unknown kind"),
            ("kind = \"openai\"\ntimeout = 0", "providers.p.timeout", "a zero timeout"),
            ("kind = \"openai\"\ntimeout = -1", "providers.p.timeout", "a negative timeout"),
            ("kind = \"openai\"\ntimeout = \"60s\"", "timeout", "a timeout that is not a number"),
            ("kind = \"openai\"\nmax_concurrency = 0", "providers.p.max_concurrency", "no slots"),
            ("kind = \"openai\"\nmax_retries = 100", "providers.p.max_retries", "too many retries"),
            ("kind = \"openai\"\nbase_url = \"ftp://x\"", "providers.p.base_url", "not http"),
            ("kind = \"openai\"\nbase_url = \"api.openai.com\"", "providers.p.base_url", "no scheme"),
            ("kind = \"openai\"\napi_key_env = \"sk-live-1\"", "providers.p.api_key_env", "a key, not a variable name"),
            ("kind = \"openai\"\napi_key = \"sk-live-1\"", "api_key", "a key in the file"),
            ("kind = \"openai\"\ndefault_model = \"\"", "providers.p.default_model", "an empty model"),
            ("kind = \"openai\"\n[providers.p.prices.m]\ninput_per_million = -1\noutput_per_million = 1", "prices", "a negative price"),
            ("kind = \"openai\"\n[providers.p.prices.m]\ninput_per_million = 1", "output_per_million", "a missing price"),
        ];
        for (body, expected, why) in cases {
            figment::Jail::expect_with(|jail| {
                jail.create_file("bad.toml", &format!("[providers.p]\n{body}\n"))?;
                let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                    .expect_err(why);
                assert!(format!("{err:#}").contains(expected), "{why}: {err:#}");
                assert!(!format!("{err:#}").contains("sk-live-1"), "{why}: {err:#}");
                Ok(())
            });
        }
        let err = ProviderConfig::new(ProviderKind::Openai)
            .validate("Bad Name")
            .expect_err("bad name");
        assert!(err.to_string().contains("Bad Name"), "{err}");
    }

    #[test]
    fn rate_limits_merge_per_scope() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "limits.toml",
                "[rate_limit.read]\nburst = 3\nper_second = 1\n",
            )?;
            jail.set_env(
                "PROMPTREG_INIT_ADMIN_KEY",
                "pr_0123456789abcdef0123456789abcdef",
            );
            let config =
                Config::load(Some(Path::new("limits.toml")), &Overrides::default()).expect("load");
            assert_eq!(
                config.rate_limit.read,
                RateLimit {
                    per_second: 1.0,
                    burst: 3
                }
            );
            assert_eq!(
                config.rate_limit.write,
                Config::defaults().expect("defaults").rate_limit.write
            );
            assert_eq!(
                config.init_admin_key.0,
                "pr_0123456789abcdef0123456789abcdef"
            );
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "promptreg.toml",
                "bind = \"127.0.0.1:9000\"\n[http]\nrequest_timeout_secs = 5\n",
            )?;
            jail.set_env("DATABASE_URL", "postgres://from-plain-env/db");
            jail.set_env("PROMPTREG_HTTP__REQUEST_TIMEOUT_SECS", "7");
            jail.set_env("PROMPTREG_TOKEN", "not a config key");
            let file = Path::new("promptreg.toml");

            let config = Config::load(Some(file), &Overrides::default()).expect("load");
            assert_eq!(config.bind.to_string(), "127.0.0.1:9000");
            assert_eq!(config.http.request_timeout_secs, 7);
            assert_eq!(config.database_url, "postgres://from-plain-env/db");

            jail.set_env("PROMPTREG_DATABASE_URL", "postgres://from-prefixed-env/db");
            let flags = Overrides {
                bind: Some("127.0.0.1:9100".parse().expect("addr")),
                ..Overrides::default()
            };
            let config = Config::load(Some(file), &flags).expect("load");
            assert_eq!(config.database_url, "postgres://from-prefixed-env/db");
            assert_eq!(config.bind.to_string(), "127.0.0.1:9100");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "bnid = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                .expect_err("unknown key");
            assert!(err.to_string().contains("bnid"), "{err}");
            Ok(())
        });
    }
}
