//! The test harness: a real router on a fresh database of either backend,
//! called through `tower::ServiceExt::oneshot`, and fixture builders.
//!
//! Postgres: `TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres.
//! Each test gets a database of its own, dropped afterwards (also when the
//! test fails). Without a reachable server the Postgres tests are skipped
//! with a loud warning, unless `CI` is set: then they fail.

use std::future::Future;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use promptreg::config::Config;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Expands each named behaviour `async fn(TestApp)` into one test per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::run($crate::support::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::run($crate::support::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// Like `backend_tests!` for behaviours that build their own app from a
/// database URL: `async fn(String)`.
#[macro_export]
macro_rules! backend_url_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::with_database($crate::support::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::with_database($crate::support::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// The admin key every test app is bootstrapped with (`init_admin_key`).
pub const ADMIN_KEY: &str = "pr_testadmin0000000000000000000000000000";

#[derive(Clone)]
pub struct TestApp {
    pub router: Router,
    pub state: promptreg::api::AppState,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and code; returns the body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "code of {}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.body
        );
        &self.body
    }

    /// Asserts a Langfuse error: this status, `application/json`, exactly
    /// `{message, error}`; returns the message.
    #[track_caller]
    pub fn assert_langfuse_error(&self, status: u16, error: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["error"], error, "{}", self.body);
        let keys: Vec<&String> = self
            .body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["error", "message"], "{}", self.body);
        self.body["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts an MLflow error: `status`, JSON, exactly `{error_code,
    /// message}`; answers the message.
    #[track_caller]
    pub fn assert_mlflow_error(&self, status: u16, error_code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["error_code"], error_code, "{}", self.body);
        let keys: Vec<&String> = self
            .body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["error_code", "message"], "{}", self.body);
        self.body["message"].as_str().unwrap_or_default().to_owned()
    }

    /// The `field` of each entry of `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn enc(name: &str) -> String {
    name.replace('/', "%2F")
}

impl TestApp {
    /// Serves the app on a random local port until the test ends; answers
    /// its base URL. For tests of clients that speak real HTTP (the CLI).
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A request as the admin key.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.request_as(Some(ADMIN_KEY), method, path, body).await
    }

    /// A request as `key`, or with no key at all.
    pub async fn request_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        builder = match key {
            Some(key) => builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
            // An explicitly empty header: `send` adds the admin key only when absent.
            None => builder.header("x-test-anonymous", "1"),
        };
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("request")).await
    }

    /// A request with Langfuse's Basic auth (`public key:secret key`), or
    /// with no credentials at all.
    pub async fn request_basic(
        &self,
        credentials: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        use base64::Engine as _;
        let mut builder = Request::builder().method(method).uri(path);
        builder = match credentials {
            Some((public, secret)) => {
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{public}:{secret}"));
                builder.header(header::AUTHORIZATION, format!("Basic {pair}"))
            }
            None => builder.header("x-test-anonymous", "1"),
        };
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("request")).await
    }

    /// Sends `request`, as the admin key unless it names a key (or asks for none).
    pub async fn send(&self, mut request: Request<Body>) -> TestResponse {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let headers = request.headers_mut();
        if headers.remove("x-test-anonymous").is_none()
            && !headers.contains_key(header::AUTHORIZATION)
        {
            headers.insert(
                header::AUTHORIZATION,
                format!("Bearer {ADMIN_KEY}").parse().expect("header"),
            );
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        assert_documented(&method, &path, status);
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Appends items to dataset `name` from a body of `content_type`.
    pub async fn upload(
        &self,
        name: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> TestResponse {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/v1/datasets/{}/items", enc(name)))
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .expect("request");
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> TestResponse {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.request(Method::DELETE, path, None).await
    }

    /// Creates prompt `name`; panics unless 201.
    pub async fn seed_prompt(&self, name: &str) -> Value {
        let response = self.post("/v1/prompts", json!({"name": name})).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body
    }

    /// Posts a text version; panics unless 201.
    pub async fn seed_version(&self, name: &str, template: &str) -> Value {
        self.seed_version_with(name, json!({"type": "text", "template": template}))
            .await
    }

    pub async fn seed_version_with(&self, name: &str, body: Value) -> Value {
        let response = self
            .post(&format!("/v1/prompts/{}/versions", enc(name)), body)
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body
    }

    /// Creates a key (as admin) and returns `(id, secret)`.
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let response = self.post("/v1/keys", body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let id = response.body["id"].as_str().expect("id").to_owned();
        let secret = response.body["key"].as_str().expect("secret").to_owned();
        (id, secret)
    }

    pub async fn set_label(&self, name: &str, label: &str, version: &str) -> TestResponse {
        self.put(
            &format!("/v1/prompts/{}/labels/{label}", enc(name)),
            json!({"version": version}),
        )
        .await
    }
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let mut config = Config::defaults().expect("default config");
            config.log_level = "debug".into();
            // Logs only: the guard holds no exporter, so dropping it is fine.
            drop(promptreg::telemetry::init(&config));
        }
    });
}

pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults().expect("default config");
    config.database_url = database_url.to_owned();
    config.database.max_connections = 4;
    config.init_admin_key = promptreg::config::Redacted(ADMIN_KEY.to_owned());
    // Fixtures make many admin calls (the route walk creates an endpoint
    // per webhook call); the limit itself is tested with its own config.
    // Likewise the walk's experiments: each one a label set and a start.
    for bucket in [&mut config.rate_limit.admin, &mut config.rate_limit.promote] {
        *bucket = promptreg::config::RateLimit {
            per_second: 1000.0,
            burst: 2000,
        };
    }
    // A key to seal webhook secrets with (base64 of 32 bytes).
    config.webhooks.secret_key =
        promptreg::config::Redacted("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned());
    // A provider evaluations can name; no worker runs in these tests, so it
    // is never called (tests that run one point a provider at the fake LLM).
    let mut walk =
        promptreg::config::ProviderConfig::new(promptreg::providers::ProviderKind::Openai);
    walk.base_url = Some("http://127.0.0.1:9/v1".to_owned());
    walk.max_retries = 0;
    config.providers.insert("walk".to_owned(), walk);
    config
}

/// A test config with two OpenAI-format providers, `target` and
/// `optimizer`, served by the given fakes, and a 30 s worker lease.
pub fn optimization_config(
    database_url: &str,
    target: &crate::fake_llm::FakeLlm,
    optimizer: &crate::fake_llm::FakeLlm,
) -> Config {
    use promptreg::providers::ProviderKind;
    let mut config = test_config(database_url);
    config
        .providers
        .insert("target".to_owned(), target.config(ProviderKind::Openai));
    config.providers.insert(
        "optimizer".to_owned(),
        optimizer.config(ProviderKind::Openai),
    );
    config.worker.lease_secs = 30;
    config
}

pub async fn app_with(config: Config) -> TestApp {
    let (state, _) = promptreg::app::build_state(config)
        .await
        .expect("app state");
    TestApp {
        router: promptreg::build_app(state.clone()),
        state,
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh Postgres database: its URL and the options to drop it with.
async fn create_pg_database() -> Option<(String, PgConnectOptions)> {
    let admin =
        PgConnectOptions::from_str(&admin_url()).expect("TEST_DATABASE_URL is not a Postgres URL");
    let connect = tokio::time::timeout(Duration::from_secs(5), admin.connect()).await;
    let mut conn = match connect {
        Ok(Ok(conn)) => conn,
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set and Postgres at {} is unreachable: {why}",
                admin_url()
            );
            eprintln!("WARNING: Postgres unreachable ({why}); skipping this Postgres test. Set TEST_DATABASE_URL.");
            return None;
        }
    };
    let name = format!("promptreg_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let url = admin.clone().database(&name).to_url_lossy().to_string();
    Some((url, admin.database(&name)))
}

async fn drop_pg_database(db: PgConnectOptions) {
    let Some(name) = db.get_database().map(str::to_owned) else {
        return;
    };
    let admin = PgConnectOptions::from_str(&admin_url()).expect("admin url");
    if let Ok(mut conn) = admin.connect().await {
        let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
            .execute(&mut conn)
            .await;
        conn.close().await.ok();
    }
}

/// Runs `test` against a fresh app on `backend`, then removes its database.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestApp) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_database(backend, move |url| async move {
        test(app_with(test_config(&url)).await).await;
    })
    .await;
}

