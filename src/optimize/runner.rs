//! The optimization job. Scores the baseline, then iterates: propose
//! candidates, score them on a training minibatch, the better half on the
//! whole training split, the iteration's best on the validation split (the
//! score that decides). Stops at the target score, out of patience, at
//! `max_iterations` or when the budget is spent, and writes the best
//! candidate as a new version when it beats the baseline.
//!
//! Every step saves the state before the next begins, and each step reads
//! the state to see whether it is already done: a job resumed on another
//! worker continues from the last completed step.

use std::sync::Arc;

use async_trait::async_trait;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Map};

use super::fewshot::demo_pool;
use super::scoring::mean;
use super::{rng, strategy, Context, Optimizer, Outcome, Scorer, StepError};
use crate::domain::auth::Actor;
use crate::domain::content::PromptBody;
use crate::domain::jobs::Job;
use crate::domain::optimization::{
    Candidate, Iteration, Optimization, OptimizationState, Promotion, StopReason, StrategyName,
};
use crate::domain::{DatasetItem, LabelName, PromptName, Version, VersionRef};
use crate::eval::report::{check_gate, GateVerdict};
use crate::eval::Metric;
use crate::providers::{CallMeter, Providers};
use crate::registry::Registry;
use crate::render::Renderer;
use crate::store::{NewVersion, Store, StoreError};
use crate::worker::{Finished, JobError, JobRunner, StopSignal};

/// Items read from the store at once.
const PAGE: u32 = 500;
/// Training items a candidate is first scored on, at least (all when fewer).
const MIN_MINIBATCH: usize = 4;
const PURPOSE_MINIBATCH: u64 = 1;
/// Scores closer than this are equal.
const EPSILON: f64 = 1e-9;

pub struct OptimizationRunner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    renderer: Arc<Renderer>,
    providers: Arc<Providers>,
}

impl OptimizationRunner {
    pub fn new(
        registry: Arc<Registry>,
        renderer: Arc<Renderer>,
        providers: Arc<Providers>,
    ) -> Self {
        Self {
            store: registry.store().clone(),
            registry,
            renderer,
            providers,
        }
    }
}

