//! Online experiments through HTTP, on both backends: the split follows the
//! weights and is sticky per unit (across a restart and a ramp), gates and
//! projects hold, feedback counts once per client id, and the guard rolls
//! back a worse variant or promotes a better one after `min_samples`.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{app_with, test_config, with_database, Backend, TestApp};

backend_tests!(
    ten_thousand_units_split_within_two_points_of_the_weights,
    a_ramp_from_10_to_50_moves_only_control_units,
    a_gate_keeps_a_variant_out_and_bad_splits_are_refused,
    feedback_with_a_client_id_counts_once_and_needs_its_scope,
    another_projects_experiment_is_invisible,
    a_worse_treatment_is_rolled_back_after_min_samples_and_not_before,
    a_better_treatment_with_auto_promote_moves_the_label,
    stop_with_promote_moves_the_label_and_ends_the_split,
    render_and_langfuse_serve_the_split,
);

/// A restart needs a database the test opens twice.
mod restart {
    use super::one_unit_gets_one_variant_over_1000_requests_and_after_a_restart;

    crate::backend_url_tests!(one_unit_gets_one_variant_over_1000_requests_and_after_a_restart);
}

const PROMPT: &str = "greet";
const CONTROL: &str = "1.0.0";
const TREATMENT: &str = "1.0.1";

/// `greet` with 1.0.0 and 1.0.1; `production` on 1.0.0.
async fn setup(app: &TestApp) {
    app.seed_prompt(PROMPT).await;
    app.seed_version(PROMPT, "Hello {{name}}").await;
    app.seed_version(PROMPT, "Hi {{name}}!").await;
    let moved = app.set_label(PROMPT, "production", CONTROL).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
}

fn experiment(control: u32, treatment: u32, extra: Value) -> Value {
    let mut body = json!({
        "label": "production",
        "variants": [{"version": CONTROL, "weight": control}, {"version": TREATMENT, "weight": treatment}],
        "metric": "score", "direction": "higher", "min_samples": 20,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// Starts an experiment; its id.
async fn start(app: &TestApp, body: Value) -> String {
    let created = app
        .post(&format!("/v1/prompts/{PROMPT}/experiments"), body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "running");
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/experiments/{id}").as_str())
    );
    id
}

/// The version `production` serves `unit`, and the experiment named.
async fn serve(app: &TestApp, unit: &str) -> (String, Option<String>) {
    let got = app
        .get(&format!(
            "/v1/prompts/{PROMPT}/versions/production?unit={unit}"
        ))
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.header("vary"), Some("x-promptreg-unit"));
    let version = got.body["version"].as_str().expect("version").to_owned();
    let experiment = got.header("x-promptreg-experiment").map(str::to_owned);
    if experiment.is_some() {
        assert_eq!(got.header("x-promptreg-variant"), Some(version.as_str()));
    }
    (version, experiment)
}

async fn read(app: &TestApp, id: &str) -> Value {
    let got = app.get(&format!("/v1/experiments/{id}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    got.body
}

async fn ten_thousand_units_split_within_two_points_of_the_weights(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(70, 30, json!({}))).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for unit in 0..10_000 {
        let (version, experiment) = serve(&app, &format!("user-{unit}")).await;
        assert_eq!(experiment.as_deref(), Some(id.as_str()));
        *counts.entry(version).or_default() += 1;
    }
    let treatment = counts.get(TREATMENT).copied().unwrap_or_default();
    assert!(
        (2_800..=3_200).contains(&treatment),
        "30% of 10,000 units, ±2 points: {counts:?}"
    );
    // Served counts are kept in memory and written when read.
    let body = read(&app, &id).await;
    let served: Vec<i64> = body["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["served"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(
        served,
        vec![i64::from(10_000 - treatment), i64::from(treatment)]
    );
    // An exact version is never split.
    let exact = app
        .get(&format!("/v1/prompts/{PROMPT}/versions/{CONTROL}"))
        .await;
    assert_eq!(exact.header("x-promptreg-experiment"), None);
}

async fn one_unit_gets_one_variant_over_1000_requests_and_after_a_restart(url: String) {
    let first = app_with(test_config(&url)).await;
    setup(&first).await;
    start(&first, experiment(50, 50, json!({}))).await;
    let units = ["alice", "bob", "carol", "dave"];
    let mut chosen = HashMap::new();
    for unit in units {
        chosen.insert(unit, serve(&first, unit).await.0);
    }
    for i in 0..1_000 {
        let unit = units[i % units.len()];
        assert_eq!(
            serve(&first, unit).await.0,
            chosen[unit],
            "{unit} on request {i}"
        );
    }
    drop(first);
    let restarted = app_with(test_config(&url)).await;
    for unit in units {
        assert_eq!(
            serve(&restarted, unit).await.0,
            chosen[unit],
            "{unit} after a restart"
        );
    }
    // The header names the unit as well as the query parameter does.
    let by_header = restarted
        .send(
            axum::http::Request::get(format!("/v1/prompts/{PROMPT}/versions/production"))
                .header("x-promptreg-unit", "alice")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(by_header.body["version"], chosen["alice"].as_str());
}

async fn a_ramp_from_10_to_50_moves_only_control_units(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(90, 10, json!({}))).await;
    let mut before = Vec::new();
    for unit in 0..2_000 {
        before.push(serve(&app, &format!("u{unit}")).await.0);
    }
    let ramped = app
        .patch(
            &format!("/v1/experiments/{id}"),
            json!({"variants": [{"version": TREATMENT, "weight": 50}, {"version": CONTROL, "weight": 50}]}),
        )
        .await;
    assert_eq!(ramped.status, StatusCode::OK, "{}", ramped.body);
    assert_eq!(ramped.body["variants"][1]["weight"], 50);
    let mut moved = 0;
    for (unit, was) in before.iter().enumerate() {
        let now = serve(&app, &format!("u{unit}")).await.0;
        if *was == TREATMENT {
            assert_eq!(now, TREATMENT, "u{unit} left the treatment on a ramp");
        } else if now == TREATMENT {
            moved += 1;
        }
    }
    assert!(
        moved > 600,
        "about 40% of units join the treatment: {moved}"
    );
    // Start and ramp are in the label's history and the audit log.
    let history = app
        .get(&format!("/v1/prompts/{PROMPT}/labels/production/history"))
        .await;
    let notes: Vec<&str> = history.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["note"].as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("split: 1.0.0 50%, 1.0.1 50%"),
        "{notes:?}"
    );
    assert!(
        notes[1].contains("started: 1.0.0 90%, 1.0.1 10%"),
        "{notes:?}"
    );
    let audit = app.get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"experiment.start") && actions.contains(&"experiment.ramp"),
        "{actions:?}"
    );
    // A ramp must name every variant, summing to 100.
    for (body, why) in [
        (
            json!({"variants": [{"version": CONTROL, "weight": 100}]}),
            "a variant left out",
        ),
        (
            json!({"variants": [{"version": CONTROL, "weight": 60}, {"version": TREATMENT, "weight": 60}]}),
            "sum 120",
        ),
    ] {
        let refused = app.patch(&format!("/v1/experiments/{id}"), body).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {}",
            refused.body
        );
    }
}

