//! Running evaluations from the browser: a dataset created and uploaded
//! (previewed first; a bad upload writes nothing), an evaluation started
//! from the form and watched to the end on its page without a reload (the
//! fake provider is gated, so each step is the test's to allow), its
//! results filtered and sorted by a score across pages, a running one
//! cancelled, and a viewer shown none of these forms and refused on
//! forged posts.

use std::time::Duration;

use axum::http::StatusCode;
use fantoccini::Locator;
use promptreg::providers::ProviderKind;
use serde_json::{json, Value};

use super::fake_llm::{FakeLlm, Gate, Reply};
use super::support::TestApp;
use super::{http, setup, setup_with, Browser, PASSWORD};

/// How long a wait for the page to change may take before the test fails
/// (a bound on a hang, not a timed expectation).
const PATIENCE: Duration = Duration::from_secs(60);

/// A fake provider that answers France and Italy's capitals and is unsure
/// of anything else, each reply waiting for a permit of `gate`.
async fn gated_provider(gate: &Gate) -> FakeLlm {
    let fake = FakeLlm::start().await;
    let gate = gate.clone();
    fake.set_default(move |request| {
        let asked = request.last_user_text().unwrap_or_default();
        let answer = [("France", "Paris"), ("Italy", "Rome")]
            .iter()
            .find(|(country, _)| asked.contains(country))
            .map_or("I am not sure", |(_, capital)| capital);
        Reply::Gated(gate.clone(), Box::new(Reply::text(answer)))
    });
    fake
}

/// Provider `fake` pointed at `fake`, patient enough to wait for the gate.
fn with_patient_fake(fake: &FakeLlm) -> impl FnOnce(&mut promptreg::config::Config) + '_ {
    |config| {
        let mut provider = fake.config(ProviderKind::Openai);
        provider.timeout = 600.0;
        config.providers.insert("fake".to_owned(), provider);
    }
}

