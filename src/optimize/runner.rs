//! The optimization job. Scores the baseline, then iterates: the strategy
//! proposes candidates and `halving` scores them. Stops at the target
//! score, out of patience, at `max_iterations` or when the budget is spent,
//! and `result` writes the best candidate as a new version when it beats
//! the baseline.
//!
//! Every step saves the state before the next begins, and each step reads
//! the state to see whether it is already done: a job resumed on another
//! worker continues from the last completed step.

use std::sync::Arc;

use async_trait::async_trait;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::fewshot::demo_pool;
use super::scoring::{mean, measures, metric_means};
use super::{strategy, Context, Optimizer, Outcome, Scorer, StepError};
use crate::domain::jobs::{Job, JobStatus};
use crate::domain::optimization::{
    body_tokens, Candidate, Iteration, Optimization, OptimizationState, StopReason, StrategyName,
};
use crate::domain::webhooks::{self, OutboxEvent};
use crate::domain::{DatasetItem, PromptName, Version, VersionRef};
use crate::eval::Metric;
use crate::providers::{CallMeter, Providers};
use crate::services::render::Renderer;
use crate::services::Registry;
use crate::store::{Store, StoreError};
use crate::worker::{Finished, JobError, JobRunner, StopSignal};

/// Items read from the store at once.
const PAGE: u32 = 500;
/// Training items a candidate is first scored on, at least (all when fewer).
pub(super) const MIN_MINIBATCH: usize = 4;
/// Scores closer than this are equal.
pub(super) const EPSILON: f64 = 1e-9;

pub struct OptimizationRunner {
    pub(super) store: Arc<dyn Store>,
    pub(super) registry: Arc<Registry>,
    renderer: Arc<Renderer>,
    providers: Arc<Providers>,
}

impl OptimizationRunner {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        renderer: Arc<Renderer>,
        providers: Arc<Providers>,
    ) -> Self {
        Self {
            store,
            registry,
            renderer,
            providers,
        }
    }
}

/// Database trouble may pass; a prompt or optimization that changed under
/// the job (archived, deleted, renumbered) will not.
pub(super) fn store_error(e: StoreError) -> JobError {
    match e {
        StoreError::Database(_) | StoreError::Unavailable(_) | StoreError::JobNotHeld => {
            JobError::retryable(format!("store: {e}"))
        }
        other => JobError::permanent(other.to_string()),
    }
}

/// Splits items into training and validation, shuffled by `seed`; each
/// side gets at least one item.
pub fn split(
    mut items: Vec<DatasetItem>,
    train: f64,
    seed: u64,
) -> (Vec<DatasetItem>, Vec<DatasetItem>) {
    items.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let (take, _) = split_sizes(items.len(), train);
    let val = items.split_off(take);
    (items, val)
}

/// Training and validation sizes of `n` items.
pub fn split_sizes(n: usize, train: f64) -> (usize, usize) {
    let take = ((n as f64 * train).round() as usize)
        .clamp(1, n.saturating_sub(1).max(1))
        .min(n);
    (take, n - take)
}

