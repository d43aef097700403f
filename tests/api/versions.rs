//! Versions: numbering, idempotency, optimistic concurrency, refs, ETags,
//! pagination, diff and concurrent writers.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::support::TestApp;

crate::backend_tests!(
    versions_are_numbered_by_the_server,
    bump_and_explicit_version,
    explicit_version_not_greater_is_409,
    post_identical_content_returns_existing_version,
    identical_content_in_another_key_order_is_identical,
    expected_latest_guards_against_lost_updates,
    labels_in_the_request_are_set_with_the_version,
    bad_label_in_the_request_creates_nothing,
    named_parent_is_recorded,
    chat_version_keeps_messages_and_placeholders,
    content_shape_errors_are_422_naming_fields,
    refs_resolve_semver_latest_and_labels,
    etag_answers_if_none_match_with_304,
    etag_tells_versions_with_equal_content_apart,
    type_change_is_refused_unless_allowed,
    version_list_paginates_newest_first,
    diff_lists_changed_fields_and_a_unified_diff,
    diff_of_chat_messages_is_readable,
    fifty_concurrent_posts_make_fifty_distinct_versions,
);

async fn versions_are_numbered_by_the_server(app: TestApp) {
    app.seed_prompt("greet").await;
    let first = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"type": "text", "template": "Hi {{name}}"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(
        first.header("location"),
        Some("/v1/prompts/greet/versions/1.0.0")
    );
    let v1 = &first.body;
    assert_eq!(v1["version"], "1.0.0");
    assert_eq!(v1["seq"], 1);
    assert_eq!(v1["parent"], json!(null));
    assert_eq!(v1["type"], "text");
    assert_eq!(v1["engine"], "handlebars");
    assert_eq!(v1["template"], "Hi {{name}}");
    assert_eq!(v1["model_config"], json!({}));
    assert_eq!(v1["content_hash"].as_str().map(str::len), Some(64));

    let v2 = app.seed_version("greet", "Hello {{name}}").await;
    assert_eq!(
        (
            v2["version"].clone(),
            v2["seq"].clone(),
            v2["parent"].clone()
        ),
        (json!("1.0.1"), json!(2), json!("1.0.0"))
    );
    assert_ne!(v2["content_hash"], v1["content_hash"]);
}

async fn bump_and_explicit_version(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "a").await;
    let minor = app
        .seed_version_with("greet", json!({"template": "b", "bump": "minor"}))
        .await;
    assert_eq!(minor["version"], "1.1.0");
    let major = app
        .seed_version_with("greet", json!({"template": "c", "bump": "major"}))
        .await;
    assert_eq!(major["version"], "2.0.0");
    let explicit = app
        .seed_version_with("greet", json!({"template": "d", "version": "2.5.0"}))
        .await;
    assert_eq!(explicit["version"], "2.5.0");
    assert_eq!(explicit["seq"], 4);
    let patch = app.seed_version("greet", "e").await;
    assert_eq!(patch["version"], "2.5.1");

    let both = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "f", "version": "3.0.0", "bump": "major"}),
        )
        .await;
    both.assert_problem(422, "validation_failed");
    assert_eq!(both.error_fields(), ["version"]);
    let bad = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "f", "version": "3.0"}),
        )
        .await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(bad.error_fields(), ["version"]);
    let bad_bump = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "f", "bump": "huge"}),
        )
        .await;
    bad_bump.assert_problem(422, "validation_failed");
    assert_eq!(bad_bump.error_fields(), ["bump"]);
}

async fn explicit_version_not_greater_is_409(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version_with("greet", json!({"template": "a", "version": "2.0.0"}))
        .await;
    for version in ["2.0.0", "1.9.0", "2.0.0-rc.1"] {
        let response = app
            .post(
                "/v1/prompts/greet/versions",
                json!({"template": "b", "version": version}),
            )
            .await;
        response.assert_problem(409, "version_conflict");
    }
    let list = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "nothing was created"
    );
}

