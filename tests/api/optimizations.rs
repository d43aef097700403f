//! Optimizations end to end: a scripted fake optimizer and a fake target
//! model (real HTTP servers), the worker, and the HTTP surface. The target
//! answers sentiment questions; how well depends on the template it gets:
//!
//! - a template with `GENERAL` is right on every item;
//! - one with `MEMORIZE` is right on the training items only (the test
//!   knows the split: it is seeded, and `item-N` in each text names it);
//! - one with demonstrations of both labels (`Output: negative` and
//!   `Output: positive`) is right on every item;
//! - anything else answers `positive` whatever it is asked.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use promptreg::domain::DatasetItem;
use promptreg::worker::{Ran, Worker};
use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, RecordedRequest, Reply};
use crate::support::{app_with, optimization_config, TestApp};

pub(crate) const ITEMS: usize = 10;
pub(crate) const SEED: u64 = 7;
pub(crate) const TRAIN_SHARE: f64 = 0.6;

/// Item `seq` is positive when odd.
pub(crate) fn label_of(seq: usize) -> &'static str {
    if seq % 2 == 1 {
        "positive"
    } else {
        "negative"
    }
}

pub(crate) fn text_of(seq: usize) -> String {
    let sentence = if seq % 2 == 1 {
        "I love this product"
    } else {
        "This broke after a day"
    };
    format!("item-{seq}: {sentence}")
}

/// The seqs the job trains on: the same seeded split the worker makes.
pub(crate) fn train_seqs() -> HashSet<usize> {
    let items: Vec<DatasetItem> = (1..=ITEMS)
        .map(|seq| DatasetItem {
            id: uuid::Uuid::now_v7(),
            seq: seq as i64,
            input: serde_json::Map::new(),
            expected: None,
            metadata: serde_json::Map::new(),
            created_at: chrono::Utc::now(),
        })
        .collect();
    let (train, _) = promptreg::optimize::runner::split(items, TRAIN_SHARE, SEED);
    train.iter().map(|i| i.seq as usize).collect()
}

