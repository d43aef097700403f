//! Every page of the UI, at a desktop (1280 px) and a phone (390 px) width:
//! axe-core finds no serious or critical violation (among them controls
//! without an accessible name and text without enough contrast), and the
//! document does not scroll sideways. A page is added to [`PAGES`] with one
//! line.
//!
//! axe-core is the npm package, installed for the tests only into
//! `target/axe` (by `.ci/run`, or here on first use when `npm` is on PATH).
//! Without it the test is skipped with a warning, unless `CI` is set.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{setup_with, support, Browser};

/// The axe-core release line the tests use.
const AXE_PACKAGE: &str = "axe-core@4";

/// Widths every page is checked at, in CSS pixels.
const WIDTHS: [u32; 2] = [1280, 390];

/// (what the page is, its path) for every page a signed-in admin can
/// reach; `seed` below, `runs::seed_runs`, `compare::seed_second_run` and
/// `optimizations::seed_optimization` create what they show (`{evaluation}` is the finished evaluation's id, `{queued}`
/// a queued one's, `{second}` the second evaluation's, `{optimization}` a
/// finished optimization's).
const PAGES: &[(&str, &str)] = &[
    ("prompts list", "/ui/prompts"),
    ("prompts list, searched", "/ui/prompts?q=greet&tag=demo"),
    ("prompt", "/ui/prompts/support%2Fgreeting"),
    ("version", "/ui/prompts/support%2Fgreeting/versions/1.0.1"),
    ("chat version", "/ui/prompts/support%2Fchat/versions/1.0.0"),
    ("playground", "/ui/prompts/support%2Fgreeting/playground?ref=1.0.1"),
    (
        "playground, rendered",
        "/ui/prompts/support%2Fgreeting/playground?ref=1.0.1&var.name=Ada&var.tone=%22warm%22&render=1",
    ),
    (
        "playground, missing a variable",
        "/ui/prompts/support%2Fgreeting/playground?ref=1.0.1&render=1",
    ),
    ("chat playground", "/ui/prompts/support%2Fchat/playground?ref=1.0.0"),
    ("diff", "/ui/prompts/support%2Fgreeting/diff?from=1.0.0&to=1.0.1"),
    (
        "diff, unified",
        "/ui/prompts/support%2Fgreeting/diff?from=1.0.0&to=1.0.1&view=unified",
    ),
    ("diff with its parent", "/ui/prompts/support%2Fgreeting/diff"),
    ("editor", "/ui/prompts/support%2Fgreeting/edit"),
    ("chat editor", "/ui/prompts/support%2Fchat/edit"),
    ("new prompt", "/ui/prompts/new"),
    ("error page", "/ui/prompts/no-such-prompt"),
    ("unknown page", "/ui/nowhere"),
    ("datasets", "/ui/datasets"),
    ("datasets with archived", "/ui/datasets?archived=true"),
    ("dataset", "/ui/datasets/capitals"),
    ("evaluations", "/ui/evaluations"),
    ("evaluations, filtered", "/ui/evaluations?prompt=geo&dataset=capitals&status=succeeded"),
    ("evaluation", "/ui/evaluations/{evaluation}"),
    ("evaluation, failures", "/ui/evaluations/{evaluation}?failures=true"),
    ("evaluation, queued", "/ui/evaluations/{queued}"),
    ("evaluation, sorted by a score", "/ui/evaluations/{evaluation}?sort=exact_match&dir=asc"),
    (
        "evaluation, failures sorted",
        "/ui/evaluations/{evaluation}?failures=true&sort=exact_match&dir=desc",
    ),
    ("evaluations of a prompt, with the start form", "/ui/evaluations?prompt=geo"),
    ("dataset after an upload", "/ui/datasets/capitals?added=3"),
    ("jobs", "/ui/jobs"),
    ("optimizations", "/ui/optimizations"),
    ("optimizations, filtered", "/ui/optimizations?prompt=sentiment&status=succeeded"),
    ("optimization", "/ui/optimizations/{optimization}"),
    ("evaluation comparison", "/ui/evaluations/compare?a={evaluation}&b={second}"),
    ("evaluations, one picked to compare", "/ui/evaluations?dataset=capitals&a={evaluation}"),
    ("gates", "/ui/prompts/geo/gates"),
    ("audit", "/ui/audit"),
    (
        "audit, filtered",
        "/ui/audit?action=version.create&prompt=support&from=2000-01-01T00%3A00&to=2999-01-01T00%3A00",
    ),
    ("audit, nothing matches", "/ui/audit?action=no.such"),
    ("admin", "/ui/admin"),
];

/// axe.min.js, installing it when it is missing and npm is there.
pub(super) fn axe_source() -> Option<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/axe");
    let file = root.join("node_modules/axe-core/axe.min.js");
    if !file.is_file() && super::on_path("npm") {
        let installed = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&root)
            .arg(AXE_PACKAGE)
            .status();
        if !installed.is_ok_and(|s| s.success()) {
            eprintln!("WARNING: npm install {AXE_PACKAGE} failed");
        }
    }
    match std::fs::read_to_string(&file) {
        Ok(source) => Some(source),
        Err(err) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set and axe-core is not installed at {} ({err}): npm install --prefix target/axe {AXE_PACKAGE}",
                file.display()
            );
            eprintln!("WARNING: skipping the accessibility checks: axe-core not installed ({err})");
            None
        }
    }
}

