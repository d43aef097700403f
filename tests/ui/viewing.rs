//! Reading prompts in the browser: the list as a folder tree with search,
//! a version with its variables and partials highlighted, the playground
//! (errors beside the fields, then the rendered text and each provider's
//! request), and description and tags edited by a writer but not a viewer.

use fantoccini::Locator;
use serde_json::json;

use super::accessibility::seed;
use super::support::TestApp;
use super::{http, setup, Browser};

/// A served app with the demo prompts, and a browser signed in as `user`.
async fn seeded(url: &str, user: &str) -> Option<(TestApp, String, Browser)> {
    let (app, base, browser) = setup(url).await?;
    seed(&app).await;
    browser.sign_in(&base, user).await;
    Some((app, base, browser))
}

async fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn all_texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for found in browser.client.find_all(Locator::Css(css)).await.expect(css) {
        texts.push(found.text().await.expect("text"));
    }
    texts
}

async fn the_list_is_a_searchable_folder_tree(url: String) {
    let Some((app, base, browser)) = seeded(&url, "vera").await else {
        return;
    };
    app.seed_prompt("support/billing/refunds").await;
    browser.goto(&format!("{base}/ui/prompts")).await;
    let folders = all_texts(&browser, "details.folder > summary").await;
    assert_eq!(
        folders,
        ["common/ 1", "support/ 3", "billing/ 1"],
        "folders nest"
    );
    let main = browser.main_text().await;
    assert!(main.contains("production: 1.0.0"), "label badges: {main}");
    assert!(main.contains("latest version by "), "who: {main}");

    browser.fill("#q", "greet").await;
    browser.press("Filter").await;
    browser.wait_for_heading("Prompts").await;
    let main = browser.main_text().await;
    assert!(main.contains("greeting"), "{main}");
    assert!(!main.contains("refunds"), "{main}");

    browser.goto(&format!("{base}/ui/prompts?tag=demo")).await;
    let links = all_texts(&browser, "main table a").await;
    assert_eq!(links, ["greeting"], "only the tagged prompt");

    let archived = app.delete("/v1/prompts/common%2Ftone").await;
    assert_eq!(archived.status, 204);
    browser.goto(&format!("{base}/ui/prompts")).await;
    assert!(
        !browser.main_text().await.contains("tone"),
        "archived hidden"
    );
    browser
        .goto(&format!("{base}/ui/prompts?archived=true"))
        .await;
    assert!(browser.main_text().await.contains("tone archived"));
    browser.close().await;
}

async fn a_version_shows_variables_and_links_each_partial(url: String) {
    let Some((_app, base, browser)) = seeded(&url, "vera").await else {
        return;
    };
    browser
        .goto(&format!(
            "{base}/ui/prompts/support%2Fgreeting/versions/staging"
        ))
        .await;
    browser.wait_for_heading("support/greeting 1.0.1").await;
    assert_eq!(
        all_texts(&browser, "pre.template .variable").await,
        ["{{name}}"]
    );
    assert_eq!(
        all_texts(&browser, "pre.template .tag").await,
        ["{{#if vip}}", "{{/if}}"]
    );
    let main = browser.main_text().await;
    for shown in [
        "gpt-4o-mini",
        "The customer's first name",
        "Tone from a partial",
    ] {
        assert!(main.contains(shown), "{shown}: {main}");
    }
    browser
        .client
        .find(Locator::LinkText("{{> common/tone}}"))
        .await
        .expect("the partial links to its version")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("common/tone 1.0.0").await;

    browser
        .goto(&format!("{base}/ui/prompts/support%2Fchat/versions/1.0.0"))
        .await;
    browser.wait_for_heading("support/chat 1.0.0").await;
    assert_eq!(
        all_texts(&browser, "pre.template .variable").await,
        ["{{customer}}", "{{question}}"]
    );
    assert!(browser
        .main_text()
        .await
        .contains("Placeholder for the messages in history"));
    browser.close().await;
}

