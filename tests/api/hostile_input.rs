//! Input Postgres would refuse or SQLite would choke on is refused at the edge,
//! the same way on both backends: NUL characters anywhere, over-long filters.

use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::json;

use crate::backend_tests;
use crate::support::TestApp;

backend_tests!(
    nul_in_any_written_field_is_refused_naming_it,
    nul_in_an_upload_is_refused_naming_the_item,
    nul_in_a_filter_is_refused_naming_it,
    an_over_long_filter_is_refused_naming_it,
    nul_in_a_path_parameter_is_refused_naming_it,
);

/// The first field at fault, for a 422 `validation_failed`.
#[track_caller]
fn assert_refused(answer: &crate::support::TestResponse, field: &str) {
    answer.assert_problem(422, "validation_failed");
    assert_eq!(
        answer.error_fields(),
        vec![field.to_owned()],
        "{}",
        answer.body
    );
}

async fn nul_in_any_written_field_is_refused_naming_it(app: TestApp) {
    app.seed_prompt("greet").await;
    let nul = "a\u{0}b";
    let cases = [
        (
            Method::POST,
            "/v1/prompts",
            json!({"name": "other", "description": nul}),
            "description",
        ),
        (
            Method::POST,
            "/v1/prompts",
            json!({"name": "other", "tags": ["ok", nul]}),
            "tags[1]",
        ),
        (
            Method::PATCH,
            "/v1/prompts/greet",
            json!({"description": nul}),
            "description",
        ),
        (
            Method::POST,
            "/v1/prompts/greet/versions",
            json!({"template": nul}),
            "template",
        ),
        (
            Method::POST,
            "/v1/prompts/greet/versions",
            json!({"type": "chat", "messages": [{"role": "user", "content": nul}]}),
            "messages[0].content",
        ),
        (
            Method::POST,
            "/v1/prompts/greet/versions",
            json!({"template": "hi", "metadata": {"author": nul}}),
            "metadata.author",
        ),
        (
            Method::POST,
            "/v1/prompts/greet/versions",
            json!({"template": "hi", "metadata": {"a\u{0}": 1}}),
            "metadata",
        ),
        (
            Method::POST,
            "/v1/prompts/greet/versions",
            json!({"template": "hi", "message": nul}),
            "message",
        ),
        (
            Method::POST,
            "/v1/datasets",
            json!({"name": "faq", "description": nul}),
            "description",
        ),
    ];
    for (method, path, body, field) in cases {
        let answer = app.request(method.clone(), path, Some(body.clone())).await;
        assert_refused(&answer, field);
    }
    // Nothing of it was stored.
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(versions.body["items"], json!([]), "{}", versions.body);
    assert_eq!(app.get("/v1/prompts/other").await.status.as_u16(), 404);
    // An escaped backslash before `u0000` is no NUL.
    let fine = app
        .post("/v1/prompts/greet/versions", json!({"template": "\\u0000"}))
        .await;
    assert_eq!(fine.status.as_u16(), 201, "{}", fine.body);
}

async fn nul_in_an_upload_is_refused_naming_the_item(app: TestApp) {
    app.post("/v1/datasets", json!({"name": "faq"})).await;
    let cases = [
        (
            "application/json",
            json!([{"input": {"q": "fine"}}, {"input": {"q": "a\u{0}b"}}]).to_string(),
            "items[1]",
            "input.q",
        ),
        (
            "application/x-ndjson",
            format!(
                "{}\n{}\n",
                json!({"input": {"q": "fine"}}),
                json!({"input": {"q": "x"}, "expected": "\u{0}"})
            ),
            "items[1]",
            "expected",
        ),
        (
            "application/x-ndjson",
            format!(
                "{}\n",
                json!({"input": {"q": "x"}, "metadata": {"src": "\u{0}"}})
            ),
            "items[0]",
            "metadata.src",
        ),
        (
            "text/csv",
            "q,expected\nfine,ok\nbad\u{0},ok\n".to_owned(),
            "items[1]",
            "column `q`",
        ),
    ];
    for (content_type, body, field, says) in cases {
        let answer = app.upload("faq", content_type, body).await;
        let problem = answer.assert_problem(422, "invalid_item");
        assert_eq!(answer.error_fields(), vec![field.to_owned()], "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(says),
            "{content_type}: {detail:?} should say {says:?}"
        );
    }
    assert_eq!(app.get("/v1/datasets/faq").await.body["item_count"], 0);
}

async fn nul_in_a_filter_is_refused_naming_it(app: TestApp) {
    app.seed_prompt("greet").await;
    for (path, field) in [
        ("/v1/prompts?q=%00", "q"),
        ("/v1/prompts?q=gr%00", "q"),
        ("/v1/prompts?tag=a%00", "tag"),
    ] {
        assert_refused(&app.get(path).await, field);
    }
    // `%2500` is the text `%00`, no NUL.
    let fine = app.get("/v1/prompts?q=%2500").await;
    assert_eq!(fine.status.as_u16(), 200, "{}", fine.body);
}

async fn an_over_long_filter_is_refused_naming_it(app: TestApp) {
    app.seed_prompt("greet").await;
    let long = "a".repeat(50_001);
    for (path, field) in [
        (format!("/v1/prompts?q={long}"), "q"),
        (format!("/v1/prompts?q={}", "%25".repeat(201)), "q"),
        (format!("/v1/prompts?tag={}", "t".repeat(201)), "tag"),
    ] {
        assert_refused(&app.get(&path).await, field);
    }
    // The bound itself is fine, counted in characters, not bytes.
    let at_bound = app
        .get(&format!("/v1/prompts?q={}", "%C3%A9".repeat(200)))
        .await;
    assert_eq!(at_bound.status.as_u16(), 200, "{}", at_bound.body);
    assert_eq!(at_bound.body["items"], json!([]));
    let found = app.get("/v1/prompts?q=gre").await;
    assert_eq!(found.body["items"][0]["name"], "greet", "{}", found.body);
}

async fn nul_in_a_path_parameter_is_refused_naming_it(app: TestApp) {
    for (method, path) in [
        (Method::GET, "/v1/datasets/a%00b"),
        (Method::GET, "/v1/datasets/a%00b/items"),
        (Method::GET, "/v1/prompts/a%00b"),
    ] {
        let answer = app.request(method, path, None).await;
        assert_refused(&answer, "name");
    }
    let upload = Request::builder()
        .method(Method::POST)
        .uri("/v1/datasets/a%00b/items")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("[]"))
        .expect("request");
    assert_refused(&app.send(upload).await, "name");
}
