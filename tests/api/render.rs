//! Rendering: both engines and types, placeholders, partials from the
//! registry, every error code, provider formats, and label moves seen at once.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::TestApp;

crate::backend_tests!(
    renders_text_with_handlebars_at_production_by_default,
    renders_jinja_text_and_chat,
    placeholder_splices_history_at_its_position,
    missing_variables_are_all_listed,
    input_schema_violations_name_json_pointers,
    syntax_errors_are_refused_at_creation_with_position,
    invalid_schemas_are_refused_at_creation,
    variables_are_extracted_and_stored,
    partials_resolve_default_and_pinned_refs,
    jinja_partials_resolve_default_and_pinned_refs,
    include_cycles_and_depth_are_422,
    partial_label_move_is_seen_by_the_next_render,
    unpinned_partials_follow_the_rendered_label,
    including_a_prompt_that_does_not_exist_is_refused_at_creation,
    history_roles_are_checked_without_format,
    label_move_is_seen_by_the_very_next_render,
    openai_format_matches_chat_completions,
    anthropic_format_matches_messages_api,
    gemini_format_matches_generate_content,
    unsaved_content_renders_with_the_same_errors,
    no_html_escaping_and_builtin_helpers,
    output_limit_is_a_422,
    handlebars_syntax_errors_say_what_is_wrong,
);

async fn post_version(app: &TestApp, name: &str, body: Value) -> Value {
    if app
        .get(&format!("/v1/prompts/{}", name.replace('/', "%2F")))
        .await
        .status
        == StatusCode::NOT_FOUND
    {
        app.seed_prompt(name).await;
    }
    app.seed_version_with(name, body).await
}

async fn render(app: &TestApp, name: &str, body: Value) -> crate::support::TestResponse {
    app.post(
        &format!("/v1/prompts/{}/render", name.replace('/', "%2F")),
        body,
    )
    .await
}

async fn renders_text_with_handlebars_at_production_by_default(app: TestApp) {
    post_version(&app, "greet", json!({"template": "Hello {{name}}, welcome to {{place}}!", "labels": ["production"], "model_config": {"model": "m"}})).await;
    post_version(&app, "greet", json!({"template": "Newer {{name}}"})).await;
    let rendered = render(
        &app,
        "greet",
        json!({"variables": {"name": "Ada", "place": "Paris", "extra": 1}}),
    )
    .await;
    assert_eq!(rendered.status, StatusCode::OK, "{}", rendered.body);
    assert_eq!(
        rendered.body,
        json!({
            "prompt": "greet", "version": "1.0.0", "type": "text",
            "text": "Hello Ada, welcome to Paris!", "model_config": {"model": "m"},
            "resolved": [{"prompt": "greet", "version": "1.0.0"}]
        })
    );
    let latest = render(
        &app,
        "greet",
        json!({"ref": "latest", "variables": {"name": "Bo"}}),
    )
    .await;
    assert_eq!(latest.body["text"], "Newer Bo");
    let exact = render(
        &app,
        "greet",
        json!({"ref": "1.0.1", "variables": {"name": "Cy"}}),
    )
    .await;
    assert_eq!(exact.body["text"], "Newer Cy");
    render(&app, "greet", json!({"ref": "staging", "variables": {}}))
        .await
        .assert_problem(404, "label_not_found");
    render(&app, "nope", json!({"variables": {}}))
        .await
        .assert_problem(404, "prompt_not_found");
}

async fn renders_jinja_text_and_chat(app: TestApp) {
    post_version(&app, "j/text", json!({"engine": "jinja", "template": "{% for i in items %}{{ i.name | upper }};{% endfor %}{% if vip %} VIP{% endif %}", "labels": ["production"]})).await;
    let text = render(
        &app,
        "j/text",
        json!({"variables": {"items": [{"name": "a"}, {"name": "b"}], "vip": true}}),
    )
    .await;
    assert_eq!(text.body["text"], "A;B; VIP", "{}", text.body);

    post_version(
        &app,
        "j/chat",
        json!({"engine": "jinja", "type": "chat", "labels": ["production"], "messages": [
            {"role": "system", "content": "You work for {{ company }}."},
            {"role": "user", "content": "{{ question }}"}
        ]}),
    )
    .await;
    let chat = render(
        &app,
        "j/chat",
        json!({"variables": {"company": "Acme", "question": "Hours?"}}),
    )
    .await;
    assert_eq!(chat.body["type"], "chat");
    assert_eq!(
        chat.body["messages"],
        json!([{"role": "system", "content": "You work for Acme."}, {"role": "user", "content": "Hours?"}])
    );
}

