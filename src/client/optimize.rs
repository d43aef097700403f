//! `promptreg optimize NAME --dataset D --strategy S …`: start an
//! optimization and, with `--wait`, follow it with a progress bar over its
//! iterations and print the baseline against the best candidate.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use super::http::{Client, ClientError};
use crate::api::wire::{
    CreateOptimizationRequest, MetricRequest, ObjectiveRequest, OptimizationResponse,
    WeightedMetricRequest,
};
use crate::domain::jobs::JobStatus;
use std::str::FromStr;

use crate::domain::objective::Constraint;
use crate::domain::optimization::{Budget, ModelChoice, Split, StopReason, StrategyName};

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
    /// A deterministic metric, e.g. exact_match; repeat it for several
    /// (their weighted mean is the score).
    #[arg(long, conflicts_with = "objective")]
    pub metric: Vec<String>,
    /// The metric's parameters as JSON, e.g. '{"case_sensitive": false}'
    /// (one metric only; use --objective for several with parameters).
    #[arg(long, value_parser = parse_json_object, conflicts_with = "objective")]
    pub metric_params: Option<serde_json::Map<String, Value>>,
    /// A metric's weight, NAME=WEIGHT (default 1); adds the metric if
    /// --metric did not name it. Repeatable.
    #[arg(long, value_parser = parse_weight, conflicts_with = "objective")]
    pub metric_weight: Vec<(String, f64)>,
    /// A constraint, MEASURE:BOUND=VALUE with BOUND max, max_ratio or min,
    /// e.g. input_tokens:max_ratio=0.7. Measures: input_tokens,
    /// output_tokens, cost_usd, latency_ms, latency_p90_ms, template_tokens.
    /// Repeatable.
    #[arg(long, value_parser = Constraint::from_str, conflicts_with = "objective")]
    pub constraint: Vec<Constraint>,
    /// The objective as a JSON file: {"metrics": [{"name", "params",
    /// "weight"}], "constraints": [{"measure", "max" | "max_ratio" | "min"}]}.
    #[arg(long)]
    pub objective: Option<std::path::PathBuf>,
    /// compress: how far below the baseline's score a shorter candidate may
    /// fall (default 0.01).
    #[arg(long)]
    pub max_drop: Option<f64>,
    /// opro, critique, fewshot, compress or joint.
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
    pub optimization: OptimizationResponse,
}

impl super::report::JobReport for OptimizeReport {
    fn succeeded(&self) -> bool {
        matches!(
            self.optimization.status,
            JobStatus::Succeeded | JobStatus::Queued | JobStatus::Running
        )
    }

