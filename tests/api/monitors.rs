//! Monitoring a label after its rollout, through HTTP on both backends: the
//! feedback summary's buckets and means, and monitors that fire on a
//! confident drop (after `min_samples`, not before), roll back or only
//! alert, record history, audit and a webhook event, stay quiet on equal
//! feedback, and refuse bad input, read keys and other projects.

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Timelike, Utc};
use promptreg::config::Redacted;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{app_with, test_config, TestApp};

backend_tests!(
    summary_counts_and_averages_per_version_and_bucket,
    summary_refuses_bad_parameters_and_other_projects,
    a_drop_rolls_the_label_back_after_min_samples_and_not_before,
    an_alert_records_the_drop_once_and_leaves_the_label,
    equal_feedback_does_not_fire,
    without_a_previous_version_the_first_window_is_the_baseline,
    monitors_refuse_bad_input_read_keys_and_other_projects,
);

/// The webhook outbox needs a configured secret key.
mod outbox {
    use super::a_firing_is_a_monitor_fired_webhook_event;

    crate::backend_url_tests!(a_firing_is_a_monitor_fired_webhook_event);
}

const PROMPT: &str = "greet";
const OLD: &str = "1.0.0";
const NEW: &str = "1.0.1";

/// `greet` with 1.0.0 and 1.0.1; `production` on 1.0.0.
async fn setup(app: &TestApp) {
    app.seed_prompt(PROMPT).await;
    app.seed_version(PROMPT, "Hello {{name}}").await;
    app.seed_version(PROMPT, "Hi {{name}}!").await;
    let moved = app.set_label(PROMPT, "production", OLD).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
}

/// A deterministic value in `[low, low + 0.4)` for the `i`th feedback.
fn scripted(i: u64, low: f64) -> f64 {
    low + (i.wrapping_mul(2_654_435_761) % 1_000) as f64 / 2_500.0
}

