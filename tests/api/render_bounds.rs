//! Renders are bounded (`[render]`: output, steps, time) and run off the
//! async workers: a handlebars bomb answers `422 render_limit` naming the
//! limit while `/healthz` keeps answering, and a fan-out of partials is
//! refused wherever partials are expanded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::Method;
use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::support::{app_with, enc, test_config, TestApp};

backend_url_tests!(
    a_handlebars_bomb_stops_at_the_step_limit,
    a_slow_render_stops_at_the_time_limit_while_healthz_answers,
    a_partial_fan_out_is_refused_at_creation_or_at_render,
);

/// Three nested loops over 600 items: 216 million iterations.
const BOMB: &str = "{{#each a}}{{#each ../a}}{{#each ../../a}}{{/each}}{{/each}}{{/each}}";

fn bomb_request() -> Value {
    json!({"engine": "handlebars", "template": BOMB,
           "variables": {"a": (0..600).collect::<Vec<_>>()}})
}

async fn a_handlebars_bomb_stops_at_the_step_limit(url: String) {
    // Time enough that the steps run out first, however slow the machine.
    let mut config = test_config(&url);
    config.render.timeout_ms = 120_000;
    let app = app_with(config).await;
    let response = app.post("/v1/render", bomb_request()).await;
    let body = response.assert_problem(422, "render_limit");
    assert_eq!(body["errors"][0]["field"], "steps", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000000 steps")),
        "{body}"
    );

    // A stored version answers the same on its render route; a jinja loop
    // as large stops at the same limit.
    app.seed_prompt("bomb").await;
    app.seed_version("bomb", BOMB).await;
    let response = app
        .post(
            "/v1/prompts/bomb/render",
            json!({"ref": "latest", "variables": {"a": (0..600).collect::<Vec<_>>()}}),
        )
        .await;
    response.assert_problem(422, "render_limit");
    let response = app
        .post(
            "/v1/render",
            json!({"engine": "jinja",
                   "template": "{% for i in a %}{% for j in a %}{% for k in a %}{% endfor %}{% endfor %}{% endfor %}",
                   "variables": {"a": (0..600).collect::<Vec<_>>()}}),
        )
        .await;
    let body = response.assert_problem(422, "render_limit");
    assert_eq!(body["errors"][0]["field"], "steps", "{body}");

    // Inline partials that include each other without end stop before
    // they overflow the stack (which would abort the whole process).
    let response = app
        .post(
            "/v1/render",
            json!({"engine": "handlebars",
                   "template": "{{#*inline \"a\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{> a}}{{/inline}}{{> a}}"}),
        )
        .await;
    let body = response.assert_problem(422, "render_limit");
    assert_eq!(body["errors"][0]["field"], "depth", "{body}");

    // Renders within the limits are untouched by the metering.
    let response = app
        .post(
            "/v1/render",
            json!({"engine": "handlebars",
                   "template": "{{#each a}}{{#if @first}}[{{/if}}{{this}}{{#unless @last}},{{/unless}}{{/each}}]",
                   "variables": {"a": [1, 2, 3]}}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["text"], "[1,2,3]");
}

/// With steps unbounded the bomb runs into the time limit. Two bombs (as
/// many as the test runtime has workers) run at once, and `/healthz` must
/// answer while they do: renders run on the blocking pool, not on the
/// workers that serve other requests.
async fn a_slow_render_stops_at_the_time_limit_while_healthz_answers(url: String) {
    let mut config = test_config(&url);
    config.render.max_steps = u64::MAX;
    config.render.timeout_ms = 1500;
    let app = app_with(config).await;
    let running = Arc::new(AtomicBool::new(true));
    let bombs: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post("/v1/render", bomb_request()).await })
        })
        .collect();
    let watcher = {
        let running = running.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for bomb in bombs {
                answers.push(bomb.await.expect("bomb task"));
            }
            running.store(false, Ordering::SeqCst);
            answers
        })
    };
    // Let the bombs start.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut answered_meanwhile = 0;
    while running.load(Ordering::SeqCst) {
        let health = app.request(Method::GET, "/healthz", None).await;
        assert_eq!(health.status, 200, "{}", health.body);
        if running.load(Ordering::SeqCst) {
            answered_meanwhile += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for answer in watcher.await.expect("watcher") {
        let body = answer.assert_problem(422, "render_limit");
        assert_eq!(body["errors"][0]["field"], "time", "{body}");
    }
    assert!(
        answered_meanwhile > 0,
        "/healthz never answered while the renders ran"
    );
}

async fn seed_labelled(app: &TestApp, name: &str, template: &str) {
    app.seed_prompt(name).await;
    let version = app.seed_version(name, template).await;
    let set = app
        .set_label(
            name,
            "production",
            version["version"].as_str().unwrap_or_default(),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
}

/// `bomb/f1` is 300 × `bomb/f0` (100 bytes); 300 × `bomb/f1` would be 9 MB
/// written out, more than `render.max_output_bytes`.
async fn a_partial_fan_out_is_refused_at_creation_or_at_render(url: String) {
    let app = app_with(test_config(&url)).await;
    seed_labelled(&app, "bomb/f0", &"x".repeat(100)).await;
    let f1 = "{{> bomb/f0}}".repeat(300);
    seed_labelled(&app, "bomb/f1", &f1).await;
    let f2 = "{{> bomb/f1}}".repeat(300);

    // Its partials are labelled: refused when it is created.
    app.seed_prompt("bomb/f2").await;
    let refused = app
        .post(
            &format!("/v1/prompts/{}/versions", enc("bomb/f2")),
            json!({"template": f2}),
        )
        .await;
    refused.assert_problem(422, "output_too_large");

    // Not yet labelled when created: refused where it is expanded.
    app.seed_prompt("late/f1").await;
    let late_f1 = app.seed_version("late/f1", &f1).await;
    seed_labelled(&app, "late/f2", &"{{> late/f1}}".repeat(300)).await;
    let set = app
        .set_label(
            "late/f1",
            "production",
            late_f1["version"].as_str().unwrap_or_default(),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let render = app
        .post(
            &format!("/v1/prompts/{}/render", enc("late/f2")),
            json!({"variables": {}}),
        )
        .await;
    render.assert_problem(422, "output_too_large");
    let (public, secret) = app
        .create_key(json!({"name": "langfuse", "scopes": ["read"]}))
        .await;
    let langfuse = app
        .request_basic(
            Some((public.as_str(), secret.as_str())),
            Method::GET,
            &format!("/api/public/v2/prompts/{}", enc("late/f2")),
            None,
        )
        .await;
    let message = langfuse.assert_langfuse_error(400, "InvalidRequestError");
    assert!(message.contains("1048576"), "{message}");

    // One level less is fine everywhere.
    let fine = app
        .request_basic(
            Some((public.as_str(), secret.as_str())),
            Method::GET,
            &format!("/api/public/v2/prompts/{}", enc("late/f1")),
            None,
        )
        .await;
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert_eq!(fine.body["prompt"].as_str().map(str::len), Some(30_000));
}
