//! The Langfuse-compatible API under `/api/public`: every status and error
//! body over plain HTTP, then the real Langfuse Python SDK against a served
//! promptreg (tests/langfuse/sdk_test.py).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::{json, Value};

use crate::support::{enc, TestApp, TestResponse};

crate::backend_tests!(
    get_prompt_by_default_label_label_version_and_latest,
    get_prompt_refuses_bad_queries_and_answers_404s,
    chat_prompts_map_placeholders_and_inline_partials,
    partials_are_inlined_at_the_label_fetched,
    create_prompt_makes_prompt_and_versions_like_v1,
    create_prompt_refuses_bad_input_and_writes_nothing,
    patch_moves_labels_with_history,
    list_prompts_filters_and_pages,
    basic_auth_maps_keys_and_scopes,
    health_projects_and_traces,
    langfuse_python_sdk_works_unchanged,
    list_and_get_refuse_what_the_schema_excludes,
);

/// An admin key's `(id, secret)`: the Langfuse public and secret key.
async fn admin_pair(app: &TestApp) -> (String, String) {
    app.create_key(json!({"name": "langfuse", "scopes": ["admin"]}))
        .await
}

struct Langfuse<'a> {
    app: &'a TestApp,
    public: String,
    secret: String,
}

impl<'a> Langfuse<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let (public, secret) = admin_pair(app).await;
        Self {
            app,
            public,
            secret,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.app
            .request_basic(
                Some((self.public.as_str(), self.secret.as_str())),
                method,
                path,
                body,
            )
            .await
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, body: Value) -> TestResponse {
        self.call(Method::POST, "/api/public/v2/prompts", Some(body))
            .await
    }
}

/// `greet`: 1.0.0 (production) "Hello {{name}}!", 1.0.1 (staging) with a
/// model config and a message; tagged `support`.
async fn seed_greet(app: &TestApp) {
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello {{name}}!").await;
    app.seed_version_with(
        "greet",
        json!({"template": "Hi {{name}}, welcome to {{place}}.",
               "model_config": {"model": "gpt-4o-mini", "temperature": 0.2},
               "message": "Warmer greeting"}),
    )
    .await;
    assert_eq!(
        app.set_label("greet", "production", "1.0.0").await.status,
        200
    );
    assert_eq!(app.set_label("greet", "staging", "1.0.1").await.status, 200);
    let tagged = app
        .patch("/v1/prompts/greet", json!({"tags": ["support"]}))
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.body);
}

async fn get_prompt_by_default_label_label_version_and_latest(app: TestApp) {
    seed_greet(&app).await;
    let lf = Langfuse::new(&app).await;

    let default = lf.get("/api/public/v2/prompts/greet").await;
    assert_eq!(default.status, 200, "{}", default.body);
    assert_eq!(default.header("content-type"), Some("application/json"));
    let body = &default.body;
    assert_eq!(body["name"], "greet");
    assert_eq!(body["version"], 1);
    assert_eq!(body["type"], "text");
    assert_eq!(body["prompt"], "Hello {{name}}!");
    assert_eq!(body["config"], json!({}));
    assert_eq!(body["labels"], json!(["production"]));
    assert_eq!(body["tags"], json!(["support"]));
    assert_eq!(body["commitMessage"], Value::Null);
    assert!(body
        .as_object()
        .is_some_and(|o| o.contains_key("resolutionGraph") && o["resolutionGraph"].is_null()));
    for field in ["id", "createdAt", "updatedAt"] {
        assert!(body[field].is_string(), "{field}: {body}");
    }

    let staging = lf.get("/api/public/v2/prompts/greet?label=staging").await;
    assert_eq!(staging.status, 200, "{}", staging.body);
    assert_eq!(staging.body["version"], 2);
    assert_eq!(
        staging.body["config"],
        json!({"model": "gpt-4o-mini", "temperature": 0.2})
    );
    assert_eq!(staging.body["commitMessage"], "Warmer greeting");
    assert_eq!(staging.body["labels"], json!(["staging", "latest"]));

    let by_number = lf.get("/api/public/v2/prompts/greet?version=2").await;
    assert_eq!(by_number.body, staging.body);
    let first = lf.get("/api/public/v2/prompts/greet?version=1").await;
    assert_eq!(first.body, default.body);
    let latest = lf.get("/api/public/v2/prompts/greet?label=latest").await;
    assert_eq!(latest.body, staging.body);
    // The SDK's `resolve` parameter is accepted.
    let resolved = lf
        .get("/api/public/v2/prompts/greet?label=latest&resolve=true")
        .await;
    assert_eq!(resolved.body, staging.body);

    app.seed_prompt("support/faq").await;
    app.seed_version("support/faq", "FAQ").await;
    app.set_label("support/faq", "production", "1.0.0").await;
    let folder = lf
        .get(&format!("/api/public/v2/prompts/{}", enc("support/faq")))
        .await;
    assert_eq!(folder.status, 200, "{}", folder.body);
    assert_eq!(folder.body["name"], "support/faq");
}

