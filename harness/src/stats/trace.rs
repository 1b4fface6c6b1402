//! A split check's course for plotting: its shares and their intervals at up to
//! [`TRACE_POINTS`] checkpoints.

use std::collections::BTreeMap;

use serde::Serialize;

use super::interval::clopper_pearson;
use super::SplitTest;

/// Most checkpoints a [`SplitTrace`] holds.
pub const TRACE_POINTS: usize = 100;

/// One destination's share at a checkpoint, with its Clopper–Pearson interval at 1 − α.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TraceShare {
    /// Observed share among identified answers so far.
    pub observed: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
}

/// The shares after some answers.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TracePoint {
    /// Answers fed so far (errors included): the request number.
    pub requests: u64,
    /// Of them, answers that identified a destination.
    pub identified: u64,
    /// Per destination.
    pub shares: BTreeMap<String, TraceShare>,
}

/// How a split check's shares moved, at up to [`TRACE_POINTS`] checkpoints spread evenly over
/// the answers (the last one included), for plotting.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SplitTrace {
    /// Confidence of the intervals (1 − α).
    pub confidence: f64,
    /// Expected share per destination, 0..1.
    pub expected: BTreeMap<String, f64>,
    /// The request number at which the test reached its decision (the cap for "undecided");
    /// none if sampling stopped before one.
    pub decided_at: Option<u64>,
    /// The checkpoints, in order.
    pub points: Vec<TracePoint>,
}

impl SplitTest {
    /// The shares' course so far, at up to [`TRACE_POINTS`] checkpoints.
    pub fn trace(&self) -> SplitTrace {
        let n = self.history.len();
        let k = n.min(TRACE_POINTS);
        let mut names: Vec<String> = self.expected.keys().cloned().collect();
        for s in &self.seen {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
        let mut counts = vec![0u64; self.seen.len()];
        let mut identified = 0u64;
        let mut points = Vec::with_capacity(k);
        let mut fed = 0usize;
        for i in 1..=k {
            // Checkpoint i of k: after ⌈n·i/k⌉ answers, so the last is after all of them.
            let upto = (n * i).div_ceil(k);
            for d in self.history[fed..upto].iter().flatten() {
                counts[*d as usize] += 1;
                identified += 1;
            }
            fed = upto;
            let shares = names
                .iter()
                .map(|name| {
                    let c = self
                        .seen
                        .iter()
                        .position(|s| s == name)
                        .map_or(0, |j| counts[j]);
                    let (low, high) = clopper_pearson(c, identified, self.params.alpha);
                    let observed = if identified == 0 {
                        0.0
                    } else {
                        c as f64 / identified as f64
                    };
                    // Five decimals are finer than any plot, and keep reports small.
                    let r = |v: f64| (v * 1e5).round() / 1e5;
                    (
                        name.clone(),
                        TraceShare {
                            observed: r(observed),
                            low: r(low),
                            high: r(high),
                        },
                    )
                })
                .collect();
            points.push(TracePoint {
                requests: upto as u64,
                identified,
                shares,
            });
        }
        SplitTrace {
            confidence: 1.0 - self.params.alpha,
            expected: self.expected.clone(),
            decided_at: self.decided_at,
            points,
        }
    }
}
