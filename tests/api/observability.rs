//! Observability through the real binary: the Prometheus scrape after a known
//! sequence of requests, OpenTelemetry spans received by an OTLP/HTTP
//! collector on 127.0.0.1, and logs that carry the trace id.
//!
//! Each test runs its own `promptreg serve` process: metrics and the tracer
//! are process-wide, so only a process of its own gives exact counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, Reply, FAKE_MODEL};
use crate::support::ADMIN_KEY;

/// A prompt name that must never show up as a metric label value.
const PROMPT: &str = "obs/secret-name-7f3a";
const PROMPT_PATH: &str = "/v1/prompts/obs%2Fsecret-name-7f3a";
/// Template text and a variable value that must never reach a span.
const TEMPLATE: &str = "TEMPLATE-TEXT-91c2 says hello to {{who}}";
const VARIABLE: &str = "VARIABLE-VALUE-0d4e";
const VERSION_ROUTE: &str = "/v1/prompts/{name}/versions/{ref}";

/// A `promptreg serve` child process on a free local port.
struct Server {
    base: String,
    http: reqwest::Client,
    stdout: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the binary with `database_url`, the fake LLM as provider
    /// `fake`, one worker, JSON logs and `env`; waits until it answers.
    async fn start(database_url: &str, fake: &FakeLlm, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("promptreg.toml");
        std::fs::write(
            &config,
            format!(
                r#"
database_url = "{database_url}"
bind = "127.0.0.1:{port}"
init_admin_key = "{ADMIN_KEY}"
log_format = "json"
log_level = "info"

[worker]
count = 1
poll_interval_ms = 50

[providers.fake]
kind = "openai"
base_url = "{base}"
default_model = "{FAKE_MODEL}"
max_retries = 3
timeout = 10
[providers.fake.prices."{FAKE_MODEL}"]
input_per_million = 1.0
output_per_million = 2.0
"#,
                base = fake.openai_base_url()
            ),
        )
        .expect("write config");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_promptreg"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start promptreg serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = child.stdout.take().expect("piped stdout");
        let sink = stdout.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(lines).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            stdout,
            _child: child,
            _dir: dir,
        };
        for _ in 0..300 {
            if let Ok(response) = server.http.get(server.url("/healthz")).send().await {
                if response.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("promptreg serve did not answer within 30 s");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends an authenticated request, with `traceparent` when given.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        traceparent: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn logs(&self) -> Vec<String> {
        self.stdout.lock().expect("log lock").clone()
    }
}

/// Seeds [`PROMPT`] at 1.0.0 with label `production`, and a dataset of two
/// items for evaluations.
async fn seed(server: &Server) {
    let post = |path: &'static str, body: Value| async move {
        let (status, answer) = server.call(Method::POST, path, Some(body), None).await;
        assert!(status < 300, "{path}: {status} {answer}");
    };
    post("/v1/prompts", json!({"name": PROMPT})).await;
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("{PROMPT_PATH}/versions"),
            Some(json!({"template": TEMPLATE, "labels": ["production"]})),
            None,
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    post("/v1/datasets", json!({"name": "obs-items"})).await;
    let (status, answer) = server
        .call(
            Method::POST,
            "/v1/datasets/obs-items/items",
            Some(json!([
                {"input": {"who": VARIABLE}, "expected": "fake reply"},
                {"input": {"who": "you"}, "expected": "fake reply"}
            ])),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Queues an evaluation of [`PROMPT`]@production on the seeded dataset;
/// returns the 202's body.
async fn start_evaluation(server: &Server, traceparent: Option<&str>) -> Value {
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/evaluations",
            Some(json!({
                "prompt": PROMPT, "ref": "production", "dataset": "obs-items",
                "provider": "fake", "metrics": ["exact_match"]
            })),
            traceparent,
        )
        .await;
    assert_eq!(status, 202, "{created}");
    created
}

/// Starts an evaluation (see [`start_evaluation`]) and waits until its job
/// has ended; returns its final state.
async fn evaluate(server: &Server, traceparent: Option<&str>) -> Value {
    let created = start_evaluation(server, traceparent).await;
    let id = created["id"].as_str().expect("evaluation id").to_owned();
    for _ in 0..300 {
        let (_, evaluation) = server
            .call(Method::GET, &format!("/v1/evaluations/{id}"), None, None)
            .await;
        if matches!(
            evaluation["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return evaluation;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("evaluation {id} did not end within 30 s");
}

/// Parsed exposition text: every sample as (name, labels, value).
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    async fn take(server: &Server) -> (Self, String) {
        let response = server
            .http
            .get(server.url("/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.expect("metrics text");
        let samples = parse_exposition(&text);
        (Self { samples }, text)
    }

    /// The value of the one sample of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {wanted:?}: {found:?}");
        found[0]
    }

    /// Every label set `name` has.
    fn label_names(&self, name: &str) -> BTreeSet<Vec<String>> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| l.keys().cloned().collect())
            .collect()
    }
}

/// Parses the Prometheus text format (0.0.4) strictly: every sample line is
/// `name{label="value",…} value`, label values quoted with `\\`, `\"` and
/// `\n` escapes, and every sample belongs to a family declared by a `# TYPE`
/// line before it. Panics, naming the line, on anything else.
fn parse_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut families: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let name_ok = |name: &str, colons: bool| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                assert_eq!(words.len(), 3, "bad TYPE line: {line}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&words[2]),
                    "bad type: {line}"
                );
                let fresh = families.insert(words[1].to_owned(), words[2].to_owned());
                assert!(fresh.is_none(), "family declared twice: {line}");
            }
            continue;
        }
        let (name, rest) = line
            .find(['{', ' '])
            .map(|at| line.split_at(at))
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(name_ok(name, true), "bad metric name: {line}");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = inner
                    .find('=')
                    .unwrap_or_else(|| panic!("bad labels: {line}"));
                let key = &inner[..eq];
                assert!(name_ok(key, false), "bad label name {key:?}: {line}");
                let mut chars = inner[eq + 1..].char_indices();
                assert_eq!(
                    chars.next().map(|c| c.1),
                    Some('"'),
                    "unquoted value: {line}"
                );
                let mut value = String::new();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => panic!("bad escape {other:?}: {line}"),
                        },
                        Some((at, '"')) => break eq + 1 + at + 1,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated value: {line}"),
                    }
                };
                assert!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "repeated label: {line}"
                );
                inner = &inner[end..];
                inner = inner.strip_prefix(',').unwrap_or(inner);
            }
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert!(
            (1..=2).contains(&fields.len()) && rest.starts_with(' '),
            "bad value part: {line}"
        );
        let value = match fields[0] {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| families.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(families.contains_key(family), "no TYPE before: {line}");
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn names(list: &[&str]) -> BTreeSet<Vec<String>> {
    [list.iter().map(|s| (*s).to_owned()).collect()].into()
}

async fn metrics_count_a_known_sequence_of_requests(url: String) {
    let fake = FakeLlm::start().await;
    let server = Server::start(&url, &fake, &[]).await;
    seed(&server).await;
    let version_path = format!("{PROMPT_PATH}/versions/production");
    for _ in 0..3 {
        let (status, _) = server.call(Method::GET, &version_path, None, None).await;
        assert_eq!(status, 200);
    }
    let (status, _) = server
        .call(
            Method::GET,
            "/v1/prompts/no-such-prompt/versions/production",
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server.call(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(status, 404);
    let weird = Method::from_bytes(b"BREW").expect("method");
    let (status, _) = server.call(weird, "/healthz", None, None).await;
    assert_eq!(status, 405);
    for _ in 0..2 {
        let (status, answer) = server
            .call(
                Method::POST,
                &format!("{PROMPT_PATH}/render"),
                Some(json!({"variables": {"who": VARIABLE}})),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    // One 500 first, then the two items answer.
    fake.push(Reply::Status(500, None));
    let evaluation = evaluate(&server, None).await;
    assert_eq!(evaluation["status"], "succeeded", "{evaluation}");
    // Reading a finished job does not finish it again.
    let job_path = format!(
        "/v1/jobs/{}",
        evaluation["job_id"].as_str().expect("job id")
    );
    for _ in 0..2 {
        let (status, job) = server.call(Method::GET, &job_path, None, None).await;
        assert_eq!((status, job["status"].as_str()), (200, Some("succeeded")));
    }

    let (scrape, text) = Scrape::take(&server).await;
    assert!(
        !text.contains("secret-name"),
        "a prompt name leaked:\n{text}"
    );
    assert!(!text.contains(VARIABLE), "a variable leaked:\n{text}");

    // HTTP: route templates, the 404s, the unknown method.
    assert_eq!(
        scrape.label_names("promptreg_http_requests_total"),
        names(&["method", "route", "status"])
    );
    let requests = |method: &str, route: &str, status: &str| {
        scrape.value(
            "promptreg_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("GET", VERSION_ROUTE, "200"), 3.0);
    assert_eq!(requests("GET", VERSION_ROUTE, "404"), 1.0);
    assert_eq!(requests("GET", "unmatched", "404"), 1.0);
    assert_eq!(requests("other", "/healthz", "405"), 1.0);
    assert_eq!(requests("POST", "/v1/prompts/{name}/render", "200"), 2.0);
    assert_eq!(
        scrape.label_names("promptreg_http_request_duration_seconds_bucket"),
        names(&["le", "method", "route"])
    );
    assert_eq!(
        scrape.value(
            "promptreg_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", VERSION_ROUTE)]
        ),
        4.0
    );
    let buckets: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|(n, l, _)| {
            n == "promptreg_http_request_duration_seconds_bucket"
                && l.get("route").map(String::as_str) == Some(VERSION_ROUTE)
        })
        .filter_map(|(_, l, _)| l.get("le").and_then(|le| le.parse().ok()))
        .collect();
    assert!(
        buckets.contains(&0.0001) && buckets.contains(&10.0),
        "{buckets:?}"
    );

    // Caches: the first label read misses, the next ones hit; the second
    // render reuses the compiled template; the key is verified once.
    let cache = |cache: &str, result: &str| {
        scrape.value(
            "promptreg_cache_requests_total",
            &[("cache", cache), ("result", result)],
        )
    };
    assert!(cache("label", "miss") >= 1.0);
    assert!(cache("label", "hit") >= 2.0);
    assert_eq!(cache("template", "miss"), 1.0);
    assert!(cache("template", "hit") >= 1.0);
    assert_eq!(cache("key", "miss"), 1.0);
    assert!(cache("key", "hit") >= 10.0);

    // Database.
    for state in ["idle", "active"] {
        scrape.value("promptreg_db_pool_connections", &[("state", state)]);
    }
    assert_eq!(
        scrape.value(
            "promptreg_db_query_duration_seconds_count",
            &[("operation", "create_version")]
        ),
        1.0
    );
    assert_eq!(
        scrape.label_names("promptreg_db_query_duration_seconds_bucket"),
        names(&["le", "operation"])
    );

    // Jobs: none left queued or running, one finished.
    for status in ["queued", "running"] {
        assert_eq!(
            scrape.value(
                "promptreg_jobs",
                &[("kind", "evaluation"), ("status", status)]
            ),
            0.0
        );
    }
    let finished = |status: &str| {
        scrape.value(
            "promptreg_jobs_finished_total",
            &[("kind", "evaluation"), ("status", status)],
        )
    };
    assert_eq!(finished("succeeded"), 1.0);
    assert_eq!(finished("failed"), 0.0);

    // Providers: every attempt, the retry included; tokens and cost.
    let provider = [("provider", "fake"), ("model", FAKE_MODEL)];
    let attempts = |outcome: &str| {
        let mut labels = provider.to_vec();
        labels.push(("outcome", outcome));
        scrape.value("promptreg_provider_requests_total", &labels)
    };
    assert_eq!(attempts("ok"), 2.0);
    assert_eq!(attempts("server_error"), 1.0);
    assert_eq!(
        scrape.value(
            "promptreg_provider_request_duration_seconds_count",
            &provider
        ),
        3.0
    );
    let tokens = |direction: &str| {
        let mut labels = provider.to_vec();
        labels.push(("direction", direction));
        scrape.value("promptreg_provider_tokens_total", &labels)
    };
    assert_eq!(
        tokens("input"),
        2.0 * f64::from(crate::fake_llm::DEFAULT_INPUT_TOKENS)
    );
    assert_eq!(
        tokens("output"),
        2.0 * f64::from(crate::fake_llm::DEFAULT_OUTPUT_TOKENS)
    );
    let cost = scrape.value("promptreg_provider_cost_usd_total", &provider);
    let expected = 2.0
        * (f64::from(crate::fake_llm::DEFAULT_INPUT_TOKENS)
            + 2.0 * f64::from(crate::fake_llm::DEFAULT_OUTPUT_TOKENS))
        / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");

    assert_eq!(
        scrape.value(
            "promptreg_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

async fn a_cancelled_job_is_counted_once(url: String) {
    let fake = FakeLlm::start().await;
    fake.set_latency(Duration::from_secs(3));
    let server = Server::start(&url, &fake, &[]).await;
    seed(&server).await;
    let created = start_evaluation(&server, None).await;
    let job_path = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job id"));
    let (status, job) = server
        .call(Method::POST, &format!("{job_path}/cancel"), None, None)
        .await;
    assert_eq!(status, 200, "{job}");
    let mut ended = false;
    for _ in 0..300 {
        let (_, job) = server.call(Method::GET, &job_path, None, None).await;
        if job["status"] == "cancelled" {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the job was not cancelled within 30 s");
    for _ in 0..2 {
        server.call(Method::GET, &job_path, None, None).await;
    }
    let (scrape, _) = Scrape::take(&server).await;
    let finished = |status: &str| {
        scrape.value(
            "promptreg_jobs_finished_total",
            &[("kind", "evaluation"), ("status", status)],
        )
    };
    assert_eq!(finished("cancelled"), 1.0);
    assert_eq!(finished("succeeded"), 0.0);
}

async fn metrics_can_require_an_admin_key(url: String) {
    let fake = FakeLlm::start().await;
    let server = Server::start(&url, &fake, &[("PROMPTREG_METRICS__REQUIRE_AUTH", "true")]).await;
    let anonymous = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(anonymous.status(), 401);
    let (status, text) = server.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(text
        .as_str()
        .is_some_and(|t| t.contains("promptreg_build_info")));
    let (_, key) = server
        .call(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "reader", "scopes": ["read"]})),
            None,
        )
        .await;
    let reader = key["key"].as_str().expect("the new key");
    let as_reader = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(reader)
        .send()
        .await
        .expect("scrape");
    assert_eq!(as_reader.status(), 403);
}

async fn metrics_can_be_turned_off(url: String) {
    let fake = FakeLlm::start().await;
    let server = Server::start(&url, &fake, &[("PROMPTREG_METRICS__ENABLED", "false")]).await;
    let (status, body) = server.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 404, "{body}");
}

/// An OTLP/HTTP trace receiver on 127.0.0.1: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    /// The `service.name` of every export's resources.
    services: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let collector = Self::default();
        let (spans, services) = (collector.spans.clone(), collector.services.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let (spans, services) = (spans.clone(), services.clone());
                async move {
                    let request = ExportTraceServiceRequest::decode(body)
                        .expect("an OTLP protobuf trace export");
                    let mut spans = spans.lock().expect("spans lock");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| kv.value.as_ref()?.value.clone());
                        if let Some(AnyValue::StringValue(name)) = service {
                            services.lock().expect("services lock").push(name);
                        }
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, addr)
    }

    /// Waits until `found` finds what it looks for among the spans so far.
    async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
        for _ in 0..150 {
            if let Some(hit) = found(&self.spans.lock().expect("spans lock")) {
                return hit;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names: Vec<String> = self
            .spans
            .lock()
            .expect("spans lock")
            .iter()
            .map(|s| s.name.clone())
            .collect();
        panic!("no {what} within 15 s; spans: {names:?}");
    }
}

fn attributes(span: &Span) -> HashMap<String, AnyValue> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.clone()?;
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn string(value: Option<&AnyValue>) -> Option<&str> {
    match value {
        Some(AnyValue::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(value: Option<&AnyValue>) -> Option<i64> {
    match value {
        Some(AnyValue::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// A caller's W3C trace context: its trace id and span id, in hex.
struct Caller {
    trace_id: String,
    span_id: String,
}

impl Caller {
    fn new() -> Self {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let span_id = trace_id[..16].chars().rev().collect();
        Self { trace_id, span_id }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

async fn traces_follow_requests_into_the_store_jobs_and_providers(url: String) {
    let fake = FakeLlm::start().await;
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let server = Server::start(
        &url,
        &fake,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "promptreg-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    seed(&server).await;

    // A read with the caller's trace context: the server span joins it.
    let read = Caller::new();
    let path = format!("{PROMPT_PATH}/versions/production");
    let (status, _) = server
        .call(Method::GET, &path, None, Some(&read.traceparent()))
        .await;
    assert_eq!(status, 200);
    let server_span = collector
        .wait_for("server span in the caller's trace", |spans| {
            spans
                .iter()
                .find(|s| hex(&s.trace_id) == read.trace_id && s.kind == SpanKind::Server as i32)
                .cloned()
        })
        .await;
    assert_eq!(hex(&server_span.parent_span_id), read.span_id);
    assert_eq!(server_span.name, format!("GET {VERSION_ROUTE}"));
    let attrs = attributes(&server_span);
    assert_eq!(string(attrs.get("http.request.method")), Some("GET"));
    assert_eq!(string(attrs.get("http.route")), Some(VERSION_ROUTE));
    assert_eq!(string(attrs.get("url.path")), Some(path.as_str()));
    assert_eq!(int(attrs.get("http.response.status_code")), Some(200));
    // The label was just set, so the read went to the store: a child span.
    let store_span = collector
        .wait_for("store span under the server span", |spans| {
            spans
                .iter()
                .find(|s| s.parent_span_id == server_span.span_id && s.name == "get_version")
                .cloned()
        })
        .await;
    assert_eq!(store_span.kind, SpanKind::Client as i32);
    assert_eq!(
        string(attributes(&store_span).get("db.operation.name")),
        Some("get_version")
    );

    // A render: its span names the prompt, label and version.
    let render = Caller::new();
    let (status, _) = server
        .call(
            Method::POST,
            &format!("{PROMPT_PATH}/render"),
            Some(json!({"variables": {"who": VARIABLE}})),
            Some(&render.traceparent()),
        )
        .await;
    assert_eq!(status, 200);
    let render_span = collector
        .wait_for("render span", |spans| {
            spans
                .iter()
                .find(|s| hex(&s.trace_id) == render.trace_id && s.name == "render")
                .cloned()
        })
        .await;
    let attrs = attributes(&render_span);
    assert_eq!(string(attrs.get("promptreg.prompt")), Some(PROMPT));
    assert_eq!(string(attrs.get("promptreg.label")), Some("production"));
    assert_eq!(string(attrs.get("promptreg.version")), Some("1.0.0"));

    // An evaluation: the job's span links to the request that queued it,
    // items are its children, and each provider call is a GenAI client span
    // whose context the provider received.
    let queue = Caller::new();
    let evaluation = evaluate(&server, Some(&queue.traceparent())).await;
    assert_eq!(evaluation["status"], "succeeded", "{evaluation}");
    let queued_by = collector
        .wait_for("server span of the evaluation request", |spans| {
            spans
                .iter()
                .find(|s| hex(&s.trace_id) == queue.trace_id && s.kind == SpanKind::Server as i32)
                .cloned()
        })
        .await;
    let job_span = collector
        .wait_for("job span", |spans| {
            spans.iter().find(|s| s.name == "job evaluation").cloned()
        })
        .await;
    assert!(
        job_span
            .links
            .iter()
            .any(|l| l.trace_id == queued_by.trace_id && l.span_id == queued_by.span_id),
        "the job span links to the request that queued it"
    );
    let chat_spans = collector
        .wait_for("two provider spans", |spans| {
            let chats: Vec<Span> = spans
                .iter()
                .filter(|s| {
                    s.trace_id == job_span.trace_id && s.name == format!("chat {FAKE_MODEL}")
                })
                .cloned()
                .collect();
            (chats.len() == 2).then_some(chats)
        })
        .await;
    let items: Vec<Span> = collector
        .wait_for("two item spans", |spans| {
            let items: Vec<Span> = spans
                .iter()
                .filter(|s| s.parent_span_id == job_span.span_id && s.name == "evaluate_item")
                .cloned()
                .collect();
            (items.len() == 2).then_some(items)
        })
        .await;
    let received: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("traceparent").map(str::to_owned))
        .collect();
    for chat in &chat_spans {
        assert_eq!(chat.kind, SpanKind::Client as i32);
        assert!(
            items.iter().any(|item| item.span_id == chat.parent_span_id),
            "a provider span is a child of an item span"
        );
        let attrs = attributes(chat);
        assert_eq!(string(attrs.get("gen_ai.operation.name")), Some("chat"));
        assert_eq!(string(attrs.get("gen_ai.provider.name")), Some("openai"));
        assert_eq!(string(attrs.get("gen_ai.request.model")), Some(FAKE_MODEL));
        assert_eq!(string(attrs.get("gen_ai.response.model")), Some(FAKE_MODEL));
        assert_eq!(
            int(attrs.get("gen_ai.usage.input_tokens")),
            Some(i64::from(crate::fake_llm::DEFAULT_INPUT_TOKENS))
        );
        assert_eq!(
            int(attrs.get("gen_ai.usage.output_tokens")),
            Some(i64::from(crate::fake_llm::DEFAULT_OUTPUT_TOKENS))
        );
        assert!(
            matches!(attrs.get("promptreg.cost_usd"), Some(AnyValue::DoubleValue(c)) if *c > 0.0)
        );
        let expected = format!("00-{}-{}-01", hex(&chat.trace_id), hex(&chat.span_id));
        assert!(
            received.contains(&expected),
            "the provider received {expected}: {received:?}"
        );
    }

    // No span carries template text or variable values: not in its name,
    // attributes or events.
    for span in collector.spans.lock().expect("spans lock").iter() {
        let text = format!("{} {:?} {:?}", span.name, span.attributes, span.events);
        assert!(
            !text.contains("TEMPLATE-TEXT") && !text.contains(VARIABLE),
            "span {}: {text}",
            span.name
        );
    }
    let services = collector.services.lock().expect("services lock").clone();
    assert!(!services.is_empty());
    assert!(
        services.iter().all(|s| s == "promptreg-under-test"),
        "OTEL_SERVICE_NAME names the service: {services:?}"
    );

    // The read's response log line carries its trace id and the server
    // span's id.
    let logs = server.logs();
    let joined = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["trace_id"] == read.trace_id.as_str())
        .unwrap_or_else(|| panic!("no log line with trace_id {}: {logs:#?}", read.trace_id));
    assert_eq!(joined["span_id"], hex(&server_span.span_id), "{joined}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

backend_url_tests!(
    metrics_count_a_known_sequence_of_requests,
    a_cancelled_job_is_counted_once,
    metrics_can_require_an_admin_key,
    metrics_can_be_turned_off,
    traces_follow_requests_into_the_store_jobs_and_providers,
);

/// A collector that is down costs requests nothing, and the logs at most
/// one line about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_one_log_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/promptreg.db", dir.path().display());
    let fake = FakeLlm::start().await;
    let server = Server::start(
        &url,
        &fake,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    for _ in 0..5 {
        for _ in 0..20 {
            let (status, _) = server.call(Method::GET, "/v1/prompts", None, None).await;
            assert_eq!(status, 200);
        }
        // Several export attempts fail meanwhile.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let complaints = server
        .logs()
        .iter()
        .filter(|l| l.contains("cannot export traces"))
        .count();
    assert_eq!(complaints, 1, "{:#?}", server.logs());
}
