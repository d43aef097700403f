//! The prompt list's server work does not grow with the registry: rendering
//! a page makes the same, small number of store calls with 100 prompts and
//! with 10,000 (first page, a later page, with and without a query).
//!
//! Store calls are counted from the spans the store's instrumentation
//! (`observed_impl!`) opens for every call, named after the method. A
//! subscriber that counts them is made the default for this test's thread
//! only, and the test runs on a single-threaded runtime, so calls made by
//! other tests in the process are not counted.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use promptreg::domain::auth::Actor;
use promptreg::domain::{PromptName, DEFAULT_PROJECT};
use promptreg::store::NewPrompt;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::support::{self, Backend, TestApp, ADMIN_KEY};

/// The operation of every store call made while it is the subscriber.
#[derive(Clone, Default)]
struct StoreCalls(Arc<Mutex<Vec<String>>>);

struct Operation(Option<String>);

impl Visit for Operation {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "otel.name" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "otel.name" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for StoreCalls {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "store" {
            let mut operation = Operation(None);
            attrs.record(&mut operation);
            if let Ok(mut calls) = self.0.lock() {
                calls.push(operation.0.unwrap_or_default());
            }
        }
    }
}

impl StoreCalls {
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

const HOST: &str = "registry.test";

/// Signs in with the admin key; the session cookie.
async fn sign_in(app: &TestApp) -> String {
    let request = Request::post("/ui/signin/key")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("key={ADMIN_KEY}")))
        .expect("a request");
    let response = app.router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().unwrap_or_default().to_owned()
}

/// Renders `path` (twice, so caches are warm as on a busy server) and
/// answers the second rendering's store calls and its HTML.
async fn page_calls(
    app: &TestApp,
    cookie: &str,
    calls: &StoreCalls,
    path: &str,
) -> (Vec<String>, String) {
    let mut html = String::new();
    for _ in 0..2 {
        calls.take();
        let request = Request::get(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("a request");
        let response = app
            .router
            .clone()
            .oneshot(request)
            .instrument(tracing::info_span!("page"))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.into_body().collect().await.expect("body");
        html = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    }
    let mut made = calls.take();
    made.sort();
    (made, html)
}

/// The "Next page" link of a list page (its `href`, unescaped).
fn next_page(html: &str) -> String {
    let link = html
        .split("<a href=\"")
        .find_map(|rest| rest.split_once("\">Next page</a>"))
        .map(|(href, _)| href)
        .expect("a next page link");
    link.replace("&#x2f;", "/").replace("&amp;", "&")
}

/// Adds prompts `bulk/p-{from}` to `bulk/p-{to - 1}` straight through the store.
async fn add_prompts(url: &str, backend: Backend, from: usize, to: usize) {
    let store = promptreg::store::connect(url, 8).await.expect("a store");
    let project = store
        .ensure_project(DEFAULT_PROJECT)
        .await
        .expect("the default project");
    // SQLite has one writer: concurrent inserts would only wait on each other.
    let concurrency = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 8,
    };
    let actor = Actor::system();
    futures::stream::iter(from..to)
        .map(|i| {
            let (store, actor) = (store.clone(), actor.clone());
            async move {
                let new = NewPrompt {
                    name: PromptName::parse(&format!("bulk/p-{i:05}")).expect("a name"),
                    description: format!("prompt number {i}"),
                    tags: vec!["bulk".to_owned()],
                };
                store
                    .insert_prompt(project, new, &actor)
                    .await
                    .expect("inserted");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

async fn list_pages_make_the_same_store_calls_at_any_size(backend: Backend, calls: StoreCalls) {
    support::with_database(backend, move |url| async move {
        let app = support::app_with(support::test_config(&url)).await;
        app.seed_prompt("bulk/labelled").await;
        app.seed_version("bulk/labelled", "Hello {{name}}").await;
        app.set_label("bulk/labelled", "production", "1.0.0").await;
        let cookie = sign_in(&app).await;

        let mut counts = Vec::new();
        for (from, to) in [(0, 100), (100, 10_000)] {
            add_prompts(&url, backend, from, to).await;
            let (first, html) = page_calls(&app, &cookie, &calls, "/ui/prompts").await;
            let (later, _) = page_calls(&app, &cookie, &calls, &next_page(&html)).await;
            let (query, html) = page_calls(&app, &cookie, &calls, "/ui/prompts?q=p-0").await;
            let (query_later, _) = page_calls(&app, &cookie, &calls, &next_page(&html)).await;
            counts.push([first, later, query, query_later]);
        }
        let [small, large] = [&counts[0], &counts[1]];
        for (page, (at_100, at_10k)) in ["first", "later", "query", "later query"]
            .iter()
            .zip(small.iter().zip(large.iter()))
        {
            eprintln!("the {page} page's store calls: {at_10k:?}");
            assert_eq!(at_100, at_10k, "store calls of the {page} page");
            assert!(
                !at_10k.is_empty() && at_10k.len() <= 2,
                "the {page} page makes few store calls: {at_10k:?}"
            );
        }
    })
    .await;
}

/// Runs `test` on a single-threaded runtime with a store-call counter as
/// this thread's subscriber.
fn counting<F, Fut>(test: F)
where
    F: FnOnce(StoreCalls) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let calls = StoreCalls::default();
    let subscriber = tracing_subscriber::registry().with(calls.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test(calls));
}

#[test]
fn sqlite_list_pages_make_the_same_store_calls_at_any_size() {
    counting(|calls| list_pages_make_the_same_store_calls_at_any_size(Backend::Sqlite, calls));
}

#[test]
fn postgres_list_pages_make_the_same_store_calls_at_any_size() {
    counting(|calls| list_pages_make_the_same_store_calls_at_any_size(Backend::Postgres, calls));
}
