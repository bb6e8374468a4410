//! Percentiles over a finished set of samples and the `RESULT` line format.

use std::fmt::Write;
use std::time::Duration;

/// Samples kept sorted once, so every percentile after that is an index.
pub struct Samples {
    sorted: Vec<f64>,
}

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self { sorted: values }
    }

    pub fn from_durations_ms(values: &[Duration]) -> Self {
        Self::new(values.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Nearest-rank percentile (`p` in 0..=100); NaN when there are no samples.
    pub fn pct(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = (p / 100.0 * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }
}

/// One machine-readable line: `RESULT a=1 b=2.345`.
pub struct ResultLine(String);

impl ResultLine {
    pub fn new() -> Self {
        Self(String::from("RESULT"))
    }

    pub fn int(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    pub fn num(mut self, key: &str, value: f64) -> Self {
        let _ = write!(self.0, " {key}={value:.3}");
        self
    }

    pub fn print(self) {
        println!("{}", self.0);
    }
}

impl Default for ResultLine {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Samples;

    #[test]
    fn nearest_rank() {
        let s = Samples::new((1..=100).map(f64::from).rev().collect());
        assert_eq!(s.pct(50.0), 50.0);
        assert_eq!(s.pct(99.0), 99.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert_eq!(s.pct(0.0), 1.0);
        assert!(Samples::new(vec![]).pct(50.0).is_nan());
    }
}
