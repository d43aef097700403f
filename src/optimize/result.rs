//! The end of an optimization: the best candidate written as a version
//! (once, with its lineage) and the label moved when the result earns it.

use serde_json::{json, Map};

use super::runner::{step_error, Run, EPSILON};
use super::StepError;
use crate::domain::auth::Actor;
use crate::domain::optimization::{Candidate, Promotion};
use crate::domain::{LabelName, PromptName};
use crate::services::{labels, ServiceError};
use crate::store::NewVersion;
use crate::worker::JobError;

impl Run<'_> {
    /// Writes the result version (once), moves the label when asked and
    /// earned, and saves the final state.
    pub(super) async fn finish(&mut self, name: &PromptName) -> Result<(), StepError> {
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
        let body = winner.template.clone();
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
