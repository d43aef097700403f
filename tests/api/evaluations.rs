//! Evaluations end to end against a fake provider: the worker, retries, a
//! killed worker, cancellation, the event stream, comparison and gates.

use std::collections::HashSet;
use std::time::Duration;

use promptreg::providers::ProviderKind;
use promptreg::worker::{Ran, Worker};
use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{app_with, enc, test_config, TestApp};

/// Questions and answers; the fake knows the capital only when asked "briefly".
const CAPITALS: [(&str, &str); 8] = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
];

struct Setup {
    app: TestApp,
    fake: FakeLlm,
}

/// An app whose provider `fake` is the fake LLM (OpenAI wire format), with
/// prompt `geo` (1.0.0 vague, 1.0.1 asks briefly) and dataset `capitals`.
async fn setup(url: &str, tune: impl FnOnce(&mut promptreg::config::Config)) -> Setup {
    let fake = FakeLlm::start().await;
    fake.set_default(|request| {
        let asked = request.last_user_text().unwrap_or_default();
        if asked.contains("You are grading") {
            let score = if asked.contains("STRICT") { 0.25 } else { 0.75 };
            return Reply::text(json!({"score": score, "reason": "close enough"}).to_string());
        }
        let answer = CAPITALS
            .iter()
            .find(|(country, _)| asked.contains(country) && asked.contains("briefly"))
            .map_or("I am not sure", |(_, capital)| capital);
        Reply::text(answer)
    });
    let mut config = test_config(url);
    let mut provider = fake.config(ProviderKind::Openai);
    provider.prices.insert(
        crate::fake_llm::FAKE_MODEL.to_owned(),
        promptreg::config::ModelPrice {
            input_per_million: 1.0,
            output_per_million: 2.0,
        },
    );
    config.providers.insert("fake".to_owned(), provider);
    config.worker.lease_secs = 30;
    tune(&mut config);
    let app = app_with(config).await;
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    app.seed_version("geo", "Answer briefly: what is the capital of {{country}}?")
        .await;
    app.post("/v1/datasets", json!({"name": "capitals"})).await;
    let items: Vec<Value> = CAPITALS
        .iter()
        .map(|(country, capital)| json!({"input": {"country": country}, "expected": capital}))
        .collect();
    let uploaded = app
        .send(
            axum::http::Request::post("/v1/datasets/capitals/items")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(Value::Array(items).to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    Setup { app, fake }
}

fn worker(app: &TestApp) -> Worker {
    promptreg::app::worker(&app.state)
}

async fn start(app: &TestApp, version: &str, extra: Value) -> Value {
    let mut body = json!({
        "prompt": "geo",
        "ref": version,
        "dataset": "capitals",
        "provider": "fake",
        "metrics": ["exact_match", {"name": "contains"}],
        "concurrency": 4
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = app.post("/v1/evaluations", body).await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.body["status"], "queued");
    created.body
}

/// Runs jobs until none is left.
async fn drain(worker: &Worker) {
    while let Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

async fn results(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/v1/evaluations/{id}/results?limit=100"))
        .await;
    page.body["items"].as_array().cloned().unwrap_or_default()
}

fn assert_each_item_once(results: &[Value]) {
    let ids: HashSet<&str> = results
        .iter()
        .filter_map(|r| r["item_id"].as_str())
        .collect();
    assert_eq!(ids.len(), results.len(), "an item was stored twice");
    assert_eq!(results.len(), CAPITALS.len());
}

async fn an_evaluation_runs_end_to_end(url: String) {
    let Setup { app, fake } = setup(&url, |_| {}).await;
    fake.set_usage(10, 2);
    let created = start(&app, "1.0.1", json!({})).await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        created["progress"],
        json!({"done": 0, "total": CAPITALS.len()})
    );

    drain(&worker(&app)).await;

    let done = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    assert_eq!(done.body["progress"]["done"], CAPITALS.len());
    assert_eq!(done.body["metrics"]["exact_match"]["mean"], 1.0);
    assert_eq!(done.body["metrics"]["exact_match"]["n"], CAPITALS.len());
    assert_eq!(done.body["metrics"]["contains"]["mean"], 1.0);
    assert_eq!(done.body["usage"]["input_tokens"], 80);
    assert_eq!(done.body["usage"]["output_tokens"], 16);
    let cost = done.body["usage"]["cost_usd"].as_f64().expect("cost");
    assert!((cost - (80.0 + 32.0) / 1e6).abs() < 1e-12, "{cost}");

    let results = results(&app, id).await;
    assert_each_item_once(&results);
    assert!(results.iter().all(|r| r["scores"]["exact_match"] == 1.0));
    let prompts: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.last_user_text())
        .collect();
    assert!(prompts.contains(&"Answer briefly: what is the capital of Peru?".to_owned()));

    let job = app
        .get(&format!(
            "/v1/jobs/{}",
            created["job_id"].as_str().expect("job")
        ))
        .await;
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["attempts"], 1);
}

async fn retries_lose_and_duplicate_nothing(url: String) {
    let Setup { app, fake } = setup(&url, |config| {
        if let Some(p) = config.providers.get_mut("fake") {
            p.timeout = 0.5;
            p.max_retries = 4;
        }
    })
    .await;
    fake.push(Reply::Status(429, Some(0)));
    fake.push(Reply::Status(500, None));
    fake.push(Reply::delayed(
        Duration::from_secs(2),
        Reply::text("too late"),
    ));
    fake.push(Reply::Status(503, None));
    let created = start(&app, "1.0.1", json!({"concurrency": 1})).await;
    drain(&worker(&app)).await;

    let id = created["id"].as_str().expect("id");
    let done = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    assert_eq!(done.body["errors"], 0, "{}", done.body);
    assert_eq!(done.body["metrics"]["exact_match"]["mean"], 1.0);
    assert_each_item_once(&results(&app, id).await);
    assert_eq!(fake.request_count(), CAPITALS.len() + 4);
}

async fn a_killed_worker_s_evaluation_is_finished_by_another(url: String) {
    let Setup { app, fake } = setup(&url, |config| config.worker.lease_secs = 1).await;
    fake.set_latency(Duration::from_millis(150));
    let created = start(&app, "1.0.1", json!({"concurrency": 1})).await;
    let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));

    let first = worker(&app);
    let killed = tokio::spawn(async move { first.run_once().await });
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if app.get(&job).await.body["progress"]["done"].as_i64() >= Some(3) {
            break;
        }
    }
    killed.abort();
    let _ = killed.await;
    let stopped_at = app.get(&job).await.body["progress"]["done"]
        .as_i64()
        .expect("done");
    assert!(stopped_at < CAPITALS.len() as i64);

    // Another worker takes the job over once the dead one's lease expires.
    let second = worker(&app);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ran::Job(..) = second.run_once().await.expect("worker") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = app.get(&job).await;
    assert_eq!(finished.body["status"], "succeeded", "{}", finished.body);
    assert_eq!(finished.body["attempts"], 2);
    let id = created["id"].as_str().expect("id");
    assert_each_item_once(&results(&app, id).await);
    // Only the items the first worker had not stored were asked again (at
    // most one call of the killed worker was in flight).
    assert!(
        fake.request_count() <= CAPITALS.len() + 1,
        "{}",
        fake.request_count()
    );
}