async fn placeholder_splices_history_at_its_position(app: TestApp) {
    post_version(
        &app,
        "chat",
        json!({"type": "chat", "labels": ["production"], "messages": [
            {"role": "system", "content": "Be brief, {{name}}."},
            {"role": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"}
        ]}),
    )
    .await;
    let history = json!([{"role": "user", "content": "Hi {{not templated}}"}, {"role": "assistant", "content": "Hello!"}]);
    let rendered = render(
        &app,
        "chat",
        json!({"variables": {"name": "Bot", "question": "Why?", "history": history}}),
    )
    .await;
    assert_eq!(
        rendered.body["messages"],
        json!([
            {"role": "system", "content": "Be brief, Bot."},
            {"role": "user", "content": "Hi {{not templated}}"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Why?"}
        ])
    );
    let empty = render(
        &app,
        "chat",
        json!({"variables": {"name": "Bot", "question": "Why?", "history": []}}),
    )
    .await;
    assert_eq!(empty.body["messages"].as_array().map(Vec::len), Some(2));
    let wrong = render(
        &app,
        "chat",
        json!({"variables": {"name": "Bot", "question": "Why?", "history": "nope"}}),
    )
    .await;
    wrong.assert_problem(422, "invalid_variables");
    assert_eq!(wrong.error_fields(), ["variables.history"]);
    let missing = render(
        &app,
        "chat",
        json!({"variables": {"name": "Bot", "question": "Why?"}}),
    )
    .await;
    missing.assert_problem(422, "missing_variables");
    assert_eq!(missing.error_fields(), ["history"]);
}

async fn missing_variables_are_all_listed(app: TestApp) {
    post_version(&app, "many", json!({"template": "{{a}} {{customer.name}} {{d}} {{#each rows}}{{this.n}}{{/each}}", "labels": ["production"]})).await;
    let response = render(
        &app,
        "many",
        json!({"variables": {"a": 1, "customer": {"id": 3}}}),
    )
    .await;
    response.assert_problem(422, "missing_variables");
    assert_eq!(response.error_fields(), ["customer.name", "d", "rows"]);
    post_version(&app, "jmany", json!({"engine": "jinja", "template": "{{ a }} {{ b.c }} {{ d }}", "labels": ["production"]})).await;
    let response = render(&app, "jmany", json!({"variables": {"a": 1}})).await;
    response.assert_problem(422, "missing_variables");
    assert_eq!(response.error_fields(), ["b.c", "d"]);
}

async fn input_schema_violations_name_json_pointers(app: TestApp) {
    let schema = json!({"type": "object", "required": ["name", "age"], "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}});
    post_version(&app, "typed", json!({"template": "{{name}} is {{age}}", "input_schema": schema, "labels": ["production"]})).await;
    let ok = render(
        &app,
        "typed",
        json!({"variables": {"name": "Ada", "age": 36}}),
    )
    .await;
    assert_eq!(ok.body["text"], "Ada is 36");
    let bad = render(&app, "typed", json!({"variables": {"name": 5, "age": -1}})).await;
    bad.assert_problem(422, "invalid_variables");
    let mut fields = bad.error_fields();
    fields.sort();
    assert_eq!(fields, ["/age", "/name"]);
}

async fn syntax_errors_are_refused_at_creation_with_position(app: TestApp) {
    app.seed_prompt("broken").await;
    let text = app
        .post(
            "/v1/prompts/broken/versions",
            json!({"template": "line one\nHello {{#if x}}open"}),
        )
        .await;
    text.assert_problem(422, "template_syntax");
    assert_eq!(text.error_fields(), ["template"]);
    assert!(text.body["errors"][0]["line"].is_u64(), "{}", text.body);

    let chat = app
        .post(
            "/v1/prompts/broken/versions",
            json!({"type": "chat", "messages": [
        {"role": "system", "content": "fine {{a}}"},
        {"role": "user", "content": "ok\n {{ b "}
    ], "engine": "jinja"}),
        )
        .await;
    chat.assert_problem(422, "template_syntax");
    assert_eq!(chat.error_fields(), ["messages[1].content"]);
    assert_eq!(chat.body["errors"][0]["line"], 2, "{}", chat.body);
    assert!(chat.body["errors"][0]["column"].is_u64(), "{}", chat.body);
    assert_eq!(
        app.get("/v1/prompts/broken/versions").await.body["items"],
        json!([])
    );
}

async fn invalid_schemas_are_refused_at_creation(app: TestApp) {
    app.seed_prompt("schema").await;
    let response = app
        .post(
            "/v1/prompts/schema/versions",
            json!({"template": "x", "input_schema": {"type": "nonsense"}}),
        )
        .await;
    response.assert_problem(422, "validation_failed");
    assert_eq!(response.error_fields(), ["input_schema"]);
    let response = app
        .post(
            "/v1/prompts/schema/versions",
            json!({"template": "x", "output_schema": {"required": "name"}}),
        )
        .await;
    assert_eq!(response.error_fields(), ["output_schema"]);
}

async fn variables_are_extracted_and_stored(app: TestApp) {
    let hb = post_version(&app, "vars", json!({"template": "{{customer.name}} {{#each items}}{{this.sku}} {{@index}}{{/each}} {{#if vip}}*{{/if}} {{upper city}}"})).await;
    assert_eq!(
        hb["variables"],
        json!(["city", "customer.name", "items", "vip"])
    );
    let jinja = post_version(&app, "jvars", json!({"engine": "jinja", "template": "{% for i in items %}{{ i.sku }}{% endfor %}{% set local = 1 %}{{ local }} {{ user.name | lower }}"})).await;
    assert_eq!(jinja["variables"], json!(["items", "user.name"]));
    let chat = post_version(&app, "cvars", json!({"type": "chat", "messages": [{"role": "system", "content": "{{a}}"}, {"role": "placeholder", "name": "history"}]})).await;
    assert_eq!(chat["variables"], json!(["a", "history"]));
    assert_eq!(
        app.get("/v1/prompts/cvars/versions/latest").await.body["variables"],
        json!(["a", "history"])
    );
}

async fn partials_resolve_default_and_pinned_refs(app: TestApp) {
    post_version(
        &app,
        "common/safety",
        json!({"template": "Be safe v1.", "labels": ["production"]}),
    )
    .await;
    post_version(
        &app,
        "common/safety",
        json!({"template": "Be safe v2, {{name}}."}),
    )
    .await;
    post_version(
        &app,
        "outer",
        json!({"template": "Hi {{name}}. {{> common/safety}}", "labels": ["production"]}),
    )
    .await;
    let rendered = render(&app, "outer", json!({"variables": {"name": "Ada"}})).await;
    assert_eq!(rendered.status, StatusCode::OK, "{}", rendered.body);
    assert_eq!(rendered.body["text"], "Hi Ada. Be safe v1.");
    assert_eq!(
        rendered.body["resolved"],
        json!([{"prompt": "outer", "version": "1.0.0"}, {"prompt": "common/safety", "version": "1.0.0"}])
    );

    post_version(
        &app,
        "pinned",
        json!({"template": "{{> common/safety@1.0.1}}", "labels": ["production"]}),
    )
    .await;
    let pinned = render(&app, "pinned", json!({"variables": {"name": "Bo"}})).await;
    assert_eq!(pinned.body["text"], "Be safe v2, Bo.", "{}", pinned.body);
    assert_eq!(
        pinned.body["resolved"][1],
        json!({"prompt": "common/safety", "version": "1.0.1"})
    );

    post_version(
        &app,
        "by-label",
        json!({"template": "{{> common/safety@latest}}", "labels": ["production"]}),
    )
    .await;
    assert_eq!(
        render(&app, "by-label", json!({"variables": {"name": "Cy"}}))
            .await
            .body["text"],
        "Be safe v2, Cy."
    );

    // A partial that exists but has no `production` fails at render time.
    post_version(&app, "common/unlabelled", json!({"template": "U"})).await;
    post_version(
        &app,
        "dangling",
        json!({"template": "{{> common/unlabelled}}", "labels": ["production"]}),
    )
    .await;
    render(&app, "dangling", json!({"variables": {}}))
        .await
        .assert_problem(422, "include_not_found");
}

async fn jinja_partials_resolve_default_and_pinned_refs(app: TestApp) {
    post_version(
        &app,
        "j/part",
        json!({"engine": "jinja", "template": "[part {{ name }}]", "labels": ["production"]}),
    )
    .await;
    post_version(
        &app,
        "j/part",
        json!({"engine": "jinja", "template": "[part2 {{ name }}]"}),
    )
    .await;
    post_version(&app, "j/outer", json!({"engine": "jinja", "template": "A {% include \"j/part\" %} B {% include \"j/part@1.0.1\" %}", "labels": ["production"]})).await;
    let rendered = render(&app, "j/outer", json!({"variables": {"name": "x"}})).await;
    assert_eq!(
        rendered.body["text"], "A [part x] B [part2 x]",
        "{}",
        rendered.body
    );
    assert_eq!(rendered.body["resolved"].as_array().map(Vec::len), Some(3));
    // A handlebars partial cannot be included from jinja: refused at creation.
    post_version(
        &app,
        "hb/part",
        json!({"template": "hb", "labels": ["production"]}),
    )
    .await;
    app.seed_prompt("j/mixed").await;
    app.post(
        "/v1/prompts/j%2Fmixed/versions",
        json!({"engine": "jinja", "template": "{% include \"hb/part\" %}"}),
    )
    .await
    .assert_problem(422, "include_invalid");
}

async fn include_cycles_and_depth_are_422(app: TestApp) {
    app.seed_prompt("self").await;
    app.post(
        "/v1/prompts/self/versions",
        json!({"template": "{{> self}}"}),
    )
    .await
    .assert_problem(422, "include_cycle");

    post_version(
        &app,
        "a",
        json!({"template": "A", "labels": ["production"]}),
    )
    .await;
    post_version(
        &app,
        "b",
        json!({"template": "B {{> a}}", "labels": ["production"]}),
    )
    .await;
    // a -> b -> a: detectable at creation, since b exists and includes a.
    let cycle = app
        .post(
            "/v1/prompts/a/versions",
            json!({"template": "A {{> b}}", "labels": ["production"]}),
        )
        .await;
    cycle.assert_problem(422, "include_cycle");
    assert!(
        cycle.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("a -> b -> a"),
        "{}",
        cycle.body
    );

    // A cycle made later through a label move is caught at render time:
    // c@1.0.1 includes d, which had no version yet; d includes c@production,
    // which was 1.0.0 then; moving production to 1.0.1 closes the loop.
    post_version(
        &app,
        "c",
        json!({"template": "C", "labels": ["production"]}),
    )
    .await;
    app.seed_prompt("d").await;
    post_version(&app, "c", json!({"template": "C {{> d}}"})).await;
    post_version(
        &app,
        "d",
        json!({"template": "D {{> c}}", "labels": ["production"]}),
    )
    .await;
    assert_eq!(
        render(&app, "d", json!({"variables": {}})).await.body["text"],
        "D C"
    );
    app.set_label("c", "production", "1.0.1").await;
    let cycle = render(&app, "d", json!({"variables": {}})).await;
    cycle.assert_problem(422, "include_cycle");
    assert!(
        cycle.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("d -> c -> d"),
        "{}",
        cycle.body
    );

    // Eight levels of nesting are fine; a ninth is refused at creation.
    for i in 0..9 {
        let template = if i == 0 {
            "end".to_owned()
        } else {
            format!("{{{{> deep{}}}}}", i - 1)
        };
        post_version(
            &app,
            &format!("deep{i}"),
            json!({"template": template, "labels": ["production"]}),
        )
        .await;
    }
    assert_eq!(
        render(&app, "deep8", json!({"variables": {}})).await.body["text"],
        "end"
    );
    app.seed_prompt("deep9").await;
    let deep = app
        .post(
            "/v1/prompts/deep9/versions",
            json!({"template": "{{> deep8}}"}),
        )
        .await;
    deep.assert_problem(422, "include_depth");
    assert!(
        deep.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("deep9 -> deep8"),
        "{}",
        deep.body
    );
}

async fn partial_label_move_is_seen_by_the_next_render(app: TestApp) {
    post_version(
        &app,
        "part",
        json!({"template": "one", "labels": ["production"]}),
    )
    .await;
    post_version(&app, "part", json!({"template": "two"})).await;
    post_version(
        &app,
        "host",
        json!({"template": "[{{> part}}]", "labels": ["production"]}),
    )
    .await;
    assert_eq!(render(&app, "host", json!({})).await.body["text"], "[one]");
    app.set_label("part", "production", "1.0.1").await;
    assert_eq!(render(&app, "host", json!({})).await.body["text"], "[two]");
}

async fn unpinned_partials_follow_the_rendered_label(app: TestApp) {
    // `push --label staging` of a new folder: each prompt only at staging,
    // the included ones created first.
    post_version(
        &app,
        "fresh/inner",
        json!({"template": "inner", "labels": ["staging"]}),
    )
    .await;
    post_version(
        &app,
        "fresh/part",
        json!({"template": "part+{{> fresh/inner}}", "labels": ["staging"]}),
    )
    .await;
    post_version(
        &app,
        "fresh/outer",
        json!({"template": "[{{> fresh/part}}]", "labels": ["staging"]}),
    )
    .await;
    let staged = render(&app, "fresh/outer", json!({"ref": "staging"})).await;
    assert_eq!(staged.status, StatusCode::OK, "{}", staged.body);
    assert_eq!(staged.body["text"], "[part+inner]");
    assert_eq!(
        staged.body["resolved"],
        json!([
            {"prompt": "fresh/outer", "version": "1.0.0"},
            {"prompt": "fresh/part", "version": "1.0.0"},
            {"prompt": "fresh/inner", "version": "1.0.0"}
        ])
    );
    // By number or `latest`, unpinned partials are taken at production,
    // which these do not have yet.
    for reference in ["1.0.0", "latest"] {
        let refused = render(&app, "fresh/outer", json!({"ref": reference})).await;
        refused.assert_problem(422, "include_not_found");
    }

    // A partial with both labels is taken at the one rendered; a partial
    // without that label falls back to production.
    post_version(
        &app,
        "tone",
        json!({"template": "calm", "labels": ["production"]}),
    )
    .await;
    post_version(
        &app,
        "tone",
        json!({"template": "brisk", "labels": ["staging"]}),
    )
    .await;
    post_version(
        &app,
        "sig",
        json!({"template": "sig1", "labels": ["production"]}),
    )
    .await;
    post_version(
        &app,
        "host",
        json!({"template": "{{> tone}} {{> sig}}", "labels": ["production", "staging", "canary"]}),
    )
    .await;
    let text = |response: crate::support::TestResponse| {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let staging = render(&app, "host", json!({"ref": "staging"})).await;
    assert_eq!(
        staging.body["resolved"],
        json!([
            {"prompt": "host", "version": "1.0.0"},
            {"prompt": "sig", "version": "1.0.0"},
            {"prompt": "tone", "version": "1.0.1"}
        ])
    );
    assert_eq!(text(staging), "brisk sig1");
    assert_eq!(text(render(&app, "host", json!({})).await), "calm sig1");
    assert_eq!(
        text(render(&app, "host", json!({"ref": "production"})).await),
        "calm sig1"
    );
    assert_eq!(
        text(render(&app, "host", json!({"ref": "1.0.0"})).await),
        "calm sig1"
    );
    assert_eq!(
        text(render(&app, "host", json!({"ref": "latest"})).await),
        "calm sig1"
    );
    assert_eq!(
        text(render(&app, "host", json!({"ref": "canary"})).await),
        "calm sig1"
    );

    // Labels set or moved later are seen by the next render.
    post_version(
        &app,
        "sig",
        json!({"template": "sig2", "labels": ["staging"]}),
    )
    .await;
    assert_eq!(
        text(render(&app, "host", json!({"ref": "staging"})).await),
        "brisk sig2"
    );
    app.set_label("tone", "staging", "1.0.0").await;
    assert_eq!(
        text(render(&app, "host", json!({"ref": "staging"})).await),
        "calm sig2"
    );
    assert_eq!(
        app.delete("/v1/prompts/sig/labels/staging").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        text(render(&app, "host", json!({"ref": "staging"})).await),
        "calm sig1"
    );

    // Neither the rendered label nor production: both are named.
    post_version(
        &app,
        "fresh/outer",
        json!({"template": "again [{{> fresh/part}}]", "labels": ["canary"]}),
    )
    .await;
    let neither = render(&app, "fresh/outer", json!({"ref": "canary"})).await;
    neither.assert_problem(422, "include_not_found");
    let detail = neither.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("fresh/part") && detail.contains("canary") && detail.contains("production"),
        "{detail}"
    );
}

async fn including_a_prompt_that_does_not_exist_is_refused_at_creation(app: TestApp) {
    app.seed_prompt("host").await;
    // A prompt with no version, and one with a version but no label: both
    // exist, so they may be included; only `nosuch` is unknown.
    app.seed_prompt("empty").await;
    post_version(&app, "unlabelled", json!({"template": "U"})).await;
    for (engine, template) in [
        ("handlebars", "{{> empty}} {{> unlabelled}} {{> nosuch}}"),
        (
            "jinja",
            "{% include \"empty\" %}{% include \"unlabelled\" %}{% include \"nosuch@staging\" %}",
        ),
    ] {
        let refused = app
            .post(
                "/v1/prompts/host/versions",
                json!({"engine": engine, "template": template}),
            )
            .await;
        refused.assert_problem(422, "include_not_found");
        let detail = refused.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("nosuch"), "{engine}: {detail}");
    }
    let chat = app
        .post(
            "/v1/prompts/host/versions",
            json!({"type": "chat", "messages": [{"role": "system", "content": "{{> nosuch}}"}]}),
        )
        .await;
    chat.assert_problem(422, "include_not_found");
    let versions = app.get("/v1/prompts/host/versions").await;
    assert_eq!(versions.body["items"], json!([]));
    // Through the create-or-append route of Langfuse clients too.
    let (id, secret) = app
        .create_key(json!({"name": "lf", "scopes": ["write"]}))
        .await;
    let langfuse = app
        .request_basic(
            Some((&id, &secret)),
            axum::http::Method::POST,
            "/api/public/v2/prompts",
            Some(json!({"name": "lf/host", "prompt": "{{> nosuch}}"})),
        )
        .await;
    assert_eq!(
        langfuse.status,
        StatusCode::BAD_REQUEST,
        "{}",
        langfuse.body
    );
    assert!(
        langfuse.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nosuch"),
        "{}",
        langfuse.body
    );
    assert_eq!(
        app.get("/v1/prompts/lf%2Fhost").await.status,
        StatusCode::NOT_FOUND
    );

    let fine = app
        .post(
            "/v1/prompts/host/versions",
            json!({"template": "{{> empty}} {{> unlabelled}}"}),
        )
        .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.body);
}

async fn history_roles_are_checked_without_format(app: TestApp) {
    chat_for_formats(&app).await;
    let history = json!([
        {"role": "user", "content": "Hi"},
        {"role": "wizard", "content": "Abracadabra"},
        {"role": "assistant", "content": "Hello"},
        {"role": "tool", "content": "{\"ok\": true}"},
        {"role": "developer", "content": "Be terse"}
    ]);
    let variables = json!({"persona": "terse", "question": "Why?", "history": history});
    let refused = render(&app, "fmt", json!({"variables": variables})).await;
    refused.assert_problem(422, "invalid_variables");
    assert_eq!(
        refused.error_fields(),
        ["variables.history[1].role", "variables.history[4].role"]
    );
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("variables.history[1].role"), "{detail}");
    let message = refused.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("wizard") && message.contains("system, user, assistant, tool"),
        "{message}"
    );
    // Every format checks the same roles; OpenAI's API also takes `developer`.
    for format in ["anthropic", "gemini"] {
        let refused = render(
            &app,
            "fmt",
            json!({"variables": variables, "format": format}),
        )
        .await;
        refused.assert_problem(422, "invalid_variables");
        assert_eq!(refused.error_fields().len(), 2, "{format}");
    }
    let openai = render(
        &app,
        "fmt",
        json!({"variables": variables, "format": "openai"}),
    )
    .await;
    openai.assert_problem(422, "invalid_variables");
    assert_eq!(openai.error_fields(), ["variables.history[1].role"]);

    let mut fine = variables.clone();
    fine["history"] = json!([
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"}
    ]);
    let ok = render(&app, "fmt", json!({"variables": fine})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["messages"].as_array().map(Vec::len), Some(6));
    fine["history"][0]["role"] = json!("developer");
    let developer = render(&app, "fmt", json!({"variables": fine, "format": "openai"})).await;
    assert_eq!(developer.status, StatusCode::OK, "{}", developer.body);
    assert_eq!(
        developer.body["request"]["messages"][1]["role"],
        "developer"
    );

    // Unsaved content is held to the same roles.
    let unsaved = app
        .post(
            "/v1/render",
            json!({"type": "chat", "messages": [{"role": "placeholder", "name": "history"}],
                   "variables": {"history": [{"role": "wizard", "content": "x"}]}}),
        )
        .await;
    unsaved.assert_problem(422, "invalid_variables");
    assert_eq!(unsaved.error_fields(), ["variables.history[0].role"]);
}

