//! Editing in the browser: a prompt made on the new-prompt page, versions
//! made in the editor (a text edit and a chat reorder), the diff with its
//! word highlights, a syntax error under its field, two people saving at
//! once, and a viewer refused.

use axum::http::StatusCode;
use fantoccini::Locator;
use serde_json::json;

use super::{http, setup, Browser, PASSWORD};

impl Browser {
    /// Replaces what the field at `css` holds with `text`.
    async fn replace(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .select_by_value(value)
            .await
            .expect("select");
    }

    async fn follow(&self, link_text: &str) {
        self.client
            .find(Locator::LinkText(link_text))
            .await
            .unwrap_or_else(|e| panic!("a link {link_text:?}: {e}"))
            .click()
            .await
            .expect("click");
    }

    /// The texts of every element `css` finds, read in one script call: the
    /// check while typing swaps elements in the background, so finding them
    /// first and reading each after could meet one already replaced.
    async fn texts(&self, css: &str) -> Vec<String> {
        let texts = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText);",
                vec![json!(css)],
            )
            .await
            .expect(css);
        serde_json::from_value(texts).expect("a list of texts")
    }

    /// The texts at `css` once there are some, waiting up to 10 s (the
    /// editor's check while typing answers in the background).
    async fn wait_for_texts(&self, css: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let texts = self.texts(css).await;
            if texts.iter().any(|t| !t.is_empty()) {
                return texts;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing at {css} within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn links(&self) -> Vec<String> {
        self.texts("main a").await
    }
}

async fn an_editor_creates_a_prompt_edits_it_and_reads_the_diff(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    browser.sign_in(&base, "rita").await;

    // A text prompt, made on the new-prompt page.
    browser.follow("New prompt").await;
    browser.wait_for_heading("New prompt").await;
    browser.fill("#name", "support/welcome").await;
    browser.fill("#template", "Hello {{name}}, welcome!").await;
    browser.fill("#tags", "support, email").await;
    browser.fill("#description", "Greets a new customer").await;
    browser.fill("#message", "first words").await;
    browser.press("Create prompt").await;
    browser.wait_for_heading("support/welcome").await;
    let prompt = app.get("/v1/prompts/support%2Fwelcome").await;
    assert_eq!(
        prompt.body["tags"],
        json!(["support", "email"]),
        "{}",
        prompt.body
    );
    assert_eq!(prompt.body["description"], "Greets a new customer");

    // A second version, from the editor.
    browser.follow("Edit").await;
    browser.wait_for_heading("Edit support/welcome").await;
    assert_eq!(browser.value("#template").await, "Hello {{name}}, welcome!");
    browser
        .replace("#template", "Hello {{name}}, glad you came!")
        .await;
    browser.fill("#message", "warmer").await;
    browser.press("Save version").await;
    browser.wait_for_heading("support/welcome 1.0.1").await;
    let saved = app
        .get("/v1/prompts/support%2Fwelcome/versions/1.0.1")
        .await;
    assert_eq!(saved.body["template"], "Hello {{name}}, glad you came!");
    assert_eq!(saved.body["created_by"], "user:rita");
    assert_eq!(saved.body["message"], "warmer");

    // A syntax error is shown under the template, with line and column, and
    // neither checking nor saving writes anything.
    browser
        .goto(&format!("{base}/ui/prompts/support%2Fwelcome/edit"))
        .await;
    browser.wait_for_heading("Edit support/welcome").await;
    browser
        .replace("#template", "Hello\n{{#if name}}friend")
        .await;
    for button in ["Check", "Save version"] {
        browser.press(button).await;
        browser.wait_for_heading("Edit support/welcome").await;
        let error = browser.texts("#template-error").await;
        assert_eq!(error.len(), 1, "{button}: {error:?}");
        assert!(error[0].starts_with("Line "), "{button}: {error:?}");
        assert!(error[0].contains("column"), "{button}: {error:?}");
        assert_eq!(
            browser.value("#template").await,
            "Hello\n{{#if name}}friend",
            "the draft is kept"
        );
    }
    let versions = app.get("/v1/prompts/support%2Fwelcome/versions").await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(2));

    // A check that passes says what the template reads.
    browser
        .replace("#template", "Hi {{name}} from {{place}}")
        .await;
    browser.press("Check").await;
    browser.wait_for_heading("Edit support/welcome").await;
    let status = browser.texts("[role=status]").await;
    assert_eq!(
        status,
        ["No problems found. The template reads: name, place."],
        "{status:?}"
    );

    // Both versions in the timeline; the diff with word highlights.
    browser
        .goto(&format!("{base}/ui/prompts/support%2Fwelcome"))
        .await;
    browser.wait_for_heading("support/welcome").await;
    let text = browser.main_text().await;
    assert!(text.contains("1.0.1") && text.contains("1.0.0"), "{text}");
    assert!(
        text.contains("warmer") && text.contains("first words"),
        "{text}"
    );
    browser.follow("diff with previous").await;
    browser
        .wait_for_heading("support/welcome: 1.0.0 → 1.0.1")
        .await;
    assert_eq!(browser.texts("table.split del").await, ["welcome!"]);
    assert_eq!(browser.texts("table.split ins").await, ["glad you came!"]);
    browser.follow("Unified").await;
    browser
        .client
        .wait()
        .for_element(Locator::Css("table.unified"))
        .await
        .expect("the unified view");
    assert_eq!(browser.texts("tr.del del").await, ["welcome!"]);
    assert_eq!(browser.texts("tr.ins ins").await, ["glad you came!"]);

    // A chat prompt: a message added in the editor and moved to the top.
    browser.goto(&format!("{base}/ui/prompts/new")).await;
    browser.wait_for_heading("New prompt").await;
    browser.fill("#name", "chatbot").await;
    browser.select("#type", "chat").await;
    browser.select("#role", "system").await;
    browser.fill("#template", "You are helpful.").await;
    browser.press("Create prompt").await;
    browser.wait_for_heading("chatbot").await;
    browser.follow("Edit").await;
    browser.wait_for_heading("Edit chatbot").await;
    browser.press("Add a message").await;
    browser.wait_for_heading("Edit chatbot").await;
    browser.fill("#content-1", "Hi, I am {{name}}.").await;
    browser.press("Move message 2 up").await;
    browser.wait_for_heading("Edit chatbot").await;
    assert_eq!(browser.value("#content-0").await, "Hi, I am {{name}}.");
    assert_eq!(browser.value("#role-0").await, "user");
    assert_eq!(browser.value("#content-1").await, "You are helpful.");
    browser.fill("#message", "user first").await;
    browser.press("Save version").await;
    browser.wait_for_heading("chatbot 1.0.1").await;
    let latest = app.get("/v1/prompts/chatbot/versions/latest").await;
    assert_eq!(
        latest.body["messages"],
        json!([
            {"role": "user", "content": "Hi, I am {{name}}."},
            {"role": "system", "content": "You are helpful."},
        ]),
        "{}",
        latest.body
    );
    browser.close().await;
}

