//! A job runner that panics fails its job, not the worker: the job ends
//! `failed` with a generic reason and the worker goes on to the next job.
//! The panicking runner serves the optimization kind here, so both jobs are
//! queued through the HTTP surface; evaluations keep their real runner.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use promptreg::domain::jobs::{Job, JobStatus, EVALUATION_JOB, OPTIMIZATION_JOB};
use promptreg::eval::runner::EvaluationRunner;
use promptreg::providers::ProviderKind;
use promptreg::worker::{Finished, JobError, JobRunner, Ran, StopSignal, Worker, RUNNER_PANICKED};
use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::fake_llm::{FakeLlm, Reply};
use crate::support::{app_with, test_config, TestApp};

/// A runner with a bug: it panics on every job it gets.
struct Panics;

#[async_trait]
impl JobRunner for Panics {
    async fn run(&self, _job: &Job, _stop: &StopSignal) -> Result<Finished, JobError> {
        panic!("index out of bounds: the len is 0 but the index is 0");
    }
}

/// The real evaluation runner, and `Panics` for optimizations, over a
/// connection of its own to the app's database, as a separate worker has.
async fn worker(url: &str, app: &TestApp) -> Worker {
    let state = &app.state;
    let store = promptreg::store::connect(url, 2).await.expect("store");
    let evaluations: Arc<dyn JobRunner> = Arc::new(EvaluationRunner::new(
        store.clone(),
        state.renderer.clone(),
        state.providers.clone(),
    ));
    let runners: HashMap<String, Arc<dyn JobRunner>> = [
        (EVALUATION_JOB.to_owned(), evaluations),
        (
            OPTIMIZATION_JOB.to_owned(),
            Arc::new(Panics) as Arc<dyn JobRunner>,
        ),
    ]
    .into_iter()
    .collect();
    Worker::new(
        store,
        runners,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
    )
}

/// An app whose provider `fake` answers every question with `Paris`, with
/// prompt `geo` and a dataset `capitals` of two items.
async fn setup(url: &str) -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start().await;
    fake.set_default(|_| Reply::text("Paris"));
    let mut config = test_config(url);
    config
        .providers
        .insert("fake".to_owned(), fake.config(ProviderKind::Openai));
    let app = app_with(config).await;
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    app.post("/v1/datasets", json!({"name": "capitals"})).await;
    let items = json!([
        {"input": {"country": "France"}, "expected": "Paris"},
        {"input": {"country": "Italy"}, "expected": "Rome"},
    ]);
    let uploaded = app
        .send(
            axum::http::Request::post("/v1/datasets/capitals/items")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(items.to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    (app, fake)
}

fn job_id(created: &Value) -> uuid::Uuid {
    created["job_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a job id in {created}"))
}

async fn a_panicking_runner_fails_its_job_and_the_worker_goes_on(url: String) {
    let (app, _fake) = setup(&url).await;
    // Queued first, so claimed first: the job whose runner panics.
    let optimization = app
        .post(
            "/v1/optimizations",
            json!({
                "prompt": "geo",
                "ref": "1.0.0",
                "dataset": "capitals",
                "metric": {"name": "exact_match"},
                "target": {"provider": "fake"},
                "strategy": "fewshot",
            }),
        )
        .await;
    assert_eq!(optimization.status, 202, "{}", optimization.body);
    let evaluation = app
        .post(
            "/v1/evaluations",
            json!({
                "prompt": "geo",
                "ref": "1.0.0",
                "dataset": "capitals",
                "provider": "fake",
                "metrics": ["exact_match"],
            }),
        )
        .await;
    assert_eq!(evaluation.status, 202, "{}", evaluation.body);
    let (panicking, normal) = (job_id(&optimization.body), job_id(&evaluation.body));
    let worker = worker(&url, &app).await;

    let ran = worker
        .run_once()
        .await
        .expect("the worker survives the panic");

    assert_eq!(ran, Ran::Job(panicking, JobStatus::Failed));
    let failed = app.get(&format!("/v1/jobs/{panicking}")).await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    assert_eq!(failed.body["status"], "failed", "{}", failed.body);
    assert_eq!(failed.body["error"], RUNNER_PANICKED, "{}", failed.body);
    assert_eq!(failed.body["attempts"], 1, "{}", failed.body);
    assert!(
        !failed.body.to_string().contains("index out of bounds"),
        "the panic's text stays in the log: {}",
        failed.body
    );
    // Followers of the job see it end with the same reason.
    let events = app.get(&format!("/v1/jobs/{panicking}/events")).await;
    let stream = events.body.as_str().unwrap_or_default();
    assert!(
        stream.contains("event: done")
            && stream.contains(r#""error":"internal_error: the job's runner panicked""#)
            && stream.contains(r#""status":"failed""#),
        "{stream}"
    );

    let ran = worker.run_once().await.expect("worker");

    assert_eq!(ran, Ran::Job(normal, JobStatus::Succeeded));
    let succeeded = app.get(&format!("/v1/jobs/{normal}")).await;
    assert_eq!(succeeded.body["status"], "succeeded", "{}", succeeded.body);
    assert_eq!(succeeded.body["progress"]["done"], 2, "{}", succeeded.body);
    // A panic is a bug, not bad luck: the failed job is not tried again.
    assert_eq!(worker.run_once().await.expect("worker"), Ran::Idle);
}

backend_url_tests!(a_panicking_runner_fails_its_job_and_the_worker_goes_on);