async fn get_prompt_refuses_bad_queries_and_answers_404s(app: TestApp) {
    seed_greet(&app).await;
    let lf = Langfuse::new(&app).await;
    let cases = [
        (
            "/api/public/v2/prompts/greet?version=1&label=production",
            400,
            "InvalidRequestError",
            "not both",
        ),
        (
            "/api/public/v2/prompts/greet?version=abc",
            400,
            "InvalidRequestError",
            "version",
        ),
        (
            "/api/public/v2/prompts/greet?version=1.5",
            400,
            "InvalidRequestError",
            "version",
        ),
        (
            "/api/public/v2/prompts/greet?version=0",
            400,
            "InvalidRequestError",
            "version",
        ),
        (
            "/api/public/v2/prompts/greet?label=Prod",
            400,
            "InvalidRequestError",
            "Prod",
        ),
        (
            "/api/public/v2/prompts/Greet",
            400,
            "InvalidRequestError",
            "Greet",
        ),
        (
            "/api/public/v2/prompts/greet?version=9",
            404,
            "LangfuseNotFoundError",
            "9",
        ),
        (
            "/api/public/v2/prompts/greet?label=canary",
            404,
            "LangfuseNotFoundError",
            "canary",
        ),
        (
            "/api/public/v2/prompts/missing",
            404,
            "LangfuseNotFoundError",
            "missing",
        ),
    ];
    for (path, status, error, mentions) in cases {
        let response = lf.get(path).await;
        let message = response.assert_langfuse_error(status, error);
        assert!(message.contains(mentions), "{path}: {message}");
    }
    // A prompt without a `production` label: 404, as in Langfuse.
    app.seed_prompt("draft").await;
    app.seed_version("draft", "x").await;
    lf.get("/api/public/v2/prompts/draft")
        .await
        .assert_langfuse_error(404, "LangfuseNotFoundError");
}

