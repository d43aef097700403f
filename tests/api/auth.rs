//! Keys, scopes, projects, audit and rate limits: nobody gets in where they
//! don't belong. The route walk takes its route table from the generated
//! OpenAPI, so a new route cannot escape it.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{app_with, test_config, with_database, Backend, TestApp, ADMIN_KEY};

crate::backend_tests!(
    missing_unknown_and_malformed_keys_are_401_with_a_challenge,
    revocation_takes_effect_on_the_next_request,
    key_secret_is_shown_once_and_never_listed,
    another_projects_prompts_do_not_exist,
    label_moves_and_rollbacks_are_audited,
    version_post_that_moves_labels_needs_promote,
    projects_are_created_once,
);

/// The route walk runs one optimization to its end (a candidate to adopt),
/// so its provider is a fake the test starts.
mod walk {
    use super::*;
    crate::backend_url_tests!(every_route_answers_each_kind_of_key_exactly);
}

/// How a route takes its key: `Bearer pr_…` (/v1), Langfuse's Basic pair,
/// or a bearer key on the MLflow routes (which answer in MLflow's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Basic,
    Mlflow,
}

/// Every scoped operation in the OpenAPI document: (method, path template,
/// scope, scheme).
fn scoped_routes() -> Vec<(Method, String, String, Scheme)> {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let mut scopes: Vec<(String, Scheme)> = Vec::new();
            for requirement in op["security"].as_array().into_iter().flatten() {
                for (name, scheme) in [
                    ("bearer", Scheme::Bearer),
                    ("langfuse_basic", Scheme::Basic),
                ] {
                    scopes.extend(
                        requirement[name]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str().map(|s| (s.to_owned(), scheme))),
                    );
                }
            }
            let method: Method = method.to_uppercase().parse().expect("method");
            if path.starts_with("/api/2.0/mlflow/") {
                for scope in &mut scopes {
                    scope.1 = Scheme::Mlflow;
                }
            }
            match scopes.as_slice() {
                [(scope, scheme)] => routes.push((method, path.clone(), scope.clone(), *scheme)),
                [] => assert!(
                    !path.starts_with("/v1/")
                        && (!path.starts_with("/api/public/") || path == "/api/public/health"),
                    "{method} {path} declares no scope"
                ),
                more => panic!("{method} {path} declares several scopes: {more:?}"),
            }
        }
    }
    assert!(routes.len() >= 20, "{} routes", routes.len());
    assert!(
        routes.iter().filter(|r| r.3 == Scheme::Basic).count() >= 6,
        "the Langfuse routes are in the walk"
    );
    assert!(
        routes.iter().filter(|r| r.3 == Scheme::Mlflow).count() >= 11,
        "the MLflow routes are in the walk"
    );
    routes
}

fn walk_monitor() -> Value {
    json!({"feedback": "thumbs_up", "window": "24h", "min_samples": 10, "max_drop": 0.1, "action": "alert"})
}

