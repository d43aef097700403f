//! Datasets, evaluations and jobs in the browser: each page shows what was
//! seeded through `/v1` (an evaluation run by the worker against the fake
//! provider), escapes user text, pages, and shows nothing of another
//! project.

use fantoccini::Locator;
use promptreg::providers::ProviderKind;
use serde_json::{json, Value};

use super::fake_llm::{FakeLlm, Reply};
use super::support::{enc, TestApp};
use super::{http, setup_with, Browser};

/// Countries the fake provider knows the capital of; any other it does not.
const KNOWN: [(&str, &str); 2] = [("France", "Paris"), ("Italy", "Rome")];
/// An item whose input is markup: it must show as text.
pub(super) const MARKUP: &str = "<script>alert(1)</script>Atlantis";

/// A fake provider that answers a known country's capital.
pub(super) async fn fake_provider() -> FakeLlm {
    let fake = FakeLlm::start().await;
    fake.set_default(|request| {
        let asked = request.last_user_text().unwrap_or_default();
        let answer = KNOWN
            .iter()
            .find(|(country, _)| asked.contains(country))
            .map_or("I am not sure", |(_, capital)| capital);
        Reply::text(answer)
    });
    fake
}

/// Configures `fake` as provider `fake`.
pub(super) fn with_fake(fake: &FakeLlm) -> impl FnOnce(&mut promptreg::config::Config) + '_ {
    |config| {
        config
            .providers
            .insert("fake".to_owned(), fake.config(ProviderKind::Openai));
    }
}

