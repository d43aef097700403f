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

use super::judge::{parse_verdict, JudgeSpec, LLM_JUDGE};
use super::metrics::{Metric, Sample};
use crate::domain::jobs::{Evaluation, ItemResult, Job, JobStatus};
use crate::domain::webhooks::{self, OutboxEvent};
use crate::domain::{DatasetItem, PromptName, VersionRef};
use crate::eval::report::Scores;
use crate::providers::{CompletionRequest, LlmProvider, Providers};
use crate::services::render::Renderer;
use crate::store::{Store, StoreError};
use crate::worker::{Finished, JobError, JobRunner, StopSignal};

/// Items read from the store at once.
const PAGE: u32 = 500;
/// Results stored in one transaction at most.
const WRITE_BATCH: usize = 100;

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

/// The metrics of an evaluation, parsed (the API checked them at creation):
/// the deterministic ones, and the LLM judges with their providers.
fn parse_metrics(
    evaluation: &Evaluation,
    providers: &Providers,
) -> Result<(Vec<Metric>, Vec<Judge>), JobError> {
    let mut metrics = Vec::new();
    let mut judges = Vec::new();
    for spec in &evaluation.metrics {
        if spec.name == LLM_JUDGE {
            let spec = JudgeSpec::parse(&spec.params).map_err(JobError::permanent)?;
            let provider = providers.get(&spec.provider).ok_or_else(|| {
                JobError::permanent(format!(
                    "judge provider {:?} is not configured on this worker",
                    spec.provider
                ))
            })?;
            let prompt = PromptName::parse(&spec.prompt_name())
                .map_err(|e| JobError::permanent(e.to_string()))?;
            let version = spec
                .prompt_version
                .as_deref()
                .and_then(|v| semver::Version::parse(v).ok())
                .map(VersionRef::Exact)
                .ok_or_else(|| JobError::permanent("a judge without a pinned prompt version"))?;
            judges.push(Judge {
                spec,
                provider,
                prompt,
                version,
            });
        } else {
            metrics.push(
                Metric::parse(&spec.name, &spec.params)
                    .map_err(|e| JobError::permanent(e.to_string()))?,
            );
        }
    }
    Ok((metrics, judges))
}

/// An LLM judge ready to call.
struct Judge {
    spec: JudgeSpec,
    provider: Arc<dyn LlmProvider>,
    prompt: PromptName,
    version: VersionRef,
}

#[async_trait]
impl JobRunner for EvaluationRunner {
    /// `evaluation.finished`: its status, each metric's mean, and whether
    /// it meets each gate on its prompt that uses its dataset.
    async fn finished_event(&self, job: &Job, status: JobStatus) -> Option<OutboxEvent> {
        let evaluation = match self.store.get_evaluation_of_job(job.id).await {
            Ok(evaluation) => evaluation,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the evaluation for its webhook event");
                return None;
            }
        };
        let scores = Scores::load(&self.store, &evaluation).await.ok();
        let means: serde_json::Map<String, Value> = scores
            .as_ref()
            .map(|s| {
                s.summaries()
                    .into_iter()
                    .map(|(metric, summary)| (metric, serde_json::json!(summary.mean)))
                    .collect()
            })
            .unwrap_or_default();
        let gates = match PromptName::parse(&evaluation.prompt_name) {
            Ok(name) => self
                .store
                .list_gates(evaluation.project_id, &name)
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let gates: Vec<Value> = gates
            .into_iter()
            .filter(|g| g.dataset_id == evaluation.dataset_id)
            .map(|g| {
                let passed = status == JobStatus::Succeeded
                    && scores
                        .as_ref()
                        .is_some_and(|s| s.gate_violations(&g.rules).is_empty());
                serde_json::json!({"label": g.label, "passed": passed})
            })
            .collect();
        Some(OutboxEvent::new(
            webhooks::EVALUATION_FINISHED,
            Some(&evaluation.prompt_name),
            serde_json::json!({
                "id": evaluation.id,
                "job_id": job.id,
                "status": status.as_str(),
                "prompt": evaluation.prompt_name,
                "version": evaluation.version.to_string(),
                "dataset": evaluation.dataset_name,
                "provider": evaluation.provider,
                "model": evaluation.model,
                "means": means,
                "gates": gates,
            }),
        ))
    }

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
        let (metrics, judges) = parse_metrics(&evaluation, &self.providers)?;
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
            judges: &judges,
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

