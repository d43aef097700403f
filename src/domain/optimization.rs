//! Optimizations as plain data: what a job was asked for (`OptimizationSpec`,
//! fixed at creation) and how far it got (`OptimizationState`, saved after
//! every step so a job whose worker died resumes where it stopped).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::content::PromptBody;
use super::jobs::{Job, MetricSpec};
use super::ProjectId;

/// How candidates are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    /// The optimizer sees the best prompts so far with their scores.
    Opro,
    /// The optimizer sees failures, diagnoses them and edits the prompt.
    Critique,
    /// Demonstrations from the training split, chosen by score.
    Fewshot,
}

impl StrategyName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opro => "opro",
            Self::Critique => "critique",
            Self::Fewshot => "fewshot",
        }
    }
}

/// A provider and model to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    #[schema(example = "local")]
    pub provider: String,
    /// Default: the provider's `default_model` (for the target, the
    /// version's `model_config.model` first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Merged over the version's `model_config` (target) for every call.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The share of items used for training; the rest is validation.
    #[schema(example = 0.6)]
    pub train: f64,
    /// Seeds the shuffle, the minibatches and the demonstration sets.
    #[serde(default)]
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Self {
            train: 0.6,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Provider requests at most, retries included, across both models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    /// Spend at most, from the providers' configured prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

/// Everything an optimization was asked for, checked at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OptimizationSpec {
    pub split: Split,
    pub metric: MetricSpec,
    pub target: ModelChoice,
    /// Proposes candidates; `fewshot` needs none.
    pub optimizer: Option<ModelChoice>,
    pub strategy: StrategyName,
    pub max_iterations: u32,
    pub candidates_per_iteration: u32,
    pub patience: u32,
    pub target_score: Option<f64>,
    pub budget: Budget,
    pub concurrency: u32,
    pub num_demos: u32,
    pub promote_to: Option<String>,
    pub min_improvement: f64,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Target,
    Patience,
    MaxIterations,
    Budget,
}

impl StopReason {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::Patience => "patience",
            Self::MaxIterations => "max_iterations",
            Self::Budget => "budget",
        }
    }
}

/// Train and validation scores; `None` until measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SplitScores {
    pub train_score: Option<f64>,
    pub val_score: Option<f64>,
}

/// One proposed template and how far successive halving took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    pub template: PromptBody,
    /// The mean metric on the training items it was scored on (a minibatch,
    /// or all of them when it got that far); `null` when discarded.
    pub train_score: Option<f64>,
    /// How many training items `train_score` is over.
    pub train_items: u32,
    /// Scored on the validation split: only an iteration's best on train.
    pub val_score: Option<f64>,
    /// Why it was never scored: it did not compile, or dropped a variable.
    pub discarded: Option<String>,
    /// The score on the iteration's training minibatch, which decides who
    /// is scored on the whole training split.
    #[serde(default)]
    pub minibatch_score: Option<f64>,
}

impl Candidate {
    pub fn new(template: PromptBody) -> Self {
        Self {
            template,
            train_score: None,
            train_items: 0,
            val_score: None,
            discarded: None,
            minibatch_score: None,
        }
    }