    fn human(&self) -> String {
        let o = &self.optimization;
        let score = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.3}"));
        let mut out = format!(
            "optimization {} of {}@{} on {} ({}): {}\n",
            o.id,
            o.prompt,
            o.version,
            o.dataset,
            o.spec.strategy.as_str(),
            o.status.as_str()
        );
        // A server older than objectives answers only `metric`.
        let objective = o.spec.clone().normalized().objective;
        out.push_str(&format!("  objective: {}", objective.describe()));
        for c in &o.spec.objective.constraints {
            let bounds: Vec<String> = [("max", c.max), ("max_ratio", c.max_ratio), ("min", c.min)]
                .into_iter()
                .filter_map(|(bound, value)| value.map(|v| format!("{bound} {v}")))
                .collect();
            out.push_str(&format!("; {} {}", c.measure.as_str(), bounds.join(", ")));
        }
        out.push('\n');
        out.push_str(&format!(
            "  {:<10} {:>8} {:>8} {:>14} {:>9}\n",
            "", "train", "val", "input tok/item", "template"
        ));
        let best = o.best.as_ref();
        let tokens = |m: Option<&crate::domain::objective::Measures>| {
            m.map_or("-".to_owned(), |m| format!("{:.1}", m.input_tokens))
        };
        let rows = [
            (
                "baseline",
                o.baseline.train_score,
                o.baseline.val_score,
                tokens(o.baseline.measurements.val_measures.as_ref()),
                o.baseline.template_tokens,
            ),
            (
                "best",
                best.and_then(|b| b.train_score),
                best.and_then(|b| b.val_score),
                tokens(best.and_then(|b| b.val_measures.as_ref())),
                best.map(|b| b.template_tokens),
            ),
        ];
        for (name, train, val, input, template) in rows {
            out.push_str(&format!(
                "  {name:<10} {:>8} {:>8} {input:>14} {:>9}\n",
                score(train),
                score(val),
                template.map_or("-".to_owned(), |t| t.to_string())
            ));
        }
        for front in &o.pareto_front {
            if front.points.len() < 2 {
                continue;
            }
            let points: Vec<String> = front
                .points
                .iter()
                .map(|p| {
                    let who = match p.iteration {
                        0 => "baseline".to_owned(),
                        n => format!("{n}.{}", p.candidate + 1),
                    };
                    let mark = if p.feasible {
                        ""
                    } else {
                        " (breaks a constraint)"
                    };
                    format!("{who} {:.3} at {:.1}{mark}", p.val_score, p.value)
                })
                .collect();
            out.push_str(&format!(
                "  front by {}: {}\n",
                front.measure.as_str(),
                points.join(", ")
            ));
        }
        let discarded = o
            .iterations
            .iter()
            .flat_map(|i| &i.candidates)
            .filter(|c| c.discarded.is_some())
            .count();
        out.push_str(&format!(
            "  {} iterations, {discarded} candidates discarded, stopped: {}\n",
            o.iterations.len(),
            o.stop_reason.map_or("-", |r| r.as_str())
        ));
        out.push_str(&format!(
            "  calls {}, cost ${:.4}\n",
            o.usage.calls, o.usage.cost_usd
        ));
        match &o.result_version {
            Some(version) => out.push_str(&format!("  new version: {version}\n")),
            None if o.stop_reason == Some(StopReason::NoFeasibleCandidate) => {
                out.push_str("  no candidate met the constraints: no new version\n")
            }
            None if o.status == JobStatus::Succeeded => {
                out.push_str("  no candidate beat the baseline: no new version\n")
            }
            None => {}
        }
        if let Some(promotion) = &o.promotion {
            let label = &promotion.label;
            if promotion.moved {
                out.push_str(&format!("  label {label} now points at it\n"));
            } else {
                let why = promotion.reason.as_deref().unwrap_or("-");
                out.push_str(&format!("  label {label} not moved: {why}\n"));
            }
        }
        if let Some(error) = &o.error {
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

/// The request as the API takes it; only `--strategy` can be refused here,
/// the server checks the rest and names every field that is wrong.
fn request_body(options: &OptimizeOptions) -> Result<CreateOptimizationRequest, ClientError> {
    let strategy: StrategyName = serde_json::from_value(Value::String(options.strategy.clone()))
        .map_err(|e| ClientError::Invalid {
            what: "--strategy".to_owned(),
            reason: e.to_string(),
        })?;
    let model = |provider: &str, model: &Option<String>| ModelChoice {
        provider: provider.to_owned(),
        model: model.clone(),
        params: Map::new(),
    };
    let split = (options.train.is_some() || options.seed.is_some()).then(|| Split {
        train: options.train.unwrap_or(0.6),
        seed: options.seed.unwrap_or(0),
    });
    let budget =
        (options.max_calls.is_some() || options.max_cost_usd.is_some()).then_some(Budget {
            max_calls: options.max_calls,
            max_cost_usd: options.max_cost_usd,
        });
    let (metric, objective) = objective_of(options)?;
    Ok(CreateOptimizationRequest {
        prompt: options.name.clone(),
        reference: options.reference.clone(),
        dataset: options.dataset.clone(),
        split,
        metric,
        objective,
        target: model(&options.target_provider, &options.target_model),
        optimizer: options
            .optimizer_provider
            .as_deref()
            .map(|provider| model(provider, &options.optimizer_model)),
        strategy,
        max_iterations: options.max_iterations,
        candidates_per_iteration: options.candidates_per_iteration,
        patience: options.patience,
        target_score: options.target_score,
        budget,
        concurrency: options.concurrency,
        num_demos: options.num_demos,
        promote_to: options.promote_to.clone(),
        min_improvement: options.min_improvement,
        max_drop: options.max_drop,
    })
}

/// `metric` for one metric with no weights or constraints (the request's
/// simple form), else `objective`: from `--objective FILE`, or built from
/// `--metric`, `--metric-weight` and `--constraint`.
fn objective_of(
    options: &OptimizeOptions,
) -> Result<(Option<MetricRequest>, Option<ObjectiveRequest>), ClientError> {
    let invalid = |what: &str, reason: String| ClientError::Invalid {
        what: what.to_owned(),
        reason,
    };
    if let Some(path) = &options.objective {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("--objective", format!("{}: {e}", path.display())))?;
        let objective: ObjectiveRequest = serde_json::from_str(&text)
            .map_err(|e| invalid("--objective", format!("{}: {e}", path.display())))?;
        return Ok((None, Some(objective)));
    }
    let mut metrics: Vec<WeightedMetricRequest> = options
        .metric
        .iter()
        .map(|name| WeightedMetricRequest {
            name: name.clone(),
            params: None,
            weight: None,
        })
        .collect();
    for (name, weight) in &options.metric_weight {
        match metrics.iter_mut().find(|m| &m.name == name) {
            Some(metric) => metric.weight = Some(*weight),
            None => metrics.push(WeightedMetricRequest {
                name: name.clone(),
                params: None,
                weight: Some(*weight),
            }),
        }
    }
    if let Some(params) = &options.metric_params {
        match metrics.as_mut_slice() {
            [one] => one.params = Some(Value::Object(params.clone())),
            _ => {
                return Err(invalid(
                    "--metric-params",
                    "takes one metric; give the parameters of several in --objective FILE"
                        .to_owned(),
                ))
            }
        }
    }
    if metrics.is_empty() {
        return Err(invalid(
            "--metric",
            "give --metric, --metric-weight or --objective".to_owned(),
        ));
    }
    let simple = metrics.len() == 1 && metrics[0].weight.is_none() && options.constraint.is_empty();
    if simple {
        let metric = metrics.remove(0);
        return Ok((
            Some(MetricRequest::Spec {
                name: metric.name,
                params: metric.params,
            }),
            None,
        ));
    }
    Ok((
        None,
        Some(ObjectiveRequest {
            metrics,
            constraints: options.constraint.clone(),
        }),
    ))
}

/// `NAME=WEIGHT`.
fn parse_weight(raw: &str) -> Result<(String, f64), String> {
    let (name, weight) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} is not NAME=WEIGHT"))?;
    let weight: f64 = weight
        .trim()
        .parse()
        .map_err(|_| format!("the weight in {raw:?} is not a number"))?;
    Ok((name.trim().to_owned(), weight))
}

