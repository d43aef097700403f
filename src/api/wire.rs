//! The API's request and response types as one public surface, for the CLI
//! (and any Rust client): the same structs the handlers read and answer, so
//! a renamed or retyped field breaks the client's build or its tests instead
//! of its users. The types live beside their handlers; this only re-exports
//! them and holds no logic.

pub use super::evaluations::{CreateEvaluationRequest, EvaluationResponse, Usage};
pub use super::gates::{GateList, GateResponse};
pub use super::jobs::{JobResponse, Progress};
pub use super::labels::{LabelMovePage, LabelMoveResponse, LabelResponse, SetLabelRequest};
pub use super::optimizations::{
    Best, CreateOptimizationRequest, FrontPoint, FrontResponse, ObjectiveRequest,
    OptimizationResponse, OptimizationUsage, WeightedMetricRequest,
};
pub use super::prompts::{CreatePromptRequest, PromptPage, PromptResponse, UpdatePromptRequest};
pub use super::scores::MetricRequest;
pub use super::versions::{CreateVersionRequest, DiffResponse, FieldChange, VersionResponse};

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::*;

    /// The CLI prints answers it decoded: each must come back as the very
    /// JSON the server wrote (nulls, absent fields, float and date forms).
    fn round_trips<T: Serialize + DeserializeOwned>(sample: &Value) -> Result<Value, String> {
        let typed: T = serde_json::from_value(sample.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }

    type Check = fn(&Value) -> Result<Value, String>;

    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    const AT: &str = "2025-01-02T03:04:05.123456Z";

    fn optimization() -> Value {
        let mut answer = optimization_without_front();
        answer["iterations"] = json!([{
            "number": 1,
            "candidates": [
                {"template": "Classify: {{text}}", "train_score": 0.75, "train_items": 6,
                 "val_score": 1.0, "discarded": null, "minibatch_score": 0.5,
                 "template_tokens": 7,
                 "val_measures": {"items": 4, "input_tokens": 20.25, "output_tokens": 1.0,
                                  "cost_usd": 0.0001, "latency_ms": 150.5,
                                  "latency_p90_ms": 170.0},
                 "val_metric_scores": [1.0, 0.5],
                 "violations": ["input_tokens 20.25 is above max 20"],
                 "combination": {"instruction": 1, "demo_set": 0}},
                {"template": [{"role": "user", "content": "{{text}}"}], "train_score": null,
                 "train_items": 0, "val_score": null,
                 "discarded": "drops the variable `text`", "minibatch_score": null,
                 "template_tokens": 5}
            ],
            "diagnosis": "too terse",
            "complete": true, "calls": 12, "cost_usd": 0.0125
        }, {
            "number": 2, "candidates": [], "complete": false, "calls": 12, "cost_usd": 0.0125
        }]);
        answer["pareto_front"] = json!([{"measure": "input_tokens", "points": [
            {"iteration": 0, "candidate": 0, "val_score": 0.5, "value": 40.5, "feasible": true},
            {"iteration": 1, "candidate": 0, "val_score": 1.0, "value": 20.25, "feasible": false}
        ]}]);
        answer
    }

    fn optimization_without_front() -> Value {
        json!({
            "id": ID, "job_id": ID, "status": "succeeded", "prompt": "sentiment",
            "version": "1.0.0", "dataset": "reviews", "strategy": "opro",
            "metric": {"name": "exact_match", "params": {"trim": true}},
            "objective": {
                "metrics": [{"name": "exact_match", "params": {"trim": true}, "weight": 1.0}],
                "constraints": [{"measure": "input_tokens", "max_ratio": 0.7}]
            },
            "max_drop": 0.01,
            "split": {"train": 0.6, "seed": 7},
            "target": {"provider": "target"},
            "optimizer": {"provider": "optimizer", "model": "m", "params": {"temperature": 0.0}},
            "max_iterations": 2, "candidates_per_iteration": 4, "patience": 3,
            "target_score": null, "budget": {"max_calls": 100}, "concurrency": 8,
            "num_demos": 3, "promote_to": "staging", "min_improvement": 0.0,
            "train_items": 6, "val_items": 4, "progress": {"done": 2, "total": 2},
            "baseline": {"train_score": 0.5, "val_score": null, "template_tokens": 12,
                         "train_measures": {"items": 6, "input_tokens": 40.5, "output_tokens": 1.0,
                                            "cost_usd": null, "latency_ms": 210.0,
                                            "latency_p90_ms": 300.0}},
            "best": {"template": "Classify: {{text}}", "train_score": 0.75, "val_score": 1.0,
                     "iteration": 1, "candidate": 0, "template_tokens": 7, "val_measures": null},
            "result_version": "1.0.1", "stop_reason": "max_iterations",
            "promotion": {"label": "staging", "moved": false, "reason": "the gate failed"},
            "usage": {"calls": 12, "cost_usd": 0.0125}, "error": null,
            "created_at": AT, "finished_at": AT
        })
    }

    #[test]
    fn every_answer_the_cli_reads_round_trips_to_the_same_json() {
        let cases: Vec<(&str, Check, Value)> = vec![
            (
                "text version",
                round_trips::<VersionResponse>,
                json!({
                    "id": ID, "prompt": "support/greeting", "version": "1.0.1", "seq": 2,
                    "type": "text", "engine": "handlebars", "template": "Hello {{name}}",
                    "model_config": {"model": "gpt-4o-mini", "temperature": 0.2},
                    "input_schema": null, "output_schema": {"type": "object"},
                    "variables": ["name"], "message": null, "metadata": {"source": "a.prompt.yaml"},
                    "parent": "1.0.0", "content_hash": "ab12", "created_at": AT, "created_by": null
                }),
            ),
            (
                "chat version",
                round_trips::<VersionResponse>,
                json!({
                    "id": ID, "prompt": "chat", "version": "1.0.0", "seq": 1,
                    "type": "chat", "engine": "jinja",
                    "messages": [{"role": "system", "content": "Be kind."},
                                 {"role": "placeholder", "name": "history"}],
                    "model_config": {}, "input_schema": {"type": "object"}, "output_schema": null,
                    "variables": [], "message": "first", "metadata": {}, "parent": null,
                    "content_hash": "cd34", "created_at": "2025-01-02T03:04:05Z", "created_by": "ci"
                }),
            ),
            (
                "diff",
                round_trips::<DiffResponse>,
                json!({
                    "prompt": "p", "from": "1.0.0", "to": "1.0.1",
                    "changes": [{"field": "model_config", "from": {"temperature": 0.2}, "to": null},
                                {"field": "template", "from": "a", "to": "b"}],
                    "diff": "--- p@1.0.0\n+++ p@1.0.1\n"
                }),
            ),
            (
                "label",
                round_trips::<LabelResponse>,
                json!({
                    "name": "production", "version": "1.0.1", "updated_at": AT, "updated_by": null
                }),
            ),
            (
                "label history",
                round_trips::<LabelMovePage>,
                json!({
                    "items": [
                        {"from": "1.0.0", "to": "1.0.1", "at": AT, "by": "ci", "rollback": false},
                        {"from": null, "to": "1.0.0", "at": AT, "by": null, "rollback": false},
                        {"from": "1.0.1", "to": null, "at": AT, "by": null, "rollback": true}
                    ],
                    "next_cursor": null
                }),
            ),
            (
                "prompt page",
                round_trips::<PromptPage>,
                json!({
                    "items": [
                        {"name": "a/b", "description": "", "tags": [], "archived": false,
                         "labels": {"production": "1.0.0"}, "latest_version": "1.0.0",
                         "latest_content_hash": "ab12", "created_at": AT, "updated_at": AT},
                        {"name": "c", "description": "d", "tags": ["x"], "archived": true,
                         "labels": {}, "latest_version": null, "latest_content_hash": null,
                         "created_at": AT, "updated_at": AT}
                    ],
                    "next_cursor": "abc"
                }),
            ),
            (
                "evaluation",
                round_trips::<EvaluationResponse>,
                json!({
                    "id": ID, "job_id": ID, "status": "succeeded", "prompt": "geo",
                    "version": "1.0.1", "dataset": "capitals", "provider": "fake", "model": null,
                    "params": {"temperature": 0},
                    "metric_specs": [{"name": "exact_match"},
                                     {"name": "regex", "params": {"pattern": "^\\d+$"}}],
                    "concurrency": 8, "progress": {"done": 2, "total": 2},
                    "metrics": {"exact_match": {"mean": 0.85, "std": 0.3663475,
                                                "ci95": [0.0, 1.0], "n": 2}},
                    "errors": 1,
                    "usage": {"input_tokens": 10, "output_tokens": 4, "cost_usd": 0.0},
                    "error": "one item failed", "created_at": AT, "finished_at": null
                }),
            ),
            (
                "job",
                round_trips::<JobResponse>,
                json!({
                    "id": ID, "kind": "evaluation", "status": "running",
                    "progress": {"done": 1, "total": 3}, "attempts": 1, "max_attempts": 3,
                    "cancel_requested": false, "error": null, "payload": {"evaluation_id": ID},
                    "created_at": AT, "started_at": AT, "finished_at": null
                }),
            ),
            (
                "gates",
                round_trips::<GateList>,
                json!({
                    "items": [{"label": "production", "dataset": "capitals",
                               "rules": [{"metric": "exact_match", "min": 0.9},
                                         {"metric": "length", "max": 2.5}],
                               "created_at": AT, "updated_at": AT}]
                }),
            ),
            (
                "optimization",
                round_trips::<OptimizationResponse>,
                optimization(),
            ),
            (
                "queued optimization",
                round_trips::<OptimizationResponse>,
                {
                    let mut queued = optimization();
                    for (key, value) in [
                        ("status", json!("queued")),
                        ("optimizer", Value::Null),
                        ("budget", json!({})),
                        ("iterations", json!([])),
                        ("best", Value::Null),
                        ("result_version", Value::Null),
                        ("stop_reason", Value::Null),
                        ("promotion", Value::Null),
                        ("promote_to", Value::Null),
                        ("target_score", json!(0.95)),
                        ("finished_at", Value::Null),
                    ] {
                        queued[key] = value;
                    }
                    queued
                },
            ),
        ];
        for (name, check, sample) in cases {
            assert_eq!(check(&sample).as_ref(), Ok(&sample), "{name}");
        }
    }

    #[test]
    fn requests_send_only_what_is_set() {
        let cases: Vec<(&str, Check, Value)> = vec![
            (
                "bare version",
                round_trips::<CreateVersionRequest>,
                json!({"template": "Hi"}),
            ),
            (
                "full version",
                round_trips::<CreateVersionRequest>,
                json!({
                    "type": "chat", "messages": [{"role": "user", "content": "Hi"}],
                    "engine": "jinja", "model_config": {"temperature": 0.2},
                    "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
                    "message": "m", "metadata": {"source": "a.prompt.yaml"}, "version": "2.0.0",
                    "parent": "1.0.0", "expected_latest": null, "labels": ["staging"]
                }),
            ),
            (
                "bumped version",
                round_trips::<CreateVersionRequest>,
                json!({
                    "template": "Hi", "bump": "minor", "expected_latest": "1.0.0"
                }),
            ),
            (
                "label",
                round_trips::<SetLabelRequest>,
                json!({"version": "1.0.1"}),
            ),
            (
                "bare prompt",
                round_trips::<CreatePromptRequest>,
                json!({"name": "a/b"}),
            ),
            (
                "prompt",
                round_trips::<CreatePromptRequest>,
                json!({
                    "name": "a/b", "description": "d", "tags": ["x"]
                }),
            ),
            (
                "prompt patch",
                round_trips::<UpdatePromptRequest>,
                json!({"tags": []}),
            ),
            (
                "evaluation",
                round_trips::<CreateEvaluationRequest>,
                json!({
                    "prompt": "geo", "dataset": "capitals", "provider": "fake",
                    "metrics": ["exact_match", {"name": "regex", "params": {"pattern": "x"}}]
                }),
            ),
            (
                "optimization",
                round_trips::<CreateOptimizationRequest>,
                json!({
                    "prompt": "sentiment", "ref": "1.0.0", "dataset": "reviews",
                    "split": {"train": 0.6, "seed": 7},
                    "metric": {"name": "exact_match", "params": null},
                    "target": {"provider": "target", "model": "t"},
                    "optimizer": {"provider": "optimizer"}, "strategy": "fewshot",
                    "max_iterations": 2, "budget": {"max_cost_usd": 1.5}, "promote_to": "staging"
                }),
            ),
        ];
        for (name, check, sample) in cases {
            assert_eq!(check(&sample).as_ref(), Ok(&sample), "{name}");
        }
    }
}