/// Makes the state `route` needs to succeed for an authorized caller, and
/// returns the concrete path and body. `n` keeps names unique.
async fn prepare(
    app: &TestApp,
    walk: &(String, String, String),
    method: &Method,
    template: &str,
    n: usize,
) -> (String, Option<Value>) {
    let fresh = format!("walk{n}");
    let seeded = |name: &str| format!("/v1/prompts/{name}");
    let (path, body) = match (method.as_str(), template) {
        ("POST", "/v1/prompts") => (template.to_owned(), Some(json!({"name": fresh}))),
        ("PATCH", "/v1/prompts/{name}") => (
            seeded("walk"),
            Some(json!({"description": format!("d{n}")})),
        ),
        ("DELETE", "/v1/prompts/{name}") => {
            app.seed_prompt(&fresh).await;
            (seeded(&fresh), None)
        }
        ("POST", "/v1/prompts/{name}/versions") => (
            format!("{}/versions", seeded("walk")),
            Some(json!({"template": format!("t{n}")})),
        ),
        ("PUT", "/v1/prompts/{name}/labels/{label}") => (
            format!("{}/labels/production", seeded("walk")),
            Some(json!({"version": "1.0.1"})),
        ),
        ("DELETE", "/v1/prompts/{name}/labels/{label}") => {
            app.set_label("walk", "doomed", "1.0.0").await;
            (format!("{}/labels/doomed", seeded("walk")), None)
        }
        ("POST", "/v1/prompts/{name}/labels/{label}/rollback") => {
            app.set_label("walk", "flip", "1.0.0").await;
            app.set_label("walk", "flip", "1.0.1").await;
            (format!("{}/labels/flip/rollback", seeded("walk")), None)
        }
        ("POST", "/v1/prompts/{name}/render") => (
            format!("{}/render", seeded("walk")),
            Some(json!({"variables": {}})),
        ),
        ("POST", "/v1/render") => (
            template.to_owned(),
            Some(json!({"template": "hi", "variables": {}})),
        ),
        ("POST", "/v1/keys") => (
            template.to_owned(),
            Some(json!({"name": fresh, "scopes": ["read"]})),
        ),
        ("DELETE", "/v1/keys/{id}") => {
            let (id, _) = app
                .create_key(json!({"name": fresh, "scopes": ["read"]}))
                .await;
            (format!("/v1/keys/{id}"), None)
        }
        ("POST", "/v1/projects") => (template.to_owned(), Some(json!({"name": fresh}))),
        ("POST", "/v1/users") => (
            template.to_owned(),
            Some(json!({"name": fresh, "password": "correct horse battery"})),
        ),
        ("PATCH", "/v1/users/{name}") => (
            "/v1/users/walk".to_owned(),
            Some(json!({"roles": {"default": "viewer"}})),
        ),
        ("DELETE", "/v1/users/{name}") => {
            app.post(
                "/v1/users",
                json!({"name": fresh, "password": "correct horse battery"}),
            )
            .await;
            (format!("/v1/users/{fresh}"), None)
        }
        ("POST", "/v1/datasets") => (template.to_owned(), Some(json!({"name": fresh}))),
        ("PATCH", "/v1/datasets/{name}") => (
            "/v1/datasets/walk".to_owned(),
            Some(json!({"description": format!("d{n}")})),
        ),
        ("DELETE", "/v1/datasets/{name}") => {
            app.post("/v1/datasets", json!({"name": fresh})).await;
            (format!("/v1/datasets/{fresh}"), None)
        }
        ("POST", "/v1/evaluations") => (template.to_owned(), Some(walk_evaluation())),
        ("POST", "/v1/optimizations") => (template.to_owned(), Some(walk_optimization())),
        ("POST", "/v1/optimizations/{id}/adopt") => {
            let listed = app.get("/v1/optimizations?status=succeeded").await;
            let id = listed.body["items"][0]["id"].as_str().unwrap_or_default();
            (
                format!("/v1/optimizations/{id}/adopt"),
                Some(json!({"iteration": 1, "candidate": 0})),
            )
        }
        ("POST", "/v1/scores") => (
            template.to_owned(),
            Some(json!({"metrics": ["exact_match"], "items": [{"output": "a", "expected": "a"}]})),
        ),
        ("POST", "/v1/jobs/{id}/cancel") => {
            let created = app.post("/v1/evaluations", walk_evaluation()).await;
            let job = created.body["job_id"].as_str().unwrap_or_default();
            (format!("/v1/jobs/{job}/cancel"), None)
        }
        ("PUT", "/v1/prompts/{name}/gates/{label}") => (
            format!("{}/gates/gated", seeded("walk")),
            Some(json!({"dataset": "walk", "rules": [{"metric": "exact_match", "min": 0.5}]})),
        ),
        ("DELETE", "/v1/prompts/{name}/gates/{label}") => {
            app.put(
                &format!("{}/gates/doomed-gate", seeded("walk")),
                json!({"dataset": "walk", "rules": [{"metric": "exact_match", "min": 0.5}]}),
            )
            .await;
            (format!("{}/gates/doomed-gate", seeded("walk")), None)
        }
        ("POST", "/v1/datasets/{name}/items") => (
            "/v1/datasets/walk/items".to_owned(),
            Some(json!([{"input": {"n": n}}])),
        ),
        ("POST", "/api/public/v2/prompts") => (
            template.to_owned(),
            Some(json!({"name": fresh, "prompt": format!("t{n}")})),
        ),
        ("PATCH", "/api/public/v2/prompts/{name}/versions/{version}") => (
            "/api/public/v2/prompts/walk/versions/2".to_owned(),
            Some(json!({"newLabels": ["staging"]})),
        ),
        ("POST", "/api/public/otel/v1/traces") => (template.to_owned(), None),
        ("POST", "/api/2.0/mlflow/registered-models/create") => (
            template.to_owned(),
            Some(
                json!({"name": fresh, "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
            ),
        ),
        ("GET", "/api/2.0/mlflow/registered-models/get") => (format!("{template}?name=walk"), None),
        ("GET", "/api/2.0/mlflow/registered-models/alias") => {
            (format!("{template}?name=walk&alias=production"), None)
        }
        ("GET", "/api/2.0/mlflow/model-versions/get") => {
            (format!("{template}?name=walk&version=1"), None)
        }
        ("POST", "/api/2.0/mlflow/registered-models/set-tag") => (
            template.to_owned(),
            Some(json!({"name": "walk", "key": "k", "value": format!("v{n}")})),
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag") => (
            template.to_owned(),
            Some(json!({"name": "walk", "key": "k"})),
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete") => {
            app.seed_prompt(&fresh).await;
            (template.to_owned(), Some(json!({"name": fresh})))
        }
        ("POST", "/api/2.0/mlflow/registered-models/alias") => (
            template.to_owned(),
            Some(json!({"name": "walk", "alias": "staging", "version": "2"})),
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/alias") => {
            app.set_label("walk", "doomed", "1.0.0").await;
            (
                template.to_owned(),
                Some(json!({"name": "walk", "alias": "doomed"})),
            )
        }
        ("POST", "/api/2.0/mlflow/model-versions/create") => (
            template.to_owned(),
            Some(json!({"name": fresh, "tags": [
                {"key": "mlflow.prompt.is_prompt", "value": "true"},
                {"key": "mlflow.prompt.text", "value": format!("t{n}")},
            ]})),
        ),
        ("POST", "/v1/webhooks") => (
            template.to_owned(),
            Some(json!({"url": format!("https://hooks.example.com/{fresh}"), "events": ["*"]})),
        ),
        ("PATCH", "/v1/webhooks/{id}") => (
            format!("/v1/webhooks/{}", walk_webhook(app).await),
            Some(json!({"enabled": false})),
        ),
        ("DELETE", "/v1/webhooks/{id}") => {
            (format!("/v1/webhooks/{}", walk_webhook(app).await), None)
        }
        ("POST", "/v1/webhooks/{id}/rotate-secret" | "/v1/webhooks/{id}/test") => {
            (template.replace("{id}", &walk_webhook(app).await), None)
        }
        ("POST", "/v1/webhooks/deliveries/{id}/redeliver") => {
            let webhook = walk_webhook(app).await;
            let queued = app
                .post(&format!("/v1/webhooks/{webhook}/test"), json!({}))
                .await;
            let delivery = queued.body["delivery_id"].as_str().unwrap_or_default();
            (
                format!("/v1/webhooks/deliveries/{delivery}/redeliver"),
                None,
            )
        }
        ("POST", "/v1/prompts/{name}/experiments") => {
            let label = format!("exp{n}");
            app.set_label("walk", &label, "1.0.0").await;
            (
                format!("{}/experiments", seeded("walk")),
                Some(walk_experiment_body(&label)),
            )
        }
        ("PATCH", "/v1/experiments/{id}") => (
            format!("/v1/experiments/{}", walk_experiment(app, n).await),
            Some(
                json!({"variants": [{"version": "1.0.0", "weight": 50}, {"version": "1.0.1", "weight": 50}]}),
            ),
        ),
        ("POST", "/v1/experiments/{id}/stop") => (
            format!("/v1/experiments/{}/stop", walk_experiment(app, n).await),
            Some(json!({"promote": null})),
        ),
        ("GET", "/v1/experiments/{id}") => (
            format!("/v1/experiments/{}", walk_experiment(app, n).await),
            None,
        ),
        ("POST", "/v1/feedback") => (
            template.to_owned(),
            Some(json!({"prompt": "walk", "version": "1.0.0", "name": "thumbs_up", "value": true})),
        ),
        ("POST", "/v1/feedback/batch") => (
            template.to_owned(),
            Some(
                json!({"items": [{"prompt": "walk", "version": "1.0.0", "name": "thumbs_up", "value": 1}]}),
            ),
        ),
        ("GET", "/v1/prompts/{name}/feedback/summary") => (
            format!("{}/feedback/summary?name=thumbs_up", seeded("walk")),
            None,
        ),
        ("PUT", "/v1/prompts/{name}/monitors/{label}") => (
            format!("{}/monitors/production", seeded("walk")),
            Some(walk_monitor()),
        ),
        ("GET", "/v1/prompts/{name}/monitors/{label}") => {
            app.put(
                &format!("{}/monitors/watched", seeded("walk")),
                walk_monitor(),
            )
            .await;
            (format!("{}/monitors/watched", seeded("walk")), None)
        }
        ("DELETE", "/v1/prompts/{name}/monitors/{label}") => {
            app.put(
                &format!("{}/monitors/doomed-monitor", seeded("walk")),
                walk_monitor(),
            )
            .await;
            (format!("{}/monitors/doomed-monitor", seeded("walk")), None)
        }
        ("GET", webhook) if webhook.starts_with("/v1/webhooks/{id}") => {
            (webhook.replace("{id}", &walk_webhook(app).await), None)
        }
        ("GET", _) => {
            let path = template
                .replace("/v1/datasets/{name}", "/v1/datasets/walk")
                .replace("/v1/jobs/{id}", &format!("/v1/jobs/{}", walk.1))
                .replace(
                    "/v1/evaluations/{id}",
                    &format!("/v1/evaluations/{}", walk.0),
                )
                .replace(
                    "/v1/optimizations/{id}",
                    &format!("/v1/optimizations/{}", walk.2),
                )
                .replace("{name}", "walk")
                .replace("{ref}", "1.0.0")
                .replace("{label}", "production");
            let path = if path.ends_with("/compare") {
                format!("{path}?a={}&b={}", walk.0, walk.0)
            } else if path.ends_with("/diff") {
                format!("{path}?from=1.0.0&to=1.0.1")
            } else {
                path
            };
            (path, None)
        }
        (method, template) => {
            panic!("the route walk has no fixture for {method} {template}: add one")
        }
    };
    (path, body)
}

/// A new webhook endpoint (never called: no delivery loop runs here); its id.
async fn walk_webhook(app: &TestApp) -> String {
    let created = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/walk", "events": ["*"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap_or_default().to_owned()
}

/// An experiment on `label` of the walk's prompt: 1.0.0 against 1.0.1.
fn walk_experiment_body(label: &str) -> Value {
    json!({"label": label, "metric": "thumbs_up", "direction": "higher", "min_samples": 10,
           "variants": [{"version": "1.0.0", "weight": 90}, {"version": "1.0.1", "weight": 10}]})
}

/// A running experiment on a fresh label of the walk's prompt; its id.
async fn walk_experiment(app: &TestApp, n: usize) -> String {
    let label = format!("exp{n}");
    app.set_label("walk", &label, "1.0.0").await;
    let created = app
        .post("/v1/prompts/walk/experiments", walk_experiment_body(&label))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap_or_default().to_owned()
}

/// An evaluation on the walk's prompt and dataset, with a provider no
/// worker ever calls (no worker runs in this test).
fn walk_evaluation() -> Value {
    json!({"prompt": "walk", "ref": "1.0.0", "dataset": "walk", "provider": "walk", "metrics": ["exact_match"]})
}

/// An optimization like [`walk_evaluation`]; `fewshot` needs no optimizer.
fn walk_optimization() -> Value {
    json!({"prompt": "walk", "ref": "1.0.0", "dataset": "walk", "metric": "exact_match",
           "target": {"provider": "walk"}, "strategy": "fewshot"})
}

/// The evaluation (and its job) and the optimization the walk reads:
/// cancelled at once, so their event streams end at once.
async fn walk_ids(app: &TestApp) -> (String, String, String) {
    let created = app.post("/v1/evaluations", walk_evaluation()).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let job = created.body["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.post(&format!("/v1/jobs/{job}/cancel"), json!({})).await;
    let optimization = app.post("/v1/optimizations", walk_optimization()).await;
    assert_eq!(optimization.status, 202, "{}", optimization.body);
    let optimization_job = optimization.body["job_id"].as_str().unwrap_or_default();
    app.post(&format!("/v1/jobs/{optimization_job}/cancel"), json!({}))
        .await;
    (
        created.body["id"].as_str().unwrap_or_default().to_owned(),
        job,
        optimization.body["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn every_route_answers_each_kind_of_key_exactly(url: String) {
    let provider = crate::fake_llm::FakeLlm::start().await;
    provider.set_default(|_| crate::fake_llm::Reply::text("a"));
    let mut config = test_config(&url);
    config.providers.insert(
        "walk".to_owned(),
        provider.config(promptreg::providers::ProviderKind::Openai),
    );
    let app = app_with(config).await;
    app.seed_prompt("walk").await;
    app.seed_version("walk", "one").await;
    app.seed_version("walk", "two").await;
    app.set_label("walk", "production", "1.0.0").await;
    app.post("/v1/datasets", json!({"name": "walk"})).await;
    app.post(
        "/v1/users",
        json!({"name": "walk", "password": "correct horse battery"}),
    )
    .await;
    // Two items: an optimization needs a training and a validation item.
    let items = app
        .post(
            "/v1/datasets/walk/items",
            json!([{"input": {}, "expected": "a"}, {"input": {}, "expected": "b"}]),
        )
        .await;
    assert_eq!(items.status, 200, "{}", items.body);
    // A finished optimization, for adopting its candidate.
    let finished = app.post("/v1/optimizations", walk_optimization()).await;
    assert_eq!(finished.status, 202, "{}", finished.body);
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}
    let id = finished.body["id"].as_str().unwrap_or_default();
    let done = app.get(&format!("/v1/optimizations/{id}")).await;
    assert!(
        done.body["iterations"][0]["candidates"][0]["val_score"].is_number(),
        "{}",
        done.body
    );
    let walk = walk_ids(&app).await;

    let mut keys: Vec<(String, String, String)> = Vec::new();
    for scope in ["read", "write", "promote", "evaluate", "feedback", "admin"] {
        let (id, secret) = app
            .create_key(json!({"name": scope, "scopes": [scope]}))
            .await;
        keys.push((scope.to_owned(), id, secret));
    }
    let (revoked_id, revoked) = app
        .create_key(json!({"name": "revoked", "scopes": ["admin"]}))
        .await;
    assert_eq!(
        app.delete(&format!("/v1/keys/{revoked_id}")).await.status,
        StatusCode::NO_CONTENT
    );
    app.post("/v1/projects", json!({"name": "other"})).await;
    let (other_id, other) = app
        .create_key(json!({"name": "other-admin", "scopes": ["admin"], "project": "other"}))
        .await;

    let mut n = 0;
    for (method, template, required, scheme) in scoped_routes() {
        let label = format!("{method} {template}");
        // A key as the route's scheme takes it: `(id, secret)`.
        let call = |key: Option<(&str, &str)>, path: String, body: Option<Value>| {
            let method = method.clone();
            let app = &app;
            let key = key.map(|(id, secret)| (id.to_owned(), secret.to_owned()));
            async move {
                let key = key
                    .as_ref()
                    .map(|(id, secret)| (id.as_str(), secret.as_str()));
                match scheme {
                    Scheme::Bearer | Scheme::Mlflow => {
                        app.request_as(key.map(|k| k.1), method, &path, body).await
                    }
                    Scheme::Basic => app.request_basic(key, method, &path, body).await,
                }
            }
        };
        for key in [None, Some((revoked_id.as_str(), revoked.as_str()))] {
            n += 1;
            let (path, body) = prepare(&app, &walk, &method, &template, n).await;
            let response = call(key, path, body).await;
            match scheme {
                Scheme::Bearer => {
                    response.assert_problem(401, "unauthorized");
                }
                Scheme::Basic => {
                    assert_eq!(response.status, 401, "{label}: {}", response.body);
                    assert_eq!(response.body["error"], "UnauthorizedError", "{label}");
                }
                Scheme::Mlflow => {
                    response.assert_mlflow_error(401, "UNAUTHENTICATED");
                }
            }
            let challenge = match scheme {
                Scheme::Bearer | Scheme::Mlflow => "Bearer",
                Scheme::Basic => "Basic",
            };
            assert!(
                response
                    .header("www-authenticate")
                    .is_some_and(|h| h.starts_with(challenge)),
                "{label}"
            );
        }
        for (scope, id, secret) in &keys {
            n += 1;
            let (path, body) = prepare(&app, &walk, &method, &template, n).await;
            let response = call(Some((id.as_str(), secret.as_str())), path, body).await;
            if scope == &required || scope == "admin" {
                assert!(
                    response.status.is_success(),
                    "{label} as {scope}: {} {}",
                    response.status,
                    response.body
                );
            } else {
                let detail = match scheme {
                    Scheme::Bearer => {
                        response.assert_problem(403, "insufficient_scope")["detail"].clone()
                    }
                    Scheme::Basic => {
                        assert_eq!(response.status, 403, "{label}: {}", response.body);
                        assert_eq!(response.body["error"], "ForbiddenError", "{label}");
                        response.body["message"].clone()
                    }
                    Scheme::Mlflow => {
                        json!(response.assert_mlflow_error(403, "PERMISSION_DENIED"))
                    }
                };
                assert!(
                    detail.as_str().unwrap_or_default().contains(&required),
                    "{label}: {detail}"
                );
            }
        }
        n += 1;
        let (path, body) = prepare(&app, &walk, &method, &template, n).await;
        let response = call(Some((other_id.as_str(), other.as_str())), path, body).await;
        // Routes naming the project's resources in the path, body or query.
        // Users are not a project's: any admin manages them (as an admin
        // key may create keys in any project).
        // Lists answer another project's key with its own (empty) page.
        let names_resources = (template.contains('{') && !template.starts_with("/v1/users/"))
            || (method != Method::GET
                && [
                    "/v1/evaluations",
                    "/v1/optimizations",
                    "/v1/feedback",
                    "/v1/feedback/batch",
                ]
                .contains(&template.as_str()))
            || template == "/v1/evaluations/compare"
            || (template.starts_with("/api/2.0/mlflow/")
                && ![
                    "/api/2.0/mlflow/registered-models/search",
                    "/api/2.0/mlflow/registered-models/create",
                    "/api/2.0/mlflow/model-versions/create",
                ]
                .contains(&template.as_str()));
        if names_resources {
            assert_eq!(
                response.status,
                StatusCode::NOT_FOUND,
                "{label} from another project: {}",
                response.body
            );
        } else {
            assert!(
                response.status.is_success(),
                "{label} from another project: {} {}",
                response.status,
                response.body
            );
        }
    }
}

async fn missing_unknown_and_malformed_keys_are_401_with_a_challenge(app: TestApp) {
    for header in [
        None,
        Some("pr_unknown00000000000000000000000000000000"),
        Some("pr_short"),
        Some("not-a-key"),
    ] {
        let response = app
            .request_as(header, Method::GET, "/v1/prompts", None)
            .await;
        response.assert_problem(401, "unauthorized");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"promptreg\"")
        );
    }
    // Public routes stay public.
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/metrics",
        "/api/public/health",
    ] {
        assert_eq!(
            app.request_as(None, Method::GET, path, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

async fn revocation_takes_effect_on_the_next_request(app: TestApp) {
    let (id, secret) = app
        .create_key(json!({"name": "ci", "scopes": ["read"]}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            app.request_as(Some(&secret), Method::GET, "/v1/prompts", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.delete(&format!("/v1/keys/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    app.request_as(Some(&secret), Method::GET, "/v1/prompts", None)
        .await
        .assert_problem(401, "unauthorized");
    let listed = app.get("/v1/keys").await;
    let revoked = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned();
    assert_eq!(revoked.map(|k| k["revoked"].clone()), Some(json!(true)));
    app.delete("/v1/keys/00000000-0000-0000-0000-000000000000")
        .await
        .assert_problem(404, "key_not_found");
}

async fn key_secret_is_shown_once_and_never_listed(app: TestApp) {
    let created = app
        .post(
            "/v1/keys",
            json!({"name": "ci", "scopes": ["write", "read", "write"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["key"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("pr_") && secret.len() >= 35);
    assert_eq!(created.body["scopes"], json!(["read", "write"]));
    assert_eq!(created.body["project"], "default");
    assert!(secret.starts_with(created.body["prefix"].as_str().expect("prefix")));
    assert_eq!(created.header("cache-control"), Some("no-store"));
    for path in ["/v1/keys", "/v1/audit"] {
        let text = app.get(path).await.body.to_string();
        assert!(!text.contains(&secret[12..]), "{path} leaks the secret");
        assert!(
            !text.contains(&ADMIN_KEY[12..]),
            "{path} leaks the admin secret"
        );
    }
    let bad = app
        .post("/v1/keys", json!({"name": "x", "scopes": ["root"]}))
        .await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(bad.error_fields(), ["scopes[0]"]);
    app.post("/v1/keys", json!({"name": "x", "scopes": []}))
        .await
        .assert_problem(422, "validation_failed");
    app.post(
        "/v1/keys",
        json!({"name": "x", "scopes": ["read"], "project": "nope"}),
    )
    .await
    .assert_problem(404, "project_not_found");
}

async fn another_projects_prompts_do_not_exist(app: TestApp) {
    app.seed_prompt("secret-sauce").await;
    app.seed_version("secret-sauce", "recipe").await;
    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["admin"], "project": "rival"}))
        .await;
    let get = |path: &'static str| app.request_as(Some(&rival), Method::GET, path, None);
    get("/v1/prompts/secret-sauce")
        .await
        .assert_problem(404, "prompt_not_found");
    get("/v1/prompts/secret-sauce/versions/latest")
        .await
        .assert_problem(404, "prompt_not_found");
    assert_eq!(get("/v1/prompts").await.body["items"], json!([]));
    // The rival may use the same name in its own project.
    let own = app
        .request_as(
            Some(&rival),
            Method::POST,
            "/v1/prompts",
            Some(json!({"name": "secret-sauce"})),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED);
    assert_eq!(
        app.get("/v1/prompts/secret-sauce/versions/latest")
            .await
            .body["template"],
        "recipe"
    );
}

async fn label_moves_and_rollbacks_are_audited(app: TestApp) {
    let (_, releaser) = app
        .create_key(json!({"name": "release-bot", "scopes": ["write", "promote"]}))
        .await;
    let as_bot = |method: Method, path: &'static str, body: Option<Value>| {
        app.request_as(Some(&releaser), method, path, body)
    };
    as_bot(Method::POST, "/v1/prompts", Some(json!({"name": "greet"}))).await;
    as_bot(
        Method::POST,
        "/v1/prompts/greet/versions",
        Some(json!({"template": "one"})),
    )
    .await;
    as_bot(
        Method::POST,
        "/v1/prompts/greet/versions",
        Some(json!({"template": "two"})),
    )
    .await;
    as_bot(
        Method::PUT,
        "/v1/prompts/greet/labels/production",
        Some(json!({"version": "1.0.0"})),
    )
    .await;
    as_bot(
        Method::PUT,
        "/v1/prompts/greet/labels/production",
        Some(json!({"version": "1.0.1"})),
    )
    .await;
    let rolled = as_bot(
        Method::POST,
        "/v1/prompts/greet/labels/production/rollback",
        None,
    )
    .await;
    assert_eq!(rolled.body["updated_by"], "release-bot");

    let audit = app.get("/v1/audit?limit=4").await;
    assert_eq!(audit.status, StatusCode::OK);
    let entries: Vec<(Value, Value, Value, Value)> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["action"].clone(),
                e["target"].clone(),
                e["before"].clone(),
                e["after"].clone(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (
                json!("label.rollback"),
                json!("prompts/greet/labels/production"),
                json!({"version": "1.0.1"}),
                json!({"version": "1.0.0"})
            ),
            (
                json!("label.set"),
                json!("prompts/greet/labels/production"),
                json!({"version": "1.0.0"}),
                json!({"version": "1.0.1"})
            ),
            (
                json!("label.set"),
                json!("prompts/greet/labels/production"),
                json!(null),
                json!({"version": "1.0.0"})
            ),
            (
                json!("version.create"),
                json!("prompts/greet/versions/1.0.1"),
                json!(null),
                audit.body["items"][3]["after"].clone()
            ),
        ]
    );
    assert_eq!(audit.body["items"][0]["key_name"], "release-bot");
    assert!(audit.body["items"][0]["key_id"].is_string());
    let cursor = audit.body["next_cursor"].as_str().expect("more");
    let rest = app.get(&format!("/v1/audit?cursor={cursor}")).await;
    let actions: Vec<_> = rest.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions[..2],
        [json!("version.create"), json!("prompt.create")]
    );
    assert!(actions.contains(&json!("key.create")));
}

async fn version_post_that_moves_labels_needs_promote(app: TestApp) {
    app.seed_prompt("greet").await;
    let (_, writer) = app
        .create_key(json!({"name": "writer", "scopes": ["write"]}))
        .await;
    let body = json!({"template": "x", "labels": ["production"]});
    let refused = app
        .request_as(
            Some(&writer),
            Method::POST,
            "/v1/prompts/greet/versions",
            Some(body),
        )
        .await;
    refused.assert_problem(403, "insufficient_scope");
    assert_eq!(
        app.get("/v1/prompts/greet/versions").await.body["items"],
        json!([])
    );
    let plain = app
        .request_as(
            Some(&writer),
            Method::POST,
            "/v1/prompts/greet/versions",
            Some(json!({"template": "x"})),
        )
        .await;
    assert_eq!(plain.status, StatusCode::CREATED);
    assert_eq!(plain.body["created_by"], "writer");
}

async fn projects_are_created_once(app: TestApp) {
    let created = app.post("/v1/projects", json!({"name": "team-a"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    app.post("/v1/projects", json!({"name": "team-a"}))
        .await
        .assert_problem(409, "project_exists");
    app.post("/v1/projects", json!({"name": "Team A"}))
        .await
        .assert_problem(422, "invalid_name");
    let names: Vec<_> = app.get("/v1/projects").await.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("default"), json!("team-a")]);
}

/// With no key anywhere and none configured, the first start creates an
/// admin key and hands back its secret; the next start creates nothing.
async fn bootstrap_generates_a_key_once(backend: Backend) {
    with_database(backend, |url| async move {
        let mut config = test_config(&url);
        config.init_admin_key = promptreg::config::Redacted::default();
        let (state, generated) = promptreg::app::build_state(config.clone())
            .await
            .expect("state");
        let secret = generated.expect("a generated key").expose().to_owned();
        let app = TestApp {
            router: promptreg::build_app(state.clone()),
            state,
        };
        let keys = app
            .request_as(Some(&secret), Method::GET, "/v1/keys", None)
            .await;
        assert_eq!(keys.status, StatusCode::OK);
        assert_eq!(keys.body["items"][0]["scopes"], json!(["admin"]));
        let (_, again) = promptreg::app::build_state(config).await.expect("state");
        assert!(
            again.is_none(),
            "a key exists: nothing is generated or shown again"
        );
    })
    .await;
}

/// `init_admin_key` makes sure exactly that key exists, once, however often
/// the server starts; a malformed one refuses to start.
async fn bootstrap_with_init_key_is_idempotent(backend: Backend) {
    with_database(backend, |url| async move {
        for _ in 0..2 {
            let app = app_with(test_config(&url)).await;
            let keys = app.get("/v1/keys").await;
            assert_eq!(
                keys.body["items"].as_array().map(Vec::len),
                Some(1),
                "{}",
                keys.body
            );
        }
        let mut config = test_config(&url);
        config.init_admin_key = promptreg::config::Redacted("pr_tooshort".into());
        let err = promptreg::app::build_state(config)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("init_admin_key"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn bootstrap_generates_a_key_once_sqlite() {
    bootstrap_generates_a_key_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn bootstrap_generates_a_key_once_postgres() {
    bootstrap_generates_a_key_once(Backend::Postgres).await;
}

#[tokio::test]
async fn bootstrap_with_init_key_is_idempotent_sqlite() {
    bootstrap_with_init_key_is_idempotent(Backend::Sqlite).await;
}

#[tokio::test]
async fn bootstrap_with_init_key_is_idempotent_postgres() {
    bootstrap_with_init_key_is_idempotent(Backend::Postgres).await;
}

/// A tiny configured limit: the fourth quick read is refused with Retry-After.
#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    with_database(Backend::Sqlite, |url| async move {
        let mut config = test_config(&url);
        // One token every 5 s: no refill can sneak in between the requests.
        config.rate_limit.read = promptreg::config::RateLimit {
            per_second: 0.2,
            burst: 3,
        };
        let app = app_with(config).await;
        for _ in 0..3 {
            assert_eq!(app.get("/v1/prompts").await.status, StatusCode::OK);
        }
        let limited = app.get("/v1/prompts").await;
        limited.assert_problem(429, "rate_limited");
        let retry_after: u64 = limited
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=5).contains(&retry_after), "{retry_after}");
        // Other scopes have buckets of their own.
        assert_eq!(
            app.post("/v1/prompts", json!({"name": "still-ok"}))
                .await
                .status,
            StatusCode::CREATED
        );
    })
    .await;
}