async fn a_gate_keeps_a_variant_out_and_bad_splits_are_refused(app: TestApp) {
    setup(&app).await;
    let path = format!("/v1/prompts/{PROMPT}/experiments");
    for (body, status, code, why) in [
        (
            experiment(50, 40, json!({})),
            422,
            "validation_failed",
            "weights sum to 90",
        ),
        (
            json!({"label": "production", "variants": [{"version": CONTROL, "weight": 100}], "metric": "score", "direction": "higher", "min_samples": 5}),
            422,
            "validation_failed",
            "no treatment",
        ),
        (
            experiment(50, 50, json!({"confidence": 1.5})),
            422,
            "validation_failed",
            "confidence above 1",
        ),
        (
            experiment(50, 50, json!({"min_samples": 0})),
            422,
            "validation_failed",
            "min_samples 0",
        ),
        (
            json!({"label": "production", "variants": [{"version": TREATMENT, "weight": 50}, {"version": CONTROL, "weight": 50}], "metric": "score", "direction": "higher", "min_samples": 5}),
            409,
            "control_not_current",
            "the first variant is not the label's version",
        ),
        (
            experiment(50, 50, json!({"label": "staging"})),
            404,
            "label_not_found",
            "no such label",
        ),
    ] {
        let refused = app.post(&path, body).await;
        assert_eq!(refused.status.as_u16(), status, "{why}: {}", refused.body);
        assert_eq!(refused.body["code"], code, "{why}");
    }
    // A gate on the label refuses a variant it would refuse as a move.
    let dataset = app.post("/v1/datasets", json!({"name": "faq"})).await;
    assert_eq!(dataset.status, StatusCode::CREATED, "{}", dataset.body);
    let gate = app
        .put(
            &format!("/v1/prompts/{PROMPT}/gates/production"),
            json!({"dataset": "faq", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, StatusCode::OK, "{}", gate.body);
    let refused = app.post(&path, experiment(90, 10, json!({}))).await;
    refused.assert_problem(412, "gate_failed");
    assert_eq!(serve(&app, "anyone").await, (CONTROL.to_owned(), None));
    // Without the gate it starts, and a second one on the label is refused.
    app.delete(&format!("/v1/prompts/{PROMPT}/gates/production"))
        .await;
    start(&app, experiment(90, 10, json!({}))).await;
    app.post(&path, experiment(90, 10, json!({})))
        .await
        .assert_problem(409, "experiment_running");
}

/// A `served_id` for each variant, from renders of units until both came up.
async fn served_ids(app: &TestApp) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for unit in 0..1_000 {
        let rendered = app
            .post(
                &format!("/v1/prompts/{PROMPT}/render"),
                json!({"ref": "production", "variables": {"name": "Ada"}, "unit": format!("s{unit}")}),
            )
            .await;
        assert_eq!(rendered.status, StatusCode::OK, "{}", rendered.body);
        let served = &rendered.body["served"];
        assert_eq!(served["version"], rendered.body["version"]);
        ids.insert(
            served["version"].as_str().expect("served").to_owned(),
            served["served_id"].as_str().expect("served_id").to_owned(),
        );
        if ids.len() == 2 {
            return ids;
        }
    }
    panic!("1,000 units never reached both variants: {ids:?}");
}

fn n_of(body: &Value) -> Vec<u64> {
    body["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["n"].as_u64().unwrap_or(0))
        .collect()
}

async fn feedback_with_a_client_id_counts_once_and_needs_its_scope(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(50, 50, json!({}))).await;
    let served = served_ids(&app).await;
    let value = json!({"id": "retry-1", "served_id": served[TREATMENT], "name": "score", "value": 0.7, "unit": "u1"});
    let first = app.post("/v1/feedback", value.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["duplicate"], false);
    assert_eq!(first.body["experiment"], id.as_str());
    let again = app.post("/v1/feedback", value).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(n_of(&read(&app, &id).await), vec![0, 1]);

    // A batch is all or nothing: one bad item stores none.
    let batch = app
        .post(
            "/v1/feedback/batch",
            json!({"items": [
                {"served_id": served[CONTROL], "name": "score", "value": true},
                {"served_id": served[CONTROL], "name": "score", "value": "high"},
            ]}),
        )
        .await;
    batch.assert_problem(422, "validation_failed");
    assert_eq!(batch.error_fields(), vec!["items[1].value"]);
    let batch = app
        .post(
            "/v1/feedback/batch",
            json!({"items": [
                {"served_id": served[CONTROL], "name": "score", "value": true},
                {"prompt": PROMPT, "version": "9.9.9", "name": "score", "value": 1},
            ]}),
        )
        .await;
    batch.assert_problem(404, "version_not_found");
    assert_eq!(n_of(&read(&app, &id).await), vec![0, 1]);
    let batch = app
        .post(
            "/v1/feedback/batch",
            json!({"items": [
                {"id": "retry-1", "served_id": served[TREATMENT], "name": "score", "value": 0.7},
                {"served_id": served[CONTROL], "name": "score", "value": true},
                // Outside the experiment: kept, counted for none.
                {"prompt": PROMPT, "version": CONTROL, "name": "score", "value": false},
            ]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    let duplicates: Vec<&Value> = batch.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["duplicate"])
        .collect();
    assert_eq!(duplicates, vec![&json!(true), &json!(false), &json!(false)]);
    assert_eq!(batch.body["items"][2]["experiment"], Value::Null);
    assert_eq!(n_of(&read(&app, &id).await), vec![1, 1]);

    // The `feedback` scope: a read key may be given it; without it, 403.
    let (_, read_only) = app
        .create_key(json!({"name": "svc", "scopes": ["read"]}))
        .await;
    let (_, with_feedback) = app
        .create_key(json!({"name": "svc-fb", "scopes": ["read", "feedback"]}))
        .await;
    let body = json!({"served_id": served[CONTROL], "name": "score", "value": 1});
    app.request_as(
        Some(&read_only),
        Method::POST,
        "/v1/feedback",
        Some(body.clone()),
    )
    .await
    .assert_problem(403, "insufficient_scope");
    let sent = app
        .request_as(
            Some(&with_feedback),
            Method::POST,
            "/v1/feedback",
            Some(body),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    for (bad, field) in [
        (json!({"name": "score", "value": 1}), "served_id"),
        (
            json!({"served_id": "nonsense", "name": "score", "value": 1}),
            "served_id",
        ),
        (
            json!({"served_id": served[CONTROL], "name": "score", "value": null}),
            "value",
        ),
    ] {
        let refused = app.post("/v1/feedback", bad).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.error_fields(), vec![field]);
    }
}

async fn another_projects_experiment_is_invisible(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(50, 50, json!({}))).await;
    let served = served_ids(&app).await;
    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["admin"], "project": "rival"}))
        .await;
    let as_rival = |method: Method, path: String, body: Option<Value>| {
        let (app, rival) = (&app, &rival);
        async move { app.request_as(Some(rival), method, &path, body).await }
    };
    as_rival(Method::GET, format!("/v1/experiments/{id}"), None)
        .await
        .assert_problem(404, "experiment_not_found");
    let listed = as_rival(Method::GET, "/v1/experiments".into(), None).await;
    assert_eq!(listed.body["items"], json!([]));
    as_rival(
        Method::PATCH,
        format!("/v1/experiments/{id}"),
        Some(json!({"variants": []})),
    )
    .await
    .assert_problem(404, "experiment_not_found");
    as_rival(
        Method::POST,
        format!("/v1/experiments/{id}/stop"),
        Some(json!({})),
    )
    .await
    .assert_problem(404, "experiment_not_found");
    as_rival(
        Method::POST,
        "/v1/feedback".into(),
        Some(json!({"served_id": served[CONTROL], "name": "score", "value": 1})),
    )
    .await
    .assert_problem(404, "experiment_not_found");
    assert_eq!(read(&app, &id).await["status"], "running");
    let own = app
        .get(&format!("/v1/experiments?prompt={PROMPT}&status=running"))
        .await;
    assert_eq!(own.body["items"].as_array().map(Vec::len), Some(1));
}

