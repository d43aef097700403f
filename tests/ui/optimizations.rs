//! Optimizations in the browser: one started from the form runs under the
//! test's control (the fake optimizer's proposals are held until the test
//! lets each through), and its page draws one more chart point per
//! iteration without a reload, then shows the result version with its diff,
//! which is promoted from the page. A viewer sees no forms and is refused
//! when posting by hand.
//!
//! The fake target answers a sentiment question right only when its prompt
//! says `GENERAL`; otherwise it always answers `positive` (right on half of
//! the items).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use promptreg::providers::ProviderKind;
use serde_json::{json, Value};

use super::fake_llm::{FakeLlm, RecordedRequest, Reply};
use super::support::TestApp;
use super::{http, setup_with, Browser, PASSWORD};

const ITEMS: usize = 10;
/// What the critique strategy's diagnosis call is answered with: markup, to
/// be shown as text.
pub(super) const CRITIQUE: &str =
    "The template <b>never</b> says which labels to answer with, so the model guesses.";
/// The optimizer's proposals, one reply per iteration (the last repeats).
const PROPOSALS: [&str; 3] = [
    "<prompt>Say positive or negative: {{text}}</prompt>\n<prompt>Classify {{#if text}}</prompt>",
    "<prompt>GENERAL: answer positive or negative for {{text}}</prompt>",
    "<prompt>Answer with one word for {{text}}</prompt>",
];

/// The fake target model and the fake optimizer.
pub(super) struct Fakes {
    pub target: FakeLlm,
    pub optimizer: FakeLlm,
}

fn label_of(seq: usize) -> &'static str {
    if seq % 2 == 1 {
        "positive"
    } else {
        "negative"
    }
}

