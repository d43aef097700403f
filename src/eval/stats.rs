//! Statistics over metric scores: `summarize` one list (mean, sample std, t
//! confidence interval) and `compare` two paired lists (bootstrap interval of
//! the mean difference, sign-flip permutation p-value, wins/ties/losses).
//! Pure and deterministic: resampling uses fixed seeds, so the same scores
//! always give the same report, and nothing here panics on any input.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Resamples behind `Comparison::ci95`.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Random sign flips behind `Comparison::p_value` when n is too large to
/// enumerate.
pub const PERMUTATIONS: usize = 10_000;
/// Up to this many pairs the sign-flip test enumerates all 2^n flips.
pub const EXACT_PERMUTATION_MAX_N: usize = 16;
/// Differences within this are ties (and flipped means within it of the
/// observed one count as "as extreme", so float rounding cannot matter).
pub const TIE_TOLERANCE: f64 = 1e-9;

// Arbitrary fixed seeds: one per procedure so neither depends on how many
// draws the other made.
const BOOTSTRAP_SEED: u64 = 0x5EED_B007;
const PERMUTATION_SEED: u64 = 0x5EED_F11B;

/// Two-sided 97.5% quantile of the normal distribution, the limit of
/// Student's t; only used if statrs refuses the degrees of freedom.
const NORMAL_975: f64 = 1.959_963_984_540_054;

/// Mean, spread and 95% confidence interval of one list of scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub ci95: [f64; 2],
    pub n: usize,
}

/// How list b did against list a on the same items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub mean_diff: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    pub n: usize,
}

/// Why two lists cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("paired comparison needs lists of equal length, got {a} and {b}")]
    LengthMismatch { a: usize, b: usize },
    #[error("score {index} of list {list} is not a finite number")]
    NotFinite { list: &'static str, index: usize },
}

/// Sample std (n-1); ci95 is mean ± t(0.975, n-1)·std/√n, clamped to [0, 1]
/// because every score is; n = 0 → all zeros; n = 1 → std 0, ci95 [mean, mean].
pub fn summarize(scores: &[f64]) -> Summary {
    if scores.is_empty() {
        return summarize_moments(0, 0.0, 0.0);
    }
    let mean = mean(scores);
    // Two passes: summing squared deviations from the mean avoids the
    // cancellation of the sum-of-squares shortcut.
    let squared_deviations = scores.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    summarize_moments(scores.len(), mean, squared_deviations)
}

/// [`summarize`] from what it computes of the scores: their count, mean and
/// sum of squared deviations from the mean (a database can sum these
/// without handing over the scores).
pub fn summarize_moments(n: usize, mean: f64, squared_deviations: f64) -> Summary {
    if n == 0 {
        return Summary {
            mean: 0.0,
            std: 0.0,
            ci95: [0.0, 0.0],
            n,
        };
    }
    if n == 1 {
        return Summary {
            mean,
            std: 0.0,
            ci95: [mean, mean],
            n,
        };
    }
    let variance = squared_deviations / (n - 1) as f64;
    let std = variance.sqrt();
    let half_width = t_975(n - 1) * std / (n as f64).sqrt();
    Summary {
        mean,
        std,
        ci95: [
            (mean - half_width).clamp(0.0, 1.0),
            (mean + half_width).clamp(0.0, 1.0),
        ],
        n,
    }
}

/// Paired comparison of b against a (same items, same order): mean of
/// (b - a); 95% percentile bootstrap CI of the mean difference (10,000
/// resamples, percentiles interpolated linearly as numpy's default does);
/// two-sided paired permutation (sign-flip) test p-value — exact
/// enumeration when n <= 16, otherwise 10,000 random sign flips with the
/// (count+1)/(iterations+1) correction; wins/ties/losses of b vs a with a
/// tie tolerance of 1e-9. Deterministic: fixed-seed `StdRng`s, so the same
/// inputs always give the same answer (for the `rand` version in Cargo.lock;
/// `StdRng`'s algorithm may change between `rand` releases). Panics never:
/// a length mismatch or a non-finite score is an Err. n = 0 gives zeros and
/// p-value 1.0 (no evidence of any difference).
pub fn compare(a: &[f64], b: &[f64]) -> Result<Comparison, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    for (list, scores) in [("a", a), ("b", b)] {
        if let Some(index) = scores.iter().position(|x| !x.is_finite()) {
            return Err(StatsError::NotFinite { list, index });
        }
    }
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let n = diffs.len();
    let wins = diffs.iter().filter(|d| **d > TIE_TOLERANCE).count();
    let losses = diffs.iter().filter(|d| **d < -TIE_TOLERANCE).count();
    if n == 0 {
        return Ok(Comparison {
            mean_diff: 0.0,
            ci95: [0.0, 0.0],
            p_value: 1.0,
            wins,
            ties: 0,
            losses,
            n,
        });
    }
    Ok(Comparison {
        mean_diff: mean(&diffs),
        ci95: bootstrap_ci95(&diffs),
        p_value: sign_flip_p_value(&diffs),
        wins,
        ties: n - wins - losses,
        losses,
        n,
    })
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// t(0.975, df), df >= 1.
fn t_975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64)
        .map(|t| t.inverse_cdf(0.975))
        .ok()
        .filter(|q| q.is_finite())
        .unwrap_or(NORMAL_975)
}

