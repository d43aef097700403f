//! A fake LLM provider for tests: a real HTTP server on 127.0.0.1 that speaks
//! OpenAI Chat Completions (`/v1/chat/completions`), Anthropic Messages
//! (`/v1/messages`) and Gemini generateContent
//! (`/v1beta/models/{model}:generateContent`), so the real clients run end to
//! end without any real API. Each test scripts it: a FIFO of [`Reply`]s, then
//! a default responder; every request is recorded for assertions, and the
//! most requests ever in flight at once is counted. It must never decide
//! anything by wall-clock time beyond the delays a test asks for.

// A kit shared by several suites (providers now, evaluations later): not
// every suite uses every helper.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use promptreg::config::{ProviderConfig, Redacted};
use promptreg::providers::{ProviderKind, Providers};
use serde_json::{json, Value};

/// What the default responder answers until a test sets another.
pub const DEFAULT_TEXT: &str = "fake reply";
/// The usage every reply reports until [`FakeLlm::set_usage`].
pub const DEFAULT_INPUT_TOKENS: u32 = 10;
pub const DEFAULT_OUTPUT_TOKENS: u32 = 5;
/// The model [`FakeLlm::config`] makes the default.
pub const FAKE_MODEL: &str = "fake-model";

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with this text in the wire format's reply shape, with the usage
    /// set by [`FakeLlm::set_usage`].
    Text(String),
    /// This status with the wire format's error body, and `Retry-After:
    /// SECS` when given.
    Status(u16, Option<u64>),
    /// Waits, then answers the inner reply.
    Delay(Duration, Box<Reply>),
    /// 200 with a cut-off JSON body.
    Malformed,
    /// This status and JSON body exactly.
    Json(u16, Value),
    /// Waits for one permit of the gate (the test hands them out), then
    /// answers the inner reply: progress a test can watch step by step.
    Gated(Gate, Box<Reply>),
    /// The inner reply, reporting this usage (input, output tokens) instead
    /// of the fake's.
    Usage(u64, u64, Box<Reply>),
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn delayed(by: Duration, reply: Reply) -> Self {
        Self::Delay(by, Box::new(reply))
    }

    /// This text, reporting `input` and `output` tokens.
    pub fn counted(text: impl Into<String>, input: u64, output: u64) -> Self {
        Self::Usage(input, output, Box::new(Self::text(text)))
    }
}

/// Which API a request came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Openai,
    Anthropic,
    Gemini,
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub wire: Wire,
    /// The URL path as sent (still percent-encoded).
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body; `Null` if it was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The model asked for: the body's `model`, or Gemini's URL segment.
    pub fn model(&self) -> Option<String> {
        match self.wire {
            Wire::Gemini => self
                .path
                .rsplit('/')
                .next()
                .and_then(|s| s.strip_suffix(":generateContent"))
                .map(str::to_owned),
            Wire::Openai | Wire::Anthropic => self.body["model"].as_str().map(str::to_owned),
        }
    }

    /// The text of the last user turn in any wire format, so a default
    /// responder can answer each prompt on its own (an evaluation's items).
    pub fn last_user_text(&self) -> Option<String> {
        let turns = match self.wire {
            Wire::Openai | Wire::Anthropic => self.body["messages"].as_array(),
            Wire::Gemini => self.body["contents"].as_array(),
        }?;
        let turn = turns.iter().rev().find(|t| t["role"] == "user")?;
        match self.wire {
            Wire::Gemini => turn["parts"]
                .as_array()
                .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect()),
            Wire::Openai | Wire::Anthropic => turn["content"].as_str().map(str::to_owned),
        }
    }
}

type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

struct Script {
    queue: VecDeque<Reply>,
    default: Responder,
    /// Requests it picks wait for a permit of its gate before they are answered.
    hold: Option<(HoldWhen, Gate)>,
    latency: Duration,
    usage: (u64, u64),
    requests: Vec<RecordedRequest>,
}

struct Shared {
    script: Mutex<Script>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock has failed already.
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake; the server stops when the handle is dropped.
pub struct FakeLlm {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Serves on a random local port, answering [`DEFAULT_TEXT`] with the
    /// default usage until scripted otherwise.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                default: Arc::new(|_: &RecordedRequest| Reply::text(DEFAULT_TEXT)),
                hold: None,
                latency: Duration::ZERO,
                usage: (
                    u64::from(DEFAULT_INPUT_TOKENS),
                    u64::from(DEFAULT_OUTPUT_TOKENS),
                ),
                requests: Vec::new(),
            }),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1beta/models/{model_action}", post(gemini))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("fake LLM server");
        });
        Self {
            shared,
            addr,
            server,
        }
    }

    /// The host root, `http://127.0.0.1:PORT`: Anthropic's and Gemini's base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{root}/v1`, as OpenAI-style clients take it.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Queues a reply; queued replies are answered first, in order.
    pub fn push(&self, reply: Reply) {
        self.shared.script().queue.push_back(reply);
    }

    /// What to answer once the queue is empty.
    pub fn set_default(&self, respond: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        self.shared.script().default = Arc::new(respond);
    }

    /// Holds every request `which` picks until the returned gate lets it
    /// through (one request per permit), so a test decides when a job
    /// moves on without waiting on the clock.
    pub fn hold(&self, which: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static) -> Gate {
        let gate = Gate::default();
        self.shared.script().hold = Some((Arc::new(which), gate.clone()));
        gate
    }

    /// A delay before every reply (on top of any `Reply::Delay`).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.script().latency = latency;
    }

    /// The token counts text replies report.
    pub fn set_usage(&self, input_tokens: u64, output_tokens: u64) {
        self.shared.script().usage = (input_tokens, output_tokens);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.script().requests.len()
    }

    /// The most requests that were ever being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// A provider of `kind` pointed at this fake: key `test-key-KIND`,
    /// default model [`FAKE_MODEL`], a 10 s timeout and fast failure on
    /// anything but scripted trouble.
    pub fn config(&self, kind: ProviderKind) -> ProviderConfig {
        let mut config = ProviderConfig::new(kind);
        let name = kind_name(kind);
        config.base_url = Some(match kind {
            ProviderKind::Openai => self.openai_base_url(),
            ProviderKind::Anthropic | ProviderKind::Gemini => self.base_url(),
        });
        config.api_key_env = Some(format!("FAKE_{}_KEY", name.to_ascii_uppercase()));
        config.api_key = Some(Redacted(format!("test-key-{name}")));
        config.default_model = Some(FAKE_MODEL.to_owned());
        config.timeout = 10.0;
        config
    }

    /// Providers named `openai`, `anthropic` and `gemini`, all answered here.
    pub fn providers(&self) -> Providers {
        let configs: BTreeMap<String, ProviderConfig> = [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ]
        .into_iter()
        .map(|kind| (kind_name(kind).to_owned(), self.config(kind)))
        .collect();
        Providers::from_config(&configs).expect("providers for the fake")
    }
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gemini",
    }
}

