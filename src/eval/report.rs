//! What an evaluation's stored results add up to: per-metric scores by
//! item, summaries, paired comparisons and gate checks. Reads results from
//! the store page by page; the arithmetic is `stats`'.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::stats::{compare, summarize, Comparison, Summary};
use crate::domain::jobs::{Evaluation, Gate, GateRule, ResultTotals};
use crate::domain::Version;
use crate::store::{Store, StoreResult};

const PAGE: u32 = 1000;

/// Every score of an evaluation, by metric then item, and its totals.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scores {
    pub by_metric: BTreeMap<String, BTreeMap<Uuid, f64>>,
    pub totals: ResultTotals,
}

impl Scores {
    pub async fn load(store: &Arc<dyn Store>, evaluation: &Evaluation) -> StoreResult<Self> {
        let mut scores = Scores::default();
        let mut after = 0;
        loop {
            let page = store.list_results(evaluation.id, after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(scores);
            };
            after = last.id;
            for stored in page {
                let result = stored.result;
                let totals = &mut scores.totals;
                totals.items += 1;
                totals.errors += i64::from(result.error.is_some());
                totals.input_tokens += result.input_tokens;
                totals.output_tokens += result.output_tokens;
                totals.cost_usd += result.cost_usd.unwrap_or(0.0);
                for (metric, score) in result.scores {
                    if let Some(score) = score.as_f64() {
                        scores
                            .by_metric
                            .entry(metric)
                            .or_default()
                            .insert(result.item_id, score);
                    }
                }
            }
        }
    }

    pub fn summaries(&self) -> BTreeMap<String, Summary> {
        self.by_metric
            .iter()
            .map(|(metric, scores)| {
                let values: Vec<f64> = scores.values().copied().collect();
                (metric.clone(), summarize(&values))
            })
            .collect()
    }

    /// `b` against `self` (`a`), per metric both have, over the items both scored.
    pub fn compare(&self, b: &Scores) -> BTreeMap<String, Comparison> {
        let mut out = BTreeMap::new();
        for (metric, a_scores) in &self.by_metric {
            let Some(b_scores) = b.by_metric.get(metric) else {
                continue;
            };
            let (a_paired, b_paired): (Vec<f64>, Vec<f64>) = a_scores
                .iter()
                .filter_map(|(item, a)| b_scores.get(item).map(|b| (*a, *b)))
                .unzip();
            if let Ok(comparison) = compare(&a_paired, &b_paired) {
                out.insert(metric.clone(), comparison);
            }
        }
        out
    }

    /// How the means meet each rule of a gate, in rule order.
    pub fn rule_checks(&self, rules: &[GateRule]) -> Vec<RuleCheck> {
        let summaries = self.summaries();
        rules
            .iter()
            .map(|rule| match summaries.get(&rule.metric) {
                None => RuleCheck {
                    mean: None,
                    breach: Some(Breach::NoScores),
                },
                Some(summary) => RuleCheck {
                    mean: Some(summary.mean),
                    breach: rule
                        .violation(summary.mean)
                        .map(|_| Breach::Mean(summary.mean)),
                },
            })
            .collect()
    }

    /// Every rule the means break, by rule index.
    pub fn gate_violations(&self, rules: &[GateRule]) -> Vec<(usize, Breach)> {
        violations(&self.rule_checks(rules))
    }
}

/// The checks that fail, by rule index.
fn violations(checks: &[RuleCheck]) -> Vec<(usize, Breach)> {
    checks
        .iter()
        .enumerate()
        .filter_map(|(i, check)| check.breach.map(|breach| (i, breach)))
        .collect()
}

/// One gate rule against an evaluation: the metric's mean (none without
/// scores) and how it breaks the rule, if it does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleCheck {
    pub mean: Option<f64>,
    pub breach: Option<Breach>,
}

/// How an evaluation breaks one gate rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    /// The evaluation has no scores for the rule's metric.
    NoScores,
    /// The metric's mean, outside the rule's bounds.
    Mean(f64),
}

/// What a label's gate says of a version.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    /// The version has no succeeded evaluation on the gate's dataset.
    NotEvaluated,
    /// The newest such evaluation, and how it meets each rule (in rule order).
    Evaluated {
        evaluation: Uuid,
        checks: Vec<RuleCheck>,
    },
}

impl GateVerdict {
    /// Every rule broken, by rule index (none when not evaluated).
    pub fn violations(&self) -> Vec<(usize, Breach)> {
        match self {
            Self::NotEvaluated => Vec::new(),
            Self::Evaluated { checks, .. } => violations(checks),
        }
    }

    /// Whether the version may take the label: evaluated, and no rule broken.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Evaluated { checks, .. } if checks.iter().all(|c| c.breach.is_none()))
    }
}

/// Checks `version` against `gate`: its newest succeeded evaluation on the
/// gate's dataset must meet every rule.
pub async fn check_gate(
    store: &Arc<dyn Store>,
    gate: &Gate,
    version: &Version,
) -> StoreResult<GateVerdict> {
    let Some(evaluation) = store
        .find_passing_candidate(version.id, gate.dataset_id)
        .await?
    else {
        return Ok(GateVerdict::NotEvaluated);
    };
    let checks = Scores::load(store, &evaluation)
        .await?
        .rule_checks(&gate.rules);
    Ok(GateVerdict::Evaluated {
        evaluation: evaluation.id,
        checks,
    })
}
