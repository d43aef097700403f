//! The web UI in a real headless Chromium, driven through WebDriver
//! (`chromedriver`), against a served promptreg on SQLite and on Postgres.
//! Each test starts its own browser with a fresh profile. Without
//! `chromium` and `chromedriver` on PATH the tests are skipped with a loud
//! warning, unless `CI` is set: then they fail.

mod editing;
#[path = "../api/fake_llm.rs"]
mod fake_llm;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;

mod accessibility;
mod admin;
mod compare;
mod eval_run;
mod optimizations;
mod runs;
mod screenshots;
mod store_calls;
mod viewing;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::TestApp;

const PASSWORD: &str = "correct horse battery";

/// A headless Chromium and the chromedriver that drives it.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

impl Browser {
    /// `None` (after a warning) when no browser is installed and `CI` is unset.
    async fn start() -> Option<Self> {
        let missing: Vec<&str> = ["chromium", "chromedriver"]
            .into_iter()
            .filter(|p| !on_path(p))
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set and {} is not installed (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            eprintln!(
                "WARNING: skipping a browser test: {} not installed",
                missing.join(" and ")
            );
            return None;
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen; try until it answers.
        let mut last_error = None;
        for _ in 0..100 {
            // Plain HTTP to the local chromedriver: no TLS needed.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Self {
                        client,
                        _driver: driver,
                        _profile: profile,
                    })
                }
                Err(err) => last_error = Some(err.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last_error:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the button whose text is exactly `text` (every button submits
    /// a form) and waits until the answer has replaced this page: the next
    /// page may carry the same heading, so waiting for one is not enough.
    async fn press(&self, text: &str) {
        let page = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page");
        let xpath = format!("//button[normalize-space()='{text}']");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("a {text:?} button: {e}"))
            .click()
            .await
            .expect("click");
        for _ in 0..400 {
            if page.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pressing {text:?} loaded no new page");
    }

    /// The visible text of the page's main area.
    async fn main_text(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .expect("a main element")
            .text()
            .await
            .expect("text")
    }

    async fn buttons(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for button in self
            .client
            .find_all(Locator::Css("button"))
            .await
            .expect("buttons")
        {
            texts.push(button.text().await.expect("text"));
        }
        texts
    }

    async fn sign_in(&self, base: &str, name: &str) {
        self.goto(&format!("{base}/ui/signin")).await;
        self.fill("#name", name).await;
        self.fill("#password", PASSWORD).await;
        self.press("Sign in").await;
        self.wait_for_heading("Prompts").await;
    }

    async fn wait_for_heading(&self, text: &str) {
        let xpath = format!("//h1[normalize-space()='{text}']");
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("a heading {text:?}: {e}"));
    }

    /// The CSRF token of the page's forms.
    async fn csrf_token(&self) -> String {
        self.client
            .find(Locator::Css("input[name=csrf_token]"))
            .await
            .expect("a token")
            .attr("value")
            .await
            .expect("value")
            .expect("a value")
    }

    /// Opens the `<details>` whose summary says `text`.
    async fn open_details(&self, text: &str) {
        let xpath = format!("//summary[normalize-space()='{text}']");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("a {text:?} summary: {e}"))
            .click()
            .await
            .expect("open it");
    }

    async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("promptreg_session")
            .await
            .expect("the session cookie")
            .value()
            .to_owned()
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Serves the app (with client addresses, as `serve` does) on a local port.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    format!("http://{addr}")
}

/// A served app over plain HTTP (cookies without `Secure`), a browser, and
/// users `vera` (viewer) and `rita` (releaser) in project `default`.
async fn setup(url: &str) -> Option<(TestApp, String, Browser)> {
    setup_with(url, |_| {}).await
}

