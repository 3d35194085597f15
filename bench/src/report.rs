//! The result tables. Comparing two servers: one row per measurement, the median of each
//! server's rounds, and the median and range of the per-round ratios (paired by round, so a
//! noisy round moves both sides). Timing commands: one row per command, its median and 90th percentile,
//! and the ratio of its median to the baseline's.

use crate::servers::Server;

/// One measurement: its samples, one per round, for the server under test and the baseline.
pub struct Row {
    pub label: String,
    pub samples: [Vec<f64>; 2],
}

impl Row {
    /// The row of `metric` over both servers' outcomes, one per round.
    pub fn of<T>(label: String, outcomes: &[Vec<T>; 2], metric: impl Fn(&T) -> f64) -> Self {
        let samples = outcomes.each_ref().map(|o| o.iter().map(&metric).collect());
        Self { label, samples }
    }

    /// The per-round ratios, server under test to baseline.
    fn ratios(&self) -> Vec<f64> {
        let [host, baseline] = &self.samples;
        paired_ratios(host, baseline)
    }

    /// The median of the per-round ratios.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios())
    }

    /// The lowest and highest per-round ratio: the spread the median hides.
    fn spread(&self) -> String {
        let ratios = self.ratios();
        let (low, high) = (quantile(&ratios, 0.0), quantile(&ratios, 1.0));
        match ratios.len() {
            0 | 1 => "–".to_owned(),
            _ => format!("{}–{}", format_ratio(low), format_ratio(high)),
        }
    }

    /// Both servers' resident set size now, in MB.
    pub fn rss(label: &str, servers: [&Server; 2]) -> Result<Self, String> {
        let [host, baseline] = servers;
        Ok(Self {
            label: label.to_owned(),
            samples: [vec![host.rss_mb()?], vec![baseline.rss_mb()?]],
        })
    }
}

/// The order in which the two servers (0: under test, 1: baseline) are measured in `round`:
/// swapped each round, so drift in the shared machine's load falls on both alike.
pub fn sides(round: usize) -> [usize; 2] {
    [round % 2, (round + 1) % 2]
}

/// Prints `rows` as a Markdown table headed by the two servers' names and `ratio`, the
/// heading of the ratio column, then the range of the per-round ratios.
pub fn print_table(columns: [&str; 2], ratio: &str, rows: &[Row]) {
    let [host, baseline] = columns;
    println!("| measurement | {host} | {baseline} | {ratio} | ratio, lowest–highest round |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        let [host, baseline] = &row.samples;
        println!(
            "| {} | {} | {} | {} | {} |",
            row.label,
            format_value(median(host)),
            format_value(median(baseline)),
            format_ratio(row.ratio()),
            row.spread(),
        );
    }
}

/// Prints, for each row, the range of each server's rounds and of the per-round ratios: how
/// far one run can be trusted on this shared machine.
pub fn print_spread(columns: [&str; 2], rows: &[Row]) {
    let [host, baseline] = columns;
    println!("| spread over rounds (min–max) | {host} | {baseline} | ratio |");
    println!("|---|---:|---:|---:|");
    let range = |samples: &[f64], format: fn(f64) -> String| {
        let finite = samples.iter().copied().filter(|s| s.is_finite());
        let min = finite.clone().fold(f64::INFINITY, f64::min);
        let max = finite.fold(f64::NEG_INFINITY, f64::max);
        format!("{}–{}", format(min), format(max))
    };
    for row in rows {
        let [host, baseline] = &row.samples;
        let ratios = paired_ratios(host, baseline);
        println!(
            "| {} | {} | {} | {} |",
            row.label,
            range(host, format_value),
            range(baseline, format_value),
            range(&ratios, format_ratio),
        );
    }
}

/// A series' median and range: `1203 (823–1367)`.
pub fn spread(samples: &[f64]) -> String {
    format!(
        "{} ({}–{})",
        format_value(median(samples)),
        format_value(quantile(samples, 0.0)),
        format_value(quantile(samples, 1.0))
    )
}

/// The median of the per-round ratios of `samples` to `baseline` (paired by round).
pub fn ratio(samples: &[f64], baseline: &[f64]) -> String {
    format!("{:.2}", median(&paired_ratios(samples, baseline)))
}

/// The median of the per-round ratios and their range: `0.93 (0.80–1.05)`.
pub fn ratio_spread(samples: &[f64], baseline: &[f64]) -> String {
    let ratios = paired_ratios(samples, baseline);
    format!(
        "{} ({}–{})",
        format_ratio(median(&ratios)),
        format_ratio(quantile(&ratios, 0.0)),
        format_ratio(quantile(&ratios, 1.0))
    )
}

fn paired_ratios(samples: &[f64], baseline: &[f64]) -> Vec<f64> {
    samples.iter().zip(baseline).map(|(s, b)| s / b).collect()
}

/// One command's wall times, in ms.
pub struct Timing {
    pub label: String,
    pub samples: Vec<f64>,
}

/// Prints `rows` as a Markdown table; the first row is the baseline the ratios divide by.
pub fn print_timings(rows: &[Timing]) {
    let Some(baseline) = rows.first() else {
        return;
    };
    let baseline_median = median(&baseline.samples);
    println!(
        "| measurement | median ms | p90 ms | ratio to {} |",
        baseline.label
    );
    println!("|---|---:|---:|---:|");
    for Timing { label, samples } in rows {
        println!(
            "| {label} | {} | {} | {} |",
            format_value(median(samples)),
            format_value(quantile(samples, 0.9)),
            format_ratio(median(samples) / baseline_median),
        );
    }
}

/// The median of the finite samples; NaN if there are none.
pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// The `q` quantile of the finite samples, interpolating between the two nearest (so the
/// median of an even count is the mean of the middle two); NaN if there are none.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = q * last as f64;
    let (below, above) = (sorted[rank.floor() as usize], sorted[rank.ceil() as usize]);
    below + (above - below) * rank.fract()
}

/// Three significant digits or so: enough for noisy numbers, no more.
pub fn format_value(value: f64) -> String {
    match value.abs() {
        v if v.is_nan() => "–".to_owned(),
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// How a goal came out.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

fn format_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}")
    } else {
        "–".to_owned()
    }
}