/// User `eve`, who may evaluate in project `default`.
async fn add_evaluator(app: &TestApp) {
    let created = app
        .post(
            "/v1/users",
            json!({"name": "eve", "password": PASSWORD, "roles": {"default": "evaluator"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

/// Prompt `geo` 1.0.0 and dataset `capitals`: France, Italy, Atlantis.
async fn seed_geo(app: &TestApp) {
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    let created = app.post("/v1/datasets", json!({"name": "capitals"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let items = json!([
        {"input": {"country": "France"}, "expected": "Paris"},
        {"input": {"country": "Italy"}, "expected": "Rome"},
        {"input": {"country": "Atlantis"}, "expected": "Nowhere"},
    ]);
    let uploaded = app
        .upload("capitals", "application/json", items.to_string())
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
}

async fn item_count(app: &TestApp, dataset: &str) -> i64 {
    let found = app
        .get(&format!("/v1/datasets/{}", dataset.replace('/', "%2F")))
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    found.body["item_count"].as_i64().expect("a count")
}

async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut found = Vec::new();
    for element in browser.client.find_all(Locator::Css(css)).await.expect(css) {
        found.push(element.text().await.expect("text"));
    }
    found
}

async fn attribute(browser: &Browser, css: &str, name: &str) -> Option<String> {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .attr(name)
        .await
        .expect("an attribute")
}

/// Runs `script` in the page until it answers `true`.
async fn wait_until(browser: &Browser, script: &str, what: &str) {
    let start = std::time::Instant::now();
    loop {
        let answer = browser
            .client
            .execute(script, vec![])
            .await
            .expect("the script runs");
        if answer == Value::Bool(true) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's main area says `text`.
async fn wait_for_text(browser: &Browser, text: &str) {
    let script = format!(
        "const m = document.querySelector('main'); return !!m && m.innerText.includes({});",
        Value::String(text.to_owned())
    );
    wait_until(browser, &script, text).await;
}

/// Clicks the link `css` finds and waits until the next page has
/// replaced this one (it may carry the same heading).
async fn follow_link(browser: &Browser, css: &str) {
    let page = browser
        .client
        .find(Locator::Css("html"))
        .await
        .expect("the page");
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("a link {css}: {e}"))
        .click()
        .await
        .expect("click");
    let start = std::time::Instant::now();
    while page.tag_name().await.is_ok() {
        assert!(start.elapsed() < PATIENCE, "{css} loaded no new page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
}

/// Follows the results table's score header link.
async fn sort_by_the_score(browser: &Browser) {
    follow_link(browser, "table.results thead th[aria-sort] a").await;
}

/// The serious and critical accessibility problems of the open page, when
/// axe-core is installed.
async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    match super::accessibility::axe_source() {
        Some(axe) => super::accessibility::problems(browser, &axe).await,
        None => Vec::new(),
    }
}

async fn an_upload_is_previewed_and_a_bad_one_writes_nothing(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    browser.sign_in(&base, "rita").await;

    browser.goto(&format!("{base}/ui/datasets")).await;
    browser.fill("#dataset-name", "Not A Name").await;
    browser.press("Create dataset").await;
    browser.wait_for_heading("New dataset").await;
    let refusal = texts(&browser, "#dataset-name-error").await;
    assert_eq!(refusal.len(), 1, "the reason is beside the name");
    browser
        .client
        .find(Locator::Css("#dataset-name"))
        .await
        .expect("the name field")
        .clear()
        .await
        .expect("clear");
    browser.fill("#dataset-name", "geo/capitals").await;
    browser.fill("#dataset-description", "Capitals").await;
    browser.press("Create dataset").await;
    browser.wait_for_heading("geo/capitals").await;
    assert_eq!(item_count(&app, "geo/capitals").await, 0);

    // JSON Lines with two bad rows among good ones.
    let bad = "{\"input\": {\"country\": \"France\"}, \"expected\": \"Paris\"}\n\
               {\"input\": {\"country\": \"Italy\"}\n\
               {\"input\": \"Spain\"}\n\
               {\"input\": {\"country\": \"<b>Peru</b>\"}, \"expected\": \"Lima\"}\n";
    browser.fill("#content", bad).await;
    browser.press("Preview").await;
    browser.wait_for_heading("Add items to geo/capitals").await;
    let errors = texts(&browser, ".row-errors li").await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("Row 2 (line 2): not JSON"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("Row 3 (line 3): `input` must be an object"),
        "{errors:?}"
    );
    let rows = texts(&browser, "table.preview tbody tr").await;
    assert_eq!(rows.len(), 2, "the good rows: {rows:?}");
    assert!(rows[1].contains("<b>Peru</b>"), "shown as text: {rows:?}");
    let main = browser.main_text().await;
    assert!(main.contains("2 items read, 2 bad"), "{main}");
    assert_eq!(
        item_count(&app, "geo/capitals").await,
        0,
        "a preview writes nothing"
    );
    let found = accessibility_problems(&browser).await;
    assert!(found.is_empty(), "the preview: {found:?}");

    // Uploaded anyway: refused whole, with the same rows named.
    browser.press("Upload").await;
    browser.wait_for_heading("Add items to geo/capitals").await;
    let alert = texts(&browser, "[role=alert]").await.join("\n");
    assert!(alert.contains("Nothing was written"), "{alert}");
    assert_eq!(texts(&browser, ".row-errors li").await.len(), 2);
    assert_eq!(item_count(&app, "geo/capitals").await, 0, "all or nothing");

    // A good upload, as CSV this time.
    browser
        .client
        .find(Locator::Css("#content"))
        .await
        .expect("the items box")
        .clear()
        .await
        .expect("clear");
    browser
        .client
        .find(Locator::Css("#format"))
        .await
        .expect("the format")
        .select_by_value("csv")
        .await
        .expect("pick CSV");
    browser
        .fill(
            "#content",
            "country,expected,metadata.region\nFrance,Paris,europe\nItaly,Rome,europe\n",
        )
        .await;
    browser.press("Upload").await;
    browser.wait_for_heading("geo/capitals").await;
    let status = texts(&browser, "[role=status]").await.join("\n");
    assert!(status.contains("Added 2 items."), "{status}");
    assert_eq!(texts(&browser, "table.items tbody tr").await.len(), 2);
    assert_eq!(item_count(&app, "geo/capitals").await, 2);
    let listed = app.get("/v1/datasets/geo%2Fcapitals/items").await;
    assert_eq!(listed.body["items"][1]["input"]["country"], "Italy");
    assert_eq!(listed.body["items"][1]["metadata"]["region"], "europe");
    browser.close().await;
}

async fn an_evaluation_started_from_the_form_is_watched_to_the_end(url: String) {
    let gate = Gate::new();
    let fake = gated_provider(&gate).await;
    let Some((app, base, browser)) = setup_with(&url, with_patient_fake(&fake)).await else {
        return;
    };
    seed_geo(&app).await;
    add_evaluator(&app).await;
    browser.sign_in(&base, "eve").await;

    // The prompt's Evaluations link: the list of its evaluations, and the
    // start form filled in with it.
    browser.goto(&format!("{base}/ui/prompts/geo")).await;
    browser.wait_for_heading("geo").await;
    browser
        .client
        .find(Locator::Css("main a[href='/ui/evaluations?prompt=geo']"))
        .await
        .expect("the prompt's evaluations")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Evaluations").await;
    assert_eq!(
        attribute(&browser, "#start-prompt", "value")
            .await
            .as_deref(),
        Some("geo")
    );
    browser.fill("#start-ref", "1.0.0").await;
    browser.fill("#start-dataset", "capitals").await;
    browser.fill("#start-params", "{oops").await;
    browser.press("Start evaluation").await;
    browser.wait_for_heading("Start an evaluation").await;
    let said = texts(&browser, "#start-params-error").await;
    assert_eq!(said.len(), 1, "beside the parameters: {said:?}");

    // The service's refusal, beside the field it names.
    let params = browser
        .client
        .find(Locator::Css("#start-params"))
        .await
        .expect("the parameters");
    params.clear().await.expect("clear");
    browser.fill("#start-concurrency", "0").await;
    browser.press("Start evaluation").await;
    browser.wait_for_heading("Start an evaluation").await;
    assert_eq!(
        texts(&browser, "#start-concurrency-error").await,
        ["1 to 256"]
    );
    assert_eq!(
        attribute(&browser, "#start-dataset", "value")
            .await
            .as_deref(),
        Some("capitals"),
        "the form keeps what was typed"
    );
    let listed = app.get("/v1/evaluations").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0));

    let concurrency = browser
        .client
        .find(Locator::Css("#start-concurrency"))
        .await
        .expect("concurrency");
    concurrency.clear().await.expect("clear");
    concurrency.send_keys("1").await.expect("type");
    browser.press("Start evaluation").await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    let listed = app.get("/v1/evaluations").await;
    let id = listed.body["items"][0]["id"]
        .as_str()
        .expect("the started evaluation")
        .to_owned();
    assert_eq!(
        browser.client.current_url().await.expect("url").path(),
        format!("/ui/evaluations/{id}")
    );
    assert_eq!(
        attribute(&browser, "#progress", "aria-label")
            .await
            .as_deref(),
        Some("Items evaluated")
    );
    assert_eq!(texts(&browser, "#progress-text").await, ["0/3 items (0%)"]);

    // A marker that a reload would lose, and every value the bar takes.
    browser
        .client
        .execute(
            "window.notReloaded = true; window.barValues = [];
             const bar = document.getElementById('progress');
             new MutationObserver(() => window.barValues.push(
                 bar.getAttribute('value') + '/' + bar.getAttribute('max')))
               .observe(bar, {attributes: true});",
            vec![],
        )
        .await
        .expect("the marker is set");
    let worker = promptreg::app::worker(&app.state);
    let running = tokio::spawn(async move { worker.run_once().await });

    gate.open(1);
    wait_until(
        &browser,
        "const bar = document.getElementById('progress'); return !!bar && bar.getAttribute('value') === '1';",
        "the bar at one item",
    )
    .await;
    assert_eq!(texts(&browser, "#progress-text").await, ["1/3 items (33%)"]);
    assert_eq!(
        attribute(&browser, "#progress", "aria-valuetext")
            .await
            .as_deref(),
        Some("1 of 3 items")
    );

    gate.open(2);
    // Only the page fetched after `done` has the metrics.
    wait_for_text(&browser, "Mean 0.667").await;
    running
        .await
        .expect("the worker's task")
        .expect("the worker ran");
    let kept = browser
        .client
        .execute(
            "return [window.notReloaded === true, window.barValues];",
            vec![],
        )
        .await
        .expect("the marker");
    assert_eq!(kept[0], Value::Bool(true), "the page was not reloaded");
    let values: Vec<&str> = kept[1]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(values.contains(&"3/3"), "the bar reached 100%: {values:?}");
    let main = browser.main_text().await;
    assert!(main.contains("3/3 items (100%)"), "{main}");
    assert!(main.contains("succeeded"), "{main}");
    assert_eq!(texts(&browser, "table.results tbody tr").await.len(), 3);
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("progress"))
            .await
            .expect("bars")
            .len(),
        0
    );

    // Failures only, then sorted by the score both ways.
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
    let rows = texts(&browser, "table.results tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("Atlantis"), "{rows:?}");

    browser.goto(&format!("{base}/ui/evaluations/{id}")).await;
    sort_by_the_score(&browser).await;
    assert_eq!(
        attribute(&browser, "table.results thead th[aria-sort]", "aria-sort")
            .await
            .as_deref(),
        Some("descending")
    );
    assert_eq!(
        texts(&browser, "table.results td.score").await,
        ["1.000", "1.000", "0.000"]
    );
    sort_by_the_score(&browser).await;
    assert_eq!(
        attribute(&browser, "table.results thead th[aria-sort]", "aria-sort")
            .await
            .as_deref(),
        Some("ascending")
    );
    assert_eq!(
        texts(&browser, "table.results td.score").await,
        ["0.000", "1.000", "1.000"]
    );
    browser.close().await;
    drop(fake);
}

async fn results_sort_by_a_score_across_pages_and_with_failures(url: String) {
    let gate = Gate::new();
    let fake = gated_provider(&gate).await;
    let Some((app, base, browser)) = setup_with(&url, with_patient_fake(&fake)).await else {
        return;
    };
    gate.open(1000);
    app.seed_prompt("geo").await;
    app.seed_version("geo", "What is the capital of {{country}}?")
        .await;
    app.post("/v1/datasets", json!({"name": "mixed"})).await;
    // Every third item is answered right.
    let items: Vec<Value> = (1..=30)
        .map(|n| {
            if n % 3 == 0 {
                json!({"input": {"country": "France"}, "expected": "Paris"})
            } else {
                json!({"input": {"country": format!("Land {n}")}, "expected": "Somewhere"})
            }
        })
        .collect();
    let uploaded = app
        .upload("mixed", "application/json", Value::Array(items).to_string())
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let started = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": "1.0.0", "dataset": "mixed",
                   "provider": "fake", "metrics": ["exact_match"], "concurrency": 4}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}

    browser.sign_in(&base, "vera").await;
    browser
        .goto(&format!(
            "{base}/ui/evaluations/{id}?sort=exact_match&dir=desc"
        ))
        .await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    let mut scores = texts(&browser, "table.results td.score").await;
    let mut seqs = texts(&browser, "table.results tbody td:first-child").await;
    assert_eq!(scores.len(), 25);
    follow_link(&browser, ".pager a:last-child").await;
    scores.extend(texts(&browser, "table.results td.score").await);
    seqs.extend(texts(&browser, "table.results tbody td:first-child").await);
    let mut expected = vec!["1.000"; 10];
    expected.extend(vec!["0.000"; 20]);
    assert_eq!(scores, expected, "highest first over both pages");
    let mut distinct = seqs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 30, "each item once: {seqs:?}");

    // Failures only keeps the order asked for.
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
    assert_eq!(
        attribute(&browser, "table.results thead th[aria-sort]", "aria-sort")
            .await
            .as_deref(),
        Some("descending")
    );
    let failing = texts(&browser, "table.results td.score").await;
    assert_eq!(failing, vec!["0.000"; 20]);

    // An unknown metric is refused in words.
    let cookie = browser.session_cookie().await;
    let refused = http()
        .get(format!("{base}/ui/evaluations/{id}?sort=nope"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(refused.status(), 422);
    browser.close().await;
    drop(fake);
}

async fn a_running_evaluation_is_cancelled_from_its_page(url: String) {
    let gate = Gate::new();
    let fake = gated_provider(&gate).await;
    let Some((app, base, browser)) = setup_with(&url, with_patient_fake(&fake)).await else {
        return;
    };
    seed_geo(&app).await;
    add_evaluator(&app).await;
    let started = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": "1.0.0", "dataset": "capitals",
                   "provider": "fake", "metrics": ["exact_match"], "concurrency": 1}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let worker = promptreg::app::worker(&app.state);
    let running = tokio::spawn(async move { worker.run_once().await });
    // The worker has the job once the provider is asked (and held at the gate).
    let start = std::time::Instant::now();
    while fake.request_count() == 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the worker never called the provider"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get(&format!("/v1/evaluations/{id}")).await.body["status"],
        "running"
    );

    browser.sign_in(&base, "eve").await;
    browser.goto(&format!("{base}/ui/evaluations/{id}")).await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    browser.press("Cancel evaluation").await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    assert!(
        !browser
            .buttons()
            .await
            .iter()
            .any(|b| b == "Cancel evaluation"),
        "asked once"
    );
    let job = started.body["job_id"].as_str().expect("a job id");
    let asked = app.get(&format!("/v1/jobs/{job}")).await;
    assert!(
        asked.body["cancel_requested"] == true || asked.body["status"] == "cancelled",
        "{}",
        asked.body
    );
    // The call in flight may finish; the worker ends the job cancelled at
    // its next heartbeat, and the page follows without a reload.
    gate.open(10);
    // The page fetched after `done` no longer offers to follow progress.
    wait_until(
        &browser,
        "return !document.getElementById('progress') && document.querySelector('main').innerText.includes('cancelled');",
        "the cancelled evaluation's page",
    )
    .await;
    running
        .await
        .expect("the worker's task")
        .expect("the worker ran");
    assert_eq!(
        app.get(&format!("/v1/evaluations/{id}")).await.body["status"],
        "cancelled"
    );
    browser.close().await;
    drop(fake);
}

async fn a_viewer_sees_no_run_forms_and_forged_posts_are_refused(url: String) {
    let gate = Gate::new();
    let fake = gated_provider(&gate).await;
    let Some((app, base, browser)) = setup_with(&url, with_patient_fake(&fake)).await else {
        return;
    };
    seed_geo(&app).await;
    let started = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": "1.0.0", "dataset": "capitals",
                   "provider": "fake", "metrics": ["exact_match"]}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().expect("id").to_owned();

    browser.sign_in(&base, "vera").await;
    for (path, heading, hidden) in [
        ("/ui/datasets", "Datasets", "Create dataset"),
        ("/ui/datasets/capitals", "capitals", "Upload"),
        ("/ui/datasets/capitals", "capitals", "Preview"),
        ("/ui/evaluations", "Evaluations", "Start evaluation"),
        (
            &format!("/ui/evaluations/{id}") as &str,
            "Evaluation of geo 1.0.0",
            "Cancel evaluation",
        ),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_for_heading(heading).await;
        let buttons = browser.buttons().await;
        assert!(!buttons.iter().any(|b| b == hidden), "{path}: {buttons:?}");
    }
    // The queued evaluation's page shows its bar even so.
    assert!(attribute(&browser, "#progress", "max").await.is_some());

    let cookie = browser.session_cookie().await;
    let csrf = browser.csrf_token().await;
    for (path, form) in [
        ("/ui/datasets".to_owned(), vec![("name", "sneaky")]),
        (
            "/ui/datasets/capitals/items".to_owned(),
            vec![
                ("format", "jsonl"),
                ("content", "{\"input\": {\"country\": \"Spain\"}}"),
                ("action", "upload"),
            ],
        ),
        (
            "/ui/evaluations".to_owned(),
            vec![
                ("prompt", "geo"),
                ("ref", "1.0.0"),
                ("dataset", "capitals"),
                ("provider", "fake"),
                ("metric.exact_match", "on"),
            ],
        ),
        (format!("/ui/evaluations/{id}/cancel"), vec![]),
    ] {
        let mut fields = vec![("csrf_token", csrf.as_str())];
        fields.extend(form);
        let response = http()
            .post(format!("{base}{path}"))
            .header("cookie", format!("promptreg_session={cookie}"))
            .header("origin", &base)
            .form(&fields)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "{path}");
    }
    app.get("/v1/datasets/sneaky")
        .await
        .assert_problem(404, "dataset_not_found");
    assert_eq!(item_count(&app, "capitals").await, 3);
    let listed = app.get("/v1/evaluations").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body["items"][0]["status"], "queued");

    // The live stream answers the session too, and only for this project's jobs.
    let job = started.body["job_id"].as_str().expect("a job id");
    let events = http()
        .get(format!("{base}/ui/jobs/{job}/events"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(events.status(), 200);
    assert_eq!(
        events
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    drop(events);
    let unknown = http()
        .get(format!("{base}/ui/jobs/{}/events", uuid::Uuid::new_v4()))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(unknown.status(), 404);
    browser.close().await;
    drop(fake);
}

crate::backend_url_tests!(
    an_upload_is_previewed_and_a_bad_one_writes_nothing,
    an_evaluation_started_from_the_form_is_watched_to_the_end,
    results_sort_by_a_score_across_pages_and_with_failures,
    a_running_evaluation_is_cancelled_from_its_page,
    a_viewer_sees_no_run_forms_and_forged_posts_are_refused,
);
