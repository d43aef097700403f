//! Prometheus metrics: the names and labels dashboards rely on, recorded
//! through the `metrics` facade and rendered by `metrics-exporter-prometheus`.
//!
//! Every name and label set lives here. Label values are closed sets (a
//! route template, a status code, a configured provider or model name),
//! never prompt names, variables or other user input. Until [`install`] runs
//! (or with `[metrics] enabled = false`) every recording is a no-op.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::jobs::{JobStatus, JOB_KINDS};

pub const HTTP_REQUESTS: &str = "promptreg_http_requests_total";
pub const HTTP_DURATION: &str = "promptreg_http_request_duration_seconds";
pub const CACHE_REQUESTS: &str = "promptreg_cache_requests_total";
pub const DB_POOL: &str = "promptreg_db_pool_connections";
pub const DB_QUERY_DURATION: &str = "promptreg_db_query_duration_seconds";
pub const JOBS: &str = "promptreg_jobs";
pub const JOBS_FINISHED: &str = "promptreg_jobs_finished_total";
pub const PROVIDER_REQUESTS: &str = "promptreg_provider_requests_total";
pub const PROVIDER_DURATION: &str = "promptreg_provider_request_duration_seconds";
pub const PROVIDER_TOKENS: &str = "promptreg_provider_tokens_total";
pub const PROVIDER_COST: &str = "promptreg_provider_cost_usd_total";
pub const BUILD_INFO: &str = "promptreg_build_info";
pub const WEBHOOK_DELIVERIES: &str = "promptreg_webhook_deliveries_total";
pub const WEBHOOK_DURATION: &str = "promptreg_webhook_delivery_duration_seconds";

/// How a webhook attempt ended: `succeeded`, `retried` (it will be tried
/// again), `failed` (attempts ran out) or `gone` (410: endpoint disabled).
pub const WEBHOOK_OUTCOMES: [&str; 4] = ["succeeded", "retried", "failed", "gone"];

/// From 100 µs (a cached render) to 10 s (the request timeout's range).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// LLM calls take seconds to minutes.
const PROVIDER_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The process-wide recorder: installed once, shared by every app built in
/// this process (the `metrics` facade has one global recorder). A mutex, not
/// a once-cell, so that two apps built at once cannot both try to install.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let mut installed = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(PROVIDER_DURATION.into()), &PROVIDER_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    *installed = Some(handle.clone());
    register_series();
    // Histogram samples wait in buffers until drained; a scrape drains them
    // too, but an unscraped process must not grow. A thread of its own, so
    // it outlives whichever runtime installed the recorder.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })?;
    Ok(handle)
}

/// Series dashboards expect before anything happened, at 0.
fn register_series() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    CACHE_SERIES.get_or_init(|| {
        [Cache::Template, Cache::Label, Cache::Key].map(|cache| {
            ["miss", "hit"].map(|result| {
                let counter =
                    counter!(CACHE_REQUESTS, "cache" => cache.as_str(), "result" => result);
                counter.absolute(0);
                counter
            })
        })
    });
    for kind in JOB_KINDS {
        for status in [
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            counter!(JOBS_FINISHED, "kind" => kind, "status" => status.as_str()).absolute(0);
        }
    }
    for outcome in WEBHOOK_OUTCOMES {
        counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).absolute(0);
    }
    set_jobs(&[]);
    set_pool(PoolGauge::default());
}

/// Jobs of one kind in one status, for `promptreg_jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobGauge<'a> {
    pub kind: &'a str,
    pub status: JobStatus,
    pub count: i64,
}

/// Database connections, for `promptreg_db_pool_connections`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauge {
    pub idle: u64,
    pub active: u64,
}

/// The exposition text, with the gauges read at scrape time set first.
/// `jobs` is `None` when they could not be counted: the gauges keep their
/// last values.
pub fn render(handle: &PrometheusHandle, jobs: Option<&[JobGauge<'_>]>, pool: PoolGauge) -> String {
    if let Some(jobs) = jobs {
        set_jobs(jobs);
    }
    set_pool(pool);
    let mut text = handle.render();
    render_costs(&mut text);
    text
}

/// Every kind × {queued, running}, so a series that drops to zero says 0.
fn set_jobs(jobs: &[JobGauge<'_>]) {
    for kind in JOB_KINDS {
        for status in [JobStatus::Queued, JobStatus::Running] {
            let count = jobs
                .iter()
                .filter(|j| j.kind == kind && j.status == status)
                .map(|j| j.count)
                .sum::<i64>();
            gauge!(JOBS, "kind" => kind, "status" => status.as_str()).set(count as f64);
        }
    }
}

fn set_pool(pool: PoolGauge) {
    gauge!(DB_POOL, "state" => "idle").set(pool.idle as f64);
    gauge!(DB_POOL, "state" => "active").set(pool.active as f64);
}

/// One answered HTTP request. `route` is the matched route template, or
/// `unmatched`. The hot path: the series' handles are looked up by route in
/// a map of our own, under a shared lock, rather than registered anew
/// (labels built, hashed and allocated) on every request; only a series
/// seen for the first time takes the lock exclusively.
pub fn http_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let method = standard_method(method).unwrap_or("other");
    let seconds = elapsed.as_secs_f64();
    {
        let routes = HTTP_SERIES.read().unwrap_or_else(|p| p.into_inner());
        if routes
            .get(route)
            .is_some_and(|series| series.record(method, status, seconds))
        {
            return;
        }
    }
    let mut routes = HTTP_SERIES.write().unwrap_or_else(|p| p.into_inner());
    let series = routes.entry(route.to_owned()).or_default();
    series.register(method, route, status);
    series.record(method, status, seconds);
}

/// The handles of one route's series, by (method, status) and by method.
#[derive(Default)]
struct RouteSeries {
    requests: Vec<(&'static str, u16, Counter)>,
    durations: Vec<(&'static str, Histogram)>,
}

impl RouteSeries {
    fn counter(&self, method: &str, status: u16) -> Option<&Counter> {
        self.requests
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, counter)| counter)
    }

    fn histogram(&self, method: &str) -> Option<&Histogram> {
        self.durations
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, histogram)| histogram)
    }

    /// Counts one request; false when its series are not registered yet.
    fn record(&self, method: &str, status: u16, seconds: f64) -> bool {
        let (Some(counter), Some(histogram)) =
            (self.counter(method, status), self.histogram(method))
        else {
            return false;
        };
        counter.increment(1);
        histogram.record(seconds);
        true
    }

    fn register(&mut self, method: &'static str, route: &str, status: u16) {
        if self.counter(method, status).is_none() {
            let counter = counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(), "status" => status.to_string());
            self.requests.push((method, status, counter));
        }
        if self.histogram(method).is_none() {
            let histogram =
                histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned());
            self.durations.push((method, histogram));
        }
    }
}

