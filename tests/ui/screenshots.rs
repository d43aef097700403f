//! The README's screenshots, made again with
//! `cargo test --test ui screenshots -- --ignored` (or `docs/screenshots.sh`):
//! a server on SQLite with a demo prompt (a few versions, labels and a
//! partial), two evaluations against the scripted fake provider and a
//! finished optimization, signed in as a releaser, each page in [`SHOTS`]
//! saved as a PNG in `docs/images/`.

use std::path::PathBuf;

use fantoccini::Locator;

use super::accessibility::seed;
use super::setup_with;
use super::support::{self, Backend};

/// (file in `docs/images/`, page).
const SHOTS: &[(&str, &str)] = &[
    ("prompt-page.png", "/ui/prompts/support%2Fgreeting"),
    (
        "diff-page.png",
        "/ui/prompts/support%2Fgreeting/diff?from=1.0.0&to=1.0.1",
    ),
    (
        "comparison-page.png",
        "/ui/evaluations/compare?a={evaluation}&b={second}",
    ),
    ("optimization-page.png", "/ui/optimizations/{optimization}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/images; run on purpose to refresh the README's screenshots"]
async fn screenshots() {
    support::with_database(Backend::Sqlite, |url| async move {
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
            panic!("screenshots need chromium and chromedriver");
        };
        seed(&app).await;
        let evaluation = super::runs::seed_runs(&app).await;
        let second = super::compare::seed_second_run(&app).await;
        let optimization = super::optimizations::seed_optimization(&app).await;
        browser.sign_in(&base, "rita").await;
        browser
            .client
            .set_window_size(1280, 1000)
            .await
            .expect("window size");
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/images");
        std::fs::create_dir_all(&folder).expect("docs/images");
        for (file, path) in SHOTS {
            let path = path
                .replace("{evaluation}", &evaluation)
                .replace("{second}", &second)
                .replace("{optimization}", &optimization);
            browser.goto(&format!("{base}{path}")).await;
            let heading = browser
                .client
                .find(Locator::Css("h1"))
                .await
                .expect("a heading")
                .text()
                .await
                .expect("text");
            assert_ne!(heading, "Not found", "{path}");
            let png = browser.client.screenshot().await.expect("a screenshot");
            std::fs::write(folder.join(file), png).expect("write the PNG");
            eprintln!("wrote docs/images/{file}");
        }
        browser.close().await;
    })
    .await;
}
