//! What a run tells: exactly one JSON object on stdout for scripts, and a readable summary on stderr.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latencies from 1 µs to 60 s at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; failure would be a programming error caught by tests.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Records in microseconds, clamped so an outlier past the range still counts instead of being lost.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, h.high());
    h.saturating_record(us);
}

/// p50/p99/p999/max in microseconds, or nulls when nothing was recorded.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "p50_us": null, "p99_us": null, "p999_us": null, "max_us": null, "mean_us": null});
    }
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": (h.mean() * 10.0).round() / 10.0,
    })
}

/// One line for the stderr summary.
pub fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_string();
    }
    format!(
        "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs ({} samples)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    )
}

/// Rounds rates and percentages to what a reader can use.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Prints the run's result: the JSON line on stdout, the summary on stderr.
pub fn emit(result: &Value, summary: &str) {
    eprintln!("{summary}");
    println!("{result}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarises() {
        let mut h = latency_histogram();
        for us in 1..=1000 {
            record(&mut h, Duration::from_micros(us));
        }
        record(&mut h, Duration::from_secs(3600));
        let v = latency_json(&h);
        assert_eq!(v["count"], 1001);
        assert!(v["p50_us"].as_u64().unwrap() >= 499);
        assert!(v["max_us"].as_u64().unwrap() >= 59_000_000);
        assert_eq!(latency_json(&latency_histogram())["p99_us"], Value::Null);
    }
}