/// [`setup`] with the configuration changed by `tune` first.
async fn setup_with(
    url: &str,
    tune: impl FnOnce(&mut promptreg::config::Config),
) -> Option<(TestApp, String, Browser)> {
    let browser = Browser::start().await?;
    let mut config = support::test_config(url);
    config.ui.secure_cookies = false;
    tune(&mut config);
    let app = support::app_with(config).await;
    for (name, role) in [("vera", "viewer"), ("rita", "releaser")] {
        let created = app
            .post(
                "/v1/users",
                json!({"name": name, "password": PASSWORD, "roles": {"default": role}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let base = serve(&app).await;
    Some((app, base, browser))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

async fn a_viewer_sees_no_promote_button_and_a_forged_post_is_refused(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    app.seed_prompt("support/greeting").await;
    app.seed_version("support/greeting", "Hello {{name}}").await;
    app.set_label("support/greeting", "production", "1.0.0")
        .await;

    browser.sign_in(&base, "vera").await;
    assert!(
        browser.main_text().await.contains("support/"),
        "the folder is listed"
    );
    browser
        .client
        .find(Locator::LinkText("greeting"))
        .await
        .expect("a link to the prompt")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("support/greeting").await;
    let buttons = browser.buttons().await;
    assert!(
        !buttons
            .iter()
            .any(|b| b == "Promote" || b.starts_with("Roll back")),
        "{buttons:?}"
    );
    assert!(buttons.iter().any(|b| b == "Sign out"), "{buttons:?}");

    // The viewer's own session and token, posted by hand: refused by role.
    let cookie = browser.session_cookie().await;
    let csrf = browser.csrf_token().await;
    let promote = format!("{base}/ui/prompts/support%2Fgreeting/labels/production/promote");
    for (token, origin, why) in [
        ("", base.as_str(), "no token"),
        (csrf.as_str(), "http://evil.test", "another origin"),
        (csrf.as_str(), base.as_str(), "a viewer"),
    ] {
        let response = http()
            .post(&promote)
            .header("cookie", format!("promptreg_session={cookie}"))
            .header("origin", origin)
            .form(&[("csrf_token", token), ("version", "1.0.0")])
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "{why}");
    }
    browser.close().await;
}

async fn a_releaser_promotes_rolls_back_and_is_told_of_a_gate(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello").await;
    app.seed_version("greet", "Hello there").await;
    app.set_label("greet", "production", "1.0.0").await;
    let dataset = app.post("/v1/datasets", json!({"name": "golden"})).await;
    assert_eq!(dataset.status, StatusCode::CREATED, "{}", dataset.body);
    let gate = app
        .put(
            "/v1/prompts/greet/gates/staging",
            json!({"dataset": "golden", "rules": [{"metric": "exact_match", "min": 0.9}]}),
        )
        .await;
    assert_eq!(gate.status, StatusCode::OK, "{}", gate.body);

    browser.sign_in(&base, "rita").await;
    browser.goto(&format!("{base}/ui/prompts/greet")).await;
    browser.wait_for_heading("greet").await;
    let select = browser
        .client
        .find(Locator::Css("#promote-1"))
        .await
        .expect("the production version picker");
    select.select_by_value("1.0.1").await.expect("pick 1.0.1");
    browser.press("Promote").await;
    browser.wait_for_heading("greet").await;
    let text = browser.main_text().await;
    assert!(text.contains("production → 1.0.1"), "{text}");
    let production = app.get("/v1/prompts/greet/versions/production").await;
    assert_eq!(production.body["version"], "1.0.1");

    browser.press("Roll back production").await;
    browser.wait_for_heading("greet").await;
    let text = browser.main_text().await;
    assert!(text.contains("production → 1.0.0"), "{text}");
    browser.open_details("History of production").await;
    let text = browser.main_text().await;
    assert!(text.contains("rolled back from 1.0.1 to 1.0.0"), "{text}");
    assert!(
        text.contains("moved from 1.0.0 to 1.0.1 by user:rita"),
        "{text}"
    );

    // A gated label refuses, and the page says why in words.
    browser.fill("#new-label", "staging").await;
    browser
        .client
        .find(Locator::Css("#new-label-version"))
        .await
        .expect("version picker")
        .select_by_value("1.0.1")
        .await
        .expect("pick");
    browser.press("Set label").await;
    browser.wait_for_heading("greet").await;
    let alert = browser
        .client
        .find(Locator::Css("[role=alert]"))
        .await
        .expect("a refusal")
        .text()
        .await
        .expect("text");
    assert!(alert.contains("Label \"staging\" is gated"), "{alert}");
    assert!(
        alert.contains("version 1.0.1 has no succeeded evaluation on dataset \"golden\""),
        "{alert}"
    );
    assert!(!alert.contains("gate_failed"), "words, not a code: {alert}");
    app.get("/v1/prompts/greet/versions/staging")
        .await
        .assert_problem(404, "label_not_found");
    browser.close().await;
}

async fn a_script_in_a_template_is_shown_as_text(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    app.seed_prompt("xss").await;
    app.seed_version("xss", "<script>alert(1)</script>").await;
    browser.sign_in(&base, "vera").await;
    browser
        .goto(&format!("{base}/ui/prompts/xss/versions/1.0.0"))
        .await;
    browser.wait_for_heading("xss 1.0.0").await;
    let template = browser
        .client
        .find(Locator::Css("pre.template"))
        .await
        .expect("the template")
        .text()
        .await
        .expect("text");
    assert_eq!(template, "<script>alert(1)</script>");
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "no dialog opened"
    );
    browser.close().await;
}

async fn after_signing_out_the_old_cookie_is_refused(url: String) {
    let Some((_app, base, browser)) = setup(&url).await else {
        return;
    };
    browser.sign_in(&base, "rita").await;
    let cookie = browser.session_cookie().await;
    let before = http()
        .get(format!("{base}/ui/prompts"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(before.status(), 200);
    browser.press("Sign out").await;
    browser.wait_for_heading("Sign in").await;
    let after = http()
        .get(format!("{base}/ui/prompts"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(after.status(), 303);
    assert_eq!(
        after
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/ui/signin")
    );
    browser.close().await;
}

crate::backend_url_tests!(
    a_viewer_sees_no_promote_button_and_a_forged_post_is_refused,
    a_releaser_promotes_rolls_back_and_is_told_of_a_gate,
    a_script_in_a_template_is_shown_as_text,
    after_signing_out_the_old_cookie_is_refused,
);
