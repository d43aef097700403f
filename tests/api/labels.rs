//! Labels: set, list, delete, history, rollback, and moves seen at once.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{app_with, test_config, with_database, Backend, TestApp};

crate::backend_tests!(
    set_label_answers_the_label_and_lists_it,
    label_move_is_seen_by_the_very_next_read,
    label_to_unknown_version_is_404,
    reserved_and_invalid_labels_are_422,
    delete_label_is_recorded_and_then_404,
    history_lists_every_move_newest_first,
    history_paginates,
    rollback_walks_back_through_history,
    rollback_without_previous_target_is_409,
    rollback_restores_a_deleted_label,
);

async fn three_versions(app: &TestApp) {
    app.seed_prompt("greet").await;
    for t in ["one", "two", "three"] {
        app.seed_version("greet", t).await;
    }
}

fn history_pairs(body: &Value) -> Vec<(Value, Value, bool)> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["from"].clone(),
                m["to"].clone(),
                m["rollback"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

async fn set_label_answers_the_label_and_lists_it(app: TestApp) {
    three_versions(&app).await;
    let set = app.set_label("greet", "production", "1.0.1").await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.body["name"], "production");
    assert_eq!(set.body["version"], "1.0.1");
    assert!(set.body["updated_at"].is_string());
    // Setting it to where it already points changes nothing and records nothing.
    assert_eq!(
        app.set_label("greet", "production", "1.0.1").await.status,
        StatusCode::OK
    );
    let listed = app.get("/v1/prompts/greet/labels").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body["items"][0]["version"], "1.0.1");
    let history = app.get("/v1/prompts/greet/labels/production/history").await;
    assert_eq!(
        history_pairs(&history.body),
        [(json!(null), json!("1.0.1"), false)]
    );

    let bad_body = app
        .put(
            "/v1/prompts/greet/labels/production",
            json!({"version": "latest"}),
        )
        .await;
    bad_body.assert_problem(422, "validation_failed");
    assert_eq!(bad_body.error_fields(), ["version"]);
}

async fn label_move_is_seen_by_the_very_next_read(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "production", "1.0.0").await;
    for _ in 0..3 {
        // Warm the cache.
        assert_eq!(
            app.get("/v1/prompts/greet/versions/production").await.body["version"],
            "1.0.0"
        );
    }
    for target in ["1.0.2", "1.0.1", "1.0.0"] {
        app.set_label("greet", "production", target).await;
        assert_eq!(
            app.get("/v1/prompts/greet/versions/production").await.body["version"],
            target
        );
    }
    app.post("/v1/prompts/greet/labels/production/rollback", json!({}))
        .await;
    assert_eq!(
        app.get("/v1/prompts/greet/versions/production").await.body["version"],
        "1.0.1"
    );
    // `latest` moves with every new version.
    assert_eq!(
        app.get("/v1/prompts/greet/versions/latest").await.body["version"],
        "1.0.2"
    );
    app.seed_version("greet", "four").await;
    assert_eq!(
        app.get("/v1/prompts/greet/versions/latest").await.body["version"],
        "1.0.3"
    );
    app.delete("/v1/prompts/greet/labels/production").await;
    app.get("/v1/prompts/greet/versions/production")
        .await
        .assert_problem(404, "label_not_found");
}

async fn label_to_unknown_version_is_404(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "production", "9.0.0")
        .await
        .assert_problem(404, "version_not_found");
    assert_eq!(
        app.get("/v1/prompts/greet/labels").await.body["items"],
        json!([])
    );
}

async fn reserved_and_invalid_labels_are_422(app: TestApp) {
    three_versions(&app).await;
    let reserved = app.set_label("greet", "latest", "1.0.0").await;
    reserved.assert_problem(422, "reserved_label");
    assert_eq!(reserved.error_fields(), ["label"]);
    app.delete("/v1/prompts/greet/labels/latest")
        .await
        .assert_problem(422, "reserved_label");
    app.post("/v1/prompts/greet/labels/latest/rollback", json!({}))
        .await
        .assert_problem(422, "reserved_label");
    let long = "a".repeat(65);
    for bad in ["Prod", "1st", "pro.d", long.as_str()] {
        app.set_label("greet", bad, "1.0.0")
            .await
            .assert_problem(422, "invalid_label");
    }
}

async fn delete_label_is_recorded_and_then_404(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "staging", "1.0.2").await;
    let deleted = app.delete("/v1/prompts/greet/labels/staging").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.delete("/v1/prompts/greet/labels/staging")
        .await
        .assert_problem(404, "label_not_found");
    assert_eq!(
        app.get("/v1/prompts/greet/labels").await.body["items"],
        json!([])
    );
    let history = app.get("/v1/prompts/greet/labels/staging/history").await;
    assert_eq!(
        history_pairs(&history.body),
        [
            (json!("1.0.2"), json!(null), false),
            (json!(null), json!("1.0.2"), false)
        ]
    );
    app.get("/v1/prompts/greet/labels/never/history")
        .await
        .assert_problem(404, "label_not_found");
}