/// The item a target prompt asks about: the last `item-N` in it (earlier
/// ones are demonstrations).
pub(crate) fn asked_seq(prompt: &str) -> Option<usize> {
    let at = prompt.rfind("item-")?;
    prompt[at + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn target_answer(request: &RecordedRequest, train: &HashSet<usize>) -> Reply {
    let messages = request.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let prompt: String = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let Some(seq) = asked_seq(&prompt) else {
        return Reply::text("positive");
    };
    let right = label_of(seq);
    let wrong = if right == "positive" {
        "negative"
    } else {
        "positive"
    };
    let demos_both = prompt.contains("Output: negative") && prompt.contains("Output: positive");
    let answer = if prompt.contains("GENERAL") || demos_both {
        right
    } else if prompt.contains("MEMORIZE") {
        if train.contains(&seq) {
            right
        } else {
            wrong
        }
    } else {
        "positive"
    };
    Reply::text(answer)
}

pub(crate) struct Setup {
    pub app: TestApp,
    pub target: FakeLlm,
    pub optimizer: FakeLlm,
}

pub(crate) async fn setup(url: &str, tune: impl FnOnce(&mut promptreg::config::Config)) -> Setup {
    let (target, optimizer) = (FakeLlm::start().await, FakeLlm::start().await);
    let train = train_seqs();
    target.set_default(move |request| target_answer(request, &train));
    let mut config = optimization_config(url, &target, &optimizer);
    tune(&mut config);
    let app = app_with(config).await;
    app.seed_prompt("sentiment").await;
    app.seed_version("sentiment", "Classify the sentiment of: {{text}}")
        .await;
    app.post("/v1/datasets", json!({"name": "reviews"})).await;
    let items: Vec<Value> = (1..=ITEMS)
        .map(|seq| json!({"input": {"text": text_of(seq)}, "expected": label_of(seq)}))
        .collect();
    let uploaded = app
        .send(
            axum::http::Request::post("/v1/datasets/reviews/items")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(Value::Array(items).to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    Setup {
        app,
        target,
        optimizer,
    }
}

/// The optimizer answers each call with the next reply of `script`, then
/// with its last one.
pub(crate) fn script_optimizer(optimizer: &FakeLlm, script: Vec<&'static str>) {
    let calls = Arc::new(AtomicUsize::new(0));
    optimizer.set_default(move |request| {
        let system = request.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        if system.contains("diagnose") {
            return Reply::text("The template never says to answer with one label.");
        }
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Reply::text(script[n.min(script.len() - 1)])
    });
}

const FIRST: &str = "Ideas:\n<prompt>MEMORIZE then classify: {{text}}</prompt>\n\
<prompt>Classify {{#if text}}</prompt>\n<prompt>Classify the sentiment.</prompt>";
const SECOND: &str = "<prompt>GENERAL: answer positive or negative for {{text}}</prompt>";
const BLAND: &str = "<prompt>Please classify: {{text}}</prompt>";

pub(crate) fn request(strategy: &str, extra: Value) -> Value {
    let mut body = json!({
        "prompt": "sentiment",
        "ref": "1.0.0",
        "dataset": "reviews",
        "split": {"train": TRAIN_SHARE, "seed": SEED},
        "metric": {"name": "exact_match"},
        "target": {"provider": "target"},
        "optimizer": {"provider": "optimizer"},
        "strategy": strategy,
        "max_iterations": 6,
        "candidates_per_iteration": 3,
        "patience": 2,
        "concurrency": 4
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

pub(crate) async fn start(app: &TestApp, body: Value) -> Value {
    let created = app.post("/v1/optimizations", body).await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.body["status"], "queued");
    assert!(created.body["result_version"].is_null());
    created.body
}

pub(crate) fn worker(app: &TestApp) -> Worker {
    promptreg::app::worker(&app.state)
}

pub(crate) async fn drain(worker: &Worker) {
    while let Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

pub(crate) async fn get(app: &TestApp, created: &Value) -> Value {
    let id = created["id"].as_str().expect("id");
    let got = app.get(&format!("/v1/optimizations/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

pub(crate) async fn versions(app: &TestApp) -> Vec<Value> {
    let listed = app.get("/v1/prompts/sentiment/versions").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.body["items"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn template_of(candidate: &Value) -> String {
    candidate["template"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The baseline answers `positive` to everything: its score on a split is
/// the share of positive items in it.
pub(crate) fn baseline_scores() -> (f64, f64) {
    let train = train_seqs();
    let share = |seqs: Vec<usize>| {
        seqs.iter().filter(|s| label_of(**s) == "positive").count() as f64 / seqs.len() as f64
    };
    (
        share((1..=ITEMS).filter(|s| train.contains(s)).collect()),
        share((1..=ITEMS).filter(|s| !train.contains(s)).collect()),
    )
}

pub(crate) fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

async fn opro_finds_a_better_prompt_and_validation_decides(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![FIRST, SECOND, BLAND]);
    let created = start(&app, request("opro", json!({}))).await;
    drain(&worker(&app)).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (train_base, val_base) = baseline_scores();
    assert!(
        close(&done["baseline"]["train_score"], train_base),
        "{done}"
    );
    assert!(close(&done["baseline"]["val_score"], val_base), "{done}");
    assert_eq!(
        (done["train_items"].as_i64(), done["val_items"].as_i64()),
        (Some(6), Some(4))
    );

    let iterations = done["iterations"].as_array().expect("iterations");
    // 1: MEMORIZE leads on training, fails validation; 2: GENERAL; 3 and 4
    // bring nothing better: patience 2 stops the job.
    assert_eq!(iterations.len(), 4, "{done}");
    assert_eq!(done["stop_reason"], "patience");
    let first = iterations[0]["candidates"].as_array().expect("candidates");
    assert_eq!(first.len(), 3);
    assert!(template_of(&first[0]).contains("MEMORIZE"));
    assert!(close(&first[0]["train_score"], 1.0), "{done}");
    assert!(close(&first[0]["val_score"], 0.0), "{done}");
    assert!(
        first[1]["discarded"]
            .as_str()
            .is_some_and(|why| why.starts_with("does not compile")),
        "{done}"
    );
    assert_eq!(first[2]["discarded"], "drops variable(s) text");
    assert!(first[1]["train_score"].is_null() && first[2]["val_score"].is_null());
    // The optimizer repeating itself costs no calls.
    assert_eq!(
        iterations[3]["candidates"][0]["discarded"], "repeats an earlier template",
        "{done}"
    );
    let second = &iterations[1]["candidates"][0];
    assert!(template_of(second).contains("GENERAL"));
    assert!(close(&second["val_score"], 1.0));

    // Validation decides: GENERAL, not MEMORIZE (as good on training).
    assert!(template_of(&done["best"]).contains("GENERAL"), "{done}");
    assert_eq!(done["best"]["iteration"], 2);
    let result = done["result_version"].as_str().expect("a result version");
    let version = app
        .get(&format!("/v1/prompts/sentiment/versions/{result}"))
        .await;
    assert_eq!(version.status, 200, "{}", version.body);
    let version = version.body;
    assert!(
        version["template"]
            .as_str()
            .is_some_and(|t| t.contains("GENERAL")),
        "{version}"
    );
    assert_eq!(version["parent"], "1.0.0");
    let metadata = &version["metadata"];
    assert_eq!(metadata["optimization_id"], created["id"]);
    assert_eq!(metadata["job_id"], created["job_id"]);
    assert_eq!(metadata["strategy"], "opro");
    assert!(close(&metadata["baseline_val_score"], val_base));
    assert!(close(&metadata["best_val_score"], 1.0));
    assert!(
        version["message"]
            .as_str()
            .is_some_and(|m| m.contains("opro")),
        "{version}"
    );
    assert_eq!(versions(&app).await.len(), 2);

    // Every provider request is counted, across both models.
    let calls = (target.request_count() + optimizer.request_count()) as u64;
    assert_eq!(done["usage"]["calls"].as_u64(), Some(calls));
    assert_eq!(optimizer.request_count(), 4);
    // The optimizer saw the scores so far, worst to best.
    let asked = optimizer.requests()[1].last_user_text().unwrap_or_default();
    let (memorize, base) = (
        asked.find("MEMORIZE").expect("history shows MEMORIZE"),
        asked
            .find("Classify the sentiment of")
            .expect("and the base"),
    );
    assert!(base < memorize, "worst first: {asked}");
    assert_eq!(done["progress"]["done"], 4);
}

async fn critique_diagnoses_failures_and_edits(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![SECOND, BLAND]);
    let created = start(&app, request("critique", json!({"max_iterations": 2}))).await;
    drain(&worker(&app)).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["stop_reason"], "max_iterations");
    let first = &done["iterations"][0];
    assert_eq!(
        first["diagnosis"],
        "The template never says to answer with one label."
    );
    assert!(template_of(&first["candidates"][0]).contains("GENERAL"));
    // The diagnosis call showed failures: the negative items answered `positive`.
    let diagnosis = optimizer
        .requests()
        .into_iter()
        .find(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .is_some_and(|s| s.contains("diagnose"))
        })
        .expect("a diagnosis call");
    let shown = diagnosis.last_user_text().unwrap_or_default();
    assert!(
        shown.contains("Expected: negative") && shown.contains("Output: positive"),
        "{shown}"
    );
    // The edit call carried the diagnosis.
    assert!(optimizer.requests().iter().any(|r| r
        .last_user_text()
        .is_some_and(|t| t.contains("never says to answer with one label"))));
    assert!(done["result_version"].is_string(), "{done}");
    assert!(close(&done["best"]["val_score"], 1.0));
}

async fn fewshot_bootstraps_and_fills_demonstrations(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |_| {}).await;
    let train = train_seqs();
    // The baseline gets the positive training items right: they are the
    // bootstrapped demonstrations; asking for one more fills up with a
    // labelled negative one, which is what the target needs.
    let positives = train.iter().filter(|s| label_of(**s) == "positive").count();
    let created = start(
        &app,
        request(
            "fewshot",
            json!({"optimizer": null, "num_demos": positives + 1, "max_iterations": 1}),
        ),
    )
    .await;
    drain(&worker(&app)).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(optimizer.request_count(), 0);
    let best = template_of(&done["best"]);
    assert!(close(&done["best"]["val_score"], 1.0), "{done}");
    // Each demonstration is a training item; the input stays last.
    assert_eq!(
        best.matches("Output: positive").count(),
        positives,
        "{best}"
    );
    assert_eq!(best.matches("Output: negative").count(), 1, "{best}");
    assert!(
        best.ends_with("Classify the sentiment of: {{text}}"),
        "{best}"
    );
    for seq in 1..=ITEMS {
        if best.contains(&format!("item-{seq}:")) {
            assert!(train.contains(&seq), "item {seq} is not a training item");
        }
    }
    // The target got the demonstrations first and the item last.
    let sent = target
        .requests()
        .into_iter()
        .filter_map(|r| r.last_user_text())
        .find(|t| t.contains("Output: negative"))
        .expect("a call with demonstrations");
    assert!(sent.starts_with("Input: item-"), "{sent}");
    assert!(sent.contains("Classify the sentiment of: item-"), "{sent}");
    let result = done["result_version"].as_str().expect("result");
    let version = app
        .get(&format!("/v1/prompts/sentiment/versions/{result}"))
        .await
        .body;
    assert_eq!(version["metadata"]["strategy"], "fewshot");
}

async fn a_target_score_stops_early_and_promotion_follows_the_rules(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![SECOND]);
    // Reached at the first iteration: the label moves.
    let created = start(
        &app,
        request(
            "opro",
            json!({"target_score": 1.0, "promote_to": "staging", "min_improvement": 0.2}),
        ),
    )
    .await;
    drain(&worker(&app)).await;
    let done = get(&app, &created).await;
    assert_eq!(done["stop_reason"], "target", "{done}");
    assert_eq!(done["iterations"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        done["promotion"],
        json!({"label": "staging", "moved": true, "reason": null})
    );
    let result = done["result_version"].as_str().expect("result");
    let label = app.get("/v1/prompts/sentiment/labels").await.body;
    assert!(label.to_string().contains(result), "{label}");

    // A gated label stays where it is; so does one asked for more than gained.
    let gate = app
        .put(
            "/v1/prompts/sentiment/gates/production",
            json!({"dataset": "reviews", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    let gated = start(
        &app,
        request(
            "opro",
            json!({"target_score": 1.0, "promote_to": "production"}),
        ),
    )
    .await;
    let too_little = start(
        &app,
        request(
            "opro",
            json!({"target_score": 1.0, "promote_to": "canary", "min_improvement": 0.9}),
        ),
    )
    .await;
    drain(&worker(&app)).await;
    let gated = get(&app, &gated).await;
    assert_eq!(gated["promotion"]["moved"], false, "{gated}");
    assert!(
        gated["promotion"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gated")),
        "{gated}"
    );
    let too_little = get(&app, &too_little).await;
    assert_eq!(too_little["promotion"]["moved"], false);
    assert!(
        too_little["promotion"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("min_improvement")),
        "{too_little}"
    );
    let labels = app.get("/v1/prompts/sentiment/labels").await.body;
    assert!(!labels.to_string().contains("canary"), "{labels}");
}

const STRATEGIES: [&str; 5] = ["opro", "critique", "fewshot", "compress", "joint"];

/// `fewshot` takes no optimizer.
fn for_strategy(strategy: &str, extra: Value) -> Value {
    let mut body = request(strategy, extra);
    if strategy == "fewshot" {
        body["optimizer"] = Value::Null;
    }
    body
}

async fn the_budget_stops_the_job_where_it_should(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| {
        if let Some(target) = config.providers.get_mut("target") {
            target.max_retries = 2;
        }
    })
    .await;
    script_optimizer(&optimizer, vec![BLAND]);
    let budget = 15;
    for strategy in STRATEGIES {
        let before = target.request_count() + optimizer.request_count();
        // One retried 500: the retry is a call too.
        target.push(Reply::Status(500, Some(0)));
        let created = start(
            &app,
            for_strategy(
                strategy,
                json!({"budget": {"max_calls": budget}, "concurrency": 2}),
            ),
        )
        .await;
        drain(&worker(&app)).await;
        let done = get(&app, &created).await;
        assert_eq!(done["status"], "succeeded", "{strategy}: {done}");
        assert_eq!(done["stop_reason"], "budget", "{strategy}: {done}");
        // The budget is used up exactly: a call past it is never made.
        assert_eq!(
            done["usage"]["calls"].as_u64(),
            Some(budget),
            "{strategy}: {done}"
        );
        let made = (target.request_count() + optimizer.request_count() - before) as u64;
        // A call counted as it left may be dropped before the fake saw it.
        assert!(made <= budget && made + 2 >= budget, "{strategy}: {made}");
        // The baseline (10 calls and the retry) fits; the first
        // iteration's scoring does not.
        assert!(
            close(&done["baseline"]["val_score"], baseline_scores().1),
            "{strategy}: {done}"
        );
        assert!(done["result_version"].is_null());
    }
    // opro and joint ask first; critique and compress score failures first.
    assert_eq!(
        optimizer.request_count(),
        2,
        "only opro and joint got to ask"
    );
    assert_eq!(versions(&app).await.len(), 1);
}

async fn a_cost_budget_stops_the_job_within_one_batch(url: String) {
    // Every call costs 10 input and 5 output tokens: $0.00002.
    let per_call = 10.0 * 1e-6 + 5.0 * 2e-6;
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| {
        for provider in ["target", "optimizer"] {
            if let Some(config) = config.providers.get_mut(provider) {
                config.prices.insert(
                    crate::fake_llm::FAKE_MODEL.to_owned(),
                    promptreg::config::ModelPrice {
                        input_per_million: 1.0,
                        output_per_million: 2.0,
                    },
                );
            }
        }
    })
    .await;
    script_optimizer(&optimizer, vec![FIRST, SECOND]);
    let max_cost = 12.5 * per_call;
    let concurrency = 3;
    let created = start(
        &app,
        request(
            "opro",
            json!({"budget": {"max_cost_usd": max_cost}, "concurrency": concurrency}),
        ),
    )
    .await;
    drain(&worker(&app)).await;
    let done = get(&app, &created).await;
    assert_eq!(done["stop_reason"], "budget", "{done}");
    let spent = done["usage"]["cost_usd"].as_f64().expect("cost");
    let made = (target.request_count() + optimizer.request_count()) as f64;
    assert!(
        (spent - made * per_call).abs() < 1e-9,
        "{spent} for {made} calls"
    );
    // Spent past the limit by at most the calls that were in flight.
    assert!(spent >= max_cost, "{spent}");
    assert!(spent <= max_cost + concurrency as f64 * per_call, "{spent}");
}

async fn cancel_stops_the_job_at_any_step_and_creates_no_version(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![FIRST, SECOND, BLAND]);
    target.set_latency(Duration::from_millis(150));
    // In the baseline, then inside the first iterations of each strategy.
    let steps = [
        ("opro", 0),
        ("opro", 1),
        ("critique", 1),
        ("fewshot", 1),
        ("compress", 1),
        ("joint", 1),
    ];
    for (strategy, iterations) in steps {
        let created = start(
            &app,
            for_strategy(strategy, json!({"concurrency": 1, "patience": 5})),
        )
        .await;
        let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));
        let running = worker(&app);
        let task = tokio::spawn(async move { running.run_once().await });
        let calls = target.request_count();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{strategy}: never got there"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = get(&app, &created).await;
            let started = now["iterations"].as_array().map_or(0, Vec::len);
            if started >= iterations && target.request_count() > calls + 2 {
                break;
            }
        }
        let cancel = app.post(&format!("{job}/cancel"), json!({})).await;
        assert_eq!(cancel.status, 200, "{}", cancel.body);
        let ran = task.await.expect("task").expect("worker");
        assert!(
            matches!(
                ran,
                Ran::Job(_, promptreg::domain::jobs::JobStatus::Cancelled)
            ),
            "{strategy}: {ran:?}"
        );
        let done = get(&app, &created).await;
        assert_eq!(done["status"], "cancelled");
        assert!(done["result_version"].is_null());
        assert!(done["stop_reason"].is_null());
        if iterations == 0 {
            assert!(
                target.request_count() - calls < ITEMS,
                "cancel stopped the baseline"
            );
        }
    }
    assert_eq!(versions(&app).await.len(), 1);
}

async fn a_killed_worker_s_job_resumes_and_makes_one_version(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| config.worker.lease_secs = 1).await;
    script_optimizer(&optimizer, vec![FIRST, SECOND, BLAND]);
    target.set_latency(Duration::from_millis(20));
    let created = start(&app, request("opro", json!({"concurrency": 2}))).await;
    let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));
    // Killed inside the second iteration, once its proposal is saved.
    kill_after(&app, &created, 2).await;
    let before = get(&app, &created).await;
    assert_eq!(
        before["iterations"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );
    let calls_before = target.request_count();
    resume(&app).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(app.get(&job).await.body["attempts"], 2);
    // Resumed, not restarted: the baseline and iteration 1 were not scored
    // again, nor iteration 2 proposed again.
    assert_eq!(
        done["iterations"].as_array().map(Vec::len),
        Some(4),
        "{done}"
    );
    assert_eq!(optimizer.request_count(), 4);
    // Only iteration 2's scoring and iteration 3 were left: 10 calls each.
    assert!(
        target.request_count() - calls_before <= 20,
        "{}",
        target.request_count() - calls_before
    );
    assert!(template_of(&done["best"]).contains("GENERAL"));
    let all = versions(&app).await;
    assert_eq!(all.len(), 2, "exactly one result version");
    assert_eq!(all[0]["metadata"]["optimization_id"], created["id"]);
}

/// Runs a worker on the job and kills it once `iterations` are saved.
pub(crate) async fn kill_after(app: &TestApp, created: &Value, iterations: usize) {
    let first = worker(app);
    let killed = tokio::spawn(async move { first.run_once().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never got there");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = get(app, created).await;
        if now["iterations"].as_array().map_or(0, Vec::len) >= iterations {
            break;
        }
    }
    killed.abort();
    let _ = killed.await;
}

/// Another worker takes the job over once the dead one's lease expires.
pub(crate) async fn resume(app: &TestApp) {
    let second = worker(app);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !matches!(second.run_once().await.expect("worker"), Ran::Job(..)) {
        assert!(tokio::time::Instant::now() < deadline, "never taken over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills the worker once the first iteration is saved; another one finishes
/// the job with exactly one result version.
async fn killed_and_resumed(url: String, strategy: &str) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| config.worker.lease_secs = 1).await;
    script_optimizer(&optimizer, vec![SECOND, BLAND]);
    target.set_latency(Duration::from_millis(20));
    let positives = train_seqs()
        .iter()
        .filter(|s| label_of(**s) == "positive")
        .count();
    let created = start(
        &app,
        for_strategy(
            strategy,
            json!({"concurrency": 2, "max_iterations": 2, "num_demos": positives + 1}),
        ),
    )
    .await;
    kill_after(&app, &created, 1).await;
    resume(&app).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{strategy}: {done}");
    let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));
    assert_eq!(app.get(&job).await.body["attempts"], 2);
    assert!(close(&done["best"]["val_score"], 1.0), "{strategy}: {done}");
    let all = versions(&app).await;
    assert_eq!(all.len(), 2, "{strategy}: exactly one result version");
    assert_eq!(all[0]["metadata"]["optimization_id"], created["id"]);
    assert_eq!(all[0]["metadata"]["strategy"], strategy);
}

async fn a_killed_critique_job_resumes_with_one_version(url: String) {
    killed_and_resumed(url, "critique").await;
}

async fn a_killed_fewshot_job_resumes_with_one_version(url: String) {
    killed_and_resumed(url, "fewshot").await;
}

async fn a_killed_joint_job_resumes_with_one_version(url: String) {
    killed_and_resumed(url, "joint").await;
}

async fn events_stream_each_iteration(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![SECOND, BLAND]);
    let created = start(&app, request("opro", json!({"max_iterations": 2}))).await;
    drain(&worker(&app)).await;
    let base = app.serve().await;
    let job = created["job_id"].as_str().expect("job");
    let body = reqwest::Client::new()
        .get(format!("{base}/v1/jobs/{job}/events"))
        .bearer_auth(crate::support::ADMIN_KEY)
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("body");
    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let event = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((event.to_owned(), serde_json::from_str(data).ok()?))
        })
        .collect();
    let iterations: Vec<&Value> = events
        .iter()
        .filter(|(e, _)| e == "iteration")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(iterations.len(), 2, "{body}");
    assert_eq!(iterations[0]["iteration"], 1);
    assert!(close(&iterations[0]["best_val_score"], 1.0), "{body}");
    assert_eq!(iterations[1]["iteration"], 2);
    // Each as it was when the iteration completed.
    assert!(
        iterations[1]["calls"].as_u64() > iterations[0]["calls"].as_u64(),
        "{body}"
    );
    assert_eq!(
        iterations[1]["candidates"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(events.last().map(|(e, _)| e.as_str()), Some("done"));
}

/// The guarantees the job's last step leans on, driven through the store as
/// a worker would, with cancels through HTTP: only the lease holder writes,
/// a cancel that came first means no version, a result written first makes
/// a late cancel a 409, and finishing twice writes one version.
async fn only_the_lease_holder_finishes_and_cancel_and_result_never_cross(url: String) {
    use promptreg::domain::optimization::OptimizationState;
    use promptreg::store::StoreError;
    let Setup { app, .. } = setup(&url, |_| {}).await;
    // A second connection to the same database, as another worker has.
    let store = promptreg::store::connect(&url, 2).await.expect("store");
    let project = store.get_project("default").await.expect("project").id;
    let name = promptreg::domain::PromptName::parse("sentiment").expect("name");
    let result = || {
        let content = promptreg::domain::PromptContent {
            body: promptreg::domain::content::PromptBody::Text("GENERAL {{text}}".into()),
            engine: promptreg::domain::Engine::Handlebars,
            model_config: serde_json::Map::new(),
            input_schema: None,
            output_schema: None,
        };
        let version = promptreg::store::NewVersion {
            content,
            variables: vec!["text".to_owned()],
            message: None,
            metadata: serde_json::Map::new(),
            version: None,
            bump: None,
            parent: Some(semver::Version::new(1, 0, 0)),
            expected_latest: None,
            labels: Vec::new(),
        };
        Some((
            project,
            name.clone(),
            version,
            promptreg::domain::auth::Actor::system(),
        ))
    };
    let state = OptimizationState::default();
    let id =
        |created: &Value| uuid::Uuid::parse_str(created["id"].as_str().expect("id")).expect("uuid");
    // Queued, then claimed by `owner` as a worker would.
    let start_claimed = |owner: &'static str| {
        let (app, store) = (&app, &store);
        async move {
            let created = start(app, for_strategy("fewshot", json!({}))).await;
            let claimed = store
                .claim_job(owner, Duration::from_secs(30))
                .await
                .expect("claim")
                .expect("a job");
            assert_eq!(
                claimed.id.to_string(),
                created["job_id"].as_str().expect("job")
            );
            created
        }
    };

    // Cancelled first: the holder can no longer finish, and no version appears.
    let first = start_claimed("w1").await;
    let not_held = store
        .save_optimization_state(id(&first), "w2", &state, 0)
        .await;
    assert!(
        matches!(not_held, Err(StoreError::JobNotHeld)),
        "{not_held:?}"
    );
    store
        .save_optimization_state(id(&first), "w1", &state, 0)
        .await
        .expect("the holder saves");
    let job = first["job_id"].as_str().expect("job");
    let cancel = app.post(&format!("/v1/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let refused = store
        .finish_optimization(id(&first), "w1", &state, result())
        .await;
    assert!(
        matches!(refused, Err(StoreError::JobNotHeld)),
        "{refused:?}"
    );
    assert_eq!(versions(&app).await.len(), 1);

    // Result first: finishing again writes no second version, and a late
    // cancel is refused.
    let second = start_claimed("w1").await;
    let other = store
        .finish_optimization(id(&second), "w2", &state, result())
        .await;
    assert!(matches!(other, Err(StoreError::JobNotHeld)), "{other:?}");
    let made = store
        .finish_optimization(id(&second), "w1", &state, result())
        .await
        .expect("finish")
        .expect("a version");
    let again = store
        .finish_optimization(id(&second), "w1", &state, result())
        .await
        .expect("finish again");
    assert_eq!(again.as_ref(), Some(&made));
    assert_eq!(versions(&app).await.len(), 2);
    let job = second["job_id"].as_str().expect("job");
    let late = app.post(&format!("/v1/jobs/{job}/cancel"), json!({})).await;
    late.assert_problem(409, "job_finished");
    let shown = get(&app, &second).await;
    assert_eq!(shown["result_version"], made.to_string());
}

async fn bad_optimization_requests_name_the_problem(url: String) {
    let Setup { app, .. } = setup(&url, |_| {}).await;
    let fields = |response: &crate::support::TestResponse| {
        response.assert_problem(422, "validation_failed");
        response.error_fields()
    };
    let bad = app
        .post(
            "/v1/optimizations",
            request(
                "opro",
                json!({
                    "optimizer": null,
                    "split": {"train": 1.5},
                    "max_iterations": 0,
                    "target_score": 2,
                    "budget": {"max_calls": 0},
                    "target": {"provider": "nowhere"},
                    "promote_to": "Bad Label"
                }),
            ),
        )
        .await;
    let mut found = fields(&bad);
    found.sort();
    assert_eq!(
        found,
        vec![
            "budget.max_calls",
            "max_iterations",
            "optimizer",
            "promote_to",
            "split.train",
            "target.provider",
            "target_score"
        ],
        "{}",
        bad.body
    );
    // No prices: the calls would cost nothing and the limit never bite.
    let free = app
        .post(
            "/v1/optimizations",
            request("opro", json!({"budget": {"max_cost_usd": 1.0}})),
        )
        .await;
    assert_eq!(
        fields(&free),
        vec!["budget.max_cost_usd", "budget.max_cost_usd"]
    );
    let judge = app
        .post(
            "/v1/optimizations",
            request(
                "opro",
                json!({"metric": {"name": "llm_judge", "params": {}}}),
            ),
        )
        .await;
    assert_eq!(fields(&judge), vec!["metric"]);
    let unknown = app
        .post("/v1/optimizations", request("annealing", json!({})))
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    let missing = app
        .post(
            "/v1/optimizations",
            request("opro", json!({"prompt": "nope"})),
        )
        .await;
    missing.assert_problem(404, "prompt_not_found");
    app.post("/v1/datasets", json!({"name": "tiny"})).await;
    let tiny = app
        .post(
            "/v1/optimizations",
            request("opro", json!({"dataset": "tiny"})),
        )
        .await;
    assert_eq!(fields(&tiny), vec!["dataset"]);
    let none = app
        .get(&format!("/v1/optimizations/{}", uuid::Uuid::now_v7()))
        .await;
    none.assert_problem(404, "optimization_not_found");
}

async fn the_cli_optimizes_and_waits(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = setup(&url, |_| {}).await;
    script_optimizer(&optimizer, vec![SECOND, BLAND]);
    let server = app.serve().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = worker(&app);
    let stop = shutdown.clone();
    let background = tokio::spawn(async move { running.run(stop).await });
    let seed = SEED.to_string();
    let (code, report) = crate::cli::cli_json(
        &server,
        &[
            "optimize",
            "sentiment",
            "--ref",
            "1.0.0",
            "--dataset",
            "reviews",
            "--metric",
            "exact_match",
            "--metric-params",
            r#"{"trim": true}"#,
            "--strategy",
            "opro",
            "--target-provider",
            "target",
            "--optimizer-provider",
            "optimizer",
            "--seed",
            &seed,
            "--max-iterations",
            "2",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["stop_reason"], "max_iterations");
    assert!(report["result_version"].is_string(), "{report}");
    assert!(close(&report["best"]["val_score"], 1.0), "{report}");
    assert_eq!(
        report["metric"],
        json!({"name": "exact_match", "params": {"trim": true}})
    );
    // A usage error is the CLI's, before any request.
    let usage = crate::cli::cli(&server, &["optimize", "sentiment"]).await;
    assert_eq!(usage.status.code(), Some(2));
    shutdown.cancel();
    background.await.expect("worker stops");
}

backend_url_tests!(
    the_cli_optimizes_and_waits,
    opro_finds_a_better_prompt_and_validation_decides,
    critique_diagnoses_failures_and_edits,
    fewshot_bootstraps_and_fills_demonstrations,
    a_target_score_stops_early_and_promotion_follows_the_rules,
    the_budget_stops_the_job_where_it_should,
    a_cost_budget_stops_the_job_within_one_batch,
    cancel_stops_the_job_at_any_step_and_creates_no_version,
    a_killed_worker_s_job_resumes_and_makes_one_version,
    events_stream_each_iteration,
    a_killed_critique_job_resumes_with_one_version,
    a_killed_fewshot_job_resumes_with_one_version,
    a_killed_joint_job_resumes_with_one_version,
    only_the_lease_holder_finishes_and_cancel_and_result_never_cross,
    bad_optimization_requests_name_the_problem,
);