async fn post_identical_content_returns_existing_version(app: TestApp) {
    app.seed_prompt("greet").await;
    let body = json!({"type": "text", "template": "Hi {{name}}", "model_config": {"model": "m", "temperature": 0.2}});
    let first = app.post("/v1/prompts/greet/versions", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // Same content, other changelog and metadata, even a bump: still the same version.
    let mut again = body.clone();
    again["message"] = json!("re-push from CI");
    again["bump"] = json!("major");
    let second = app.post("/v1/prompts/greet/versions", again).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("location"), None);
    assert_eq!(second.body, first.body);
    let list = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));

    // Content equal to an older, but not the latest, version is new.
    app.seed_version("greet", "other").await;
    let back = app.post("/v1/prompts/greet/versions", body).await;
    assert_eq!(back.status, StatusCode::CREATED);
    assert_eq!(back.body["version"], "1.0.2");
    assert_eq!(back.body["content_hash"], first.body["content_hash"]);
}

async fn identical_content_in_another_key_order_is_identical(app: TestApp) {
    app.seed_prompt("greet").await;
    let a = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "x", "model_config": {"a": 1, "b": {"c": 2, "d": 3}}}),
        )
        .await;
    let b = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/prompts/greet/versions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"model_config": {"b": {"d": 3, "c": 2}, "a": 1}, "template": "x"}"#,
                ))
                .expect("request"),
        )
        .await;
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a.body["content_hash"], b.body["content_hash"]);
}

async fn expected_latest_guards_against_lost_updates(app: TestApp) {
    app.seed_prompt("greet").await;
    let first = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "a", "expected_latest": null}),
        )
        .await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "null expects no version yet: {}",
        first.body
    );
    let stale = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "b", "expected_latest": null}),
        )
        .await;
    stale.assert_problem(409, "version_conflict");
    let wrong = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "b", "expected_latest": "0.9.0"}),
        )
        .await;
    wrong.assert_problem(409, "version_conflict");
    assert!(
        wrong.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1.0.0"),
        "{}",
        wrong.body
    );
    let ok = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "b", "expected_latest": "1.0.0"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let list = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));
}

async fn labels_in_the_request_are_set_with_the_version(app: TestApp) {
    app.seed_prompt("greet").await;
    let v1 = app
        .seed_version_with(
            "greet",
            json!({"template": "a", "labels": ["production", "staging"]}),
        )
        .await;
    let labels = app.get("/v1/prompts/greet/labels").await;
    let names: Vec<_> = labels.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| (l["name"].clone(), l["version"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("production"), json!("1.0.0")),
            (json!("staging"), json!("1.0.0"))
        ]
    );
    // An identical re-post still applies its labels.
    let again = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "a", "labels": ["canary"]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        app.get("/v1/prompts/greet/versions/canary").await.body["id"],
        v1["id"]
    );
}

async fn bad_label_in_the_request_creates_nothing(app: TestApp) {
    app.seed_prompt("greet").await;
    let reserved = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "a", "labels": ["staging", "latest"]}),
        )
        .await;
    reserved.assert_problem(422, "reserved_label");
    assert_eq!(reserved.error_fields(), ["labels[1]"]);
    let invalid = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "a", "labels": ["Prod"]}),
        )
        .await;
    invalid.assert_problem(422, "invalid_label");
    assert_eq!(invalid.error_fields(), ["labels[0]"]);
    assert_eq!(
        app.get("/v1/prompts/greet/versions").await.body["items"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/prompts/greet/labels").await.body["items"],
        json!([])
    );
}

async fn named_parent_is_recorded(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "a").await;
    app.seed_version("greet", "b").await;
    let branched = app
        .seed_version_with("greet", json!({"template": "a2", "parent": "1.0.0"}))
        .await;
    assert_eq!(branched["parent"], "1.0.0");
    assert_eq!(branched["version"], "1.0.2");
    let missing = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"template": "x", "parent": "9.9.9"}),
        )
        .await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.error_fields(), ["parent"]);
}

async fn chat_version_keeps_messages_and_placeholders(app: TestApp) {
    app.seed_prompt("support/chat").await;
    let messages = json!([
        {"role": "system", "content": "You help {{company}} customers."},
        {"role": "placeholder", "name": "history"},
        {"role": "user", "content": "{{question}}"}
    ]);
    let created = app
        .seed_version_with("support/chat", json!({"type": "chat", "messages": messages, "engine": "jinja", "model_config": {"model": "gpt-4o-mini"}}))
        .await;
    assert_eq!(created["type"], "chat");
    assert_eq!(created["engine"], "jinja");
    assert_eq!(created["messages"], messages);
    assert!(created.get("template").is_none());
    let fetched = app.get("/v1/prompts/support%2Fchat/versions/1.0.0").await;
    assert_eq!(fetched.body, created);
}

