//! Scoring outputs produced elsewhere, synchronously, with the deterministic
//! metrics: no provider, no job.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::Json;
use crate::domain::jobs::MetricSpec;
use crate::error::{ApiError, FieldError};
use crate::eval::judge::{JudgeSpec, LLM_JUDGE};
use crate::eval::metrics::Metric;
use crate::eval::metrics::Sample;
use crate::eval::stats::{summarize, Summary};

/// A metric by name, or with parameters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MetricRequest {
    #[schema(example = "exact_match")]
    Name(String),
    Spec {
        #[schema(example = "regex")]
        name: String,
        // No skip_serializing_if: `null` is what the CLI has always sent,
        // and the server reads it as absent.
        #[schema(example = json!({"pattern": "^\\d+$"}))]
        params: Option<Value>,
    },
}

impl MetricRequest {
    fn spec(self) -> MetricSpec {
        match self {
            Self::Name(name) => MetricSpec {
                name,
                params: Value::Null,
            },
            Self::Spec { name, params } => MetricSpec {
                name,
                params: params.unwrap_or(Value::Null),
            },
        }
    }
}

/// Parses metric requests, naming each bad one by its index under `field`.
/// Parses metric requests, naming each bad one by its index under `field`.
/// `llm_judge` specs are checked and kept in `specs` when `judges` is true
/// (evaluations), refused otherwise (they need a provider); `metrics` holds
/// the deterministic ones.
pub fn parse_metrics(
    field: &str,
    requests: Vec<MetricRequest>,
    judges: bool,
) -> Result<(Vec<MetricSpec>, Vec<Metric>), ApiError> {
    if requests.is_empty() {
        return Err(ApiError::validation(field, "give at least one metric"));
    }
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    let mut metrics = Vec::new();
    let mut seen = HashSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        let spec = request.spec();
        let at = format!("{field}[{i}]");
        if spec.name == LLM_JUDGE {
            if !judges {
                errors.push(FieldError::new(
                    at,
                    "llm_judge calls a provider: use it in an evaluation (POST /v1/evaluations)",
                ));
                continue;
            }
            match JudgeSpec::parse(&spec.params) {
                Ok(judge) if !seen.insert(judge.score_key()) => errors.push(FieldError::new(
                    at,
                    format!("a {} judge is listed twice", judge.rubric.as_str()),
                )),
                Ok(_) => specs.push(spec),
                Err(e) => errors.push(FieldError::new(at, e)),
            }
            continue;
        }
        if !seen.insert(spec.name.clone()) {
            errors.push(FieldError::new(
                at,
                format!("{} is listed twice; each metric once", spec.name),
            ));
            continue;
        }
        match Metric::parse(&spec.name, &spec.params) {
            Ok(metric) => {
                metrics.push(metric);
                specs.push(spec);
            }
            Err(e) => errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok((specs, metrics))
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// Items scored in one request at most.
const MAX_ITEMS: usize = 10_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreItem {
    #[schema(example = "Paris")]
    output: String,
    /// The reference (text; other JSON is compared as its JSON text).
    #[schema(example = "Paris")]
    expected: Option<Value>,
    /// The variables the output was produced from.
    input: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "metrics": ["exact_match", "token_f1", {"name": "regex", "params": {"pattern": "^[A-Z]"}}],
    "items": [{"output": "Paris", "expected": "Paris"}, {"output": "paris, France", "expected": "Paris"}]
}))]
pub struct ScoreRequest {
    metrics: Vec<MetricRequest>,
    items: Vec<ScoreItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ItemScores {
    /// Metric → score in [0, 1]; a metric that cannot score the item is absent.
    #[schema(value_type = BTreeMap<String, f64>)]
    scores: BTreeMap<String, f64>,
    /// Why some metric could not score this item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ScoreResponse {
    items: Vec<ItemScores>,
    #[schema(value_type = BTreeMap<String, Object>, example = json!({"exact_match": {"mean": 0.5, "std": 0.5, "ci95": [0.0, 1.0], "n": 2}}))]
    metrics: BTreeMap<String, Summary>,
}

/// Score outputs with deterministic metrics, at once (no LLM is called). An
/// unknown metric, bad parameters or too many items are `422 validation_failed`.
#[utoipa::path(post, path = "/v1/scores", tag = "evaluations",
    security(("bearer" = ["evaluate"])),
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "Scores per item and per metric", body = ScoreResponse),
    ))]
pub async fn score_outputs(
    _auth: Auth<scope::Evaluate>,
    Json(body): Json<ScoreRequest>,
) -> Result<axum::Json<ScoreResponse>, ApiError> {
    if body.items.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "items",
            format!("at most {MAX_ITEMS} items per request"),
        ));
    }
    let (_, metrics) = parse_metrics("metrics", body.metrics, false)?;
    let mut by_metric: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut items = Vec::with_capacity(body.items.len());
    for item in body.items {
        let expected = item.expected.as_ref().map(crate::eval::text_of);
        let input = item.input.map(Value::Object);
        let sample = Sample {
            output: &item.output,
            expected: expected.as_deref(),
            input: input.as_ref(),
            output_schema: None,
        };
        let mut scored = ItemScores {
            scores: BTreeMap::new(),
            errors: Vec::new(),
        };
        for metric in &metrics {
            match metric.score(&sample) {
                Ok(score) => {
                    scored.scores.insert(metric.name().to_owned(), score);
                    by_metric
                        .entry(metric.name().to_owned())
                        .or_default()
                        .push(score);
                }
                Err(e) => scored.errors.push(format!("{}: {e}", metric.name())),
            }
        }
        items.push(scored);
    }
    let metrics = by_metric
        .into_iter()
        .map(|(name, scores)| (name, summarize(&scores)))
        .collect();
    Ok(axum::Json(ScoreResponse { items, metrics }))
}
