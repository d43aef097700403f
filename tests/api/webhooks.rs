//! Webhooks end to end: a real receiving HTTP server on 127.0.0.1, the
//! delivery loop running as `serve` runs it, signatures checked by the
//! Standard Webhooks reference library (Python), retries, 410, refused
//! transactions, a slow endpoint beside a fast one, the address policy, the
//! secret's exposure, and a process killed between commit and delivery.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use promptreg::config::{Config, Redacted};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{app_with, enc, optimization_config, test_config, TestApp, ADMIN_KEY};

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Long enough for any delivery on a loaded machine; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// What the receiver answers: a script first, then `then` forever.
#[derive(Clone)]
enum Answer {
    Status(u16),
    Redirect(String),
    /// Holds the answer this long (far past the delivery timeout).
    Slow(Duration),
}

struct ReceiverState {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    then: Answer,
    arrived: Notify,
    finished_slow: Mutex<usize>,
}

/// A receiving HTTP server on 127.0.0.1.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(script: Vec<Answer>, then: Answer) -> Self {
        let state = Arc::new(ReceiverState {
            got: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            then,
            arrived: Notify::new(),
            finished_slow: Mutex::new(0),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    async fn ok() -> Self {
        Self::start(Vec::new(), Answer::Status(204)).await
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for what arrived; panics after [`PATIENCE`].
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let arrived = self.state.arrived.notified();
            let got = self.got();
            if done(&got) {
                return got;
            }
            let types: Vec<String> = got.iter().map(Received::event_type).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; got {types:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        }
    }

    async fn wait_for_type(&self, kind: &str) -> Received {
        let got = self
            .wait_for(kind, |got| got.iter().any(|r| r.event_type() == kind))
            .await;
        got.into_iter()
            .find(|r| r.event_type() == kind)
            .expect("found")
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Ok(mut got) = state.got.lock() {
        got.push(received);
    }
    state.arrived.notify_waiters();
    let answer = state
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .unwrap_or_else(|| state.then.clone());
    match answer {
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            format!("answered {code}"),
        )
            .into_response(),
        Answer::Redirect(to) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, to)],
        )
            .into_response(),
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            if let Ok(mut done) = state.finished_slow.lock() {
                *done += 1;
            }
            StatusCode::OK.into_response()
        }
    }
}

/// A test config whose webhooks reach 127.0.0.1 and retry within 100 ms.
fn webhook_config(mut config: Config) -> Config {
    config.webhooks.secret_key = Redacted(SECRET_KEY.to_owned());
    config.webhooks.allow_private_networks = true;
    config.webhooks.retry_base_ms = 100;
    config.worker.poll_interval_ms = 50;
    config
}

/// The app with the delivery loop running beside it, as `serve` runs it.
async fn app_delivering(config: Config) -> TestApp {
    app_delivering_until(config).await.0
}

/// [`app_delivering`], and what stops its delivery loop.
async fn app_delivering_until(config: Config) -> (TestApp, StopDelivery) {
    let app = app_with(config).await;
    let deliverer = promptreg::app::webhook_deliverer(&app.state).expect("deliverer");
    let token = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(deliverer.run(token.clone()));
    (app, StopDelivery { token, handle })
}

struct StopDelivery {
    token: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl StopDelivery {
    /// Stops the loop and waits until it has stopped.
    async fn stop(self) {
        self.token.cancel();
        let _ = self.handle.await;
    }
}

/// Creates an endpoint; answers `(id, secret)`.
async fn subscribe(app: &TestApp, url: &str, events: Value) -> (String, String) {
    let created = app
        .post("/v1/webhooks", json!({"url": url, "events": events}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (created.body["id"].as_str().expect("id").to_owned(), secret)
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/v1/webhooks/{webhook}/deliveries?limit=100"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until every delivery to `webhook` has left `pending`.
async fn settled(app: &TestApp, webhook: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = deliveries(app, webhook).await;
        if !found.is_empty() && found.iter().all(|d| d["status"] != "pending") {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries still pending: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn python() -> Result<PathBuf, String> {
    crate::support::python_venv("webhooks")
}

/// Verifies each delivery with the reference library and `secret`.
async fn verify_with_python(secret: &str, received: &[Received]) -> Result<String, String> {
    let python = tokio::task::spawn_blocking(python)
        .await
        .expect("venv setup")
        .unwrap_or_else(|e| panic!("no Python with standardwebhooks: {e}"));
    let entries: Vec<Value> = received
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("webhook-"))
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"secret": secret, "body": r.body, "headers": headers})
        })
        .collect();
    let input = Value::Array(entries).to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/verify.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr)))
        }
    })
    .await
    .expect("verify")
}

