//! Charts drawn with plotters' SVG backend, returned as inline `<svg>` text.
//!
//! Plotters escapes text (`<`, `>`, `&`, quotes) in what it writes, so labels taken from the
//! results (attack labels in captions) cannot inject markup; a test in `tests/render.rs`
//! keeps it so.
//!
//! Legends are not drawn inside the SVG, where any fixed position covers some line: each
//! chart returns its legend entries, and the HTML template lays them out below the chart.

use plotters::prelude::*;

use crate::error::{ReportError, Result};
use crate::format::{eps as fmt_eps, num};
use crate::history::HistoryEntry;
use crate::render::{norm_display, worst_case_norm};
use crate::schema::{eps_eq, RunResults};

/// Tableau 10: distinguishable colours, also in print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const WIDTH: u32 = 640;
const HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";

/// One legend entry: a series label and how its line looks.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LegendItem {
    /// The series label.
    pub label: String,
    /// Its CSS colour, `rgb(r, g, b)`.
    pub color: String,
    /// Whether the line is dashed.
    pub dashed: bool,
}

/// An SVG chart and its legend.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Chart {
    /// The `<svg>` element.
    pub svg: String,
    /// The legend entries, in drawing order.
    pub legend: Vec<LegendItem>,
}

fn css(c: RGBColor) -> String {
    format!("rgb({}, {}, {})", c.0, c.1, c.2)
}

fn chart_err(title: &str) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        title: title.to_string(),
        reason,
    }
}

/// Robust accuracy against epsilon for every attack of `norm`, each line starting at
/// epsilon 0 with the clean accuracy, over a wide grey worst-case band.
pub(crate) fn accuracy_chart(run: &RunResults, norm: &str) -> Result<Chart> {
    let title = format!("Robust accuracy vs epsilon ({})", norm_display(norm));
    let err = chart_err(&title);
    let attacks: Vec<_> = run.attacks.iter().filter(|a| a.norm == norm).collect();
    let max_eps = attacks
        .iter()
        .flat_map(|a| a.points.iter().map(|p| p.eps))
        .fold(0.0f64, f64::max);
    let x_max = if max_eps > 0.0 { max_eps * 1.05 } else { 1.0 };
    let with_clean = |mut pts: Vec<(f64, f64)>| {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.first().is_some_and(|p| eps_eq(p.0, 0.0)) {
            pts.insert(0, (0.0, run.clean_accuracy));
        }
        pts
    };
    let worst: Vec<(f64, f64)> = with_clean(
        run.worst_case
            .iter()
            .filter(|w| worst_case_norm(run, w).as_deref() == Some(norm))
            .map(|w| (w.eps, w.robust_accuracy))
            .collect(),
    );

    let has_worst = worst.len() > 1;
    let mut svg = String::new();
    let mut legend = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, (FONT, 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..1.0)
            .map_err(|e| err(e.to_string()))?;
        let x_fmt = |x: &f64| num(*x);
        let y_fmt = |y: &f64| format!("{:.0}%", y * 100.0);
        chart
            .configure_mesh()
            .x_desc(format!("epsilon ({})", norm_display(norm)))
            .y_desc("robust accuracy")
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        // The worst case goes under the attack lines as a wide translucent grey band, so
        // the attack it coincides with (often PGD) stays visible on top of it.
        if worst.len() > 1 {
            chart
                .draw_series(LineSeries::new(
                    worst,
                    WORST_CASE.mix(0.45).stroke_width(10),
                ))
                .map_err(|e| err(e.to_string()))?;
        }
        for (i, a) in attacks.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts = with_clean(
                a.points
                    .iter()
                    .map(|p| (p.eps, p.robust_accuracy))
                    .collect(),
            );
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(|e| err(e.to_string()))?;
            legend.push(LegendItem {
                label: a.label.clone(),
                color: css(color),
                dashed: false,
            });
        }
        if has_worst {
            legend.push(LegendItem {
                label: "worst case (wide grey band)".into(),
                color: css(WORST_CASE),
                dashed: false,
            });
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(Chart { svg, legend })
}

/// The worst-case band's colour.
const WORST_CASE: RGBColor = RGBColor(120, 120, 120);

