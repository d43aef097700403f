//! What an optimization optimizes: a weighted mean of metrics, subject to
//! constraints on what a candidate costs (tokens, dollars, latency, its own
//! length). Plain data and the rules over it: measuring, checking a
//! constraint and the Pareto front of score against each measure.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::jobs::MetricSpec;

/// One metric of the objective and its weight in the weighted mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WeightedMetric {
    #[serde(flatten)]
    pub metric: MetricSpec,
    /// Positive; the score is `Σ weight × metric / Σ weight`.
    #[schema(example = 1.0)]
    pub weight: f64,
}

/// What a candidate costs, measured per candidate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Mean input (prompt) tokens per item, as the provider reports them.
    InputTokens,
    /// Mean output tokens per item, as the provider reports them.
    OutputTokens,
    /// Mean dollars per item, from the configured prices.
    CostUsd,
    /// Mean provider latency per item, in milliseconds.
    LatencyMs,
    /// The 90th percentile of the provider latency per item.
    LatencyP90Ms,
    /// The candidate template's own length (see [`template_tokens`]).
    TemplateTokens,
}

impl Measure {
    pub const ALL: [Measure; 6] = [
        Self::InputTokens,
        Self::OutputTokens,
        Self::CostUsd,
        Self::LatencyMs,
        Self::LatencyP90Ms,
        Self::TemplateTokens,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InputTokens => "input_tokens",
            Self::OutputTokens => "output_tokens",
            Self::CostUsd => "cost_usd",
            Self::LatencyMs => "latency_ms",
            Self::LatencyP90Ms => "latency_p90_ms",
            Self::TemplateTokens => "template_tokens",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether demonstrations in the template make this measure grow.
    pub fn grows_with_prompt(self) -> bool {
        matches!(
            self,
            Self::InputTokens | Self::CostUsd | Self::TemplateTokens
        )
    }
}

/// A bound on one measure; at least one of `max`, `max_ratio` and `min`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"measure": "input_tokens", "max_ratio": 0.7}))]
pub struct Constraint {
    pub measure: Measure,
    /// At most this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// At most this share of the baseline's value (0.7: 70% of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    /// At least this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

impl Constraint {
    /// How the constraint is broken by `value` (`None`: not measured), with
    /// the baseline's value for `max_ratio`; `None` when it holds.
    pub fn broken(&self, value: Option<f64>, baseline: Option<f64>) -> Option<String> {
        let name = self.measure.as_str();
        let Some(value) = value else {
            return Some(format!(
                "{name} is not known (for cost_usd: the model has no configured price)"
            ));
        };
        if let Some(max) = self.max {
            if value > max + f64::EPSILON * max.abs().max(1.0) {
                return Some(format!("{name} {} is above max {}", round(value), max));
            }
        }
        if let Some(ratio) = self.max_ratio {
            match baseline {
                Some(baseline) if value <= baseline * ratio + 1e-9 => {}
                Some(baseline) => {
                    return Some(format!(
                        "{name} {} is above max_ratio {ratio} of the baseline's {} ({})",
                        round(value),
                        round(baseline),
                        round(baseline * ratio)
                    ))
                }
                None => return Some(format!("the baseline's {name} is not known")),
            }
        }
        if let Some(min) = self.min {
            if value < min {
                return Some(format!("{name} {} is below min {}", round(value), min));
            }
        }
        None
    }
}

/// The short form `MEASURE:BOUND=VALUE`, e.g. `input_tokens:max_ratio=0.7`,
/// as the CLI and the web form take it.
impl std::str::FromStr for Constraint {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let shape =
            || format!("{raw:?} is not MEASURE:BOUND=VALUE (e.g. input_tokens:max_ratio=0.7)");
        let (measure, bound) = raw.split_once(':').ok_or_else(shape)?;
        let (bound, value) = bound.split_once('=').ok_or_else(shape)?;
        let measure = Measure::parse(measure.trim()).ok_or_else(|| {
            let known: Vec<&str> = Measure::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown measure {measure:?}; one of {}", known.join(", "))
        })?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("the value in {raw:?} is not a number"))?;
        let mut constraint = Constraint {
            measure,
            max: None,
            max_ratio: None,
            min: None,
        };
        match bound.trim() {
            "max" => constraint.max = Some(value),
            "max_ratio" => constraint.max_ratio = Some(value),
            "min" => constraint.min = Some(value),
            other => return Err(format!("unknown bound {other:?}; max, max_ratio or min")),
        }
        Ok(constraint)
    }
}