async fn drain(app: &TestApp) {
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

async fn every_event_type_arrives_signed_as_standard_webhooks_say(url: String) {
    let (target, optimizer) = (FakeLlm::start().await, FakeLlm::start().await);
    target.set_default(|_| Reply::text("positive"));
    optimizer.set_default(|_| Reply::text("<prompt>Answer positive: {{text}}</prompt>"));
    let app = app_delivering(webhook_config(optimization_config(
        &url, &target, &optimizer,
    )))
    .await;
    let receiver = Receiver::ok().await;
    let (webhook, secret) = subscribe(&app, &receiver.url, json!(["*"])).await;

    app.seed_prompt("support/reply").await;
    let patched = app
        .patch(
            &format!("/v1/prompts/{}", enc("support/reply")),
            json!({"description": "replies"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    app.seed_version_with(
        "support/reply",
        json!({"type": "text", "template": "Say {{text}}", "labels": ["production"]}),
    )
    .await;
    app.seed_version("support/reply", "Tell {{text}}").await;
    let dataset = app.post("/v1/datasets", json!({"name": "reviews"})).await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    let items = json!([{"input": {"text": "a"}, "expected": "positive"},
                       {"input": {"text": "b"}, "expected": "positive"},
                       {"input": {"text": "c"}, "expected": "positive"},
                       {"input": {"text": "d"}, "expected": "positive"}]);
    let uploaded = app
        .upload("reviews", "application/json", items.to_string())
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let gate = app
        .put(
            &format!("/v1/prompts/{}/gates/staging", enc("support/reply")),
            json!({"dataset": "reviews", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    app.set_label("support/reply", "staging", "1.0.1")
        .await
        .assert_problem(412, "gate_failed");
    let evaluation = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "support/reply", "ref": "1.0.1", "dataset": "reviews",
                   "provider": "target", "metrics": ["exact_match"]}),
        )
        .await;
    assert_eq!(evaluation.status, 202, "{}", evaluation.body);
    let optimization = app
        .post(
            "/v1/optimizations",
            json!({"prompt": "support/reply", "ref": "1.0.0", "dataset": "reviews",
                   "split": {"train": 0.5, "seed": 7}, "metric": {"name": "exact_match"},
                   "target": {"provider": "target"}, "optimizer": {"provider": "optimizer"},
                   "strategy": "opro", "max_iterations": 1, "candidates_per_iteration": 1}),
        )
        .await;
    assert_eq!(optimization.status, 202, "{}", optimization.body);
    drain(&app).await;
    let deleted = app
        .delete(&format!(
            "/v1/prompts/{}/labels/production",
            enc("support/reply")
        ))
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);

    let kinds = [
        "prompt.created",
        "prompt.updated",
        "version.created",
        "label.moved",
        "gate.failed",
        "evaluation.finished",
        "optimization.finished",
        "label.deleted",
    ];
    let got = receiver
        .wait_for("every event type", |got| {
            kinds
                .iter()
                .all(|k| got.iter().any(|r| r.event_type() == *k))
        })
        .await;
    let verified = verify_with_python(&secret, &got)
        .await
        .unwrap_or_else(|e| panic!("standardwebhooks refused a delivery: {e}"));
    assert_eq!(verified.lines().count(), got.len(), "{verified}");
    // A wrong secret does not verify: the check can fail.
    let wrong = verify_with_python("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &got[..1]).await;
    assert!(wrong.is_err(), "{wrong:?}");

    let moved = receiver.wait_for_type("label.moved").await.json();
    assert_eq!(
        moved["data"],
        json!({"prompt": "support/reply", "label": "production", "from": null, "to": "1.0.0",
               "by": moved["data"]["by"], "rollback": false})
    );
    let evaluated = receiver.wait_for_type("evaluation.finished").await.json();
    assert_eq!(evaluated["data"]["status"], "succeeded", "{evaluated}");
    assert_eq!(
        evaluated["data"]["means"]["exact_match"], 1.0,
        "{evaluated}"
    );
    assert_eq!(
        evaluated["data"]["gates"],
        json!([{"label": "staging", "passed": true}])
    );
    let refused = receiver.wait_for_type("gate.failed").await.json();
    assert_eq!(refused["data"]["label"], "staging");
    for received in &got {
        let body = received.json();
        assert!(
            body["timestamp"].is_string() && body["data"].is_object(),
            "{body}"
        );
    }

    // Rotation: both secrets sign for a day, so either verifies.
    let rotated = app
        .post(&format!("/v1/webhooks/{webhook}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = rotated.body["secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(new_secret, secret);
    let tested = app
        .post(&format!("/v1/webhooks/{webhook}/test"), json!({}))
        .await;
    assert_eq!(tested.status, 202, "{}", tested.body);
    let test_event = receiver.wait_for_type("webhook.test").await;
    let signatures = test_event.header("webhook-signature").unwrap_or_default();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for key in [&secret, &new_secret] {
        verify_with_python(key, std::slice::from_ref(&test_event))
            .await
            .unwrap_or_else(|e| panic!("a rotated delivery does not verify: {e}"));
    }
}

async fn a_receiver_failing_three_times_gets_one_event_four_times(url: String) {
    let app = app_delivering(webhook_config(test_config(&url))).await;
    let receiver = Receiver::start(
        vec![
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(500),
        ],
        Answer::Status(200),
    )
    .await;
    let (webhook, _) = subscribe(&app, &receiver.url, json!(["prompt.created"])).await;

    app.seed_prompt("greet").await;

    let got = receiver
        .wait_for("four attempts", |got| got.len() >= 4)
        .await;
    let ids: Vec<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(got.iter().all(|r| r.body == got[0].body));
    let found = settled(&app, &webhook).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["status"], "succeeded");
    assert_eq!(found[0]["webhook_message_id"], ids[0]);
    let codes: Vec<&Value> = found[0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(500), &json!(200)]);
    assert_eq!(found[0]["attempts"][0]["response_excerpt"], "answered 500");
    let endpoint = app.get(&format!("/v1/webhooks/{webhook}")).await.body;
    assert_eq!(endpoint["consecutive_failures"], 0, "{endpoint}");

    // Sent again on request: the same event, the same webhook-id.
    let delivery = found[0]["id"].as_str().expect("id");
    let again = app
        .post(
            &format!("/v1/webhooks/deliveries/{delivery}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.body);
    let got = receiver
        .wait_for("a redelivery", |got| got.len() >= 5)
        .await;
    assert_eq!(got[4].header("webhook-id"), Some(ids[0]));
}

async fn gone_stops_delivery_and_disables_the_endpoint(url: String) {
    let app = app_delivering(webhook_config(test_config(&url))).await;
    let receiver = Receiver::start(Vec::new(), Answer::Status(410)).await;
    let other = Receiver::ok().await;
    let (webhook, _) = subscribe(&app, &receiver.url, json!(["prompt.created"])).await;
    subscribe(&app, &other.url, json!(["prompt.created"])).await;

    app.seed_prompt("first").await;
    let found = settled(&app, &webhook).await;

    assert_eq!(found[0]["status"], "failed");
    assert_eq!(found[0]["attempts"].as_array().map(Vec::len), Some(1));
    let endpoint = app.get(&format!("/v1/webhooks/{webhook}")).await.body;
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{endpoint}"
    );
    // Later events go to the other endpoint, none to the disabled one.
    app.seed_prompt("second").await;
    other
        .wait_for("the second prompt", |got| {
            got.iter().any(|r| r.json()["data"]["name"] == "second")
        })
        .await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(deliveries(&app, &webhook).await.len(), 1);
}

async fn a_version_post_refused_by_its_gate_sends_nothing(url: String) {
    let app = app_delivering(webhook_config(test_config(&url))).await;
    let receiver = Receiver::ok().await;
    app.seed_prompt("gated").await;
    app.seed_version("gated", "Hello {{name}}").await;
    let dataset = app.post("/v1/datasets", json!({"name": "golden"})).await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    let gate = app
        .put(
            "/v1/prompts/gated/gates/production",
            json!({"dataset": "golden", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    subscribe(&app, &receiver.url, json!(["*"])).await;

    app.post(
        "/v1/prompts/gated/versions",
        json!({"type": "text", "template": "Hi {{name}}", "labels": ["production"]}),
    )
    .await
    .assert_problem(412, "gate_failed");
    // A later change, to know when everything before it would have arrived.
    app.seed_prompt("marker").await;

    let got = receiver
        .wait_for("the marker", |got| {
            got.iter().any(|r| r.json()["data"]["name"] == "marker")
        })
        .await;
    let types: Vec<String> = got.iter().map(Received::event_type).collect();
    assert_eq!(types, ["prompt.created"], "{got:?}");
}

async fn a_slow_endpoint_does_not_delay_another(url: String) {
    let app = app_delivering(webhook_config(test_config(&url))).await;
    let slow = Receiver::start(Vec::new(), Answer::Slow(Duration::from_secs(30))).await;
    let fast = Receiver::ok().await;
    subscribe(&app, &slow.url, json!(["prompt.created"])).await;
    // The slow endpoint has its first event in hand before the fast one exists.
    app.seed_prompt("first").await;
    slow.wait_for("the slow endpoint's first event", |got| !got.is_empty())
        .await;
    subscribe(&app, &fast.url, json!(["prompt.created"])).await;

    app.seed_prompt("second").await;

    fast.wait_for("the fast endpoint's event", |got| !got.is_empty())
        .await;
    let slow_answered = *slow.state.finished_slow.lock().expect("lock");
    assert_eq!(
        slow_answered, 0,
        "the fast endpoint's delivery waited for the slow endpoint"
    );
}

async fn private_and_redirecting_targets_are_refused_without_the_setting(url: String) {
    let mut config = webhook_config(test_config(&url));
    config.webhooks.allow_private_networks = false;
    let (app, stop_first) = app_delivering_until(config).await;
    for (target, why) in [
        ("http://127.0.0.1:9/hook", "plain http to loopback"),
        ("https://127.0.0.1:9/hook", "loopback"),
        ("https://[::1]:9/hook", "loopback v6"),
        ("https://10.0.0.8/hook", "private"),
        (
            "https://169.254.169.254/latest/meta-data",
            "link-local metadata",
        ),
        ("https://[::ffff:127.0.0.1]/hook", "v4-mapped loopback"),
        ("http://hooks.example.com/hook", "plain http"),
    ] {
        let refused = app
            .post("/v1/webhooks", json!({"url": target, "events": ["*"]}))
            .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.error_fields(), ["url"], "{why}: {}", refused.body);
    }
    // A name is checked when connecting: `localhost` resolves to loopback.
    let receiver = Receiver::ok().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (webhook, _) = subscribe(
        &app,
        &format!("https://localhost:{port}"),
        json!(["prompt.created"]),
    )
    .await;
    app.seed_prompt("probe").await;
    let found = deliveries_with_attempt(&app, &webhook).await;
    let error = found["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no public address"), "{found}");
    assert!(found["attempts"][0]["status_code"].is_null());
    assert!(receiver.got().is_empty());

    // Redirects are not followed, even to an allowed host (a second app on
    // the same database, whose delivery loop alone runs now).
    stop_first.stop().await;
    let mut config = webhook_config(test_config(&url));
    config.webhooks.allow_private_networks = false;
    config.webhooks.allowed_hosts = vec!["127.0.0.1".to_owned()];
    let app = app_delivering(config).await;
    let elsewhere = Receiver::ok().await;
    let redirecting = Receiver::start(Vec::new(), Answer::Redirect(elsewhere.url.clone())).await;
    let (webhook, _) = subscribe(&app, &redirecting.url, json!(["prompt.created"])).await;
    app.seed_prompt("probe2").await;
    let found = deliveries_with_attempt(&app, &webhook).await;
    assert_eq!(found["attempts"][0]["status_code"], 307, "{found}");
    assert_eq!(redirecting.got().len(), 1);
    assert!(elsewhere.got().is_empty(), "a redirect was followed");
}

/// The first delivery to `webhook` once it has an attempt.
async fn deliveries_with_attempt(app: &TestApp, webhook: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = deliveries(app, webhook).await;
        if let Some(first) = found
            .first()
            .filter(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        {
            return first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_secret_is_shown_only_when_created(url: String) {
    let app = app_delivering(webhook_config(test_config(&url))).await;
    let receiver = Receiver::ok().await;
    let (webhook, secret) = subscribe(&app, &receiver.url, json!(["*"])).await;
    let raw_key = secret.trim_start_matches("whsec_");
    app.seed_prompt("greet").await;
    receiver.wait_for_type("prompt.created").await;
    let patched = app
        .patch(
            &format!("/v1/webhooks/{webhook}"),
            json!({"description": "ci"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);

    for path in [
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{webhook}"),
        format!("/v1/webhooks/{webhook}/deliveries"),
        "/v1/audit?limit=100".to_owned(),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let text = answer.body.to_string();
        assert!(!text.contains(raw_key), "{path} shows the secret");
        assert!(
            !text.contains("secret_sealed"),
            "{path} shows the sealed secret"
        );
    }
    assert!(!patched.body.to_string().contains(raw_key));
    let audit = app.get("/v1/audit?limit=100").await.body.to_string();
    assert!(audit.contains("webhook.create"), "{audit}");
    // Nor is it sent: receivers get signatures, not the secret.
    for received in receiver.got() {
        assert!(!format!("{received:?}").contains(raw_key));
    }
}

backend_url_tests!(
    every_event_type_arrives_signed_as_standard_webhooks_say,
    a_receiver_failing_three_times_gets_one_event_four_times,
    gone_stops_delivery_and_disables_the_endpoint,
    a_version_post_refused_by_its_gate_sends_nothing,
    a_slow_endpoint_does_not_delay_another,
    private_and_redirecting_targets_are_refused_without_the_setting,
    the_secret_is_shown_only_when_created,
);

mod crash {
    //! The real binary, killed with SIGKILL between a change's commit and
    //! its delivery, delivers after a restart; its log never shows the secret.

    use super::*;
    use crate::support::{with_database, Backend};

    struct Running {
        child: std::process::Child,
        log: Arc<Mutex<String>>,
        base: String,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    async fn start(database_url: &str, dir: &Path, workers: &str) -> Running {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_promptreg"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROMPTREG_")) {
            command.env_remove(key);
        }
        command.envs([
            ("PROMPTREG_DATABASE_URL", database_url),
            ("PROMPTREG_INIT_ADMIN_KEY", ADMIN_KEY),
            ("PROMPTREG_WEBHOOKS__SECRET_KEY", SECRET_KEY),
            ("PROMPTREG_WEBHOOKS__ALLOW_PRIVATE_NETWORKS", "true"),
            ("PROMPTREG_WEBHOOKS__RETRY_BASE_MS", "100"),
            ("PROMPTREG_WORKER__COUNT", workers),
            ("PROMPTREG_WORKER__POLL_INTERVAL_MS", "50"),
        ]);
        let mut child = command.spawn().expect("spawn promptreg");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Ok(mut text) = sink.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Running { child, log, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("promptreg did not become ready");
    }

    async fn call(base: &str, path: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn killed_between_commit_and_delivery_delivers_after_restart(url: String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let receiver = Receiver::ok().await;
        // No workers: the change commits, and nothing delivers it.
        let first = start(&url, dir.path(), "0").await;
        let (status, created) = call(
            &first.base,
            "/v1/webhooks",
            json!({"url": receiver.url, "events": ["prompt.created"]}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let secret = created["secret"].as_str().expect("secret").to_owned();
        let (status, body) = call(&first.base, "/v1/prompts", json!({"name": "survivor"})).await;
        assert_eq!(status, 201, "{body}");
        let mut child = first.child;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(receiver.got().is_empty());

        let second = start(&url, dir.path(), "1").await;
        let got = receiver.wait_for_type("prompt.created").await;
        assert_eq!(got.json()["data"]["name"], "survivor");
        verify_with_python(&secret, &[got])
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let mut child = second.child;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let raw_key = secret.trim_start_matches("whsec_");
        for log in [&first.log, &second.log] {
            let text = log.lock().map(|t| t.clone()).unwrap_or_default();
            assert!(!text.is_empty(), "debug logs were captured");
            assert!(!text.contains(raw_key), "a log shows the secret");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_killed_between_commit_and_delivery_delivers_after_restart() {
        with_database(
            Backend::Sqlite,
            killed_between_commit_and_delivery_delivers_after_restart,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_killed_between_commit_and_delivery_delivers_after_restart() {
        with_database(
            Backend::Postgres,
            killed_between_commit_and_delivery_delivers_after_restart,
        )
        .await;
    }
}
