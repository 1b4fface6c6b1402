//! Deciding whether an observed split is consistent with the expected weights.
//!
//! The test: `n` independent requests; for each destination with an expected share strictly
//! between 0 and 1, the Clopper-Pearson interval of its observed share at confidence
//! `1 - alpha / k` (Bonferroni over the `k` destinations) must contain the expected share.
//! A destination expected at 0% must receive no request at all: with `n` samples and no leak
//! seen, a leak of at least `lambda` would have been seen with probability `1 - (1 - lambda)^n`,
//! which the verdict reports. Any error answer fails the check (the error gate).

use std::collections::BTreeMap;

use serde::Serialize;
use statrs::distribution::{Beta, ContinuousCDF};

/// Parameters of a split check.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SplitParams {
    /// Chance of failing a correct split.
    pub alpha: f64,
    /// The smallest leak (share) to a destination expected at 0% that must be seen.
    pub lambda: f64,
    /// Chance of missing a leak of at least `lambda`.
    pub beta: f64,
    /// Requests for a split between two or more destinations.
    pub split_samples: usize,
    /// Share of error answers tolerated (0: any error fails).
    pub max_error_rate: f64,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            alpha: 1e-4,
            lambda: 0.01,
            beta: 1e-3,
            split_samples: 1000,
            max_error_rate: 0.0,
        }
    }
}

impl SplitParams {
    /// Requests needed so that a leak of at least `lambda` is seen with probability `1 - beta`.
    pub fn no_leak_samples(&self) -> usize {
        ((self.beta.ln()) / (1.0 - self.lambda).ln()).ceil() as usize
    }

    /// Requests to send for these expected shares.
    pub fn samples_for(&self, expected: &BTreeMap<String, f64>) -> usize {
        let split = expected
            .values()
            .filter(|p| **p > 0.0 && **p < 100.0)
            .count()
            > 0;
        if split {
            self.split_samples.max(self.no_leak_samples())
        } else {
            self.no_leak_samples()
        }
    }
}

/// The verdict on one destination.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareVerdict {
    /// Requests it served.
    pub count: u64,
    /// Expected share, 0..1.
    pub expected: f64,
    /// Observed share among identified answers.
    pub observed: f64,
    /// Confidence interval of the share.
    pub interval: (f64, f64),
    /// Whether the expectation holds.
    pub ok: bool,
}

/// The verdict on a split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitVerdict {
    /// Per destination.
    pub shares: BTreeMap<String, ShareVerdict>,
    /// Answers that identified a destination.
    pub identified: u64,
    /// Error answers (non-200, timeouts, pages without identity).
    pub errors: u64,
    /// The statement the decision rests on.
    pub statement: String,
    /// Whether the split is consistent.
    pub ok: bool,
}

/// Clopper-Pearson interval for `k` successes in `n` trials at confidence `1 - alpha`.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let lo = if k == 0.0 {
        0.0
    } else {
        Beta::new(k, n - k + 1.0)
            .map(|b| b.inverse_cdf(alpha / 2.0))
            .unwrap_or(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        Beta::new(k + 1.0, n - k)
            .map(|b| b.inverse_cdf(1.0 - alpha / 2.0))
            .unwrap_or(1.0)
    };
    (lo, hi)
}