/// A deterministic value in `[low, low + 0.4)` for the `i`th feedback.
fn scripted(i: u64, low: f64) -> f64 {
    low + (i.wrapping_mul(2_654_435_761) % 1_000) as f64 / 2_500.0
}

/// Sends one value per variant at a time, reading the experiment after
/// each: answers how many of each it took until `status` left `running`.
async fn feed_until_decided(
    app: &TestApp,
    id: &str,
    control_low: f64,
    treatment_low: f64,
) -> (u64, Value) {
    let served = served_ids(app).await;
    for i in 0..200u64 {
        for (version, low) in [(CONTROL, control_low), (TREATMENT, treatment_low)] {
            let sent = app
                .post(
                    "/v1/feedback",
                    json!({"served_id": served[version], "name": "score", "value": scripted(i, low)}),
                )
                .await;
            assert!(sent.status.is_success(), "{}", sent.body);
        }
        let body = read(app, id).await;
        if body["status"] != "running" {
            return (i + 1, body);
        }
        // Not before min_samples (20) per variant.
        assert!(
            i + 1 < 20,
            "still running after {} values each: {body}",
            i + 1
        );
    }
    panic!("no decision after 200 values each");
}

async fn a_worse_treatment_is_rolled_back_after_min_samples_and_not_before(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(50, 50, json!({}))).await;
    let (took, body) = feed_until_decided(&app, &id, 0.6, 0.0).await;
    assert_eq!(took, 20, "decided after exactly min_samples: {body}");
    assert_eq!(body["status"], "rolled_back");
    assert_eq!(body["variants"][1]["weight"], 0);
    assert_eq!(body["variants"][1]["vs_control"]["decision"], "worse");
    assert_eq!(serve(&app, "anyone").await, (CONTROL.to_owned(), None));
    let history = app
        .get(&format!("/v1/prompts/{PROMPT}/labels/production/history"))
        .await;
    let by_guard: Vec<&Value> = history.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|m| m["by"] == "guard")
        .collect();
    assert_eq!(
        by_guard.len(),
        2,
        "weight to 0, then rolled back: {}",
        history.body
    );
    assert!(by_guard[0]["note"]
        .as_str()
        .is_some_and(|n| n.contains("rolled back")));
}

