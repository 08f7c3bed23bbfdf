//! Counters and histograms for `GET /metrics`, written in the Prometheus text format by hand
//! (a few dozen lines instead of a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Upper bounds (seconds) of the request-latency buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the batch-size buckets.
const BATCH_BOUNDS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// `name_bucket{labels,le=..}` lines plus `_sum` and `_count`; `labels` is `k="v",` or empty.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = self
                .bounds
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Everything `/metrics` reports. Shared by the HTTP layer and the batch workers.
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch_size: Mutex<Histogram>,
    inference: Mutex<Histogram>,
    /// Images waiting for a batch worker.
    pub queue_depth: AtomicUsize,
    /// Requests being handled now.
    pub in_flight: AtomicUsize,
    /// Models swapped in since start.
    pub reloads: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            batch_size: Mutex::new(Histogram::new(&BATCH_BOUNDS)),
            inference: Mutex::new(Histogram::new(&LATENCY_BOUNDS)),
            queue_depth: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            reloads: AtomicUsize::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(&LATENCY_BOUNDS))
            .observe(seconds);
    }

    pub fn record_batch(&self, size: usize, seconds: f64) {
        lock(&self.batch_size).observe(size as f64);
        lock(&self.inference).observe(seconds);
    }

    /// The batch-size histogram as it is now.
    pub fn batch_sizes(&self) -> Histogram {
        lock(&self.batch_size).clone()
    }

    /// The whole exposition, `text/plain; version=0.0.4`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP synthscan_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE synthscan_http_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "synthscan_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP synthscan_http_request_duration_seconds Time from request to response, by route.\n");
        out.push_str("# TYPE synthscan_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            h.render(
                &mut out,
                "synthscan_http_request_duration_seconds",
                &format!("route=\"{route}\","),
            );
        }
        out.push_str("# HELP synthscan_batch_size Images per forward pass.\n");
        out.push_str("# TYPE synthscan_batch_size histogram\n");
        lock(&self.batch_size).render(&mut out, "synthscan_batch_size", "");
        out.push_str("# HELP synthscan_inference_seconds Time of one batched forward pass.\n");
        out.push_str("# TYPE synthscan_inference_seconds histogram\n");
        lock(&self.inference).render(&mut out, "synthscan_inference_seconds", "");
        for (name, help, v) in [
            (
                "synthscan_queue_depth",
                "Images waiting for a batch worker.",
                &self.queue_depth,
            ),
            (
                "synthscan_requests_in_flight",
                "Requests being handled.",
                &self.in_flight,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        let name = "synthscan_model_reloads_total";
        let _ = writeln!(
            out,
            "# HELP {name} Models swapped in since start.\n# TYPE {name} counter\n{name} {}",
            self.reloads.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&BATCH_BOUNDS);
        for v in [1.0, 3.0, 3.0, 1000.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "b", "");
        assert!(out.contains("b_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("b_bucket{le=\"4\"} 3\n"), "{out}");
        assert!(out.contains("b_bucket{le=\"512\"} 3\n"), "{out}");
        assert!(out.contains("b_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("b_count 4\n"), "{out}");
        assert_eq!(h.mean(), 1007.0 / 4.0);
    }

    #[test]
    fn render_names_routes_and_statuses() {
        let m = Metrics::default();
        m.record_request("/v1/detect", 200, 0.003);
        m.record_request("/v1/detect", 200, 0.004);
        m.record_request("/v1/detect", 503, 0.0001);
        m.record_batch(8, 0.01);
        let text = m.render();
        assert!(
            text.contains("synthscan_http_requests_total{route=\"/v1/detect\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains(
                "synthscan_http_request_duration_seconds_count{route=\"/v1/detect\"} 3\n"
            )
        );
        assert!(text.contains("synthscan_batch_size_sum 8\n"), "{text}");
        assert!(text.contains("synthscan_queue_depth 0\n"));
    }
}
