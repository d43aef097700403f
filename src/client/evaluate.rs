//! `promptreg evaluate NAME --ref R --dataset D`: start an evaluation and,
//! with `--wait`, follow it to the end with a progress bar, print its
//! metrics, and check them against the prompt's gates on that dataset.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::http::{segment, Client, ClientError};
use crate::domain::jobs::GateRule;

#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub name: String,
    pub reference: Option<String>,
    pub dataset: String,
    pub provider: String,
    pub model: Option<String>,
    pub metrics: Vec<String>,
    pub concurrency: Option<u32>,
    pub wait: bool,
    /// Draw a progress bar on stderr while waiting.
    pub progress: bool,
}

/// How an evaluation ended, and which gate rules it breaks.
#[derive(Debug, Serialize)]
pub struct EvaluateReport {
    pub evaluation: Value,
    /// `label: why` for every gate rule on this dataset the results break.
    pub gate_failures: Vec<String>,
}

impl super::report::JobReport for EvaluateReport {
    fn succeeded(&self) -> bool {
        let status = self.evaluation["status"].as_str().unwrap_or_default();
        matches!(status, "succeeded" | "queued" | "running") && self.gate_failures.is_empty()
    }

    fn human(&self) -> String {
        let e = &self.evaluation;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut out = format!(
            "evaluation {} of {}@{} on {}: {}\n",
            text(&e["id"]),
            text(&e["prompt"]),
            text(&e["version"]),
            text(&e["dataset"]),
            text(&e["status"])
        );
        if let Some(metrics) = e["metrics"].as_object() {
            for (name, s) in metrics {
                out.push_str(&format!(
                    "  {name:<14} mean {:.4}  95% CI [{:.4}, {:.4}]  n {}\n",
                    s["mean"].as_f64().unwrap_or(0.0),
                    s["ci95"][0].as_f64().unwrap_or(0.0),
                    s["ci95"][1].as_f64().unwrap_or(0.0),
                    s["n"]
                ));
            }
        }
        if e["errors"].as_i64().unwrap_or(0) > 0 {
            out.push_str(&format!("  {} items had errors\n", e["errors"]));
        }
        if let Some(error) = e["error"].as_str() {
            out.push_str(&format!("  error: {error}\n"));
        }
        for failure in &self.gate_failures {
            out.push_str(&format!("gate failed: {failure}\n"));
        }
        out
    }
}

pub async fn evaluate(
    client: &Client,
    options: &EvaluateOptions,
) -> Result<EvaluateReport, ClientError> {
    let mut body = json!({
        "prompt": options.name,
        "dataset": options.dataset,
        "provider": options.provider,
        "metrics": options.metrics,
    });
    if let Some(reference) = &options.reference {
        body["ref"] = json!(reference);
    }
    if let Some(model) = &options.model {
        body["model"] = json!(model);
    }
    if let Some(concurrency) = options.concurrency {
        body["concurrency"] = json!(concurrency);
    }
    let (_, created) = client
        .send(Method::POST, "/v1/evaluations", Some(&body))
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    if !options.wait {
        return Ok(EvaluateReport {
            evaluation: created,
            gate_failures: Vec::new(),
        });
    }
    let job = created["job_id"].as_str().unwrap_or_default().to_owned();
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(created["progress"]["total"].as_u64().unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let (_, job) = client.get(&format!("/v1/jobs/{job}")).await?;
        if let Some(bar) = &bar {
            bar.set_length(job["progress"]["total"].as_u64().unwrap_or(0));
            bar.set_position(job["progress"]["done"].as_u64().unwrap_or(0));
        }
        let status = job["status"].as_str().unwrap_or_default();
        if matches!(status, "succeeded" | "failed" | "cancelled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (_, evaluation) = client.get(&format!("/v1/evaluations/{id}")).await?;
    let gate_failures = gate_failures(client, options, &evaluation).await?;
    Ok(EvaluateReport {
        evaluation,
        gate_failures,
    })
}

/// Checks the evaluation's means against every gate of the prompt that
/// uses this dataset, as the server will when a gated label moves.
async fn gate_failures(
    client: &Client,
    options: &EvaluateOptions,
    evaluation: &Value,
) -> Result<Vec<String>, ClientError> {
    let (_, gates) = client
        .get(&format!("/v1/prompts/{}/gates", segment(&options.name)))
        .await?;
    let empty = Map::new();
    let metrics = evaluation["metrics"].as_object().unwrap_or(&empty);
    let mut failures = Vec::new();
    for gate in gates["items"].as_array().into_iter().flatten() {
        if gate["dataset"].as_str() != Some(options.dataset.as_str()) {
            continue;
        }
        let label = gate["label"].as_str().unwrap_or_default();
        let rules: Vec<GateRule> =
            serde_json::from_value(gate["rules"].clone()).unwrap_or_default();
        for rule in rules {
            match metrics.get(&rule.metric).and_then(|m| m["mean"].as_f64()) {
                None => failures.push(format!("{label}: {} was not measured", rule.metric)),
                Some(mean) => {
                    failures.extend(rule.violation(mean).map(|why| format!("{label}: {why}")))
                }
            }
        }
    }
    Ok(failures)
}