/// Which requests [`FakeLlm::hold`] holds back.
type HoldWhen = Arc<dyn Fn(&RecordedRequest) -> bool + Send + Sync>;

/// Permits a test hands out one by one to let held requests ([`FakeLlm::hold`])
/// or gated replies ([`Reply::Gated`]) through.
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Gate {
    /// Closed: no request passes until [`Gate::open`].
    fn default() -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.permits, &other.permits)
    }
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `n` more held requests through.
    pub fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// How many requests are held now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    async fn pass(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a request in flight until dropped (also when the client hangs up).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&shared, Wire::Openai, &uri, headers, &body).await
}

async fn anthropic(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&shared, Wire::Anthropic, &uri, headers, &body).await
}

async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !model_action.ends_with(":generateContent") {
        return (StatusCode::NOT_FOUND, "only :generateContent is faked").into_response();
    }
    answer(&shared, Wire::Gemini, &uri, headers, &body).await
}

async fn answer(
    shared: &Shared,
    wire: Wire,
    uri: &Uri,
    headers: HeaderMap,
    body: &[u8],
) -> Response {
    let _in_flight = InFlight::enter(shared);
    let request = RecordedRequest {
        wire,
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    let (queued, default, latency, usage, hold) = {
        let mut script = shared.script();
        script.requests.push(request.clone());
        let queued = script.queue.pop_front();
        (
            queued,
            Arc::clone(&script.default),
            script.latency,
            script.usage,
            script.hold.clone(),
        )
    };
    if let Some((which, gate)) = hold {
        if which(&request) {
            gate.pass().await;
        }
    }
    // The responder runs outside the lock: it may call back into the fake.
    let mut reply = queued.unwrap_or_else(|| default(&request));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut usage = usage;
    let reply = loop {
        reply = match reply {
            Reply::Usage(input, output, inner) => {
                usage = (input, output);
                *inner
            }
            Reply::Delay(by, inner) => {
                tokio::time::sleep(by).await;
                *inner
            }
            Reply::Gated(gate, inner) => {
                gate.pass().await;
                *inner
            }
            other => break other,
        };
    };
    let model = request.model().unwrap_or_default();
    match reply {
        Reply::Text(text) => Json(success(wire, &model, &text, usage)).into_response(),
        Reply::Status(status, retry_after) => {
            let status = StatusCode::from_u16(status).expect("a valid status");
            let mut response = (status, Json(failure(wire, status))).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            response
        }
        Reply::Malformed => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"id": "cut-off", "choi"#,
        )
            .into_response(),
        Reply::Json(status, body) => {
            let status = StatusCode::from_u16(status).expect("a valid status");
            (status, Json(body)).into_response()
        }
        Reply::Delay(..) | Reply::Gated(..) | Reply::Usage(..) => {
            unreachable!("delays, gates and usage are passed above")
        }
    }
}

/// A successful reply in `wire`'s shape.
fn success(wire: Wire, model: &str, text: &str, (input, output): (u64, u64)) -> Value {
    match wire {
        Wire::Openai => json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": input, "completion_tokens": output,
                      "total_tokens": input + output}
        }),
        Wire::Anthropic => json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output}
        }),
        Wire::Gemini => json!({
            "candidates": [{"index": 0, "finishReason": "STOP",
                            "content": {"role": "model", "parts": [{"text": text}]}}],
            "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output,
                              "totalTokenCount": input + output},
            "modelVersion": model
        }),
    }
}

/// An error body in `wire`'s shape.
fn failure(wire: Wire, status: StatusCode) -> Value {
    let message = format!("scripted {status}");
    match wire {
        Wire::Openai => json!({"error": {"message": message, "type": "fake_error", "code": null}}),
        Wire::Anthropic => {
            json!({"type": "error", "error": {"type": "fake_error", "message": message}})
        }
        Wire::Gemini => {
            json!({"error": {"code": status.as_u16(), "message": message, "status": "FAKE"}})
        }
    }
}