/// What is wrong with the page open in `browser` at its current width:
/// serious and critical axe violations and sideways overflow, in words.
pub(super) async fn problems(browser: &Browser, axe: &str) -> Vec<String> {
    let mut found = Vec::new();
    let widths = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, inner) = (widths[0].as_u64(), widths[1].as_u64());
    if scroll > inner {
        found.push(format!(
            "the document is {scroll:?} px wide in a {inner:?} px window"
        ));
    }
    browser
        .client
        .execute(axe, vec![])
        .await
        .expect("axe loads");
    let violations = browser
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document).then(
                 r => done(r.violations
                   .filter(v => v.impact === "serious" || v.impact === "critical")
                   .map(v => ({id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary)}))),
                 e => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));"#,
            vec![],
        )
        .await
        .expect("axe runs");
    for violation in violations.as_array().into_iter().flatten() {
        found.push(format!(
            "{} ({}): {}\n      {}",
            violation["id"].as_str().unwrap_or_default(),
            violation["impact"].as_str().unwrap_or_default(),
            violation["help"].as_str().unwrap_or_default(),
            violation["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n      ")
        ));
    }
    found
}

/// Makes the window's viewport `width` CSS pixels wide, and checks it is.
async fn set_width(browser: &Browser, width: u32) {
    browser
        .client
        .set_window_size(width, 900)
        .await
        .expect("resize the window");
    let inner = browser
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .expect("the width");
    assert_eq!(
        inner.as_u64(),
        Some(u64::from(width)),
        "the viewport's width"
    );
}

/// Checks the page at `path` at every width; answers its problems.
pub(super) async fn check(
    browser: &Browser,
    base: &str,
    axe: &str,
    what: &str,
    path: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    for width in WIDTHS {
        set_width(browser, width).await;
        browser.goto(&format!("{base}{path}")).await;
        for problem in problems(browser, axe).await {
            found.push(format!("{what} ({path}) at {width} px: {problem}"));
        }
    }
    found
}

/// Prompts the pages in [`PAGES`] show.
pub(super) async fn seed(app: &support::TestApp) {
    let created = app
        .post(
            "/v1/prompts",
            json!({"name": "support/greeting", "description": "Greets a customer", "tags": ["demo"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    app.seed_prompt("common/tone").await;
    app.seed_version("common/tone", "Be {{tone}}.").await;
    app.set_label("common/tone", "production", "1.0.0").await;
    app.seed_version("support/greeting", "Hello {{name}}").await;
    app.seed_version_with(
        "support/greeting",
        json!({
            "type": "text",
            "template": "Hello {{name}}! {{> common/tone}}{{#if vip}} Welcome back.{{/if}}",
            "model_config": {"model": "gpt-4o-mini", "temperature": 0.2},
            "input_schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The customer's first name"},
                    "tone": {"enum": ["warm", "formal"]},
                    "vip": {"type": "boolean"},
                    "orders": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["name", "tone"]
            },
            "message": "Tone from a partial"
        }),
    )
    .await;
    app.set_label("support/greeting", "production", "1.0.0")
        .await;
    app.set_label("support/greeting", "staging", "1.0.1").await;
    app.seed_prompt("support/chat").await;
    app.seed_version_with(
        "support/chat",
        json!({
            "type": "chat",
            "messages": [
                {"role": "system", "content": "You help {{customer}}."},
                {"role": "placeholder", "name": "history"},
                {"role": "user", "content": "{{question}}"}
            ]
        }),
    )
    .await;
}

async fn every_page_is_accessible_at_both_widths(url: String) {
    let Some(axe) = axe_source() else { return };
    let fake = super::runs::fake_provider().await;
    let fakes = super::optimizations::fakes().await;
    let (with_fake, with_fakes) = (
        super::runs::with_fake(&fake),
        super::optimizations::with_fakes(&fakes),
    );
    let Some((app, base, browser)) = setup_with(&url, |config| {
        with_fake(config);
        with_fakes(config);
    })
    .await
    else {
        return;
    };
    seed(&app).await;
    let evaluation = super::runs::seed_runs(&app).await;
    let second = super::compare::seed_second_run(&app).await;
    let queued = super::runs::start(&app, "capitals").await;
    let optimization = super::optimizations::seed_optimization(&app).await;
    let mut found = check(&browser, &base, &axe, "sign-in page", "/ui/signin").await;
    super::admin::add_admin(&app).await;
    browser.sign_in(&base, "ada").await;
    for (what, path) in PAGES {
        let path = path
            .replace("{evaluation}", &evaluation)
            .replace("{queued}", &queued)
            .replace("{optimization}", &optimization)
            .replace("{second}", &second);
        found.extend(check(&browser, &base, &axe, what, &path).await);
    }
    browser.close().await;
    assert!(
        found.is_empty(),
        "{} problems:\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

crate::backend_url_tests!(every_page_is_accessible_at_both_widths);
