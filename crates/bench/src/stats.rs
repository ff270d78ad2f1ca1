//! Figures from samples: percentiles of one run, and the median, minimum and
//! maximum of a figure over several runs.

use std::fmt;

/// Latencies of one run, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies(Vec<u64>);

impl Latencies {
    /// Sorted copies of `samples`.
    pub(crate) fn new(mut samples: Vec<u64>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let index = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[index] as f64 / 1000.0
    }

    /// The largest, in milliseconds.
    pub(crate) fn max_ms(&self) -> f64 {
        self.0.last().map_or(0.0, |&m| m as f64 / 1000.0)
    }

    /// Points of the cumulative distribution, at most `points` of them:
    /// (milliseconds, fraction at or below).
    pub(crate) fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        let n = self.0.len();
        if n == 0 {
            return Vec::new();
        }
        let step = (n / points.max(1)).max(1);
        let mut out: Vec<(f64, f64)> = (0..n)
            .step_by(step)
            .map(|i| (self.0[i] as f64 / 1000.0, (i + 1) as f64 / n as f64))
            .collect();
        out.push((self.max_ms(), 1.0));
        out
    }
}

/// One figure measured in several runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Runs(Vec<f64>);

impl Runs {
    /// Adds one run's value.
    pub(crate) fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// The median of the runs (mean of the middle two for an even count).
    pub(crate) fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The smallest run.
    pub(crate) fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }

    /// The largest run.
    pub(crate) fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }

    /// How many runs measured it.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no run measured it.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `median (min–max)` with `decimals` places.
    pub(crate) fn show(&self, decimals: usize) -> Shown<'_> {
        Shown { runs: self, decimals }
    }
}

/// A [`Runs`] formatted for a table.
pub(crate) struct Shown<'a> {
    runs: &'a Runs,
    decimals: usize,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() {
            return f.write_str("not run");
        }
        let d = self.decimals;
        let (median, min, max) = (self.runs.median(), self.runs.min(), self.runs.max());
        if self.runs.0.len() == 1 {
            write!(f, "{}", group(median, d))
        } else {
            write!(f, "{} ({}–{})", group(median, d), group(min, d), group(max, d))
        }
    }
}

/// `value` with `decimals` places and thousands separated by commas.
pub(crate) fn group(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "–".to_owned();
    }
    let text = format!("{value:.decimals$}");
    let (whole, fraction) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let (sign, digits) = whole.strip_prefix('-').map_or(("", whole), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}
