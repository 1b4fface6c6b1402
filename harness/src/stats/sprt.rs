//! The Wald sequential probability ratio test on a Bernoulli sequence, and the alternatives a
//! destination's share is tested against.

use serde::Serialize;

/// One Wald SPRT on a Bernoulli sequence: H0 `p0` against H1 `p1`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sprt {
    /// Null share.
    pub p0: f64,
    /// Alternative share.
    pub p1: f64,
    /// Log-likelihood ratio so far.
    pub llr: f64,
    upper: f64,
    lower: f64,
    step_hit: f64,
    step_miss: f64,
    /// Some(true) rejected H0, Some(false) accepted H0.
    pub decided: Option<bool>,
}

impl Sprt {
    /// A test with type-I error `alpha` and type-II error `beta`.
    pub fn new(p0: f64, p1: f64, alpha: f64, beta: f64) -> Self {
        Self {
            p0,
            p1,
            llr: 0.0,
            upper: ((1.0 - beta) / alpha).ln(),
            lower: (beta / (1.0 - alpha)).ln(),
            step_hit: (p1 / p0).ln(),
            step_miss: ((1.0 - p1) / (1.0 - p0)).ln(),
            decided: None,
        }
    }

    /// Adds one observation (hit: served by this destination).
    pub fn observe(&mut self, hit: bool) {
        if self.decided.is_some() {
            return;
        }
        self.llr += if hit { self.step_hit } else { self.step_miss };
        if self.llr >= self.upper {
            self.decided = Some(true);
        } else if self.llr <= self.lower {
            self.decided = Some(false);
        }
    }
}

/// The alternatives a share `p` (strictly between 0 and 1) is tested against: `p − δ` and
/// `p + δ`, each brought halfway to the bound when δ would reach past it, so that a small share
/// is tested on both sides. For 5% with δ = 10 points: 2.5% (catches "nothing moved") and 15%
/// ("far too much"); for 95%: 85% and 97.5%; for 50%: 40% and 60%.
pub fn alternatives(p: f64, delta: f64) -> (f64, f64) {
    (p - delta.min(p / 2.0), p + delta.min((1.0 - p) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case(0.05, (0.025, 0.15))]
    #[case(0.5, (0.4, 0.6))]
    #[case(0.95, (0.85, 0.975))]
    #[case(0.10, (0.05, 0.2))]
    fn small_and_large_shares_are_tested_on_both_sides(#[case] p: f64, #[case] want: (f64, f64)) {
        let (lo, hi) = alternatives(p, 0.10);
        assert!(
            (lo - want.0).abs() < 1e-12 && (hi - want.1).abs() < 1e-12,
            "{p}: {lo} {hi}"
        );
    }
}