async fn two_people_save_at_once_and_the_second_is_told_of_the_conflict(url: String) {
    let Some((app, base, first)) = setup(&url).await else {
        return;
    };
    let Some(second) = Browser::start().await else {
        return;
    };
    let created = app
        .post(
            "/v1/users",
            json!({"name": "edgar", "password": PASSWORD, "roles": {"default": "editor"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello {{name}}").await;
    first.sign_in(&base, "rita").await;
    second.sign_in(&base, "edgar").await;
    for browser in [&first, &second] {
        browser.goto(&format!("{base}/ui/prompts/greet/edit")).await;
        browser.wait_for_heading("Edit greet").await;
    }

    first.replace("#template", "Hello there {{name}}").await;
    first.press("Save version").await;
    first.wait_for_heading("greet 1.0.1").await;

    second.replace("#template", "Good day {{name}}").await;
    second.press("Save version").await;
    second.wait_for_heading("Edit greet").await;
    let conflict = second.texts("#conflict").await.join(" ");
    assert!(
        conflict.contains("Someone else saved version 1.0.1 (user:rita,"),
        "{conflict}"
    );
    assert!(conflict.contains("Nothing was saved"), "{conflict}");
    assert_eq!(second.texts("table.unified ins").await, ["there "]);
    assert_eq!(second.value("#template").await, "Good day {{name}}");
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(
        versions.body["items"].as_array().map(Vec::len),
        Some(2),
        "only the first save landed: {}",
        versions.body
    );

    // Having read what landed, saving again puts the draft after it.
    second.press("Save version").await;
    second.wait_for_heading("greet 1.0.2").await;
    let latest = app.get("/v1/prompts/greet/versions/latest").await;
    assert_eq!(latest.body["template"], "Good day {{name}}");
    assert_eq!(latest.body["parent"], "1.0.1");
    first.close().await;
    second.close().await;
}

async fn a_viewer_cannot_edit_or_create(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello").await;
    browser.sign_in(&base, "vera").await;
    let links = browser.links().await;
    assert!(!links.iter().any(|l| l == "New prompt"), "{links:?}");
    browser.goto(&format!("{base}/ui/prompts/greet")).await;
    browser.wait_for_heading("greet").await;
    let links = browser.links().await;
    assert!(!links.iter().any(|l| l == "Edit"), "{links:?}");

    let cookie = format!("promptreg_session={}", browser.session_cookie().await);
    let csrf = browser
        .client
        .find(Locator::Css("input[name=csrf_token]"))
        .await
        .expect("a token")
        .attr("value")
        .await
        .expect("value")
        .expect("a value");
    for page in ["/ui/prompts/greet/edit", "/ui/prompts/new"] {
        let response = http()
            .get(format!("{base}{page}"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "GET {page}");
    }
    // The viewer's own session, token and origin: refused by role.
    let forged = [
        (
            "/ui/prompts/greet/edit",
            vec![
                ("csrf_token", csrf.as_str()),
                ("op", "save"),
                ("type", "text"),
                ("template", "Hacked"),
                ("engine", "handlebars"),
                ("expected_latest", "1.0.0"),
            ],
        ),
        (
            "/ui/prompts/new",
            vec![
                ("csrf_token", csrf.as_str()),
                ("name", "sneaky"),
                ("type", "text"),
                ("template", "Hacked"),
            ],
        ),
    ];
    for (page, form) in forged {
        let response = http()
            .post(format!("{base}{page}"))
            .header("cookie", &cookie)
            .header("origin", &base)
            .form(&form)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "POST {page}");
    }
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(1));
    app.get("/v1/prompts/sneaky")
        .await
        .assert_problem(404, "prompt_not_found");
    browser.close().await;
}

async fn a_draft_is_checked_while_it_is_typed(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello {{name}}").await;
    browser.sign_in(&base, "rita").await;
    let editor = format!("{base}/ui/prompts/greet/edit");
    browser.goto(&editor).await;
    browser.wait_for_heading("Edit greet").await;

    // No button is pressed: the problem appears under the field by itself.
    browser
        .replace("#template", "Hello\n{{#if name}}friend")
        .await;
    let error = browser.wait_for_texts("#template-error").await;
    assert!(
        error[0].starts_with("Line 2") && error[0].contains("column"),
        "{error:?}"
    );
    assert_eq!(
        browser.client.current_url().await.expect("url").as_str(),
        editor
    );
    assert_eq!(
        browser.value("#template").await,
        "Hello\n{{#if name}}friend",
        "what is typed stays"
    );

    // Mended, the problem goes and the check says what the template reads.
    browser
        .replace("#template", "Hi {{name}} from {{place}}")
        .await;
    let status = browser.wait_for_texts("#check-status").await;
    assert_eq!(
        status,
        ["No problems found. The template reads: name, place."],
        "{status:?}"
    );
    assert!(browser.texts("#template-error").await.is_empty());
    let versions = app.get("/v1/prompts/greet/versions").await;
    assert_eq!(
        versions.body["items"].as_array().map(Vec::len),
        Some(1),
        "checking writes nothing"
    );
    browser.close().await;
}

crate::backend_url_tests!(
    an_editor_creates_a_prompt_edits_it_and_reads_the_diff,
    a_draft_is_checked_while_it_is_typed,
    two_people_save_at_once_and_the_second_is_told_of_the_conflict,
    a_viewer_cannot_edit_or_create,
);