async fn cancel_stops_a_job_at_its_next_step(url: String) {
    let Setup { app, fake } = setup(&url, |_| {}).await;
    fake.set_latency(Duration::from_millis(200));

    // A queued job is cancelled at once.
    let queued = start(&app, "1.0.1", json!({})).await;
    let queued_job = queued["job_id"].as_str().expect("job").to_owned();
    let cancelled = app
        .post(&format!("/v1/jobs/{queued_job}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    app.post(&format!("/v1/jobs/{queued_job}/cancel"), json!({}))
        .await
        .assert_problem(409, "job_finished");

    // A running one stops between items.
    let created = start(&app, "1.0.1", json!({"concurrency": 1})).await;
    let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));
    let running = worker(&app);
    let task = tokio::spawn(async move { running.run_once().await });
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if app.get(&job).await.body["progress"]["done"].as_i64() >= Some(1) {
            break;
        }
    }
    let asked = app.post(&format!("{job}/cancel"), json!({})).await;
    assert_eq!(asked.body["cancel_requested"], true, "{}", asked.body);
    let ran = task.await.expect("task").expect("worker");
    assert!(matches!(ran, Ran::Job(..)));
    let stopped = app.get(&job).await;
    assert_eq!(stopped.body["status"], "cancelled", "{}", stopped.body);
    let done = stopped.body["progress"]["done"].as_i64().expect("done");
    assert!(done < CAPITALS.len() as i64, "{done}");
}