async fn a_better_treatment_with_auto_promote_moves_the_label(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(90, 10, json!({"auto_promote": true}))).await;
    let (took, body) = feed_until_decided(&app, &id, 0.0, 0.6).await;
    assert_eq!(took, 20, "{body}");
    assert_eq!(body["status"], "promoted");
    assert_eq!(body["variants"][1]["vs_control"]["decision"], "better");
    assert_eq!(serve(&app, "anyone").await, (TREATMENT.to_owned(), None));
    let labels = app.get(&format!("/v1/prompts/{PROMPT}/labels")).await;
    assert_eq!(labels.body["items"][0]["version"], TREATMENT);
    assert_eq!(labels.body["items"][0]["updated_by"], "guard");
}

async fn stop_with_promote_moves_the_label_and_ends_the_split(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(50, 50, json!({}))).await;
    let stop = format!("/v1/experiments/{id}/stop");
    app.post(&stop, json!({"promote": "9.9.9"}))
        .await
        .assert_problem(422, "validation_failed");
    let stopped = app.post(&stop, json!({"promote": TREATMENT})).await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "promoted");
    for unit in ["a", "b", "c", "d"] {
        assert_eq!(serve(&app, unit).await, (TREATMENT.to_owned(), None));
    }
    app.post(&stop, json!({}))
        .await
        .assert_problem(409, "experiment_ended");
    // A stop without promote leaves the label where it is.
    let id = start(
        &app,
        json!({"label": "production", "variants": [{"version": TREATMENT, "weight": 50}, {"version": CONTROL, "weight": 50}],
               "metric": "score", "direction": "lower", "min_samples": 5}),
    )
    .await;
    let stopped = app
        .post(
            &format!("/v1/experiments/{id}/stop"),
            json!({"promote": null}),
        )
        .await;
    assert_eq!(stopped.body["status"], "stopped");
    assert_eq!(serve(&app, "a").await, (TREATMENT.to_owned(), None));
}

