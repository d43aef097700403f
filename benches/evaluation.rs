//! Evaluation throughput: 1,000 dataset items against a fake provider that
//! answers each call in 50 ms, with concurrency 32. The ideal is
//! 1,000 / 32 × 50 ms ≈ 1.6 s; the target is to finish within 25% of it.
//! Runs the real worker (render, HTTP call, scoring, one stored result per
//! item) on SQLite and, when reachable, on Postgres, three times each.
//!
//! `cargo bench --bench evaluation` (Postgres: TEST_DATABASE_URL, else the
//! local server). Prints a markdown table for docs/benchmarks.md.

#[path = "../tests/api/fake_llm.rs"]
mod fake_llm;

use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request};
use http_body_util::BodyExt;
use promptreg::config::Config;
use promptreg::providers::ProviderKind;
use promptreg::worker::Ran;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tower::ServiceExt;

const ITEMS: usize = 1000;
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: u32 = 32;
const ROUNDS: usize = 3;
const KEY: &str = "pr_benchadmin000000000000000000000000000";

async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: String,
) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

/// One evaluation of ITEMS items on a fresh database; answers its duration.
async fn run(database_url: &str, fake: &fake_llm::FakeLlm) -> Duration {
    let mut config = Config::defaults().expect("config");
    config.database_url = database_url.to_owned();
    config.init_admin_key = promptreg::config::Redacted(KEY.to_owned());
    let mut provider = fake.config(ProviderKind::Openai);
    provider.max_concurrency = 64;
    config.providers.insert("fake".to_owned(), provider);
    for limit in config.rate_limit.each_mut() {
        limit.per_second = 1e9;
        limit.burst = 1_000_000_000;
    }
    let (state, _) = promptreg::app::build_state(config).await.expect("state");
    let app = promptreg::build_app(state.clone());
    call(
        &app,
        Method::POST,
        "/v1/prompts",
        "application/json",
        json!({"name": "bench"}).to_string(),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/v1/prompts/bench/versions",
        "application/json",
        json!({"template": "Answer briefly: {{question}}"}).to_string(),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/v1/datasets",
        "application/json",
        json!({"name": "bench"}).to_string(),
    )
    .await;
    let items: String = (0..ITEMS)
        .map(|i| {
            format!(
                "{{\"input\": {{\"question\": \"question {i}\"}}, \"expected\": \"fake reply\"}}\n"
            )
        })
        .collect();
    call(
        &app,
        Method::POST,
        "/v1/datasets/bench/items",
        "application/x-ndjson",
        items,
    )
    .await;
    let body = json!({
        "prompt": "bench", "ref": "latest", "dataset": "bench", "provider": "fake",
        "metrics": ["exact_match", "token_f1"], "concurrency": CONCURRENCY
    });
    let created = call(
        &app,
        Method::POST,
        "/v1/evaluations",
        "application/json",
        body.to_string(),
    )
    .await;

    let worker = promptreg::app::worker(&state);
    let started = Instant::now();
    let ran = worker.run_once().await.expect("worker");
    let elapsed = started.elapsed();
    assert!(matches!(ran, Ran::Job(..)));
    let id = created["id"].as_str().expect("id");
    let done = call(
        &app,
        Method::GET,
        &format!("/v1/evaluations/{id}"),
        "application/json",
        String::new(),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["metrics"]["exact_match"]["n"], ITEMS);
    elapsed
}

async fn postgres_database() -> Option<(String, PgConnectOptions)> {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = PgConnectOptions::from_str(&admin_url).ok()?;
    let mut conn = admin.connect().await.ok()?;
    let name = format!("promptreg_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .ok()?;
    conn.close().await.ok();
    Some((
        admin.clone().database(&name).to_url_lossy().to_string(),
        admin,
    ))
}

async fn drop_database(admin: PgConnectOptions, url: &str) {
    let Some(name) = url.rsplit('/').next() else {
        return;
    };
    if let Ok(mut conn) = admin.connect().await {
        let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
            .execute(&mut conn)
            .await;
    }
}

#[tokio::main]
async fn main() {
    let fake = fake_llm::FakeLlm::start().await;
    fake.set_latency(LATENCY);
    let ideal = LATENCY.as_secs_f64() * (ITEMS as f64 / f64::from(CONCURRENCY)).ceil();
    println!(
        "| backend | items | latency | concurrency | ideal | runs | best | worst | best / ideal |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
    for backend in ["sqlite", "postgres"] {
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            let elapsed = match backend {
                "sqlite" => {
                    let dir = tempfile::tempdir().expect("dir");
                    run(
                        &format!("sqlite://{}/bench.db", dir.path().display()),
                        &fake,
                    )
                    .await
                }
                _ => {
                    let Some((url, admin)) = postgres_database().await else {
                        eprintln!("Postgres unreachable: skipped");
                        break;
                    };
                    let elapsed = run(&url, &fake).await;
                    drop_database(admin, &url).await;
                    elapsed
                }
            };
            runs.push(elapsed.as_secs_f64());
        }
        if runs.is_empty() {
            continue;
        }
        let best = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let worst = runs.iter().copied().fold(0.0, f64::max);
        let list: Vec<String> = runs.iter().map(|r| format!("{r:.2} s")).collect();
        println!(
            "| {backend} | {ITEMS} | {} ms | {CONCURRENCY} | {ideal:.2} s | {} | {best:.2} s | {worst:.2} s | {:.2} |",
            LATENCY.as_millis(),
            list.join(", "),
            best / ideal
        );
    }
}
