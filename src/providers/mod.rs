//! LLM providers: the only code that calls out to the network. One client per
//! wire format (`openai`, `anthropic`, `gemini`), each building its body with
//! [`requests::request_body`] and parsing its reply; retries, timeouts,
//! concurrency limits and cost live once in `client`. [`Providers`] is built
//! once from the configuration and hands out `Arc<dyn LlmProvider>` by name.
//! Nothing here knows about HTTP routes, the store or jobs, and no error or
//! listing ever carries an API key.

mod anthropic;
mod client;
mod gemini;
mod openai;
pub mod requests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::config::ProviderConfig;
use crate::template::Rendered;

/// A provider's wire format, defined with the configuration that names it.
pub use crate::config::ProviderKind;

#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// The configured name (`[providers.NAME]`).
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    fn default_model(&self) -> Option<&str>;
    /// One completion, retried as configured; waits for a free slot first
    /// when `max_concurrency` calls are in flight.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError>;

    /// [`complete`](Self::complete) with every attempt (retries included)
    /// counted by `meter`, which may refuse an attempt once its budget is
    /// spent: the call then fails with [`ProviderError::BudgetExhausted`].
    async fn complete_metered(
        &self,
        request: &CompletionRequest,
        meter: &CallMeter,
    ) -> Result<Completion, ProviderError> {
        if !meter.admit() {
            return Err(ProviderError::BudgetExhausted);
        }
        let completion = self.complete(request).await?;
        meter.add_attempts(completion.attempts.saturating_sub(1));
        meter.add_cost(completion.cost_usd);
        Ok(completion)
    }
}

/// Counts provider attempts and their cost across calls, and refuses new
/// attempts once `max_calls` attempts were made or `max_cost_usd` was spent.
/// Shared by every call of one job, whatever the provider.
#[derive(Debug, Default)]
pub struct CallMeter {
    attempts: std::sync::atomic::AtomicU64,
    /// Spent so far, in 10⁻¹² dollars (atomics hold no floats; a cheap
    /// call costs well under a millionth).
    cost_pico_usd: std::sync::atomic::AtomicU64,
    max_calls: Option<u64>,
    max_cost_usd: Option<f64>,
}

impl CallMeter {
    /// A meter that starts from `attempts` and `cost_usd` already spent.
    pub fn new(
        max_calls: Option<u64>,
        max_cost_usd: Option<f64>,
        attempts: u64,
        cost_usd: f64,
    ) -> Self {
        Self {
            attempts: attempts.into(),
            cost_pico_usd: to_pico(cost_usd).into(),
            max_calls,
            max_cost_usd,
        }
    }

