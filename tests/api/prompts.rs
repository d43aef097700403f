//! Prompts: create, get, list (filters, pagination), update, archive.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{enc, TestApp};

crate::backend_tests!(
    create_prompt_answers_201_with_location,
    duplicate_prompt_name_is_409_prompt_exists,
    bad_prompt_names_are_422_invalid_name,
    folder_names_travel_percent_encoded,
    missing_prompt_is_404,
    list_shows_labels_and_latest_version,
    list_filters_by_tag_and_query,
    list_paginates_newest_first_with_cursor,
    patch_changes_description_and_tags,
    archived_prompt_is_hidden_resolvable_and_refuses_versions,
    bad_tags_are_422_naming_the_tag,
);

async fn create_prompt_answers_201_with_location(app: TestApp) {
    let response = app
        .post(
            "/v1/prompts",
            json!({"name": "greet", "description": "Says hello", "tags": ["a", "b", "a"]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.header("location"), Some("/v1/prompts/greet"));
    let body = &response.body;
    assert_eq!(body["name"], "greet");
    assert_eq!(body["description"], "Says hello");
    assert_eq!(
        body["tags"],
        json!(["a", "b"]),
        "duplicate tags are dropped"
    );
    assert_eq!(body["archived"], false);
    assert_eq!(body["labels"], json!({}));
    assert_eq!(body["latest_version"], json!(null));

    let fetched = app.get("/v1/prompts/greet").await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, response.body);
}

async fn duplicate_prompt_name_is_409_prompt_exists(app: TestApp) {
    app.seed_prompt("greet").await;
    let again = app.post("/v1/prompts", json!({"name": "greet"})).await;
    again.assert_problem(409, "prompt_exists");
    assert!(again.body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("greet"));
}

async fn bad_prompt_names_are_422_invalid_name(app: TestApp) {
    let long = "a".repeat(129);
    for name in [
        "",
        "Greet",
        "-greet",
        "greet me",
        "a//b",
        "a/",
        "../x",
        "gr%eet",
        long.as_str(),
    ] {
        let response = app.post("/v1/prompts", json!({"name": name})).await;
        response.assert_problem(422, "invalid_name");
        assert_eq!(response.error_fields(), ["name"], "{name:?}");
    }
    let listed = app.get("/v1/prompts").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was written");
}

async fn folder_names_travel_percent_encoded(app: TestApp) {
    let created = app
        .post("/v1/prompts", json!({"name": "support/email/greeting"}))
        .await;
    assert_eq!(
        created.header("location"),
        Some("/v1/prompts/support%2Femail%2Fgreeting")
    );
    app.seed_version("support/email/greeting", "Hi").await;
    let version = app
        .get("/v1/prompts/support%2Femail%2Fgreeting/versions/latest")
        .await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(version.body["prompt"], "support/email/greeting");
    // An unencoded slash is another path, not this prompt.
    let unencoded = app.get("/v1/prompts/support/email/greeting").await;
    unencoded.assert_problem(404, "route_not_found");
}

async fn missing_prompt_is_404(app: TestApp) {
    for path in [
        "/v1/prompts/nope",
        "/v1/prompts/nope/versions",
        "/v1/prompts/nope/versions/latest",
        "/v1/prompts/nope/versions/1.0.0",
        "/v1/prompts/nope/labels",
        "/v1/prompts/nope/labels/production/history",
        "/v1/prompts/nope/diff?from=1.0.0&to=1.0.1",
    ] {
        app.get(path).await.assert_problem(404, "prompt_not_found");
    }
    app.patch("/v1/prompts/nope", json!({"description": "x"}))
        .await
        .assert_problem(404, "prompt_not_found");
    app.delete("/v1/prompts/nope")
        .await
        .assert_problem(404, "prompt_not_found");
    app.post(
        "/v1/prompts/nope/versions",
        json!({"type": "text", "template": "x"}),
    )
    .await
    .assert_problem(404, "prompt_not_found");
    app.set_label("nope", "production", "1.0.0")
        .await
        .assert_problem(404, "prompt_not_found");
}

async fn list_shows_labels_and_latest_version(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "v1").await;
    app.seed_version("greet", "v2").await;
    app.set_label("greet", "production", "1.0.0").await;
    app.set_label("greet", "staging", "1.0.1").await;
    app.seed_prompt("empty").await;

    let listed = app.get("/v1/prompts").await;
    assert_eq!(listed.status, StatusCode::OK);
    let items = listed.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "empty", "newest first");
    assert_eq!(items[0]["latest_version"], json!(null));
    assert_eq!(
        items[1]["labels"],
        json!({"production": "1.0.0", "staging": "1.0.1"})
    );
    assert_eq!(items[1]["latest_version"], "1.0.1");
    assert_eq!(listed.body["next_cursor"], json!(null));
}