/// Metrics and their weights, and the constraints every result must meet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Objective {
    pub metrics: Vec<WeightedMetric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

impl Objective {
    /// The single-metric objective.
    pub fn single(metric: MetricSpec) -> Self {
        Self {
            metrics: vec![WeightedMetric {
                metric,
                weight: 1.0,
            }],
            constraints: Vec::new(),
        }
    }

    /// How a meta prompt names the score: the metric, or the weighted mean.
    pub fn describe(&self) -> String {
        match self.metrics.as_slice() {
            [one] => one.metric.name.clone(),
            many => {
                let parts: Vec<String> = many
                    .iter()
                    .map(|m| format!("{} (weight {})", m.metric.name, m.weight))
                    .collect();
                format!("the weighted mean of {}", parts.join(", "))
            }
        }
    }

    /// Whether a constraint bounds what demonstrations add to every call.
    pub fn bounds_prompt_cost(&self) -> bool {
        self.constraints
            .iter()
            .any(|c| c.measure.grows_with_prompt() && (c.max.is_some() || c.max_ratio.is_some()))
    }

    /// Every constraint `measured` breaks, against the baseline's values.
    pub fn violations(&self, measured: &Measured, baseline: &Measured) -> Vec<String> {
        self.constraints
            .iter()
            .filter_map(|c| c.broken(measured.get(c.measure), baseline.get(c.measure)))
            .collect()
    }

    /// The constraints on the template's length alone, which can be checked
    /// before a candidate costs a call.
    pub fn template_violations(&self, tokens: u32, baseline_tokens: u32) -> Vec<String> {
        self.constraints
            .iter()
            .filter(|c| c.measure == Measure::TemplateTokens)
            .filter_map(|c| c.broken(Some(f64::from(tokens)), Some(f64::from(baseline_tokens))))
            .collect()
    }
}

/// What the target model's calls for one template on one split cost, per
/// item answered (items without an answer have no usage to count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Measures {
    /// Items with an answer: what the means are over.
    pub items: u32,
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// `null` when the model has no configured price.
    pub cost_usd: Option<f64>,
    pub latency_ms: f64,
    pub latency_p90_ms: f64,
}

/// One call's usage, as a completion reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
}

impl Measures {
    /// The means over `calls`; `None` when there are none.
    pub fn of(calls: &[CallUsage]) -> Option<Self> {
        if calls.is_empty() {
            return None;
        }
        let n = calls.len() as f64;
        let mean = |f: &dyn Fn(&CallUsage) -> f64| calls.iter().map(f).sum::<f64>() / n;
        let cost = calls
            .iter()
            .map(|c| c.cost_usd)
            .sum::<Option<f64>>()
            .map(|total| total / n);
        let mut latencies: Vec<u64> = calls.iter().map(|c| c.latency_ms).collect();
        latencies.sort_unstable();
        // Nearest rank: the smallest latency at or above 90% of the items.
        let rank = ((0.9 * n).ceil() as usize).clamp(1, latencies.len());
        Some(Self {
            items: calls.len() as u32,
            input_tokens: mean(&|c| c.input_tokens as f64),
            output_tokens: mean(&|c| c.output_tokens as f64),
            cost_usd: cost,
            latency_ms: mean(&|c| c.latency_ms as f64),
            latency_p90_ms: latencies.get(rank - 1).copied().unwrap_or_default() as f64,
        })
    }
}

/// A template's measures on one split and its own length: what a
/// constraint is checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    pub measures: Option<Measures>,
    pub template_tokens: Option<u32>,
}

impl Measured {
    pub fn get(&self, measure: Measure) -> Option<f64> {
        let m = self.measures;
        match measure {
            Measure::InputTokens => m.map(|m| m.input_tokens),
            Measure::OutputTokens => m.map(|m| m.output_tokens),
            Measure::CostUsd => m.and_then(|m| m.cost_usd),
            Measure::LatencyMs => m.map(|m| m.latency_ms),
            Measure::LatencyP90Ms => m.map(|m| m.latency_p90_ms),
            Measure::TemplateTokens => self.template_tokens.map(f64::from),
        }
    }
}

/// A template's length in tokens, counted the same way for every candidate
/// whatever the model: each run of letters and digits is one token, and so
/// is every other character that is not white space. Chat templates count
/// every message's content. Close to, and model-independent unlike, a BPE
/// tokenizer's count for English prose.
pub fn template_tokens(text: &str) -> u32 {
    let mut count = 0u32;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if !in_word {
                count += 1;
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                count += 1;
            }
        }
    }
    count
}