pub async fn optimize(
    client: &Client,
    options: &OptimizeOptions,
) -> Result<OptimizeReport, ClientError> {
    let body = request_body(options)?;
    let (_, created): (_, OptimizationResponse) = client
        .send_json(Method::POST, "/v1/optimizations", Some(&body))
        .await?;
    if !options.wait {
        return Ok(OptimizeReport {
            optimization: created,
        });
    }
    let path = format!("/v1/optimizations/{}", created.id);
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(u64::from(created.spec.max_iterations));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} iterations {elapsed} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let optimization: OptimizationResponse = client.get_json(&path).await?;
        if let Some(bar) = &bar {
            bar.set_position(u64::try_from(optimization.progress.done).unwrap_or(0));
            let best = optimization
                .best
                .as_ref()
                .and_then(|b| b.val_score)
                .or(optimization.baseline.val_score);
            bar.set_message(format!(
                "best val {} · {} calls",
                best.map_or("-".to_owned(), |b| format!("{b:.3}")),
                optimization.usage.calls
            ));
        }
        if optimization.status.is_final() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(OptimizeReport { optimization });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn options() -> OptimizeOptions {
        OptimizeOptions {
            name: "sentiment".into(),
            dataset: "reviews".into(),
            metric: vec!["exact_match".into()],
            strategy: "opro".into(),
            target_provider: "target".into(),
            ..OptimizeOptions::default()
        }
    }

    fn body(options: &OptimizeOptions) -> Value {
        serde_json::to_value(request_body(options).expect("a request")).expect("serializes")
    }

    #[test]
    fn the_request_holds_only_the_options_given() {
        assert_eq!(
            body(&options()),
            json!({
                "prompt": "sentiment", "dataset": "reviews",
                "metric": {"name": "exact_match", "params": null},
                "strategy": "opro", "target": {"provider": "target"}
            })
        );
        let all = OptimizeOptions {
            reference: Some("1.0.0".into()),
            metric_params: Some(Map::from_iter([("trim".to_owned(), json!(true))])),
            target_model: Some("t".into()),
            optimizer_provider: Some("optimizer".into()),
            optimizer_model: Some("o".into()),
            seed: Some(7),
            max_iterations: Some(2),
            candidates_per_iteration: Some(3),
            patience: Some(1),
            target_score: Some(0.9),
            max_cost_usd: Some(1.5),
            concurrency: Some(4),
            num_demos: Some(2),
            promote_to: Some("staging".into()),
            min_improvement: Some(0.05),
            ..options()
        };
        assert_eq!(
            body(&all),
            json!({
                "prompt": "sentiment", "ref": "1.0.0", "dataset": "reviews",
                "split": {"train": 0.6, "seed": 7},
                "metric": {"name": "exact_match", "params": {"trim": true}},
                "target": {"provider": "target", "model": "t"},
                "optimizer": {"provider": "optimizer", "model": "o"},
                "strategy": "opro", "max_iterations": 2, "candidates_per_iteration": 3,
                "patience": 1, "target_score": 0.9, "budget": {"max_cost_usd": 1.5},
                "concurrency": 4, "num_demos": 2, "promote_to": "staging",
                "min_improvement": 0.05
            })
        );
    }

    #[test]
    fn an_unknown_strategy_is_refused_before_any_request() {
        let err = request_body(&OptimizeOptions {
            strategy: "annealing".into(),
            ..options()
        })
        .map(drop)
        .expect_err("no such strategy");
        let message = err.to_string();
        assert!(
            message.starts_with("--strategy: unknown variant `annealing`"),
            "{message}"
        );
    }

    #[test]
    fn weights_and_constraints_make_an_objective() {
        let weighted = OptimizeOptions {
            metric: vec!["exact_match".into(), "rouge_l".into()],
            metric_weight: vec![("rouge_l".into(), 0.25), ("bleu".into(), 2.0)],
            constraint: vec!["input_tokens:max_ratio=0.7".parse().expect("reads")],
            strategy: "compress".into(),
            max_drop: Some(0.02),
            ..options()
        };
        let sent = body(&weighted);
        assert_eq!(
            sent["objective"],
            json!({
                "metrics": [{"name": "exact_match"}, {"name": "rouge_l", "weight": 0.25},
                            {"name": "bleu", "weight": 2.0}],
                "constraints": [{"measure": "input_tokens", "max_ratio": 0.7}]
            })
        );
        assert!(sent.get("metric").is_none(), "{sent}");
        assert_eq!(sent["max_drop"], 0.02);

        let several_with_params = OptimizeOptions {
            metric: vec!["exact_match".into(), "rouge_l".into()],
            metric_params: Some(Map::new()),
            ..options()
        };
        let refused = request_body(&several_with_params)
            .map(drop)
            .expect_err("ambiguous");
        assert!(
            refused.to_string().starts_with("--metric-params"),
            "{refused}"
        );
        let none = OptimizeOptions {
            metric: Vec::new(),
            ..options()
        };
        assert!(request_body(&none).is_err());
    }

    #[test]
    fn an_objective_file_is_sent_as_it_is() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("objective.json");
        let objective = json!({
            "metrics": [{"name": "exact_match", "weight": 0.8},
                        {"name": "length", "params": {"max": 3, "unit": "words"}, "weight": 0.2}],
            "constraints": [{"measure": "latency_p90_ms", "max": 800.0}]
        });
        std::fs::write(&path, objective.to_string()).expect("written");
        let from_file = OptimizeOptions {
            metric: Vec::new(),
            objective: Some(path.clone()),
            ..options()
        };
        assert_eq!(body(&from_file)["objective"], objective);
        std::fs::write(&path, "{\"metrics\": [], \"surprise\": 1}").expect("written");
        let refused = request_body(&from_file)
            .map(drop)
            .expect_err("unknown field");
        assert!(refused.to_string().starts_with("--objective"), "{refused}");
    }
}
