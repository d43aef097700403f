//! The comparison page: two evaluations of one dataset, as
//! `GET /v1/evaluations/compare` compares them (same service), with per
//! metric the mean difference b − a and its bootstrap interval drawn as an
//! SVG interval chart around zero, the p-value, and wins, ties and losses as
//! a stacked bar; then the items the two disagree on most with their outputs
//! diffed word by word, and the diff of the two prompt versions (laid out as
//! the diff page lays it out). Every chart says in text what it draws.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::datasets::{dataset_url, shown};
use super::diff::{diff_view, DiffView, Layout};
use super::evaluations::evaluation_url;
use super::prompts::authorize;
use super::session::Signed;
use super::{prompt_url, render, with_query, Me, UiError};
use crate::api::extract::Query;
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::jobs::{Evaluation, ItemResult};
use crate::error::ApiError;
use crate::eval::stats::Comparison;
use crate::services::drafts::Changes;
use crate::services::evaluations::{self, Disagreement};

/// Items shown where the two evaluations disagree most.
const DISAGREEMENTS_SHOWN: usize = 10;

#[derive(Deserialize, Default)]
pub struct CompareParams {
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

pub fn compare_url(a: Uuid, b: Uuid) -> String {
    with_query(
        "/ui/evaluations/compare",
        &[("a", a.to_string()), ("b", b.to_string())],
    )
}

#[derive(Serialize)]
struct ComparePage<'a> {
    me: Me<'a>,
    section: &'static str,
    a: Side,
    b: Side,
    dataset: String,
    dataset_url: String,
    /// The same two, the other way round.
    swapped_url: String,
    metrics: Vec<MetricComparison>,
    /// Metrics the disagreement tables have a column for.
    columns: Vec<String>,
    disagreements: Vec<DisagreementView>,
    versions: DiffView,
    /// The diff page for the two versions, when they are of one prompt.
    diff_url: Option<String>,
}

/// One of the two evaluations, as the page names it.
#[derive(Serialize)]
struct Side {
    url: String,
    prompt: String,
    prompt_url: String,
    version: String,
    model: String,
    status: &'static str,
}

fn side(e: &Evaluation) -> Side {
    Side {
        url: evaluation_url(e.id),
        prompt: e.prompt_name.clone(),
        prompt_url: prompt_url(&e.prompt_name),
        version: e.version.to_string(),
        model: match &e.model {
            Some(model) => format!("{} / {model}", e.provider),
            None => e.provider.clone(),
        },
        status: e.job.status.as_str(),
    }
}

/// A number as the page prints it: three decimals, signed where asked, and
/// never `-0.000`.
fn number(value: f64, signed: bool) -> String {
    let value = if value.abs() < 0.0005 { 0.0 } else { value };
    if signed {
        format!("{value:+.3}")
    } else {
        format!("{value:.3}")
    }
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".to_owned()
    } else {
        format!("{p:.3}")
    }
}

#[derive(Serialize)]
struct MetricComparison {
    name: String,
    mean_diff: String,
    low: String,
    high: String,
    p_value: String,
    wins: usize,
    ties: usize,
    losses: usize,
    n: usize,
    /// What the interval says, in words.
    verdict: &'static str,
    chart: IntervalChart,
    bar: Vec<Segment>,
    /// Words for the interval chart as one image.
    chart_description: String,
    /// Words for the wins/ties/losses bar as one image.
    bar_description: String,
}

/// The SVG user units of the interval chart: the axis runs from
/// `AXIS_LEFT` to `AXIS_RIGHT`, zero in the middle.
const AXIS_LEFT: f64 = 40.0;
const AXIS_RIGHT: f64 = 280.0;
/// Symmetric axis limits to pick from: the smallest that holds the interval.
const AXIS_LIMITS: [f64; 6] = [0.05, 0.1, 0.2, 0.25, 0.5, 1.0];

#[derive(Serialize)]
struct IntervalChart {
    zero_x: f64,
    low_x: f64,
    high_x: f64,
    mean_x: f64,
    ticks: Vec<Tick>,
}

#[derive(Serialize)]
struct Tick {
    x: f64,
    label: String,
}

