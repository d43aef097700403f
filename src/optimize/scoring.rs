//! Scoring a template: render it with each item's input, ask the target
//! model, score the output with the metric. Calls for many (template, item)
//! pairs share one concurrency limit and the job's meter.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::StepError;
use crate::domain::content::PromptBody;
use crate::domain::{DatasetItem, ProjectId, PromptContent};
use crate::eval::{Metric, Sample};
use crate::providers::{CallMeter, CompletionRequest, LlmProvider, ProviderError};
use crate::services::render::Renderer;
use crate::worker::StopSignal;

/// One item's result under one template.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub output: Option<String>,
    /// 0 when there is no output or the metric could not score it.
    pub score: f64,
    pub error: Option<String>,
}

impl Outcome {
    fn failed(error: String) -> Self {
        Self {
            output: None,
            score: 0.0,
            error: Some(error),
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

pub struct Scorer {
    pub renderer: Arc<Renderer>,
    pub project: ProjectId,
    /// The base version's content: engine, model config and schemas.
    pub base: PromptContent,
    pub target: Arc<dyn LlmProvider>,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    pub metric: Metric,
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
        let (score, error) = match self.metric.score(&sample) {
            Ok(score) => (score, None),
            Err(e) => (0.0, Some(format!("{}: {e}", self.metric.name()))),
        };
        Ok(Outcome {
            output: Some(completion.text),
            score,
            error,
        })
    }
}