    pub fn discarded(template: PromptBody, why: String) -> Self {
        Self {
            discarded: Some(why),
            ..Self::new(template)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Iteration {
    /// 1, 2, 3…
    pub number: u32,
    pub candidates: Vec<Candidate>,
    /// What the optimizer said about the failures (`critique`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// Every step of the iteration is done.
    pub complete: bool,
    /// Calls and cost of the whole job when the iteration completed.
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

/// What happened to `promote_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub label: String,
    pub moved: bool,
    /// Why it did not move.
    pub reason: Option<String>,
}

/// A demonstration for `fewshot`: a training input and an output for it,
/// the target model's own (`bootstrapped`) or the item's expected one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demo {
    pub input: Map<String, Value>,
    pub output: String,
    pub bootstrapped: bool,
}

/// How far an optimization got. Saved after every step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizationState {
    pub baseline: SplitScores,
    pub iterations: Vec<Iteration>,
    /// Iterations in a row that did not improve the best validation score.
    pub stale_iterations: u32,
    pub calls: u64,
    pub cost_usd: f64,
    pub stop_reason: Option<StopReason>,
    pub promotion: Option<Promotion>,
    /// `fewshot`'s demonstrations, from the baseline's training run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demos: Vec<Demo>,
    /// The loop is over; only the result is left to write.
    pub finished: bool,
}

impl OptimizationState {
    /// The candidate with the highest validation score, first found on ties.
    pub fn best(&self) -> Option<&Candidate> {
        let mut best: Option<&Candidate> = None;
        for candidate in self.iterations.iter().flat_map(|i| &i.candidates) {
            if let Some(val) = candidate.val_score {
                if best.and_then(|b| b.val_score).is_none_or(|b| val > b) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// The best validation score so far, the baseline's included.
    pub fn best_val_score(&self) -> Option<f64> {
        self.best_val_score_through(u32::MAX)
    }

    /// The best validation score once iteration `number` was done.
    pub fn best_val_score_through(&self, number: u32) -> Option<f64> {
        self.iterations
            .iter()
            .filter(|i| i.number <= number)
            .flat_map(|i| &i.candidates)
            .filter_map(|c| c.val_score)
            .chain(self.baseline.val_score)
            .reduce(f64::max)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Optimization {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub job: Job,
    pub prompt_name: String,
    pub version: semver::Version,
    pub version_id: Uuid,
    pub dataset_name: String,
    pub dataset_id: Uuid,
    pub item_count: i64,
    pub spec: OptimizationSpec,
    pub state: OptimizationState,
    /// The version the job created, once it did.
    pub result_version: Option<semver::Version>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// Which optimizations a list shows; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct OptimizationFilter {
    pub prompt: Option<super::PromptName>,
    pub status: Option<super::jobs::JobStatus>,
}

/// What an optimization asks for; the store adds the job in the same transaction.
#[derive(Debug, Clone)]
pub struct NewOptimization {
    pub prompt_id: Uuid,
    pub version_id: Uuid,
    pub dataset_id: Uuid,
    pub item_count: i64,
    pub spec: OptimizationSpec,
    pub max_attempts: i32,
    pub trace_parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(val: Option<f64>) -> Candidate {
        Candidate {
            val_score: val,
            ..Candidate::new(PromptBody::Text(String::new()))
        }
    }

    #[test]
    fn the_first_of_equal_validation_scores_is_best() {
        let mut first = scored(Some(0.8));
        first.template = PromptBody::Text("first".into());
        let state = OptimizationState {
            baseline: SplitScores {
                train_score: Some(0.5),
                val_score: Some(0.5),
            },
            iterations: vec![Iteration {
                number: 1,
                candidates: vec![scored(None), first, scored(Some(0.8)), scored(Some(0.1))],
                diagnosis: None,
                complete: true,
                calls: 0,
                cost_usd: 0.0,
            }],
            ..Default::default()
        };
        assert_eq!(
            state.best().map(|c| &c.template),
            Some(&PromptBody::Text("first".into()))
        );
        assert_eq!(state.best_val_score(), Some(0.8));
    }

    #[test]
    fn the_baseline_counts_toward_the_best_score() {
        let state = OptimizationState {
            baseline: SplitScores {
                train_score: None,
                val_score: Some(0.9),
            },
            ..Default::default()
        };
        assert_eq!(state.best_val_score(), Some(0.9));
        assert!(state.best().is_none());
    }

    #[test]
    fn stop_reasons_read_as_the_api_writes_them() {
        for reason in [
            StopReason::Target,
            StopReason::Patience,
            StopReason::MaxIterations,
            StopReason::Budget,
        ] {
            assert_eq!(
                serde_json::to_value(reason).expect("a stop reason serializes"),
                serde_json::Value::from(reason.as_str())
            );
        }
    }
}
