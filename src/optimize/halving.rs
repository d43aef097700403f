//! One iteration's scoring by successive halving: every candidate on a
//! training minibatch, the better half on the rest of the training split,
//! the best of those on validation. Each rung saves its scores, and skips
//! the candidates a resumed job finds already scored.

use rand::seq::SliceRandom;

use super::runner::{Run, EPSILON, MIN_MINIBATCH};
use super::scoring::mean;
use super::{rng, Outcome, StepError};
use crate::domain::content::PromptBody;
use crate::domain::optimization::{Candidate, Iteration};
use crate::domain::DatasetItem;

/// Which shuffle picks an iteration's minibatch.
const PURPOSE_MINIBATCH: u64 = 1;

/// Training items a candidate is scored on first.
pub(super) fn minibatch_size(train: usize) -> usize {
    train.div_ceil(4).max(MIN_MINIBATCH).min(train)
}

impl Run<'_> {
    /// Successive halving over the last iteration's candidates: each rung
    /// skips what a saved state shows done.
    pub(super) async fn score_iteration(&mut self) -> Result<(), StepError> {
        let Some(iteration) = self.state.iterations.last() else {
            return Ok(());
        };
        let number = iteration.number;
        let before = self.state.best_val_score_through(number - 1);
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
        let last = self.last();
        let bodies: Vec<&PromptBody> = indices
            .iter()
            .map(|&i| &last.candidates[i].template)
            .collect();
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
