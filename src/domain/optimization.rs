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
use super::objective::{
    pareto_front, template_tokens, Measure, Measured, Measures, Objective, Point,
};
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
    /// The optimizer shortens the instruction; candidates must keep the
    /// baseline's score within `max_drop`; the shortest wins.
    Compress,
    /// Instructions from the optimizer and demonstration sets searched
    /// together (after DSPy's MIPROv2).
    Joint,
}

impl StrategyName {
    pub const ALL: [StrategyName; 5] = [
        Self::Opro,
        Self::Critique,
        Self::Fewshot,
        Self::Compress,
        Self::Joint,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether it asks an optimizer model for candidates.
    pub fn needs_optimizer(self) -> bool {
        !matches!(self, Self::Fewshot)
    }

    /// Whether it uses demonstrations from the training split.
    pub fn uses_demos(self) -> bool {
        matches!(self, Self::Fewshot | Self::Joint)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opro => "opro",
            Self::Critique => "critique",
            Self::Fewshot => "fewshot",
            Self::Compress => "compress",
            Self::Joint => "joint",
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
    /// The objective's first metric (the only one unless `objective` lists more).
    pub metric: MetricSpec,
    /// The metrics with their weights and the constraints on cost.
    #[serde(default)]
    pub objective: Objective,
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
    /// `compress`: how far below the baseline's score a candidate may fall.
    #[serde(default = "default_max_drop")]
    pub max_drop: f64,
}

pub const DEFAULT_MAX_DROP: f64 = 0.01;

fn default_max_drop() -> f64 {
    DEFAULT_MAX_DROP
}

impl OptimizationSpec {
    /// As stored before objectives existed: the single metric as the objective.
    pub fn normalized(mut self) -> Self {
        if self.objective.metrics.is_empty() {
            self.objective = Objective::single(self.metric.clone());
        }
        self
    }
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Target,
    Patience,
    MaxIterations,
    Budget,
    /// No scored candidate met the constraints (or, for `compress`, kept
    /// the score): nothing to write.
    NoFeasibleCandidate,
}

impl StopReason {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::Patience => "patience",
            Self::MaxIterations => "max_iterations",
            Self::Budget => "budget",
            Self::NoFeasibleCandidate => "no_feasible_candidate",
        }
    }
}

/// The base version's scores and measures; `None` until measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SplitScores {
    pub train_score: Option<f64>,
    pub val_score: Option<f64>,
    /// The base template's length (see `Candidate::template_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_tokens: Option<u32>,
    /// When the base itself breaks a constraint, a result need not beat
    /// its score, only meet them.
    #[serde(flatten)]
    pub measurements: Measurements,
}

/// What a template's calls cost on each split, its metrics' validation
/// means and the constraints it breaks: the baseline's and every
/// candidate's alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Measurements {
    /// On the training items it was scored on first (a candidate's
    /// minibatch, the baseline's whole training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_measures: Option<Measures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_measures: Option<Measures>,
    /// Each metric's validation mean, in the objective's order (several metrics only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_metric_scores: Vec<f64>,
    /// The constraints broken on validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
}

impl Measurements {
    /// What constraints are checked against, on training or validation.
    pub fn measured(&self, validation: bool, template_tokens: Option<u32>) -> Measured {
        Measured {
            measures: if validation {
                self.val_measures
            } else {
                self.train_measures
            },
            template_tokens,
        }
    }
}

impl SplitScores {
    /// What its constraints are checked against, on training or validation.
    pub fn measured(&self, validation: bool) -> Measured {
        self.measurements.measured(validation, self.template_tokens)
    }

    /// Scored on validation and breaking no constraint.
    pub fn feasible(&self) -> bool {
        self.val_score.is_some() && self.measurements.violations.is_empty()
    }
}

/// Which instruction and which demonstration set a `joint` candidate combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Combination {
    /// Index into the job's instructions; 0 is the base's own.
    pub instruction: u32,
    /// Index into the job's demonstration sets; set 0 is empty.
    pub demo_set: u32,
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
    /// Its own length in tokens: each run of letters and digits, and every
    /// other character that is not white space, counts one; a chat
    /// template counts every message.
    #[serde(default)]
    pub template_tokens: u32,
    /// A candidate that breaks a constraint on validation is never the result.
    #[serde(flatten)]
    pub measurements: Measurements,
    /// `joint`: the instruction and demonstration set it combines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combination: Option<Combination>,
}

/// A template's length as `template_tokens` counts it, every message of a
/// chat template included.
pub fn body_tokens(body: &PromptBody) -> u32 {
    match body {
        PromptBody::Text(text) => template_tokens(text),
        PromptBody::Chat(messages) => messages
            .iter()
            .filter_map(super::ChatMessage::content)
            .map(template_tokens)
            .sum(),
    }
}

