//! The MLflow-compatible routes under `/api/2.0/mlflow`: shapes and errors
//! over plain HTTP, then MLflow's real client (mlflow-skinny) against a
//! served promptreg (tests/mlflow/client_test.py).

use std::path::{Path, PathBuf};

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::TestApp;

crate::backend_tests!(
    registered_models_are_prompts_with_key_value_tags,
    model_versions_carry_content_in_tags,
    aliases_are_labels_with_history,
    search_filters_and_pages_by_name,
    refusals_answer_in_mlflow_shape,
    mlflow_client_works_unchanged,
);

const API: &str = "/api/2.0/mlflow";

fn is_prompt() -> Value {
    json!({"key": "mlflow.prompt.is_prompt", "value": "true"})
}

fn text_version(name: &str, template: &str) -> Value {
    json!({
        "name": name,
        "source": "dummy-source",
        "tags": [
            is_prompt(),
            {"key": "mlflow.prompt.text", "value": template},
            {"key": "_mlflow_prompt_type", "value": "text"},
        ],
    })
}

/// The value of tag `key` in `tags` (`[{key, value}]`).
fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

async fn registered_models_are_prompts_with_key_value_tags(app: TestApp) {
    let created = app
        .post(
            &format!("{API}/registered-models/create"),
            json!({"name": "greeting", "description": "Greets",
                   "tags": [is_prompt(), {"key": "team", "value": "support"}]}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let model = &created.body["registered_model"];
    assert_eq!(model["name"], "greeting");
    assert_eq!(model["description"], "Greets");
    assert_eq!(tag(&model["tags"], "mlflow.prompt.is_prompt"), Some("true"));
    assert_eq!(tag(&model["tags"], "team"), Some("support"));
    assert!(model["creation_timestamp"].as_i64().unwrap_or_default() > 0);

    let prompt = app.get("/v1/prompts/greeting").await;
    assert_eq!(prompt.body["tags"], json!(["team=support"]));
    assert_eq!(prompt.body["description"], "Greets");

    let again = app
        .post(
            &format!("{API}/registered-models/create"),
            json!({"name": "greeting", "tags": [is_prompt()]}),
        )
        .await;
    again.assert_mlflow_error(400, "RESOURCE_ALREADY_EXISTS");

    let set = app
        .post(
            &format!("{API}/registered-models/set-tag"),
            json!({"name": "greeting", "key": "team", "value": "sales"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body, json!({}));
    let got = app
        .get(&format!("{API}/registered-models/get?name=greeting"))
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(
        tag(&got.body["registered_model"]["tags"], "team"),
        Some("sales")
    );
    assert_eq!(
        app.get("/v1/prompts/greeting").await.body["tags"],
        json!(["team=sales"])
    );

    let deleted = app
        .request(
            Method::DELETE,
            &format!("{API}/registered-models/delete-tag"),
            Some(json!({"name": "greeting", "key": "team"})),
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        app.get("/v1/prompts/greeting").await.body["tags"],
        json!([])
    );

    // A tag set through /v1 without `=` is a key with an empty value.
    app.patch("/v1/prompts/greeting", json!({"tags": ["support"]}))
        .await;
    let got = app
        .get(&format!("{API}/registered-models/get?name=greeting"))
        .await;
    assert_eq!(
        tag(&got.body["registered_model"]["tags"], "support"),
        Some("")
    );

    // Deleting a prompt with no version leaves it; with versions, refused.
    let app = &app;
    let delete = |name: &str| {
        let body = json!({"name": name});
        async move {
            app.request(
                Method::DELETE,
                &format!("{API}/registered-models/delete"),
                Some(body),
            )
            .await
        }
    };
    assert_eq!(delete("greeting").await.status, 200);
    app.seed_version("greeting", "Hello").await;
    let refused = delete("greeting").await;
    assert!(refused
        .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE")
        .contains("archive"));
    delete("missing")
        .await
        .assert_mlflow_error(404, "RESOURCE_DOES_NOT_EXIST");
}

async fn model_versions_carry_content_in_tags(app: TestApp) {
    let mut body = text_version("greeting", "Hello {{ name }}!");
    body["description"] = json!("First");
    if let Some(tags) = body["tags"].as_array_mut() {
        tags.push(json!({"key": "_mlflow_prompt_model_config",
                         "value": "{\"model_name\": \"gpt-4o\", \"max_tokens\": 50}"}));
        tags.push(json!({"key": "_mlflow_prompt_response_format",
                         "value": "{\"type\": \"object\"}"}));
        tags.push(json!({"key": "git_sha", "value": "4f2a9c1"}));
    }
    let created = app
        .post(&format!("{API}/model-versions/create"), body.clone())
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let version = &created.body["model_version"];
    assert_eq!(version["version"], "1");
    assert_eq!(version["status"], "READY");
    assert_eq!(version["description"], "First");
    let tags = &version["tags"];
    assert_eq!(tag(tags, "mlflow.prompt.is_prompt"), Some("true"));
    assert_eq!(tag(tags, "mlflow.prompt.text"), Some("Hello {{ name }}!"));
    assert_eq!(tag(tags, "_mlflow_prompt_type"), Some("text"));
    assert_eq!(tag(tags, "git_sha"), Some("4f2a9c1"));
    let config: Value =
        serde_json::from_str(tag(tags, "_mlflow_prompt_model_config").unwrap_or("null"))
            .expect("JSON");
    assert_eq!(config, json!({"model_name": "gpt-4o", "max_tokens": 50}));

    let v1 = app.get("/v1/prompts/greeting/versions/1.0.0").await;
    assert_eq!(v1.body["model_config"], config);
    assert_eq!(v1.body["output_schema"], json!({"type": "object"}));
    assert_eq!(v1.body["metadata"], json!({"git_sha": "4f2a9c1"}));
    assert_eq!(v1.body["message"], "First");

    // Identical content: the same version, nothing new.
    let again = app
        .post(&format!("{API}/model-versions/create"), body)
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["model_version"]["version"], "1");
    let listed = app.get("/v1/prompts/greeting/versions").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    // A /v1 version with metadata of any JSON type, and a chat prompt.
    app.seed_prompt("chat").await;
    app.seed_version_with(
        "chat",
        json!({"type": "chat", "messages": [{"role": "system", "content": "Be {{tone}}."}],
               "metadata": {"pr": 12, "author": "ada"}}),
    )
    .await;
    let got = app
        .get(&format!("{API}/model-versions/get?name=chat&version=1"))
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let tags = &got.body["model_version"]["tags"];
    assert_eq!(tag(tags, "_mlflow_prompt_type"), Some("chat"));
    let messages: Value =
        serde_json::from_str(tag(tags, "mlflow.prompt.text").unwrap_or("null")).expect("JSON");
    assert_eq!(
        messages,
        json!([{"role": "system", "content": "Be {{tone}}."}])
    );
    assert_eq!(tag(tags, "pr"), Some("12"));
    assert_eq!(tag(tags, "author"), Some("ada"));

    app.get(&format!("{API}/model-versions/get?name=chat&version=2"))
        .await
        .assert_mlflow_error(404, "RESOURCE_DOES_NOT_EXIST");
    let bad = app
        .get(&format!("{API}/model-versions/get?name=chat&version=two"))
        .await;
    assert!(bad
        .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE")
        .contains("version"));
}

async fn aliases_are_labels_with_history(app: TestApp) {
    for template in ["one", "two"] {
        let created = app
            .post(
                &format!("{API}/model-versions/create"),
                text_version("greeting", template),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
    }
    let set = app
        .post(
            &format!("{API}/registered-models/alias"),
            json!({"name": "greeting", "alias": "production", "version": "1"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let history = app
        .get("/v1/prompts/greeting/labels/production/history")
        .await;
    assert_eq!(history.body["items"][0]["to"], "1.0.0", "{}", history.body);

    let by_alias = app
        .get(&format!(
            "{API}/registered-models/alias?name=greeting&alias=production"
        ))
        .await;
    assert_eq!(by_alias.status, 200, "{}", by_alias.body);
    assert_eq!(by_alias.body["model_version"]["version"], "1");
    assert_eq!(
        by_alias.body["model_version"]["aliases"],
        json!(["production"])
    );
    let latest = app
        .get(&format!(
            "{API}/registered-models/alias?name=greeting&alias=latest"
        ))
        .await;
    assert_eq!(latest.body["model_version"]["version"], "2");
    let model = app
        .get(&format!("{API}/registered-models/get?name=greeting"))
        .await;
    assert_eq!(
        model.body["registered_model"]["aliases"],
        json!([{"alias": "production", "version": "1"}])
    );

    for (alias, mentions) in [("latest", "latest"), ("Prod", "alias")] {
        let refused = app
            .post(
                &format!("{API}/registered-models/alias"),
                json!({"name": "greeting", "alias": alias, "version": 2}),
            )
            .await;
        let message = refused.assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
        assert!(message.contains(mentions), "{alias}: {message}");
    }

    let deleted = app
        .request(
            Method::DELETE,
            &format!("{API}/registered-models/alias"),
            Some(json!({"name": "greeting", "alias": "production"})),
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let history = app
        .get("/v1/prompts/greeting/labels/production/history")
        .await;
    assert_eq!(history.body["items"][0]["to"], Value::Null);
    app.get(&format!(
        "{API}/registered-models/alias?name=greeting&alias=production"
    ))
    .await
    .assert_mlflow_error(404, "RESOURCE_DOES_NOT_EXIST");
}

async fn search_filters_and_pages_by_name(app: TestApp) {
    for name in ["page-c", "page-a", "page-b", "other"] {
        app.post(
            &format!("{API}/model-versions/create"),
            text_version(name, name),
        )
        .await;
    }
    app.seed_prompt("folder/hidden").await;
    app.patch("/v1/prompts/other", json!({"tags": ["team=ml"]}))
        .await;
    let app = &app;
    let search = |query: &str| {
        let path = format!("{API}/registered-models/search?{query}");
        async move { app.get(&path).await }
    };
    let names = |body: &Value| -> Vec<String> {
        body["registered_models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect()
    };
    let prompts_only = "filter=tags.%60mlflow.prompt.is_prompt%60+%3D+%27true%27";
    let all = search(prompts_only).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(names(&all.body), ["other", "page-a", "page-b", "page-c"]);
    assert!(all.body.get("next_page_token").is_none());

    let first = search(&format!(
        "{prompts_only}+AND+name+LIKE+%27page-%25%27&max_results=2"
    ))
    .await;
    assert_eq!(names(&first.body), ["page-a", "page-b"]);
    let token = first.body["next_page_token"].as_str().unwrap_or_default();
    let second = search(&format!(
        "filter=name+LIKE+%27page-%25%27&max_results=2&page_token={token}"
    ))
    .await;
    assert_eq!(names(&second.body), ["page-c"]);
    assert!(second.body.get("next_page_token").is_none());

    let tagged = search("filter=tags.team+%3D+%27ml%27").await;
    assert_eq!(names(&tagged.body), ["other"]);
    let exact = search("filter=name+%3D+%27page-b%27&order_by=name+ASC").await;
    assert_eq!(names(&exact.body), ["page-b"]);

    for (query, mentions) in [
        ("filter=name+%21%3D+%27x%27", "!="),
        ("filter=run_id+%3D+%27x%27", "run_id"),
        ("filter=name+%3D+%27a%27+OR+name+%3D+%27b%27", "AND"),
        ("max_results=0", "max_results"),
        ("max_results=1001", "max_results"),
        ("order_by=creation_timestamp+DESC", "order_by"),
        ("page_token=%21%21", "page_token"),
    ] {
        let message = search(query)
            .await
            .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
        assert!(message.contains(mentions), "{query}: {message}");
    }
}

async fn refusals_answer_in_mlflow_shape(app: TestApp) {
    let create_model = |body: Value| {
        let app = &app;
        async move {
            app.post(&format!("{API}/registered-models/create"), body)
                .await
        }
    };
    let message = create_model(json!({"name": "plain-model"}))
        .await
        .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
    assert!(
        message.contains("promptreg stores prompts only"),
        "{message}"
    );
    let message = app
        .post(
            &format!("{API}/model-versions/create"),
            json!({"name": "plain-model", "source": "s3://bucket/model"}),
        )
        .await
        .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
    assert!(
        message.contains("promptreg stores prompts only"),
        "{message}"
    );
    assert_eq!(app.get("/v1/prompts/plain-model").await.status, 404);

    for (name, mentions) in [("Upper_Case", "name"), ("team/greeting", "folder")] {
        let message = create_model(json!({"name": name, "tags": [is_prompt()]}))
            .await
            .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
        assert!(message.contains(mentions), "{name}: {message}");
    }
    let message = create_model(json!({"name": "spaced", "tags": [is_prompt(),
                                      {"key": "owner", "value": "Ada Lovelace"}]}))
    .await
    .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("tags"), "{message}");

    app.get(&format!("{API}/registered-models/get?name=missing"))
        .await
        .assert_mlflow_error(404, "RESOURCE_DOES_NOT_EXIST");
    let message = app
        .get(&format!("{API}/registered-models/get"))
        .await
        .assert_mlflow_error(400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("name"), "{message}");
    let message = app
        .get(&format!("{API}/runs/get?run_id=1"))
        .await
        .assert_mlflow_error(404, "ENDPOINT_NOT_FOUND");
    assert!(message.contains("/api/2.0/mlflow/runs/get"), "{message}");
    app.get("/api/3.0/mlflow/server-info")
        .await
        .assert_mlflow_error(404, "ENDPOINT_NOT_FOUND");

    // Credentials: Bearer or Basic (key id, key); MLflow's codes for each refusal.
    let path = format!("{API}/registered-models/search");
    let anonymous = app.request_as(None, Method::GET, &path, None).await;
    anonymous.assert_mlflow_error(401, "UNAUTHENTICATED");
    let challenges: Vec<&str> = anonymous
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        challenges,
        ["Bearer realm=\"promptreg\"", "Basic realm=\"promptreg\""]
    );
    app.request_as(
        Some("pr_wrong00000000000000000000000000000000"),
        Method::GET,
        &path,
        None,
    )
    .await
    .assert_mlflow_error(401, "UNAUTHENTICATED");
    let (id, secret) = app
        .create_key(json!({"name": "reader", "scopes": ["read"]}))
        .await;
    let basic = app
        .request_basic(
            Some((id.as_str(), secret.as_str())),
            Method::GET,
            &path,
            None,
        )
        .await;
    assert_eq!(basic.status, 200, "{}", basic.body);
    app.request_basic(
        Some(("not-an-id", secret.as_str())),
        Method::GET,
        &path,
        None,
    )
    .await
    .assert_mlflow_error(401, "UNAUTHENTICATED");
    let message = app
        .request_as(
            Some(&secret),
            Method::POST,
            &format!("{API}/model-versions/create"),
            Some(text_version("by-reader", "x")),
        )
        .await
        .assert_mlflow_error(403, "PERMISSION_DENIED");
    assert!(message.contains("write"), "{message}");
    assert_eq!(app.get("/v1/prompts/by-reader").await.status, 404);
}

fn python() -> Result<PathBuf, String> {
    crate::support::python_venv("mlflow")
}

async fn mlflow_client_works_unchanged(app: TestApp) {
    let python = tokio::task::spawn_blocking(python)
        .await
        .expect("venv setup")
        .unwrap_or_else(|e| panic!("no Python with MLflow's client: {e}"));

    // Seeded through /v1, as a team moving over would have it.
    app.seed_prompt("from-v1").await;
    app.seed_version("from-v1", "Hi {{name}}, from /v1.").await;
    assert_eq!(
        app.set_label("from-v1", "production", "1.0.0").await.status,
        200
    );
    // A prompt with no version yet whose `gated` label a gate guards.
    app.seed_prompt("gated").await;
    app.post("/v1/datasets", json!({"name": "gate-set"})).await;
    let gate = app
        .put(
            "/v1/prompts/gated/gates/gated",
            json!({"dataset": "gate-set", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    let (_, admin) = app
        .create_key(json!({"name": "mlflow", "scopes": ["admin"]}))
        .await;
    let (read_id, read) = app
        .create_key(json!({"name": "mlflow-reader", "scopes": ["read"]}))
        .await;
    let url = app.serve().await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlflow/client_test.py");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .env("PROMPTREG_URL", &url)
            .env("ADMIN_KEY", &admin)
            .env("READ_KEY_ID", &read_id)
            .env("READ_KEY", &read)
            .env("GATED_PROMPT", "gated")
            .env("GATED_LABEL", "gated")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            // The client must find its server from what it is given, nothing else.
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .env_remove("MLFLOW_EXPERIMENT_ID")
            .env_remove("MLFLOW_EXPERIMENT_NAME")
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client test finished within 5 minutes")
    .expect("run the client test");
    // Shown with --nocapture; on failure in the assertion below.
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the MLflow client test failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
