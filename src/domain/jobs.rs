//! Jobs and evaluations as plain data: a job is a row of the durable queue
//! (status, lease, attempts, progress); an evaluation is a version run over
//! a dataset with a provider, and its per-item results.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ProjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status `as_str` names `raw`, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }

    /// No worker will touch a job in a final state again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How a stored status is read back; a value outside the five is corrupt.
impl TryFrom<String> for JobStatus {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| format!("job status {raw:?}"))
    }
}

/// The kinds of work the worker knows.
pub const EVALUATION_JOB: &str = "evaluation";
pub const OPTIMIZATION_JOB: &str = "optimization";
/// Every kind, for metrics that show each one even at zero.
pub const JOB_KINDS: [&str; 2] = [EVALUATION_JOB, OPTIMIZATION_JOB];

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub kind: String,
    #[sqlx(json)]
    pub payload: Value,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub progress_done: i64,
    pub progress_total: i64,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the request that queued the job, when
    /// tracing was on: the job's span links to it.
    pub trace_parent: Option<String>,
}

/// A metric as a request names it: its name and optional parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSpec {
    #[schema(example = "exact_match")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub job: Job,
    pub prompt_name: String,
    pub version: semver::Version,
    pub version_id: Uuid,
    pub dataset_name: String,
    pub dataset_id: Uuid,
    pub provider: String,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    pub metrics: Vec<MetricSpec>,
    pub concurrency: i32,
    pub item_count: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// What an evaluation's stored results add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ResultTotals {
    /// Items with a stored result.
    pub items: i64,
    /// Items whose result carries an error (no output, or a metric could not score).
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

/// One metric's scores over an evaluation's items, as the database sums
/// them: enough for the mean, spread and interval without the scores.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct MetricMoments {
    pub n: i64,
    pub mean: f64,
    /// The sum of squared deviations from `mean`.
    pub squared_deviations: f64,
}

/// An evaluation as a list shows it: with its results' totals and each
/// metric's moments, summed in the database rather than read item by item.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationListing {
    pub evaluation: Evaluation,
    pub totals: ResultTotals,
    pub metrics: std::collections::BTreeMap<String, MetricMoments>,
}

/// Which evaluations a list shows; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct EvaluationFilter {
    pub prompt: Option<super::PromptName>,
    pub version: Option<semver::Version>,
    pub dataset: Option<String>,
    pub status: Option<JobStatus>,
}

/// Which jobs a list shows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// One of [`JOB_KINDS`].
    pub kind: Option<String>,
    pub status: Option<JobStatus>,
}

/// What an evaluation asks for; the store adds the job in the same transaction.
#[derive(Debug, Clone)]
pub struct NewEvaluation {
    pub prompt_id: Uuid,
    pub version_id: Uuid,
    pub dataset_id: Uuid,
    pub item_count: i64,
    pub provider: String,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    pub metrics: Vec<MetricSpec>,
    pub concurrency: i32,
    pub max_attempts: i32,
    /// The creating request's `traceparent` (see [`Job::trace_parent`]).
    pub trace_parent: Option<String>,
}

/// One item's outcome: the output and its scores, or why there is none.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ItemResult {
    pub item_id: Uuid,
    pub item_seq: i64,
    pub output: Option<String>,
    /// Metric name → score in [0, 1]; a metric that could not score is absent.
    #[sqlx(json)]
    pub scores: Map<String, Value>,
    /// Metric name → what else it said, e.g. an LLM judge's `reason`.
    #[sqlx(json)]
    pub details: Map<String, Value>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: Option<f64>,
}

/// A stored result, with its position in the evaluation's result stream.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredResult {
    /// Increases as results are stored: the SSE event id.
    pub id: i64,
    #[sqlx(flatten)]
    pub result: ItemResult,
    pub created_at: DateTime<Utc>,
}

/// One condition of a quality gate on a metric's mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRule {
    #[schema(example = "exact_match")]
    pub metric: String,
    /// The mean must be at least this.
    #[schema(example = 0.8)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The mean must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The rule as a bound: `exact_match ≥ 0.9`, `length ≤ 0.5`,
/// `0.2 ≤ length ≤ 0.8`.
impl std::fmt::Display for GateRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(min), Some(max)) => write!(f, "{min} ≤ {} ≤ {max}", self.metric),
            (Some(min), None) => write!(f, "{} ≥ {min}", self.metric),
            (None, Some(max)) => write!(f, "{} ≤ {max}", self.metric),
            (None, None) => write!(f, "{} (no bound)", self.metric),
        }
    }
}

impl GateRule {
    /// Why `mean` breaks this rule, if it does.
    pub fn violation(&self, mean: f64) -> Option<String> {
        match (self.min, self.max) {
            (Some(min), _) if mean < min => Some(format!(
                "{} mean {mean:.4} is below the minimum {min}",
                self.metric
            )),
            (_, Some(max)) if mean > max => Some(format!(
                "{} mean {mean:.4} is above the maximum {max}",
                self.metric
            )),
            _ => None,
        }
    }
}

/// What moving a label onto a version requires.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Gate {
    pub prompt_id: Uuid,
    pub label: String,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    #[sqlx(json)]
    pub rules: Vec<GateRule>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_statuses_read_back_as_written() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::try_from(status.as_str().to_owned()), Ok(status));
        }
        assert_eq!(
            JobStatus::try_from("done".to_owned()),
            Err("job status \"done\"".to_owned())
        );
    }
}