#[async_trait]
impl JobRunner for OptimizationRunner {
    /// `optimization.finished`: its status, the result version (if any)
    /// and the baseline's and best candidate's validation scores.
    async fn finished_event(&self, job: &Job, status: JobStatus) -> Option<OutboxEvent> {
        let optimization = match self.store.get_optimization_of_job(job.id).await {
            Ok(optimization) => optimization,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the optimization for its webhook event");
                return None;
            }
        };
        let state = &optimization.state;
        Some(OutboxEvent::new(
            webhooks::OPTIMIZATION_FINISHED,
            Some(&optimization.prompt_name),
            serde_json::json!({
                "id": optimization.id,
                "job_id": job.id,
                "status": status.as_str(),
                "prompt": optimization.prompt_name,
                "version": optimization.version.to_string(),
                "dataset": optimization.dataset_name,
                "result_version": optimization.result_version.as_ref().map(ToString::to_string),
                "scores": {
                    "baseline": state.baseline.val_score,
                    "best": state.best(optimization.spec.strategy).and_then(|c| c.val_score),
                },
                "stop_reason": state.stop_reason,
            }),
        ))
    }

    async fn run(&self, job: &Job, stop: &StopSignal) -> Result<Finished, JobError> {
        let optimization = self
            .store
            .get_optimization_of_job(job.id)
            .await
            .map_err(store_error)?;
        let spec = &optimization.spec;
        let project = optimization.project_id;
        let name = PromptName::parse(&optimization.prompt_name)
            .map_err(|e| JobError::permanent(e.to_string()))?;
        let base = self
            .registry
            .get_version(
                project,
                &name,
                &VersionRef::Exact(optimization.version.clone()),
            )
            .await
            .map_err(store_error)?;
        let state = optimization.state.clone();
        let meter = Arc::new(CallMeter::new(
            spec.budget.max_calls,
            spec.budget.max_cost_usd,
            state.calls,
            state.cost_usd,
        ));
        let configured = |provider: &str| {
            self.providers.get(provider).ok_or_else(|| {
                JobError::permanent(format!(
                    "provider {provider:?} is not configured on this worker"
                ))
            })
        };
        let optimizer = match (&spec.optimizer, spec.strategy) {
            (_, strategy) if !strategy.needs_optimizer() => None,
            (Some(choice), _) => Some(Optimizer {
                provider: configured(&choice.provider)?,
                model: choice.model.clone(),
                params: choice.params.clone(),
                meter: meter.clone(),
                stop: stop.clone(),
            }),
            (None, strategy) => {
                return Err(JobError::permanent(format!(
                    "{} needs an optimizer model",
                    strategy.as_str()
                )))
            }
        };
        let scorer = Scorer {
            renderer: self.renderer.clone(),
            project,
            base: base.content.clone(),
            target: configured(&spec.target.provider)?,
            model: spec.target.model.clone(),
            params: spec.target.params.clone(),
            metrics: spec
                .objective
                .metrics
                .iter()
                .map(|m| {
                    Metric::parse(&m.metric.name, &m.metric.params)
                        .map(|metric| (metric, m.weight))
                        .map_err(|e| JobError::permanent(e.to_string()))
                })
                .collect::<Result<_, _>>()?,
            meter: meter.clone(),
            concurrency: spec.concurrency as usize,
            stop: stop.clone(),
        };
        let items = self.items(&optimization).await?;
        let (train, val) = split(items, spec.split.train, spec.split.seed);
        let mut run = Run {
            runner: self,
            owner: job.lease_owner.clone().unwrap_or_default(),
            optimization: &optimization,
            base: &base,
            train: Arc::new(train),
            val: Arc::new(val),
            scorer,
            optimizer,
            meter,
            state,
        };
        if !run.state.finished {
            match run.iterate().await {
                Ok(()) => {}
                Err(StepError::Budget) => run.state.stop_reason = Some(StopReason::Budget),
                Err(StepError::Stopped) => {
                    // Keep the calls made, for a resumed job's budget.
                    let _ = run.save().await;
                    return Ok(Finished::Stopped);
                }
                Err(StepError::Failed(e)) => {
                    let _ = run.save().await;
                    return Err(e);
                }
            }
            run.state.finished = true;
        }
        if stop.is_stopped() {
            let _ = run.save().await;
            return Ok(Finished::Stopped);
        }
        match run.finish(&name).await {
            Ok(()) => Ok(Finished::Succeeded),
            // Cancelled or taken over at the last moment: no version.
            Err(StepError::Stopped) => Ok(Finished::Stopped),
            Err(StepError::Budget) => Ok(Finished::Succeeded),
            Err(StepError::Failed(e)) => Err(e),
        }
    }
}

impl OptimizationRunner {
    async fn items(&self, optimization: &Optimization) -> Result<Vec<DatasetItem>, JobError> {
        let mut items = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .list_items_for_run(
                    optimization.dataset_id,
                    after,
                    optimization.item_count,
                    PAGE,
                )
                .await
                .map_err(store_error)?;
            let Some(last) = page.last() else {
                return Ok(items);
            };
            after = last.seq;
            items.extend(page);
        }
    }
}

/// One attempt at one optimization.
pub(super) struct Run<'a> {
    pub(super) runner: &'a OptimizationRunner,
    /// This worker, as the job's lease names it: saves need to hold it.
    pub(super) owner: String,
    pub(super) optimization: &'a Optimization,
    pub(super) base: &'a Version,
    pub(super) train: Arc<Vec<DatasetItem>>,
    pub(super) val: Arc<Vec<DatasetItem>>,
    pub(super) scorer: Scorer,
    pub(super) optimizer: Option<Optimizer>,
    pub(super) meter: Arc<CallMeter>,
    pub(super) state: OptimizationState,
}

