//! Charts as standalone SVG, for the benchmark report: horizontal bars, bars in groups, and
//! lines over a logarithmic x axis.

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

/// Bar colours: kiln, torch and bitsandbytes, then more for line series.
pub const KILN: &str = "#d2691e";
pub const TORCH: &str = "#7f7f7f";
pub const BNB: &str = "#4682b4";
pub const COLORS: [&str; 6] = [KILN, BNB, "#2e8b57", "#8b008b", "#b8860b", TORCH];

/// One bar of [`grouped_bar_chart`].
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color: &'static str,
}

/// Horizontal bars in labelled groups. Each group is scaled to its own largest value (groups
/// may differ by orders of magnitude, as layers of different sizes do); the value is printed
/// after each bar in `unit`, so bars compare within a group and numbers across groups.
pub fn grouped_bar_chart(title: &str, unit: &str, groups: &[(String, Vec<Bar>)]) -> String {
    const LABEL_W: f64 = 170.0;
    const BAR_W: f64 = 420.0;
    const ROW_H: f64 = 18.0;
    const HEAD_H: f64 = 24.0;
    const TOP: f64 = 40.0;
    let rows: usize = groups.iter().map(|g| g.1.len()).sum();
    let width = LABEL_W + BAR_W + 110.0;
    let height = TOP + HEAD_H * groups.len() as f64 + ROW_H * rows as f64 + 10.0;
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
    let mut y = TOP;
    for (name, bars) in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + 16.0,
            esc(name)
        );
        y += HEAD_H;
        let max = bars
            .iter()
            .map(|b| b.value)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        for b in bars {
            let w = if max > 0.0 && b.value.is_finite() {
                (b.value / max * BAR_W).max(1.0)
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL_W}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{} {}</text>"#,
                LABEL_W - 6.0,
                y + 13.0,
                esc(&b.label),
                y + 2.0,
                ROW_H - 4.0,
                b.color,
                LABEL_W + w + 4.0,
                y + 13.0,
                format_value(b.value),
                esc(unit)
            );
            y += ROW_H;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One series of [`line_chart`].
pub struct Line {
    pub label: String,
    /// `(x, y)`; points that are not finite (or `x <= 0`) are left out.
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub dashed: bool,
}

/// Lines over a base-2 logarithmic x axis (sequence lengths, sizes) from a y of zero, with a
/// tick at every x that a point has and a legend on the right.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    const LEFT: f64 = 70.0;
    const TOP: f64 = 45.0;
    const PLOT_W: f64 = 480.0;
    const PLOT_H: f64 = 300.0;
    const LEGEND_W: f64 = 250.0;
    let width = LEFT + PLOT_W + 30.0 + LEGEND_W;
    let height = TOP + PLOT_H + 60.0;
    let points = |l: &Line| -> Vec<(f64, f64)> {
        l.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
            .collect()
    };
    let mut xs: Vec<f64> = lines.iter().flat_map(&points).map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let y_max = lines
        .iter()
        .flat_map(&points)
        .map(|p| p.1)
        .fold(0.0f64, f64::max);
    let step = nice_step(y_max / 5.0);
    let top = if y_max > 0.0 {
        (y_max / step).ceil() * step
    } else {
        1.0
    };
    let (lo, hi) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => (a.log2(), b.log2()),
        _ => (0.0, 1.0),
    };
    let px = |x: f64| {
        if hi > lo {
            LEFT + (x.log2() - lo) / (hi - lo) * PLOT_W
        } else {
            LEFT + PLOT_W / 2.0
        }
    };
    let py = |y: f64| TOP + PLOT_H - y / top * PLOT_H;
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
    let mut y = 0.0;
    while y <= top + step * 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            py(y),
            LEFT + PLOT_W,
            LEFT - 6.0,
            py(y) + 4.0,
            tick(y, step)
        );
        y += step;
    }
    for &x in &xs {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#eee"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            px(x),
            TOP + PLOT_H,
            TOP + PLOT_H + 16.0,
            format_value(x)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        LEFT + PLOT_W / 2.0,
        TOP + PLOT_H + 38.0,
        esc(x_label),
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        esc(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        let dash = if l.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let pts = points(l);
        if !pts.is_empty() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                path.join(" "),
                l.color
            );
            for &(x, y) in &pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                    px(x),
                    py(y),
                    l.color
                );
            }
        }
        let ly = TOP + 8.0 + 20.0 * i as f64;
        let lx = LEFT + PLOT_W + 30.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            l.color,
            lx + 34.0,
            ly + 4.0,
            esc(&l.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A tick label with as many decimals as the step between ticks needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    format!("{v:.decimals$}")
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
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

    #[test]
    fn groups_scale_on_their_own() {
        let bar = |label: &str, value| Bar {
            label: label.into(),
            value,
            color: KILN,
        };
        let svg = grouped_bar_chart(
            "t",
            "us",
            &[
                ("small".into(), vec![bar("a", 1.0), bar("b", 2.0)]),
                ("big".into(), vec![bar("a", 100.0), bar("b", f64::NAN)]),
            ],
        );
        assert_eq!(svg.matches(r#"width="420.0""#).count(), 2, "{svg}");
        assert!(svg.contains(r#"width="210.0""#) && svg.contains(">n/a us<"));
        assert!(svg.contains(">big<") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn lines_span_the_x_values() {
        let svg = line_chart(
            "t",
            "seq",
            "TFLOP/s",
            &[
                Line {
                    label: "kiln".into(),
                    points: vec![(512.0, 100.0), (1024.0, 150.0), (2048.0, f64::NAN)],
                    color: KILN,
                    dashed: false,
                },
                Line {
                    label: "torch <sdpa>".into(),
                    points: vec![(2048.0, 380.0)],
                    color: TORCH,
                    dashed: true,
                },
            ],
        );
        // x from 512 (left edge) to 2048 (right edge); y ticks up to 400.
        assert!(svg.contains(r#"points="70.0,270.0 310.0,232.5""#), "{svg}");
        assert!(svg.contains(">2048<") && svg.contains(">400<"));
        assert!(svg.contains("torch &lt;sdpa&gt;") && svg.contains("stroke-dasharray"));
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(76.0), 100.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(
            (tick(0.0, 100.0), tick(0.5, 0.5), tick(0.25, 0.05)),
            ("0".into(), "0.5".into(), "0.25".into())
        );
    }
}