async fn send(app: &TestApp, version: &str, name: &str, value: f64) {
    let sent = app
        .post(
            "/v1/feedback",
            json!({"prompt": PROMPT, "version": version, "name": name, "value": value}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
}

async fn put_monitor(app: &TestApp, body: Value) -> Value {
    let put = app
        .put(&format!("/v1/prompts/{PROMPT}/monitors/production"), body)
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    put.body
}

fn monitor(action: &str, window: &str, min_samples: u32, max_drop: f64) -> Value {
    json!({"feedback": "score", "window": window, "min_samples": min_samples,
           "max_drop": max_drop, "action": action})
}

async fn production(app: &TestApp) -> String {
    let got = app
        .get(&format!("/v1/prompts/{PROMPT}/versions/production"))
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    got.body["version"].as_str().expect("version").to_owned()
}

async fn read_monitor(app: &TestApp) -> Value {
    let got = app
        .get(&format!("/v1/prompts/{PROMPT}/monitors/production"))
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    got.body
}

/// The label's history entries written by `monitor`, newest first.
async fn monitor_history(app: &TestApp) -> Vec<Value> {
    let history = app
        .get(&format!("/v1/prompts/{PROMPT}/labels/production/history"))
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    history.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|m| m["by"] == "monitor")
        .cloned()
        .collect()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let audit = app.get("/v1/audit?limit=100").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

/// 30 good values on 1.0.0 while it is production, then the move to 1.0.1.
async fn roll_out_after_good_feedback(app: &TestApp) {
    setup(app).await;
    for i in 0..30 {
        send(app, OLD, "score", scripted(i, 0.6)).await;
    }
    let moved = app.set_label(PROMPT, "production", NEW).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
}

async fn summary_counts_and_averages_per_version_and_bucket(app: TestApp) {
    setup(&app).await;
    let before = Utc::now();
    for value in [1.0, 0.0, 1.0, 1.0] {
        send(&app, OLD, "score", value).await;
    }
    for value in [0.5, 0.25] {
        send(&app, NEW, "score", value).await;
    }
    send(&app, NEW, "latency", 900.0).await;
    let after = Utc::now();
    for bucket in ["hour", "day"] {
        let got = app
            .get(&format!(
                "/v1/prompts/{PROMPT}/feedback/summary?name=score&bucket={bucket}"
            ))
            .await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(got.body["bucket"], bucket);
        assert_eq!(got.body["name"], "score");
        let versions = got.body["versions"].as_array().expect("versions");
        let names: Vec<&str> = versions
            .iter()
            .filter_map(|v| v["version"].as_str())
            .collect();
        assert_eq!(names, vec![OLD, NEW], "{}", got.body);
        for (series, (n, mean)) in versions.iter().zip([(4, 0.75), (2, 0.375)]) {
            let buckets = series["buckets"].as_array().expect("buckets");
            // The test may straddle an hour (or a day): then two buckets.
            let total: i64 = buckets.iter().filter_map(|b| b["n"].as_i64()).sum();
            let sum: f64 = buckets
                .iter()
                .map(|b| b["n"].as_f64().unwrap_or(0.0) * b["mean"].as_f64().unwrap_or(0.0))
                .sum();
            assert_eq!(total, n, "{series}");
            assert!((sum / n as f64 - mean).abs() < 1e-9, "{series}");
            for b in buckets {
                let start: DateTime<Utc> = b["start"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("start");
                assert_eq!((start.minute(), start.second()), (0, 0), "{b}");
                if bucket == "day" {
                    assert_eq!(start.hour(), 0, "{b}");
                }
                let width = if bucket == "hour" { 3_600 } else { 86_400 };
                assert!(
                    start <= after && start + chrono::TimeDelta::seconds(width) > before,
                    "{b} is not the bucket of now"
                );
            }
        }
    }
    // The default bucket is an hour; a range outside the feedback is empty.
    let got = app
        .get(&format!(
            "/v1/prompts/{PROMPT}/feedback/summary?name=latency"
        ))
        .await;
    assert_eq!(got.body["bucket"], "hour");
    assert_eq!(got.body["versions"][0]["buckets"][0]["mean"], 900.0);
    let past = app
        .get(&format!(
            "/v1/prompts/{PROMPT}/feedback/summary?name=score&from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z"
        ))
        .await;
    assert_eq!(past.status, StatusCode::OK, "{}", past.body);
    assert_eq!(past.body["versions"], json!([]));
    assert_eq!(past.body["from"], "2020-01-01T00:00:00Z");
}

async fn summary_refuses_bad_parameters_and_other_projects(app: TestApp) {
    setup(&app).await;
    let path = format!("/v1/prompts/{PROMPT}/feedback/summary");
    for (query, field) in [
        ("", "name"),
        ("name=score&bucket=week", "bucket"),
        ("name=score&from=yesterday", "from"),
        ("name=score&to=2026-13-01T00:00:00Z", "to"),
        (
            "name=score&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
        ),
        (
            "name=score&bucket=hour&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from",
        ),
    ] {
        let refused = app.get(&format!("{path}?{query}")).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.error_fields(), vec![field], "{query}");
    }
    // 60 days of days is fine.
    let days = app
        .get(&format!(
            "{path}?name=score&bucket=day&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"
        ))
        .await;
    assert_eq!(days.status, StatusCode::OK, "{}", days.body);
    app.get("/v1/prompts/nope/feedback/summary?name=score")
        .await
        .assert_problem(404, "prompt_not_found");
    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["admin"], "project": "rival"}))
        .await;
    app.request_as(
        Some(&rival),
        Method::GET,
        &format!("{path}?name=score"),
        None,
    )
    .await
    .assert_problem(404, "prompt_not_found");
}

