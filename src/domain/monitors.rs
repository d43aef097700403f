//! Monitors: a watch on a label after its rollout. The label's version's
//! mean feedback over a window is compared with its baseline (the version
//! the label held before, or the version's own first window) by the same
//! anytime-valid confidence sequence the experiment guard uses
//! (`experiments::stats::compare`), and a confident drop of more than
//! `max_drop` fires the monitor. Also the time buckets of the feedback
//! summary. Pure: the service reads the feedback and acts.

use chrono::{DateTime, TimeDelta, Utc};

use super::experiments::stats::{self, Comparison, Decision, Sample};

/// The shortest and longest window a monitor may compare over.
pub const MIN_WINDOW_SECS: i64 = 1;
pub const MAX_WINDOW_SECS: i64 = 90 * 86_400;

/// What a monitor does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorAction {
    /// Records the event (history, audit, webhook) and leaves the label.
    Alert,
    /// Records the event and rolls the label back to its previous version.
    Rollback,
}

impl MonitorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Rollback => "rollback",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Alert, Self::Rollback]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }
}

/// What the last check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorDecision {
    /// One side has fewer than `min_samples` values.
    Waiting,
    /// No confident drop of more than `max_drop`.
    Holding,
    /// A confident drop of more than `max_drop`: the monitor fires.
    Dropped,
}

impl MonitorDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Holding => "holding",
            Self::Dropped => "dropped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Waiting, Self::Holding, Self::Dropped]
            .into_iter()
            .find(|d| d.as_str() == raw)
    }
}

/// A window as people write it: a whole number and a unit, `s`, `m`, `h`
/// or `d` (`90s`, `30m`, `24h`, `7d`). Answers its length in seconds, or
/// the message for the `window` field.
pub fn parse_window(raw: &str) -> Result<i64, String> {
    let explain = || format!("{raw:?} is not a window such as \"30m\", \"24h\" or \"7d\"");
    let last = raw.chars().last().ok_or_else(explain)?;
    let (number, unit) = raw.split_at(raw.len() - last.len_utf8());
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(explain());
    }
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(explain()),
    };
    let secs = number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .filter(|s| (MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(s));
    secs.ok_or_else(|| format!("{raw:?}: a window from 1s to 90d"))
}

/// How a monitor judges: its feedback's values, both sides at least
/// `min_samples`, a drop of more than `max_drop` at `confidence`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSpec {
    /// The feedback name watched (higher values are better).
    pub feedback: String,
    /// As given (`24h`); its length is [`MonitorSpec::window`].
    pub window: String,
    pub min_samples: u32,
    /// How far (in the feedback's units) the mean may fall before firing.
    pub max_drop: f64,
    pub confidence: f64,
    pub action: MonitorAction,
}

impl MonitorSpec {
    pub fn window(&self) -> TimeDelta {
        TimeDelta::seconds(parse_window(&self.window).unwrap_or(MAX_WINDOW_SECS))
    }
}

/// One side of a check: which version, how many values, their mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub version: String,
    pub n: i64,
    pub mean: Option<f64>,
}

/// What the last check saw and concluded, and when the monitor fired.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorState {
    pub checked_at: Option<DateTime<Utc>>,
    pub decision: Option<MonitorDecision>,
    pub current: Option<Side>,
    pub previous: Option<Side>,
    /// The previous side is the current version's own first window (the
    /// label held no version before it).
    pub first_window: bool,
    pub fired_at: Option<DateTime<Utc>>,
    /// The version the monitor fired for: it does not fire for it again.
    pub fired_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub prompt_id: uuid::Uuid,
    pub prompt: String,
    pub label: String,
    pub spec: MonitorSpec,
    pub state: MonitorState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// Whether `current` fell below `previous` by more than `max_drop`,