async fn label_move_is_seen_by_the_very_next_render(app: TestApp) {
    post_version(
        &app,
        "moving",
        json!({"template": "v1 {{x}}", "labels": ["production"]}),
    )
    .await;
    post_version(&app, "moving", json!({"template": "v2 {{x}}"})).await;
    for _ in 0..3 {
        assert_eq!(
            render(&app, "moving", json!({"variables": {"x": 1}}))
                .await
                .body["text"],
            "v1 1"
        );
    }
    app.set_label("moving", "production", "1.0.1").await;
    assert_eq!(
        render(&app, "moving", json!({"variables": {"x": 1}}))
            .await
            .body["text"],
        "v2 1"
    );
    app.post("/v1/prompts/moving/labels/production/rollback", json!({}))
        .await;
    assert_eq!(
        render(&app, "moving", json!({"variables": {"x": 1}}))
            .await
            .body["text"],
        "v1 1"
    );
}

async fn chat_for_formats(app: &TestApp) {
    post_version(app, "fmt", json!({"type": "chat", "labels": ["production"],
        "model_config": {"model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 200, "stop": ["###"]},
        "output_schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
        "messages": [
            {"role": "system", "content": "You are {{persona}}."},
            {"role": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"}
        ]})).await;
}

fn format_variables(format: &str) -> Value {
    json!({"format": format, "variables": {"persona": "terse", "question": "Why?", "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}})
}

async fn openai_format_matches_chat_completions(app: TestApp) {
    chat_for_formats(&app).await;
    let request = render(&app, "fmt", format_variables("openai")).await.body["request"].clone();
    assert_eq!(request["model"], "gpt-4o-mini");
    assert_eq!(request["temperature"], 0.3);
    assert_eq!(request["max_tokens"], 200);
    assert_eq!(request["stop"], json!(["###"]));
    assert_eq!(
        request["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Why?"}
        ])
    );
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert_eq!(request["response_format"]["json_schema"]["name"], "output");
    assert_eq!(
        request["response_format"]["json_schema"]["schema"]["properties"]["answer"]["type"],
        "string"
    );
}

async fn anthropic_format_matches_messages_api(app: TestApp) {
    chat_for_formats(&app).await;
    let request = render(&app, "fmt", format_variables("anthropic"))
        .await
        .body["request"]
        .clone();
    assert_eq!(request["model"], "gpt-4o-mini");
    assert_eq!(request["system"], "You are terse.");
    assert_eq!(request["max_tokens"], 200);
    assert_eq!(request["temperature"], 0.3);
    assert_eq!(request["stop_sequences"], json!(["###"]));
    assert!(request.get("stop").is_none());
    assert_eq!(
        request["messages"],
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Why?"}])
    );
}

async fn gemini_format_matches_generate_content(app: TestApp) {
    chat_for_formats(&app).await;
    let request = render(&app, "fmt", format_variables("gemini")).await.body["request"].clone();
    assert_eq!(
        request["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        request["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {"role": "user", "parts": [{"text": "Why?"}]}
        ])
    );
    let generation = &request["generationConfig"];
    assert_eq!(generation["temperature"], 0.3);
    assert_eq!(generation["maxOutputTokens"], 200);
    assert_eq!(generation["stopSequences"], json!(["###"]));
    assert_eq!(generation["responseMimeType"], "application/json");
    assert_eq!(generation["responseJsonSchema"]["type"], "object");
    assert!(request.get("model").is_none());
}

async fn unsaved_content_renders_with_the_same_errors(app: TestApp) {
    post_version(
        &app,
        "common/sig",
        json!({"template": "-- {{team}}", "labels": ["production"]}),
    )
    .await;
    let ok = app.post("/v1/render", json!({"type": "text", "template": "Hi {{name}} {{> common/sig}}", "variables": {"name": "Ada", "team": "Ops"}, "format": "openai"})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["text"], "Hi Ada -- Ops");
    assert!(ok.body.get("prompt").is_none());
    assert_eq!(
        ok.body["resolved"],
        json!([{"prompt": "common/sig", "version": "1.0.0"}])
    );
    assert_eq!(
        ok.body["request"]["messages"],
        json!([{"role": "user", "content": "Hi Ada -- Ops"}])
    );

    app.post(
        "/v1/render",
        json!({"template": "{{#if}}", "variables": {}}),
    )
    .await
    .assert_problem(422, "template_syntax");
    let missing = app
        .post(
            "/v1/render",
            json!({"template": "{{a}} {{b}}", "variables": {}}),
        )
        .await;
    missing.assert_problem(422, "missing_variables");
    assert_eq!(missing.error_fields(), ["a", "b"]);
    app.post(
        "/v1/render",
        json!({"template": "x", "input_schema": {"required": ["a"]}, "variables": {}}),
    )
    .await
    .assert_problem(422, "invalid_variables");
    let shape = app
        .post("/v1/render", json!({"type": "chat", "template": "x"}))
        .await;
    shape.assert_problem(422, "validation_failed");
    app.post("/v1/render", json!({"template": "x", "format": "mistral"}))
        .await
        .assert_problem(422, "validation_failed");
}

async fn no_html_escaping_and_builtin_helpers(app: TestApp) {
    let cases = [
        ("handlebars", "{{x}}", json!({"x": "<b>&\"'"}), "<b>&\"'"),
        (
            "handlebars",
            "{{upper x}} {{lower y}}",
            json!({"x": "ab", "y": "CD"}),
            "AB cd",
        ),
        (
            "handlebars",
            "{{json obj}}",
            json!({"obj": {"a": [1, 2]}}),
            "{\"a\":[1,2]}",
        ),
        (
            "handlebars",
            "{{default x \"none\"}}",
            json!({"x": null}),
            "none",
        ),
        ("jinja", "{{ x }}", json!({"x": "<b>&"}), "<b>&"),
        (
            "jinja",
            "{{ obj | tojson }}",
            json!({"obj": {"a": 1}}),
            "{\"a\": 1}",
        ),
        (
            "jinja",
            "{{ x | default(\"none\", true) }}",
            json!({"x": null}),
            "none",
        ),
    ];
    for (engine, template, variables, want) in cases {
        let response = app
            .post(
                "/v1/render",
                json!({"engine": engine, "template": template, "variables": variables}),
            )
            .await;
        assert_eq!(
            response.body["text"], want,
            "{engine} {template}: {}",
            response.body
        );
    }
}

async fn output_limit_is_a_422(app: TestApp) {
    let response = app
        .post("/v1/render", json!({"engine": "jinja", "template": "{% for i in range(100000) %}{{ big }}{% endfor %}", "variables": {"big": "x".repeat(100)}}))
        .await;
    assert_eq!(response.status.as_u16(), 422, "{}", response.body);
    assert!(
        ["output_too_large", "render_failed"]
            .contains(&response.body["code"].as_str().unwrap_or_default()),
        "{}",
        response.body
    );
}

/// Handlebars parse errors keep their position and say what is wrong in the
/// author's words, not the parser's grammar rules.
async fn handlebars_syntax_errors_say_what_is_wrong(app: TestApp) {
    let cases = [
        (
            "Hello {{name",
            (1, 13),
            "unclosed `{{`: the expression opened at line 1, column 7 has no closing `}}`",
        ),
        ("Hello {{name}!", (1, 13), "unclosed `{{`"),
        (
            "Hi\n{{/if}}",
            (2, 3),
            "`{{/if}}` closes nothing: no `{{#if}}` block is open here",
        ),
        (
            "{{#if ok}}yes",
            (1, 14),
            "`{{#if}}` opened at line 1, column 1 is never closed: add `{{/if}}`",
        ),
        (
            "{{#if ok}}yes{{/each}}",
            (1, 14),
            "`{{/each}}` does not close the open `{{#if}}`",
        ),
        ("{{else}}", (1, 3), "`{{else}}` belongs inside a block"),
        ("x {{shout name}}", (1, 3), "unknown helper `shout`"),
    ];
    for (template, (line, column), says) in cases {
        let response = app
            .post(
                "/v1/render",
                json!({"template": template, "variables": {"name": "Ada", "ok": true}}),
            )
            .await;
        let problem = response.assert_problem(422, "template_syntax");
        let error = &problem["errors"][0];
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{template:?}: {problem}");
        for jargon in ["tilde", "helper_parameter", "identifier", "expected escape"] {
            assert!(!message.contains(jargon), "{template:?}: {problem}");
        }
        assert_eq!(
            (error["line"].clone(), error["column"].clone()),
            (json!(line), json!(column)),
            "{template:?}: {problem}"
        );
    }
}