/// Judges observed counts against expected percentages (summing to 100).
pub fn judge(
    counts: &BTreeMap<String, u64>,
    errors: u64,
    expected_pct: &BTreeMap<String, f64>,
    params: &SplitParams,
) -> SplitVerdict {
    let identified: u64 = counts.values().sum();
    let total = identified + errors;
    let k = expected_pct
        .values()
        .filter(|p| **p > 0.0 && **p < 100.0)
        .count()
        .max(1);
    let alpha_each = params.alpha / k as f64;
    let mut shares = BTreeMap::new();
    let mut names: Vec<&String> = expected_pct.keys().collect();
    for n in counts.keys() {
        if !expected_pct.contains_key(n) {
            names.push(n);
        }
    }
    let mut ok = identified > 0;
    for name in names {
        let count = counts.get(name).copied().unwrap_or(0);
        let expected = expected_pct.get(name).copied().unwrap_or(0.0) / 100.0;
        let observed = if identified == 0 {
            0.0
        } else {
            count as f64 / identified as f64
        };
        let interval = clopper_pearson(count, identified, alpha_each);
        let share_ok = if expected == 0.0 {
            count == 0
        } else if expected == 1.0 {
            count == identified
        } else {
            interval.0 <= expected && expected <= interval.1
        };
        ok &= share_ok;
        shares.insert(
            name.clone(),
            ShareVerdict {
                count,
                expected,
                observed,
                interval,
                ok: share_ok,
            },
        );
    }
    let error_rate = if total == 0 {
        1.0
    } else {
        errors as f64 / total as f64
    };
    let errors_ok = error_rate <= params.max_error_rate;
    ok &= errors_ok;
    let zero_dests = expected_pct.values().any(|p| *p == 0.0);
    let detect = 1.0 - (1.0 - params.lambda).powf(identified as f64);
    let mut statement = if k > 1 || expected_pct.values().any(|p| *p > 0.0 && *p < 100.0) {
        format!(
            "each expected share lies in its {:.4}% Clopper-Pearson interval (alpha {} split over {} destinations)",
            100.0 * (1.0 - alpha_each),
            params.alpha,
            k
        )
    } else {
        "all answers from the expected destination".to_string()
    };
    if zero_dests {
        statement.push_str(&format!(
            "; no leak seen in {identified} answers: a leak of {}% or more would have been seen with probability {:.4}",
            params.lambda * 100.0,
            detect
        ));
    }
    statement.push_str(&format!(
        "; error answers {errors}/{total} (allowed rate {})",
        params.max_error_rate
    ));
    SplitVerdict {
        shares,
        identified,
        errors,
        statement,
        ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn m(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
    fn e(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[rstest]
    #[case(&[("a", 510), ("b", 490)], 0, true)]
    #[case(&[("a", 700), ("b", 300)], 0, false)]
    #[case(&[("a", 500), ("b", 450)], 50, false)]
    fn half_and_half(#[case] counts: &[(&str, u64)], #[case] errors: u64, #[case] ok: bool) {
        let v = judge(
            &m(counts),
            errors,
            &e(&[("a", 50.0), ("b", 50.0)]),
            &SplitParams::default(),
        );
        assert_eq!(v.ok, ok, "{v:?}");
    }

    #[rstest]
    #[case(&[("a", 690)], true)]
    #[case(&[("a", 683), ("b", 7)], false)]
    fn all_to_one(#[case] counts: &[(&str, u64)], #[case] ok: bool) {
        let v = judge(
            &m(counts),
            0,
            &e(&[("a", 100.0), ("b", 0.0)]),
            &SplitParams::default(),
        );
        assert_eq!(v.ok, ok, "{v:?}");
        assert!(v.statement.contains("no leak") || !ok);
    }

    #[test]
    fn unexpected_destination_fails() {
        let v = judge(
            &m(&[("a", 10), ("ghost", 1)]),
            0,
            &e(&[("a", 100.0)]),
            &SplitParams::default(),
        );
        assert!(!v.ok);
        assert!(v.shares.contains_key("ghost"));
    }

    #[test]
    fn no_leak_sample_size_meets_beta() {
        let p = SplitParams::default();
        let n = p.no_leak_samples();
        assert!((1.0 - p.lambda).powi(n as i32) <= p.beta);
        assert!((1.0 - p.lambda).powi(n as i32 - 1) > p.beta);
    }

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 50 of 100 at 95%: (0.3983, 0.6017) from standard tables.
        let (lo, hi) = clopper_pearson(50, 100, 0.05);
        assert!(
            (lo - 0.3983).abs() < 1e-3 && (hi - 0.6017).abs() < 1e-3,
            "{lo} {hi}"
        );
    }
}