async fn content_shape_errors_are_422_naming_fields(app: TestApp) {
    app.seed_prompt("greet").await;
    let cases: [(Value, &[&str]); 10] = [
        (json!({}), &["type"]),
        (json!({"type": "text"}), &["template"]),
        (json!({"type": "chat"}), &["messages"]),
        (json!({"type": "chat", "messages": []}), &["messages"]),
        (
            json!({"type": "text", "template": "a", "messages": [{"role": "user", "content": "b"}]}),
            &["messages"],
        ),
        (json!({"type": "poem", "template": "a"}), &["type"]),
        (
            json!({"type": "chat", "messages": [{"role": "robot", "content": "b"}]}),
            &["messages[0].role"],
        ),
        (
            json!({"type": "text", "template": "a", "engine": "mustache"}),
            &["engine"],
        ),
        (
            json!({"type": "text", "template": "a", "input_schema": 3, "output_schema": "x"}),
            &["input_schema", "output_schema"],
        ),
        (
            json!({"type": "text", "template": "a", "temperature": 1}),
            &["temperature"],
        ),
    ];
    for (body, fields) in cases {
        let response = app.post("/v1/prompts/greet/versions", body.clone()).await;
        response.assert_problem(422, "validation_failed");
        assert_eq!(response.error_fields(), fields, "{body}");
    }
    assert_eq!(
        app.get("/v1/prompts/greet/versions").await.body["items"],
        json!([])
    );
}

async fn refs_resolve_semver_latest_and_labels(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "one").await;
    app.seed_version("greet", "two").await;
    app.set_label("greet", "production", "1.0.0").await;
    let template = |path: &'static str| {
        let app = app.clone();
        async move { app.get(path).await.body["template"].clone() }
    };
    assert_eq!(template("/v1/prompts/greet/versions/1.0.0").await, "one");
    assert_eq!(template("/v1/prompts/greet/versions/1.0.1").await, "two");
    assert_eq!(template("/v1/prompts/greet/versions/latest").await, "two");
    assert_eq!(
        template("/v1/prompts/greet/versions/production").await,
        "one"
    );

    app.get("/v1/prompts/greet/versions/staging")
        .await
        .assert_problem(404, "label_not_found");
    app.get("/v1/prompts/greet/versions/3.0.0")
        .await
        .assert_problem(404, "version_not_found");
    for bad in ["1.0", "Prod", "1.0.0.0", "%20"] {
        let response = app.get(&format!("/v1/prompts/greet/versions/{bad}")).await;
        response.assert_problem(422, "validation_failed");
        assert_eq!(response.error_fields(), ["ref"], "{bad}");
    }
    app.seed_prompt("empty").await;
    app.get("/v1/prompts/empty/versions/latest")
        .await
        .assert_problem(404, "version_not_found");
}

async fn etag_answers_if_none_match_with_304(app: TestApp) {
    app.seed_prompt("greet").await;
    let v1 = app
        .seed_version_with(
            "greet",
            json!({"template": "one", "labels": ["production"]}),
        )
        .await;
    // The ETag names the version (its id) and its content (its hash).
    let etag = format!(
        "\"{}.{}\"",
        v1["id"].as_str().expect("id"),
        v1["content_hash"].as_str().expect("hash")
    );

    let by_label = app.get("/v1/prompts/greet/versions/production").await;
    assert_eq!(by_label.header("etag"), Some(etag.as_str()));
    assert_eq!(by_label.header("cache-control"), Some("private, no-cache"));
    let exact = app.get("/v1/prompts/greet/versions/1.0.0").await;
    assert_eq!(exact.header("etag"), Some(etag.as_str()));
    assert!(exact
        .header("cache-control")
        .unwrap_or_default()
        .contains("immutable"));

    let not_modified = app
        .send(conditional("/v1/prompts/greet/versions/production", &etag))
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(not_modified.body, Value::Null);

    // The label moves: the old ETag no longer matches.
    app.seed_version("greet", "two").await;
    app.set_label("greet", "production", "1.0.1").await;
    let moved = app
        .send(conditional("/v1/prompts/greet/versions/production", &etag))
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_eq!(moved.body["version"], "1.0.1");
    assert_ne!(moved.header("etag"), Some(etag.as_str()));
}

