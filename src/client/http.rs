//! The HTTP side of the CLI: one client for a server, bearer token,
//! problem+json errors turned into readable messages, and retries with
//! backoff for network errors, 429 and 5xx. Bodies travel as the API's own
//! types (`crate::api::wire`): an answer that does not decode into its type
//! is an error naming the endpoint, never a silent default.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
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
    /// The server answered with success, but not with what this client
    /// reads there: client and server disagree about the API.
    #[error("{endpoint} answered something this client cannot read: {reason}")]
    Unexpected { endpoint: String, reason: String },
    /// What was asked cannot be sent, e.g. an option value the API has no word for.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => code.as_deref(),
            Self::Unreachable { .. } | Self::Unexpected { .. } | Self::Invalid { .. } => None,
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

/// A value as it may appear in a path segment or query string: every byte
/// but unreserved ASCII percent-encoded.
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The server's base URL as given, with `http://` when it names no scheme
/// (`127.0.0.1:8080`, `localhost:8080`).
pub fn base_url(server: &str) -> Result<String, ClientError> {
    let given = server.trim();
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(with_scheme.trim_end_matches('/').to_owned())
        }
        Ok(url) => Err(ClientError::Invalid {
            what: format!("the server URL {server:?}"),
            reason: format!(
                "use http:// or https:// and a host, not {}://",
                url.scheme()
            ),
        }),
        Err(e) => Err(ClientError::Invalid {
            what: format!("the server URL {server:?}"),
            reason: e.to_string(),
        }),
    }
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
            base: base_url(server)?,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` and decodes the answer as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, answer) = self.send_json::<(), T>(Method::GET, path, None).await?;
        Ok(answer)
    }

    /// Sends `body` (if any) as JSON and decodes the answer as `T`; answers
    /// the status too, for the calls where 200 and 201 mean different things.
    /// An answer the client has no use for decodes as `serde::de::IgnoredAny`.
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, T), ClientError> {
        let endpoint = || format!("{method} {}{path}", self.base);
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Invalid {
                what: format!("the body of {}", endpoint()),
                reason: e.to_string(),
            })?;
        let (status, text) = self.send(method.clone(), path, body).await?;
        let answer = decode(&text).map_err(|reason| ClientError::Unexpected {
            endpoint: endpoint(),
            reason,
        })?;
        Ok((status, answer))
    }

    /// Sends a request, retrying network errors, 429 and 5xx with
    /// exponential backoff and jitter (honouring `Retry-After`), and answers
    /// a success's status and body. Every call the CLI makes is safe to
    /// repeat: posting identical content answers the existing version,
    /// creating an existing prompt answers 409.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, String), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        let mut rate_limited_wait = Duration::ZERO;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            // Network trouble, worth a retry.
            let unreachable = |e: &reqwest::Error| {
                let reason = describe(e);
                let url = self.base.clone();
                (ClientError::Unreachable { url, reason }, None, false)
            };
            let (error, wait, rate_limited) = match request.send().await {
                Err(e) => unreachable(&e),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await;
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        match text {
                            Ok(text) => return Ok((status, text)),
                            // A body cut short is a network error, retried as one.
                            Err(e) => unreachable(&e),
                        }
                    } else {
                        let text = text.unwrap_or_default();
                        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        let error = problem(status, &value, &text);
                        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
                        if !(rate_limited || status.is_server_error()) {
                            return Err(error);
                        }
                        (error, retry_after, rate_limited)
                    }
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

/// Decodes an answer; an empty one (204, 304) reads as `null`.
fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| e.to_string())
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
            // A detail often is its one error's sentence: say it once.
            if msg.is_empty() || message.contains(msg) {
                continue;
            }
            message.push_str(&format!("; {field}: {msg}"));
        }
    }
    ClientError::Status {
        status: status.as_u16(),
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::JobResponse;

    /// Serves `body` as the 200 JSON answer to every request; answers the base URL.
    async fn serve(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(move || async move {
            ([(reqwest::header::CONTENT_TYPE, "application/json")], body)
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[test]
    fn a_server_without_a_scheme_is_reached_over_http() {
        for (given, base) in [
            ("127.0.0.1:18080", "http://127.0.0.1:18080"),
            ("localhost:8080/", "http://localhost:8080"),
            ("https://prompts.example.com", "https://prompts.example.com"),
            ("http://10.0.0.1:80/base/", "http://10.0.0.1:80/base"),
        ] {
            assert_eq!(base_url(given).as_deref().ok(), Some(base), "{given}");
        }
        for bad in ["ftp://host", "http://", ""] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_answer_of_the_wrong_shape_is_an_error_naming_the_endpoint() {
        let server = serve(r#"{"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#).await;
        let client = Client::new(&server, None).expect("client");
        let err = client
            .get_json::<JobResponse>("/v1/jobs/abc")
            .await
            .expect_err("a job without its fields");
        assert!(matches!(err, ClientError::Unexpected { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("GET {server}/v1/jobs/abc answered")),
            "{message}"
        );
        assert!(message.contains("missing field"), "{message}");
        assert_eq!(err.code(), None);
    }

    #[tokio::test]
    async fn an_answer_the_client_does_not_use_may_be_anything() {
        let server = serve("").await;
        let client = Client::new(&server, None).expect("client");
        let (status, _) = client
            .send_json::<_, serde::de::IgnoredAny>(Method::PUT, "/x", Some(&[1, 2]))
            .await
            .expect("ignored");
        assert_eq!(status, StatusCode::OK);
    }
}
