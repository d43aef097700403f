//! The end of an optimization: the best candidate written as a version
//! (once, with its lineage) and the label moved when the result earns it.

use super::runner::{step_error, Run, EPSILON};
use super::StepError;
use crate::domain::auth::Actor;
use crate::domain::optimization::{Candidate, Promotion, StopReason, StrategyName};
use crate::domain::{LabelName, PromptName};
use crate::services::{labels, optimizations, ServiceError};
use crate::store::NewVersion;
use crate::worker::JobError;

impl Run<'_> {
    /// Writes the result version (once), moves the label when asked and
    /// earned, and saves the final state.
    pub(super) async fn finish(&mut self, name: &PromptName) -> Result<(), StepError> {
        let optimization = self.optimization;
        let spec = &optimization.spec;
        let strategy = spec.strategy;
        let baseline = &self.state.baseline;
        let best = self.state.best(strategy);
        let winner = best
            .filter(|best| {
                // `compress` candidates are shorter and within `max_drop`
                // by construction; a base that breaks the constraints is no
                // score to beat.
                if strategy == StrategyName::Compress || !baseline.feasible() {
                    return true;
                }
                match (best.val_score, baseline.val_score) {
                    (Some(best), Some(baseline)) => best > baseline + EPSILON,
                    (Some(_), None) => true,
                    _ => false,
                }
            })
            .cloned();
        let constrained =
            !spec.objective.constraints.is_empty() || strategy == StrategyName::Compress;
        // Candidates were scored on validation and every one broke a
        // constraint: that, not the loop's end, is why there is no result.
        let validated = self
            .state
            .iterations
            .iter()
            .flat_map(|i| &i.candidates)
            .any(|c| c.val_score.is_some());
        if best.is_none()
            && validated
            && constrained
            && self.state.stop_reason != Some(StopReason::Budget)
        {
            self.state.stop_reason = Some(StopReason::NoFeasibleCandidate);
        }
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
        let how = format!("Optimized by {}", self.optimization.spec.strategy.as_str());
        optimizations::candidate_version(
            self.optimization,
            &self.base.content,
            &self.state.baseline,
            winner,
            &how,
        )
        .map_err(|e| JobError::permanent(format!("the best candidate: {e}")))
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
            let why = if self.state.stop_reason == Some(StopReason::NoFeasibleCandidate) {
                "no candidate met the constraints"
            } else {
                "no candidate beat the baseline"
            };
            return Ok(not_moved(why.to_owned()));
        };
        let gain = best - self.state.baseline.val_score.unwrap_or(0.0);
        let min = optimization.spec.min_improvement;
        // `compress` trades score for length within `max_drop`, checked already.
        if optimization.spec.strategy != StrategyName::Compress && gain + EPSILON < min {
            return Ok(not_moved(format!(
                "the validation score improved by {gain:.4}, less than min_improvement {min}"
            )));
        }
        let project = optimization.project_id;
        let label_name = LabelName::parse(label).map_err(|e| JobError::permanent(e.to_string()))?;
        let moved = labels::move_label(
            &self.runner.registry,
            project,
            actor,
            name,
            &label_name,
            version,
        )
        .await;
        match moved {
            Ok(_) => {}
            Err(gate @ ServiceError::GateFailed { .. }) => return Ok(not_moved(gate.to_string())),
            Err(ServiceError::Unavailable) => {
                return Err(JobError::retryable("the database is unavailable"))
            }
            Err(other) => return Err(JobError::permanent(other.to_string())),
        }
        Ok(Promotion {
            label: label.to_owned(),
            moved: true,
            reason: None,
        })
    }
}
