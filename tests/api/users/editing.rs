//! Editing pages at the HTTP level: the editor's check and save through the
//! version rules, errors under their fields, the chat message buttons, a
//! stale `expected_latest`, the diff page, and the new-prompt form.

use axum::http::StatusCode;
use serde_json::json;

use super::{create_user, form, get, post, sign_in};
use crate::support::TestApp;

/// An editor signed in, and prompt `greet` with version 1.0.0.
async fn editing(app: &TestApp) -> (String, String) {
    create_user(app, "edgar", "editor").await;
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello {{name}}").await;
    let session = sign_in(app, "edgar").await;
    let csrf = get(app, "/ui/prompts/greet/edit", &session).await.csrf();
    (session, csrf)
}

fn text_draft<'a>(
    csrf: &'a str,
    op: &'a str,
    template: &'a str,
    expected_latest: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", csrf),
        ("expected_latest", expected_latest),
        ("type", "text"),
        ("template", template),
        ("engine", "handlebars"),
        ("model_config", ""),
        ("input_schema", ""),
        ("output_schema", ""),
        ("message", "edited"),
        ("op", op),
    ]
}

async fn the_editor_checks_and_saves_through_the_version_rules(app: TestApp) {
    let (session, csrf) = editing(&app).await;
    let page = get(&app, "/ui/prompts/greet/edit", &session).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains(r#"name="expected_latest" value="1.0.0""#));
    assert!(
        page.body.contains(">Hello {{name}}</textarea>"),
        "{}",
        page.body
    );

    let edit = "/ui/prompts/greet/edit";
    let broken = text_draft(&csrf, "check", "Hi\n{{#if name}}x", "1.0.0");
    let page = post(&app, edit, &session, &form(&broken)).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains(r#"id="template-error">Line "#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(">Hi\n{{#if name}}x</textarea>"),
        "the draft is kept"
    );

    let mut bad_json = text_draft(&csrf, "save", "Hi {{name}}", "1.0.0");
    bad_json[5] = ("model_config", "{\"temperature\": ");
    let page = post(&app, edit, &session, &form(&bad_json)).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body
            .contains(r#"id="model_config-error">Line 1, column"#),
        "{}",
        page.body
    );

    let check = text_draft(&csrf, "check", "Hi {{name}}", "1.0.0");
    let page = post(&app, edit, &session, &form(&check)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("The template reads: name."),
        "{}",
        page.body
    );
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(
        versions.body["items"].as_array().map(Vec::len),
        Some(1),
        "nothing written"
    );

    let save = text_draft(&csrf, "save", "Hi {{name}}", "1.0.0");
    let page = post(&app, edit, &session, &form(&save)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), "/ui/prompts/greet/versions/1.0.1");
    let latest = app.get("/v1/prompts/greet/versions/latest").await;
    assert_eq!(latest.body["template"], "Hi {{name}}");
    assert_eq!(latest.body["created_by"], "user:edgar");
    assert_eq!(latest.body["message"], "edited");

    // The same draft again, from a base that is no longer the latest.
    let stale = text_draft(&csrf, "save", "Howdy {{name}}", "1.0.0");
    let page = post(&app, edit, &session, &form(&stale)).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body
            .contains("Someone else saved version 1.0.1 (user:edgar,"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<del>Hello</del>"), "{}", page.body);
    assert!(page
        .body
        .contains(r#"name="expected_latest" value="1.0.1""#));
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(2));
}

async fn chat_messages_are_added_moved_and_removed_without_script(app: TestApp) {
    let (session, csrf) = editing(&app).await;
    let chat = |op: &'static str| {
        form(&[
            ("csrf_token", csrf.as_str()),
            ("expected_latest", "1.0.0"),
            ("type", "chat"),
            ("role", "system"),
            ("content", "First"),
            ("role", "user"),
            ("content", "Second"),
            ("engine", "handlebars"),
            ("op", op),
        ])
    };
    let edit = "/ui/prompts/greet/edit";
    let page = post(&app, edit, &session, &chat("up:1")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (second, first) = (
        page.body.find(">Second</textarea>").expect("second"),
        page.body.find(">First</textarea>").expect("first"),
    );
    assert!(second < first, "moved up");
    let page = post(&app, edit, &session, &chat("remove:0")).await;
    assert!(!page.body.contains(">First</textarea>"));
    assert!(page.body.contains(">Second</textarea>"));
    let page = post(&app, edit, &session, &chat("add_placeholder")).await;
    assert!(page
        .body
        .contains("Variable holding the messages of placeholder 3"));
    // A text prompt's next version stays text unless the API is asked.
    let page = post(&app, edit, &session, &chat("save")).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("is a text prompt"), "{}", page.body);
}

async fn the_diff_page_compares_the_latest_with_its_parent_by_default(app: TestApp) {
    let (session, _) = editing(&app).await;
    app.seed_version_with(
        "greet",
        json!({"template": "Hello there {{name}}", "model_config": {"temperature": 0.5}}),
    )
    .await;
    let page = get(&app, "/ui/prompts/greet/diff", &session).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("greet: 1.0.0 → 1.0.1</h1>"),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"<table class="diff split">"#));
    assert!(page.body.contains("<ins>there </ins>") || page.body.contains("<ins> there</ins>"));
    assert!(
        page.body.contains("Model configuration"),
        "changed fields first"
    );
    let unified = get(
        &app,
        "/ui/prompts/greet/diff?from=1.0.1&to=1.0.0&view=unified",
        &session,
    )
    .await;
    assert!(unified.body.contains(r#"<table class="diff unified">"#));
    assert!(unified.body.contains("greet: 1.0.1 → 1.0.0</h1>"));
    assert!(unified.body.contains("<del>there"));
    let bad = get(&app, "/ui/prompts/greet/diff?from=Not+A+Ref", &session).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = get(&app, "/ui/prompts/greet/diff?from=9.9.9", &session).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn a_new_prompt_is_refused_under_the_field_at_fault(app: TestApp) {
    let (session, csrf) = editing(&app).await;
    let new = |name: &'static str, template: &'static str| {
        form(&[
            ("csrf_token", csrf.as_str()),
            ("name", name),
            ("type", "chat"),
            ("role", "system"),
            ("template", template),
            ("tags", "a b"),
            ("description", "d"),
            ("message", "m"),
        ])
    };
    for (name, template, field) in [
        ("Bad Name", "Hi", "name-error"),
        ("greet", "Hi", "name-error"),
        ("fresh", "{{#if x}}", "template-error"),
    ] {
        let page = post(&app, "/ui/prompts/new", &session, &new(name, template)).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(
            page.body.contains(&format!("id=\"{field}\"")),
            "{name}: {}",
            page.body
        );
        assert!(
            page.body.contains(&format!("value=\"{name}\"")),
            "the form is kept"
        );
    }
    app.get("/v1/prompts/fresh")
        .await
        .assert_problem(404, "prompt_not_found");
    let page = post(
        &app,
        "/ui/prompts/new",
        &session,
        &new("fresh", "Be {{tone}}."),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), "/ui/prompts/fresh");
    let latest = app.get("/v1/prompts/fresh/versions/latest").await;
    assert_eq!(
        latest.body["messages"],
        json!([{"role": "system", "content": "Be {{tone}}."}])
    );
    assert_eq!(latest.body["created_by"], "user:edgar");
    let prompt = app.get("/v1/prompts/fresh").await;
    assert_eq!(prompt.body["tags"], json!(["a", "b"]));
}

crate::backend_tests!(
    the_editor_checks_and_saves_through_the_version_rules,
    chat_messages_are_added_moved_and_removed_without_script,
    the_diff_page_compares_the_latest_with_its_parent_by_default,
    a_new_prompt_is_refused_under_the_field_at_fault,
);
