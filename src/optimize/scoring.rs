//! Scoring a template: render it with each item's input, ask the target
//! model, score the output with the objective's metrics (their weighted
//! mean) and keep what the call cost. Calls for many (template, item) pairs
//! share one concurrency limit and the job's meter.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::StepError;
use crate::domain::content::PromptBody;
use crate::domain::objective::{CallUsage, Measures};
use crate::domain::{DatasetItem, ProjectId, PromptContent};
use crate::eval::{Metric, Sample};
use crate::providers::{CallMeter, CompletionRequest, LlmProvider, ProviderError};
use crate::services::render::Renderer;
use crate::worker::StopSignal;

/// One item's result under one template.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub output: Option<String>,
    /// The weighted mean of `metric_scores`; 0 when there is no output.
    pub score: f64,
    /// Each metric's score, in the objective's order (0 where a metric
    /// could not score the output).
    pub metric_scores: Vec<f64>,
    /// The first error: the call's, or a metric's.
    pub error: Option<String>,
    /// What the call that answered cost; `None` without an answer.
    pub usage: Option<CallUsage>,
}

impl Outcome {
    fn failed(error: String) -> Self {
        Self {
            output: None,
            score: 0.0,
            metric_scores: Vec::new(),
            error: Some(error),
            usage: None,
        }
    }
}

/// The mean score of `outcomes`; 0 for none.
pub fn mean(outcomes: &[Outcome]) -> f64 {
    if outcomes.is_empty() {
        return 0.0;
    }
    outcomes.iter().map(|o| o.score).sum::<f64>() / outcomes.len() as f64
}

/// What the answered calls of `outcomes` cost, per item.
pub fn measures(outcomes: &[Outcome]) -> Option<Measures> {
    let calls: Vec<CallUsage> = outcomes.iter().filter_map(|o| o.usage).collect();
    Measures::of(&calls)
}

/// Each metric's mean over `outcomes` when there are several metrics
/// (one metric's mean is the score itself).
pub fn metric_means(outcomes: &[Outcome], metrics: usize) -> Vec<f64> {
    if metrics < 2 || outcomes.is_empty() {
        return Vec::new();
    }
    let n = outcomes.len() as f64;
    (0..metrics)
        .map(|i| {
            outcomes
                .iter()
                .map(|o| o.metric_scores.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
                / n
        })
        .collect()
}

pub struct Scorer {
    pub renderer: Arc<Renderer>,
    pub project: ProjectId,
    /// The base version's content: engine, model config and schemas.
    pub base: PromptContent,
    pub target: Arc<dyn LlmProvider>,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    /// The objective's metrics with their weights (positive).
    pub metrics: Vec<(Metric, f64)>,
    pub meter: Arc<CallMeter>,
    pub concurrency: usize,
    pub stop: StopSignal,
}

impl Scorer {
    /// Outcomes of each body on each item, in the order given.
    pub async fn score_many(
        &self,
        bodies: &[&PromptBody],
        items: &[&DatasetItem],
    ) -> Result<Vec<Vec<Outcome>>, StepError> {
        // Futures built up front and boxed: a lazily mapped stream of
        // borrowing closures is not provably `Send` inside the job's future.
        let contents: Vec<PromptContent> = bodies
            .iter()
            .map(|body| PromptContent {
                body: (*body).clone(),
                ..self.base.clone()
            })
            .collect();
        let mut params = self.base.model_config.clone();
        params.extend(self.params.clone());
        let mut calls: Vec<BoxFuture<'_, Result<Outcome, StepError>>> = Vec::new();
        for content in &contents {
            for item in items {
                calls.push(self.score_one(content, &params, item).boxed());
            }
        }
        let flat: Vec<Outcome> = futures::stream::iter(calls)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let width = items.len().max(1);
        let mut chunks = flat.chunks(width).map(<[Outcome]>::to_vec);
        Ok(bodies
            .iter()
            .map(|_| chunks.next().unwrap_or_default())
            .collect())
    }

    pub async fn score(
        &self,
        body: &PromptBody,
        items: &[&DatasetItem],
    ) -> Result<Vec<Outcome>, StepError> {
        let mut scored = self.score_many(&[body], items).await?;
        Ok(scored.pop().unwrap_or_default())
    }

    /// One item under `content`, called with `params`.
    async fn score_one(
        &self,
        content: &PromptContent,
        params: &Map<String, Value>,
        item: &DatasetItem,
    ) -> Result<Outcome, StepError> {
        if self.stop.is_stopped() {
            return Err(StepError::Stopped);
        }
        let input = Value::Object(item.input.clone());
        let rendered = match self
            .renderer
            .render_content(self.project, content, &input, None)
            .await
        {
            Ok((rendered, _)) => rendered,
            Err(e) => return Ok(Outcome::failed(format!("render: {e}"))),
        };
        let request = CompletionRequest {
            rendered,
            model: self.model.clone(),
            params: params.clone(),
            output_schema: content.output_schema.clone(),
        };
        let call = self.target.complete_metered(&request, &self.meter);
        let reply = tokio::select! {
            reply = call => reply,
            () = self.stop.stopped() => return Err(StepError::Stopped),
        };
        let completion = match reply {
            Ok(completion) => completion,
            Err(ProviderError::BudgetExhausted) => return Err(StepError::Budget),
            Err(e) => return Ok(Outcome::failed(format!("provider ({}): {e}", e.code()))),
        };
        let expected = item.expected.as_ref().map(crate::eval::text_of);
        let sample = Sample {
            output: &completion.text,
            expected: expected.as_deref(),
            input: Some(&input),
            output_schema: content.output_schema.as_ref(),
        };
        let mut error = None;
        let metric_scores: Vec<f64> = self
            .metrics
            .iter()
            .map(|(metric, _)| match metric.score(&sample) {
                Ok(score) => score,
                Err(e) => {
                    error.get_or_insert_with(|| format!("{}: {e}", metric.name()));
                    0.0
                }
            })
            .collect();
        let total_weight: f64 = self.metrics.iter().map(|(_, w)| w).sum();
        let weighted: f64 = self
            .metrics
            .iter()
            .zip(&metric_scores)
            .map(|((_, weight), score)| weight * score)
            .sum();
        let score = if total_weight > 0.0 {
            weighted / total_weight
        } else {
            0.0
        };
        let usage = CallUsage {
            input_tokens: completion.usage.input_tokens,
            output_tokens: completion.usage.output_tokens,
            cost_usd: completion.cost_usd,
            latency_ms: completion.latency_ms,
        };
        Ok(Outcome {
            output: Some(completion.text),
            score,
            metric_scores,
            error,
            usage: Some(usage),
        })
    }
}