static HTTP_SERIES: RwLock<BTreeMap<String, RouteSeries>> = RwLock::new(BTreeMap::new());

/// A standard method's name; `None` for anything else (a client's own
/// verb), so that a caller can never invent a label value or span name.
pub fn standard_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// The in-memory caches, as `promptreg_cache_requests_total{cache}` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Compiled templates (the renderer).
    Template = 0,
    /// Label and `latest` resolutions (the registry).
    Label = 1,
    /// Verified API keys.
    Key = 2,
}

impl Cache {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::Label => "label",
            Self::Key => "key",
        }
    }
}

/// The six cache series' handles, registered once the recorder is installed.
static CACHE_SERIES: OnceLock<[[Counter; 2]; 3]> = OnceLock::new();

pub fn cache_lookup(cache: Cache, hit: bool) {
    if let Some(series) = CACHE_SERIES.get() {
        series[cache as usize][usize::from(hit)].increment(1);
    }
}

pub fn db_query(operation: &'static str, elapsed: Duration) {
    histogram!(DB_QUERY_DURATION, "operation" => operation).record(elapsed.as_secs_f64());
}

/// One webhook attempt: its outcome (one of [`WEBHOOK_OUTCOMES`]) and how
/// long the endpoint took.
pub fn webhook_delivery(outcome: &'static str, elapsed: Duration) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    histogram!(WEBHOOK_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

pub fn job_finished(kind: &str, status: JobStatus) {
    counter!(JOBS_FINISHED, "kind" => kind.to_owned(), "status" => status.as_str()).increment(1);
}

/// How one provider HTTP attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderOutcome {
    Ok,
    RateLimited,
    ServerError,
    Timeout,
    /// Any other failure: a 4xx, an unreadable reply, no connection.
    ClientError,
}

impl ProviderOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::ClientError => "client_error",
        }
    }
}

/// One attempt at a provider (retries count one each). `model` is already
/// a configured model name or `other`.
pub fn provider_attempt(provider: &str, model: &str, outcome: ProviderOutcome, elapsed: Duration) {
    let (provider, model) = (provider.to_owned(), model.to_owned());
    counter!(PROVIDER_REQUESTS, "provider" => provider.clone(), "model" => model.clone(), "outcome" => outcome.as_str())
        .increment(1);
    histogram!(PROVIDER_DURATION, "provider" => provider, "model" => model)
        .record(elapsed.as_secs_f64());
}

/// Tokens and cost of a successful provider call.
pub fn provider_usage(provider: &str, model: &str, input: u64, output: u64, cost_usd: Option<f64>) {
    let (provider, model) = (provider.to_owned(), model.to_owned());
    counter!(PROVIDER_TOKENS, "provider" => provider.clone(), "model" => model.clone(), "direction" => "input")
        .increment(input);
    counter!(PROVIDER_TOKENS, "provider" => provider.clone(), "model" => model.clone(), "direction" => "output")
        .increment(output);
    if let Some(cost) = cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
        let mut costs = COSTS.lock().unwrap_or_else(|p| p.into_inner());
        *costs.entry((provider, model)).or_default() += cost;
    }
}

/// USD spent per (provider, model). The `metrics` facade counts in whole
/// numbers only, so this float counter is kept here and rendered beside it.
static COSTS: Mutex<BTreeMap<(String, String), f64>> = Mutex::new(BTreeMap::new());

fn render_costs(out: &mut String) {
    let costs = COSTS.lock().unwrap_or_else(|p| p.into_inner());
    if costs.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {PROVIDER_COST} counter");
    for ((provider, model), usd) in costs.iter() {
        let _ = writeln!(
            out,
            "{PROVIDER_COST}{{provider=\"{}\",model=\"{}\"}} {usd}",
            escape_label(provider),
            escape_label(model)
        );
    }
    out.push('\n');
}

/// A label value as the text format quotes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