async fn history_lists_every_move_newest_first(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "production", "1.0.0").await;
    app.set_label("greet", "production", "1.0.2").await;
    app.set_label("greet", "production", "1.0.1").await;
    app.post("/v1/prompts/greet/labels/production/rollback", json!({}))
        .await;
    let history = app.get("/v1/prompts/greet/labels/production/history").await;
    assert_eq!(
        history_pairs(&history.body),
        [
            (json!("1.0.1"), json!("1.0.2"), true),
            (json!("1.0.2"), json!("1.0.1"), false),
            (json!("1.0.0"), json!("1.0.2"), false),
            (json!(null), json!("1.0.0"), false),
        ]
    );
    assert_eq!(history.body["next_cursor"], json!(null));
    assert!(history.body["items"][0]["at"].is_string());
}

async fn history_paginates(app: TestApp) {
    three_versions(&app).await;
    for v in ["1.0.0", "1.0.1", "1.0.2", "1.0.0", "1.0.1"] {
        app.set_label("greet", "production", v).await;
    }
    let first = app
        .get("/v1/prompts/greet/labels/production/history?limit=2")
        .await;
    assert_eq!(history_pairs(&first.body).len(), 2);
    let cursor = first.body["next_cursor"].as_str().expect("cursor");
    let rest = app
        .get(&format!(
            "/v1/prompts/greet/labels/production/history?limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(
        history_pairs(&rest.body),
        [
            (json!("1.0.1"), json!("1.0.2"), false),
            (json!("1.0.0"), json!("1.0.1"), false),
            (json!(null), json!("1.0.0"), false),
        ]
    );
}

async fn rollback_walks_back_through_history(app: TestApp) {
    three_versions(&app).await;
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        app.set_label("greet", "production", v).await;
    }
    let rollback = || app.post("/v1/prompts/greet/labels/production/rollback", json!({}));
    let first = rollback().await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["version"], "1.0.1");
    assert_eq!(rollback().await.body["version"], "1.0.0");
    rollback().await.assert_problem(409, "no_previous_target");
    assert_eq!(
        app.get("/v1/prompts/greet/versions/production").await.body["version"],
        "1.0.0"
    );
    // A new move after rollbacks is undone first.
    app.set_label("greet", "production", "1.0.2").await;
    assert_eq!(rollback().await.body["version"], "1.0.0");
}

async fn rollback_without_previous_target_is_409(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "production", "1.0.0").await;
    app.post("/v1/prompts/greet/labels/production/rollback", json!({}))
        .await
        .assert_problem(409, "no_previous_target");
    app.post("/v1/prompts/greet/labels/never/rollback", json!({}))
        .await
        .assert_problem(404, "label_not_found");
    let history = app.get("/v1/prompts/greet/labels/production/history").await;
    assert_eq!(
        history_pairs(&history.body).len(),
        1,
        "a refused rollback records nothing"
    );
}

async fn rollback_restores_a_deleted_label(app: TestApp) {
    three_versions(&app).await;
    app.set_label("greet", "production", "1.0.1").await;
    app.delete("/v1/prompts/greet/labels/production").await;
    let restored = app
        .post("/v1/prompts/greet/labels/production/rollback", json!({}))
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(restored.body["version"], "1.0.1");
    assert_eq!(
        app.get("/v1/prompts/greet/versions/production").await.body["version"],
        "1.0.1"
    );
}

/// Two replicas on one Postgres: a label moved through one is seen by the
/// other's next read, although the other had it cached (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_see_each_others_label_moves() {
    with_database(Backend::Postgres, |url| async move {
        let a = app_with(test_config(&url)).await;
        let b = app_with(test_config(&url)).await;
        three_versions(&a).await;
        a.set_label("greet", "production", "1.0.0").await;
        assert_eq!(
            b.get("/v1/prompts/greet/versions/production").await.body["version"],
            "1.0.0"
        );
        assert_eq!(
            b.get("/v1/prompts/greet/versions/production").await.body["version"],
            "1.0.0"
        );
        a.set_label("greet", "production", "1.0.2").await;
        // Notifications are asynchronous; they arrive within milliseconds.
        let mut seen = Value::Null;
        for _ in 0..100 {
            seen = b.get("/v1/prompts/greet/versions/production").await.body["version"].clone();
            if seen == "1.0.2" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(seen, "1.0.2");
    })
    .await;
}