async fn list_filters_by_tag_and_query(app: TestApp) {
    for (name, description, tags) in [
        (
            "support/greeting",
            "Greets a customer",
            json!(["support", "email"]),
        ),
        (
            "sales/pitch",
            "Pitches 100% of the product",
            json!(["sales"]),
        ),
        ("support/refund", "Handles refunds", json!(["support"])),
    ] {
        let response = app
            .post(
                "/v1/prompts",
                json!({"name": name, "description": description, "tags": tags}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED);
    }
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let cases = [
        (
            "/v1/prompts?tag=support",
            vec!["support/refund", "support/greeting"],
        ),
        ("/v1/prompts?tag=email", vec!["support/greeting"]),
        ("/v1/prompts?tag=nothing", vec![]),
        ("/v1/prompts?q=REFUND", vec!["support/refund"]),
        ("/v1/prompts?q=customer", vec!["support/greeting"]),
        (
            "/v1/prompts?q=support%2F",
            vec!["support/refund", "support/greeting"],
        ),
        ("/v1/prompts?q=100%25", vec!["sales/pitch"]),
        ("/v1/prompts?q=_", vec![]),
        ("/v1/prompts?tag=support&q=greet", vec!["support/greeting"]),
    ];
    for (path, want) in cases {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(names(&response.body), want, "{path}");
    }
}

async fn list_paginates_newest_first_with_cursor(app: TestApp) {
    for i in 0..5 {
        app.seed_prompt(&format!("p{i}")).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/prompts?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["name"].as_str().unwrap_or_default().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/prompts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p4", "p3", "p2", "p1", "p0"]);

    for bad in [
        "/v1/prompts?limit=0",
        "/v1/prompts?limit=101",
        "/v1/prompts?limit=x",
    ] {
        let response = app.get(bad).await;
        response.assert_problem(422, "validation_failed");
        assert_eq!(response.error_fields(), ["limit"], "{bad}");
    }
    let response = app.get("/v1/prompts?cursor=bogus").await;
    response.assert_problem(422, "validation_failed");
    assert_eq!(response.error_fields(), ["cursor"]);
}

async fn patch_changes_description_and_tags(app: TestApp) {
    app.post(
        "/v1/prompts",
        json!({"name": "greet", "description": "old", "tags": ["x"]}),
    )
    .await;
    let patched = app
        .patch("/v1/prompts/greet", json!({"description": "new"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["description"], "new");
    assert_eq!(patched.body["tags"], json!(["x"]), "absent fields stay");
    let patched = app.patch("/v1/prompts/greet", json!({"tags": []})).await;
    assert_eq!(patched.body["tags"], json!([]));
    assert_eq!(patched.body["description"], "new");
    let bad = app
        .patch("/v1/prompts/greet", json!({"name": "renamed"}))
        .await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(bad.error_fields(), ["name"]);
}

async fn archived_prompt_is_hidden_resolvable_and_refuses_versions(app: TestApp) {
    app.seed_prompt("old").await;
    app.seed_version("old", "v1").await;
    app.set_label("old", "production", "1.0.0").await;
    let archived = app.delete("/v1/prompts/old").await;
    assert_eq!(archived.status, StatusCode::NO_CONTENT);

    assert_eq!(app.get("/v1/prompts").await.body["items"], json!([]));
    let prompt = app.get("/v1/prompts/old").await;
    assert_eq!(prompt.body["archived"], true);
    assert_eq!(
        app.get("/v1/prompts/old/versions/production").await.status,
        StatusCode::OK
    );
    app.post(
        "/v1/prompts/old/versions",
        json!({"type": "text", "template": "v2"}),
    )
    .await
    .assert_problem(409, "prompt_archived");
    app.post("/v1/prompts", json!({"name": "old"}))
        .await
        .assert_problem(409, "prompt_exists");

    let restored = app
        .patch("/v1/prompts/old", json!({"archived": false}))
        .await;
    assert_eq!(restored.body["archived"], false);
    assert_eq!(
        app.get("/v1/prompts").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn bad_tags_are_422_naming_the_tag(app: TestApp) {
    let response = app
        .post(
            "/v1/prompts",
            json!({"name": "greet", "tags": ["ok", "has space"]}),
        )
        .await;
    response.assert_problem(422, "validation_failed");
    assert_eq!(response.error_fields(), ["tags[1]"]);
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let response = app
        .post("/v1/prompts", json!({"name": "greet", "tags": too_many}))
        .await;
    assert_eq!(response.error_fields(), ["tags"]);
    app.get(&format!("/v1/prompts/{}", enc("greet")))
        .await
        .assert_problem(404, "prompt_not_found");
}
