//! The evaluation job: render each dataset item with the evaluated version,
//! call the provider, score the output, and store the item's result as soon
//! as it completes. Items that already have a result (from an earlier,
//! interrupted attempt) are skipped, so nothing is computed or stored twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::metrics::{Metric, Sample};
use crate::domain::jobs::{Evaluation, ItemResult, Job};
use crate::domain::{DatasetItem, PromptName, VersionRef};
use crate::providers::{CompletionRequest, Providers};
use crate::render::Renderer;
use crate::store::{Store, StoreError};
use crate::worker::{Finished, JobError, JobRunner, StopSignal};

/// Items read from the store at once.
const PAGE: u32 = 500;

pub struct EvaluationRunner {
    store: Arc<dyn Store>,
    renderer: Arc<Renderer>,
    providers: Arc<Providers>,
}

impl EvaluationRunner {
    pub fn new(store: Arc<dyn Store>, renderer: Arc<Renderer>, providers: Arc<Providers>) -> Self {
        Self {
            store,
            renderer,
            providers,
        }
    }
}

fn store_error(e: StoreError) -> JobError {
    JobError::retryable(format!("store: {e}"))
}

/// The metrics of an evaluation, parsed; the API checked them at creation.
pub fn parse_metrics(evaluation: &Evaluation) -> Result<Vec<Metric>, JobError> {
    evaluation
        .metrics
        .iter()
        .map(|spec| Metric::parse(&spec.name, &spec.params))
        .collect::<Result<_, _>>()
        .map_err(|e| JobError::permanent(e.to_string()))
}

#[async_trait]
impl JobRunner for EvaluationRunner {
    async fn run(&self, job: &Job, stop: &StopSignal) -> Result<Finished, JobError> {
        let evaluation = self
            .store
            .get_evaluation_of_job(job.id)
            .await
            .map_err(store_error)?;
        let provider = self.providers.get(&evaluation.provider).ok_or_else(|| {
            JobError::permanent(format!(
                "provider {:?} is not configured on this worker",
                evaluation.provider
            ))
        })?;
        let metrics = parse_metrics(&evaluation)?;
        let name = PromptName::parse(&evaluation.prompt_name)
            .map_err(|e| JobError::permanent(e.to_string()))?;
        let done_before: HashSet<uuid::Uuid> = self
            .store
            .evaluated_items(evaluation.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
        let context = ItemContext {
            evaluation: &evaluation,
            name: &name,
            reference: VersionRef::Exact(evaluation.version.clone()),
            metrics: &metrics,
            provider: provider.as_ref(),
            renderer: &self.renderer,
            stop,
        };

        let (store, dataset, up_to) = (
            self.store.clone(),
            evaluation.dataset_id,
            evaluation.item_count,
        );
        let items = futures::stream::try_unfold(0i64, move |after| {
            let store = store.clone();
            async move {
                let page = store
                    .list_items_for_run(dataset, after, up_to, PAGE)
                    .await?;
                Ok::<_, StoreError>(
                    page.last()
                        .map(|last| last.seq)
                        .map(|next| (futures::stream::iter(page.into_iter().map(Ok)), next)),
                )
            }
        })
        .try_flatten()
        // Boxed: naming the stream's type keeps the job future provably `Send`.
        .boxed()
        .try_filter({
            let done = done_before.clone();
            move |item| futures::future::ready(!done.contains(&item.id))
        });

        let results = items
            .map_ok(|item| context.run(item))
            .try_buffer_unordered(usize::try_from(evaluation.concurrency).unwrap_or(1).max(1));
        let mut results = std::pin::pin!(results);
        // Whether any item got an output, and the first failure otherwise: an
        // evaluation where every call failed (a wrong key, a dead provider)
        // fails as a whole instead of "succeeding" with no scores.
        let mut produced = !done_before.is_empty();
        let mut first_error = None;
        while let Some(result) = results.try_next().await.map_err(store_error)? {
            let Some(result) = result else {
                continue;
            };
            produced |= result.output.is_some();
            if first_error.is_none() {
                first_error.clone_from(&result.error);
            }
            self.store
                .insert_result(job.id, evaluation.id, &result)
                .await
                .map_err(store_error)?;
        }
        if let (false, Some(error), false) = (produced, first_error, stop.is_stopped()) {
            return Err(JobError::permanent(format!(
                "no item produced an output; the first error: {error}"
            )));
        }
        Ok(if stop.is_stopped() {
            Finished::Stopped
        } else {
            Finished::Succeeded
        })
    }
}

struct ItemContext<'a> {
    evaluation: &'a Evaluation,
    name: &'a PromptName,
    reference: VersionRef,
    metrics: &'a [Metric],
    provider: &'a dyn crate::providers::LlmProvider,
    renderer: &'a Renderer,
    stop: &'a StopSignal,
}

impl ItemContext<'_> {
    /// One item end to end; `None` when the job was told to stop first.
    async fn run(&self, item: DatasetItem) -> Result<Option<ItemResult>, StoreError> {
        if self.stop.is_stopped() {
            return Ok(None);
        }
        let started = Instant::now();
        let mut result = ItemResult {
            item_id: item.id,
            item_seq: item.seq,
            output: None,
            scores: Map::new(),
            error: None,
            latency_ms: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
        };
        let input = Value::Object(item.input);
        let rendered = match self
            .renderer
            .render_version(
                self.evaluation.project_id,
                self.name,
                &self.reference,
                &input,
            )
            .await
        {
            Ok(rendered) => rendered,
            Err(e) => {
                result.error = Some(format!("render: {e}"));
                return Ok(Some(result));
            }
        };
        let version = &rendered.version;
        let mut params = version.content.model_config.clone();
        params.extend(self.evaluation.params.clone());
        let request = CompletionRequest {
            rendered: rendered.rendered,
            model: self.evaluation.model.clone(),
            params,
            output_schema: version.content.output_schema.clone(),
        };
        let completion = match self.provider.complete(&request).await {
            Ok(completion) => completion,
            Err(e) => {
                result.latency_ms = elapsed_ms(started);
                result.error = Some(format!("provider ({}): {e}", e.code()));
                return Ok(Some(result));
            }
        };
        result.latency_ms = completion.latency_ms as i64;
        result.input_tokens = completion.usage.input_tokens as i64;
        result.output_tokens = completion.usage.output_tokens as i64;
        result.cost_usd = completion.cost_usd;
        let expected = item.expected.as_ref().map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let sample = Sample {
            output: &completion.text,
            expected: expected.as_deref(),
            input: Some(&input),
            output_schema: version.content.output_schema.as_ref(),
        };
        let mut problems = Vec::new();
        for metric in self.metrics {
            match metric.score(&sample) {
                Ok(score) => {
                    result
                        .scores
                        .insert(metric.name().to_owned(), Value::from(score));
                }
                Err(e) => problems.push(format!("{}: {e}", metric.name())),
            }
        }
        if !problems.is_empty() {
            result.error = Some(problems.join("; "));
        }
        result.output = Some(completion.text);
        Ok(Some(result))
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}