/// A point for the Pareto front: a scored template and one measure of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point<K> {
    pub key: K,
    pub score: f64,
    pub value: f64,
}

/// The points no other point dominates (at least as good a score and at
/// most as large a value, better in one), cheapest first. Equal points are
/// all kept.
pub fn pareto_front<K: Copy>(points: &[Point<K>]) -> Vec<Point<K>> {
    let dominates = |q: &Point<K>, p: &Point<K>| {
        q.score >= p.score && q.value <= p.value && (q.score > p.score || q.value < p.value)
    };
    let mut front: Vec<Point<K>> = points
        .iter()
        .filter(|p| !points.iter().any(|q| dominates(q, p)))
        .copied()
        .collect();
    front.sort_by(|a, b| {
        a.value
            .total_cmp(&b.value)
            .then(b.score.total_cmp(&a.score))
    });
    front
}

/// Four significant decimals at most, for messages.
fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, latency: u64) -> CallUsage {
        CallUsage {
            input_tokens: input,
            output_tokens: 1,
            cost_usd: Some(0.5),
            latency_ms: latency,
        }
    }

    #[test]
    fn measures_are_means_with_a_nearest_rank_p90() {
        let calls: Vec<CallUsage> = (1..=10).map(|i| usage(i * 10, i)).collect();
        let m = Measures::of(&calls).expect("measured");
        assert_eq!(m.items, 10);
        assert!((m.input_tokens - 55.0).abs() < 1e-9);
        assert_eq!(m.cost_usd, Some(0.5));
        assert!((m.latency_ms - 5.5).abs() < 1e-9);
        assert!((m.latency_p90_ms - 9.0).abs() < 1e-9);
        let unpriced = CallUsage {
            cost_usd: None,
            ..usage(1, 1)
        };
        assert_eq!(
            Measures::of(&[usage(1, 1), unpriced]).and_then(|m| m.cost_usd),
            None
        );
        assert!(Measures::of(&[]).is_none());
    }

    #[test]
    fn constraints_name_what_they_break() {
        let ratio = Constraint {
            measure: Measure::InputTokens,
            max: None,
            max_ratio: Some(0.7),
            min: None,
        };
        assert_eq!(ratio.broken(Some(70.0), Some(100.0)), None);
        let broken = ratio.broken(Some(71.0), Some(100.0)).expect("broken");
        assert!(
            broken.contains("input_tokens 71 is above max_ratio 0.7"),
            "{broken}"
        );
        let max = Constraint {
            measure: Measure::CostUsd,
            max: Some(0.01),
            max_ratio: None,
            min: None,
        };
        assert!(max
            .broken(None, None)
            .is_some_and(|w| w.contains("not known")));
        assert_eq!(max.broken(Some(0.01), None), None);
        let min = Constraint {
            measure: Measure::OutputTokens,
            max: None,
            max_ratio: None,
            min: Some(2.0),
        };
        assert!(min.broken(Some(1.0), None).is_some());
    }

    #[test]
    fn the_short_form_reads_one_bound() {
        let c: Constraint = "input_tokens:max_ratio=0.7".parse().expect("reads");
        assert_eq!(
            (c.measure, c.max_ratio, c.max),
            (Measure::InputTokens, Some(0.7), None)
        );
        let c: Constraint = " latency_p90_ms : max = 800 ".parse().expect("reads");
        assert_eq!((c.measure, c.max), (Measure::LatencyP90Ms, Some(800.0)));
        for bad in [
            "input_tokens",
            "vibes:max=1",
            "input_tokens:under=1",
            "cost_usd:max=x",
        ] {
            assert!(bad.parse::<Constraint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn template_tokens_count_words_and_symbols() {
        assert_eq!(template_tokens("Classify: {{text}}"), 7);
        assert_eq!(template_tokens("  a  b\n"), 2);
        assert_eq!(template_tokens(""), 0);
    }

    #[test]
    fn the_front_keeps_exactly_the_undominated_points() {
        let p = |key, score, value| Point { key, score, value };
        let points = [
            p(0, 0.5, 100.0),
            p(1, 0.9, 100.0),
            p(2, 0.8, 60.0),
            p(3, 0.7, 80.0), // dominated by 2
            p(4, 0.8, 60.0), // equal to 2: kept
            p(5, 0.2, 10.0),
        ];
        let keys: Vec<i32> = pareto_front(&points).iter().map(|p| p.key).collect();
        assert_eq!(keys, vec![5, 2, 4, 1]);
    }
}
