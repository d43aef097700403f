//! The HTTP side of the CLI: one client for a server, bearer token,
//! problem+json errors turned into readable messages, and retries with
//! backoff for network errors, 429 and 5xx.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How many times a request is sent at most after network errors and 5xx.
const ATTEMPTS: u32 = 4;
/// 429 is flow control, not failure: a push of a large folder may be told to
/// slow down many times, so it waits up to this long in all per request.
const MAX_RATE_LIMITED_WAIT: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest a `Retry-After` is waited for before giving up on the retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error; `message` is its problem detail.
    #[error("{message}")]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => code.as_deref(),
            Self::Unreachable { .. } => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A prompt name as one path segment (names are `[a-z0-9._/-]`).
pub fn segment(name: &str) -> String {
    name.replace('/', "%2F")
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("promptreg-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: server.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value), ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// Sends a request, retrying network errors, 429 and 5xx with
    /// exponential backoff and jitter (honouring `Retry-After`). Every call
    /// the CLI makes is safe to repeat: posting identical content answers
    /// the existing version, creating an existing prompt answers 409.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        let mut rate_limited_wait = Duration::ZERO;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let (error, wait, rate_limited) = match request.send().await {
                Err(e) => (
                    ClientError::Unreachable {
                        url: self.base.clone(),
                        reason: describe(&e),
                    },
                    None,
                    false,
                ),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        return Ok((status, value));
                    }
                    let error = problem(status, &value, &text);
                    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
                    if !(rate_limited || status.is_server_error()) {
                        return Err(error);
                    }
                    (error, retry_after, rate_limited)
                }
            };
            if !rate_limited {
                attempt += 1;
            }
            let backoff = FIRST_BACKOFF * 2u32.pow(attempt.min(6));
            let jitter =
                Duration::from_millis(rand::rng().random_range(0..=backoff.as_millis() as u64 / 2));
            let pause = wait.unwrap_or(backoff) + jitter;
            if rate_limited {
                rate_limited_wait += pause;
            }
            if attempt >= ATTEMPTS
                || rate_limited_wait > MAX_RATE_LIMITED_WAIT
                || wait.is_some_and(|w| w > MAX_RETRY_AFTER)
            {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// The most useful line of a reqwest error: its innermost cause.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        format!("timed out ({last})")
    } else {
        last
    }
}

fn problem(status: StatusCode, value: &Value, text: &str) -> ClientError {
    let code = value.get("code").and_then(Value::as_str).map(str::to_owned);
    let detail = value
        .get("detail")
        .and_then(Value::as_str)
        .or_else(|| value.get("title").and_then(Value::as_str));
    let mut message = match detail {
        Some(d) => format!(
            "{} {}: {d}",
            status.as_u16(),
            code.as_deref().unwrap_or("error")
        ),
        None if text.trim().is_empty() => format!("{status}"),
        None => format!("{status}: {}", text.trim()),
    };
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        for e in errors {
            let field = e.get("field").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            message.push_str(&format!("; {field}: {msg}"));
        }
    }
    ClientError::Status {
        status: status.as_u16(),
        code,
        message,
    }
}
