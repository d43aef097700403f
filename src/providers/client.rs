//! What every provider client shares, in one place: the HTTP connection pool,
//! auth headers, the concurrency limit, per-attempt timeouts, retries with
//! backoff, error replies, token cost. The clients only build URLs and bodies
//! and parse successful replies; this module never looks inside either.
//!
//! Retry policy: 429, 5xx, timeouts and network errors are retried up to
//! `max_retries` times, waiting `Retry-After` when the reply has one (at most
//! [`MAX_RETRY_AFTER`]) and otherwise an exponential backoff with full jitter.
//! Other 4xx are the request's own fault and fail at once. A 200 whose body
//! cannot be parsed is retried once, not more: such replies are usually a
//! proxy's or load balancer's hiccup (an HTML page, a cut-off body) that a
//! second try gets past, while a server that keeps answering them will not
//! change its mind, and each try may be billed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use tracing::Instrument;

use super::{Completion, CompletionRequest, ProviderError, ProviderKind, Usage};
use crate::config::{ModelPrice, ProviderConfig};
use crate::telemetry::metrics::{self, ProviderOutcome};
use crate::telemetry::trace;

/// The first retry waits up to this long; each further one up to twice that.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// The longest a `Retry-After` is honoured; longer asks are waited this long.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Bigger replies are refused rather than buffered: a chat reply is far smaller.
const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;
/// How much of an error reply's text goes into an error message.
const MAX_ERROR_TEXT: usize = 300;

/// One pool for all providers: reqwest pools connections per host anyway.
/// Redirects are not followed, so auth headers never travel to another host.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("promptreg/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// How a wire format sends its key.
pub(crate) enum Auth {
    /// `Authorization: Bearer KEY`, only when a key is configured: local
    /// OpenAI-compatible servers take none.
    OptionalBearer,
    /// The key as the value of this header; calls without a key fail.
    RequiredHeader(&'static str),
}

/// A successful reply's content, as each client parses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub text: String,
    pub usage: Usage,
    /// The model that answered, as the reply names it (often a dated snapshot).
    pub model: Option<String>,
}

/// Reads a wire format's successful reply: its text and usage.
pub type ReplyParser = fn(&[u8]) -> Result<Parsed, ProviderError>;

/// One completion to ask for: where to POST what, for which model, and how
/// to read the reply.
pub(crate) struct Call {
    pub url: String,
    pub body: Value,
    pub model: String,
    pub parse: ReplyParser,
}

/// One configured provider's connection settings and limits.
pub(crate) struct Core {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub default_model: Option<String>,
    /// Auth and any fixed headers the format needs.
    headers: HeaderMap,
    /// Set when the format needs a key and none was found: its variable.
    missing_key: Option<String>,
    /// To scrub from error text, in case a reply echoes it.
    secret: Option<String>,
    prices: BTreeMap<String, ModelPrice>,
    http: reqwest::Client,
    slots: Semaphore,
    timeout: Duration,
    max_retries: u32,
}