impl Candidate {
    pub fn new(template: PromptBody) -> Self {
        Self {
            template_tokens: body_tokens(&template),
            template,
            train_score: None,
            train_items: 0,
            val_score: None,
            discarded: None,
            minibatch_score: None,
            measurements: Measurements::default(),
            combination: None,
        }
    }

    /// What its constraints are checked against, on training or validation.
    pub fn measured(&self, validation: bool) -> Measured {
        self.measurements
            .measured(validation, Some(self.template_tokens))
    }

    /// Scored on validation and breaking no constraint: it may be the result.
    pub fn feasible(&self) -> bool {
        self.val_score.is_some()
            && self.measurements.violations.is_empty()
            && self.discarded.is_none()
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
    /// `joint`: the instructions searched, the base's own first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instructions: Vec<String>,
    /// `joint`: the demonstration sets searched, as indices into `demos`;
    /// the first is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demo_sets: Vec<Vec<u32>>,
    /// The loop is over; only the result is left to write.
    pub finished: bool,
}

/// How results rank: by score, or (`compress`) by length first.
fn rank(strategy: StrategyName, score: f64, tokens: u32) -> (f64, f64) {
    match strategy {
        StrategyName::Compress => (-f64::from(tokens), score),
        _ => (score, 0.0),
    }
}

/// Scores closer than this are equal.
const EPSILON: f64 = 1e-9;

fn ahead(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 + EPSILON || ((a.0 - b.0).abs() <= EPSILON && a.1 > b.1 + EPSILON)
}

/// A point of the front: which template (iteration 0 is the baseline) and
/// which candidate of the iteration.
pub type FrontKey = (u32, u32);

impl OptimizationState {
    /// As stored before lengths were kept: each candidate's counted.
    pub fn normalized(mut self) -> Self {
        for candidate in self.iterations.iter_mut().flat_map(|i| &mut i.candidates) {
            if candidate.template_tokens == 0 {
                candidate.template_tokens = body_tokens(&candidate.template);
            }
        }
        self
    }

    /// Candidate `index` of iteration `number`.
    pub fn candidate(&self, number: u32, index: u32) -> Option<&Candidate> {
        self.iterations
            .iter()
            .find(|i| i.number == number)
            .and_then(|i| i.candidates.get(index as usize))
    }

    /// Whether the template a front names (iteration 0: the baseline) meets
    /// the constraints.
    pub fn feasible_at(&self, (number, index): FrontKey) -> bool {
        match number {
            0 => self.baseline.feasible(),
            n => self.candidate(n, index).is_some_and(Candidate::feasible),
        }
    }

    /// The result so far: among candidates scored on validation that break
    /// no constraint, the best score (`compress`: the shortest, then the
    /// best score); the first found on ties.
    pub fn best(&self, strategy: StrategyName) -> Option<&Candidate> {
        self.best_through(u32::MAX, strategy)
    }

    fn best_through(&self, number: u32, strategy: StrategyName) -> Option<&Candidate> {
        let mut best: Option<&Candidate> = None;
        for candidate in self
            .iterations
            .iter()
            .filter(|i| i.number <= number)
            .flat_map(|i| &i.candidates)
            .filter(|c| c.feasible())
        {
            let key = |c: &Candidate| rank(strategy, c.val_score.unwrap_or(0.0), c.template_tokens);
            if best.is_none_or(|b| ahead(key(candidate), key(b))) {
                best = Some(candidate);
            }
        }
        best
    }

