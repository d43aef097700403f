//! Comparing two evaluations and a prompt's gates in the browser: the
//! comparison page shows what `GET /v1/evaluations/compare` answers (as an
//! interval chart with its numbers in a table) and the item the two
//! versions disagree on with its outputs diffed; two evaluations are picked
//! from the list; a gate set in the browser is what `/v1` then answers, each
//! labelled version is shown passing or failing its gate, and a viewer can
//! neither see nor post a gate form.

use fantoccini::Locator;
use serde_json::{json, Value};

use super::runs::{fake_provider, seed_runs, with_fake};
use super::support::TestApp;
use super::{http, setup_with, Browser};

/// Version 1.0.1 of `geo`: a misleading hint that makes the fake provider
/// answer Paris to every country, so Italy's item fails where 1.0.0 passed.
const HINTED: &str = "What is the capital of {{country}}? Hint: the capital of France is Paris.";

async fn drain(app: &TestApp) {
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}
}

/// Starts an evaluation of `geo` `version` on `dataset` and runs it to the
/// end; answers its id.
async fn evaluate(app: &TestApp, version: &str, dataset: &str) -> String {
    let created = app
        .post(
            "/v1/evaluations",
            json!({"prompt": "geo", "ref": version, "dataset": dataset,
                   "provider": "fake", "metrics": ["exact_match"], "concurrency": 1}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    drain(app).await;
    let done = app.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    id
}

/// After [`seed_runs`]: `geo` 1.0.1 ([`HINTED`]) evaluated on `capitals`
/// (1 of 3 exact matches, against 2 of 3 for 1.0.0), `production` on 1.0.0
/// and `staging` on 1.0.1, and a gate on `production` (exact_match ≥ 0.5
/// on `capitals`). Answers the new evaluation's id.
pub(super) async fn seed_second_run(app: &TestApp) -> String {
    app.seed_version("geo", HINTED).await;
    let id = evaluate(app, "1.0.1", "capitals").await;
    for (label, version) in [("production", "1.0.0"), ("staging", "1.0.1")] {
        let set = app.set_label("geo", label, version).await;
        assert_eq!(set.status, 200, "{}", set.body);
    }
    let gate = app
        .put(
            "/v1/prompts/geo/gates/production",
            json!({"dataset": "capitals", "rules": [{"metric": "exact_match", "min": 0.5}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);
    id
}

async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut found = Vec::new();
    for element in browser.client.find_all(Locator::Css(css)).await.expect(css) {
        found.push(element.text().await.expect("text"));
    }
    found
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

/// A number as the page prints it (three decimals, signed, never -0.000).
fn signed(value: &Value) -> String {
    let value = value.as_f64().expect("a number");
    let value = if value.abs() < 0.0005 { 0.0 } else { value };
    format!("{value:+.3}")
}

async fn two_evaluations_are_picked_from_the_list_and_compared(url: String) {
    let fake = fake_provider().await;
    let Some((app, base, browser)) = setup_with(&url, with_fake(&fake)).await else {
        return;
    };
    let a = seed_runs(&app).await;
    let b = seed_second_run(&app).await;
    // On another dataset: listed elsewhere, and not comparable with these.
    assert_eq!(
        app.post("/v1/datasets", json!({"name": "europe"}))
            .await
            .status,
        201
    );
    let uploaded = app
        .upload(
            "europe",
            "application/json",
            json!([{"input": {"country": "France"}, "expected": "Paris"}]).to_string(),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let elsewhere = evaluate(&app, "1.0.0", "europe").await;

    browser.sign_in(&base, "vera").await;
    // From A's page, "compare with…" lists the dataset's evaluations with A picked.
    browser.goto(&format!("{base}/ui/evaluations/{a}")).await;
    browser.wait_for_heading("Evaluation of geo 1.0.0").await;
    browser
        .client
        .find(Locator::XPath(
            "//a[starts-with(normalize-space(), 'Compare with another evaluation of capitals')]",
        ))
        .await
        .expect("a compare link")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Evaluations").await;
    let rows = texts(&browser, "main tbody tr").await;
    assert_eq!(rows.len(), 2, "only capitals' evaluations: {rows:?}");
    let picked = browser
        .client
        .find(Locator::Css(&format!(
            "input[type=radio][name=a][value='{a}']"
        )))
        .await
        .expect("A's radio");
    assert!(picked.is_selected().await.expect("checked"), "A is picked");
    click(&browser, &format!("input[type=radio][name=b][value='{b}']")).await;
    browser.press("Compare A and B").await;
    browser
        .wait_for_heading("Comparison of two evaluations")
        .await;
    let current = browser.client.current_url().await.expect("url");
    assert!(
        current.as_str().contains(&format!("a={a}"))
            && current.as_str().contains(&format!("b={b}")),
        "{current}"
    );

    // The numbers are the API's.
    let api = app
        .get(&format!("/v1/evaluations/compare?a={a}&b={b}"))
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let m = &api.body["metrics"]["exact_match"];
    assert_eq!(m["losses"], 1, "{}", api.body);
    let expected = vec![
        signed(&m["mean_diff"]),
        signed(&m["ci95"][0]),
        signed(&m["ci95"][1]),
        format!("{:.3}", m["p_value"].as_f64().expect("p")),
        m["wins"].to_string(),
        m["ties"].to_string(),
        m["losses"].to_string(),
        m["n"].to_string(),
    ];
    assert_eq!(signed(&m["mean_diff"]), "-0.333");
    assert_eq!(texts(&browser, "table.numbers td").await, expected);
    let chart = browser
        .client
        .find(Locator::Css("svg.interval"))
        .await
        .expect("an interval chart");
    let described = chart
        .attr("aria-label")
        .await
        .expect("attr")
        .expect("a label");
    assert!(
        described.contains(&format!(
            "mean difference B minus A {}, 95% bootstrap interval {} to {}",
            expected[0], expected[1], expected[2]
        )),
        "{described}"
    );
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("svg.interval circle"))
            .await
            .expect("points")
            .len(),
        1
    );
    let bar = browser
        .client
        .find(Locator::Css("svg.wtl"))
        .await
        .expect("a wins/ties/losses bar")
        .attr("aria-label")
        .await
        .expect("attr")
        .expect("a label");
    assert!(
        bar.contains("B better on 0, same on 2, B worse on 1"),
        "{bar}"
    );

    // The one item they disagree on, its outputs diffed word by word.
    let items = texts(&browser, "section.disagreement h3").await;
    assert_eq!(items, ["Item 2: exact_match -1.000"]);
    assert_eq!(texts(&browser, "section.disagreement del").await, ["Rome"]);
    assert_eq!(texts(&browser, "section.disagreement ins").await, ["Paris"]);
    // And the versions' diff: the hint is what 1.0.1 added.
    let added = texts(&browser, "#versions ~ .diff-scroll ins").await;
    assert!(
        added
            .iter()
            .any(|t| t.contains("Hint: the capital of France is Paris.")),
        "{added:?}"
    );

    // Evaluations of two datasets: an error page that says so.
    let cookie = browser.session_cookie().await;
    let refused = http()
        .get(format!("{base}/ui/evaluations/compare?a={a}&b={elsewhere}"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(refused.status(), 422);
    browser
        .goto(&format!(
            "{base}/ui/evaluations/compare?a={a}&b={elsewhere}"
        ))
        .await;
    let main = browser.main_text().await;
    assert!(
        main.contains("evaluation a ran on dataset \"capitals\" and b on \"europe\""),
        "{main}"
    );

    // The unfiltered list picks too, as a plain GET form.
    browser.goto(&format!("{base}/ui/evaluations")).await;
    assert_eq!(texts(&browser, "main tbody tr").await.len(), 3);
    click(&browser, &format!("input[type=radio][name=a][value='{b}']")).await;
    click(&browser, &format!("input[type=radio][name=b][value='{a}']")).await;
    browser.press("Compare A and B").await;
    browser
        .wait_for_heading("Comparison of two evaluations")
        .await;
    let swapped = texts(&browser, "table.numbers td").await;
    assert_eq!(swapped[0], "+0.333", "{swapped:?}");
    assert_eq!(texts(&browser, "section.disagreement del").await, ["Paris"]);
    browser.close().await;
    drop(fake);
}

/// The gate card of `label`, as text.
async fn gate_card(browser: &Browser, label: &str) -> String {
    browser
        .client
        .find(Locator::Css(&format!("#gated-{label}")))
        .await
        .unwrap_or_else(|e| panic!("a gate card for {label}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn set_field(browser: &Browser, css: &str, text: &str) {
    let field = browser.client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn gates_are_edited_in_the_browser_and_checked_against_each_version(url: String) {
    let fake = fake_provider().await;
    let Some((app, base, browser)) = setup_with(&url, with_fake(&fake)).await else {
        return;
    };
    let a = seed_runs(&app).await;
    seed_second_run(&app).await;

    browser.sign_in(&base, "rita").await;
    browser.goto(&format!("{base}/ui/prompts/geo")).await;
    browser.wait_for_heading("geo").await;
    browser
        .client
        .find(Locator::LinkText("Gates"))
        .await
        .expect("a link to the gates")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Gates of geo").await;
    let production = gate_card(&browser, "production").await;
    for shown in ["passes", "exact_match ≥ 0.5", "0.667", "1.0.0", "capitals"] {
        assert!(production.contains(shown), "{shown}: {production}");
    }
    browser
        .client
        .find(Locator::Css(&format!(
            "#gated-production a[href='/ui/evaluations/{a}']"
        )))
        .await
        .expect("the evaluation the verdict rests on");
    assert!(browser.main_text().await.contains("staging → 1.0.1"));

    // A bad rule, then an unknown dataset: each shown beside its field.
    set_field(&browser, "#gate-form-new-label", "staging").await;
    set_field(&browser, "#gate-form-new-dataset", "capitals").await;
    set_field(&browser, "#gate-form-new-0-metric", "accuracy").await;
    set_field(&browser, "#gate-form-new-0-min", "0.5").await;
    browser.press("Add gate").await;
    browser.wait_for_heading("Gates of geo").await;
    let error = texts(&browser, "#gate-form-new-0-error").await;
    assert!(
        error.len() == 1 && error[0].contains("unknown metric \"accuracy\""),
        "{error:?}"
    );
    set_field(&browser, "#gate-form-new-0-metric", "exact_match").await;
    set_field(&browser, "#gate-form-new-dataset", "nowhere").await;
    browser.press("Add gate").await;
    browser.wait_for_heading("Gates of geo").await;
    let error = texts(&browser, "#gate-form-new-dataset-error").await;
    assert!(
        error.len() == 1 && error[0].contains("nowhere"),
        "{error:?}"
    );
    assert!(
        app.get("/v1/prompts/geo/gates").await.body["items"]
            .as_array()
            .is_some_and(|gates| gates.len() == 1),
        "nothing written"
    );

    set_field(&browser, "#gate-form-new-dataset", "capitals").await;
    browser.press("Add gate").await;
    browser.wait_for_heading("Gates of geo").await;
    let staging = gate_card(&browser, "staging").await;
    for shown in ["fails", "0.333", "breaks 1 of 1 rules"] {
        assert!(staging.contains(shown), "{shown}: {staging}");
    }

    // Production's gate raised past what 1.0.0 scored: now it fails.
    browser.open_details("Change the gate on production").await;
    set_field(&browser, "#gated-production input[name=min-0]", "0.9").await;
    browser.press("Save gate on production").await;
    browser.wait_for_heading("Gates of geo").await;
    let production = gate_card(&browser, "production").await;
    assert!(
        production.contains("fails") && production.contains("exact_match ≥ 0.9"),
        "{production}"
    );
    let gates = app.get("/v1/prompts/geo/gates").await;
    assert_eq!(gates.status, 200);
    let by_label = |label: &str| {
        gates.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["label"] == label)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        by_label("production")["rules"],
        json!([{"metric": "exact_match", "min": 0.9}])
    );
    assert_eq!(by_label("staging")["dataset"], "capitals");
    assert_eq!(
        by_label("staging")["rules"],
        json!([{"metric": "exact_match", "min": 0.5}])
    );

    browser.press("Remove gate on staging").await;
    browser.wait_for_heading("Gates of geo").await;
    let gates = app.get("/v1/prompts/geo/gates").await;
    let labels: Vec<&Value> = gates.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| &g["label"])
        .collect();
    assert_eq!(labels, [&json!("production")]);

    // A viewer sees the verdicts but no form, and a forged post is refused.
    browser.press("Sign out").await;
    browser.wait_for_heading("Sign in").await;
    browser.sign_in(&base, "vera").await;
    browser.goto(&format!("{base}/ui/prompts/geo/gates")).await;
    browser.wait_for_heading("Gates of geo").await;
    assert!(gate_card(&browser, "production").await.contains("fails"));
    let buttons = browser.buttons().await;
    assert!(
        buttons.iter().any(|b| b == "Sign out")
            && !buttons.iter().any(|b| b.to_lowercase().contains("gate")),
        "no gate form: {buttons:?}"
    );
    let cookie = browser.session_cookie().await;
    let csrf = browser.csrf_token().await;
    for (path, form) in [
        (
            "/ui/prompts/geo/gates",
            vec![
                ("csrf_token", csrf.as_str()),
                ("label", "production"),
                ("dataset", "capitals"),
                ("metric-0", "exact_match"),
                ("min-0", "0"),
            ],
        ),
        (
            "/ui/prompts/geo/gates/production/remove",
            vec![("csrf_token", csrf.as_str())],
        ),
    ] {
        let response = http()
            .post(format!("{base}{path}"))
            .header("cookie", format!("promptreg_session={cookie}"))
            .header("origin", base.as_str())
            .form(&form)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "{path}");
    }
    let gates = app.get("/v1/prompts/geo/gates").await;
    assert_eq!(
        gates.body["items"][0]["rules"],
        json!([{"metric": "exact_match", "min": 0.9}]),
        "unchanged"
    );
    browser.close().await;
    drop(fake);
}

crate::backend_url_tests!(
    two_evaluations_are_picked_from_the_list_and_compared,
    gates_are_edited_in_the_browser_and_checked_against_each_version,
);
