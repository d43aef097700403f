//! Service routes, request ids, the OpenAPI document, and the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::support::TestApp;

crate::backend_tests!(
    health_and_readiness_answer,
    request_id_is_echoed_or_generated,
    docs_and_spec_are_served
);

async fn health_and_readiness_answer(app: TestApp) {
    let health = app.get("/healthz").await;
    assert_eq!(
        (health.status, health.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

async fn request_id_is_echoed_or_generated(app: TestApp) {
    let given = app
        .send(
            Request::builder()
                .uri("/healthz")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
    let generated = app.get("/v1/prompts/nope").await;
    let id = generated.header("x-request-id").expect("generated id");
    assert_eq!(id.len(), 36, "a uuid: {id}");
}

async fn docs_and_spec_are_served(app: TestApp) {
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["openapi"], "3.1.0");
    let docs = app.request(Method::GET, "/docs/", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.body
            .as_str()
            .unwrap_or_default()
            .contains("swagger-ui"),
        "Swagger UI page"
    );
    let asset = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(
        asset.status,
        StatusCode::OK,
        "assets are vendored, not fetched from a CDN"
    );
    app.get("/docs/no-such-file.js")
        .await
        .assert_problem(404, "route_not_found");
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = promptreg::api::openapi().to_pretty_json().expect("spec");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn every_operation_documents_its_errors_as_problems() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10, "{}", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no 2xx"
            );
            if path.starts_with("/v1/") {
                assert!(
                    responses.keys().any(|s| s.starts_with('4')),
                    "{method} {path} documents no 4xx"
                );
            }
        }
    }
}

#[test]
fn operation_ids_are_unique() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"]
                .as_str()
                .expect("every operation has an id");
            if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId {id} names both {other} and {method} {path}");
            }
        }
    }
    assert!(seen.contains_key("langfuse_get_prompt"), "{seen:?}");
}

#[test]
fn the_authorize_dialog_offers_promptreg_keys_first() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let schemes = spec["components"]["securitySchemes"]
        .as_object()
        .expect("schemes");
    let names: Vec<&String> = schemes.keys().collect();
    assert_eq!(names, ["bearer", "langfuse_basic", "mlflow_basic"]);
    let bearer = schemes["bearer"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(bearer.contains("pr_"), "{bearer}");
}

/// Swagger UI encodes a `/` in a path parameter itself, so the `%2F` hint
/// must say where it applies, on every operation that takes a prompt name.
#[test]
fn prompt_name_parameters_say_how_swagger_encodes_them() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.contains("/prompts/{name}") {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            let name = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "name" && p["in"] == "path")
                .unwrap_or_else(|| panic!("{method} {path} documents no name"));
            let description = name["description"].as_str().unwrap_or_default();
            assert!(
                description.contains("%2F") && description.contains("Try it out"),
                "{method} {path}: {description}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}

/// Each problem's example carries the response's own status, and a code the
/// server really answers with (one that `src/error.rs` or the auth layer names).
#[test]
fn problem_examples_match_their_status_and_code() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let sources: String = ["src/error.rs", "src/api/auth.rs", "src/services/error.rs"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_default()
        })
        .collect();
    let mut codes = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (status, response) in op["responses"].as_object().expect("responses") {
                let Some(content) = response["content"].get("application/problem+json") else {
                    continue;
                };
                let example = &content["example"];
                assert_eq!(
                    example["status"].as_u64().map(|s| s.to_string()).as_deref(),
                    Some(status.as_str()),
                    "{method} {path} {status}: {example}"
                );
                let code = example["code"].as_str().unwrap_or_default();
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(&format!("`{code}`")),
                    "{method} {path} {status}: example code {code:?} is not in {description:?}"
                );
                assert!(
                    sources.contains(&format!("\"{code}\"")),
                    "{method} {path} {status}: the server never answers {code:?}"
                );
                codes.insert(code.to_owned());
            }
        }
    }
    assert!(
        codes.contains("prompt_not_found") && codes.contains("unauthorized"),
        "{codes:?}"
    );
    assert!(codes.len() > 10, "{codes:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts the real binary in `dir` with no configuration; returns the child
/// and what it printed on stderr before it became ready.
async fn start_binary(dir: &std::path::Path, port: u16) -> (std::process::Child, String) {
    start_binary_with(dir, port, &[]).await
}

/// [`start_binary`] with configuration variables set.
async fn start_binary_with(
    dir: &std::path::Path,
    port: u16,
    vars: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promptreg"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROMPTREG_")) {
        command.env_remove(key);
    }
    command.envs(vars.iter().copied());
    let mut child = command.spawn().expect("spawn promptreg");
    let stderr = child.stderr.take().expect("stderr");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = printed.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            let text = printed.lock().map(|t| t.clone()).unwrap_or_default();
            return (child, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not become ready");
}

