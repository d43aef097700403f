//! Online experiments: a label's traffic split between versions, the choice
//! of a variant for a unit (a pure function of experiment id and unit, so
//! every replica agrees without coordination), the opaque id that feedback
//! cites, and (in `stats`) the statistics that compare variants.

pub mod stats;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ProjectId;

/// Units are hashed into this many buckets; a weight point is 100 buckets.
pub const BUCKETS: u32 = 10_000;
const BUCKETS_PER_POINT: u32 = BUCKETS / 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentStatus {
    Running,
    Stopped,
    Promoted,
    RolledBack,
}

impl ExperimentStatus {
    pub const ALL: [Self; 4] = [
        Self::Running,
        Self::Stopped,
        Self::Promoted,
        Self::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Which way of the metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Higher,
    Lower,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Higher => "higher",
            Self::Lower => "lower",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Higher, Self::Lower]
            .into_iter()
            .find(|d| d.as_str() == raw)
    }
}

/// One version in a split and its share of the traffic, in percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub version: semver::Version,
    pub weight: u32,
    /// Requests served this variant, as last written by the replicas.
    pub served: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub prompt_id: Uuid,
    pub prompt: String,
    pub label: String,
    pub metric: String,
    pub direction: Direction,
    pub min_samples: u32,
    pub confidence: f64,
    pub rollback_if_worse: bool,
    pub auto_promote: bool,
    pub status: ExperimentStatus,
    /// The control (the label's version when the experiment started) first,
    /// then the treatments in the order they take buckets.
    pub variants: Vec<Variant>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Experiment {
    pub fn control(&self) -> Option<&Variant> {
        self.variants.first()
    }
}

/// Which of 10,000 buckets `unit` falls in for experiment `id`: the first
/// eight bytes of SHA-256 over both, so the answer is the same on every
/// replica and across restarts (unlike Rust's randomly keyed hasher).
pub fn bucket(experiment: Uuid, unit: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(experiment.as_bytes())
        .chain_update(unit.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// The variant (an index into `weights`, the control first) that owns
/// `bucket`. Treatments take buckets from the top down, in order, each as
/// many as its weight; the control keeps the rest. Raising a treatment's
/// weight therefore takes units only from the control when it is the last
/// treatment (the usual case of one), and never reshuffles units between
/// the control's remaining buckets.
pub fn variant_for(weights: &[u32], bucket: u32) -> usize {
    let mut top = BUCKETS;
    for (i, weight) in weights.iter().enumerate().skip(1) {
        let bottom = top.saturating_sub(weight * BUCKETS_PER_POINT);
        if bucket >= bottom && bucket < top {
            return i;
        }
        top = bottom;
    }
    0
}

/// What a served answer names so that feedback can cite it: the experiment
/// and the version chosen, base64url-encoded (opaque to clients).
pub fn served_id(experiment: Uuid, version: &semver::Version) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{version}", experiment.simple()))
}

pub fn parse_served_id(raw: &str) -> Option<(Uuid, semver::Version)> {
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (id, version) = decoded.split_once(':')?;
    Some((
        Uuid::parse_str(id).ok()?,
        semver::Version::parse(version).ok()?,
    ))
}

/// Checks a split's weights: integers summing to 100, at least one variant
/// besides the control. Answers the message for the `variants` field.
pub fn check_weights(weights: &[u32]) -> Result<(), String> {
    if weights.len() < 2 {
        return Err("give the control (the label's version) and at least one other version".into());
    }
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total != 100 {
        return Err(format!("weights are integers summing to 100, not {total}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        let id = Uuid::from_u128(42);
        assert_eq!(bucket(id, "user-1"), bucket(id, "user-1"));
        assert!((0..1000).all(|i| bucket(id, &format!("u{i}")) < BUCKETS));
        let other = Uuid::from_u128(43);
        let moved = (0..1000)
            .filter(|i| bucket(id, &format!("u{i}")) != bucket(other, &format!("u{i}")))
            .count();
        assert!(moved > 900, "another experiment reshuffles units: {moved}");
    }

    #[test]
    fn treatments_take_buckets_from_the_top_down() {
        let weights = [70, 20, 10];
        assert_eq!(variant_for(&weights, 9_999), 1);
        assert_eq!(variant_for(&weights, 8_000), 1);
        assert_eq!(variant_for(&weights, 7_999), 2);
        assert_eq!(variant_for(&weights, 7_000), 2);
        assert_eq!(variant_for(&weights, 6_999), 0);
        assert_eq!(variant_for(&[100, 0], 9_999), 0);
    }

    #[test]
    fn a_ramp_moves_only_control_units() {
        for bucket in 0..BUCKETS {
            let before = variant_for(&[90, 10], bucket);
            let after = variant_for(&[50, 50], bucket);
            assert!(before == after || (before == 0 && after == 1), "{bucket}");
        }
    }

    #[test]
    fn served_ids_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        let version = semver::Version::new(1, 2, 3);
        assert_eq!(
            parse_served_id(&served_id(id, &version)),
            Some((id, version))
        );
        for bad in ["", "!!", "eDo0Mg", &URL_SAFE_NO_PAD.encode("nope:1.0.0")] {
            assert_eq!(parse_served_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn weights_sum_to_100_with_a_treatment() {
        assert!(check_weights(&[90, 10]).is_ok());
        assert!(check_weights(&[100]).is_err());
        assert!(check_weights(&[50, 40]).is_err());
        assert!(check_weights(&[60, 50]).is_err());
    }
}
