//! One iteration's scoring by successive halving: every candidate on a
//! training minibatch, the better half on the rest of the training split,
//! the best of those on validation. Each rung saves its scores, and skips
//! the candidates a resumed job finds already scored.

use rand::seq::SliceRandom;

use super::runner::{Run, EPSILON, MIN_MINIBATCH};
use super::scoring::{mean, measures, metric_means};
use super::{rng, Outcome, StepError};
use crate::domain::content::PromptBody;
use crate::domain::optimization::{Candidate, Iteration, StrategyName};
use crate::domain::DatasetItem;
use crate::worker::JobError;

/// How halving orders candidates: those that meet the constraints first,
/// then (`compress`) the shorter, then the better score.
#[derive(Debug, Clone, Copy)]
struct Preference {
    fits: bool,
    shortness: f64,
    score: f64,
}

impl Preference {
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering {
        self.fits
            .cmp(&other.fits)
            .then(self.shortness.total_cmp(&other.shortness))
            .then(self.score.total_cmp(&other.score))
    }
}

/// Which shuffle picks an iteration's minibatch.
const PURPOSE_MINIBATCH: u64 = 1;

/// Training items a candidate is scored on first.
pub(super) fn minibatch_size(train: usize) -> usize {
    train.div_ceil(4).max(MIN_MINIBATCH).min(train)
}

/// A saved state this code could not have written. Permanent: a retry
/// reads the same state.
fn inconsistent(what: String) -> StepError {
    StepError::Failed(JobError::permanent(format!(
        "the saved optimization state is inconsistent: {what}"
    )))
}

fn no_iteration() -> StepError {
    inconsistent("there is no iteration to score".to_owned())
}

fn no_candidate(number: u32, index: usize) -> StepError {
    inconsistent(format!("iteration {number} has no candidate {index}"))
}

