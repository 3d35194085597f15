//! The result table: one row per measurement, the median of each server's rounds, and the
//! median of the per-round ratios (paired by round, so a noisy round moves both sides).

/// One measurement: its samples, one per round, for the server under test and the baseline.
pub struct Row {
    pub label: String,
    pub samples: [Vec<f64>; 2],
}

/// Prints `rows` as a Markdown table headed by the two servers' names.
pub fn print_table(columns: [&str; 2], rows: &[Row]) {
    let [host, baseline] = columns;
    println!("| measurement | {host} | {baseline} | ratio |");
    println!("|---|---:|---:|---:|");
    for Row { label, samples } in rows {
        let [host, baseline] = samples;
        let ratios: Vec<f64> = host.iter().zip(baseline).map(|(h, b)| h / b).collect();
        println!(
            "| {label} | {} | {} | {} |",
            format_value(median(host)),
            format_value(median(baseline)),
            format_ratio(median(&ratios)),
        );
    }
}

/// The median of the finite samples; NaN if there are none.
fn median(samples: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Three significant digits or so: enough for noisy numbers, no more.
fn format_value(value: f64) -> String {
    match value.abs() {
        v if v.is_nan() => "–".to_owned(),
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

fn format_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}")
    } else {
        "–".to_owned()
    }
}