    /// Whether iteration `number` found a better result than all before it
    /// (the baseline, when it meets the constraints, included).
    pub fn improved_in(&self, number: u32, strategy: StrategyName) -> bool {
        let key = |c: &Candidate| rank(strategy, c.val_score.unwrap_or(0.0), c.template_tokens);
        let baseline = {
            let b = &self.baseline;
            b.feasible().then(|| {
                rank(
                    strategy,
                    b.val_score.unwrap_or(0.0),
                    b.template_tokens.unwrap_or(u32::MAX),
                )
            })
        };
        let earlier = self
            .best_through(number.saturating_sub(1), strategy)
            .map(key);
        let before = match (earlier, baseline) {
            (Some(e), Some(b)) => Some(if ahead(b, e) { b } else { e }),
            (e, b) => e.or(b),
        };
        let now = self.best_through(number, strategy).map(key);
        match (now, before) {
            (Some(now), Some(before)) => ahead(now, before),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The best validation score of a template that meets the
    /// constraints, the baseline's included.
    pub fn best_val_score(&self) -> Option<f64> {
        self.best_val_score_through(u32::MAX)
    }

    /// The best such score once iteration `number` was done.
    pub fn best_val_score_through(&self, number: u32) -> Option<f64> {
        self.iterations
            .iter()
            .filter(|i| i.number <= number)
            .flat_map(|i| &i.candidates)
            .filter(|c| c.feasible())
            .filter_map(|c| c.val_score)
            .chain(self.baseline.val_score.filter(|_| self.baseline.feasible()))
            .reduce(f64::max)
    }

    /// For each measure, the templates scored on validation that no other
    /// beats on both score and that measure, cheapest first: the
    /// baseline as iteration 0, each candidate as (iteration, index).
    pub fn pareto_fronts(&self) -> Vec<(Measure, Vec<Point<FrontKey>>)> {
        let mut scored: Vec<(FrontKey, f64, Measured)> = Vec::new();
        if let Some(score) = self.baseline.val_score {
            scored.push(((0, 0), score, self.baseline.measured(true)));
        }
        for iteration in &self.iterations {
            for (index, candidate) in iteration.candidates.iter().enumerate() {
                if let Some(score) = candidate.val_score {
                    scored.push((
                        (iteration.number, index as u32),
                        score,
                        candidate.measured(true),
                    ));
                }
            }
        }
        Measure::ALL
            .into_iter()
            .filter_map(|measure| {
                let points: Vec<Point<FrontKey>> = scored
                    .iter()
                    .filter_map(|(key, score, measured)| {
                        measured.get(measure).map(|value| Point {
                            key: *key,
                            score: *score,
                            value,
                        })
                    })
                    .collect();
                (!points.is_empty()).then(|| (measure, pareto_front(&points)))
            })
            .collect()
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
                ..Default::default()
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
            state.best(StrategyName::Opro).map(|c| &c.template),
            Some(&PromptBody::Text("first".into()))
        );
        assert_eq!(state.best_val_score(), Some(0.8));
    }

    fn iteration(number: u32, candidates: Vec<Candidate>) -> Iteration {
        Iteration {
            number,
            candidates,
            diagnosis: None,
            complete: true,
            calls: 0,
            cost_usd: 0.0,
        }
    }

    #[test]
    fn a_candidate_that_breaks_a_constraint_is_never_best() {
        let mut high = scored(Some(0.9));
        high.measurements.violations = vec!["input_tokens 100 is above max 50".into()];
        let low = scored(Some(0.6));
        let state = OptimizationState {
            baseline: SplitScores {
                val_score: Some(0.7),
                measurements: Measurements {
                    violations: vec!["too long".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            iterations: vec![iteration(1, vec![high, low])],
            ..Default::default()
        };
        assert_eq!(
            state.best(StrategyName::Opro).and_then(|c| c.val_score),
            Some(0.6)
        );
        // The baseline breaks a constraint too: 0.6 is the best there is.
        assert_eq!(state.best_val_score(), Some(0.6));
        assert!(state.improved_in(1, StrategyName::Opro));
    }

    #[test]
    fn an_iteration_below_the_baseline_is_no_improvement() {
        let state = OptimizationState {
            baseline: SplitScores {
                val_score: Some(0.8),
                ..Default::default()
            },
            iterations: vec![
                iteration(1, vec![scored(Some(0.5))]),
                iteration(2, vec![scored(Some(0.6))]),
                iteration(3, vec![scored(Some(0.9))]),
            ],
            ..Default::default()
        };
        assert!(!state.improved_in(1, StrategyName::Opro));
        assert!(!state.improved_in(2, StrategyName::Opro));
        assert!(state.improved_in(3, StrategyName::Opro));
    }

    #[test]
    fn compress_ranks_by_length_then_score() {
        let with = |text: &str, val: f64| Candidate {
            val_score: Some(val),
            ..Candidate::new(PromptBody::Text(text.into()))
        };
        let state = OptimizationState {
            baseline: SplitScores {
                val_score: Some(0.9),
                template_tokens: Some(10),
                ..Default::default()
            },
            iterations: vec![
                iteration(1, vec![with("a b c", 0.9), with("a b c d", 0.95)]),
                iteration(2, vec![with("x y z", 0.95), with("x y z w", 1.0)]),
            ],
            ..Default::default()
        };
        let best = state.best(StrategyName::Compress).expect("a best");
        assert_eq!(best.template, PromptBody::Text("x y z".into()));
        assert!(state.improved_in(1, StrategyName::Compress));
        assert!(state.improved_in(2, StrategyName::Compress));
        // By score, the longest of them wins.
        assert_eq!(
            state.best(StrategyName::Opro).map(|c| &c.template),
            Some(&PromptBody::Text("x y z w".into()))
        );
    }

    #[test]
    fn the_baseline_counts_toward_the_best_score() {
        let state = OptimizationState {
            baseline: SplitScores {
                val_score: Some(0.9),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(state.best_val_score(), Some(0.9));
        assert!(state.best(StrategyName::Opro).is_none());
    }

    #[test]
    fn stop_reasons_read_as_the_api_writes_them() {
        for reason in [
            StopReason::Target,
            StopReason::Patience,
            StopReason::MaxIterations,
            StopReason::Budget,
            StopReason::NoFeasibleCandidate,
        ] {
            assert_eq!(
                serde_json::to_value(reason).expect("a stop reason serializes"),
                serde_json::Value::from(reason.as_str())
            );
        }
    }
}