async fn render_and_langfuse_serve_the_split(app: TestApp) {
    setup(&app).await;
    let id = start(&app, experiment(0, 100, json!({}))).await;
    let rendered = app
        .post(
            &format!("/v1/prompts/{PROMPT}/render"),
            json!({"variables": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(rendered.body["text"], "Hi Ada!");
    assert_eq!(rendered.body["served"]["experiment"], id.as_str());
    assert_eq!(rendered.header("x-promptreg-variant"), Some(TREATMENT));
    let (key_id, secret) = app
        .create_key(json!({"name": "lf", "scopes": ["read"]}))
        .await;
    let langfuse = app
        .request_basic(
            Some((&key_id, &secret)),
            Method::GET,
            &format!("/api/public/v2/prompts/{PROMPT}?label=production"),
            None,
        )
        .await;
    assert_eq!(langfuse.status, StatusCode::OK, "{}", langfuse.body);
    assert_eq!(langfuse.body["prompt"], "Hi {{name}}!");
    assert_eq!(langfuse.header("x-promptreg-experiment"), Some(id.as_str()));
    // An exact ref renders that version, outside the experiment.
    let exact = app
        .post(
            &format!("/v1/prompts/{PROMPT}/render"),
            json!({"ref": CONTROL, "variables": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(exact.body["text"], "Hello Ada");
    assert_eq!(exact.body.get("served"), None);
}

/// Two replicas on one Postgres pick the same variant for each unit, and
/// both stop splitting after a stop through one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_agree_on_the_split_and_its_end() {
    with_database(Backend::Postgres, |url| async move {
        let a = app_with(test_config(&url)).await;
        let b = app_with(test_config(&url)).await;
        setup(&a).await;
        // b caches the label before the experiment starts.
        assert_eq!(serve(&b, "x").await, (CONTROL.to_owned(), None));
        let id = start(&a, experiment(50, 50, json!({}))).await;
        let mut seen = None;
        for _ in 0..100 {
            seen = serve(&b, "x").await.1;
            if seen.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            seen.as_deref(),
            Some(id.as_str()),
            "b sees the experiment start"
        );
        for unit in 0..300 {
            let unit = format!("u{unit}");
            assert_eq!(serve(&a, &unit).await, serve(&b, &unit).await, "{unit}");
        }
        let stopped = a
            .post(&format!("/v1/experiments/{id}/stop"), json!({}))
            .await;
        assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
        let mut still = Some(id.clone());
        for _ in 0..100 {
            still = serve(&b, "x").await.1;
            if still.is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(still, None, "b stops splitting after the stop");
        for unit in 0..50 {
            assert_eq!(
                serve(&b, &format!("u{unit}")).await,
                (CONTROL.to_owned(), None)
            );
        }
    })
    .await;
}
