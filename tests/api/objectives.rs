//! Optimizations with an objective: weighted metrics, constraints on what
//! a candidate costs, the Pareto front, and the `compress` and `joint`
//! strategies. The fake target reports, as its usage, one input token per
//! word of the prompt it gets and one output token, so a longer template
//! costs more in every call. It answers by markers in the template:
//!
//! - `GENERAL`: right on every item;
//! - `MOSTLY`: right on every item but the first validation item;
//! - `DOTTED`: the right label with a full stop after it;
//! - `PAIRED`: right on every item when demonstrations of both labels come
//!   before it, else `positive` whatever it is asked;
//! - anything else: `neutral`, which is never right.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend_url_tests;
use crate::fake_llm::{RecordedRequest, Reply};
use crate::optimizations::{
    asked_seq, baseline_scores, close, drain, get, kill_after, label_of, request, resume,
    script_optimizer, setup, start, template_of, text_of, train_seqs, versions, worker, Setup,
    ITEMS,
};
use crate::support::TestApp;

fn prompt_of(request: &RecordedRequest) -> String {
    request.body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The first validation item: the one `MOSTLY` gets wrong.
fn first_val_seq() -> usize {
    let train = train_seqs();
    (1..=ITEMS)
        .find(|s| !train.contains(s))
        .expect("a validation item")
}

fn answer(request: &RecordedRequest) -> Reply {
    let prompt = prompt_of(request);
    let tokens = words(&prompt);
    let Some(seq) = asked_seq(&prompt) else {
        return Reply::counted("neutral", tokens, 1);
    };
    let right = label_of(seq);
    let demos_both = prompt.contains("Output: negative") && prompt.contains("Output: positive");
    let mostly = if seq == first_val_seq() {
        "neutral"
    } else {
        right
    };
    let text = if prompt.contains("GENERAL") {
        right.to_owned()
    } else if prompt.contains("PAIRED") {
        if demos_both { right } else { "positive" }.to_owned()
    } else if prompt.contains("MOSTLY") {
        mostly.to_owned()
    } else if prompt.contains("DOTTED") {
        format!("{right}.")
    } else {
        "neutral".to_owned()
    };
    Reply::counted(text, tokens, 1)
}

async fn objective_setup(url: &str) -> Setup {
    let setup = setup(url, |_| {}).await;
    setup.target.set_default(answer);
    setup
}

/// Exact match under one `constraint`.
fn bounded(constraint: Value) -> Value {
    json!({"metrics": [{"name": "exact_match"}], "constraints": [constraint]})
}

/// An optimization's request with `extra` over the usual one, without `metric`
/// when `extra` has an objective.
fn asking(strategy: &str, extra: Value) -> Value {
    let mut body = request(strategy, extra);
    if let Some(body) = body.as_object_mut() {
        if body.contains_key("objective") {
            body.remove("metric");
        }
    }
    body
}

async fn run(app: &TestApp, body: Value) -> Value {
    let created = start(app, body).await;
    drain(&worker(app)).await;
    let done = get(app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

fn candidates(done: &Value) -> Vec<(u32, u32, Value)> {
    let mut all = Vec::new();
    for iteration in done["iterations"].as_array().into_iter().flatten() {
        let number = iteration["number"].as_u64().unwrap_or_default() as u32;
        for (index, c) in iteration["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            all.push((number, index as u32, c.clone()));
        }
    }
    all
}

fn candidate_with<'a>(all: &'a [(u32, u32, Value)], marker: &str) -> &'a Value {
    &all.iter()
        .find(|(_, _, c)| template_of(c).contains(marker))
        .unwrap_or_else(|| panic!("no candidate with {marker}"))
        .2
}

/// The points no other beats on both score and `measure`, computed here
/// from every template scored on validation.
fn undominated(done: &Value, measure: &str) -> BTreeSet<(u32, u32)> {
    let value = |measures: &Value, tokens: &Value| match measure {
        "template_tokens" => tokens.as_f64(),
        other => measures[other].as_f64(),
    };
    let mut points: Vec<((u32, u32), f64, f64)> = Vec::new();
    let baseline = &done["baseline"];
    if let (Some(score), Some(v)) = (
        baseline["val_score"].as_f64(),
        value(&baseline["val_measures"], &baseline["template_tokens"]),
    ) {
        points.push(((0, 0), score, v));
    }
    for (iteration, index, c) in candidates(done) {
        if let (Some(score), Some(v)) = (
            c["val_score"].as_f64(),
            value(&c["val_measures"], &c["template_tokens"]),
        ) {
            points.push(((iteration, index), score, v));
        }
    }
    points
        .iter()
        .filter(|(_, s, v)| {
            !points
                .iter()
                .any(|(_, qs, qv)| qs >= s && qv <= v && (qs > s || qv < v))
        })
        .map(|(key, _, _)| *key)
        .collect()
}

fn front(done: &Value, measure: &str) -> Vec<(u32, u32)> {
    done["pareto_front"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["measure"] == measure)
        .and_then(|f| f["points"].as_array())
        .map(|points| {
            points
                .iter()
                .map(|p| {
                    (
                        p["iteration"].as_u64().unwrap_or_default() as u32,
                        p["candidate"].as_u64().unwrap_or_default() as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const LONG_GENERAL: &str = "<prompt>GENERAL: answer with the single word positive or negative \
and nothing else, after reading the whole of this customer review with great care: {{text}}</prompt>";
const MOSTLY: &str = "<prompt>MOSTLY: {{text}}</prompt>";

/// An opro run of two iterations with one candidate each (the long
/// `GENERAL`, then `MOSTLY`) under `constraint` on exact match, promoting
/// to production; answers the set-up (keep it: it holds the fakes) and the
/// finished optimization.
async fn run_constrained(url: &str, constraint: Value) -> (Setup, Value) {
    let setup = objective_setup(url).await;
    script_optimizer(&setup.optimizer, vec![LONG_GENERAL, MOSTLY]);
    let done = run(
        &setup.app,
        asking(
            "opro",
            json!({
                "objective": bounded(constraint),
                "candidates_per_iteration": 1,
                "max_iterations": 2,
                "promote_to": "production"
            }),
        ),
    )
    .await;
    (setup, done)
}

async fn a_constraint_the_best_breaks_makes_the_best_feasible_one_the_result(url: String) {
    let (setup, done) =
        run_constrained(&url, json!({"measure": "input_tokens", "max_ratio": 1.5})).await;
    let app = &setup.app;
    let all = candidates(&done);
    let general = candidate_with(&all, "GENERAL");
    let mostly = candidate_with(&all, "MOSTLY");
    // The best score breaks the constraint, and says so.
    assert!(close(&general["val_score"], 1.0), "{done}");
    let broken = general["violations"][0].as_str().unwrap_or_default();
    assert!(
        broken.starts_with("input_tokens") && broken.contains("max_ratio 1.5"),
        "{done}"
    );
    assert!(mostly["violations"].is_null(), "{done}");
    // Every scored candidate keeps its measures: one token per word.
    let base_tokens = done["baseline"]["val_measures"]["input_tokens"]
        .as_f64()
        .expect("baseline measured");
    let general_tokens = general["val_measures"]["input_tokens"]
        .as_f64()
        .expect("measured");
    assert!(general_tokens > 1.5 * base_tokens, "{done}");
    assert_eq!(general["val_measures"]["items"], 4);
    assert_eq!(general["train_measures"]["items"], 4);
    assert_eq!(general["val_measures"]["output_tokens"], 1.0);
    // The result is the best that meets it.
    assert!(close(&done["best"]["val_score"], 0.75), "{done}");
    assert!(template_of(&done["best"]).contains("MOSTLY"));
    let all_versions = versions(app).await;
    assert_eq!(all_versions.len(), 2);
    assert!(all_versions[0]["template"]
        .as_str()
        .is_some_and(|t| t.contains("MOSTLY")));
    assert_eq!(
        all_versions[0]["metadata"]["objective"]["constraints"][0]["max_ratio"],
        1.5
    );
    assert_eq!(done["promotion"]["moved"], true, "{done}");
    // The front: exactly the templates nothing beats on score and tokens.
    for measure in ["input_tokens", "template_tokens"] {
        let listed = front(&done, measure);
        assert_eq!(
            listed.iter().copied().collect::<BTreeSet<_>>(),
            undominated(&done, measure),
            "{measure}: {done}"
        );
    }
    // MOSTLY is cheaper and better than the baseline; GENERAL scores best.
    assert_eq!(front(&done, "input_tokens"), vec![(2, 0), (1, 0)], "{done}");
    let points = &done["pareto_front"][0]["points"];
    assert_eq!(points[0]["feasible"], true);
    assert_eq!(points[1]["feasible"], false);

    // A person may still keep another point of the front as a version, but
    // no label moves to one that breaks the constraints.
    let id = done["id"].as_str().expect("id");
    let refused = app
        .post(
            &format!("/v1/optimizations/{id}/adopt"),
            json!({"iteration": 1, "candidate": 0, "label": "staging"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["errors"][0]["field"], "label");
    assert_eq!(versions(app).await.len(), 2, "nothing written");
    let adopted = app
        .post(
            &format!("/v1/optimizations/{id}/adopt"),
            json!({"iteration": 1, "candidate": 0}),
        )
        .await;
    assert_eq!(adopted.status, 201, "{}", adopted.body);
    assert!(template_of(&adopted.body).contains("GENERAL"));
    assert_eq!(adopted.body["parent"], "1.0.0");
    assert_eq!(
        adopted.body["metadata"]["adopted"],
        json!({"iteration": 1, "candidate": 0})
    );
    // A point that meets them may be adopted with a label, which moves.
    let promoted = app
        .post(
            &format!("/v1/optimizations/{id}/adopt"),
            json!({"iteration": 2, "candidate": 0, "label": "staging"}),
        )
        .await;
    assert_eq!(promoted.status, 201, "{}", promoted.body);
    assert_eq!(template_of(&promoted.body), "MOSTLY: {{text}}");
    let labels = app.get("/v1/prompts/sentiment/labels").await;
    let staging = labels.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == "staging")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        staging["version"], promoted.body["version"],
        "{}",
        labels.body
    );
    let missing = app
        .post(
            &format!("/v1/optimizations/{id}/adopt"),
            json!({"iteration": 1, "candidate": 5}),
        )
        .await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(missing.body["errors"][0]["field"], "candidate");
}

async fn with_no_feasible_candidate_there_is_no_version(url: String) {
    let (setup, done) = run_constrained(&url, json!({"measure": "input_tokens", "max": 3})).await;
    let app = &setup.app;
    assert_eq!(done["stop_reason"], "no_feasible_candidate", "{done}");
    assert!(done["result_version"].is_null());
    assert!(done["best"].is_null());
    assert_eq!(versions(app).await.len(), 1);
    assert_eq!(done["promotion"]["moved"], false);
    assert_eq!(
        done["promotion"]["reason"],
        "no candidate met the constraints"
    );
    assert!(done["baseline"]["violations"][0]
        .as_str()
        .is_some_and(|v| v.contains("above max 3")));
    let summary = app.get("/v1/optimizations?prompt=sentiment").await;
    assert_eq!(
        summary.body["items"][0]["stop_reason"],
        "no_feasible_candidate"
    );
}

async fn weights_pick_what_the_weighted_mean_prefers(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = objective_setup(&url).await;
    script_optimizer(
        &optimizer,
        vec!["<prompt>GENERAL {{text}}</prompt><prompt>DOTTED {{text}}</prompt>"],
    );
    for (exact, stop, winner) in [(0.8, 0.2, "GENERAL"), (0.2, 0.8, "DOTTED")] {
        let done = run(
            &app,
            asking(
                "opro",
                json!({
                    "objective": {"metrics": [
                        {"name": "exact_match", "weight": exact},
                        {"name": "regex", "params": {"pattern": "\\.$"}, "weight": stop}
                    ]},
                    "candidates_per_iteration": 2,
                    "max_iterations": 1
                }),
            ),
        )
        .await;
        assert!(template_of(&done["best"]).contains(winner), "{done}");
        assert!(close(&done["best"]["val_score"], 0.8), "{done}");
        let all = candidates(&done);
        let best = candidate_with(&all, winner);
        let expected = if winner == "GENERAL" {
            json!([1.0, 0.0])
        } else {
            json!([0.0, 1.0])
        };
        assert_eq!(best["val_metric_scores"], expected, "{done}");
        assert_eq!(
            done["objective"]["metrics"][1],
            json!({"name": "regex", "params": {"pattern": "\\.$"}, "weight": stop})
        );
        assert_eq!(done["metric"]["name"], "exact_match");
    }
}

const LONG_BASE: &str = "GENERAL: please read the customer review below carefully and then \
classify its sentiment as positive or negative: {{text}}";

async fn compress_returns_a_shorter_candidate_within_max_drop(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = objective_setup(&url).await;
    app.seed_version("sentiment", LONG_BASE).await;
    script_optimizer(
        &optimizer,
        vec![
            "<prompt>GENERAL: please read the customer review below very carefully and then \
             classify its overall sentiment as positive or negative: {{text}}</prompt>\
             <prompt>Sentiment of {{text}}</prompt>\
             <prompt>GENERAL: classify {{text}}</prompt>\
             <prompt>GENERAL: classify the review {{text}}</prompt>",
            "<prompt>Say {{text}}</prompt>",
        ],
    );
    let done = run(
        &app,
        request(
            "compress",
            json!({
                "ref": "1.0.1",
                "candidates_per_iteration": 4,
                "max_iterations": 2,
                "promote_to": "production"
            }),
        ),
    )
    .await;
    let all = candidates(&done);
    let longer = candidate_with(&all, "very carefully");
    assert!(longer["discarded"]
        .as_str()
        .is_some_and(|why| why.starts_with("not shorter than the base")));
    assert!(longer["train_score"].is_null(), "never scored: {done}");
    assert_eq!(template_of(&done["best"]), "GENERAL: classify {{text}}");
    let base_tokens = done["baseline"]["template_tokens"]
        .as_u64()
        .expect("tokens");
    let best_tokens = done["best"]["template_tokens"].as_u64().expect("tokens");
    assert!(best_tokens < base_tokens, "{done}");
    assert!(close(&done["best"]["val_score"], 1.0), "{done}");
    // A shorter candidate that loses more than max_drop is never the result.
    let say = candidate_with(&all, "Say");
    if say["val_score"].is_number() {
        assert!(say["violations"][0]
            .as_str()
            .is_some_and(|v| v.contains("max_drop 0.01")));
    }
    let all_versions = versions(&app).await;
    assert_eq!(all_versions.len(), 3);
    assert_eq!(all_versions[0]["template"], "GENERAL: classify {{text}}");
    assert_eq!(done["promotion"]["moved"], true, "{done}");
    assert_eq!(done["max_drop"], 0.01);
}

/// Killed once its first iteration is saved: another worker finishes the
/// job, with exactly one (shorter) result version.
async fn a_killed_compress_job_resumes_with_one_version(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| config.worker.lease_secs = 1).await;
    target.set_default(answer);
    target.set_latency(Duration::from_millis(20));
    app.seed_version("sentiment", LONG_BASE).await;
    script_optimizer(
        &optimizer,
        vec![
            "<prompt>GENERAL: classify the review {{text}}</prompt>",
            "<prompt>GENERAL: classify {{text}}</prompt>",
        ],
    );
    let created = start(
        &app,
        request(
            "compress",
            json!({"ref": "1.0.1", "concurrency": 2, "max_iterations": 2, "patience": 2}),
        ),
    )
    .await;
    kill_after(&app, &created, 1).await;
    resume(&app).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let job = format!("/v1/jobs/{}", created["job_id"].as_str().expect("job"));
    assert_eq!(app.get(&job).await.body["attempts"], 2);
    assert_eq!(
        template_of(&done["best"]),
        "GENERAL: classify {{text}}",
        "{done}"
    );
    let all = versions(&app).await;
    assert_eq!(all.len(), 3, "exactly one result version");
    assert_eq!(all[0]["metadata"]["optimization_id"], created["id"]);
    assert_eq!(all[0]["metadata"]["strategy"], "compress");
}

const INSTRUCTIONS: &str =
    "<prompt>PAIRED: {{text}}</prompt><prompt>Review: {{text}}</prompt><prompt>Label it: {{text}}</prompt>";

fn iteration_templates(done: &Value) -> Vec<Vec<String>> {
    done["iterations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(template_of)
                .collect()
        })
        .collect()
}

async fn joint_is_seeded_and_finds_the_best_combination(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = objective_setup(&url).await;
    script_optimizer(&optimizer, vec![INSTRUCTIONS]);
    let body = request(
        "joint",
        json!({"num_demos": 3, "candidates_per_iteration": 4, "max_iterations": 3, "patience": 3}),
    );
    let first = run(&app, body.clone()).await;
    let best = template_of(&first["best"]);
    assert!(
        best.contains("PAIRED")
            && best.contains("Output: positive")
            && best.contains("Output: negative"),
        "{first}"
    );
    assert!(close(&first["best"]["val_score"], 1.0), "{first}");
    let pair = &first["best"];
    assert!(pair["template_tokens"].as_u64() > first["baseline"]["template_tokens"].as_u64());
    // The base's own instruction without demonstrations is the baseline:
    // never proposed again.
    assert!(candidates(&first)
        .iter()
        .all(|(_, _, c)| template_of(c) != "Classify the sentiment of: {{text}}"));
    // The same seed searches the same way.
    let second = run(&app, body).await;
    assert_eq!(iteration_templates(&first), iteration_templates(&second));
    assert!(!iteration_templates(&first).is_empty());

    // Bounded in what every call costs, the instruction alone wins: the
    // demonstrations would break the bound.
    let cheap = run(
        &app,
        asking(
            "joint",
            json!({
                "objective": bounded(json!({"measure": "input_tokens", "max_ratio": 1.3})),
                "num_demos": 3,
                "candidates_per_iteration": 4,
                "max_iterations": 3,
                "patience": 3
            }),
        ),
    )
    .await;
    assert_eq!(template_of(&cheap["best"]), "PAIRED: {{text}}", "{cheap}");
    let (_, positives_in_val) = baseline_scores();
    assert!(
        close(&cheap["best"]["val_score"], positives_in_val),
        "{cheap}"
    );
    let all = candidates(&cheap);
    let paired_alone = all
        .iter()
        .find(|(_, _, c)| template_of(c) == "PAIRED: {{text}}")
        .map(|(_, _, c)| c)
        .expect("tried");
    assert_eq!(paired_alone["combination"]["demo_set"], 0);
}

/// Killed once the first iteration is saved, retried calls on the way: every
/// measure is over each split's items exactly once.
async fn measures_are_counted_once_across_retries_and_resumes(url: String) {
    let Setup {
        app,
        target,
        optimizer,
    } = setup(&url, |config| config.worker.lease_secs = 1).await;
    target.set_default(answer);
    target.set_latency(Duration::from_millis(20));
    // Two failed attempts the provider's retries absorb.
    target.push(Reply::Status(500, None));
    target.push(Reply::Status(429, Some(0)));
    script_optimizer(&optimizer, vec![MOSTLY, LONG_GENERAL]);
    let created = start(
        &app,
        asking(
            "opro",
            json!({
                "objective": bounded(json!({"measure": "input_tokens", "max_ratio": 1.5})),
                "concurrency": 2,
                "candidates_per_iteration": 1,
                "max_iterations": 2
            }),
        ),
    )
    .await;
    kill_after(&app, &created, 1).await;
    resume(&app).await;
    let done = get(&app, &created).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let train = train_seqs();
    let base_words = |seq: usize| words(&format!("Classify the sentiment of: {}", text_of(seq)));
    let mean_over = |seqs: Vec<usize>| {
        seqs.iter().map(|s| base_words(*s) as f64).sum::<f64>() / seqs.len() as f64
    };
    let (train_mean, val_mean) = (
        mean_over((1..=ITEMS).filter(|s| train.contains(s)).collect()),
        mean_over((1..=ITEMS).filter(|s| !train.contains(s)).collect()),
    );
    let baseline = &done["baseline"];
    assert_eq!(baseline["train_measures"]["items"], 6, "{done}");
    assert_eq!(baseline["val_measures"]["items"], 4, "{done}");
    assert!(close(
        &baseline["train_measures"]["input_tokens"],
        train_mean
    ));
    assert!(close(&baseline["val_measures"]["input_tokens"], val_mean));
    for (_, _, c) in candidates(&done) {
        if c["val_score"].is_number() {
            assert_eq!(c["val_measures"]["items"], 4, "{done}");
        }
        assert_eq!(c["train_measures"]["items"], 4, "{done}");
    }
    let mostly = candidate_with(&candidates(&done), "MOSTLY").clone();
    assert!(template_of(&done["best"]).contains("MOSTLY"), "{done}");
    assert!(close(
        &done["best"]["val_score"],
        mostly["val_score"].as_f64().unwrap_or(-1.0)
    ));
    assert_eq!(versions(&app).await.len(), 2, "exactly one result version");
}

async fn bad_objectives_name_the_problem(url: String) {
    let Setup {
        app,
        target: _target,
        optimizer: _optimizer,
    } = objective_setup(&url).await;
    let cases = [
        (
            json!({"objective": {"metrics": [{"name": "exact_match", "weight": 0}]}}),
            "objective.metrics[0].weight",
        ),
        (json!({"objective": {"metrics": []}}), "objective.metrics"),
        (
            json!({"objective": {"metrics": [{"name": "nope"}]}}),
            "objective.metrics[0]",
        ),
        (
            json!({"objective": {"metrics": [{"name": "exact_match"}],
                   "constraints": [{"measure": "input_tokens"}]}}),
            "objective.constraints[0]",
        ),
        (
            json!({"objective": bounded(json!({"measure": "cost_usd", "max": 0.01}))}),
            "objective.constraints[0]",
        ),
        (
            json!({"objective": {"metrics": [{"name": "exact_match"}],
                   "constraints": [{"measure": "input_tokens", "min": 5, "max": 2}]}}),
            "objective.constraints[0]",
        ),
        (json!({"max_drop": 0.1}), "max_drop"),
        (json!({"strategy": "compress", "max_drop": 1.5}), "max_drop"),
        (
            json!({"strategy": "compress", "target_score": 0.9}),
            "target_score",
        ),
        (json!({"strategy": "joint", "optimizer": null}), "optimizer"),
    ];
    for (extra, field) in cases {
        let body = asking("opro", extra.clone());
        let refused = app.post("/v1/optimizations", body).await;
        assert_eq!(refused.status, 422, "{extra}: {}", refused.body);
        let fields: Vec<&str> = refused.body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{extra}: {}", refused.body);
    }
    // Both forms at once, and neither.
    let mut both = request(
        "opro",
        json!({"objective": {"metrics": [{"name": "exact_match"}]}}),
    );
    let refused = app.post("/v1/optimizations", both.clone()).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    if let Some(body) = both.as_object_mut() {
        body.remove("metric");
        body.remove("objective");
    }
    let refused = app.post("/v1/optimizations", both).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.to_string().contains("give a metric"));
    // An unknown measure is the body's problem.
    let refused = app
        .post(
            "/v1/optimizations",
            asking(
                "opro",
                json!({"objective": bounded(json!({"measure": "vibes", "max": 1}))}),
            ),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(versions(&app).await.len(), 1);
}

async fn the_cli_runs_a_constrained_optimization(url: String) {
    let Setup {
        app,
        optimizer,
        target: _target,
    } = objective_setup(&url).await;
    script_optimizer(&optimizer, vec![LONG_GENERAL, MOSTLY]);
    let server = app.serve().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = worker(&app);
    let stop = shutdown.clone();
    let background = tokio::spawn(async move { running.run(stop).await });
    let seed = crate::optimizations::SEED.to_string();
    let args = [
        "optimize",
        "sentiment",
        "--ref",
        "1.0.0",
        "--dataset",
        "reviews",
        "--metric-weight",
        "exact_match=2",
        "--constraint",
        "input_tokens:max_ratio=1.5",
        "--strategy",
        "opro",
        "--target-provider",
        "target",
        "--optimizer-provider",
        "optimizer",
        "--seed",
        &seed,
        "--candidates",
        "1",
        "--max-iterations",
        "2",
        "--wait",
    ];
    let (code, report) = crate::cli::cli_json(&server, &args).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["objective"],
        json!({"metrics": [{"name": "exact_match", "weight": 2.0}],
               "constraints": [{"measure": "input_tokens", "max_ratio": 1.5}]})
    );
    assert!(template_of(&report["best"]).contains("MOSTLY"), "{report}");
    // The human report shows the front.
    script_optimizer(&optimizer, vec![LONG_GENERAL, MOSTLY]);
    let human = crate::cli::cli(&server, &args).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    assert!(text.contains("front by input_tokens: 2.1 0.750"), "{text}");
    assert!(text.contains("(breaks a constraint)"), "{text}");
    let bad = crate::cli::cli(
        &server,
        &[
            "optimize",
            "sentiment",
            "--dataset",
            "reviews",
            "--constraint",
            "input_tokens:under=3",
            "--strategy",
            "opro",
            "--target-provider",
            "target",
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown bound"));
    shutdown.cancel();
    background.await.expect("worker stops");
}

backend_url_tests!(
    a_constraint_the_best_breaks_makes_the_best_feasible_one_the_result,
    with_no_feasible_candidate_there_is_no_version,
    weights_pick_what_the_weighted_mean_prefers,
    compress_returns_a_shorter_candidate_within_max_drop,
    a_killed_compress_job_resumes_with_one_version,
    joint_is_seeded_and_finds_the_best_combination,
    measures_are_counted_once_across_retries_and_resumes,
    bad_objectives_name_the_problem,
    the_cli_runs_a_constrained_optimization,
);