/// Partial `common/kind` (`kind`, labelled production) and chat prompt
/// `name` at production: `system` then the partial, a `history`
/// placeholder, and the user's `{{question}}`.
async fn seed_chat_with_partial(app: &TestApp, name: &str, kind: &str, system: &str) {
    app.seed_prompt("common/kind").await;
    app.seed_version("common/kind", kind).await;
    app.set_label("common/kind", "production", "1.0.0").await;
    app.seed_prompt(name).await;
    app.seed_version_with(
        name,
        json!({"type": "chat", "messages": [
            {"role": "system", "content": format!("{system} {{{{> common/kind}}}}")},
            {"role": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"},
        ], "labels": ["production"]}),
    )
    .await;
}

async fn chat_prompts_map_placeholders_and_inline_partials(app: TestApp) {
    let lf = Langfuse::new(&app).await;
    seed_chat_with_partial(&app, "assistant", "Be kind to {{name}}.", "You help.").await;
    let response = lf.get("/api/public/v2/prompts/assistant").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["type"], "chat");
    assert_eq!(
        response.body["prompt"],
        json!([
            {"role": "system", "content": "You help. Be kind to {{name}}."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"},
        ])
    );
}

async fn partials_are_inlined_at_the_label_fetched(app: TestApp) {
    let lf = Langfuse::new(&app).await;
    seed_chat_with_partial(&app, "assistant", "Be kind.", "You help.").await;
    app.seed_version_with(
        "common/kind",
        json!({"template": "Be brief.", "labels": ["staging"]}),
    )
    .await;
    app.set_label("assistant", "staging", "1.0.0").await;
    let system = |response: TestResponse| {
        assert_eq!(response.status, 200, "{}", response.body);
        response.body["prompt"][0]["content"].clone()
    };
    assert_eq!(
        system(
            lf.get("/api/public/v2/prompts/assistant?label=staging")
                .await
        ),
        "You help. Be brief."
    );
    assert_eq!(
        system(lf.get("/api/public/v2/prompts/assistant").await),
        "You help. Be kind."
    );
    // By number, or at a label the partial lacks: production, as renders do.
    assert_eq!(
        system(lf.get("/api/public/v2/prompts/assistant?version=1").await),
        "You help. Be kind."
    );
    app.set_label("assistant", "canary", "1.0.0").await;
    assert_eq!(
        system(
            lf.get("/api/public/v2/prompts/assistant?label=canary")
                .await
        ),
        "You help. Be kind."
    );
}

async fn create_prompt_makes_prompt_and_versions_like_v1(app: TestApp) {
    let lf = Langfuse::new(&app).await;
    let created = lf
        .post(
            json!({"name": "notes/welcome", "type": "text", "prompt": "Dear {{name}},",
                     "config": {"model": "m1"}, "labels": ["production", "latest"],
                     "tags": ["sdk"], "commitMessage": "first"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["labels"], json!(["production", "latest"]));
    assert_eq!(created.body["tags"], json!(["sdk"]));
    assert_eq!(created.body["commitMessage"], "first");

    let path = format!("/v1/prompts/{}", enc("notes/welcome"));
    let version = app.get(&format!("{path}/versions/production")).await;
    assert_eq!(version.status, 200, "{}", version.body);
    assert_eq!(version.body["version"], "1.0.0");
    assert_eq!(version.body["seq"], 1);
    assert_eq!(version.body["engine"], "handlebars");
    assert_eq!(version.body["template"], "Dear {{name}},");
    assert_eq!(version.body["model_config"], json!({"model": "m1"}));
    assert_eq!(version.body["message"], "first");
    assert_eq!(version.body["variables"], json!(["name"]));
    assert_eq!(app.get(&path).await.body["tags"], json!(["sdk"]));

    // Identical content: 200, nothing created, labels still applied; nulls are absent.
    let again = lf
        .post(json!({"name": "notes/welcome", "prompt": "Dear {{name}},",
                     "config": {"model": "m1"}, "labels": ["staging"], "tags": null,
                     "commitMessage": null, "type": null}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["version"], 1);
    assert_eq!(
        again.body["labels"],
        json!(["production", "staging", "latest"])
    );
    assert_eq!(
        app.get(&format!("{path}/versions")).await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(app.get(&path).await.body["tags"], json!(["sdk"]));

    // New content: next seq and patch semver; tags replaced when given.
    let second = lf
        .post(json!({"name": "notes/welcome", "prompt": "Dear {{name}}!", "tags": ["sdk", "v2"]}))
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["version"], 2);
    assert_eq!(second.body["labels"], json!(["latest"]));
    assert_eq!(second.body["tags"], json!(["sdk", "v2"]));
    assert_eq!(
        app.get(&format!("{path}/versions/latest")).await.body["version"],
        "1.0.1"
    );

    // Chat, with a placeholder; type inferred from the array.
    let chat = lf
        .post(json!({"name": "bot", "prompt": [
            {"role": "system", "content": "You are {{persona}}.", "type": "chatmessage"},
            {"type": "placeholder", "name": "history"},
        ]}))
        .await;
    assert_eq!(chat.status, 201, "{}", chat.body);
    assert_eq!(chat.body["type"], "chat");
    assert_eq!(
        app.get("/v1/prompts/bot/versions/latest").await.body["messages"],
        json!([
            {"role": "system", "content": "You are {{persona}}."},
            {"role": "placeholder", "name": "history"},
        ])
    );

    // The writes are audited as /v1's are.
    let audit = app.get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"prompt.create"), "{actions:?}");
}

async fn create_prompt_refuses_bad_input_and_writes_nothing(app: TestApp) {
    let lf = Langfuse::new(&app).await;
    lf.post(json!({"name": "text-one", "prompt": "x"})).await;
    let cases = [
        (json!({"name": "Bad Name", "prompt": "x"}), "name"),
        (
            json!({"name": "fresh", "prompt": "x", "labels": ["Prod"]}),
            "labels[0]",
        ),
        (
            json!({"name": "fresh", "prompt": "x", "labels": ["ok", "no way"]}),
            "labels[1]",
        ),
        (json!({"name": "fresh", "prompt": 3}), "prompt"),
        (
            json!({"name": "fresh", "type": "chat", "prompt": "x"}),
            "prompt",
        ),
        (
            json!({"name": "fresh", "prompt": [{"role": "tool", "content": "x"}]}),
            "prompt[0]",
        ),
        (
            json!({"name": "fresh", "prompt": "x", "config": "fast"}),
            "config",
        ),
        (json!({"name": "fresh", "prompt": "{{#if}}"}), "prompt"),
        (
            json!({"name": "fresh", "prompt": "x", "tags": ["a b"]}),
            "tags[0]",
        ),
        (
            json!({"name": "fresh", "type": "poem", "prompt": "x"}),
            "type",
        ),
        (json!({"prompt": "x"}), "name"),
        (
            json!({"name": "text-one", "prompt": [{"role": "user", "content": "x"}]}),
            "type",
        ),
    ];
    for (body, field) in cases {
        let response = lf.post(body.clone()).await;
        let message = response.assert_langfuse_error(400, "InvalidRequestError");
        assert!(message.contains(field), "{body}: {message}");
    }
    assert_eq!(app.get("/v1/prompts/fresh").await.status, 404);
    assert_eq!(
        app.get("/v1/prompts/text-one/versions").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Malformed JSON is a 400 too.
    let malformed = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/public/v2/prompts")
                .header(header::AUTHORIZATION, basic(&lf.public, &lf.secret))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{"))
                .expect("request"),
        )
        .await;
    malformed.assert_langfuse_error(400, "InvalidRequestError");
    // An archived prompt takes no versions: 400, not 409.
    app.delete("/v1/prompts/text-one").await;
    let archived = lf.post(json!({"name": "text-one", "prompt": "y"})).await;
    assert!(archived
        .assert_langfuse_error(400, "InvalidRequestError")
        .contains("archived"));
}

fn basic(public: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{public}:{secret}"))
    )
}

async fn patch_moves_labels_with_history(app: TestApp) {
    seed_greet(&app).await;
    let lf = Langfuse::new(&app).await;
    let moved = lf
        .call(
            Method::PATCH,
            "/api/public/v2/prompts/greet/versions/2",
            Some(json!({"newLabels": ["production", "canary"]})),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["version"], 2);
    assert_eq!(
        moved.body["labels"],
        json!(["canary", "production", "staging", "latest"])
    );
    let history = app.get("/v1/prompts/greet/labels/production/history").await;
    assert_eq!(history.body["items"][0]["from"], "1.0.0");
    assert_eq!(history.body["items"][0]["to"], "1.0.1");
    let labels = app.get("/v1/prompts/greet/labels").await;
    assert_eq!(labels.body["items"].as_array().map(Vec::len), Some(3));

    let cases = [
        (
            "/api/public/v2/prompts/greet/versions/1",
            json!({"newLabels": ["latest"]}),
            400,
            "InvalidRequestError",
            "latest",
        ),
        (
            "/api/public/v2/prompts/greet/versions/1",
            json!({"newLabels": ["Nope"]}),
            400,
            "InvalidRequestError",
            "newLabels[0]",
        ),
        (
            "/api/public/v2/prompts/greet/versions/x",
            json!({"newLabels": ["a"]}),
            400,
            "InvalidRequestError",
            "version",
        ),
        (
            "/api/public/v2/prompts/greet/versions/1",
            json!({}),
            400,
            "InvalidRequestError",
            "newLabels",
        ),
        (
            "/api/public/v2/prompts/greet/versions/7",
            json!({"newLabels": ["a"]}),
            404,
            "LangfuseNotFoundError",
            "7",
        ),
        (
            "/api/public/v2/prompts/nope/versions/1",
            json!({"newLabels": ["a"]}),
            404,
            "LangfuseNotFoundError",
            "nope",
        ),
    ];
    for (path, body, status, error, mentions) in cases {
        let response = lf.call(Method::PATCH, path, Some(body)).await;
        let message = response.assert_langfuse_error(status, error);
        assert!(message.contains(mentions), "{path}: {message}");
    }
    // Nothing moved by the refused requests.
    let after = app.get("/v1/prompts/greet/labels").await;
    assert_eq!(after.body, labels.body);
}

async fn list_prompts_filters_and_pages(app: TestApp) {
    seed_greet(&app).await;
    let lf = Langfuse::new(&app).await;
    for name in ["a1", "a2", "a3"] {
        lf.post(json!({"name": name, "prompt": "x", "tags": ["bulk"], "config": {"n": name}}))
            .await;
    }
    app.seed_prompt("empty").await;
    lf.post(json!({"name": "gone", "prompt": "x"})).await;
    app.delete("/v1/prompts/gone").await;

    let all = lf.get("/api/public/v2/prompts").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let names: Vec<&str> = all.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["a3", "a2", "a1", "greet"],
        "archived and empty prompts are hidden"
    );
    assert_eq!(
        all.body["meta"],
        json!({"page": 1, "limit": 50, "totalItems": 4, "totalPages": 1})
    );
    let greet = &all.body["data"][3];
    assert_eq!(greet["type"], "text");
    assert_eq!(greet["versions"], json!([1, 2]));
    assert_eq!(greet["labels"], json!(["production", "staging", "latest"]));
    assert_eq!(greet["tags"], json!(["support"]));
    assert_eq!(
        greet["lastConfig"],
        json!({"model": "gpt-4o-mini", "temperature": 0.2})
    );
    assert!(greet["lastUpdatedAt"].is_string());

    let production = lf.get("/api/public/v2/prompts?label=production").await;
    assert_eq!(production.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(production.body["data"][0]["versions"], json!([1]));
    assert_eq!(production.body["data"][0]["lastConfig"], json!({}));

    let tagged = lf
        .get("/api/public/v2/prompts?tag=bulk&limit=2&page=2")
        .await;
    assert_eq!(tagged.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(tagged.body["data"][0]["name"], "a1");
    assert_eq!(
        tagged.body["meta"],
        json!({"page": 2, "limit": 2, "totalItems": 3, "totalPages": 2})
    );
    let named = lf.get("/api/public/v2/prompts?name=a2").await;
    assert_eq!(named.body["data"][0]["lastConfig"], json!({"n": "a2"}));

    for (query, mentions) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=x", "page"),
        ("label=Bad", "Bad"),
        ("name=Bad", "Bad"),
    ] {
        let response = lf.get(&format!("/api/public/v2/prompts?{query}")).await;
        let message = response.assert_langfuse_error(400, "InvalidRequestError");
        assert!(message.contains(mentions), "{query}: {message}");
    }
}

async fn basic_auth_maps_keys_and_scopes(app: TestApp) {
    seed_greet(&app).await;
    let (read_id, read_secret) = app
        .create_key(json!({"name": "reader", "scopes": ["read"]}))
        .await;
    let (write_id, write_secret) = app
        .create_key(json!({"name": "writer", "scopes": ["write"]}))
        .await;
    let path = "/api/public/v2/prompts/greet";
    let ok = app
        .request_basic(
            Some((read_id.as_str(), read_secret.as_str())),
            Method::GET,
            path,
            None,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let unknown = "pr_unknown00000000000000000000000000000000";
    for (credentials, why) in [
        (None, "no credentials"),
        (Some((read_id.as_str(), unknown)), "wrong secret"),
        (
            Some((write_id.as_str(), read_secret.as_str())),
            "another key's id",
        ),
        (
            Some(("not-a-uuid", read_secret.as_str())),
            "a public key that is no id",
        ),
        (Some((read_id.as_str(), "")), "empty secret"),
    ] {
        let response = app
            .request_basic(credentials, Method::GET, path, None)
            .await;
        response.assert_langfuse_error(401, "UnauthorizedError");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Basic realm=\"promptreg\""),
            "{why}"
        );
    }
    // A bearer header is not Langfuse's scheme.
    let bearer = app
        .request_as(Some(&read_secret), Method::GET, path, None)
        .await;
    bearer.assert_langfuse_error(401, "UnauthorizedError");

    let create = json!({"name": "by-reader", "prompt": "x"});
    let refused = app
        .request_basic(
            Some((read_id.as_str(), read_secret.as_str())),
            Method::POST,
            "/api/public/v2/prompts",
            Some(create.clone()),
        )
        .await;
    assert!(refused
        .assert_langfuse_error(403, "ForbiddenError")
        .contains("write"));
    assert_eq!(app.get("/v1/prompts/by-reader").await.status, 404);

    // A write key creates; setting labels as well needs promote, as on /v1.
    let written = app
        .request_basic(
            Some((write_id.as_str(), write_secret.as_str())),
            Method::POST,
            "/api/public/v2/prompts",
            Some(create),
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.body);
    let labelled = app
        .request_basic(
            Some((write_id.as_str(), write_secret.as_str())),
            Method::POST,
            "/api/public/v2/prompts",
            Some(json!({"name": "by-writer", "prompt": "x", "labels": ["production"]})),
        )
        .await;
    assert!(labelled
        .assert_langfuse_error(403, "ForbiddenError")
        .contains("promote"));
    assert_eq!(app.get("/v1/prompts/by-writer").await.status, 404);

    // Revoked keys are refused at once.
    app.delete(&format!("/v1/keys/{read_id}")).await;
    let revoked = app
        .request_basic(
            Some((read_id.as_str(), read_secret.as_str())),
            Method::GET,
            path,
            None,
        )
        .await;
    revoked.assert_langfuse_error(401, "UnauthorizedError");
}

async fn health_projects_and_traces(app: TestApp) {
    let health = app
        .request_basic(None, Method::GET, "/api/public/health", None)
        .await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "OK");
    assert!(health.body["version"].is_string());

    let lf = Langfuse::new(&app).await;
    let projects = lf.get("/api/public/projects").await;
    assert_eq!(projects.status, 200, "{}", projects.body);
    let project = &projects.body["data"][0];
    assert_eq!(project["name"], "default");
    assert!(project["id"].is_string());
    assert!(project["organization"]["id"].is_string());
    assert!(project["organization"]["name"].is_string());
    assert_eq!(project["metadata"], json!({}));
    assert_eq!(projects.body["data"].as_array().map(Vec::len), Some(1));
    app.request_basic(None, Method::GET, "/api/public/projects", None)
        .await
        .assert_langfuse_error(401, "UnauthorizedError");

    // An OTLP export as the SDK sends it: gzip'd protobuf. Accepted and dropped.
    let traces = Request::builder()
        .method(Method::POST)
        .uri("/api/public/otel/v1/traces")
        .header(header::AUTHORIZATION, basic(&lf.public, &lf.secret))
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(vec![
            0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]))
        .expect("request");
    let accepted = app.send(traces).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(
        accepted.header("content-type"),
        Some("application/x-protobuf")
    );
    let anonymous = app
        .request_basic(None, Method::POST, "/api/public/otel/v1/traces", None)
        .await;
    anonymous.assert_langfuse_error(401, "UnauthorizedError");

    // What promptreg does not keep answers in Langfuse's shape too.
    for path in ["/api/public/scores", "/api/public/v2/datasets/x"] {
        let message = lf
            .get(path)
            .await
            .assert_langfuse_error(404, "LangfuseNotFoundError");
        assert!(message.contains(path), "{message}");
    }
}

