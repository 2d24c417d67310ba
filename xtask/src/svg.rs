//! Horizontal bar charts as standalone SVG, for the benchmark report.

use std::fmt::Write as _;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart: one bar per `(label, value)`, scaled to the largest value, with the
/// value printed after each bar in `unit`.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    const LABEL_W: f64 = 330.0;
    const BAR_W: f64 = 420.0;
    const ROW_H: f64 = 22.0;
    const TOP: f64 = 40.0;
    let width = LABEL_W + BAR_W + 110.0;
    let height = TOP + ROW_H * bars.len() as f64 + 16.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let w = if max > 0.0 && value.is_finite() {
            (value / max * BAR_W).max(1.0)
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL_W}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#d2691e"/><text x="{:.1}" y="{:.1}">{} {}</text>"##,
            LABEL_W - 6.0,
            y + 14.0,
            esc(label),
            y + 3.0,
            ROW_H - 6.0,
            LABEL_W + w + 4.0,
            y + 14.0,
            format_value(*value),
            esc(unit)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bar_chart("t <1>", "GB/s", &[("a".into(), 2.0), ("b&c".into(), 4.0)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r#"width="210.0""#), "{svg}");
        assert!(svg.contains(r#"width="420.0""#));
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("b&amp;c"));
        assert!(svg.contains(">4.00 GB/s<"));
    }
}