/// A GET of `path` with `If-None-Match: etag`.
fn conditional(path: &str, etag: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .expect("request")
}

async fn etag_tells_versions_with_equal_content_apart(app: TestApp) {
    app.seed_prompt("greet").await;
    let first = app
        .seed_version_with(
            "greet",
            json!({"template": "one", "labels": ["production"]}),
        )
        .await;
    app.seed_version("greet", "two").await;
    // Equal to 1.0.0, but not to the latest: a new version with 1.0.0's hash.
    let again = app.seed_version("greet", "one").await;
    assert_eq!(again["version"], "1.0.2");
    assert_eq!(again["content_hash"], first["content_hash"]);

    let held = app.get("/v1/prompts/greet/versions/production").await;
    let etag = held.header("etag").expect("etag").to_owned();
    assert_eq!(held.body["version"], "1.0.0");

    app.set_label("greet", "production", "1.0.2").await;
    let moved = app
        .send(conditional("/v1/prompts/greet/versions/production", &etag))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(
        (
            &moved.body["version"],
            &moved.body["seq"],
            &moved.body["id"]
        ),
        (&json!("1.0.2"), &json!(3), &again["id"])
    );
    assert_ne!(moved.header("etag"), Some(etag.as_str()));
    // Fetched by number, each version answers with its own ETag too.
    let exact = app
        .send(conditional("/v1/prompts/greet/versions/1.0.2", &etag))
        .await;
    assert_eq!(exact.status, StatusCode::OK);
    assert_eq!(exact.header("etag"), moved.header("etag"));
    let unchanged = app
        .send(conditional("/v1/prompts/greet/versions/1.0.0", &etag))
        .await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
}

