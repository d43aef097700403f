//! `promptreg evaluate NAME --ref R --dataset D`: start an evaluation and,
//! with `--wait`, follow it to the end with a progress bar, print its
//! metrics, and check them against the prompt's gates on that dataset.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;

use super::http::{segment, Client, ClientError};
use crate::api::wire::{
    CreateEvaluationRequest, EvaluationResponse, GateList, JobResponse, MetricRequest,
};
use crate::domain::jobs::JobStatus;

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
    pub evaluation: EvaluationResponse,
    /// `label: why` for every gate rule on this dataset the results break.
    pub gate_failures: Vec<String>,
}

impl super::report::JobReport for EvaluateReport {
    fn succeeded(&self) -> bool {
        matches!(
            self.evaluation.status,
            JobStatus::Succeeded | JobStatus::Queued | JobStatus::Running
        ) && self.gate_failures.is_empty()
    }

    fn human(&self) -> String {
        let e = &self.evaluation;
        let mut out = format!(
            "evaluation {} of {}@{} on {}: {}\n",
            e.id,
            e.prompt,
            e.version,
            e.dataset,
            e.status.as_str()
        );
        for (name, s) in &e.metrics {
            out.push_str(&format!(
                "  {name:<14} mean {:.4}  95% CI [{:.4}, {:.4}]  n {}\n",
                s.mean, s.ci95[0], s.ci95[1], s.n
            ));
        }
        if e.errors > 0 {
            out.push_str(&format!("  {} items had errors\n", e.errors));
        }
        if let Some(error) = &e.error {
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
    let body = CreateEvaluationRequest {
        prompt: options.name.clone(),
        reference: options.reference.clone(),
        dataset: options.dataset.clone(),
        provider: options.provider.clone(),
        model: options.model.clone(),
        params: None,
        metrics: options
            .metrics
            .iter()
            .cloned()
            .map(MetricRequest::Name)
            .collect(),
        concurrency: options.concurrency,
    };
    let (_, created): (_, EvaluationResponse) = client
        .send_json(Method::POST, "/v1/evaluations", Some(&body))
        .await?;
    let id = created.id;
    if !options.wait {
        return Ok(EvaluateReport {
            evaluation: created,
            gate_failures: Vec::new(),
        });
    }
    let job = created.job_id;
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(count(created.progress.total));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let job: JobResponse = client.get_json(&format!("/v1/jobs/{job}")).await?;
        if let Some(bar) = &bar {
            bar.set_length(count(job.progress.total));
            bar.set_position(count(job.progress.done));
        }
        if job.status.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let evaluation: EvaluationResponse = client.get_json(&format!("/v1/evaluations/{id}")).await?;
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
    evaluation: &EvaluationResponse,
) -> Result<Vec<String>, ClientError> {
    let gates: GateList = client
        .get_json(&format!("/v1/prompts/{}/gates", segment(&options.name)))
        .await?;
    let mut failures = Vec::new();
    for gate in &gates.items {
        if gate.dataset != options.dataset {
            continue;
        }
        let label = &gate.label;
        for rule in &gate.rules {
            match evaluation.metrics.get(&rule.metric).map(|m| m.mean) {
                None => failures.push(format!("{label}: {} was not measured", rule.metric)),
                Some(mean) => {
                    failures.extend(rule.violation(mean).map(|why| format!("{label}: {why}")))
                }
            }
        }
    }
    Ok(failures)
}

/// A progress count as the bar takes it (the API's counts are never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