async fn the_playground_shows_errors_beside_fields_then_every_request(url: String) {
    let Some((app, base, browser)) = seeded(&url, "vera").await else {
        return;
    };
    browser
        .goto(&format!(
            "{base}/ui/prompts/support%2Fgreeting/playground?ref=staging"
        ))
        .await;
    browser
        .wait_for_heading("Playground: support/greeting")
        .await;
    browser.press("Render").await;
    browser
        .wait_for_heading("Playground: support/greeting")
        .await;
    let error = text_of(&browser, "#var-name-error").await;
    assert!(error.contains("\"name\" is a required property"), "{error}");
    let error = text_of(&browser, "#var-tone-error").await;
    assert!(error.contains("\"tone\""), "{error}");

    browser.fill("#var-name", "Ada").await;
    browser
        .client
        .find(Locator::Css("#var-tone"))
        .await
        .expect("the tone")
        .select_by_label("warm")
        .await
        .expect("pick warm");
    browser.fill("#var-orders", "[1]").await;
    browser.press("Render").await;
    browser
        .wait_for_heading("Playground: support/greeting")
        .await;
    let error = text_of(&browser, "#var-orders-error").await;
    assert!(error.contains("is not of type"), "a schema error: {error}");
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#var-name"))
            .await
            .expect("name")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("Ada"),
        "the form keeps what was typed"
    );

    browser
        .client
        .find(Locator::Css("#var-orders"))
        .await
        .expect("orders")
        .clear()
        .await
        .expect("clear");
    browser.fill("#var-orders", "[\"tea\"]").await;
    // The template reads `vip` (in an `#if`), so it must be given too.
    browser
        .client
        .find(Locator::Css("#var-vip"))
        .await
        .expect("vip")
        .select_by_label("false")
        .await
        .expect("pick false");
    browser.press("Render").await;
    browser
        .wait_for_heading("Playground: support/greeting")
        .await;
    let main = browser.main_text().await;
    assert!(main.contains("Hello Ada! Be warm."), "{main}");
    assert_eq!(
        text_of(&browser, "pre.rendered").await,
        "Hello Ada! Be warm."
    );
    let gemini = app
        .post(
            "/v1/prompts/support%2Fgreeting/render",
            json!({"ref": "staging", "variables": {"name": "Ada", "tone": "warm", "orders": ["tea"], "vip": false}, "format": "gemini"}),
        )
        .await;
    assert_eq!(gemini.status, 200, "{}", gemini.body);
    browser
        .client
        .find(Locator::XPath("//label[normalize-space()='Gemini']"))
        .await
        .expect("the Gemini tab")
        .click()
        .await
        .expect("click");
    let shown: serde_json::Value =
        serde_json::from_str(&text_of(&browser, "#panel-gemini pre").await).expect("JSON");
    assert_eq!(shown, gemini.body["request"], "the API's own request body");
    let hidden = browser
        .client
        .find(Locator::Css("#panel-openai"))
        .await
        .expect("the OpenAI panel")
        .is_displayed()
        .await
        .expect("displayed?");
    assert!(!hidden, "one tab at a time");

    // A template without a schema: its variables, and a missing one named.
    browser
        .goto(&format!(
            "{base}/ui/prompts/support%2Fchat/playground?ref=1.0.0"
        ))
        .await;
    browser.fill("#var-customer", "Ada").await;
    browser.press("Render").await;
    browser.wait_for_heading("Playground: support/chat").await;
    let error = text_of(&browser, "#var-history-error").await;
    assert!(error.contains("required by the template"), "{error}");
    let error = text_of(&browser, "#var-question-error").await;
    assert!(error.contains("required by the template"), "{error}");
    browser.close().await;
}

async fn a_writer_edits_description_and_tags_and_a_viewer_cannot(url: String) {
    let Some((app, base, browser)) = seeded(&url, "rita").await else {
        return;
    };
    browser
        .goto(&format!("{base}/ui/prompts/support%2Fgreeting"))
        .await;
    browser.open_details("Edit description and tags").await;
    let description = browser
        .client
        .find(Locator::Css("#about-description"))
        .await
        .expect("description");
    description.clear().await.expect("clear");
    description
        .send_keys("Greets customers by name")
        .await
        .expect("type");
    let tags = browser
        .client
        .find(Locator::Css("#about-tags"))
        .await
        .expect("tags");
    tags.clear().await.expect("clear");
    tags.send_keys("demo, support").await.expect("type");
    browser.press("Save description and tags").await;
    browser.wait_for_heading("support/greeting").await;
    assert!(browser
        .main_text()
        .await
        .contains("Greets customers by name"));
    let prompt = app.get("/v1/prompts/support%2Fgreeting").await;
    assert_eq!(prompt.body["tags"], json!(["demo", "support"]));
    let audit = app.get("/v1/audit?limit=1").await;
    assert_eq!(audit.body["items"][0]["key_name"], "user:rita");

    // A tag with a space inside cannot be typed here; an over-long one is refused beside the form.
    browser.open_details("Edit description and tags").await;
    browser
        .fill("#about-tags", &format!(" {}", "x".repeat(100)))
        .await;
    browser.press("Save description and tags").await;
    browser.wait_for_heading("support/greeting").await;
    let error = text_of(&browser, "#about-error").await;
    assert!(error.contains("tags[2]"), "{error}");

    // A viewer sees no editor, and a forged post with its session is refused.
    let viewer = super::Browser::start().await.expect("a second browser");
    viewer.sign_in(&base, "vera").await;
    viewer
        .goto(&format!("{base}/ui/prompts/support%2Fgreeting"))
        .await;
    viewer.wait_for_heading("support/greeting").await;
    assert!(!viewer.main_text().await.contains("Edit description"));
    let cookie = viewer.session_cookie().await;
    let csrf = viewer.csrf_token().await;
    let forged = http()
        .post(format!("{base}/ui/prompts/support%2Fgreeting/about"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .header("origin", &base)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("description", "defaced"),
            ("tags", ""),
        ])
        .send()
        .await
        .expect("a response");
    assert_eq!(forged.status(), 403);
    let prompt = app.get("/v1/prompts/support%2Fgreeting").await;
    assert_eq!(prompt.body["description"], "Greets customers by name");
    viewer.close().await;
    browser.close().await;
}

crate::backend_url_tests!(
    the_list_is_a_searchable_folder_tree,
    a_version_shows_variables_and_links_each_partial,
    the_playground_shows_errors_beside_fields_then_every_request,
    a_writer_edits_description_and_tags_and_a_viewer_cannot,
);