/// [`stop`] on a blocking thread, so this runtime's clients can close their
/// connections meanwhile.
async fn stop_off_runtime(child: std::process::Child) -> Duration {
    tokio::task::spawn_blocking(move || stop(child))
        .await
        .expect("stop")
}

/// Sends SIGTERM and waits up to 20 s for a clean exit; answers how long it took.
fn stop(mut child: std::process::Child) -> Duration {
    let started = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for _ in 0..400 {
        if let Some(code) = child.try_wait().expect("wait") {
            assert!(code.success(), "exit status {code}");
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not stop on SIGTERM");
}

/// The README's first command, in miniature: `promptreg serve` with no
/// configuration creates `data/promptreg.db` in its working directory, prints
/// a generated admin key once, serves, and stops cleanly on SIGTERM; the next
/// start prints no key.
#[tokio::test]
async fn binary_serves_on_default_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let (child, printed) = start_binary(dir.path(), port).await;
    let key = printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pr_"))
        .unwrap_or_else(|| panic!("no key printed: {printed}"))
        .to_owned();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let anonymous = client
        .post(format!("{base}/v1/prompts"))
        .json(&json!({"name": "smoke"}))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status().as_u16(), 401);
    let created = client
        .post(format!("{base}/v1/prompts"))
        .bearer_auth(&key)
        .json(&json!({"name": "smoke"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status().as_u16(), 201);
    assert!(dir.path().join("data/promptreg.db").exists());
    drop(client);
    stop_off_runtime(child).await;

    let (child, printed) = start_binary(dir.path(), free_port()).await;
    assert!(
        !printed.contains("pr_"),
        "a key is printed only once: {printed}"
    );
    stop_off_runtime(child).await;
}

/// A connection that sent half a request keeps hyper's graceful drain
/// waiting; `http.shutdown_grace_secs` bounds it, so SIGTERM still ends the
/// process.
#[tokio::test]
async fn sigterm_ends_the_process_despite_a_stalled_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let (child, _) = start_binary_with(
        dir.path(),
        port,
        &[("PROMPTREG_HTTP__SHUTDOWN_GRACE_SECS", "2")],
    )
    .await;
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut stalled, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    std::thread::sleep(Duration::from_millis(200));
    let took = stop_off_runtime(child).await;
    assert!(
        took >= Duration::from_secs(2),
        "the grace was not waited for: {took:?}"
    );
    drop(stalled);
}

/// Runs `promptreg serve` against `database_url`, which must fail at start;
/// answers how long it took and what it printed (stdout, stderr), without
/// terminal colours.
async fn serve_refused(database_url: &str) -> (Duration, String, String) {
    let started = std::time::Instant::now();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_promptreg"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", database_url])
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROMPTREG_")) {
        command.env_remove(key);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("serve gave up within 30 s")
        .expect("run promptreg");
    assert!(!output.status.success(), "serve started on {database_url}");
    let text = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let mut plain = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An ANSI colour sequence: ESC [ … m.
                chars.by_ref().find(|c| *c == 'm');
            } else {
                plain.push(c);
            }
        }
        plain
    };
    (
        started.elapsed(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Postgres not listening: `serve` says which URL it tries (password
/// hidden) before connecting, and on failure the cause in one line, within
/// seconds, not "pool timed out" after the pool's timeout.
#[tokio::test]
async fn an_unreachable_postgres_is_named_with_its_cause_at_once() {
    let port = free_port();
    let (took, stdout, stderr) = serve_refused(&format!(
        "postgres://promptreg:s3cret@127.0.0.1:{port}/prompts"
    ))
    .await;
    let shown = format!("postgres://promptreg:***@127.0.0.1:{port}/prompts");
    assert!(
        format!("{stdout}{stderr}").contains(&format!("connecting to Postgres at {shown}")),
        "{stdout}{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot connect to Postgres at {shown}"))
            && last.contains("connection refused"),
        "{stderr}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("s3cret"),
        "{stdout}{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
}

/// A reachable server without the database: the URL tried and the
/// server's own sentence for the cause, at once.
#[tokio::test]
async fn a_missing_postgres_database_is_named_at_once() {
    crate::support::with_database(crate::support::Backend::Postgres, |url| async move {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let missing = format!("promptreg_missing_{}", uuid::Uuid::new_v4().simple());
        let url = sqlx::postgres::PgConnectOptions::from_str(&url)
            .expect("test database URL")
            .database(&missing)
            .to_url_lossy()
            .to_string();
        let (took, stdout, stderr) = serve_refused(&url).await;
        assert!(
            format!("{stdout}{stderr}").contains(&format!("connecting to Postgres at {url}")),
            "{stdout}{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "cannot connect to Postgres at {url}: database \"{missing}\" does not exist"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("pool timed out"), "{stderr}");
        assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    })
    .await;
}
