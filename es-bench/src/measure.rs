//! Medians and the formatting of times, rates and ratios.

use std::time::Instant;

/// The median of `samples` (the mean of the two middle ones for an even count).
///
/// # Panics
///
/// If `samples` is empty or holds a NaN.
pub fn median(mut samples: Vec<f64>) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN timings"));
    let mid = samples.len() / 2;
    if !samples.len().is_multiple_of(2) {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Runs `f` once and returns its result and the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// Seconds in a readable unit: `812 ns`, `3.52 µs`, `14.6 ms`, `2.31 s`.
pub fn fmt_secs(secs: f64) -> String {
    let (value, unit) = if secs < 1e-6 {
        (secs * 1e9, "ns")
    } else if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else if secs < 1.0 {
        (secs * 1e3, "ms")
    } else {
        (secs, "s")
    };
    format!("{} {unit}", three_digits(value))
}

/// A rate per second: `1.23 M/s`, `45.6 k/s`, `789/s`.
pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{} M/s", three_digits(per_sec / 1e6))
    } else if per_sec >= 1e3 {
        format!("{} k/s", three_digits(per_sec / 1e3))
    } else {
        format!("{}/s", three_digits(per_sec))
    }
}

/// A ratio: `1.23×`.
pub fn fmt_ratio(ratio: f64) -> String {
    format!("{}×", three_digits(ratio))
}

/// Bytes as MiB with one decimal.
pub fn fmt_mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// An integer with thousands separators: `10,000`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits, without scientific notation.
fn three_digits(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_secs(0.0146), "14.6 ms");
        assert_eq!(fmt_secs(3.52e-6), "3.52 µs");
        assert_eq!(fmt_rate(45_600.0), "45.6 k/s");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(100), "100");
    }
}