fn interval_chart(c: &Comparison) -> IntervalChart {
    let widest = [c.ci95[0], c.ci95[1], c.mean_diff]
        .into_iter()
        .map(f64::abs)
        .fold(0.0, f64::max);
    let limit = AXIS_LIMITS
        .into_iter()
        .find(|limit| widest <= *limit)
        .unwrap_or(1.0);
    let middle = (AXIS_LEFT + AXIS_RIGHT) / 2.0;
    let x = |value: f64| middle + value.clamp(-limit, limit) / limit * (AXIS_RIGHT - middle);
    IntervalChart {
        zero_x: middle,
        low_x: x(c.ci95[0]),
        high_x: x(c.ci95[1]),
        mean_x: x(c.mean_diff),
        ticks: [-limit, -limit / 2.0, 0.0, limit / 2.0, limit]
            .into_iter()
            .map(|value| Tick {
                x: x(value),
                label: if value == 0.0 {
                    "0".to_owned()
                } else {
                    format!("{value:+}")
                },
            })
            .collect(),
    }
}

/// One part of the wins/ties/losses bar.
#[derive(Serialize)]
struct Segment {
    /// `wins`, `ties` or `losses`: also the name of its fill pattern.
    kind: &'static str,
    /// What the part counts, in words.
    words: String,
    count: usize,
    x: f64,
    width: f64,
    /// Where its label goes, when the part is wide enough for one.
    label_x: Option<f64>,
}

/// The bar's width in SVG user units, and the narrowest part labelled.
const BAR_WIDTH: f64 = 320.0;
const LABELLED_WIDTH: f64 = 60.0;

fn bar(c: &Comparison) -> Vec<Segment> {
    let total = (c.wins + c.ties + c.losses).max(1) as f64;
    let mut x = 0.0;
    let mut segments = Vec::new();
    for (kind, count, words) in [
        ("wins", c.wins, format!("B better on {}", c.wins)),
        ("ties", c.ties, format!("same on {}", c.ties)),
        ("losses", c.losses, format!("B worse on {}", c.losses)),
    ] {
        if count == 0 {
            continue;
        }
        let width = BAR_WIDTH * count as f64 / total;
        segments.push(Segment {
            kind,
            words,
            count,
            x,
            width,
            label_x: (width >= LABELLED_WIDTH).then_some(x + width / 2.0),
        });
        x += width;
    }
    segments
}

fn metric_comparison(name: &str, c: &Comparison) -> MetricComparison {
    let (mean_diff, low, high) = (
        number(c.mean_diff, true),
        number(c.ci95[0], true),
        number(c.ci95[1], true),
    );
    let verdict = if c.ci95[0] > 0.0 {
        "B scores higher: the whole interval is above zero."
    } else if c.ci95[1] < 0.0 {
        "B scores lower: the whole interval is below zero."
    } else {
        "No clear difference: the interval includes zero."
    };
    MetricComparison {
        chart_description: format!(
            "Interval chart of {name}: mean difference B minus A {mean_diff}, \
             95% bootstrap interval {low} to {high}, against zero"
        ),
        bar_description: format!(
            "Stacked bar of {name} over {} items: B better on {}, same on {}, B worse on {}",
            c.n, c.wins, c.ties, c.losses
        ),
        name: name.to_owned(),
        p_value: p_value(c.p_value),
        wins: c.wins,
        ties: c.ties,
        losses: c.losses,
        n: c.n,
        verdict,
        chart: interval_chart(c),
        bar: bar(c),
        mean_diff,
        low,
        high,
    }
}

#[derive(Serialize)]
struct DisagreementView {
    seq: i64,
    input: Vec<(String, String)>,
    expected: Option<String>,
    metric: String,
    difference: String,
    /// One per column: A's score and B's, or none.
    scores: Vec<(Option<String>, Option<String>)>,
    a_error: Option<String>,
    b_error: Option<String>,
    outputs: DiffView,
}

fn score(result: &ItemResult, metric: &str) -> Option<String> {
    result
        .scores
        .get(metric)
        .and_then(Value::as_f64)
        .map(|s| number(s, false))
}

fn disagreement_view(d: Disagreement, columns: &[String]) -> DisagreementView {
    let outputs = Changes {
        fields: Vec::new(),
        blocks: d.outputs,
    };
    DisagreementView {
        seq: d.a.item_seq,
        input: d
            .item
            .as_ref()
            .map(|item| {
                item.input
                    .iter()
                    .map(|(k, v)| (k.clone(), shown(v)))
                    .collect()
            })
            .unwrap_or_default(),
        expected: d.item.as_ref().and_then(|i| i.expected.as_ref()).map(shown),
        difference: number(d.difference, true),
        scores: columns
            .iter()
            .map(|metric| (score(&d.a, metric), score(&d.b, metric)))
            .collect(),
        metric: d.metric,
        a_error: d.a.error,
        b_error: d.b.error,
        outputs: diff_view(
            &outputs,
            "A's output".to_owned(),
            "B's output".to_owned(),
            Layout::Split,
        ),
    }
}

