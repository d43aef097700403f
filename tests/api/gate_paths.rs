//! A gated label is refused the same way on every path that can move it: a
//! `/v1` label PUT, a `/v1` version post with labels, a Langfuse PATCH and a
//! Langfuse create, and an optimization's `promote_to`. Each must leave the
//! label and its history as they were and carry the gate's reason. Rollback
//! is exempt by design, and an evaluation that meets the rules opens the gate.

use axum::http::Method;
use promptreg::worker::{Ran, Worker};
use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{app_with, optimization_config, TestApp, TestResponse};

const PROMPT: &str = "sentiment";
const DATASET: &str = "reviews";
/// What every refusal must say, whatever the path.
const NOT_EVALUATED: &str = "no succeeded evaluation on dataset \"reviews\"";
/// The unevaluated version every path tries to put `production` on.
const CANDIDATE: &str = "1.0.2";
/// Its Langfuse `version` (the seq).
const CANDIDATE_SEQ: u32 = 3;
/// Where `production` points throughout, until the gate opens.
const CURRENT: &str = "1.0.1";
/// The prefix of every `gate_failed` detail.
const GATED: &str = "label \"production\" is gated: ";

/// The target model is right on every review when the template says
/// `GENERAL`, and wrong on every one otherwise.
const GENERAL: &str = "GENERAL: answer positive or negative for {{text}}";
const REVIEWS: [(&str, &str); 6] = [
    ("I love this product", "positive"),
    ("This broke after a day", "negative"),
    ("I love how light it is", "positive"),
    ("The lid broke at once", "negative"),
    ("I love the colour", "positive"),
    ("It broke in the post", "negative"),
];

struct Setup {
    app: TestApp,
    /// The target and optimizer models, served while the test holds them.
    _fakes: (FakeLlm, FakeLlm),
}

