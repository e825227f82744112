//! `robust history FILE`: robust accuracy per attack and ε over the runs of a history
//! file (`robust eval --history FILE` appends one line per run), as a table with a
//! sparkline per series and, with `--html`, the report's charts; with `--max-drop`, exit 1
//! when a series has fallen by more than that from its best earlier value (see
//! `robust_monitor::trend`): the slow decline a nightly run-to-run gate misses.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use robust_monitor::{sparkline, trend, Series, Trend};
use robust_report::history::history_chart_svg;
use robust_report::HistoryEntry;

use crate::exit::bad_input;

/// Show robust accuracy over the runs of a history file; exit 1 on a drop beyond
/// --max-drop.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  robust history reports/history.jsonl
  robust history reports/history.jsonl --max-drop 0.02             # nightly: exit 1 on a decline
  robust history reports/history.jsonl --max-drop 0.02 --window 7 --html trend.html

For every attack and ε (and clean accuracy) the latest run's value is compared with the
best value of the runs before it (all of them, or the last --window); the drop is best
minus latest. Runs are in file order. Exit code 0: no drop beyond --max-drop (or no
--max-drop); 1: some series dropped by more; 2: bad input (missing or malformed history,
bad flag value).")]
pub struct HistoryArgs {
    /// The history file (JSON lines, as written by `robust eval --history`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Largest allowed drop from the best earlier value (e.g. 0.02); exit 1 beyond it.
    #[arg(long, value_name = "D")]
    pub max_drop: Option<f64>,
    /// Compare with the best of the last N runs before the latest only.
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
    /// Write the charts and the table as a self-contained HTML page.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// Every series of the history: clean accuracy, then each (attack, ε) in first-seen
/// order, ε ascending within an attack.
fn series_of(history: &[HistoryEntry]) -> Vec<(Option<String>, Series)> {
    let mut out = vec![(
        None,
        Series {
            name: "clean accuracy".into(),
            values: history.iter().map(|e| Some(e.clean_accuracy)).collect(),
        },
    )];
    let mut keys: Vec<(String, f64)> = Vec::new();
    for e in history {
        for p in &e.points {
            if !keys
                .iter()
                .any(|(a, x)| *a == p.attack && robust_report::eps_eq(*x, p.eps))
            {
                keys.push((p.attack.clone(), p.eps));
            }
        }
    }
    let order: Vec<String> = keys.iter().fold(Vec::new(), |mut v, (a, _)| {
        if !v.contains(a) {
            v.push(a.clone());
        }
        v
    });
    keys.sort_by(|a, b| {
        let pos = |x: &str| order.iter().position(|o| o == x);
        pos(&a.0).cmp(&pos(&b.0)).then(a.1.total_cmp(&b.1))
    });
    for (attack, eps) in keys {
        let values = history
            .iter()
            .map(|e| {
                e.points
                    .iter()
                    .find(|p| p.attack == attack && robust_report::eps_eq(p.eps, eps))
                    .map(|p| p.robust_accuracy)
            })
            .collect();
        out.push((
            Some(attack.clone()),
            Series {
                name: format!("{attack} @ eps {}", super::mlflow::eps_key(eps)),
                values,
            },
        ));
    }
    out
}

/// Runs `robust history`.
pub fn run(args: &HistoryArgs) -> Result<ExitCode> {
    if let Some(d) = args.max_drop {
        if !(0.0..=1.0).contains(&d) {
            return Err(bad_input(format!("--max-drop {d} must lie in [0, 1]")));
        }
    }
    if args.window == Some(0) {
        return Err(bad_input("--window must be at least 1"));
    }
    if let Some(out) = &args.html {
        super::refuse_overlap(&[args.file.as_path()], &[out.as_path()])?;
    }
    let history = robust_report::read_history(&args.file).map_err(bad_input)?;
    if history.is_empty() {
        return Err(bad_input(format!(
            "{}: the history holds no runs",
            args.file.display()
        )));
    }
    let series = series_of(&history);
    let trends: Vec<(Option<Trend>, &Series)> = series
        .iter()
        .map(|(_, s)| (trend(s, args.window, args.max_drop), s))
        .collect();
    let table = render_table(&history, &trends, args);
    if let Some(out) = &args.html {
        let html = render_html(&history, &series, &table)?;
        robust_report::write_atomic(out, html.as_bytes()).map_err(bad_input)?;
    }
    print!("{table}");
    let flagged: Vec<&Trend> = trends
        .iter()
        .filter_map(|(t, _)| t.as_ref())
        .filter(|t| t.flagged)
        .collect();
    if let Some(d) = args.max_drop {
        if flagged.is_empty() {
            println!("no series dropped by more than {d}");
        } else {
            for t in &flagged {
                eprintln!(
                    "error: {} dropped {:.4} (from {:.4} in run {} to {:.4} in the latest), \
                     more than --max-drop {d}",
                    t.name,
                    t.drop,
                    t.best,
                    t.best_run + 1,
                    t.latest
                );
            }
        }
    }
    Ok(if flagged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render_table(
    history: &[HistoryEntry],
    trends: &[(Option<Trend>, &Series)],
    args: &HistoryArgs,
) -> String {
    let first = &history[0].started_at;
    let last = &history[history.len() - 1].started_at;
    let mut out = format!(
        "{}: {} run{} ({first} … {last}); latest compared with the best of {}\n",
        args.file.display(),
        history.len(),
        if history.len() == 1 { "" } else { "s" },
        match args.window {
            Some(w) => format!("the {w} runs before it"),
            None => "all runs before it".into(),
        }
    );
    let width = trends
        .iter()
        .map(|(_, s)| s.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}  {:>7}  {:>7}  trend",
        "series", "first", "best", "latest", "drop"
    );
    for (t, s) in trends {
        let spark = sparkline(&s.values);
        match t {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>6.2}%  {:>6.2}%  {:>6.2}%  {:>6.2}%  {spark}{}",
                    s.name,
                    t.first * 100.0,
                    t.best * 100.0,
                    t.latest * 100.0,
                    t.drop * 100.0,
                    if t.flagged { "  DROP" } else { "" }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>7}  {:>7}  {:>7}  {:>7}  {spark}  (not in the latest run)",
                    s.name, "", "", "", ""
                );
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    robust_report::render::junit::escape_xml(s)
}

/// A self-contained page: one chart per attack (the report's history chart), then the
/// table.
fn render_html(
    history: &[HistoryEntry],
    series: &[(Option<String>, Series)],
    table: &str,
) -> Result<String> {
    let mut attacks: Vec<&str> = Vec::new();
    for (a, _) in series {
        if let Some(a) = a {
            if !attacks.contains(&a.as_str()) {
                attacks.push(a);
            }
        }
    }
    let mut body = String::new();
    for attack in attacks {
        let (svg, legend) = history_chart_svg(history, attack).map_err(bad_input)?;
        let _ = write!(
            body,
            "<section><h2>{}</h2>{svg}<ul class=\"legend\">",
            escape(attack)
        );
        for (label, color, dashed) in legend {
            let _ = write!(
                body,
                "<li><span style=\"border-top:3px {} {color}\"></span>{}</li>",
                if dashed { "dashed" } else { "solid" },
                escape(&label)
            );
        }
        body.push_str("</ul></section>\n");
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>robust history</title><style>body{{font-family:sans-serif;margin:2em}}\
         .legend{{list-style:none;padding:0;display:flex;gap:1.5em;flex-wrap:wrap}}\
         .legend span{{display:inline-block;width:2em;margin-right:.4em;vertical-align:middle}}\
         pre{{background:#f6f6f6;padding:1em}}</style></head><body>\
         <h1>Robust accuracy over time</h1>\n{body}<pre>{}</pre></body></html>\n",
        escape(table)
    ))
}
