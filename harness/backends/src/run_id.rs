//! What every real-cluster backend (kind and GKE) names and dates its runs by: the run id, and
//! just enough time arithmetic for `meshmig gc` to tell how old a run's leftovers are.

use rand::Rng;

/// A run id: six lowercase letters and digits, starting with a letter.
pub fn new_run_id() -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    let first = A[r.random_range(0..26)] as char;
    std::iter::once(first)
        .chain((0..5).map(|_| A[r.random_range(0..A.len())] as char))
        .collect()
}

/// Just enough time arithmetic for `gc` (RFC 3339 timestamps as gcloud prints them).
pub mod chrono_like {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Seconds since the epoch.
    #[derive(Debug, Clone, Copy)]
    pub struct Utc(pub u64);

    impl Utc {
        /// Now.
        pub fn now() -> Self {
            Utc(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0))
        }
    }

    /// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    fn days(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    /// Seconds since the epoch of `2026-11-27T00:00:00+00:00` (fractions and `Z` accepted).
    pub fn parse(ts: &str) -> Option<u64> {
        let b = ts.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
        let secs = days(n(0..4)?, n(5..7)?, n(8..10)?) * 86400
            + n(11..13)? * 3600
            + n(14..16)? * 60
            + n(17..19)?;
        let rest = &ts[19..];
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let offset = match rest {
            "" | "Z" => 0,
            o if o.len() == 6 => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
            }
            _ => return None,
        };
        u64::try_from(secs - offset).ok()
    }

    /// How old a timestamp is at `now`.
    pub fn age(ts: &str, now: Utc) -> Option<Duration> {
        parse(ts).map(|t| Duration::from_secs(now.0.saturating_sub(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::new_run_id;

    /// A scenario's longest cluster name, suffixed with `-RUNID`, is GKE's longest (40).
    #[test]
    fn longest_scenario_cluster_name_fits_gke_once_suffixed() {
        let run = new_run_id();
        assert_eq!(meshmig_core::scenario::MAX_CLUSTER_NAME + 1 + run.len(), 40);
        let longest = "a".repeat(meshmig_core::scenario::MAX_CLUSTER_NAME);
        assert_eq!(meshmig_core::scenario::cluster_name_problem(&longest), None);
        assert!(meshmig_core::scenario::cluster_name_problem(&format!("{longest}a")).is_some());
    }
}