async fn events_stream_from_start_to_end(url: String) {
    let Setup { app, fake } = setup(&url, |_| {}).await;
    fake.set_latency(Duration::from_millis(30));
    let server = app.serve().await;
    let created = start(&app, "1.0.1", json!({"concurrency": 2})).await;
    let events_url = format!(
        "{server}/v1/jobs/{}/events",
        created["job_id"].as_str().expect("job")
    );
    let follow = {
        let url = events_url.clone();
        tokio::spawn(async move { read_events(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    drain(&worker(&app)).await;
    let events = tokio::time::timeout(Duration::from_secs(20), follow)
        .await
        .expect("the stream closes after `done`")
        .expect("task");
    check_events(&events);

    // Joining after the end still replays the items and ends with `done`.
    let late = read_events(&events_url).await;
    check_events(&late);
}

async fn read_events(url: &str) -> Vec<(String, Value)> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(crate::support::ADMIN_KEY)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("stream");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = serde_json::from_str(v.trim()).ok();
            }
        }
        if let (Some(name), Some(data)) = (name, data) {
            events.push((name, data));
        }
    }
    events
}

fn check_events(events: &[(String, Value)]) {
    let (last, data) = events.last().expect("events");
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(data["status"], "succeeded");
    let items = events.iter().filter(|(n, _)| n == "item").count();
    assert_eq!(items, CAPITALS.len(), "{events:?}");
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        progress.last().map(|p| p["done"].clone()),
        Some(json!(CAPITALS.len()))
    );
}

async fn compare_pairs_items_of_one_dataset(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let a = start(&app, "1.0.0", json!({})).await;
    let b = start(&app, "1.0.1", json!({})).await;
    drain(&worker(&app)).await;
    let (a, b) = (a["id"].as_str().expect("a"), b["id"].as_str().expect("b"));

    let compared = app
        .get(&format!("/v1/evaluations/compare?a={a}&b={b}"))
        .await;
    assert_eq!(compared.status, 200, "{}", compared.body);
    let exact = &compared.body["metrics"]["exact_match"];
    assert_eq!(exact["mean_diff"], 1.0);
    assert_eq!(exact["wins"], CAPITALS.len());
    assert_eq!(exact["ties"], 0);
    assert_eq!(exact["losses"], 0);
    // Exact sign-flip test over 8 pairs all +1: 2 of 256 arrangements are as extreme.
    assert!(
        (exact["p_value"].as_f64().expect("p") - 2.0 / 256.0).abs() < 1e-9,
        "{exact}"
    );

    app.post("/v1/datasets", json!({"name": "other"})).await;
    let other = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": "1.0.1", "dataset": "other", "provider": "fake", "metrics": ["exact_match"]}),
        )
        .await;
    let c = other.body["id"].as_str().expect("c");
    app.get(&format!("/v1/evaluations/compare?a={a}&b={c}"))
        .await
        .assert_problem(422, "validation_failed");
}

