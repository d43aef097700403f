//! A database that stops under load: every route that needs it answers 503
//! problem+json (`unavailable`, with `Retry-After`) and never 500 or a hang,
//! and fast: no 503 waits for the pool's 10 s acquire timeout (each within
//! [`UNAVAILABLE_WITHIN`], a bound on correctness, not a benchmark), and
//! `/readyz` answers 503 from the health state as fast. A label read cached
//! before the outage still answers 200 while the database is down, and once
//! it is back every route succeeds again without restarting promptreg. Postgres only,
//! on a private cluster this test starts and stops (the shared server on
//! :5432 serves other tests). Without the Postgres binaries the test is
//! skipped with a warning, unless `CI` is set: then it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{app_with, test_config, TestApp, ADMIN_KEY};

/// Longer than the pool's acquire timeout (10 s), shorter than the server's
/// request timeout (30 s): an answer later than this is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long every route may take to succeed again once Postgres is back.
const RECOVERY: Duration = Duration::from_secs(30);
/// Requests per load task at most, whatever happens.
const MAX_REQUESTS_PER_TASK: usize = 200;
const PAUSE: Duration = Duration::from_millis(20);
/// A 503 later than this waited for something it should not have (the
/// pool's 10 s acquire timeout): the database was known to be down.
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_shutdown_answers_503_then_recovers() {
    database_outage("fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_shutdown_answers_503_then_recovers() {
    database_outage("immediate").await;
}

/// A Postgres cluster of this test's own in a temporary directory, on a
/// free port; stopped and removed on drop, also when the test panics.
struct Cluster {
    ctl: PgCtl,
    _dir: tempfile::TempDir,
}

/// Runs the cluster's `pg_ctl`. Tests run as root here and Postgres refuses
/// to run as root, so as root every tool runs as the `postgres` OS user.
#[derive(Clone)]
struct PgCtl {
    bin: PathBuf,
    as_postgres: bool,
    dir: PathBuf,
    port: u16,
}

impl PgCtl {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?}: {}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        // `-l`: the server must not inherit our pipes, or `output()` waits
        // for the server to exit.
        let log = self.dir.join("server.log");
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    fn stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", mode, "-w", "stop"],
        )
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Cluster {
    /// Initializes and starts a cluster; `None` (with a warning) when this
    /// machine cannot run one and `CI` is not set.
    fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set and no private Postgres cluster could be started: {why}"
                );
                eprintln!("WARNING: skipping the outage test: {why}");
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let bin = postgres_bin()?;
        let as_postgres = running_as_root();
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .output()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !chown.status.success() {
                return Err(format!(
                    "chown postgres: {}",
                    String::from_utf8_lossy(&chown.stderr)
                ));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let ctl = PgCtl {
            bin,
            as_postgres,
            dir: dir.path().to_owned(),
            port,
        };
        let data = ctl.data();
        ctl.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let cluster = Self { ctl, _dir: dir };
        cluster.ctl.start()?;
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Already stopped is fine; the directory goes with `_dir`.
        let _ = self.ctl.stop("immediate");
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` with `initdb` and `pg_ctl`.
fn postgres_bin() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((major, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no {}/*/bin with initdb and pg_ctl", root.display()))
}

/// Whether this process runs as root: `/proc/self` belongs to its user.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Every route the load calls. All but `CachedLabel` need the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    ListPrompts,
    ListVersions,
    PutLabel,
    PostVersion,
    ListDatasets,
    StartEvaluation,
    ListKeys,
    ListAudit,
    /// `GET /readyz`: 503 while the database is down.
    Readyz,
    /// `GET /v1/prompts/cached/versions/production`, read before the
    /// outage; no route writes to prompt `cached`, so it stays cached.
    CachedLabel,
}

impl Route {
    const ALL: [Route; 10] = [
        Route::ListPrompts,
        Route::ListVersions,
        Route::PutLabel,
        Route::PostVersion,
        Route::ListDatasets,
        Route::StartEvaluation,
        Route::ListKeys,
        Route::ListAudit,
        Route::Readyz,
        Route::CachedLabel,
    ];

    fn success(self) -> u16 {
        match self {
            Route::PostVersion => 201,
            Route::StartEvaluation => 202,
            _ => 200,
        }
    }

    /// The request; `n` makes each version post's content new.
    fn request(self, http: &reqwest::Client, base: &str, n: u64) -> reqwest::RequestBuilder {
        let (method, path, body) = match self {
            Route::ListPrompts => (Method::GET, "/v1/prompts".to_owned(), None),
            Route::ListVersions => (Method::GET, "/v1/prompts/outage/versions".to_owned(), None),
            Route::PutLabel => (
                Method::PUT,
                "/v1/prompts/outage/labels/staging".to_owned(),
                Some(json!({"version": if n.is_multiple_of(2) { "1.0.0" } else { "1.0.1" }})),
            ),
            Route::PostVersion => (
                Method::POST,
                "/v1/prompts/outage/versions".to_owned(),
                Some(json!({"template": format!("Variant {n}: {{{{x}}}}")})),
            ),
            Route::ListDatasets => (Method::GET, "/v1/datasets".to_owned(), None),
            Route::StartEvaluation => (
                Method::POST,
                "/v1/evaluations".to_owned(),
                Some(
                    json!({"prompt": "outage", "ref": "1.0.0", "dataset": "rows",
                            "provider": "walk", "metrics": ["exact_match"]}),
                ),
            ),
            Route::ListKeys => (Method::GET, "/v1/keys".to_owned(), None),
            Route::ListAudit => (Method::GET, "/v1/audit".to_owned(), None),
            Route::Readyz => (Method::GET, "/readyz".to_owned(), None),
            Route::CachedLabel => (
                Method::GET,
                "/v1/prompts/cached/versions/production".to_owned(),
                None,
            ),
        };
        let request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_KEY);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    }
}

/// What one request got.
#[derive(Debug)]
struct Answer {
    route: Route,
    started: Instant,
    took: Duration,
    outcome: Outcome,
}

/// What the database did while a request ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Up from start to end: the request must succeed.
    Up,
    /// Stopped from start to end: only the cached read succeeds.
    Down,
    /// Stopping or starting meanwhile: success or 503.
    Between,
}

#[derive(Debug)]
enum Outcome {
    Status {
        status: u16,
        content_type: Option<String>,
        retry_after: Option<String>,
        body: Value,
    },
    /// No answer within [`CLIENT_TIMEOUT`].
    Hung,
    Transport(String),
}

async fn call(http: &reqwest::Client, base: &str, route: Route, n: u64) -> Answer {
    let started = Instant::now();
    let outcome = match route.request(http, base, n).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (content_type, retry_after) = (
                header(reqwest::header::CONTENT_TYPE),
                header(reqwest::header::RETRY_AFTER),
            );
            match response.bytes().await {
                Ok(bytes) => Outcome::Status {
                    status,
                    content_type,
                    retry_after,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                },
                Err(e) if e.is_timeout() => Outcome::Hung,
                Err(e) => Outcome::Transport(e.to_string()),
            }
        }
        Err(e) if e.is_timeout() => Outcome::Hung,
        Err(e) => Outcome::Transport(e.to_string()),
    };
    Answer {
        route,
        started,
        took: started.elapsed(),
        outcome,
    }
}

impl Answer {
    fn succeeded(&self) -> bool {
        matches!(self.outcome, Outcome::Status { status, .. } if status == self.route.success())
    }

    fn is_503(&self) -> bool {
        matches!(self.outcome, Outcome::Status { status: 503, .. })
    }

    /// Why this answer is wrong, if it is, given what the database was
    /// doing meanwhile.
    fn fault(&self, phase: Phase) -> Option<String> {
        let (status, content_type, retry_after, body) = match &self.outcome {
            Outcome::Hung => return Some(format!("no answer within {CLIENT_TIMEOUT:?}")),
            Outcome::Transport(e) => return Some(format!("transport error: {e}")),
            Outcome::Status {
                status,
                content_type,
                retry_after,
                body,
            } => (*status, content_type, retry_after, body),
        };
        if self.succeeded() {
            return (phase == Phase::Down && self.route != Route::CachedLabel)
                .then(|| format!("{status} while the database was down"));
        }
        if phase == Phase::Down && self.route == Route::CachedLabel {
            return Some(format!(
                "{status} {} for a label read cached before the outage",
                body["code"]
            ));
        }
        if phase == Phase::Up {
            return Some(format!(
                "{status} {} while the database was up",
                body["code"]
            ));
        }
        if status != 503 {
            return Some(format!("{status} {}", body["code"]));
        }
        let mut wrong = Vec::new();
        if content_type.as_deref() != Some("application/problem+json") {
            wrong.push(format!("content-type {content_type:?}"));
        }
        if body["code"] != "unavailable" {
            wrong.push(format!("code {}", body["code"]));
        }
        if retry_after.is_none() {
            wrong.push("no Retry-After".to_owned());
        }
        if self.took > UNAVAILABLE_WITHIN {
            wrong.push(format!("after {} ms", millis(self.took)));
        }
        (!wrong.is_empty()).then(|| format!("503 with {}", wrong.join(", ")))
    }
}

/// Seeds prompt `outage` (1.0.0 `production` and `staging`, 1.0.1), prompt
/// `cached` (1.0.0 `production`) and dataset `rows` with one item.
async fn seed(app: &TestApp) {
    app.seed_prompt("cached").await;
    app.seed_version("cached", "Cached {{x}}").await;
    let set = app.set_label("cached", "production", "1.0.0").await;
    assert_eq!(set.status, 200, "{}", set.body);
    app.seed_prompt("outage").await;
    app.seed_version("outage", "One {{x}}").await;
    app.seed_version("outage", "Two {{x}}").await;
    for label in ["production", "staging"] {
        let set = app.set_label("outage", label, "1.0.0").await;
        assert_eq!(set.status, 200, "{}", set.body);
    }
    let dataset = app.post("/v1/datasets", json!({"name": "rows"})).await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    let items = app
        .post(
            "/v1/datasets/rows/items",
            json!([{"input": {"x": "a"}, "expected": "b"}]),
        )
        .await;
    assert_eq!(items.status, 200, "{}", items.body);
}

/// Calls every route at once.
async fn every_route(http: &reqwest::Client, base: &str, counter: &AtomicU64) -> Vec<Answer> {
    futures::future::join_all(
        Route::ALL
            .into_iter()
            .map(|route| call(http, base, route, counter.fetch_add(1, Ordering::Relaxed))),
    )
    .await
}

/// One load task per route, each in a bounded loop until `stop`.
fn start_load(
    http: &reqwest::Client,
    base: &str,
    counter: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
    answers: &Arc<Mutex<Vec<Answer>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    Route::ALL
        .into_iter()
        .map(|route| {
            let (http, base) = (http.clone(), base.to_owned());
            let (counter, stop, answers) = (counter.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                for _ in 0..MAX_REQUESTS_PER_TASK {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let answer = call(&http, &base, route, n).await;
                    answers.lock().expect("answers").push(answer);
                    tokio::time::sleep(PAUSE).await;
                }
            })
        })
        .collect()
}

/// Runs `pg_ctl` off the runtime's threads, which serve the load meanwhile.
async fn pg_ctl(ctl: &PgCtl, action: impl FnOnce(&PgCtl) -> Result<(), String> + Send + 'static) {
    let ctl = ctl.clone();
    tokio::task::spawn_blocking(move || action(&ctl))
        .await
        .expect("pg_ctl thread")
        .unwrap_or_else(|why| panic!("{why}"));
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

async fn database_outage(mode: &'static str) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let ctl = cluster.ctl.clone();
    let mut config = test_config(&ctl.url());
    // The load is about the database, not the rate limits (admin's is 20/s).
    for limit in config.rate_limit.each_mut() {
        *limit = promptreg::config::RateLimit {
            per_second: 100_000.0,
            burst: 100_000,
        };
    }
    let app = app_with(config).await;
    seed(&app).await;
    let base = app.serve().await;
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("http client");
    let counter = Arc::new(AtomicU64::new(0));
    let warm = call(&http, &base, Route::CachedLabel, 0).await;
    assert!(warm.succeeded(), "{warm:?}");

    // Load on a healthy database first: everything succeeds.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let load = start_load(&http, &base, &counter, &stop, &answers);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopping = Instant::now();
    pg_ctl(&ctl, move |ctl| ctl.stop(mode)).await;
    let stopped = Instant::now();
    println!(
        "pg_ctl stop -m {mode} took {} ms",
        millis(stopped - stopping)
    );

    // Down: every route once more, besides the load.
    let probes = every_route(&http, &base, &counter).await;
    for probe in &probes {
        println!(
            "down: {:?} answered {:?} in {} ms",
            probe.route,
            match &probe.outcome {
                Outcome::Status { status, .. } => status.to_string(),
                other => format!("{other:?}"),
            },
            millis(probe.took)
        );
    }

    let starting = Instant::now();
    pg_ctl(&ctl, PgCtl::start).await;
    let started = Instant::now();
    println!("pg_ctl start took {} ms", millis(started - starting));

    // Back: every route succeeds again, the same promptreg.
    let mut recovery = Vec::new();
    let recovered = loop {
        let pass = every_route(&http, &base, &counter).await;
        let all_ok = pass.iter().all(Answer::succeeded);
        recovery.extend(pass);
        if all_ok {
            break Some(started.elapsed());
        }
        if started.elapsed() > RECOVERY {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let load = std::mem::take(&mut *answers.lock().expect("answers"));

    // The verdict, all faults at once (counted), so one run shows them all.
    let phase = |a: &Answer| {
        let finished = a.started + a.took;
        if finished <= stopping {
            Phase::Up
        } else if a.started >= stopped && finished <= starting {
            Phase::Down
        } else {
            Phase::Between
        }
    };
    let mut faults: BTreeMap<(Route, String), usize> = BTreeMap::new();
    for answer in load.iter().chain(&probes).chain(&recovery) {
        if let Some(fault) = answer.fault(phase(answer)) {
            *faults.entry((answer.route, fault)).or_default() += 1;
        }
    }
    let unavailable: Vec<&Answer> = load
        .iter()
        .chain(&probes)
        .chain(&recovery)
        .filter(|a| a.is_503())
        .collect();
    let mut took: Vec<u128> = unavailable.iter().map(|a| millis(a.took)).collect();
    took.sort_unstable();
    println!(
        "{} requests, {} answered 503 in ms (sorted): {took:?}",
        load.len() + probes.len() + recovery.len(),
        took.len()
    );
    match recovered {
        Some(after) => println!(
            "every route succeeded {} ms after pg_ctl start",
            millis(after)
        ),
        None => println!("some route still failed {RECOVERY:?} after pg_ctl start"),
    }

    assert!(
        recovered.is_some(),
        "not every route succeeded within {RECOVERY:?} of pg_ctl start: {:?}",
        recovery
            .iter()
            .rev()
            .take(Route::ALL.len())
            .filter(|a| !a.succeeded())
            .map(|a| (a.route, &a.outcome))
            .collect::<Vec<_>>()
    );
    let faults: Vec<String> = faults
        .into_iter()
        .map(|((route, fault), n)| format!("{route:?}: {fault} (×{n})"))
        .collect();
    assert!(faults.is_empty(), "wrong answers:\n{}", faults.join("\n"));
    drop(cluster);
}