        // Items run concurrently and hand their results to a writer that
        // stores whatever has completed in one transaction: calls keep
        // flowing while results are written, and a slow database costs a
        // few larger commits rather than one commit per item.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<ItemResult>(WRITE_BATCH);
        let concurrency = usize::try_from(evaluation.concurrency).unwrap_or(1).max(1);
        // Owns the only sender: the writer sees the end when this is done.
        let produce = async move {
            let context = &context;
            items
                .map_ok(|item| context.run(item))
                .try_buffer_unordered(concurrency)
                .try_for_each(|result| {
                    let sender = sender.clone();
                    async move {
                        if let Some(result) = result {
                            // Fails only when the writer stopped on a store
                            // error, which it reports.
                            let _ = sender.send(result).await;
                        }
                        Ok(())
                    }
                })
                .await
        };
        let store = self.store.clone();
        let write = async move {
            // Whether any item got an output, and the first failure otherwise:
            // an evaluation where every call failed (a wrong key, a dead
            // provider) fails as a whole instead of "succeeding" with no scores.
            let mut produced = !done_before.is_empty();
            let mut first_error = None;
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while receiver.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                for result in &batch {
                    produced |= result.output.is_some();
                    if first_error.is_none() {
                        first_error.clone_from(&result.error);
                    }
                }
                store.insert_results(job.id, evaluation.id, &batch).await?;
                batch.clear();
            }
            Ok::<_, StoreError>((produced, first_error))
        };
        let (produced, written) = tokio::join!(produce, write);
        produced.map_err(store_error)?;
        let (produced, first_error) = written.map_err(store_error)?;
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
    judges: &'a [Judge],
    provider: &'a dyn LlmProvider,
    renderer: &'a Renderer,
    stop: &'a StopSignal,
}

impl ItemContext<'_> {
    /// One item end to end; `None` when the job was told to stop first.
    #[tracing::instrument(name = "evaluate_item", skip_all, fields(promptreg.item.seq = item.seq))]
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
            details: Map::new(),
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
                None,
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
        let expected = item.expected.as_ref().map(super::text_of);
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
        for judge in self.judges {
            match self
                .judge(judge, &input, &completion.text, expected.as_deref())
                .await
            {
                Ok(verdict) => {
                    let key = judge.spec.score_key();
                    result.input_tokens += verdict.input_tokens;
                    result.output_tokens += verdict.output_tokens;
                    if let Some(cost) = verdict.cost_usd {
                        *result.cost_usd.get_or_insert(0.0) += cost;
                    }
                    result
                        .scores
                        .insert(key.clone(), Value::from(verdict.score));
                    result.details.insert(
                        key,
                        serde_json::json!({
                            "reason": verdict.reason,
                            "prompt": judge.prompt.as_str(),
                            "version": judge.spec.prompt_version,
                        }),
                    );
                }
                Err(e) => problems.push(format!("{}: {e}", judge.spec.score_key())),
            }
        }
        if !problems.is_empty() {
            result.error = Some(problems.join("; "));
        }
        result.output = Some(completion.text);
        Ok(Some(result))
    }
}

struct Verdict {
    score: f64,
    reason: String,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: Option<f64>,
}

impl ItemContext<'_> {
    /// Asks one judge about one output: its registry prompt, rendered with
    /// the input, output, reference and context, sent to its provider.
    async fn judge(
        &self,
        judge: &Judge,
        input: &Value,
        output: &str,
        expected: Option<&str>,
    ) -> Result<Verdict, String> {
        let variables = judge.spec.variables(input, output, expected);
        let rendered = self
            .renderer
            .render_version(
                self.evaluation.project_id,
                &judge.prompt,
                &judge.version,
                &variables,
                None,
            )
            .await
            .map_err(|e| format!("judge prompt {}: {e}", judge.prompt))?;
        let request = CompletionRequest {
            rendered: rendered.rendered,
            model: judge.spec.model.clone(),
            params: rendered.version.content.model_config.clone(),
            output_schema: None,
        };
        let completion = judge
            .provider
            .complete(&request)
            .await
            .map_err(|e| format!("judge provider ({}): {e}", e.code()))?;
        let (score, reason) = parse_verdict(&completion.text)?;
        Ok(Verdict {
            score,
            reason,
            input_tokens: completion.usage.input_tokens as i64,
            output_tokens: completion.usage.output_tokens as i64,
            cost_usd: completion.cost_usd,
        })
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}