fn python() -> Result<PathBuf, String> {
    crate::support::python_venv("langfuse")
}

async fn langfuse_python_sdk_works_unchanged(app: TestApp) {
    let python = tokio::task::spawn_blocking(python)
        .await
        .expect("venv setup")
        .unwrap_or_else(|e| panic!("no Python with the Langfuse SDK: {e}"));

    // Seeded through /v1, as a team moving over would have them.
    seed_greet(&app).await;
    app.seed_prompt("support/faq").await;
    app.seed_version("support/faq", "FAQ for {{product}}").await;
    app.set_label("support/faq", "production", "1.0.0").await;
    seed_chat_with_partial(&app, "chat/assistant", "Be kind.", "You help {{name}}.").await;
    let (public, secret) = admin_pair(&app).await;
    let (read_public, read_secret) = app
        .create_key(json!({"name": "sdk-reader", "scopes": ["read"]}))
        .await;
    let mut spare = Vec::new();
    for n in 0..2 {
        let (id, _) = app
            .create_key(json!({"name": format!("spare{n}"), "scopes": ["read"]}))
            .await;
        spare.push(id);
    }
    let url = app.serve().await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/langfuse/sdk_test.py");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .env("PROMPTREG_URL", &url)
            .env("LF_PUBLIC_KEY", &public)
            .env("LF_SECRET_KEY", &secret)
            .env("LF_READ_PUBLIC_KEY", &read_public)
            .env("LF_READ_SECRET_KEY", &read_secret)
            .env("LF_SPARE_PUBLIC_KEYS", spare.join(","))
            // The SDK must find its server from what it is given, nothing else.
            .env_remove("LANGFUSE_BASE_URL")
            .env_remove("LANGFUSE_HOST")
            .env_remove("LANGFUSE_PUBLIC_KEY")
            .env_remove("LANGFUSE_SECRET_KEY")
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK test finished within 5 minutes")
    .expect("run the SDK test");
    // Shown with --nocapture; on failure in the assertion below.
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the Langfuse SDK test failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn list_and_get_refuse_what_the_schema_excludes(app: TestApp) {
    seed_greet(&app).await;
    let lf = Langfuse::new(&app).await;
    let long_tag = "t".repeat(201);
    let cases = [
        ("/api/public/v2/prompts?page=2147483648".to_owned(), "page"),
        ("/api/public/v2/prompts?page=0".to_owned(), "page"),
        (format!("/api/public/v2/prompts?tag={long_tag}"), "tag"),
        ("/api/public/v2/prompts?tag=a%00".to_owned(), "tag"),
        (
            "/api/public/v2/prompts/greet?resolve=AAA".to_owned(),
            "resolve",
        ),
    ];
    for (path, names) in cases {
        let message = lf
            .get(&path)
            .await
            .assert_langfuse_error(400, "InvalidRequestError");
        assert!(
            message.contains(names),
            "{path}: {message:?} should name {names}"
        );
    }
    let last = lf.get("/api/public/v2/prompts?page=2147483647").await;
    assert_eq!(last.status, 200, "{}", last.body);
    assert_eq!(last.body["data"], json!([]));
    for resolve in ["true", "false"] {
        let got = lf
            .get(&format!("/api/public/v2/prompts/greet?resolve={resolve}"))
            .await;
        assert_eq!(got.status, 200, "{}", got.body);
    }
    let nul = lf
        .post(json!({"name": "nul", "type": "text", "prompt": "a\u{0}b"}))
        .await;
    let message = nul.assert_langfuse_error(400, "InvalidRequestError");
    assert!(message.contains("prompt"), "{message:?}");

    // The document says what a text prompt's `prompt` is: a string.
    let document = app.get("/openapi.json").await.body;
    let schemas = &document["components"]["schemas"];
    let prompt = &schemas["LangfusePrompt"]["properties"]["prompt"];
    let named = prompt["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .map_or(prompt, |name| &schemas[name]);
    let shapes = serde_json::to_string(named).unwrap_or_default();
    assert!(
        shapes.contains("oneOf") && shapes.contains("\"string\"") && shapes.contains("array"),
        "{prompt}"
    );
}