    /// Takes one attempt from the budget; false when none is left.
    pub fn admit(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.cost_spent() {
            return false;
        }
        self.attempts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |made| {
                match self.max_calls {
                    Some(max) if made >= max => None,
                    _ => Some(made + 1),
                }
            })
            .is_ok()
    }

    fn add_attempts(&self, more: u32) {
        self.attempts
            .fetch_add(u64::from(more), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn add_cost(&self, cost_usd: Option<f64>) {
        if let Some(cost) = cost_usd {
            self.cost_pico_usd
                .fetch_add(to_pico(cost), std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn cost_spent(&self) -> bool {
        self.max_cost_usd.is_some_and(|max| self.cost_usd() >= max)
    }

    /// Whether the budget refuses further attempts.
    pub fn exhausted(&self) -> bool {
        self.cost_spent() || self.max_calls.is_some_and(|max| self.attempts() >= max)
    }

    pub fn attempts(&self) -> u64 {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn cost_usd(&self) -> f64 {
        self.cost_pico_usd.load(std::sync::atomic::Ordering::SeqCst) as f64 / 1e12
    }
}

fn to_pico(usd: f64) -> u64 {
    (usd.max(0.0) * 1e12).round() as u64
}

/// What to ask a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub rendered: Rendered,
    /// The model to call. `None`: `params["model"]` if it is a string, else
    /// the provider's `default_model`; none of them → [`ProviderError::NoModel`].
    pub model: Option<String>,
    /// Sampling parameters under OpenAI's names (`temperature`, `max_tokens`,
    /// `stop`…): the version's `model_config` merged with the request's.
    /// Each client maps them to its API (see [`requests`]).
    pub params: Map<String, Value>,
    /// A JSON Schema the reply must follow, where the API supports it.
    pub output_schema: Option<Value>,
}

impl CompletionRequest {
    /// A request for `rendered` with the provider's defaults.
    pub fn new(rendered: Rendered) -> Self {
        Self {
            rendered,
            model: None,
            params: Map::new(),
            output_schema: None,
        }
    }
}

/// Tokens as the provider counted them; 0 when the reply did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    /// Every billed output token, thinking included.
    pub output_tokens: u64,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    /// The model asked for (the name prices are keyed by), not the dated
    /// snapshot some APIs report back.
    pub model: String,
    pub usage: Usage,
    /// From the configured prices; `None` when the model has none.
    pub cost_usd: Option<f64>,
    /// Time of the attempt that succeeded: the provider's latency, without
    /// queueing for a slot or earlier failed attempts.
    pub latency_ms: u64,
    /// Tries made, 1 when the first one succeeded.
    pub attempts: u32,
}

/// Why a call failed. Messages never contain the API key (replies that echo
/// it are scrubbed) nor prompt text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 429, still after the last retry.
    #[error("the provider is rate limiting requests{}", retry_hint(.retry_after_secs))]
    RateLimited { retry_after_secs: Option<u64> },
    /// HTTP 5xx, still after the last retry.
    #[error("the provider failed with HTTP {status}: {message}")]
    Server { status: u16, message: String },
    /// No reply within `timeout` seconds, still after the last retry.
    #[error("the provider did not answer in time")]
    Timeout,
    /// No HTTP reply at all (connection refused, reset, DNS…).
    #[error("cannot reach the provider: {0}")]
    Network(String),
    /// HTTP 4xx other than 429: the request itself is wrong (bad model, bad
    /// parameter, bad key) and is not retried.
    #[error("the provider refused the request with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// A success status with a body that is not the API's reply shape.
    #[error("the provider's reply is unreadable: {0}")]
    Malformed(String),
    #[error("no model: the request names none and the provider has no default_model")]
    NoModel,
    /// The provider needs a key and the variable holding it was unset or
    /// empty at start-up.
    #[error("no API key: set the environment variable {env} and restart")]
    MissingApiKey { env: String },
    /// The job's call or cost budget is spent; no attempt was made.
    #[error("the call budget is spent")]
    BudgetExhausted,
}

fn retry_hint(secs: &Option<u64>) -> String {
    secs.map_or_else(String::new, |s| format!(" (retry after {s} s)"))
}

impl ProviderError {
    /// Whether the same request may succeed later: rate limits, server
    /// errors, timeouts and network errors. The client retries exactly these
    /// (and a malformed reply once, see `client`).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout | Self::Network(_)
        )
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Server { .. } => "provider_server_error",
            Self::Timeout => "provider_timeout",
            Self::Network(_) => "provider_unreachable",
            Self::Rejected { .. } => "provider_rejected",
            Self::Malformed(_) => "provider_malformed_reply",
            Self::NoModel => "provider_no_model",
            Self::MissingApiKey { .. } => "provider_missing_api_key",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// A provider as listed to users: configuration without secrets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProviderInfo {
    #[schema(example = "openai")]
    pub name: String,
    pub kind: ProviderKind,
    #[schema(example = "https://api.openai.com/v1")]
    pub base_url: String,
    #[schema(example = "gpt-4o-mini")]
    pub default_model: Option<String>,
    /// Models with a configured price, by name.
    pub models: Vec<ModelInfo>,
    pub max_concurrency: usize,
    /// Whether a key was found at start-up (never the key).
    pub has_api_key: bool,
}

/// A priced model.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelInfo {
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// USD per million input tokens.
    #[schema(example = 0.15)]
    pub input_per_million: f64,
    /// USD per million output tokens.
    #[schema(example = 0.6)]
    pub output_per_million: f64,
}

/// Every configured provider, built once at start-up.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn LlmProvider>>,
    infos: Vec<ProviderInfo>,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

/// A provider reached over HTTP in its kind's wire format. The shared work
/// (model choice, limits, retries, usage, cost) is `client::Core`'s; each
/// wire module adds only its endpoint and how to read its reply.
struct HttpProvider {
    core: client::Core,
}

impl HttpProvider {
    fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let (auth, headers): (client::Auth, &[(&str, &str)]) = match config.kind {
            ProviderKind::Openai => (client::Auth::OptionalBearer, &[]),
            ProviderKind::Anthropic => (
                client::Auth::RequiredHeader("x-api-key"),
                &[("anthropic-version", anthropic::API_VERSION)],
            ),
            ProviderKind::Gemini => (client::Auth::RequiredHeader("x-goog-api-key"), &[]),
        };
        Ok(Self {
            core: client::Core::new(name, config, http, auth, headers)?,
        })
    }
}

#[async_trait::async_trait]
impl LlmProvider for HttpProvider {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> ProviderKind {
        self.core.kind
    }

    fn default_model(&self) -> Option<&str> {
        self.core.default_model.as_deref()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.core.call(self.prepare(request)?, None).await
    }

    async fn complete_metered(
        &self,
        request: &CompletionRequest,
        meter: &CallMeter,
    ) -> Result<Completion, ProviderError> {
        let completion = self.core.call(self.prepare(request)?, Some(meter)).await?;
        meter.add_cost(completion.cost_usd);
        Ok(completion)
    }
}

