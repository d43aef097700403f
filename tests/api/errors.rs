//! Bad input: every 4xx is problem+json with a stable code and the field at fault.

use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::json;

use crate::support::{app_with, test_config, with_database, Backend, TestApp};

crate::backend_tests!(
    malformed_json_is_400,
    wrong_types_missing_and_unknown_fields_are_422,
    other_content_types_are_415,
    unknown_routes_and_methods_are_problems,
    oversized_body_is_413_and_writes_nothing,
    name_errors_say_which_kind_of_name,
    a_body_that_is_not_an_object_says_so,
);

fn raw(
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    builder.body(body.into()).expect("request")
}

async fn malformed_json_is_400(app: TestApp) {
    for body in ["{", "{\"name\": }", "", "{\"name\": \"a\"} {}", "nul"] {
        let response = app
            .send(raw(
                Method::POST,
                "/v1/prompts",
                Some("application/json"),
                body,
            ))
            .await;
        response.assert_problem(400, "malformed_json");
    }
}

async fn wrong_types_missing_and_unknown_fields_are_422(app: TestApp) {
    let cases = [
        (json!({"name": 7}), "name"),
        (json!({}), "name"),
        (json!({"name": "a", "tags": "x"}), "tags"),
        (json!({"name": "a", "tags": ["x", 2]}), "tags[1]"),
        (json!({"name": "a", "colour": "red"}), "colour"),
        (json!(["a"]), "body"),
    ];
    for (body, field) in cases {
        let response = app.post("/v1/prompts", body.clone()).await;
        response.assert_problem(422, "validation_failed");
        assert_eq!(response.error_fields(), [field], "{body}");
    }
}

async fn other_content_types_are_415(app: TestApp) {
    let form = app
        .send(raw(
            Method::POST,
            "/v1/prompts",
            Some("application/x-www-form-urlencoded"),
            "name=a",
        ))
        .await;
    form.assert_problem(415, "unsupported_media_type");
    // No Content-Type at all is read as JSON; so is a +json type.
    let bare = app
        .send(raw(Method::POST, "/v1/prompts", None, r#"{"name": "a"}"#))
        .await;
    assert_eq!(bare.status.as_u16(), 201, "{}", bare.body);
    let vendor = app
        .send(raw(
            Method::POST,
            "/v1/prompts",
            Some("application/vnd.x+json; charset=utf-8"),
            r#"{"name": "b"}"#,
        ))
        .await;
    assert_eq!(vendor.status.as_u16(), 201, "{}", vendor.body);
}

async fn unknown_routes_and_methods_are_problems(app: TestApp) {
    app.get("/v2/nothing")
        .await
        .assert_problem(404, "route_not_found");
    app.request(Method::PUT, "/v1/prompts", Some(json!({})))
        .await
        .assert_problem(405, "method_not_allowed");
}

async fn oversized_body_is_413_and_writes_nothing(app: TestApp) {
    app.seed_prompt("big").await;
    let template = "x".repeat(1024 * 1024 + 1);
    let response = app
        .post(
            "/v1/prompts/big/versions",
            json!({"type": "text", "template": template}),
        )
        .await;
    response.assert_problem(413, "payload_too_large");
    assert_eq!(
        app.get("/v1/prompts/big/versions").await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn body_limit_is_configurable() {
    with_database(Backend::Sqlite, |url| async move {
        let mut config = test_config(&url);
        config.http.body_limit_bytes = 64;
        let app = app_with(config).await;
        let small = app.post("/v1/prompts", json!({"name": "a"})).await;
        assert_eq!(small.status.as_u16(), 201);
        let large = app
            .post(
                "/v1/prompts",
                json!({"name": "b", "description": "d".repeat(100)}),
            )
            .await;
        large.assert_problem(413, "payload_too_large");
    })
    .await;
}

/// Every refused name says what it was the name of: a dataset named like a
/// prompt must not be refused as a "prompt name".
async fn name_errors_say_which_kind_of_name(app: TestApp) {
    app.seed_prompt("greet").await;
    let cases = [
        (
            app.post("/v1/datasets", json!({"name": "Bad Name"})).await,
            "invalid_name",
            "dataset name \"Bad Name\"",
        ),
        (
            app.post("/v1/projects", json!({"name": "Bad Name"})).await,
            "invalid_name",
            "project name \"Bad Name\"",
        ),
        (
            app.put(
                "/v1/prompts/greet/labels/Bad%20Name",
                json!({"version": "1.0.0"}),
            )
            .await,
            "invalid_label",
            "label \"Bad Name\"",
        ),
        (
            app.post("/v1/prompts", json!({"name": "Bad Name"})).await,
            "invalid_name",
            "prompt name \"Bad Name\"",
        ),
    ];
    for (response, code, kind) in cases {
        let problem = response.assert_problem(422, code);
        let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(kind), "{kind}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(kind), "{kind}: {problem}");
    }
}

/// A body of the wrong kind is refused as a whole, not element by element
/// (serde would read `[1]` as a struct and complain about its first field).
async fn a_body_that_is_not_an_object_says_so(app: TestApp) {
    let cases = [
        ("[1]", "an array"),
        ("[\"greet\", null, null]", "an array"),
        ("\"greet\"", "a string"),
        (" 3", "a number"),
        ("null", "null"),
    ];
    for path in ["/v1/prompts", "/v1/render"] {
        for (body, found) in cases {
            let response = app
                .send(raw(Method::POST, path, Some("application/json"), body))
                .await;
            let problem = response.assert_problem(422, "validation_failed");
            assert_eq!(
                problem["errors"],
                json!([{"field": "body", "message": format!("expected a JSON object, found {found}")}]),
                "{path} {body}"
            );
        }
    }
    // Broken JSON is still a syntax error, whatever it starts with.
    app.send(raw(
        Method::POST,
        "/v1/prompts",
        Some("application/json"),
        "[1,",
    ))
    .await
    .assert_problem(400, "malformed_json");
    assert_eq!(app.get("/v1/prompts").await.body["items"], json!([]));
}
