//! `promptreg optimize NAME --dataset D --strategy S …`: start an
//! optimization and, with `--wait`, follow it with a progress bar over its
//! iterations and print the baseline against the best candidate.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::http::{Client, ClientError};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct OptimizeOptions {
    /// The prompt to optimize.
    pub name: String,
    /// A semver or label (default: the server's default label).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The dataset, split into training and validation items.
    #[arg(long)]
    pub dataset: String,
    /// A deterministic metric, e.g. exact_match.
    #[arg(long)]
    pub metric: String,
    /// The metric's parameters as JSON, e.g. '{"case_sensitive": false}'.
    #[arg(long, value_parser = parse_json_object)]
    pub metric_params: Option<serde_json::Map<String, Value>>,
    /// opro, critique or fewshot.
    #[arg(long)]
    pub strategy: String,
    /// The provider of the model the prompt is for.
    #[arg(long)]
    pub target_provider: String,
    /// Default: the version's model_config.model, else the provider's default.
    #[arg(long)]
    pub target_model: Option<String>,
    /// The provider of the model that proposes candidates (not for fewshot).
    #[arg(long)]
    pub optimizer_provider: Option<String>,
    /// Default: the provider's default model.
    #[arg(long)]
    pub optimizer_model: Option<String>,
    /// The training share of the dataset (default 0.6).
    #[arg(long)]
    pub train: Option<f64>,
    /// Seeds the split, the minibatches and the demonstration sets (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// 1 to 100 (default 5).
    #[arg(long)]
    pub max_iterations: Option<u32>,
    /// Candidates per iteration, 1 to 16 (default 4).
    #[arg(long = "candidates")]
    pub candidates_per_iteration: Option<u32>,
    /// Iterations without a better validation score before stopping (default 3).
    #[arg(long)]
    pub patience: Option<u32>,
    /// Stop once the validation score reaches this (0 to 1).
    #[arg(long)]
    pub target_score: Option<f64>,
    /// Provider requests at most, retries included, both models together.
    #[arg(long)]
    pub max_calls: Option<u64>,
    /// Spend at most this, from the providers' configured prices.
    #[arg(long)]
    pub max_cost_usd: Option<f64>,
    /// Provider calls in flight at most (default 8).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Demonstrations per candidate, for fewshot (default 3).
    #[arg(long)]
    pub num_demos: Option<u32>,
    /// Move this label to the result if it earns it.
    #[arg(long)]
    pub promote_to: Option<String>,
    /// The validation gain --promote-to needs (default 0).
    #[arg(long)]
    pub min_improvement: Option<f64>,
    /// Follow the optimization to its end with a progress bar.
    #[arg(long)]
    pub wait: bool,
    /// Draw a progress bar on stderr while waiting (set from `--output`).
    #[arg(skip)]
    pub progress: bool,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct OptimizeReport {
    pub optimization: Value,
}

impl super::report::JobReport for OptimizeReport {
    fn succeeded(&self) -> bool {
        matches!(
            self.optimization["status"].as_str(),
            Some("succeeded" | "queued" | "running")
        )
    }

