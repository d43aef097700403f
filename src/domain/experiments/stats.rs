//! Statistics of an experiment's feedback, pure and unit-tested: per
//! variant n, mean and a fixed-sample 95% interval; against the control an
//! anytime-valid confidence sequence for the difference of means, which
//! stays valid however often it is looked at (after every feedback, by the
//! guard), and the decision read off it.
//!
//! Method: each arm's mean gets a two-sided asymptotic confidence sequence
//! from the normal-mixture boundary (Howard, Ramdas, McAuliffe, Sekhon,
//! "Time-uniform, nonparametric, nonasymptotic confidence sequences",
//! Annals of Statistics 2021, eq. (14); in its asymptotic form with an
//! estimated variance, Waudby-Smith et al., "Time-uniform central limit
//! theory and asymptotic confidence sequences", 2021): after n values with
//! variance s²,
//!
//! `|mean - mu| <= (s / n) * sqrt((n + rho) * ln((n + rho) / (rho * a^2)))`
//!
//! for every n at once with probability at least 1 - 2a. Each arm is run at
//! a = alpha / 4, so both hold together with probability 1 - alpha (a union
//! bound), and the difference treatment - control lies in
//! `[lo_t - hi_c, hi_t - lo_c]`. The variance is pooled over both arms
//! (equal under the null of no difference, and never zero for one arm
//! alone). `rho` tunes where the sequence is tightest, fixed before any data
//! from `min_samples`. A decision is only taken once each arm has
//! `min_samples` values.

/// Running sums of one variant's feedback values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Sample {
    pub fn push(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.sum_sq += value * value;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sum of squared deviations from the mean (never negative).
    fn squared_deviations(&self) -> f64 {
        match self.mean() {
            Some(mean) => (self.sum_sq - self.n as f64 * mean * mean).max(0.0),
            None => 0.0,
        }
    }

    /// The same values each raised by `delta` (the spread is unchanged):
    /// how a monitor asks whether a drop exceeds a margin.
    pub fn shifted(&self, delta: f64) -> Self {
        let n = self.n as f64;
        Self {
            n: self.n,
            sum: self.sum + n * delta,
            sum_sq: self.sum_sq + 2.0 * delta * self.sum + n * delta * delta,
        }
    }

    /// Mean ± 1.96 standard errors: a fixed-sample 95% interval, shown per
    /// variant (decisions use the confidence sequence, not this).
    pub fn ci95(&self) -> Option<(f64, f64)> {
        let mean = self.mean()?;
        if self.n < 2 {
            return None;
        }
        let variance = self.squared_deviations() / (self.n - 1) as f64;
        let half = 1.96 * (variance / self.n as f64).sqrt();
        Some((mean - half, mean + half))
    }
}

/// What the comparison with the control says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not enough data yet, or no conclusion while the experiment runs.
    Running,
    Better,
    Worse,
    /// The experiment ended without a conclusion.
    Inconclusive,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Better => "better",
            Self::Worse => "worse",
            Self::Inconclusive => "inconclusive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Treatment mean minus control mean.
    pub difference: f64,
    /// The anytime-valid interval for the difference.
    pub interval: (f64, f64),
    pub decision: Decision,
}

/// How the comparison is taken.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// 1 - confidence: the chance of ever wrongly declaring a difference.
    pub alpha: f64,
    pub min_samples: u64,
    /// Whether larger values are better.
    pub higher_is_better: bool,
    /// Whether the experiment still runs (an open question is `running`,
    /// a closed one `inconclusive`).
    pub running: bool,
}

/// The half-width of one arm's confidence sequence for its mean after `n`
/// values of variance `variance`, at one-sided level `a`, tightest near
/// `tuned_for` values.
pub fn radius(n: u64, variance: f64, a: f64, tuned_for: u64) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    let log = (1.0 / a).ln();
    let rho = tuned_for.max(1) as f64 / (2.0 * log + (1.0 + 2.0 * log).ln());
    let n = n as f64;
    (variance.max(0.0)).sqrt() / n * ((n + rho) * ((n + rho) / (rho * a * a)).ln()).sqrt()
}