impl Run<'_> {
    /// Successive halving over the last iteration's candidates: each rung
    /// skips what a saved state shows done.
    pub(super) async fn score_iteration(&mut self) -> Result<(), StepError> {
        let iteration = self.last()?;
        let number = iteration.number;
        if number == 0 {
            return Err(inconsistent("an iteration is numbered 0".to_owned()));
        }
        let strategy = self.optimization.spec.strategy;
        // Owned handles: the items stay borrowed while candidates are updated.
        let (train, val) = (self.train.clone(), self.val.clone());
        let live: Vec<usize> = iteration
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.discarded.is_none())
            .map(|(i, _)| i)
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
        let batch: Vec<&DatasetItem> = in_batch.iter().filter_map(|&i| train.get(i)).collect();
        let mut todo = Vec::new();
        for &i in &live {
            if self.candidate(i)?.minibatch_score.is_none() {
                todo.push(i);
            }
        }
        if !todo.is_empty() {
            let scored = self.score(&todo, &batch).await?;
            for (i, outcomes) in todo.iter().zip(scored) {
                let candidate = self.candidate_mut(*i)?;
                let score = mean(&outcomes);
                candidate.minibatch_score = Some(score);
                candidate.train_score = Some(score);
                candidate.train_items = batch.len() as u32;
                candidate.measurements.train_measures = measures(&outcomes);
            }
            self.save().await?;
        }

        // Rung 2: the better half on the rest of the training split.
        let mut ranked = self.preferences(&live, |c| c.minibatch_score)?;
        // Stable: equal keys keep the earlier candidate first.
        ranked.sort_by(|a, b| b.1.cmp_key(&a.1));
        ranked.truncate(live.len().div_ceil(2));
        let ranked: Vec<usize> = ranked.into_iter().map(|(i, _)| i).collect();
        let rest: Vec<&DatasetItem> = rest.iter().filter_map(|&i| train.get(i)).collect();
        let mut todo = Vec::new();
        for &i in &ranked {
            if (self.candidate(i)?.train_items as usize) < train.len() {
                todo.push(i);
            }
        }
        if !todo.is_empty() {
            let scored = self.score(&todo, &rest).await?;
            let all = train.len() as f64;
            let batch_len = batch.len() as f64;
            for (i, outcomes) in todo.iter().zip(scored) {
                let candidate = self.candidate_mut(*i)?;
                let batch_sum = candidate.minibatch_score.unwrap_or(0.0) * batch_len;
                let rest_sum: f64 = outcomes.iter().map(|o| o.score).sum();
                candidate.train_score = Some((batch_sum + rest_sum) / all);
                candidate.train_items = all as u32;
            }
            self.save().await?;
        }

        // Rung 3: the iteration's best on training, on validation.
        let leader = self
            .preferences(&ranked, |c| c.train_score)?
            .into_iter()
            // Ties go to the earlier candidate.
            .max_by(|a, b| a.1.cmp_key(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        if let Some(leader) = leader {
            if self.candidate(leader)?.val_score.is_none() {
                let val: Vec<&DatasetItem> = val.iter().collect();
                let scored = self.score(&[leader], &val).await?;
                let outcomes = scored.into_iter().next().unwrap_or_default();
                let metrics = self.optimization.spec.objective.metrics.len();
                let candidate = self.candidate_mut(leader)?;
                candidate.val_score = Some(mean(&outcomes));
                candidate.measurements.val_measures = measures(&outcomes);
                candidate.measurements.val_metric_scores = metric_means(&outcomes, metrics);
                let violations = self.violations(self.candidate(leader)?);
                self.candidate_mut(leader)?.measurements.violations = violations;
                self.save().await?;
            }
        }

        let improved = self.state.improved_in(number, strategy);
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

    /// The iteration being scored: the last one.
    fn last(&self) -> Result<&Iteration, StepError> {
        self.state.iterations.last().ok_or_else(no_iteration)
    }

    /// Candidate `index` of the iteration being scored.
    fn candidate(&self, index: usize) -> Result<&Candidate, StepError> {
        let iteration = self.last()?;
        iteration
            .candidates
            .get(index)
            .ok_or_else(|| no_candidate(iteration.number, index))
    }

    fn candidate_mut(&mut self, index: usize) -> Result<&mut Candidate, StepError> {
        let iteration = self.state.iterations.last_mut().ok_or_else(no_iteration)?;
        let number = iteration.number;
        iteration
            .candidates
            .get_mut(index)
            .ok_or_else(|| no_candidate(number, index))
    }

    /// Each of candidates `indices` with how much halving prefers it by
    /// `score` (0 when it has none). Whether it fits is judged on its
    /// minibatch measures and, for `compress`, on that same `score`: a
    /// resumed rung ranks exactly as the first run did.
    fn preferences(
        &self,
        indices: &[usize],
        score: impl Fn(&Candidate) -> Option<f64>,
    ) -> Result<Vec<(usize, Preference)>, StepError> {
        let spec = &self.optimization.spec;
        let compress = spec.strategy == StrategyName::Compress;
        let baseline = &self.state.baseline;
        indices
            .iter()
            .map(|&i| {
                let candidate = self.candidate(i)?;
                let score = score(candidate).unwrap_or(0.0);
                let measured_fit = spec
                    .objective
                    .violations(&candidate.measured(false), &baseline.measured(false))
                    .is_empty();
                let kept = !compress
                    || baseline
                        .train_score
                        .is_none_or(|base| score + spec.max_drop + EPSILON >= base);
                Ok((
                    i,
                    Preference {
                        fits: measured_fit && kept,
                        shortness: if compress {
                            -f64::from(candidate.template_tokens)
                        } else {
                            0.0
                        },
                        score,
                    },
                ))
            })
            .collect()
    }

    /// The constraints `candidate` breaks on validation; for `compress`,
    /// also a score more than `max_drop` below the baseline's.
    fn violations(&self, candidate: &Candidate) -> Vec<String> {
        let spec = &self.optimization.spec;
        let baseline = &self.state.baseline;
        let mut broken = spec
            .objective
            .violations(&candidate.measured(true), &baseline.measured(true));
        if spec.strategy == StrategyName::Compress {
            if let (Some(score), Some(base)) = (candidate.val_score, baseline.val_score) {
                if score + spec.max_drop + EPSILON < base {
                    broken.push(format!(
                        "the score {score:.4} is more than max_drop {} below the baseline's {base:.4}",
                        spec.max_drop
                    ));
                }
            }
        }
        broken
    }

    /// Outcomes of the last iteration's candidates `indices` on `items`.
    async fn score(
        &self,
        indices: &[usize],
        items: &[&DatasetItem],
    ) -> Result<Vec<Vec<Outcome>>, StepError> {
        let bodies: Vec<&PromptBody> = indices
            .iter()
            .map(|&i| self.candidate(i).map(|c| &c.template))
            .collect::<Result<_, _>>()?;
        self.scorer.score_many(&bodies, items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minibatches_are_a_quarter_but_not_tiny() {
        assert_eq!(minibatch_size(3), 3);
        assert_eq!(minibatch_size(8), 4);
        assert_eq!(minibatch_size(40), 10);
    }
}