    fn human(&self) -> String {
        let o = &self.optimization;
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        let score = |v: &Value| v.as_f64().map_or("-".to_owned(), |s| format!("{s:.3}"));
        let mut out = format!(
            "optimization {} of {}@{} on {} ({}): {}\n",
            text(&o["id"]),
            text(&o["prompt"]),
            text(&o["version"]),
            text(&o["dataset"]),
            text(&o["strategy"]),
            text(&o["status"])
        );
        let metric = text(&o["metric"]["name"]);
        out.push_str(&format!(
            "  {:<10} {:>8} {:>8}   ({metric})\n",
            "", "train", "val"
        ));
        for (name, scores) in [("baseline", &o["baseline"]), ("best", &o["best"])] {
            out.push_str(&format!(
                "  {name:<10} {:>8} {:>8}\n",
                score(&scores["train_score"]),
                score(&scores["val_score"])
            ));
        }
        let iterations = o["iterations"].as_array().map_or(0, Vec::len);
        let discarded = o["iterations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["candidates"].as_array().into_iter().flatten())
            .filter(|c| !c["discarded"].is_null())
            .count();
        out.push_str(&format!(
            "  {iterations} iterations, {discarded} candidates discarded, stopped: {}\n",
            text(&o["stop_reason"])
        ));
        out.push_str(&format!(
            "  calls {}, cost ${:.4}\n",
            o["usage"]["calls"],
            o["usage"]["cost_usd"].as_f64().unwrap_or(0.0)
        ));
        match o["result_version"].as_str() {
            Some(version) => out.push_str(&format!("  new version: {version}\n")),
            None if o["status"] == "succeeded" => {
                out.push_str("  no candidate beat the baseline: no new version\n")
            }
            None => {}
        }
        if let Some(promotion) = o["promotion"].as_object() {
            let label = promotion.get("label").map(text).unwrap_or_default();
            if promotion.get("moved") == Some(&Value::Bool(true)) {
                out.push_str(&format!("  label {label} now points at it\n"));
            } else {
                let why = promotion.get("reason").map(text).unwrap_or_default();
                out.push_str(&format!("  label {label} not moved: {why}\n"));
            }
        }
        if let Some(error) = o["error"].as_str() {
            out.push_str(&format!("  error: {error}\n"));
        }
        out
    }
}

fn parse_json_object(raw: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("a JSON object, e.g. '{\"case_sensitive\": false}'".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn request_body(options: &OptimizeOptions) -> Value {
    let mut body = json!({
        "prompt": options.name,
        "dataset": options.dataset,
        "metric": {"name": options.metric, "params": options.metric_params},
        "strategy": options.strategy,
        "target": {"provider": options.target_provider},
    });
    let set = |body: &mut Value, key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body[key] = value;
        }
    };
    set(
        &mut body,
        "ref",
        options.reference.as_ref().map(|r| json!(r)),
    );
    if let Some(model) = &options.target_model {
        body["target"]["model"] = json!(model);
    }
    if let Some(provider) = &options.optimizer_provider {
        body["optimizer"] = json!({"provider": provider});
        if let Some(model) = &options.optimizer_model {
            body["optimizer"]["model"] = json!(model);
        }
    }
    if options.train.is_some() || options.seed.is_some() {
        body["split"] =
            json!({"train": options.train.unwrap_or(0.6), "seed": options.seed.unwrap_or(0)});
    }
    set(
        &mut body,
        "max_iterations",
        options.max_iterations.map(|v| json!(v)),
    );
    set(
        &mut body,
        "candidates_per_iteration",
        options.candidates_per_iteration.map(|v| json!(v)),
    );
    set(&mut body, "patience", options.patience.map(|v| json!(v)));
    set(
        &mut body,
        "target_score",
        options.target_score.map(|v| json!(v)),
    );
    if options.max_calls.is_some() || options.max_cost_usd.is_some() {
        let mut budget = json!({});
        set(
            &mut budget,
            "max_calls",
            options.max_calls.map(|v| json!(v)),
        );
        set(
            &mut budget,
            "max_cost_usd",
            options.max_cost_usd.map(|v| json!(v)),
        );
        body["budget"] = budget;
    }
    set(
        &mut body,
        "concurrency",
        options.concurrency.map(|v| json!(v)),
    );
    set(&mut body, "num_demos", options.num_demos.map(|v| json!(v)));
    set(
        &mut body,
        "promote_to",
        options.promote_to.as_ref().map(|v| json!(v)),
    );
    set(
        &mut body,
        "min_improvement",
        options.min_improvement.map(|v| json!(v)),
    );
    body
}

pub async fn optimize(
    client: &Client,
    options: &OptimizeOptions,
) -> Result<OptimizeReport, ClientError> {
    let (_, created) = client
        .send(
            Method::POST,
            "/v1/optimizations",
            Some(&request_body(options)),
        )
        .await?;
    if !options.wait {
        return Ok(OptimizeReport {
            optimization: created,
        });
    }
    let path = format!(
        "/v1/optimizations/{}",
        created["id"].as_str().unwrap_or_default()
    );
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(created["max_iterations"].as_u64().unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} iterations {elapsed} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let (_, optimization) = client.get(&path).await?;
        if let Some(bar) = &bar {
            bar.set_position(optimization["progress"]["done"].as_u64().unwrap_or(0));
            let best = optimization["best"]["val_score"]
                .as_f64()
                .or(optimization["baseline"]["val_score"].as_f64());
            bar.set_message(format!(
                "best val {} · {} calls",
                best.map_or("-".to_owned(), |b| format!("{b:.3}")),
                optimization["usage"]["calls"]
            ));
        }
        let status = optimization["status"].as_str().unwrap_or_default();
        if matches!(status, "succeeded" | "failed" | "cancelled") {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(OptimizeReport { optimization });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
