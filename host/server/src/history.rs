//! Providers' history: every scorecard's outcomes and latency per minute,
//! kept in the store for `server.history_days` (at most
//! `server.history_max_rows` rows), read back by step for the API's
//! history route, the providers' `last_hour` and the dashboard's charts.
//!
//! This file: the rows and points, and how minutes merge into steps;
//! `deployment/history.rs`: writing the engine's minutes to the store once
//! a minute (and the minute in progress at a graceful stop) and reading
//! them back with the minutes not yet written, so the newest point is
//! live. A `kill -9` loses at most the minutes not yet written (two).

use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_engine::LatencyHistogram;

/// The shortest step of a history read, ms.
pub const MIN_STEP_MS: u64 = 60_000;
/// The most points one history read returns.
pub const MAX_POINTS: u64 = 1_440;

/// One minute of one provider's scorecard, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// The scorecard's key (`product/env/app/action`).
    pub key: String,
    /// Its product.
    pub product: String,
    /// Its env.
    pub env: String,
    /// When the minute began, Unix ms.
    pub at_unix_ms: u64,
    /// Attempts that served.
    pub ok: u64,
    /// Attempts the provider failed.
    pub failed: u64,
    /// Attempts the caller's input failed.
    pub rejected: u64,
    /// Their latency.
    pub latency: LatencyHistogram,
}

/// One step of a provider's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When the step begins, Unix ms.
    pub at_unix_ms: u64,
    /// Outcomes the provider caused: `ok + failed`.
    pub samples: u64,
    /// Attempts that served.
    pub ok: u64,
    /// Attempts the provider failed.
    pub failed: u64,
    /// Attempts the caller's input failed (not the provider's).
    pub rejected: u64,
    /// `ok / samples`; absent with no sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Latency percentiles over the step, ms (merged histograms, not an
    /// average of minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Merge `rows` into `points` steps of `step` ms from `from`.
pub(crate) fn points(rows: &[Minute], from: u64, to: u64, step: u64) -> Vec<Point> {
    let n = to.saturating_sub(from).div_ceil(step.max(1));
    let mut acc: Vec<(u64, u64, u64, LatencyHistogram)> = (0..n)
        .map(|_| (0, 0, 0, LatencyHistogram::default()))
        .collect();
    for r in rows
        .iter()
        .filter(|r| r.at_unix_ms >= from && r.at_unix_ms < to)
    {
        let i = usize::try_from((r.at_unix_ms - from) / step.max(1)).unwrap_or(usize::MAX);
        if let Some(a) = acc.get_mut(i) {
            a.0 = a.0.saturating_add(r.ok);
            a.1 = a.1.saturating_add(r.failed);
            a.2 = a.2.saturating_add(r.rejected);
            a.3.merge(&r.latency);
        }
    }
    acc.into_iter()
        .enumerate()
        .map(|(i, (ok, failed, rejected, h))| {
            let samples = ok.saturating_add(failed);
            Point {
                at_unix_ms: from.saturating_add(step.saturating_mul(i as u64)),
                samples,
                ok,
                failed,
                rejected,
                success_rate: (samples > 0).then(|| ok as f64 / samples as f64),
                p50_ms: h.quantile_ms(0.50),
                p95_ms: h.quantile_ms(0.95),
                p99_ms: h.quantile_ms(0.99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: u64, ok: u64, failed: u64, ms: u64) -> Minute {
        let mut latency = LatencyHistogram::default();
        for _ in 0..ok + failed {
            latency.merge(&LatencyHistogram::from_sparse(&[(
                // A bucket near `ms`: 4 per doubling from 0.1 ms.
                ((ms as f64 * 10.0).log2() * 4.0) as u16,
                1,
            )]));
        }
        Minute {
            key: "k".into(),
            product: "p".into(),
            env: "e".into(),
            at_unix_ms: at,
            ok,
            failed,
            rejected: 0,
            latency,
        }
    }

    #[test]
    fn steps_merge_minutes_and_leave_gaps_empty() {
        let rows = [
            row(0, 9, 1, 10),
            row(60_000, 5, 5, 100),
            row(240_000, 1, 0, 10),
        ];
        let p = points(&rows, 0, 300_000, 120_000);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].samples, p[0].ok), (20, 14));
        assert_eq!(p[0].success_rate, Some(0.7));
        // The merged histogram's p95 is the slow minute's, not an average.
        assert!(p[0].p95_ms.unwrap() > 80.0, "{:?}", p[0].p95_ms);
        assert_eq!((p[1].samples, p[1].success_rate), (0, None));
        assert_eq!(p[2].samples, 1);
        assert_eq!(p[2].at_unix_ms, 240_000);
    }
}