async fn type_change_is_refused_unless_allowed(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hi {{name}}").await;
    let chat = json!({"type": "chat", "messages": [{"role": "user", "content": "Hi {{name}}"}]});
    let refused = app.post("/v1/prompts/greet/versions", chat.clone()).await;
    refused.assert_problem(422, "type_mismatch");
    assert_eq!(refused.error_fields(), ["type"]);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("text") && detail.contains("chat") && detail.contains("allow_type_change"),
        "{detail}"
    );
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(1));

    // Said explicitly, the type changes; from then on chat is the rule.
    let mut allowed = chat.clone();
    allowed["allow_type_change"] = json!(true);
    let changed = app.post("/v1/prompts/greet/versions", allowed).await;
    assert_eq!(changed.status, StatusCode::CREATED, "{}", changed.body);
    assert_eq!(changed.body["type"], "chat");
    assert_eq!(changed.body["version"], "1.0.1");
    app.post(
        "/v1/prompts/greet/versions",
        json!({"type": "text", "template": "Back", "allow_type_change": false}),
    )
    .await
    .assert_problem(422, "type_mismatch");
    // The same type needs nothing said, and saying it changes nothing.
    let same = app
        .post(
            "/v1/prompts/greet/versions",
            json!({"type": "chat", "messages": [{"role": "user", "content": "Hey"}], "allow_type_change": true}),
        )
        .await;
    assert_eq!(same.status, StatusCode::CREATED, "{}", same.body);
    app.post(
        "/v1/prompts/greet/versions",
        json!({"template": "x", "allow_type_change": "yes"}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

async fn version_list_paginates_newest_first(app: TestApp) {
    app.seed_prompt("greet").await;
    for i in 0..5 {
        app.seed_version("greet", &format!("v{i}")).await;
    }
    let first = app.get("/v1/prompts/greet/versions?limit=3").await;
    let versions: Vec<_> = first.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(versions, [json!("1.0.4"), json!("1.0.3"), json!("1.0.2")]);
    let cursor = first.body["next_cursor"].as_str().expect("more pages");
    let second = app
        .get(&format!(
            "/v1/prompts/greet/versions?limit=3&cursor={cursor}"
        ))
        .await;
    let versions: Vec<_> = second.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(versions, [json!("1.0.1"), json!("1.0.0")]);
    assert_eq!(second.body["next_cursor"], json!(null));
}

async fn diff_lists_changed_fields_and_a_unified_diff(app: TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version_with("greet", json!({"template": "Hello {{name}}!\nBye.", "model_config": {"temperature": 0.2}, "labels": ["production"]})).await;
    app.seed_version_with(
        "greet",
        json!({"template": "Hello {{name}}, welcome!\nBye.", "model_config": {"temperature": 0.7}}),
    )
    .await;

    let diff = app
        .get("/v1/prompts/greet/diff?from=production&to=latest")
        .await;
    assert_eq!(diff.status, StatusCode::OK);
    assert_eq!(
        (diff.body["from"].clone(), diff.body["to"].clone()),
        (json!("1.0.0"), json!("1.0.1"))
    );
    let fields: Vec<_> = diff.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["field"].clone())
        .collect();
    assert_eq!(fields, [json!("model_config"), json!("template")]);
    assert_eq!(diff.body["changes"][0]["from"], json!({"temperature": 0.2}));
    assert_eq!(diff.body["changes"][0]["to"], json!({"temperature": 0.7}));
    assert_eq!(
        diff.body["diff"],
        "--- greet@1.0.0\n+++ greet@1.0.1\n@@ -1,2 +1,2 @@\n-Hello {{name}}!\n+Hello {{name}}, welcome!\n Bye.\n"
    );

    let same = app.get("/v1/prompts/greet/diff?from=1.0.1&to=latest").await;
    assert_eq!(
        (same.body["changes"].clone(), same.body["diff"].clone()),
        (json!([]), json!(""))
    );

    app.get("/v1/prompts/greet/diff?from=1.0.0&to=staging")
        .await
        .assert_problem(404, "label_not_found");
    app.get("/v1/prompts/greet/diff?from=1.0.0&to=7.0.0")
        .await
        .assert_problem(404, "version_not_found");
    let missing = app.get("/v1/prompts/greet/diff?from=1.0.0").await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.error_fields(), ["to"]);
}

async fn diff_of_chat_messages_is_readable(app: TestApp) {
    app.seed_prompt("chat").await;
    let system = json!({"role": "system", "content": "Be brief."});
    app.seed_version_with(
        "chat",
        json!({"type": "chat", "messages": [system, {"role": "user", "content": "{{q}}"}]}),
    )
    .await;
    app.seed_version_with("chat", json!({"type": "chat", "messages": [system, {"role": "placeholder", "name": "history"}, {"role": "user", "content": "{{q}}"}]})).await;
    let diff = app.get("/v1/prompts/chat/diff?from=1.0.0&to=1.0.1").await;
    assert_eq!(
        diff.body["diff"],
        "--- chat@1.0.0\n+++ chat@1.0.1\n@@ -1,4 +1,5 @@\n [system]\n Be brief.\n+[placeholder: history]\n [user]\n {{q}}\n"
    );
}

async fn fifty_concurrent_posts_make_fifty_distinct_versions(app: TestApp) {
    app.seed_prompt("busy").await;
    let posts = (0..50).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            app.post(
                "/v1/prompts/busy/versions",
                json!({"type": "text", "template": format!("variant {i}")}),
            )
            .await
        })
    });
    let mut created = Vec::new();
    for post in posts {
        let response = post.await.expect("task");
        match response.status.as_u16() {
            201 => created.push(
                response.body["version"]
                    .as_str()
                    .expect("version")
                    .to_owned(),
            ),
            409 => assert_eq!(response.body["code"], "version_conflict"),
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    let mut distinct = created.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), created.len(), "no version number twice");
    assert_eq!(
        created.len(),
        50,
        "row locks serialize writers, so all succeed"
    );

    let mut seqs = Vec::new();
    let mut path = "/v1/prompts/busy/versions?limit=100".to_owned();
    loop {
        let page = app.get(&path).await;
        seqs.extend(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|v| v["seq"].as_i64().unwrap_or_default()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/prompts/busy/versions?limit=100&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=50).rev().collect::<Vec<i64>>());
}