/// Runs `test` with the URL of a fresh database of `backend`, then removes
/// the database, also when the test panics. For tests that build their own
/// app (a second replica, a custom config, the binary).
pub async fn with_database<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    init_logs();
    let (url, cleanup) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            // A nested folder: the server must create it.
            let url = format!(
                "sqlite://{}/nested/folder/promptreg.db",
                dir.path().display()
            );
            (url, Cleanup::Dir(dir))
        }
        Backend::Postgres => match create_pg_database().await {
            Some((url, db)) => (url, Cleanup::Postgres(Box::new(db))),
            None => return,
        },
    };
    let outcome = tokio::spawn(test(url)).await;
    match cleanup {
        Cleanup::Dir(dir) => drop(dir),
        Cleanup::Postgres(db) => drop_pg_database(*db).await,
    }
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

enum Cleanup {
    Dir(tempfile::TempDir),
    Postgres(Box<PgConnectOptions>),
}

/// Fails the test when an answer's status is not among those the OpenAPI
/// document gives for its operation, so that a generated client or a fuzzer
/// can trust the document. Paths no operation matches (unknown routes) and
/// methods a path does not have are left alone, and so is 500: no operation
/// promises one.
#[track_caller]
pub fn assert_documented(method: &Method, path: &str, status: StatusCode) {
    static SPEC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(promptreg::api::openapi()).expect("the OpenAPI document")
    });
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let Some(paths) = SPEC["paths"].as_object() else {
        return;
    };
    // The template that matches with the most literal segments: `/v1/prompts/{name}/labels` over none.
    let best = paths
        .iter()
        .filter_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') {
                    if segment.is_empty() {
                        return None;
                    }
                } else if part == segment {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template, item))
        })
        .max_by_key(|(literal, _, _)| *literal);
    let Some((_, template, item)) = best else {
        return;
    };
    let Some(operation) = item.get(method.as_str().to_ascii_lowercase()) else {
        return;
    };
    let documented = &operation["responses"];
    assert!(
        documented.get(status.as_str()).is_some(),
        "{method} {template} answered {status}, which its OpenAPI responses do not document (they give {:?})",
        documented.as_object().map(|r| r.keys().collect::<Vec<_>>())
    );
}

/// The Python of the test venv `target/<name>-venv` with the pinned packages
/// of `tests/<name>/requirements.txt`, or the interpreter named by
/// `<NAME>_PYTHON`. The venv is created on first use and pip runs once per
/// test run (so a changed pin is installed; a satisfied one is quick).
/// Failures are the calling test's failures, never a skip.
pub fn python_venv(name: &'static str) -> Result<std::path::PathBuf, String> {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{Mutex, OnceLock};

    fn run(command: &mut Command) -> Result<(), String> {
        let output = command.output().map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    fn prepare(name: &str) -> Result<PathBuf, String> {
        if let Some(python) = std::env::var_os(format!("{}_PYTHON", name.to_uppercase())) {
            return Ok(PathBuf::from(python));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join(format!("target/{name}-venv"));
        let python = venv.join("bin/python");
        let requirements = root.join(format!("tests/{name}/requirements.txt"));
        if !python.exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).map_err(|e| {
                format!(
                    "creating the venv {}: {e} (is python3-venv installed? .ci/run installs it)",
                    venv.display()
                )
            })?;
        }
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))
        .map_err(|e| format!("installing {}: {e}", requirements.display()))?;
        Ok(python)
    }

    static READY: OnceLock<Mutex<HashMap<&'static str, Result<PathBuf, String>>>> = OnceLock::new();
    // Held while preparing, so two tests never run pip into one venv at once.
    let mut ready = READY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ready.entry(name).or_insert_with(|| prepare(name)).clone()
}