/// Database trouble may pass; a prompt or optimization that changed under
/// the job (archived, deleted, renumbered) will not.
fn store_error(e: StoreError) -> JobError {
    match e {
        StoreError::Database(_) | StoreError::JobNotHeld => {
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

/// Training items a candidate is scored on first.
fn minibatch_size(train: usize) -> usize {
    train.div_ceil(4).max(MIN_MINIBATCH).min(train)
}

#[async_trait]
impl JobRunner for OptimizationRunner {
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
            (_, StrategyName::Fewshot) => None,
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
            metric: Metric::parse(&spec.metric.name, &spec.metric.params)
                .map_err(|e| JobError::permanent(e.to_string()))?,
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
struct Run<'a> {
    runner: &'a OptimizationRunner,
    /// This worker, as the job's lease names it: saves need to hold it.
    owner: String,
    optimization: &'a Optimization,
    base: &'a Version,
    train: Arc<Vec<DatasetItem>>,
    val: Arc<Vec<DatasetItem>>,
    scorer: Scorer,
    optimizer: Option<Optimizer>,
    meter: Arc<CallMeter>,
    state: OptimizationState,
}

impl Run<'_> {
    fn completed_iterations(&self) -> usize {
        self.state.iterations.iter().filter(|i| i.complete).count()
    }

    /// Saves the state; a worker that lost the job stops here.
    async fn save(&mut self) -> Result<(), StepError> {
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
            self.state.baseline.train_score = Some(mean(&outcomes));
            if spec.strategy == StrategyName::Fewshot {
                self.state.demos = demo_pool(&self.train, &outcomes);
            }
            self.save().await?;
        }
        if self.state.baseline.val_score.is_none() {
            let val: Vec<&DatasetItem> = self.val.iter().collect();
            let outcomes = self.scorer.score(&base, &val).await?;
            self.state.baseline.val_score = Some(mean(&outcomes));
            self.save().await?;
        }
        let strategy = strategy(spec.strategy);
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
                    metric: &spec.metric.name,
                    scorer: &self.scorer,
                    optimizer: self.optimizer.as_ref(),
                };
                let proposal = strategy.propose(&context).await?;
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

    /// Successive halving over the last iteration's candidates: each rung
    /// skips what a saved state shows done.
    async fn score_iteration(&mut self) -> Result<(), StepError> {
        let Some(iteration) = self.state.iterations.last() else {
            return Ok(());
        };
        let number = iteration.number;
        let before = self.best_before_last();
        // Owned handles: the items stay borrowed while candidates are updated.
        let (train, val) = (self.train.clone(), self.val.clone());
        let live: Vec<usize> = (0..iteration.candidates.len())
            .filter(|&i| iteration.candidates[i].discarded.is_none())
            .collect();

        // Rung 1: every candidate on a minibatch of the training split.
        let size = minibatch_size(train.len());
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng(
            self.optimization.spec.split.seed,
            number,
            PURPOSE_MINIBATCH,
        ));
        let (in_batch, rest) = order.split_at(size);
        let batch: Vec<&DatasetItem> = in_batch.iter().map(|&i| &train[i]).collect();
        let todo: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| iteration.candidates[i].minibatch_score.is_none())
            .collect();
        if !todo.is_empty() {
            let scored = self.score(&todo, &batch).await?;
            for (i, outcomes) in todo.iter().zip(scored) {
                let candidate = self.candidate(*i);
                let score = mean(&outcomes);
                candidate.minibatch_score = Some(score);
                candidate.train_score = Some(score);
                candidate.train_items = batch.len() as u32;
            }
            self.save().await?;
        }

        // Rung 2: the better half on the rest of the training split.
        let mut ranked = live.clone();
        let candidates = &self.last().candidates;
        ranked.sort_by(|&a, &b| {
            let score = |i: usize| candidates[i].minibatch_score.unwrap_or(0.0);
            score(b).total_cmp(&score(a))
        });
        ranked.truncate(live.len().div_ceil(2));
        let rest: Vec<&DatasetItem> = rest.iter().map(|&i| &train[i]).collect();
        let todo: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&i| (candidates[i].train_items as usize) < train.len())
            .collect();
        if !todo.is_empty() {
            let scored = self.score(&todo, &rest).await?;
            let all = train.len() as f64;
            let batch_len = batch.len() as f64;
            for (i, outcomes) in todo.iter().zip(scored) {
                let candidate = self.candidate(*i);
                let batch_sum = candidate.minibatch_score.unwrap_or(0.0) * batch_len;
                let rest_sum: f64 = outcomes.iter().map(|o| o.score).sum();
                candidate.train_score = Some((batch_sum + rest_sum) / all);
                candidate.train_items = all as u32;
            }
            self.save().await?;
        }

        // Rung 3: the iteration's best on training, on validation.
        let candidates = &self.last().candidates;
        let leader = ranked.iter().copied().max_by(|&a, &b| {
            let score = |i: usize| candidates[i].train_score.unwrap_or(0.0);
            // Ties go to the earlier candidate.
            score(a).total_cmp(&score(b)).then(b.cmp(&a))
        });
        if let Some(leader) = leader.filter(|&i| candidates[i].val_score.is_none()) {
            let val: Vec<&DatasetItem> = val.iter().collect();
            let scored = self.score(&[leader], &val).await?;
            self.candidate(leader).val_score = scored.first().map(|o| mean(o));
            self.save().await?;
        }

        let best_now = self
            .last()
            .candidates
            .iter()
            .filter_map(|c| c.val_score)
            .fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| b.max(v)))
            });
        let improved = match (best_now, before) {
            (Some(now), Some(before)) => now > before + EPSILON,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.state.stale_iterations = if improved {
            0
        } else {
            self.state.stale_iterations + 1
        };
        if let Some(last) = self.state.iterations.last_mut() {
            last.complete = true;
            last.calls = self.meter.attempts();
            last.cost_usd = self.meter.cost_usd();
        }
        self.save().await?;
        Ok(())
    }

    /// The best validation score before the last iteration.
    fn best_before_last(&self) -> Option<f64> {
        let earlier = OptimizationState {
            baseline: self.state.baseline,
            iterations: self.state.iterations[..self.state.iterations.len().saturating_sub(1)]
                .to_vec(),
            ..Default::default()
        };
        earlier.best_val_score()
    }

    fn last(&self) -> &Iteration {
        self.state
            .iterations
            .last()
            .expect("score_iteration runs with an iteration")
    }

    fn candidate(&mut self, index: usize) -> &mut Candidate {
        let last = self.state.iterations.len() - 1;
        &mut self.state.iterations[last].candidates[index]
    }

    /// Outcomes of the last iteration's candidates `indices` on `items`.
    async fn score(
        &self,
        indices: &[usize],
        items: &[&DatasetItem],
    ) -> Result<Vec<Vec<Outcome>>, StepError> {
        let bodies: Vec<PromptBody> = indices
            .iter()
            .map(|&i| PromptBody::from(self.last().candidates[i].template.clone()))
            .collect();
        let refs: Vec<&PromptBody> = bodies.iter().collect();
        self.scorer.score_many(&refs, items).await
    }

    /// Writes the result version (once), moves the label when asked and
    /// earned, and saves the final state.
    async fn finish(&mut self, name: &PromptName) -> Result<(), StepError> {
        let optimization = self.optimization;
        let spec = &optimization.spec;
        let baseline = self.state.baseline.val_score;
        let winner = self
            .state
            .best()
            .filter(|best| match (best.val_score, baseline) {
                (Some(best), Some(baseline)) => best > baseline + EPSILON,
                (Some(_), None) => true,
                _ => false,
            })
            .cloned();
        let actor = Actor {
            key_id: None,
            key_name: optimization
                .created_by
                .clone()
                .unwrap_or_else(|| "system".to_owned()),
        };
        let result = match &winner {
            None => None,
            Some(winner) => Some((
                optimization.project_id,
                name.clone(),
                self.new_version(winner)?,
                actor.clone(),
            )),
        };
        self.state.calls = self.meter.attempts();
        self.state.cost_usd = self.meter.cost_usd();
        let version = self
            .runner
            .registry
            .finish_optimization(
                optimization.id,
                self.base.prompt_id,
                &self.owner,
                &self.state,
                result,
            )
            .await
            .map_err(step_error)?;
        if let Some(label) = &spec.promote_to {
            let promotion = self
                .promote(name, label, version.as_ref(), winner.as_ref(), &actor)
                .await?;
            self.state.promotion = Some(promotion);
            self.save().await?;
        }
        Ok(())
    }

    fn new_version(&self, winner: &Candidate) -> Result<NewVersion, JobError> {
        let optimization = self.optimization;
        let spec = &optimization.spec;
        let body = PromptBody::from(winner.template.clone());
        let content = crate::domain::PromptContent {
            body,
            ..self.base.content.clone()
        };
        let variables = crate::template::variables(content.engine, &content.body)
            .map_err(|e| JobError::permanent(format!("the best candidate: {e}")))?;
        let (baseline, best) = (
            self.state.baseline.val_score.unwrap_or(0.0),
            winner.val_score.unwrap_or(0.0),
        );
        let mut metadata = Map::new();
        for (key, value) in [
            ("optimization_id", json!(optimization.id)),
            ("job_id", json!(optimization.job.id)),
            ("strategy", json!(spec.strategy.as_str())),
            ("metric", json!(spec.metric.name)),
            ("dataset", json!(optimization.dataset_name)),
            ("baseline_val_score", json!(baseline)),
            ("best_val_score", json!(best)),
        ] {
            metadata.insert(key.to_owned(), value);
        }
        Ok(NewVersion {
            content,
            variables,
            message: Some(format!(
                "Optimized by {} from {} on {}: validation {} {baseline:.3} -> {best:.3} (optimization {})",
                spec.strategy.as_str(),
                optimization.version,
                optimization.dataset_name,
                spec.metric.name,
                optimization.id
            )),
            metadata,
            version: None,
            bump: None,
            parent: Some(optimization.version.clone()),
            expected_latest: None,
            labels: Vec::new(),
        })
    }

    async fn promote(
        &self,
        name: &PromptName,
        label: &str,
        version: Option<&semver::Version>,
        winner: Option<&Candidate>,
        actor: &Actor,
    ) -> Result<Promotion, JobError> {
        let optimization = self.optimization;
        let not_moved = |reason: String| Promotion {
            label: label.to_owned(),
            moved: false,
            reason: Some(reason),
        };
        let (Some(version), Some(best)) = (version, winner.and_then(|w| w.val_score)) else {
            return Ok(not_moved("no candidate beat the baseline".to_owned()));
        };
        let gain = best - self.state.baseline.val_score.unwrap_or(0.0);
        let min = optimization.spec.min_improvement;
        if gain + EPSILON < min {
            return Ok(not_moved(format!(
                "the validation score improved by {gain:.4}, less than min_improvement {min}"
            )));
        }
        let project = optimization.project_id;
        let store = &self.runner.store;
        if let Some(gate) = store
            .find_gate(project, name, label)
            .await
            .map_err(store_error)?
        {
            let created = self
                .runner
                .registry
                .get_version(project, name, &VersionRef::Exact(version.clone()))
                .await
                .map_err(store_error)?;
            match check_gate(store, &gate, &created).await.map_err(store_error)? {
                GateVerdict::Passed => {}
                GateVerdict::NotEvaluated => {
                    return Ok(not_moved(format!(
                        "label {label:?} is gated: version {version} has no succeeded evaluation on dataset {:?}; evaluate it, then move the label",
                        gate.dataset_name
                    )))
                }
                GateVerdict::Broken { violations, .. } => {
                    let why: Vec<String> = violations.into_iter().map(|(_, why)| why).collect();
                    return Ok(not_moved(format!(
                        "label {label:?} is gated: {}",
                        why.join("; ")
                    )));
                }
            }
        }
        let label_name = LabelName::parse(label).map_err(|e| JobError::permanent(e.to_string()))?;
        self.runner
            .registry
            .set_label(project, name, &label_name, version, actor)
            .await
            .map_err(store_error)?;
        Ok(Promotion {
            label: label.to_owned(),
            moved: true,
            reason: None,
        })
    }
}

fn step_error(e: StoreError) -> StepError {
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
                input: Map::new(),
                expected: None,
                metadata: Map::new(),
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

    #[test]
    fn minibatches_are_a_quarter_but_not_tiny() {
        assert_eq!(minibatch_size(3), 3);
        assert_eq!(minibatch_size(8), 4);
        assert_eq!(minibatch_size(40), 10);
    }
}