/// The treatment against the control; `None` until both have a value.
pub fn compare(control: &Sample, treatment: &Sample, test: Test) -> Option<Comparison> {
    let (mean_c, mean_t) = (control.mean()?, treatment.mean()?);
    let variance = (control.squared_deviations() + treatment.squared_deviations())
        / (control.n + treatment.n) as f64;
    let a = test.alpha / 4.0;
    let tuned_for = (test.min_samples * 10).max(100);
    let (r_c, r_t) = (
        radius(control.n, variance, a, tuned_for),
        radius(treatment.n, variance, a, tuned_for),
    );
    let difference = mean_t - mean_c;
    let interval = (difference - r_c - r_t, difference + r_c + r_t);
    let enough = control.n >= test.min_samples && treatment.n >= test.min_samples;
    let decision = if !enough {
        Decision::Running
    } else if interval.0 > 0.0 {
        if test.higher_is_better {
            Decision::Better
        } else {
            Decision::Worse
        }
    } else if interval.1 < 0.0 {
        if test.higher_is_better {
            Decision::Worse
        } else {
            Decision::Better
        }
    } else if test.running {
        Decision::Running
    } else {
        Decision::Inconclusive
    };
    Some(Comparison {
        difference,
        interval,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const TEST: Test = Test {
        alpha: 0.05,
        min_samples: 30,
        higher_is_better: true,
        running: true,
    };

    /// One feedback value: to the treatment when the flag is set.
    type Draw = dyn Fn(&mut StdRng, bool) -> f64;

    /// A standard normal draw (Box-Muller).
    fn normal(rng: &mut StdRng) -> f64 {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Runs one experiment of up to `steps` feedback values, each to a
    /// random arm, looking after every one; answers the first decision.
    fn monitor(rng: &mut StdRng, steps: usize, draw: &Draw) -> Decision {
        let (mut control, mut treatment) = (Sample::default(), Sample::default());
        for _ in 0..steps {
            let to_treatment = rng.random::<bool>();
            let value = draw(rng, to_treatment);
            if to_treatment {
                treatment.push(value);
            } else {
                control.push(value);
            }
            if let Some(c) = compare(&control, &treatment, TEST) {
                if c.decision != Decision::Running {
                    return c.decision;
                }
            }
        }
        Decision::Running
    }

    #[test]
    fn a_a_experiments_watched_after_every_feedback_rarely_decide() {
        let mut rng = StdRng::seed_from_u64(22);
        let draws: [(&str, &Draw); 2] = [
            ("normal", &|rng, _| 3.0 + normal(rng)),
            ("thumbs up 30%", &|rng, _| {
                f64::from(u8::from(rng.random::<f64>() < 0.3))
            }),
        ];
        for (name, draw) in draws {
            let decided = (0..200)
                .filter(|_| monitor(&mut rng, 2_000, draw) != Decision::Running)
                .count();
            // At most 5% + 2 points of 200.
            assert!(
                decided <= 14,
                "{name}: {decided} of 200 A/A experiments decided"
            );
        }
    }

    #[test]
    fn a_real_difference_is_detected_in_the_right_direction() {
        let mut rng = StdRng::seed_from_u64(7);
        let better =
            |rng: &mut StdRng, treated: bool| normal(rng) + if treated { 0.3 } else { 0.0 };
        let worse = |rng: &mut StdRng, treated: bool| {
            f64::from(u8::from(
                rng.random::<f64>() < if treated { 0.4 } else { 0.6 },
            ))
        };
        let detected = (0..20)
            .filter(|_| monitor(&mut rng, 4_000, &better) == Decision::Better)
            .count();
        assert!(detected >= 18, "better detected in {detected} of 20");
        let detected = (0..20)
            .filter(|_| monitor(&mut rng, 4_000, &worse) == Decision::Worse)
            .count();
        assert!(detected >= 18, "worse detected in {detected} of 20");
    }

    #[test]
    fn no_decision_before_min_samples_or_with_one_arm() {
        let mut control = Sample::default();
        let mut treatment = Sample::default();
        assert_eq!(compare(&control, &treatment, TEST), None);
        for _ in 0..29 {
            control.push(1.0);
            treatment.push(0.0);
        }
        assert_eq!(
            compare(&control, &treatment, TEST).map(|c| c.decision),
            Some(Decision::Running)
        );
        control.push(1.0);
        treatment.push(0.0);
        let c = compare(&control, &treatment, TEST).expect("both arms");
        assert_eq!(c.decision, Decision::Worse);
        assert_eq!(c.difference, -1.0);
        let lower = Test {
            higher_is_better: false,
            running: false,
            ..TEST
        };
        assert_eq!(
            compare(&control, &treatment, lower).map(|c| c.decision),
            Some(Decision::Better)
        );
    }

    #[test]
    fn fixed_sample_interval_covers_the_mean() {
        let mut s = Sample::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.push(v);
        }
        let (lo, hi) = s.ci95().expect("n >= 2");
        assert!(lo < 2.5 && hi > 2.5);
        assert_eq!(Sample::default().ci95(), None);
    }
}