/// Each `errors` entry of a `gate_failed` names its rule (metric and
/// bound), the dataset and why the version fails it.
async fn gate_failures_name_each_rule_and_why(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let gate = app
        .put(
            "/v1/prompts/geo/gates/production",
            json!({"dataset": "capitals", "rules": [
                {"metric": "exact_match", "min": 0.9},
                {"metric": "token_f1", "min": 0.5},
                {"metric": "contains", "min": 0.0, "max": 0.5}
            ]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    let messages = |problem: &Value| -> Vec<String> {
        problem["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    let unevaluated = app.set_label("geo", "production", "1.0.0").await;
    let problem = unevaluated.assert_problem(412, "gate_failed");
    let why = "version 1.0.0 has no succeeded evaluation on dataset \"capitals\"";
    assert_eq!(
        messages(problem),
        [
            format!("exact_match ≥ 0.9: {why}"),
            format!("token_f1 ≥ 0.5: {why}"),
            format!("0 ≤ contains ≤ 0.5: {why}"),
        ]
    );
    assert_eq!(
        problem["detail"],
        format!("label \"production\" is gated: {why}")
    );

    // 1.0.0 answers "I am not sure": exact_match and contains score 0, and
    // the evaluation computes no token_f1 at all.
    let evaluation = start(&app, "1.0.0", json!({})).await;
    let id = evaluation["id"].as_str().expect("id");
    drain(&worker(&app)).await;
    let broken = app.set_label("geo", "production", "1.0.0").await;
    let problem = broken.assert_problem(412, "gate_failed");
    assert_eq!(broken.error_fields(), ["rules[0]", "rules[1]"]);
    assert_eq!(
        messages(problem),
        [
            format!("exact_match ≥ 0.9: version 1.0.0 scored a mean of 0.0000 on dataset \"capitals\" (evaluation {id})"),
            format!("token_f1 ≥ 0.5: evaluation {id} of version 1.0.0 on dataset \"capitals\" has no token_f1 scores"),
        ]
    );
    assert_eq!(
        problem["detail"],
        format!("label \"production\" is gated: version 1.0.0 breaks 2 of 3 rules on dataset \"capitals\" (evaluation {id})")
    );
}

async fn a_gate_blocks_then_allows_a_promotion(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let gate = app
        .put(
            "/v1/prompts/geo/gates/production",
            json!({"dataset": "capitals", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);

    let blocked = app.set_label("geo", "production", "1.0.1").await;
    let problem = blocked.assert_problem(412, "gate_failed");
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("no succeeded evaluation"));

    start(&app, "1.0.0", json!({})).await;
    drain(&worker(&app)).await;
    let still = app.set_label("geo", "production", "1.0.0").await;
    still.assert_problem(412, "gate_failed");
    assert_eq!(still.error_fields(), vec!["rules[0]".to_owned()]);

    start(&app, "1.0.1", json!({})).await;
    drain(&worker(&app)).await;
    let allowed = app.set_label("geo", "production", "1.0.1").await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    // Other labels are not gated.
    assert_eq!(app.set_label("geo", "staging", "1.0.0").await.status, 200);
    let gates = app.get("/v1/prompts/geo/gates").await;
    assert_eq!(gates.body["items"][0]["label"], "production");
}

async fn bad_evaluation_requests_name_the_problem(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let base = json!({"prompt": "geo", "ref": "1.0.1", "dataset": "capitals", "provider": "fake", "metrics": ["exact_match"]});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    app.post("/v1/evaluations", with("provider", json!("nope")))
        .await
        .assert_problem(422, "provider_not_found");
    let bad_metric = app
        .post(
            "/v1/evaluations",
            with("metrics", json!(["exact_match", "vibes"])),
        )
        .await;
    bad_metric.assert_problem(422, "validation_failed");
    assert_eq!(bad_metric.error_fields(), vec!["metrics[1]".to_owned()]);
    app.post("/v1/evaluations", with("dataset", json!("nope")))
        .await
        .assert_problem(404, "dataset_not_found");
    app.post("/v1/evaluations", with("ref", json!("9.9.9")))
        .await
        .assert_problem(404, "version_not_found");
    app.post("/v1/evaluations", with("concurrency", json!(0)))
        .await
        .assert_problem(422, "validation_failed");
    app.get(&format!("/v1/evaluations/{}", uuid::Uuid::nil()))
        .await
        .assert_problem(404, "evaluation_not_found");

    let providers = app.get("/v1/providers").await;
    assert_eq!(providers.status, 200, "{}", providers.body);
    assert_eq!(providers.body["items"][0]["name"], "fake");
    assert!(
        !providers.body.to_string().contains("test-key"),
        "{}",
        providers.body
    );
    let _ = enc("x");
}

async fn scores_answer_at_once(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let scored = app
        .post(
            "/v1/scores",
            json!({
                "metrics": ["exact_match", "icontains", {"name": "regex", "params": {"pattern": "^P"}}],
                "items": [
                    {"output": "Paris", "expected": "Paris"},
                    {"output": "it is paris", "expected": "Paris"}
                ]
            }),
        )
        .await;
    assert_eq!(scored.status, 200, "{}", scored.body);
    assert_eq!(scored.body["items"][0]["scores"]["exact_match"], 1.0);
    assert_eq!(scored.body["items"][1]["scores"]["exact_match"], 0.0);
    assert_eq!(scored.body["items"][1]["scores"]["icontains"], 1.0);
    assert_eq!(scored.body["items"][1]["scores"]["regex"], 0.0);
    assert_eq!(scored.body["metrics"]["exact_match"]["mean"], 0.5);
    assert_eq!(scored.body["metrics"]["exact_match"]["n"], 2);
    let bad = app
        .post(
            "/v1/scores",
            json!({"metrics": [{"name": "regex", "params": {"pattern": "("}}], "items": []}),
        )
        .await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(bad.error_fields(), vec!["metrics[0]".to_owned()]);
}

async fn the_cli_evaluates_waits_and_checks_gates(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    app.put(
        "/v1/prompts/geo/gates/production",
        json!({"dataset": "capitals", "rules": [{"metric": "exact_match", "min": 0.9}]}),
    )
    .await;
    let server = app.serve().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = worker(&app);
    let stop = shutdown.clone();
    let background = tokio::spawn(async move { running.run(stop).await });

    let args = |version: &'static str| {
        [
            "evaluate",
            "geo",
            "--ref",
            version,
            "--dataset",
            "capitals",
            "--provider",
            "fake",
            "--metric",
            "exact_match,contains",
            "--wait",
        ]
    };
    let (code, report) = crate::cli::cli_json(&server, &args("1.0.0")).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["evaluation"]["status"], "succeeded");
    let failures = report["gate_failures"].to_string();
    assert!(
        failures.contains("production") && failures.contains("exact_match"),
        "{failures}"
    );

    let (code, report) = crate::cli::cli_json(&server, &args("1.0.1")).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["evaluation"]["metrics"]["exact_match"]["mean"], 1.0);
    assert_eq!(report["gate_failures"], json!([]));

    shutdown.cancel();
    background.await.expect("worker stops");
}

async fn an_llm_judge_scores_with_a_versioned_registry_prompt(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    let judge =
        json!({"name": "llm_judge", "params": {"rubric": "correctness", "provider": "fake"}});
    let first = start(
        &app,
        "1.0.1",
        json!({"metrics": ["exact_match", judge.clone()]}),
    )
    .await;
    assert_eq!(
        first["metric_specs"][1]["params"]["prompt_version"],
        "1.0.0"
    );
    drain(&worker(&app)).await;
    let id = first["id"].as_str().expect("id");
    let done = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    assert_eq!(done.body["metrics"]["llm_judge_correctness"]["mean"], 0.75);
    let result = &results(&app, id).await[0];
    assert_eq!(
        result["details"]["llm_judge_correctness"]["reason"],
        "close enough"
    );
    assert_eq!(
        result["details"]["llm_judge_correctness"]["prompt"],
        "judges/correctness"
    );

    // The judge prompt is an ordinary prompt: a team edits it, and the next
    // evaluation pins and uses the new version.
    let stored = app
        .get("/v1/prompts/judges%2Fcorrectness/versions/latest")
        .await;
    assert!(stored.body["template"]
        .as_str()
        .unwrap_or_default()
        .contains("{{expected}}"));
    app.seed_version(
        "judges/correctness",
        "STRICT. You are grading {{output}} against {{expected}}.",
    )
    .await;
    let second = start(&app, "1.0.1", json!({"metrics": [judge]})).await;
    assert_eq!(
        second["metric_specs"][0]["params"]["prompt_version"],
        "1.0.1"
    );
    drain(&worker(&app)).await;
    let id = second["id"].as_str().expect("id");
    let strict = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(
        strict.body["metrics"]["llm_judge_correctness"]["mean"],
        0.25
    );

    // Gates may require a judge's score; /v1/scores cannot run judges.
    let gate = app
        .put(
            "/v1/prompts/geo/gates/production",
            json!({"dataset": "capitals", "rules": [{"metric": "llm_judge_correctness", "min": 0.5}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    app.set_label("geo", "production", "1.0.1")
        .await
        .assert_problem(412, "gate_failed");
    let refused = app
        .post(
            "/v1/scores",
            json!({"metrics": [{"name": "llm_judge", "params": {"rubric": "relevance", "provider": "fake"}}], "items": []}),
        )
        .await;
    refused.assert_problem(422, "validation_failed");
    let bad = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "dataset": "capitals", "provider": "fake", "ref": "1.0.1",
                   "metrics": [{"name": "llm_judge", "params": {"rubric": "custom", "provider": "fake"}}]}),
        )
        .await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(bad.error_fields(), vec!["metrics[0]".to_owned()]);
}

async fn workers_sharing_a_database_never_run_one_job_twice(url: String) {
    let Setup { app, fake } = setup(&url, |_| {}).await;
    fake.set_latency(Duration::from_millis(20));
    let mut created = Vec::new();
    for _ in 0..4 {
        created.push(start(&app, "1.0.1", json!({"concurrency": 2})).await);
    }
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let worker = worker(&app);
            tokio::spawn(async move { drain(&worker).await })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    for evaluation in &created {
        let job = app
            .get(&format!(
                "/v1/jobs/{}",
                evaluation["job_id"].as_str().expect("job")
            ))
            .await;
        assert_eq!(job.body["status"], "succeeded", "{}", job.body);
        assert_eq!(job.body["attempts"], 1, "claimed once: {}", job.body);
        assert_each_item_once(&results(&app, evaluation["id"].as_str().expect("id")).await);
    }
    assert_eq!(fake.request_count(), 4 * CAPITALS.len());
}

async fn an_evaluation_whose_every_call_fails_fails(url: String) {
    let Setup { app, fake: _fake } = setup(&url, |_| {}).await;
    // `walk` (from the test config) points at a port nothing listens on.
    let created = start(&app, "1.0.1", json!({"provider": "walk"})).await;
    drain(&worker(&app)).await;
    let id = created["id"].as_str().expect("id");
    let failed = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(failed.body["status"], "failed", "{}", failed.body);
    let error = failed.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("no item produced an output"), "{error}");
    assert_eq!(failed.body["errors"], CAPITALS.len());
    let job = app
        .get(&format!(
            "/v1/jobs/{}",
            created["job_id"].as_str().expect("job")
        ))
        .await;
    assert_eq!(
        job.body["attempts"], 1,
        "a permanent failure is not retried"
    );
}

/// The list sums results in the database; each item must read as the
/// evaluation's own page does, which sums them item by item.
async fn the_list_sums_each_evaluation_as_its_own_page_does(url: String) {
    let Setup { app, fake } = setup(&url, |_| {}).await;
    fake.set_usage(10, 2);
    // Three capitals are known however the question is put: scores vary.
    fake.set_default(|request| {
        let asked = request.last_user_text().unwrap_or_default();
        let answer = CAPITALS
            .iter()
            .enumerate()
            .find(|(i, (country, _))| {
                asked.contains(country) && (*i < 3 || asked.contains("briefly"))
            })
            .map_or("I am not sure", |(_, (_, capital))| capital);
        Reply::text(answer)
    });
    let vague = start(&app, "1.0.0", json!({})).await;
    let brief = start(
        &app,
        "1.0.1",
        json!({"metrics": ["exact_match", "token_f1"]}),
    )
    .await;
    drain(&worker(&app)).await;

    let list = app.get("/v1/evaluations?status=succeeded").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", list.body);
    assert_eq!(items[0]["id"], brief["id"]);
    assert_eq!(items[1]["id"], vague["id"]);
    for item in items {
        let id = item["id"].as_str().expect("id");
        let single = app.get(&format!("/v1/evaluations/{id}")).await;
        let (listed, read) = (&item["metrics"], &single.body["metrics"]);
        let metrics = read.as_object().expect("metrics");
        assert_eq!(
            listed.as_object().map(|m| m.keys().collect::<Vec<_>>()),
            Some(metrics.keys().collect::<Vec<_>>())
        );
        for (metric, summary) in metrics {
            assert_eq!(listed[metric]["n"], summary["n"], "{metric}");
            for (value, expected) in [
                (&listed[metric]["mean"], &summary["mean"]),
                (&listed[metric]["std"], &summary["std"]),
                (&listed[metric]["ci95"][0], &summary["ci95"][0]),
                (&listed[metric]["ci95"][1], &summary["ci95"][1]),
            ] {
                let (value, expected) = (
                    value.as_f64().expect("a number"),
                    expected.as_f64().expect("a number"),
                );
                assert!(
                    (value - expected).abs() < 1e-9,
                    "{metric}: {value} against {expected}"
                );
            }
        }
        for field in ["usage", "errors", "progress", "status", "finished_at"] {
            if field == "usage" {
                assert_eq!(
                    item[field]["input_tokens"],
                    single.body[field]["input_tokens"]
                );
                assert_eq!(
                    item[field]["output_tokens"],
                    single.body[field]["output_tokens"]
                );
                let (listed, read) = (
                    item[field]["cost_usd"].as_f64().expect("cost"),
                    single.body[field]["cost_usd"].as_f64().expect("cost"),
                );
                assert!((listed - read).abs() < 1e-12, "{listed} against {read}");
            } else {
                assert_eq!(item[field], single.body[field], "{field}");
            }
        }
    }
    let vague = &items[1];
    assert_eq!(vague["metrics"]["exact_match"]["mean"], 0.375);
    assert_eq!(vague["metrics"]["exact_match"]["n"], CAPITALS.len());
    assert!(vague["metrics"]["exact_match"]["std"]
        .as_f64()
        .is_some_and(|s| s > 0.3));
    assert_eq!(vague["usage"]["input_tokens"], 80);
    assert_eq!(items[0]["metrics"]["exact_match"]["mean"], 1.0);
}

backend_url_tests!(
    the_list_sums_each_evaluation_as_its_own_page_does,
    workers_sharing_a_database_never_run_one_job_twice,
    an_llm_judge_scores_with_a_versioned_registry_prompt,
    an_evaluation_whose_every_call_fails_fails,
    the_cli_evaluates_waits_and_checks_gates,
    an_evaluation_runs_end_to_end,
    retries_lose_and_duplicate_nothing,
    a_killed_worker_s_evaluation_is_finished_by_another,
    cancel_stops_a_job_at_its_next_step,
    events_stream_from_start_to_end,
    compare_pairs_items_of_one_dataset,
    a_gate_blocks_then_allows_a_promotion,
    gate_failures_name_each_rule_and_why,
    bad_evaluation_requests_name_the_problem,
    scores_answer_at_once,
    a_render_bomb_in_an_evaluation_stops_at_the_render_limit,
);

/// Renders inside an evaluation are bounded as on the API: the item's
/// error says which limit, and the provider is never called for it.
async fn a_render_bomb_in_an_evaluation_stops_at_the_render_limit(url: String) {
    // Time enough that the steps run out first, however slow the machine.
    let Setup { app, fake } = setup(&url, |config| config.render.timeout_ms = 120_000).await;
    app.seed_prompt("bomb").await;
    app.seed_version(
        "bomb",
        "{{#each a}}{{#each ../a}}{{#each ../../a}}{{/each}}{{/each}}{{/each}}",
    )
    .await;
    app.post("/v1/datasets", json!({"name": "bombs"})).await;
    let uploaded = app
        .post(
            "/v1/datasets/bombs/items",
            json!([{"input": {"a": (0..600).collect::<Vec<_>>()}, "expected": "x"}]),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let created = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "bomb", "ref": "1.0.0", "dataset": "bombs",
                   "provider": "fake", "metrics": ["exact_match"]}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["id"].as_str().expect("id");
    drain(&worker(&app)).await;
    let results = results(&app, id).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("render:") && error.contains("1000000 steps"),
        "{error}"
    );
    assert!(fake.requests().is_empty(), "the provider was called");
}