fn evaluation_id(field: &str, raw: &str) -> Result<Uuid, UiError> {
    match raw.trim() {
        "" => Err(ApiError::validation(
            field,
            "pick two evaluations of one dataset to compare (A and B)",
        )
        .into()),
        raw => Uuid::parse_str(raw)
            .map_err(|_| ApiError::validation(field, "not an evaluation id").into()),
    }
}

pub async fn compare_evaluations(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<CompareParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let (a, b) = (
        evaluation_id("a", &params.a)?,
        evaluation_id("b", &params.b)?,
    );
    let detail = evaluations::compare_detail(
        &state.registry,
        session.caller.project,
        a,
        b,
        DISAGREEMENTS_SHOWN,
    )
    .await?;
    let metrics: BTreeMap<String, Comparison> = detail.metrics;
    let columns: Vec<String> = metrics.keys().cloned().collect();
    let (a, b) = (&detail.a, &detail.b);
    let name = |e: &Evaluation| format!("{} {}", e.prompt_name, e.version);
    let diff_url = (a.prompt_name == b.prompt_name).then(|| {
        with_query(
            &format!("{}/diff", prompt_url(&a.prompt_name)),
            &[
                ("from", a.version.to_string()),
                ("to", b.version.to_string()),
            ],
        )
    });
    let page = ComparePage {
        me: Me::of(&session),
        section: "evaluations",
        dataset_url: dataset_url(&a.dataset_name),
        dataset: a.dataset_name.clone(),
        swapped_url: compare_url(b.id, a.id),
        metrics: metrics
            .iter()
            .map(|(metric, c)| metric_comparison(metric, c))
            .collect(),
        disagreements: detail
            .disagreements
            .into_iter()
            .map(|d| disagreement_view(d, &columns))
            .collect(),
        columns,
        versions: diff_view(
            &detail.versions,
            format!("A: {}", name(a)),
            format!("B: {}", name(b)),
            Layout::Split,
        ),
        diff_url,
        a: side(a),
        b: side(b),
    };
    Ok(render(StatusCode::OK, "compare.html", page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(
        mean_diff: f64,
        ci95: [f64; 2],
        wins: usize,
        ties: usize,
        losses: usize,
    ) -> Comparison {
        Comparison {
            mean_diff,
            ci95,
            p_value: 0.5,
            wins,
            ties,
            losses,
            n: wins + ties + losses,
        }
    }

    #[test]
    fn the_axis_is_symmetric_around_zero_and_holds_the_interval() {
        let chart = interval_chart(&comparison(0.3, [-0.1, 0.45], 1, 1, 1));
        assert_eq!(chart.zero_x, 160.0);
        let labels: Vec<&str> = chart.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["-0.5", "-0.25", "0", "+0.25", "+0.5"]);
        assert!(chart.low_x < chart.zero_x && chart.zero_x < chart.mean_x);
        assert!(chart.mean_x < chart.high_x && chart.high_x <= AXIS_RIGHT);
        let flat = interval_chart(&comparison(0.0, [0.0, 0.0], 0, 3, 0));
        assert_eq!(flat.low_x, flat.high_x);
        assert_eq!(flat.ticks[4].label, "+0.05");
    }

    #[test]
    fn the_bar_leaves_out_empty_parts_and_labels_only_wide_ones() {
        let parts = bar(&comparison(0.1, [0.0, 0.2], 9, 1, 0));
        let kinds: Vec<&str> = parts.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["wins", "ties"]);
        assert_eq!(parts[0].width + parts[1].width, BAR_WIDTH);
        assert!(parts[0].label_x.is_some());
        assert!(parts[1].label_x.is_none(), "32 units is too narrow");
    }

    #[test]
    fn numbers_never_print_negative_zero() {
        assert_eq!(number(-0.0001, true), "+0.000");
        assert_eq!(number(-0.25, true), "-0.250");
        assert_eq!(number(1.0, false), "1.000");
        assert_eq!(p_value(0.0004), "< 0.001");
    }
}