impl Core {
    pub fn new(
        name: &str,
        config: &ProviderConfig,
        http: reqwest::Client,
        auth: Auth,
        fixed_headers: &[(&'static str, &'static str)],
    ) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        for &(header, value) in fixed_headers {
            headers.insert(header, HeaderValue::from_static(value));
        }
        let key = config
            .api_key
            .as_ref()
            .map(|k| k.0.trim())
            .filter(|k| !k.is_empty());
        let env = config.key_env().unwrap_or("api_key_env");
        let unusable = || {
            anyhow::anyhow!(
                "providers.{name}: the API key in {env} cannot be sent as an HTTP header"
            )
        };
        let mut missing_key = None;
        match (auth, key) {
            (Auth::OptionalBearer, Some(key)) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| unusable())?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            (Auth::OptionalBearer, None) => {}
            (Auth::RequiredHeader(header), Some(key)) => {
                let mut value = HeaderValue::from_str(key).map_err(|_| unusable())?;
                value.set_sensitive(true);
                headers.insert(HeaderName::from_static(header), value);
            }
            (Auth::RequiredHeader(_), None) => missing_key = Some(env.to_owned()),
        }
        Ok(Self {
            name: name.to_owned(),
            kind: config.kind,
            base_url: config.base_url(),
            default_model: config.default_model.clone(),
            headers,
            missing_key,
            secret: key.map(str::to_owned),
            prices: config.prices.clone(),
            http,
            slots: Semaphore::new(config.max_concurrency),
            timeout: Duration::from_secs_f64(config.timeout),
            max_retries: config.max_retries,
        })
    }

    /// The model a request calls: its own, else `params["model"]`, else the
    /// provider's default. Fails first if the key is missing, since no model
    /// would help then.
    pub fn prepare(&self, request: &CompletionRequest) -> Result<String, ProviderError> {
        if let Some(env) = &self.missing_key {
            return Err(ProviderError::MissingApiKey { env: env.clone() });
        }
        let named = |m: &&str| !m.trim().is_empty();
        request
            .model
            .as_deref()
            .filter(named)
            .or_else(|| {
                request
                    .params
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(named)
            })
            .or(self.default_model.as_deref())
            .map(str::to_owned)
            .ok_or(ProviderError::NoModel)
    }

    /// The request's parameters as the body builders take them. `stream` is
    /// dropped: the clients read one JSON reply, never an event stream.
    pub fn params(&self, request: &CompletionRequest) -> Map<String, Value> {
        let mut params = request.params.clone();
        params.remove("stream");
        params
    }

    /// Makes `call` under the provider's limits and retry policy (see the
    /// module docs). One client span per call, with OpenTelemetry's GenAI
    /// attributes (never the prompt or the reply); each attempt is counted
    /// in the metrics.
    pub async fn call(
        &self,
        call: Call,
        meter: Option<&super::CallMeter>,
    ) -> Result<Completion, ProviderError> {
        let model = call.model.as_str();
        let span = tracing::info_span!(
            "chat",
            otel.name = format_args!("chat {model}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = self.kind.otel_name(),
            gen_ai.request.model = model,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            promptreg.provider = self.name.as_str(),
            promptreg.cost_usd = tracing::field::Empty,
            promptreg.attempts = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result = self
            .call_with_retries(call, meter)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(completion) => {
                let usage = completion.usage;
                span.record("gen_ai.usage.input_tokens", to_i64(usage.input_tokens));
                span.record("gen_ai.usage.output_tokens", to_i64(usage.output_tokens));
                span.record("promptreg.attempts", completion.attempts);
                if let Some(cost) = completion.cost_usd {
                    span.record("promptreg.cost_usd", cost);
                }
                metrics::provider_usage(
                    &self.name,
                    self.model_label(&completion.model),
                    usage.input_tokens,
                    usage.output_tokens,
                    completion.cost_usd,
                );
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error.code());
            }
        }
        result
    }

    /// The `model` label: a model this provider's config names, else
    /// `other`, so a request cannot mint label values.
    fn model_label<'a>(&self, model: &'a str) -> &'a str {
        if self.default_model.as_deref() == Some(model) || self.prices.contains_key(model) {
            model
        } else {
            "other"
        }
    }

    async fn call_with_retries(
        &self,
        call: Call,
        meter: Option<&super::CallMeter>,
    ) -> Result<Completion, ProviderError> {
        // Held across retries and backoff too: the limit is on calls, so a
        // struggling provider is not handed more work while it recovers.
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProviderError::Network("the provider client is shut down".into()))?;
        let mut attempts: u32 = 0;
        let mut retried_malformed = false;
        loop {
            if meter.is_some_and(|meter| !meter.admit()) {
                return Err(ProviderError::BudgetExhausted);
            }
            attempts += 1;
            let started = Instant::now();
            let outcome = self.attempt(&call).await;
            metrics::provider_attempt(
                &self.name,
                self.model_label(&call.model),
                attempt_outcome(&outcome),
                started.elapsed(),
            );
            let (error, retry_after) = match outcome {
                Ok(parsed) => {
                    if let Some(answered) = &parsed.model {
                        tracing::Span::current().record("gen_ai.response.model", answered.as_str());
                    }
                    let latency_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let cost_usd = self.cost(&call.model, parsed.usage);
                    return Ok(Completion {
                        text: parsed.text,
                        model: call.model,
                        usage: parsed.usage,
                        cost_usd,
                        latency_ms,
                        attempts,
                    });
                }
                Err(failure) => failure,
            };
            let malformed = matches!(error, ProviderError::Malformed(_));
            let again = attempts <= self.max_retries
                && (error.retryable() || (malformed && !retried_malformed));
            if !again {
                return Err(error);
            }
            retried_malformed |= malformed;
            let wait = match retry_after {
                Some(wait) => wait.min(MAX_RETRY_AFTER),
                None => backoff(attempts - 1, &mut rand::rng()),
            };
            tracing::debug!(
                provider = %self.name,
                attempt = attempts,
                code = error.code(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying a provider call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One try: the error and the wait the reply asked for, on failure.
    async fn attempt(&self, call: &Call) -> Result<Parsed, (ProviderError, Option<Duration>)> {
        let mut headers = self.headers.clone();
        trace::inject_current(&mut headers);
        let exchange = async {
            let response = self
                .http
                .post(&call.url)
                .headers(headers)
                .json(&call.body)
                .send()
                .await
                .map_err(|e| self.failure(ReadError::Http(e)))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            let bytes = read_body(response).await.map_err(|e| self.failure(e))?;
            Ok::<_, ProviderError>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = match tokio::time::timeout(self.timeout, exchange).await
        {
            Err(_elapsed) => return Err((ProviderError::Timeout, None)),
            Ok(result) => result.map_err(|e| (e, None))?,
        };
        if status.is_success() {
            return (call.parse)(&bytes).map_err(|e| (e, None));
        }
        let error = match status {
            StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited {
                retry_after_secs: retry_after.map(|d| d.as_secs()),
            },
            s if s.is_server_error() => ProviderError::Server {
                status: s.as_u16(),
                message: self.scrub(error_message(&bytes)),
            },
            s => ProviderError::Rejected {
                status: s.as_u16(),
                message: self.scrub(error_message(&bytes)),
            },
        };
        Err((error, retry_after))
    }

    fn failure(&self, error: ReadError) -> ProviderError {
        match error {
            ReadError::TooLarge => ProviderError::Malformed(format!(
                "the reply is larger than {MAX_REPLY_BYTES} bytes"
            )),
            // reqwest's own connect timeout: a timeout, like the per-attempt one.
            ReadError::Http(e) if e.is_timeout() => ProviderError::Timeout,
            ReadError::Http(e) => ProviderError::Network(self.scrub(describe(&e))),
        }
    }

    /// `text` with the API key, should a reply or error echo it, masked.
    fn scrub(&self, text: String) -> String {
        match &self.secret {
            Some(secret) if text.contains(secret.as_str()) => text.replace(secret.as_str(), "***"),
            _ => text,
        }
    }

    fn cost(&self, model: &str, usage: Usage) -> Option<f64> {
        self.prices.get(model).map(|price| cost(price, usage))
    }
}

/// How an attempt ended, as `promptreg_provider_requests_total{outcome}` says.
fn attempt_outcome(outcome: &Result<Parsed, (ProviderError, Option<Duration>)>) -> ProviderOutcome {
    match outcome {
        Ok(_) => ProviderOutcome::Ok,
        Err((ProviderError::RateLimited { .. }, _)) => ProviderOutcome::RateLimited,
        Err((ProviderError::Server { .. }, _)) => ProviderOutcome::ServerError,
        Err((ProviderError::Timeout, _)) => ProviderOutcome::Timeout,
        Err(_) => ProviderOutcome::ClientError,
    }
}

fn to_i64(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

pub(crate) fn cost(price: &ModelPrice, usage: Usage) -> f64 {
    // Token counts stay far below 2^53, so the conversion is exact.
    (usage.input_tokens as f64 * price.input_per_million
        + usage.output_tokens as f64 * price.output_per_million)
        / 1_000_000.0
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The most useful line of a reqwest error: its innermost cause.
fn describe(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// The wait before retry number `retry + 1` (0-based): uniform in
/// `[0, min(cap, base · 2^retry)]` ("full jitter"), so clients that failed
/// together do not come back together.
pub(crate) fn backoff(retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = backoff_ceiling(retry);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=millis))
}

fn backoff_ceiling(retry: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(2u32.saturating_pow(retry))
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP))
}

/// A `Retry-After` value: delta-seconds, or an HTTP date (a wait until then,
/// zero if past). `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too big for u64: as long as anyone would wait.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The human part of an error reply: `error.message` (OpenAI, Anthropic,
/// Gemini), `message` or `error` as a string, else the start of the text.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        let found = value
            .pointer("/error/message")
            .or_else(|| value.get("message"))
            .or_else(|| value.get("error"))
            .and_then(Value::as_str);
        if let Some(message) = found {
            return truncate(message);
        }
    }
    let text = String::from_utf8_lossy(bytes);
    match text.trim() {
        "" => "(no details)".to_owned(),
        text => truncate(text),
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Reads a successful reply as JSON, or says why it is not.
pub(crate) fn json_reply(bytes: &[u8]) -> Result<Value, ProviderError> {
    serde_json::from_slice(bytes).map_err(|e| ProviderError::Malformed(format!("not JSON: {e}")))
}

/// A token count at `pointer`, 0 when absent: usage is informative, so a
/// server that omits it (some local ones) still answers.
pub(crate) fn count(reply: &Value, pointer: &str) -> u64 {
    reply.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// The model name a reply reports at `pointer`, if any.
pub(crate) fn reply_model(reply: &Value, pointer: &str) -> Option<String> {
    reply
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_an_exponential_ceiling_and_the_cap() {
        let mut rng = rand::rng();
        let ceilings = [250, 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000];
        for (retry, ceiling) in ceilings.into_iter().enumerate() {
            let retry = u32::try_from(retry).expect("small");
            assert_eq!(backoff_ceiling(retry), Duration::from_millis(ceiling));
            for _ in 0..200 {
                assert!(backoff(retry, &mut rng) <= Duration::from_millis(ceiling));
            }
        }
        assert_eq!(backoff_ceiling(40), BACKOFF_CAP);
        assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn backoff_is_jittered() {
        let mut rng = rand::rng();
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(3, &mut rng)).collect();
        assert!(waits.len() > 1, "{waits:?}");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let cases = [
            ("3", Some(Duration::from_secs(3))),
            (" 0 ", Some(Duration::ZERO)),
            ("120", Some(Duration::from_secs(120))),
            (
                "99999999999999999999999",
                Some(Duration::from_secs(u64::MAX)),
            ),
            (
                "Wed, 01 Jan 2025 00:00:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Tue, 31 Dec 2024 23:00:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn error_messages_come_from_each_apis_error_shape() {
        let cases = [
            (
                r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#,
                "bad model",
            ),
            (
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                "Overloaded",
            ),
            (
                r#"{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}"#,
                "API key not valid",
            ),
            (r#"{"error":"model not found"}"#, "model not found"),
            ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
            ("", "(no details)"),
        ];
        for (body, expected) in cases {
            assert_eq!(error_message(body.as_bytes()), expected, "{body}");
        }
        let long = "é".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_ERROR_TEXT + 1
        );
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let price = ModelPrice {
            input_per_million: 2.5,
            output_per_million: 10.0,
        };
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 500,
        };
        assert!((cost(&price, usage) - 0.0075).abs() < 1e-12);
    }
}
