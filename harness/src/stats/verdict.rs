//! The verdict on a split check, per destination and overall, with the statement its decision
//! rests on.

use std::collections::BTreeMap;

use serde::Serialize;

use super::interval::clopper_pearson;
use super::{Decision, Mode, SplitParams, SplitTest};

/// The verdict on one destination.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareVerdict {
    /// Requests it served.
    pub count: u64,
    /// Expected share, 0..1.
    pub expected: f64,
    /// Observed share among identified answers.
    pub observed: f64,
    /// Clopper-Pearson interval of the share at confidence 1 − α.
    pub interval: (f64, f64),
}

/// The verdict on a split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitVerdict {
    /// The decision.
    pub decision: Decision,
    /// Per destination.
    pub shares: BTreeMap<String, ShareVerdict>,
    /// Answers that identified a destination.
    pub identified: u64,
    /// Error answers.
    pub errors: u64,
    /// The statement the decision rests on.
    pub statement: String,
    /// The parameters.
    pub params: SplitParams,
}

impl SplitVerdict {
    /// Whether the check passed.
    pub fn ok(&self) -> bool {
        self.decision == Decision::Consistent
    }
}

impl SplitTest {
    /// The verdict with its evidence.
    pub fn verdict(&self) -> SplitVerdict {
        let identified: u64 = self.counts.values().sum();
        let mut names: Vec<&String> = self.expected.keys().collect();
        for n in self.counts.keys() {
            if !self.expected.contains_key(n) {
                names.push(n);
            }
        }
        let shares = names
            .into_iter()
            .map(|n| {
                let count = self.counts.get(n).copied().unwrap_or(0);
                (
                    n.clone(),
                    ShareVerdict {
                        count,
                        expected: self.expected.get(n).copied().unwrap_or(0.0),
                        observed: if identified == 0 {
                            0.0
                        } else {
                            count as f64 / identified as f64
                        },
                        interval: clopper_pearson(count, identified, self.params.alpha),
                    },
                )
            })
            .collect();
        let p = &self.params;
        let statement = match &self.mode {
            Mode::AllTo(d) => format!(
                "all answers from {d}: {} answers with no leak are needed, so a leak of {}% or more is seen with probability ≥ {} (seen: {identified})",
                p.no_leak_samples(),
                p.lambda * 100.0,
                1.0 - p.beta
            ),
            Mode::Split(tests) => format!(
                "Wald SPRT on {} destination share(s), H0 = expected vs H1 = expected ± {} points; P(fail a correct split) ≤ {}, P(pass a split off by ≥ {} points) ≤ {}; cap {} requests",
                tests.len(),
                p.delta * 100.0,
                p.alpha,
                p.delta * 100.0,
                p.beta,
                p.max_requests
            ),
        };
        SplitVerdict {
            decision: self.decision.clone(),
            shares,
            identified,
            errors: self.errors,
            statement: format!(
                "{statement}; error answers {} (allowed rate {})",
                self.errors, p.max_error_rate
            ),
            params: self.params,
        }
    }
}