/// Percentile bootstrap: resample the differences with replacement, take the
/// 2.5th and 97.5th percentiles of the resampled means. `diffs` is non-empty.
fn bootstrap_ci95(diffs: &[f64]) -> [f64; 2] {
    let n = diffs.len();
    let mut rng = StdRng::seed_from_u64(BOOTSTRAP_SEED);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    [percentile(&means, 0.025), percentile(&means, 0.975)]
}

/// numpy's default ("linear") percentile of sorted, non-empty values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let (lo, hi) = (sorted[lower], sorted[upper]);
    lo + (hi - lo) * (position - lower as f64)
}

/// Two-sided sign-flip test of "the mean difference is 0": under that null
/// each difference is as likely negated, so the p-value is the share of sign
/// assignments whose |mean| is at least the observed one. `diffs` is
/// non-empty.
fn sign_flip_p_value(diffs: &[f64]) -> f64 {
    let n = diffs.len();
    // Compared on sums (n times the mean), with the tolerance scaled to match.
    let threshold = diffs.iter().sum::<f64>().abs() - TIE_TOLERANCE * n as f64;
    let flipped_sum = |negate: &mut dyn FnMut(usize) -> bool| -> f64 {
        diffs
            .iter()
            .enumerate()
            .map(|(i, d)| if negate(i) { -d } else { *d })
            .sum()
    };
    if n <= EXACT_PERMUTATION_MAX_N {
        let assignments = 1u32 << n;
        let extreme = (0..assignments)
            .filter(|mask| flipped_sum(&mut |i| (mask >> i) & 1 == 1).abs() >= threshold)
            .count();
        extreme as f64 / f64::from(assignments)
    } else {
        let mut rng = StdRng::seed_from_u64(PERMUTATION_SEED);
        let extreme = (0..PERMUTATIONS)
            .filter(|_| flipped_sum(&mut |_| rng.random::<bool>()).abs() >= threshold)
            .count();
        (extreme + 1) as f64 / (PERMUTATIONS + 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn summary_of_known_values_matches_scipy() {
        // Reference from numpy 2.4 / scipy 1.17:
        //   x = [0.2, 0.4, 0.4, 0.6, 0.9]
        //   m = np.mean(x); s = np.std(x, ddof=1)
        //   h = scipy.stats.t.ppf(0.975, len(x) - 1) * s / np.sqrt(len(x))
        let s = summarize(&[0.2, 0.4, 0.4, 0.6, 0.9]);
        assert_eq!(s.n, 5);
        assert!(close(s.mean, 0.5, 1e-12), "{s:?}");
        assert!(close(s.std, 0.264_575_131_106_459_1, 1e-12), "{s:?}");
        assert!(close(s.ci95[0], 0.171_486_584_885_068_9, 1e-9), "{s:?}");
        assert!(close(s.ci95[1], 0.828_513_415_114_931_2, 1e-9), "{s:?}");
    }

    #[test]
    fn t_quantiles_match_scipy() {
        // scipy.stats.t.ppf(0.975, df) for each df.
        let table = [
            (1, 12.706_204_736_174_694),
            (2, 4.302_652_729_749_462),
            (4, 2.776_445_105_197_793_4),
            (9, 2.262_157_162_798_205),
            (29, 2.045_229_642_132_703),
            (999, 1.962_341_461_133_449_3),
        ];
        for (df, want) in table {
            assert!(close(t_975(df), want, 1e-9), "df {df}: {}", t_975(df));
        }
    }

    #[test]
    fn summary_interval_is_clamped_to_unit_range() {
        // Wide interval from few, spread scores: unclamped it would be about
        // [-2.7, 3.7].
        let s = summarize(&[0.0, 1.0]);
        assert_eq!(s.ci95, [0.0, 1.0]);
        assert!(close(s.std, std::f64::consts::FRAC_1_SQRT_2, 1e-12));
    }

    #[test]
    fn summary_edge_sizes() {
        assert_eq!(
            summarize(&[]),
            Summary {
                mean: 0.0,
                std: 0.0,
                ci95: [0.0, 0.0],
                n: 0
            }
        );
        assert_eq!(
            summarize(&[0.7]),
            Summary {
                mean: 0.7,
                std: 0.0,
                ci95: [0.7, 0.7],
                n: 1
            }
        );
        let same = summarize(&[0.3; 8]);
        assert!(close(same.mean, 0.3, 1e-15) && same.std < 1e-15, "{same:?}");
        assert!(close(same.ci95[0], 0.3, 1e-12) && close(same.ci95[1], 0.3, 1e-12));
    }

    #[test]
    fn identical_lists_show_no_difference() {
        for n in [1, 5, 16, 17, 40] {
            let a: Vec<f64> = (0..n).map(|i| (i % 7) as f64 / 7.0).collect();
            let c = compare(&a, &a).expect("same length");
            assert_eq!(c.mean_diff, 0.0, "n {n}");
            assert_eq!(c.ci95, [0.0, 0.0], "n {n}");
            assert_eq!(c.p_value, 1.0, "n {n}");
            assert_eq!((c.wins, c.ties, c.losses, c.n), (0, n, 0, n));
        }
    }

    #[test]
    fn clear_improvement_is_significant_exact_and_sampled() {
        for n in [12, 30] {
            let a: Vec<f64> = (0..n).map(|i| 0.3 + 0.02 * (i % 5) as f64).collect();
            let b: Vec<f64> = a
                .iter()
                .enumerate()
                .map(|(i, x)| x + 0.2 + 0.01 * (i % 3) as f64)
                .collect();
            let c = compare(&a, &b).expect("same length");
            assert!(close(c.mean_diff, mean(&b) - mean(&a), 1e-12), "{c:?}");
            assert!(
                c.ci95[0] > 0.0 && c.ci95[0] <= c.mean_diff && c.mean_diff <= c.ci95[1],
                "{c:?}"
            );
            assert!(c.p_value < 0.001, "{c:?}");
            assert_eq!((c.wins, c.ties, c.losses, c.n), (n, 0, 0, n));
        }
        // Exact enumeration: only the all-positive and all-negative
        // assignments are as extreme, so p = 2 / 2^12.
        let a = [0.1; 12];
        let b = [0.9; 12];
        assert_eq!(compare(&a, &b).expect("ok").p_value, 2.0 / 4096.0);
        // Sampled: nothing beats the observed arrangement, so p is the
        // smallest the (count+1)/(iterations+1) correction allows.
        let c = compare(&[0.1; 30], &[0.9; 30]).expect("ok");
        assert_eq!(c.p_value, 1.0 / 10_001.0);
    }

    #[test]
    fn worse_b_counts_losses_and_negative_difference() {
        let a = [0.9, 0.8, 0.85, 0.7, 0.9, 0.95];
        let b = [0.5, 0.8, 0.4, 0.3, 0.6, 0.5];
        let c = compare(&a, &b).expect("ok");
        assert_eq!((c.wins, c.ties, c.losses), (0, 1, 5));
        assert!(c.mean_diff < 0.0 && c.ci95[1] < 0.0, "{c:?}");
        // 6 pairs, one zero difference: the all-flipped and identity
        // arrangements and their zero-flipped twins, 4 of 64.
        assert_eq!(c.p_value, 4.0 / 64.0);
    }

    #[test]
    fn exact_p_value_of_mixed_differences() {
        // diffs 0.5, -0.1, 0.2: |sum| 0.6; the sign assignments reaching
        // |sum| >= 0.6 are (+,-,+), (+,+,+) and their negations: 4 of 8.
        let c = compare(&[0.0, 0.5, 0.0], &[0.5, 0.4, 0.2]).expect("ok");
        assert_eq!(c.p_value, 0.5);
        assert_eq!((c.wins, c.ties, c.losses), (2, 0, 1));
    }

    #[test]
    fn tiny_differences_are_ties() {
        let c = compare(&[0.5, 0.5], &[0.5 + 1e-12, 0.5 - 1e-12]).expect("ok");
        assert_eq!((c.wins, c.ties, c.losses), (0, 2, 0));
    }

    #[test]
    fn results_are_deterministic() {
        let a: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64 / 10.0).collect();
        let b: Vec<f64> = (0..50).map(|i| ((i * 53) % 13) as f64 / 12.0).collect();
        let first = compare(&a, &b).expect("ok");
        let second = compare(&a, &b).expect("ok");
        assert_eq!(first, second);
        assert!(first.p_value > 0.0 && first.p_value <= 1.0);
        assert!(first.ci95[0] <= first.mean_diff && first.mean_diff <= first.ci95[1]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            compare(&[0.1, 0.2], &[0.3]),
            Err(StatsError::LengthMismatch { a: 2, b: 1 })
        );
        assert_eq!(
            compare(&[0.1, 0.2], &[0.3, f64::NAN]),
            Err(StatsError::NotFinite {
                list: "b",
                index: 1
            })
        );
        let empty = compare(&[], &[]).expect("empty is fine");
        assert_eq!((empty.n, empty.p_value, empty.mean_diff), (0, 1.0, 0.0));
    }
}