fn prompt_text(request: &RecordedRequest) -> String {
    request.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The target's answer to `prompt`: right when it says `GENERAL`, else
/// `positive`.
fn answer(prompt: &str) -> &'static str {
    let seq = prompt
        .rfind("item-")
        .and_then(|at| {
            prompt[at + 5..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(1);
    if prompt.contains("GENERAL") {
        label_of(seq)
    } else {
        "positive"
    }
}

/// Whether `request` asks the optimizer for new templates (one per iteration).
fn is_proposal(request: &RecordedRequest) -> bool {
    request.body["messages"][0]["content"]
        .as_str()
        .is_some_and(|system| system.contains("You improve prompt templates"))
}

pub(super) async fn fakes() -> Fakes {
    let (target, optimizer) = (FakeLlm::start().await, FakeLlm::start().await);
    target.set_default(|request| Reply::text(answer(&prompt_text(request))));
    let proposals = Arc::new(AtomicUsize::new(0));
    optimizer.set_default(move |request| {
        if !is_proposal(request) {
            return Reply::text(CRITIQUE);
        }
        let n = proposals.fetch_add(1, Ordering::SeqCst);
        Reply::text(PROPOSALS[n.min(PROPOSALS.len() - 1)])
    });
    Fakes { target, optimizer }
}

/// Configures the fakes as providers `target` and `optimizer`, patient
/// enough for a request the test holds.
pub(super) fn with_fakes(fakes: &Fakes) -> impl Fn(&mut promptreg::config::Config) + '_ {
    |config| {
        for (name, fake) in [("target", &fakes.target), ("optimizer", &fakes.optimizer)] {
            let mut provider = fake.config(ProviderKind::Openai);
            provider.timeout = 600.0;
            config.providers.insert(name.to_owned(), provider);
        }
        config.worker.lease_secs = 600;
    }
}

/// Prompt `sentiment` 1.0.0 and dataset `reviews` (ten items).
pub(super) async fn seed_sentiment(app: &TestApp) {
    app.seed_prompt("sentiment").await;
    app.seed_version("sentiment", "Classify the sentiment of: {{text}}")
        .await;
    let created = app.post("/v1/datasets", json!({"name": "reviews"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let items: Vec<Value> = (1..=ITEMS)
        .map(|seq| {
            let sentence = if seq % 2 == 1 {
                "I love this product"
            } else {
                "This broke after a day"
            };
            json!({"input": {"text": format!("item-{seq}: {sentence}")}, "expected": label_of(seq)})
        })
        .collect();
    let uploaded = app
        .upload(
            "reviews",
            "application/json",
            Value::Array(items).to_string(),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
}

/// Starts a critique optimization of `sentiment` through `/v1`; answers its id.
pub(super) async fn start(app: &TestApp) -> String {
    let created = app
        .post(
            "/v1/optimizations",
            json!({"prompt": "sentiment", "ref": "1.0.0", "dataset": "reviews",
                   "split": {"train": 0.6, "seed": 7}, "metric": "exact_match",
                   "target": {"provider": "target"}, "optimizer": {"provider": "optimizer"},
                   "strategy": "critique", "max_iterations": 3, "candidates_per_iteration": 2,
                   "patience": 3, "budget": {"max_calls": 500}}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    created.body["id"].as_str().expect("an id").to_owned()
}

/// [`seed_sentiment`] and an optimization run to its end with a result
/// version (1.0.1); answers its id.
pub(super) async fn seed_optimization(app: &TestApp) -> String {
    seed_sentiment(app).await;
    let id = start(app).await;
    let worker = promptreg::app::worker(&app.state);
    while let promptreg::worker::Ran::Job(..) = worker.run_once().await.expect("worker") {}
    let done = app.get(&format!("/v1/optimizations/{id}")).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    assert_eq!(done.body["result_version"], "1.0.1", "{}", done.body);
    id
}

async fn add_user(app: &TestApp, name: &str, role: &str) {
    let created = app
        .post(
            "/v1/users",
            json!({"name": name, "password": PASSWORD, "roles": {"default": role}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// Replaces what the field `css` holds with `text`.
async fn set(browser: &Browser, css: &str, text: &str) {
    let field = browser.client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn choose(browser: &Browser, css: &str, value: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("{value} in {css}: {e}"));
}

/// The chart's points for the best validation score, by their hover text.
async fn chart_points(browser: &Browser) -> usize {
    browser
        .client
        .find_all(Locator::XPath(
            "//*[local-name()='svg']//*[local-name()='title'][starts-with(normalize-space(), 'Best validation score after iteration')]",
        ))
        .await
        .expect("points")
        .len()
}

/// Waits until the page, as it is now (not reloaded), draws `n` points.
async fn wait_for_points(browser: &Browser, n: usize) {
    for _ in 0..1200 {
        let now = chart_points(browser).await;
        assert!(
            now <= n,
            "{now} points, more than the {n} iterations let through"
        );
        if now == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the chart never showed {n} points");
}

async fn wait_for_text(browser: &Browser, text: &str) {
    for _ in 0..1200 {
        if browser.main_text().await.contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the page never said {text:?}: {}",
        browser.main_text().await
    );
}

async fn an_optimization_started_from_the_form_grows_a_point_per_iteration(url: String) {
    let fakes = fakes().await;
    let Some((app, base, browser)) = setup_with(&url, with_fakes(&fakes)).await else {
        return;
    };
    seed_sentiment(&app).await;
    add_user(&app, "otto", "evaluator").await;
    // Each iteration's proposal waits until the test lets it through.
    let gate = fakes.optimizer.hold(is_proposal);

    browser.sign_in(&base, "otto").await;
    browser.goto(&format!("{base}/ui/prompts/sentiment")).await;
    browser.wait_for_heading("sentiment").await;
    browser
        .client
        .find(Locator::Css(
            "main a[href='/ui/optimizations?prompt=sentiment']",
        ))
        .await
        .expect("the prompt links to its optimizations")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Optimizations").await;
    browser
        .client
        .find(Locator::LinkText("Start an optimization"))
        .await
        .expect("a start link")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Start an optimization").await;
    let prompt = browser
        .client
        .find(Locator::Css("#prompt"))
        .await
        .expect("the prompt field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        prompt.as_deref(),
        Some("sentiment"),
        "filled in from the list"
    );
    set(&browser, "#ref", "1.0.0").await;
    set(&browser, "#dataset", "reviews").await;
    set(&browser, "#seed", "7").await;
    choose(&browser, "#strategy", "critique").await;
    choose(&browser, "#target_provider", "target").await;
    choose(&browser, "#optimizer_provider", "optimizer").await;
    set(&browser, "#max_iterations", "3").await;
    set(&browser, "#candidates_per_iteration", "2").await;
    set(&browser, "#patience", "0").await;
    set(&browser, "#max_calls", "500").await;
    browser.press("Start optimization").await;

    // Refused: the problem beside its field, everything typed kept.
    browser.wait_for_heading("Start an optimization").await;
    let problem = browser
        .client
        .find(Locator::Css("#patience-error"))
        .await
        .expect("a problem beside patience")
        .text()
        .await
        .expect("text");
    assert_eq!(problem, "1 to 100");
    assert_eq!(
        app.get("/v1/optimizations").await.body["items"],
        json!([]),
        "nothing started"
    );
    set(&browser, "#patience", "3").await;
    browser.press("Start optimization").await;
    browser
        .wait_for_heading("Optimization of sentiment 1.0.0")
        .await;
    assert_eq!(chart_points(&browser).await, 0);
    // A marker that a reload would wipe.
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .expect("set a marker");

    let worker = promptreg::app::worker(&app.state);
    let run = tokio::spawn(async move { worker.run_once().await });
    for n in 1..=3 {
        gate.open(1);
        wait_for_points(&browser, n).await;
        let rows = browser
            .client
            .find_all(Locator::Css("table.scores tbody tr"))
            .await
            .expect("rows");
        assert_eq!(rows.len(), n + 1, "the baseline and {n} iterations");
    }
    let ran = run.await.expect("the worker task").expect("the worker");
    assert!(matches!(ran, promptreg::worker::Ran::Job(..)));
    wait_for_text(&browser, "The best candidate was saved as version 1.0.1").await;
    let reloaded = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .expect("read the marker");
    assert_eq!(reloaded, json!(true), "updated in place, not reloaded");
    let polling = browser
        .client
        .find(Locator::Css("#live"))
        .await
        .expect("the live part")
        .attr("hx-trigger")
        .await
        .expect("attribute");
    assert_eq!(polling, None, "a finished job is no longer polled");

    let main = browser.main_text().await;
    for shown in [
        "succeeded",
        "3 of 3 completed",
        "it ran its maximum of 3 iterations",
        "Changes from the baseline",
        "GENERAL: answer positive or negative for {{text}}",
        CRITIQUE,
        "discarded",
        "of 500 calls",
    ] {
        assert!(main.contains(shown), "{shown}: {main}");
    }
    assert!(browser.client.get_alert_text().await.is_err(), "no dialog");
    let best = browser
        .client
        .find(Locator::XPath(
            "//*[local-name()='svg']//*[local-name()='title'][starts-with(normalize-space(), 'Best validation score after iteration 3')]",
        ))
        .await
        .expect("the last point")
        .prop("textContent")
        .await
        .expect("text");
    assert_eq!(
        best.as_deref(),
        Some("Best validation score after iteration 3: 1.000")
    );

    set(&browser, "#promote-label", "production").await;
    browser.press("Promote 1.0.1").await;
    browser.wait_for_heading("sentiment").await;
    let labels = app.get("/v1/prompts/sentiment/labels").await;
    assert_eq!(labels.status, 200, "{}", labels.body);
    let items = labels.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", labels.body);
    assert_eq!(items[0]["name"], "production");
    assert_eq!(items[0]["version"], "1.0.1");
    assert_eq!(items[0]["updated_by"], "user:otto");
    browser.close().await;
    drop(fakes);
}

async fn a_viewer_sees_no_optimization_forms_and_forged_posts_are_refused(url: String) {
    let fakes = fakes().await;
    let Some((app, base, browser)) = setup_with(&url, with_fakes(&fakes)).await else {
        return;
    };
    let id = seed_optimization(&app).await;
    let queued = start(&app).await;

    browser.sign_in(&base, "vera").await;
    browser.goto(&format!("{base}/ui/optimizations")).await;
    browser.wait_for_heading("Optimizations").await;
    let main = browser.main_text().await;
    assert!(!main.contains("Start an optimization"), "{main}");
    let rows = browser
        .client
        .find_all(Locator::Css("main tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    browser
        .goto(&format!("{base}/ui/optimizations?status=succeeded"))
        .await;
    let rows = browser
        .client
        .find_all(Locator::Css("main tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "filtered to the finished one");
    let row = rows[0].text().await.expect("text");
    assert!(row.contains("→ 1.000") && row.contains("1.0.1"), "{row}");

    for page in [&id, &queued] {
        browser
            .goto(&format!("{base}/ui/optimizations/{page}"))
            .await;
        browser
            .wait_for_heading("Optimization of sentiment 1.0.0")
            .await;
        let buttons = browser.buttons().await;
        assert!(
            buttons.iter().all(|b| b == "Switch" || b == "Sign out"),
            "{buttons:?}"
        );
    }
    browser.goto(&format!("{base}/ui/optimizations/{id}")).await;
    assert!(browser
        .main_text()
        .await
        .contains("The best candidate was saved as version 1.0.1"));

    let cookie = browser.session_cookie().await;
    let csrf = browser.csrf_token().await;
    let forged: [(String, Vec<(&str, &str)>); 5] = [
        (
            "/ui/optimizations".to_owned(),
            vec![
                ("prompt", "sentiment"),
                ("dataset", "reviews"),
                ("strategy", "fewshot"),
                ("metric", "exact_match"),
                ("target_provider", "target"),
            ],
        ),
        (format!("/ui/optimizations/{queued}/cancel"), vec![]),
        (format!("/ui/optimizations/{id}/evaluate"), vec![]),
        (
            format!("/ui/optimizations/{id}/adopt"),
            vec![("iteration", "1"), ("candidate", "0")],
        ),
        (
            "/ui/prompts/sentiment/labels".to_owned(),
            vec![("label", "production"), ("version", "1.0.1")],
        ),
    ];
    for (path, fields) in forged {
        let mut form = fields;
        form.push(("csrf_token", csrf.as_str()));
        let response = http()
            .post(format!("{base}{path}"))
            .header("cookie", format!("promptreg_session={cookie}"))
            .header("origin", &base)
            .form(&form)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 403, "{path}");
    }
    let start_form = http()
        .get(format!("{base}/ui/optimizations/new"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(start_form.status(), 403);
    let queued_now = app.get(&format!("/v1/optimizations/{queued}")).await;
    assert_eq!(queued_now.body["status"], "queued", "not cancelled");
    assert_eq!(
        app.get("/v1/optimizations").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "nothing started"
    );
    app.get("/v1/prompts/sentiment/versions/production")
        .await
        .assert_problem(404, "label_not_found");
    app.get("/v1/prompts/sentiment/versions/1.0.2")
        .await
        .assert_problem(404, "version_not_found");
    browser.close().await;
    drop(fakes);
}

/// The start form is only for those who may evaluate, so the releaser who
/// checks every other page (`accessibility.rs`) cannot reach it: checked here.
async fn the_start_form_is_accessible_at_both_widths(url: String) {
    let Some(axe) = super::accessibility::axe_source() else {
        return;
    };
    let fakes = fakes().await;
    let Some((app, base, browser)) = setup_with(&url, with_fakes(&fakes)).await else {
        return;
    };
    add_user(&app, "otto", "evaluator").await;
    browser.sign_in(&base, "otto").await;
    let found = super::accessibility::check(
        &browser,
        &base,
        &axe,
        "start form",
        "/ui/optimizations/new?prompt=sentiment",
    )
    .await;
    browser.close().await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    drop(fakes);
}

/// The target as [`fakes`] makes it, reporting one input token per word of
/// the prompt: a longer template costs more.
fn count_words(fakes: &Fakes) {
    fakes.target.set_default(|request| {
        let prompt = prompt_text(request);
        let words = prompt.split_whitespace().count() as u64;
        Reply::counted(answer(&prompt), words, 1)
    });
}

/// The page shows each measure's Pareto front; a cheaper candidate than the
/// result is adopted from it as a new version.
async fn a_cheaper_candidate_is_adopted_from_the_front(url: String) {
    let fakes = fakes().await;
    count_words(&fakes);
    let Some((app, base, browser)) = setup_with(&url, with_fakes(&fakes)).await else {
        return;
    };
    let id = seed_optimization(&app).await;
    // A releaser may write versions: the Adopt buttons are there.
    browser.sign_in(&base, "rita").await;
    browser.goto(&format!("{base}/ui/optimizations/{id}")).await;
    browser
        .wait_for_heading("Optimization of sentiment 1.0.0")
        .await;
    let front = browser
        .client
        .find(Locator::XPath("//table[caption='By input_tokens']"))
        .await
        .expect("the input_tokens front")
        .text()
        .await
        .expect("text");
    // The baseline and "Say …" answer alike at the same length; GENERAL is
    // right on all and longer; "Answer with one word" is longer than the
    // baseline and no better, so it is not on the front.
    assert!(front.contains("Baseline"), "{front}");
    assert!(front.contains("Iteration 1, candidate 1"), "{front}");
    assert!(front.contains("Iteration 2, candidate 1"), "{front}");
    assert!(!front.contains("Iteration 3"), "{front}");
    let main = browser.main_text().await;
    assert!(main.contains("Input tokens per item"), "{main}");
    browser
        .client
        .find(Locator::XPath(
            "//table[caption='By input_tokens']//button[@aria-label='Adopt Iteration 1, candidate 1 as a new version']",
        ))
        .await
        .expect("an Adopt button")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("sentiment 1.0.2").await;
    let adopted = app.get("/v1/prompts/sentiment/versions/1.0.2").await;
    assert_eq!(adopted.status, 200, "{}", adopted.body);
    assert_eq!(
        adopted.body["template"],
        "Say positive or negative: {{text}}"
    );
    assert_eq!(
        adopted.body["metadata"]["adopted"],
        json!({"iteration": 1, "candidate": 0})
    );
    assert_eq!(adopted.body["parent"], "1.0.0");
    browser.close().await;
    drop(fakes);
}

/// Constraints typed into the start form, one per line, reach the
/// objective; a line that does not read is shown beside the field.
async fn constraints_from_the_form_reach_the_objective(url: String) {
    let fakes = fakes().await;
    let Some((app, base, browser)) = setup_with(&url, with_fakes(&fakes)).await else {
        return;
    };
    seed_sentiment(&app).await;
    add_user(&app, "otto", "evaluator").await;
    browser.sign_in(&base, "otto").await;
    browser
        .goto(&format!("{base}/ui/optimizations/new?prompt=sentiment"))
        .await;
    browser.wait_for_heading("Start an optimization").await;
    set(&browser, "#ref", "1.0.0").await;
    set(&browser, "#dataset", "reviews").await;
    choose(&browser, "#strategy", "compress").await;
    choose(&browser, "#target_provider", "target").await;
    choose(&browser, "#optimizer_provider", "optimizer").await;
    set(&browser, "#max_drop", "0.05").await;
    set(
        &browser,
        "#constraints",
        "input_tokens:max_ratio=0.8\nlatency_ms:under=900",
    )
    .await;
    browser.press("Start optimization").await;
    browser.wait_for_heading("Start an optimization").await;
    let problem = browser
        .client
        .find(Locator::Css("#constraints-error"))
        .await
        .expect("a problem beside the constraints")
        .text()
        .await
        .expect("text");
    assert!(problem.contains("unknown bound \"under\""), "{problem}");
    assert_eq!(app.get("/v1/optimizations").await.body["items"], json!([]));
    set(
        &browser,
        "#constraints",
        "input_tokens:max_ratio=0.8\nlatency_ms:max=900",
    )
    .await;
    browser.press("Start optimization").await;
    browser
        .wait_for_heading("Optimization of sentiment 1.0.0")
        .await;
    let main = browser.main_text().await;
    assert!(
        main.contains("input_tokens at most 0.8 × the baseline's; latency_ms at most 900"),
        "{main}"
    );
    let started = app.get("/v1/optimizations").await.body["items"][0].clone();
    let id = started["id"].as_str().expect("an id");
    let got = app.get(&format!("/v1/optimizations/{id}")).await.body;
    assert_eq!(got["strategy"], "compress");
    assert_eq!(got["max_drop"], 0.05);
    assert_eq!(
        got["objective"],
        json!({"metrics": [{"name": "exact_match", "weight": 1.0}],
               "constraints": [{"measure": "input_tokens", "max_ratio": 0.8},
                               {"measure": "latency_ms", "max": 900.0}]})
    );
    browser.close().await;
    drop(fakes);
}

crate::backend_url_tests!(
    constraints_from_the_form_reach_the_objective,
    a_cheaper_candidate_is_adopted_from_the_front,
    an_optimization_started_from_the_form_grows_a_point_per_iteration,
    a_viewer_sees_no_optimization_forms_and_forged_posts_are_refused,
    the_start_form_is_accessible_at_both_widths,
);
