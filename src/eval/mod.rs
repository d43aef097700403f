//! Evaluation: the metrics that score one model output (`metrics`, with the
//! text-similarity algorithms in `similarity`) and the statistics that
//! summarise and compare lists of scores (`stats`). Everything here is a pure,
//! deterministic function of its arguments: no I/O, no clock, no store or
//! provider calls; whatever runs an evaluation fetches items and calls models
//! elsewhere and only hands strings and numbers in.

pub mod judge;
pub mod metrics;
pub mod report;
pub mod runner;
mod similarity;
pub mod stats;

pub use metrics::{LengthUnit, Metric, MetricError, Sample, METRIC_NAMES};

/// A JSON value as the text metrics and judges compare: a string as it is,
/// anything else as its JSON text.
pub fn text_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
pub use stats::{compare, summarize, Comparison, StatsError, Summary};