/// Prompt `geo` 1.0.0, dataset `capitals` (France, Italy and [`MARKUP`])
/// and an evaluation of it run to the end (2 of 3 exact matches); answers
/// the evaluation's id.
pub(super) async fn seed_runs(app: &TestApp) -> String {
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    let created = app
        .post(
            "/v1/datasets",
            json!({"name": "capitals", "description": "<i>Capitals</i> & more"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let items = json!([
        {"input": {"country": "France"}, "expected": "Paris", "metadata": {"region": "europe"}},
        {"input": {"country": "Italy"}, "expected": "Rome"},
        {"input": {"country": MARKUP}, "expected": "<b>Nowhere</b>"},
    ]);
    let uploaded = app
        .upload("capitals", "application/json", items.to_string())
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let id = start(app, "capitals").await;
    drain(app).await;
    let done = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    id
}

/// Starts an evaluation of `geo` 1.0.0 on `dataset`; answers its id.
pub(super) async fn start(app: &TestApp, dataset: &str) -> String {
    let created = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": "1.0.0", "dataset": dataset,
                   "provider": "fake", "metrics": ["exact_match"], "concurrency": 2}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    created.body["id"].as_str().expect("an id").to_owned()
}

async fn drain(app: &TestApp) {
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

async fn all_texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for found in browser.client.find_all(Locator::Css(css)).await.expect(css) {
        texts.push(found.text().await.expect("text"));
    }
    texts
}

async fn count(browser: &Browser, css: &str) -> usize {
    browser
        .client
        .find_all(Locator::Css(css))
        .await
        .expect(css)
        .len()
}

async fn follow(browser: &Browser, link: &str) {
    browser
        .client
        .find(Locator::LinkText(link))
        .await
        .unwrap_or_else(|e| panic!("a link {link:?}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn a_viewer_sees_datasets_an_evaluation_and_its_job(url: String) {
    let fake = fake_provider().await;
    let Some((app, base, browser)) = setup_with(&url, with_fake(&fake)).await else {
        return;
    };
    let id = seed_runs(&app).await;
    browser.sign_in(&base, "vera").await;

    follow(&browser, "Datasets").await;
    browser.wait_for_heading("Datasets").await;
    let main = browser.main_text().await;
    assert!(main.contains("<i>Capitals</i> & more"), "escaped: {main}");
    assert_eq!(
        all_texts(&browser, "main tbody td:nth-child(2)").await,
        ["3"]
    );

    follow(&browser, "capitals").await;
    browser.wait_for_heading("capitals").await;
    let main = browser.main_text().await;
    for shown in [
        MARKUP,
        "<b>Nowhere</b>",
        "\"region\": \"europe\"",
        "geo 1.0.0",
    ] {
        assert!(main.contains(shown), "{shown}: {main}");
    }
    assert!(browser.client.get_alert_text().await.is_err(), "no dialog");
    assert_eq!(count(&browser, "table.items tbody tr").await, 3);

    // The dataset's evaluation leads to its page.
    browser
        .client
        .find(Locator::Css(&format!("a[href='/ui/evaluations/{id}']")))
        .await
        .expect("a link to the evaluation")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    let main = browser.main_text().await;
    for shown in ["succeeded", "3/3 items (100%)", "exact_match", "Mean 0.667"] {
        assert!(main.contains(shown), "{shown}: {main}");
    }
    assert_eq!(count(&browser, "svg.histogram rect").await, 10);
    assert_eq!(count(&browser, "progress").await, 0, "finished: no bar");
    assert_eq!(count(&browser, "table.results tbody tr").await, 3);
    assert!(main.contains(MARKUP), "{main}");
    assert!(browser.client.get_alert_text().await.is_err(), "no dialog");

    browser
        .client
        .find(Locator::Css("input[name=failures]"))
        .await
        .expect("the failures box")
        .click()
        .await
        .expect("tick");
    browser.press("Filter").await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    let rows = all_texts(&browser, "table.results tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("Atlantis") && rows[0].contains("I am not sure"),
        "{rows:?}"
    );

    // The list, filtered as a GET form; the prompt page links to it.
    browser.goto(&format!("{base}/ui/prompts/geo")).await;
    browser.wait_for_heading("geo").await;
    follow(&browser, "Evaluations").await;
    browser.wait_for_heading("Evaluations").await;
    let rows = all_texts(&browser, "main tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("exact_match 0.667"), "{rows:?}");
    assert!(rows[0].contains("succeeded"), "{rows:?}");
    browser
        .goto(&format!("{base}/ui/evaluations?status=failed"))
        .await;
    assert!(browser.main_text().await.contains("No evaluations match"));
    browser
        .goto(&format!(
            "{base}/ui/evaluations?dataset=capitals&prompt=geo"
        ))
        .await;
    assert_eq!(count(&browser, "main tbody tr").await, 1);

    follow(&browser, "Jobs").await;
    browser.wait_for_heading("Jobs").await;
    let main = browser.main_text().await;
    assert!(
        main.contains("evaluation") && main.contains("succeeded 3/3"),
        "{main}"
    );
    browser
        .client
        .find(Locator::LinkText(&format!("evaluation {id}")))
        .await
        .expect("the job links to its evaluation");
    browser.close().await;
    drop(fake);
}

async fn pages_page_and_another_project_is_invisible(url: String) {
    let fake = fake_provider().await;
    let Some((app, base, browser)) = setup_with(&url, with_fake(&fake)).await else {
        return;
    };
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    app.post("/v1/datasets", json!({"name": "many"})).await;
    let items: Vec<Value> = (1..=45)
        .map(|n| json!({"input": {"country": format!("Country {n}")}}))
        .collect();
    let uploaded = app
        .upload("many", "application/json", Value::Array(items).to_string())
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let id = start(&app, "many").await;
    drain(&app).await;
    // 21 more evaluations, left queued: the list holds 20 a page.
    for _ in 0..21 {
        start(&app, "many").await;
    }

    // Another project's dataset and evaluation.
    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["write", "evaluate"], "project": "rival"}))
        .await;
    let as_rival = |method: &str, path: &str, body: Value| {
        let method = axum::http::Method::from_bytes(method.as_bytes()).expect("a method");
        let path = path.to_owned();
        let (app, rival) = (&app, &rival);
        async move { app.request_as(Some(rival), method, &path, Some(body)).await }
    };
    assert_eq!(
        as_rival("POST", "/v1/datasets", json!({"name": "rival-secret"}))
            .await
            .status,
        201
    );
    assert_eq!(
        as_rival("POST", "/v1/prompts", json!({"name": "rival-prompt"}))
            .await
            .status,
        201
    );
    let rival_items = as_rival(
        "POST",
        "/v1/datasets/rival-secret/items",
        json!([{"input": {"x": "y"}}]),
    )
    .await;
    assert_eq!(rival_items.status, 200, "{}", rival_items.body);
    let version = as_rival(
        "POST",
        &format!("/v1/prompts/{}/versions", enc("rival-prompt")),
        json!({"type": "text", "template": "Hi"}),
    )
    .await;
    assert_eq!(version.status, 201, "{}", version.body);
    let rival_evaluation = as_rival(
        "POST",
        "/v1/evaluations",
        json!({"prompt": "rival-prompt", "dataset": "rival-secret", "ref": "1.0.0",
               "provider": "fake", "metrics": ["exact_match"]}),
    )
    .await;
    assert_eq!(rival_evaluation.status, 202, "{}", rival_evaluation.body);
    let rival_id = rival_evaluation.body["id"].as_str().expect("id").to_owned();

    browser.sign_in(&base, "vera").await;
    browser.goto(&format!("{base}/ui/datasets/many")).await;
    browser.wait_for_heading("many").await;
    let mut seen = Vec::new();
    for page in 0..3 {
        let rows = all_texts(&browser, "table.items tbody td:first-child").await;
        seen.extend(rows);
        if page < 2 {
            follow(&browser, "Next page").await;
            browser.wait_for_heading("many").await;
        }
    }
    let expected: Vec<String> = (1..=45).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected, "every item once, in order");
    assert_eq!(all_texts(&browser, ".pager a").await, ["First page"]);

    browser.goto(&format!("{base}/ui/evaluations/{id}")).await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    assert_eq!(count(&browser, "table.results tbody tr").await, 25);
    follow(&browser, "Next page").await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    assert_eq!(count(&browser, "table.results tbody tr").await, 20);

    browser.goto(&format!("{base}/ui/evaluations")).await;
    assert_eq!(count(&browser, "main tbody tr").await, 20);
    follow(&browser, "Next page").await;
    browser.wait_for_heading("Evaluations").await;
    assert_eq!(count(&browser, "main tbody tr").await, 2);
    // A queued one shows its progress as a bar on its page.
    browser
        .goto(&format!("{base}/ui/evaluations?status=queued"))
        .await;
    let queued = browser
        .client
        .find(Locator::Css("main tbody tr a"))
        .await
        .expect("a queued evaluation");
    queued.click().await.expect("click");
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    assert_eq!(count(&browser, "progress#progress").await, 1);

    // Nothing of the rival project shows, and its pages are not found.
    for path in ["/ui/datasets", "/ui/evaluations", "/ui/jobs"] {
        browser.goto(&format!("{base}{path}")).await;
        let main = browser.main_text().await;
        assert!(!main.contains("rival"), "{path}: {main}");
        assert!(!main.contains(&rival_id), "{path}: {main}");
    }
    let cookie = browser.session_cookie().await;
    for path in [
        "/ui/datasets/rival-secret".to_owned(),
        format!("/ui/evaluations/{rival_id}"),
    ] {
        let response = http()
            .get(format!("{base}{path}"))
            .header("cookie", format!("promptreg_session={cookie}"))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 404, "{path}");
    }
    browser.close().await;
    drop(fake);
}

crate::backend_url_tests!(
    a_viewer_sees_datasets_an_evaluation_and_its_job,
    pages_page_and_another_project_is_invisible,
);