/// Prompt `sentiment` with 1.0.0, 1.0.1 and 1.0.2 (which would pass the
/// gate if evaluated); `production` moved 1.0.0 → 1.0.1 before the gate
/// on it (dataset `reviews`, exact_match ≥ 0.9) was set.
async fn setup(url: &str) -> Setup {
    let (target, optimizer) = (FakeLlm::start().await, FakeLlm::start().await);
    target.set_default(|request| {
        let asked: String = request.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_str())
            .collect();
        let answer = match (asked.contains("GENERAL"), asked.contains("love")) {
            (true, true) => "positive",
            (true, false) => "negative",
            (false, _) => "not sure",
        };
        Reply::text(answer)
    });
    // Another GENERAL template than 1.0.2's, so the result is a new version.
    optimizer.set_default(|_| {
        Reply::text("<prompt>GENERAL: is this positive or negative? {{text}}</prompt>")
    });
    let app = app_with(optimization_config(url, &target, &optimizer)).await;

    app.seed_prompt(PROMPT).await;
    app.seed_version(PROMPT, "Classify the sentiment of: {{text}}")
        .await;
    app.seed_version(PROMPT, "Say the sentiment of: {{text}}")
        .await;
    app.seed_version(PROMPT, GENERAL).await;
    for version in ["1.0.0", CURRENT] {
        let moved = app.set_label(PROMPT, "production", version).await;
        assert_eq!(moved.status, 200, "{}", moved.body);
    }
    let dataset = app.post("/v1/datasets", json!({"name": DATASET})).await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    let items: Vec<Value> = REVIEWS
        .iter()
        .map(|(text, label)| json!({"input": {"text": text}, "expected": label}))
        .collect();
    let uploaded = app
        .send(
            axum::http::Request::post(format!("/v1/datasets/{DATASET}/items"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(Value::Array(items).to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let gate = app
        .put(
            &format!("/v1/prompts/{PROMPT}/gates/production"),
            json!({"dataset": DATASET, "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    Setup {
        app,
        _fakes: (target, optimizer),
    }
}

fn worker(app: &TestApp) -> Worker {
    promptreg::app::worker(&app.state)
}

/// Runs jobs until none is left.
async fn drain(worker: &Worker) {
    while let Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

/// Where `production` points and every move it ever made.
#[derive(Debug, PartialEq)]
struct LabelState {
    version: Value,
    history: Value,
}

async fn production(app: &TestApp) -> LabelState {
    let resolved = app
        .get(&format!("/v1/prompts/{PROMPT}/versions/production"))
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    let history = app
        .get(&format!(
            "/v1/prompts/{PROMPT}/labels/production/history?limit=100"
        ))
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    LabelState {
        version: resolved.body["version"].clone(),
        history: history.body["items"].clone(),
    }
}

/// Asserts `production` still points at [`CURRENT`] with no new move.
#[track_caller]
fn assert_unmoved(before: &LabelState, after: &LabelState) {
    assert_eq!(after.version, CURRENT, "production moved");
    assert_eq!(after, before, "production's history changed");
}

async fn versions(app: &TestApp) -> Vec<Value> {
    let listed = app
        .get(&format!("/v1/prompts/{PROMPT}/versions?limit=100"))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.body["items"].as_array().cloned().unwrap_or_default()
}

/// Asserts a 412 `gate_failed`; answers its detail.
#[track_caller]
fn gate_failed_detail(response: &TestResponse) -> String {
    let problem = response.assert_problem(412, "gate_failed");
    problem["detail"].as_str().unwrap_or_default().to_owned()
}

/// Asserts the detail is the gate's, carrying `reason`. Checked last in
/// each test, after what did (not) move, so a wording difference never
/// hides a label that moved.
#[track_caller]
fn assert_gated_detail(detail: &str, reason: &str) {
    assert!(
        detail.starts_with(GATED) && detail.contains(reason),
        "detail should read `{GATED}…{reason}…`: {detail}"
    );
}

/// Langfuse Basic credentials of a new admin key.
async fn langfuse_pair(app: &TestApp) -> (String, String) {
    app.create_key(json!({"name": "langfuse", "scopes": ["admin"]}))
        .await
}

async fn a_label_put_past_the_gate_is_refused(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let before = production(&app).await;

    let refused = app.set_label(PROMPT, "production", CANDIDATE).await;

    let detail = gate_failed_detail(&refused);
    assert_unmoved(&before, &production(&app).await);
    assert_gated_detail(&detail, &format!("version {CANDIDATE} has {NOT_EVALUATED}"));
}

async fn a_version_post_with_a_gated_label_is_refused_and_creates_nothing(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let before = production(&app).await;
    let versions_before = versions(&app).await;

    let refused = app
        .post(
            &format!("/v1/prompts/{PROMPT}/versions"),
            json!({"type": "text", "template": "Brand new: {{text}}", "labels": ["production"]}),
        )
        .await;

    let detail = gate_failed_detail(&refused);
    assert_eq!(
        versions(&app).await,
        versions_before,
        "a version was created"
    );
    assert_unmoved(&before, &production(&app).await);
    assert_gated_detail(&detail, NOT_EVALUATED);
}

async fn a_langfuse_patch_past_the_gate_is_refused(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let (public, secret) = langfuse_pair(&app).await;
    let before = production(&app).await;

    let refused = app
        .request_basic(
            Some((&public, &secret)),
            Method::PATCH,
            &format!("/api/public/v2/prompts/{PROMPT}/versions/{CANDIDATE_SEQ}"),
            Some(json!({"newLabels": ["production"]})),
        )
        .await;

    // The Langfuse layer answers a 412 as 400 `InvalidRequestError`: the
    // same request fails again, which is all its clients distinguish.
    let message = refused.assert_langfuse_error(400, "InvalidRequestError");
    assert_unmoved(&before, &production(&app).await);
    let reason = format!("version {CANDIDATE} has {NOT_EVALUATED}");
    assert!(message.contains(&reason), "{message}");
}

async fn a_langfuse_create_with_a_gated_label_is_refused_and_creates_nothing(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let (public, secret) = langfuse_pair(&app).await;
    let before = production(&app).await;
    let versions_before = versions(&app).await;

    let refused = app
        .request_basic(
            Some((&public, &secret)),
            Method::POST,
            "/api/public/v2/prompts",
            Some(
                json!({"name": PROMPT, "type": "text", "prompt": "Brand new: {{text}}",
                        "labels": ["production"]}),
            ),
        )
        .await;

    let message = refused.assert_langfuse_error(400, "InvalidRequestError");
    assert_eq!(
        versions(&app).await,
        versions_before,
        "a version was created"
    );
    assert_unmoved(&before, &production(&app).await);
    assert!(message.contains(NOT_EVALUATED), "{message}");
}

async fn an_optimization_leaves_a_gated_label_where_it_is(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let before = production(&app).await;
    let versions_before = versions(&app).await.len();

    let created = app
        .post(
            "/v1/optimizations",
            json!({
                "prompt": PROMPT,
                "ref": "1.0.0",
                "dataset": DATASET,
                "split": {"train": 0.5, "seed": 7},
                "metric": {"name": "exact_match"},
                "target": {"provider": "target"},
                "optimizer": {"provider": "optimizer"},
                "strategy": "opro",
                "max_iterations": 2,
                "candidates_per_iteration": 1,
                "target_score": 1.0,
                "promote_to": "production"
            }),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    drain(&worker(&app)).await;

    let id = created.body["id"].as_str().expect("id");
    let done = app.get(&format!("/v1/optimizations/{id}")).await.body;
    assert_eq!(done["status"], "succeeded", "{done}");
    // It did find a better version: the gate, not the score, kept the label.
    let result = done["result_version"].as_str().expect("a result version");
    assert_eq!(versions(&app).await.len(), versions_before + 1);
    assert_eq!(done["promotion"]["label"], "production", "{done}");
    assert_eq!(done["promotion"]["moved"], false, "{done}");
    assert_unmoved(&before, &production(&app).await);
    let reason = done["promotion"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("version {result} has {NOT_EVALUATED}")),
        "{done}"
    );
}

async fn rollback_is_exempt_from_the_gate(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let before = production(&app).await;

    // Exempt by design: a rollback returns the label to a version it held
    // before (here 1.0.0, never evaluated), the way out of a bad release,
    // which a gate must never block.
    let rolled_back = app
        .request(
            Method::POST,
            &format!("/v1/prompts/{PROMPT}/labels/production/rollback"),
            None,
        )
        .await;

    assert_eq!(rolled_back.status, 200, "{}", rolled_back.body);
    assert_eq!(rolled_back.body["version"], "1.0.0");
    let after = production(&app).await;
    assert_eq!(after.version, "1.0.0");
    let moves = |state: &LabelState| state.history.as_array().map(Vec::len);
    assert_eq!(moves(&after), moves(&before).map(|n| n + 1));
    assert_eq!(after.history[0]["from"], CURRENT);
    assert_eq!(after.history[0]["to"], "1.0.0");
}

async fn a_passing_evaluation_opens_the_gate(url: String) {
    let Setup { app, _fakes } = setup(&url).await;
    let before = production(&app).await;
    app.set_label(PROMPT, "production", CANDIDATE)
        .await
        .assert_problem(412, "gate_failed");

    let started = app
        .post(
            "/v1/evaluations",
            json!({"prompt": PROMPT, "ref": CANDIDATE, "dataset": DATASET,
                   "provider": "target", "metrics": ["exact_match"]}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    drain(&worker(&app)).await;
    let id = started.body["id"].as_str().expect("id");
    let evaluated = app.get(&format!("/v1/evaluations/{id}")).await.body;
    assert_eq!(evaluated["status"], "succeeded", "{evaluated}");
    assert_eq!(evaluated["metrics"]["exact_match"]["mean"], 1.0);

    let moved = app.set_label(PROMPT, "production", CANDIDATE).await;

    assert_eq!(moved.status, 200, "{}", moved.body);
    let after = production(&app).await;
    assert_eq!(after.version, CANDIDATE);
    assert_eq!(after.history[0]["from"], before.version);
    assert_eq!(after.history[0]["to"], CANDIDATE);
}

backend_url_tests!(
    a_label_put_past_the_gate_is_refused,
    a_version_post_with_a_gated_label_is_refused_and_creates_nothing,
    a_langfuse_patch_past_the_gate_is_refused,
    a_langfuse_create_with_a_gated_label_is_refused_and_creates_nothing,
    an_optimization_leaves_a_gated_label_where_it_is,
    rollback_is_exempt_from_the_gate,
    a_passing_evaluation_opens_the_gate,
);