impl Run<'_> {
    pub(super) fn completed_iterations(&self) -> usize {
        self.state.iterations.iter().filter(|i| i.complete).count()
    }

    /// Saves the state; a worker that lost the job stops here.
    pub(super) async fn save(&mut self) -> Result<(), StepError> {
        self.state.calls = self.meter.attempts();
        self.state.cost_usd = self.meter.cost_usd();
        self.runner
            .store
            .save_optimization_state(
                self.optimization.id,
                &self.owner,
                &self.state,
                self.completed_iterations() as i64,
            )
            .await
            .map_err(step_error)
    }

    /// The loop, from wherever the saved state left it.
    async fn iterate(&mut self) -> Result<(), StepError> {
        let spec = &self.optimization.spec;
        let base = self.base.content.body.clone();
        if self.state.baseline.train_score.is_none() {
            let train: Vec<&DatasetItem> = self.train.iter().collect();
            let outcomes = self.scorer.score(&base, &train).await?;
            if let Some(error) = all_failed(&outcomes) {
                return Err(StepError::Failed(JobError::permanent(format!(
                    "the baseline produced no output on any training item; the first error: {error}"
                ))));
            }
            let baseline = &mut self.state.baseline;
            baseline.train_score = Some(mean(&outcomes));
            baseline.measurements.train_measures = measures(&outcomes);
            baseline.template_tokens = Some(body_tokens(&base));
            if spec.strategy.uses_demos() {
                self.state.demos = demo_pool(&self.train, &outcomes);
            }
            self.save().await?;
        }
        if self.state.baseline.val_score.is_none() {
            let val: Vec<&DatasetItem> = self.val.iter().collect();
            let outcomes = self.scorer.score(&base, &val).await?;
            let baseline = &mut self.state.baseline;
            baseline.val_score = Some(mean(&outcomes));
            baseline.measurements.val_measures = measures(&outcomes);
            baseline.measurements.val_metric_scores =
                metric_means(&outcomes, spec.objective.metrics.len());
            baseline.measurements.violations = spec
                .objective
                .violations(&baseline.measured(true), &baseline.measured(true));
            self.save().await?;
        }
        let strategy = strategy(spec.strategy);
        let description = spec.objective.describe();
        loop {
            if let Some(reason) = self.stop_reason() {
                self.state.stop_reason = Some(reason);
                return Ok(());
            }
            if self.state.iterations.last().is_none_or(|i| i.complete) {
                let number = self.state.iterations.len() as u32 + 1;
                let context = Context {
                    base: &base,
                    engine: self.base.content.engine,
                    variables: &self.base.variables,
                    state: &self.state,
                    train: &self.train,
                    count: spec.candidates_per_iteration as usize,
                    iteration: number,
                    seed: spec.split.seed,
                    num_demos: spec.num_demos as usize,
                    metric: &description,
                    objective: &spec.objective,
                    scorer: &self.scorer,
                    optimizer: self.optimizer.as_ref(),
                };
                let mut proposal = strategy.propose(&context).await?;
                self.screen(&mut proposal.candidates);
                if let Some(instructions) = proposal.instructions {
                    self.state.instructions = instructions;
                }
                if let Some(sets) = proposal.demo_sets {
                    self.state.demo_sets = sets;
                }
                self.state.iterations.push(Iteration {
                    number,
                    candidates: proposal.candidates,
                    diagnosis: proposal.diagnosis,
                    complete: false,
                    calls: 0,
                    cost_usd: 0.0,
                });
                self.save().await?;
            }
            self.score_iteration().await?;
        }
    }

    /// Discards, before they cost a call, the candidates whose own length
    /// breaks a constraint, and (`compress`) those not shorter than the base.
    fn screen(&self, candidates: &mut [Candidate]) {
        let spec = &self.optimization.spec;
        let base_tokens = self.state.baseline.template_tokens.unwrap_or(u32::MAX);
        for candidate in candidates.iter_mut().filter(|c| c.discarded.is_none()) {
            let broken = spec
                .objective
                .template_violations(candidate.template_tokens, base_tokens);
            if !broken.is_empty() {
                candidate.discarded = Some(format!("breaks a constraint: {}", broken.join("; ")));
            } else if spec.strategy == StrategyName::Compress
                && candidate.template_tokens >= base_tokens
            {
                candidate.discarded = Some(format!(
                    "not shorter than the base ({} tokens, the base has {base_tokens})",
                    candidate.template_tokens
                ));
            }
        }
    }

    fn stop_reason(&self) -> Option<StopReason> {
        let spec = &self.optimization.spec;
        let best = self.state.best_val_score();
        if let (Some(target), Some(best)) = (spec.target_score, best) {
            if best + EPSILON >= target {
                return Some(StopReason::Target);
            }
        }
        if self.state.stale_iterations >= spec.patience {
            return Some(StopReason::Patience);
        }
        if self.completed_iterations() >= spec.max_iterations as usize {
            return Some(StopReason::MaxIterations);
        }
        if self.meter.exhausted() {
            return Some(StopReason::Budget);
        }
        None
    }
}

pub(super) fn step_error(e: StoreError) -> StepError {
    match e {
        StoreError::JobNotHeld => StepError::Stopped,
        other => StepError::Failed(store_error(other)),
    }
}

/// The first error when no outcome has an output.
fn all_failed(outcomes: &[Outcome]) -> Option<String> {
    if outcomes.iter().any(|o| o.output.is_some()) {
        return None;
    }
    outcomes.iter().find_map(|o| o.error.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<DatasetItem> {
        (0..n)
            .map(|i| DatasetItem {
                id: uuid::Uuid::now_v7(),
                seq: i as i64 + 1,
                input: serde_json::Map::new(),
                expected: None,
                metadata: serde_json::Map::new(),
                created_at: chrono::Utc::now(),
            })
            .collect()
    }

    #[test]
    fn the_split_is_seeded_and_leaves_both_sides_an_item() {
        let (train, val) = split(items(10), 0.6, 7);
        assert_eq!((train.len(), val.len()), (6, 4));
        let (again, _) = split(items(10), 0.6, 7);
        let seqs = |v: &[DatasetItem]| v.iter().map(|i| i.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&train), seqs(&again));
        let (other, _) = split(items(10), 0.6, 8);
        assert_ne!(seqs(&train), seqs(&other));
        let (train, val) = split(items(2), 0.99, 1);
        assert_eq!((train.len(), val.len()), (1, 1));
    }
}