async fn a_drop_rolls_the_label_back_after_min_samples_and_not_before(app: TestApp) {
    roll_out_after_good_feedback(&app).await;
    let put = put_monitor(&app, monitor("rollback", "24h", 20, 0.1)).await;
    assert_eq!(put["last_check"], Value::Null);
    for i in 0..20 {
        assert_eq!(production(&app).await, NEW, "rolled back after {i} values");
        send(&app, NEW, "score", scripted(i, 0.0)).await;
        let state = read_monitor(&app).await;
        let check = &state["last_check"];
        assert_eq!(check["current"]["n"], i + 1, "{state}");
        assert_eq!(check["previous"]["version"], OLD, "{state}");
        assert_eq!(check["previous"]["n"], 30, "{state}");
        if i + 1 < 20 {
            assert_eq!(check["decision"], "waiting", "{state}");
            assert_eq!(state["fired_at"], Value::Null);
        }
    }
    // The 20th value decided it, within its own request.
    assert_eq!(production(&app).await, OLD);
    let state = read_monitor(&app).await;
    assert_eq!(state["last_check"]["decision"], "dropped", "{state}");
    assert_eq!(state["fired_version"], NEW);
    assert!(state["fired_at"].is_string(), "{state}");
    let by_monitor = monitor_history(&app).await;
    assert_eq!(
        by_monitor.len(),
        2,
        "a note, then the rollback: {by_monitor:?}"
    );
    assert_eq!(by_monitor[0]["rollback"], true);
    assert_eq!(by_monitor[0]["from"], NEW);
    assert_eq!(by_monitor[0]["to"], OLD);
    let note = by_monitor[1]["note"].as_str().expect("note");
    assert!(
        note.contains("monitor fired") && note.contains("rolling back to 1.0.0"),
        "{note}"
    );
    let actions = audit_actions(&app).await;
    for action in ["monitor.put", "monitor.fired", "label.rollback"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    let labels = app.get(&format!("/v1/prompts/{PROMPT}/labels")).await;
    assert_eq!(labels.body["items"][0]["updated_by"], "monitor");
}

async fn an_alert_records_the_drop_once_and_leaves_the_label(app: TestApp) {
    roll_out_after_good_feedback(&app).await;
    put_monitor(&app, monitor("alert", "24h", 20, 0.1)).await;
    for i in 0..30 {
        send(&app, NEW, "score", scripted(i, 0.0)).await;
    }
    assert_eq!(production(&app).await, NEW, "an alert moves nothing");
    let state = read_monitor(&app).await;
    assert_eq!(state["action"], "alert");
    assert_eq!(state["fired_version"], NEW, "{state}");
    assert_eq!(state["last_check"]["decision"], "dropped");
    assert_eq!(state["last_check"]["current"]["n"], 30);
    let by_monitor = monitor_history(&app).await;
    assert_eq!(by_monitor.len(), 1, "fired once: {by_monitor:?}");
    assert!(by_monitor[0]["note"]
        .as_str()
        .is_some_and(|n| n.contains("alert only")));
    let fired = audit_actions(&app)
        .await
        .into_iter()
        .filter(|a| a == "monitor.fired")
        .count();
    assert_eq!(fired, 1);
    // The list shows it too.
    let listed = app.get(&format!("/v1/prompts/{PROMPT}/monitors")).await;
    assert_eq!(listed.body["items"][0]["label"], "production");
    assert_eq!(listed.body["items"][0]["fired_version"], NEW);
}

async fn equal_feedback_does_not_fire(app: TestApp) {
    setup(&app).await;
    for i in 0..100 {
        send(&app, OLD, "score", scripted(i, 0.3)).await;
    }
    app.set_label(PROMPT, "production", NEW).await;
    put_monitor(&app, monitor("rollback", "24h", 20, 0.05)).await;
    for i in 100..200 {
        send(&app, NEW, "score", scripted(i, 0.3)).await;
    }
    assert_eq!(production(&app).await, NEW);
    let state = read_monitor(&app).await;
    assert_eq!(state["last_check"]["decision"], "holding", "{state}");
    assert_eq!(state["last_check"]["current"]["n"], 100);
    assert_eq!(state["fired_at"], Value::Null);
    assert!(monitor_history(&app).await.is_empty());
    // Feedback on another name is not what the monitor watches.
    for i in 0..30 {
        send(&app, NEW, "other", scripted(i, -5.0)).await;
    }
    assert_eq!(read_monitor(&app).await["last_check"]["current"]["n"], 100);
}

async fn without_a_previous_version_the_first_window_is_the_baseline(app: TestApp) {
    setup(&app).await;
    put_monitor(&app, monitor("rollback", "2s", 5, 0.1)).await;
    for i in 0..6 {
        send(&app, OLD, "score", scripted(i, 0.9)).await;
    }
    let state = read_monitor(&app).await;
    assert_eq!(state["last_check"]["first_window"], true, "{state}");
    assert_eq!(state["last_check"]["previous"]["version"], OLD);
    assert_eq!(state["last_check"]["decision"], "waiting");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    for i in 0..6 {
        send(&app, OLD, "score", scripted(i, 0.0)).await;
    }
    let state = read_monitor(&app).await;
    assert_eq!(state["last_check"]["previous"]["n"], 6, "{state}");
    assert_eq!(state["last_check"]["current"]["n"], 6, "{state}");
    assert_eq!(state["fired_version"], OLD, "{state}");
    // Nowhere to roll back to: the event is recorded, the label stays.
    assert_eq!(production(&app).await, OLD);
    let by_monitor = monitor_history(&app).await;
    assert_eq!(by_monitor.len(), 1, "{by_monitor:?}");
    assert!(by_monitor[0]["note"]
        .as_str()
        .is_some_and(|n| n.contains("no previous version")));
}

async fn monitors_refuse_bad_input_read_keys_and_other_projects(app: TestApp) {
    setup(&app).await;
    let path = format!("/v1/prompts/{PROMPT}/monitors/production");
    for (body, field) in [
        (monitor("rollback", "24", 20, 0.1), "window"),
        (monitor("rollback", "0h", 20, 0.1), "window"),
        (monitor("rollback", "91d", 20, 0.1), "window"),
        (monitor("rollback", "24h", 0, 0.1), "min_samples"),
        (monitor("rollback", "24h", 20, -0.1), "max_drop"),
        (
            json!({"feedback": "", "window": "1h", "min_samples": 5, "max_drop": 0.1, "action": "alert"}),
            "feedback",
        ),
        (
            json!({"feedback": "score", "window": "1h", "min_samples": 5, "max_drop": 0.1, "action": "alert", "confidence": 1.0}),
            "confidence",
        ),
    ] {
        let refused = app.put(&path, body.clone()).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.error_fields(), vec![field], "{body}");
    }
    let refused = app.put(&path, monitor("explode", "1h", 5, 0.1)).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    app.put(
        &format!("/v1/prompts/{PROMPT}/monitors/latest"),
        monitor("alert", "1h", 5, 0.1),
    )
    .await
    .assert_problem(422, "reserved_label");
    app.get(&path)
        .await
        .assert_problem(404, "monitor_not_found");
    app.put(
        "/v1/prompts/nope/monitors/production",
        monitor("alert", "1h", 5, 0.1),
    )
    .await
    .assert_problem(404, "prompt_not_found");

    // A read key reads monitors but cannot set or remove one.
    let (_, reader) = app
        .create_key(json!({"name": "svc", "scopes": ["read"]}))
        .await;
    let body = monitor("alert", "1h", 5, 0.1);
    app.request_as(Some(&reader), Method::PUT, &path, Some(body.clone()))
        .await
        .assert_problem(403, "insufficient_scope");
    let put = put_monitor(&app, body).await;
    assert_eq!(put["window"], "1h");
    assert_eq!(put["confidence"], 0.95);
    let read = app
        .request_as(Some(&reader), Method::GET, &path, None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    app.request_as(Some(&reader), Method::DELETE, &path, None)
        .await
        .assert_problem(403, "insufficient_scope");

    // Another project sees no such prompt.
    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["admin"], "project": "rival"}))
        .await;
    for method in [Method::GET, Method::DELETE] {
        app.request_as(Some(&rival), method, &path, None)
            .await
            .assert_problem(404, "prompt_not_found");
    }
    app.request_as(
        Some(&rival),
        Method::PUT,
        &path,
        Some(monitor("alert", "1h", 5, 0.1)),
    )
    .await
    .assert_problem(404, "prompt_not_found");
    app.request_as(
        Some(&rival),
        Method::GET,
        &format!("/v1/prompts/{PROMPT}/monitors"),
        None,
    )
    .await
    .assert_problem(404, "prompt_not_found");

    // Removed once; then there is none.
    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.delete(&path)
        .await
        .assert_problem(404, "monitor_not_found");
    let listed = app.get(&format!("/v1/prompts/{PROMPT}/monitors")).await;
    assert_eq!(listed.body["items"], json!([]));
    assert!(audit_actions(&app)
        .await
        .iter()
        .any(|a| a == "monitor.delete"));
}

async fn a_firing_is_a_monitor_fired_webhook_event(url: String) {
    let mut config = test_config(&url);
    config.webhooks.secret_key =
        Redacted("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned());
    config.webhooks.allow_private_networks = true;
    let app = app_with(config).await;
    let created = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["monitor.fired"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let webhook = created.body["id"].as_str().expect("id").to_owned();
    roll_out_after_good_feedback(&app).await;
    put_monitor(&app, monitor("rollback", "24h", 20, 0.1)).await;
    for i in 0..20 {
        send(&app, NEW, "score", scripted(i, 0.0)).await;
    }
    let page = app
        .get(&format!("/v1/webhooks/{webhook}/deliveries?limit=100"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let kinds: Vec<&str> = page.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["event_type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["monitor.fired"], "{}", page.body);
}
