//! Confidence intervals of a share: Clopper–Pearson.

use statrs::distribution::{Beta, ContinuousCDF};

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

#[cfg(test)]
mod tests {
    use super::*;

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