/// A short x-axis label for a run, from its RFC 3339 start time in `format`.
fn run_label(entry: &HistoryEntry, format: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(&entry.started_at)
        .map(|t| t.format(format).to_string())
        .unwrap_or_else(|_| entry.started_at.chars().take(19).collect())
}

/// One x-axis label per run, all different: `01-31 12:00`; with seconds when two runs
/// started in the same minute; and a `#k` suffix for runs that share even the second.
pub(crate) fn run_labels(history: &[HistoryEntry]) -> Vec<String> {
    let distinct = |v: &[String]| {
        let set: std::collections::HashSet<&String> = v.iter().collect();
        set.len() == v.len()
    };
    let mut labels: Vec<String> = history
        .iter()
        .map(|e| run_label(e, "%m-%d %H:%M"))
        .collect();
    if !distinct(&labels) {
        labels = history
            .iter()
            .map(|e| run_label(e, "%m-%d %H:%M:%S"))
            .collect();
    }
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    labels
        .into_iter()
        .map(|l| {
            let k = seen.entry(l.clone()).or_insert(0);
            *k += 1;
            if *k == 1 {
                l
            } else {
                format!("{l} #{k}")
            }
        })
        .collect()
}

/// Robust accuracy of one attack over the runs of a history, one line per epsilon plus a
/// dashed clean-accuracy line; the x axis counts runs, labelled with their start times.
pub(crate) fn history_chart(history: &[HistoryEntry], attack: &str) -> Result<Chart> {
    let title = format!(
        "{attack}: robust accuracy over the last {} runs",
        history.len()
    );
    let err = chart_err(&title);
    // Epsilons of this attack, in first-seen order, then sorted.
    let mut eps: Vec<f64> = Vec::new();
    for e in history {
        for p in e.points.iter().filter(|p| p.attack == attack) {
            if !eps.iter().any(|&x| eps_eq(x, p.eps)) {
                eps.push(p.eps);
            }
        }
    }
    eps.sort_by(f64::total_cmp);
    let n = history.len();
    let x_max = (n.max(2) - 1) as f64;
    let labels = run_labels(history);

    let mut svg = String::new();
    let mut legend = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, (FONT, 16))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(46)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.05 * x_max..x_max * 1.05, 0f64..1.0)
            .map_err(|e| err(e.to_string()))?;
        let x_fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        let y_fmt = |y: &f64| format!("{:.0}%", y * 100.0);
        chart
            .configure_mesh()
            .x_desc("run (start time)")
            .y_desc("robust accuracy")
            .x_labels(n.min(8))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, &e) in eps.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = history
                .iter()
                .enumerate()
                .filter_map(|(x, h)| {
                    h.points
                        .iter()
                        .find(|p| p.attack == attack && eps_eq(p.eps, e))
                        .map(|p| (x as f64, p.robust_accuracy))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(|e| err(e.to_string()))?;
            legend.push(LegendItem {
                label: format!("eps {}", fmt_eps(e)),
                color: css(color),
                dashed: false,
            });
        }
        legend.push(LegendItem {
            label: "clean accuracy".into(),
            color: css(BLACK),
            dashed: true,
        });
        let clean: Vec<(f64, f64)> = history
            .iter()
            .enumerate()
            .map(|(x, h)| (x as f64, h.clean_accuracy))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(clean, 6, 4, BLACK.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(Chart { svg, legend })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &str) -> HistoryEntry {
        HistoryEntry {
            started_at: t.into(),
            ..Default::default()
        }
    }

    #[test]
    fn run_labels_are_distinct() {
        let h = [entry("2026-01-31T12:00:05Z"), entry("2026-01-31T12:01:00Z")];
        assert_eq!(run_labels(&h), ["01-31 12:00", "01-31 12:01"]);
        // Two runs in one minute: seconds are shown for all.
        let h = [entry("2026-01-31T12:00:05Z"), entry("2026-01-31T12:00:40Z")];
        assert_eq!(run_labels(&h), ["01-31 12:00:05", "01-31 12:00:40"]);
        // Even the same second: numbered.
        let h = [entry("2026-01-31T12:00:05Z"), entry("2026-01-31T12:00:05Z")];
        assert_eq!(run_labels(&h), ["01-31 12:00:05", "01-31 12:00:05 #2"]);
    }
}