/// with the guard's confidence sequence: the current values are raised by
/// `max_drop` (which moves the interval for the difference and leaves the
/// variance alone), so a confident "worse" means the true drop exceeds
/// `max_drop`. The comparison answered is of the values as they are.
pub fn judge(
    previous: &Sample,
    current: &Sample,
    spec: &MonitorSpec,
) -> (MonitorDecision, Option<Comparison>) {
    let test = stats::Test {
        alpha: 1.0 - spec.confidence,
        min_samples: u64::from(spec.min_samples),
        higher_is_better: true,
        running: true,
    };
    let Some(shifted) = stats::compare(previous, &current.shifted(spec.max_drop), test) else {
        return (MonitorDecision::Waiting, None);
    };
    let comparison = Comparison {
        difference: shifted.difference - spec.max_drop,
        interval: (
            shifted.interval.0 - spec.max_drop,
            shifted.interval.1 - spec.max_drop,
        ),
        decision: shifted.decision,
    };
    let min = u64::from(spec.min_samples);
    let decision = if previous.n < min || current.n < min {
        MonitorDecision::Waiting
    } else if shifted.decision == Decision::Worse {
        MonitorDecision::Dropped
    } else {
        MonitorDecision::Holding
    };
    (decision, Some(comparison))
}

/// The width of a feedback summary's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Hour, Self::Day]
            .into_iter()
            .find(|b| b.as_str() == raw)
    }

    /// The range a summary covers when `from` is not given.
    pub fn default_range(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::days(7),
            Self::Day => TimeDelta::days(90),
        }
    }

    /// The longest range one summary may cover (744 hours, 366 days).
    pub fn max_range(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::days(31),
            Self::Day => TimeDelta::days(366),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_drop: f64) -> MonitorSpec {
        MonitorSpec {
            feedback: "score".into(),
            window: "24h".into(),
            min_samples: 20,
            max_drop,
            confidence: 0.95,
            action: MonitorAction::Alert,
        }
    }

    fn sample(values: impl IntoIterator<Item = f64>) -> Sample {
        let mut s = Sample::default();
        for v in values {
            s.push(v);
        }
        s
    }

    #[test]
    fn windows_read_as_people_write_them() {
        assert_eq!(parse_window("24h"), Ok(86_400));
        assert_eq!(parse_window("30m"), Ok(1_800));
        assert_eq!(parse_window("7d"), Ok(604_800));
        assert_eq!(parse_window("1s"), Ok(1));
        for bad in [
            "",
            "h",
            "24",
            "24H",
            "-1h",
            "1.5h",
            "0s",
            "91d",
            "99999999999999999999d",
            "1é",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_drop_fires_only_past_max_drop_and_min_samples() {
        let previous = sample((0..40).map(|i| 0.8 + f64::from(i % 5) * 0.01));
        let worse = sample((0..40).map(|i| 0.2 + f64::from(i % 5) * 0.01));
        assert_eq!(
            judge(&previous, &worse, &spec(0.1)).0,
            MonitorDecision::Dropped
        );
        // A drop of 0.6 is not more than 0.7.
        assert_eq!(
            judge(&previous, &worse, &spec(0.7)).0,
            MonitorDecision::Holding
        );
        let (decision, comparison) = judge(&previous, &previous, &spec(0.0));
        assert_eq!(decision, MonitorDecision::Holding);
        assert_eq!(comparison.map(|c| c.difference), Some(0.0));
        let few = sample((0..19).map(|_| 0.0));
        assert_eq!(
            judge(&previous, &few, &spec(0.1)).0,
            MonitorDecision::Waiting
        );
        assert_eq!(
            judge(&Sample::default(), &worse, &spec(0.1)),
            (MonitorDecision::Waiting, None)
        );
        let (_, shown) = judge(&previous, &worse, &spec(0.1));
        let shown = shown.expect("both sides");
        assert!((shown.difference + 0.6).abs() < 1e-9, "{shown:?}");
        assert!(shown.interval.0 < -0.6 && shown.interval.1 > -0.6);
    }

    #[test]
    fn buckets_parse_and_bound_their_ranges() {
        assert_eq!(Bucket::parse("hour"), Some(Bucket::Hour));
        assert_eq!(Bucket::parse("day"), Some(Bucket::Day));
        assert_eq!(Bucket::parse("week"), None);
        assert!(Bucket::Hour.default_range() <= Bucket::Hour.max_range());
        assert!(Bucket::Day.default_range() <= Bucket::Day.max_range());
    }
}