impl HttpProvider {
    /// The URL, body, model and reply parser of one call.
    fn prepare(&self, request: &CompletionRequest) -> Result<client::Call, ProviderError> {
        let model = self.core.prepare(request)?;
        let kind = self.core.kind;
        let mut body = requests::request_body(
            kind,
            &request.rendered,
            &self.core.params(request),
            request.output_schema.as_ref(),
        );
        let base = &self.core.base_url;
        let (url, parse): (String, client::ReplyParser) = match kind {
            ProviderKind::Openai => (openai::endpoint(base), openai::parse_reply),
            ProviderKind::Anthropic => (anthropic::endpoint(base), anthropic::parse_reply),
            ProviderKind::Gemini => (gemini::endpoint(base, &model), gemini::parse_reply),
        };
        // Gemini names the model in the URL; the others in the body.
        if kind != ProviderKind::Gemini {
            if let Some(fields) = body.as_object_mut() {
                fields.insert("model".into(), Value::String(model.clone()));
            }
        }
        Ok(client::Call {
            url,
            body,
            model,
            parse,
        })
    }
}

impl Providers {
    /// One client per configured provider, sharing one HTTP connection pool.
    /// Validates every entry (as config loading does) and fails on a key that
    /// cannot be sent as a header, without showing it.
    pub fn from_config(cfg: &BTreeMap<String, ProviderConfig>) -> anyhow::Result<Self> {
        let http = client::http_client()?;
        let mut providers = Self::default();
        for (name, config) in cfg {
            config.validate(name)?;
            let http = http.clone();
            let provider: Arc<dyn LlmProvider> = Arc::new(HttpProvider::new(name, config, http)?);
            providers.infos.push(info(name, config));
            providers.by_name.insert(name.clone(), provider);
        }
        Ok(providers)
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn LlmProvider>> {
        self.by_name.get(name).cloned()
    }

    /// Every provider, by name.
    pub fn list(&self) -> Vec<ProviderInfo> {
        self.infos.clone()
    }
}

fn info(name: &str, config: &ProviderConfig) -> ProviderInfo {
    ProviderInfo {
        name: name.to_owned(),
        kind: config.kind,
        base_url: config.base_url(),
        default_model: config.default_model.clone(),
        models: config
            .prices
            .iter()
            .map(|(model, price)| ModelInfo {
                model: model.clone(),
                input_per_million: price.input_per_million,
                output_per_million: price.output_per_million,
            })
            .collect(),
        max_concurrency: config.max_concurrency,
        has_api_key: config.api_key.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_admits_exactly_its_calls() {
        let meter = CallMeter::new(Some(3), None, 1, 0.0);
        assert!(meter.admit() && meter.admit());
        assert!(!meter.admit(), "the fourth attempt");
        assert_eq!(meter.attempts(), 3);
        assert!(meter.exhausted());
    }

    #[test]
    fn a_meter_keeps_tiny_costs_and_stops_once_spent() {
        let meter = CallMeter::new(None, Some(0.000_002), 0, 0.0);
        meter.add_cost(Some(0.000_000_15));
        assert!((meter.cost_usd() - 0.000_000_15).abs() < 1e-15);
        assert!(meter.admit());
        meter.add_cost(Some(0.000_002));
        assert!(!meter.admit());
        assert!(meter.exhausted());
    }
    use crate::config::{ModelPrice, Redacted};

    #[test]
    fn codes_are_stable_and_only_transient_errors_are_retryable() {
        let cases = [
            (
                ProviderError::RateLimited {
                    retry_after_secs: Some(2),
                },
                "provider_rate_limited",
                true,
            ),
            (
                ProviderError::Server {
                    status: 503,
                    message: String::new(),
                },
                "provider_server_error",
                true,
            ),
            (ProviderError::Timeout, "provider_timeout", true),
            (
                ProviderError::Network("reset".into()),
                "provider_unreachable",
                true,
            ),
            (
                ProviderError::Rejected {
                    status: 400,
                    message: String::new(),
                },
                "provider_rejected",
                false,
            ),
            (
                ProviderError::Malformed("x".into()),
                "provider_malformed_reply",
                false,
            ),
            (ProviderError::NoModel, "provider_no_model", false),
            (
                ProviderError::MissingApiKey { env: "K".into() },
                "provider_missing_api_key",
                false,
            ),
            (ProviderError::BudgetExhausted, "budget_exhausted", false),
        ];
        for (error, code, retryable) in cases {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.retryable(), retryable, "{error:?}");
        }
    }

    #[test]
    fn list_shows_configuration_but_no_key() {
        let mut config = ProviderConfig::new(ProviderKind::Anthropic);
        config.api_key = Some(Redacted("sk-ant-very-secret".into()));
        config.default_model = Some("claude".into());
        config.prices.insert(
            "claude".into(),
            ModelPrice {
                input_per_million: 3.0,
                output_per_million: 15.0,
            },
        );
        let providers = Providers::from_config(&BTreeMap::from([("claude".to_owned(), config)]))
            .expect("build");
        let list = providers.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].base_url, "https://api.anthropic.com");
        assert!(list[0].has_api_key);
        assert_eq!(list[0].models[0].output_per_million, 15.0);
        let shown = format!(
            "{} {providers:?}",
            serde_json::to_string(&list).expect("json")
        );
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(
            providers.get("claude").map(|p| p.kind()),
            Some(ProviderKind::Anthropic)
        );
        assert!(providers.get("other").is_none());
    }
}
