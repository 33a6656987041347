//! A small Prometheus registry: counters and fixed-bucket histograms, text exposition.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The methods counted under their own name.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn method_label(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// Cairn's process metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    http_duration: Histogram,
    commands: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    command_duration: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    /// Counts one HTTP request. Labels come from a fixed set: any method but the standard
    /// ones counts as `other` (a client can send any token as a method).
    pub fn http(&self, method: &str, status: u16, elapsed: Duration) {
        *self
            .http_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method_label(method), status))
            .or_default() += 1;
        self.http_duration.observe(elapsed);
    }

    /// Counts one command with its outcome (`ok`, `refused`, `conflict`, `error`).
    pub fn command(&self, aggregate: &'static str, outcome: &'static str, elapsed: Duration) {
        *self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((aggregate, outcome))
            .or_default() += 1;
        self.command_duration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(aggregate)
            .or_default()
            .observe(elapsed);
    }

    /// The Prometheus text exposition, with `ready` and `last_position` gauges appended.
    pub fn render(&self, ready: bool, committed_position: i64) -> String {
        let mut out = String::new();
        out.push_str("# HELP cairn_http_requests_total HTTP requests by method and status.\n# TYPE cairn_http_requests_total counter\n");
        for ((method, status), n) in self
            .http_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cairn_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP cairn_http_request_duration_seconds HTTP request latency.\n# TYPE cairn_http_request_duration_seconds histogram\n");
        self.http_duration
            .render(&mut out, "cairn_http_request_duration_seconds", "");
        out.push_str("# HELP cairn_commands_total Commands by aggregate and outcome.\n# TYPE cairn_commands_total counter\n");
        for ((aggregate, outcome), n) in self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cairn_commands_total{{aggregate=\"{aggregate}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP cairn_command_duration_seconds Command latency, load to commit.\n# TYPE cairn_command_duration_seconds histogram\n");
        for (aggregate, h) in self
            .command_duration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            h.render(
                &mut out,
                "cairn_command_duration_seconds",
                &format!("aggregate=\"{aggregate}\""),
            );
        }
        let _ = writeln!(out, "# HELP cairn_ready Whether the database is connected and migrated.\n# TYPE cairn_ready gauge\ncairn_ready {}", u8::from(ready));
        let _ = writeln!(out, "# HELP cairn_committed_position Global position of the last event this process committed.\n# TYPE cairn_committed_position gauge\ncairn_committed_position {committed_position}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let metrics = Metrics::default();
        for method in ["GET", "BREW", "PROPFIND", "get", "DELETE"] {
            metrics.http(method, 405, Duration::from_millis(1));
        }
        let text = metrics.render(true, 0);
        assert!(
            text.contains("method=\"other\",status=\"405\"} 3"),
            "{text}"
        );
        assert!(text.contains("method=\"GET\",status=\"405\"} 1"), "{text}");
        assert!(!text.contains("BREW"));
    }
}
