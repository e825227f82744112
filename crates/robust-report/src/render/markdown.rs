//! A compact Markdown summary for a CI job summary or a pull-request comment.
//!
//! It holds what a reviewer needs to decide: clean accuracy, one table per attack, the
//! gate's verdict and the checks that did not pass. Text from the results is escaped so
//! that a label cannot break a table or inject HTML.

use std::fmt::Write as _;

use crate::format::{eps as fmt_eps, pct, pct_opt, sig3};
use crate::gate::threshold_text;
use crate::render::norm_display;
use crate::schema::{CheckStatus, RunResults};

/// Escapes text for Markdown: table pipes, emphasis and link characters get a backslash,
/// `<`, `>` and `&` become entities, line breaks become spaces.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn gate_table(md: &mut String, rows: &[&crate::GateRow]) {
    md.push_str("| | attack | eps | rule | baseline | actual |\n");
    md.push_str("|---|---|---:|---|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | `{}` | {} | {} |",
            if r.passed { "✅" } else { "❌" },
            escape_markdown(&r.attack),
            if r.all_eps {
                "all".into()
            } else {
                fmt_eps(r.eps)
            },
            threshold_text(r),
            pct_opt(r.baseline),
            r.actual.map(pct).unwrap_or_else(|| "missing".into()),
        );
    }
    md.push('\n');
}

/// The backdoor scan: the verdict, then the flagged classes and the smallest triggers.
fn backdoor_table(md: &mut String, run: &RunResults, b: &crate::BackdoorScan) {
    let e = escape_markdown;
    let icon = if b.flagged.is_empty() {
        "✅"
    } else {
        "⚠️"
    };
    let _ = writeln!(md, "### Backdoor scan (Neural Cleanse)\n");
    let _ = writeln!(
        md,
        "{icon} {}.\n",
        e(&crate::backdoor_verdict(run).unwrap_or_default())
    );
    let per_source = b.scope == "per-source";
    md.push_str(if per_source {
        "| class | from | mask L1 | anomaly index | attack success | |\n|---|---|---:|---:|---:|---|\n"
    } else {
        "| class | mask L1 | anomaly index | attack success | |\n|---|---:|---:|---:|---|\n"
    });
    let shown = b.shown_classes();
    for c in &shown {
        let from = match (per_source, c.source) {
            (true, Some(s)) => format!(" {} |", e(&run.class_name(s))),
            (true, None) => " |".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} |{from} {:.2} | {} | {} | {} |",
            e(&run.class_name(c.class)),
            c.norm,
            c.index_text(),
            pct(c.attack_success),
            if c.flagged {
                "⚠️ flagged"
            } else if !c.reached_threshold {
                "not reached"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        md,
        "\n{} of {} classes shown (flagged and smallest); median {:.2}, MAD {:.2}. {}\n",
        shown.len(),
        b.classes.len(),
        b.median_norm,
        b.mad,
        if b.flagged.is_empty() {
            "See report.html for every class and the recovered triggers."
        } else {
            "A flag is a warning, not a gate failure: inspect the recovered trigger in \
             report.html and confirm with `robust backdoor`."
        }
    );
}

/// Renders the Markdown summary of `run`.
pub fn render_markdown(run: &RunResults) -> String {
    let e = escape_markdown;
    let mut md = String::new();
    let name = if run.model.file_name.is_empty() {
        &run.model.path
    } else {
        &run.model.file_name
    };
    let _ = writeln!(md, "## Robustness report: {}\n", e(name));
    let sha: String = run.model.sha256.chars().take(12).collect();
    let _ = writeln!(
        md,
        "Clean accuracy **{}** on {} samples of {} · model `{}` · seed {} · {} {} on {}\n",
        pct(run.clean_accuracy),
        run.dataset.size,
        e(&run.dataset.source),
        e(&sha),
        run.seed,
        e(&run.tool.name),
        e(&run.tool.version),
        e(&run.device.backend),
    );
    for h in crate::render::headlines(run) {
        let largest = h
            .largest
            .map(|(eps, acc)| format!(" (at the largest eps {}: {})", fmt_eps(eps), pct(acc)))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "Robust accuracy, {} eps {}: **{}**, worst case{largest}\n",
            norm_display(&h.norm),
            fmt_eps(h.eps),
            pct(h.robust_accuracy)
        );
    }
    if !run.dataset.conversions.is_empty() {
        let what: Vec<String> = run
            .dataset
            .conversions
            .iter()
            .map(|c| format!("{} ({} samples)", e(&c.what), c.samples))
            .collect();
        let _ = writeln!(
            md,
            "⚠️ The data was converted to fit the model: {}\n",
            what.join("; ")
        );
    }

    if let Some(g) = &run.gate {
        let failed = g.rows.iter().filter(|r| !r.passed).count();
        if g.passed {
            let _ = writeln!(md, "### Gate: ✅ passed ({} thresholds)\n", g.rows.len());
        } else {
            let _ = writeln!(
                md,
                "### Gate: ❌ failed ({failed} of {} thresholds)\n",
                g.rows.len()
            );
        }
        if let Some(b) = &g.baseline {
            let _ = writeln!(md, "Baseline: {}\n", e(b));
        }
        // Failed rows first, in full; passing rows folded away, since a PR comment should
        // lead with what needs attention.
        let (failed_rows, passed_rows): (Vec<_>, Vec<_>) = g.rows.iter().partition(|r| !r.passed);
        if !failed_rows.is_empty() {
            gate_table(&mut md, &failed_rows);
        }
        if !passed_rows.is_empty() {
            let _ = writeln!(
                md,
                "<details><summary>{} passing threshold{}</summary>\n",
                passed_rows.len(),
                if passed_rows.len() == 1 { "" } else { "s" }
            );
            gate_table(&mut md, &passed_rows);
            md.push_str("</details>\n\n");
        }
    }

    for a in &run.attacks {
        let _ = writeln!(md, "### {} ({})\n", e(&a.label), norm_display(&a.norm));
        md.push_str("| eps | robust acc | success rate | mean pert |\n");
        md.push_str("|---:|---:|---:|---:|\n");
        let mut points: Vec<_> = a.points.iter().collect();
        points.sort_by(|p, q| p.eps.total_cmp(&q.eps));
        for p in points {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                fmt_eps(p.eps),
                pct(p.robust_accuracy),
                pct(p.attack_success_rate),
                sig3(p.mean_perturbation)
            );
        }
        md.push('\n');
        if let Some(line) = crate::components_line(&a.params) {
            let _ = writeln!(md, "{}\n", e(&line));
        }
        if let Some(line) = crate::median_perturbation_line(&a.params) {
            let _ = writeln!(md, "{}\n", e(&line));
        }
    }

    if let Some(b) = &run.backdoor {
        backdoor_table(&mut md, run, b);
    }

    let flagged: Vec<_> = run
        .checks
        .iter()
        .filter(|c| matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
        .collect();
    if !run.checks.is_empty() {
        md.push_str("### Reliability checks\n\n");
        if flagged.is_empty() {
            let text = crate::schema::all_passed_text(&run.checks);
            let _ = writeln!(md, "{}{}.\n", text[..1].to_uppercase(), &text[1..]);
        } else {
            for c in flagged {
                let icon = if c.status == CheckStatus::Fail {
                    "❌"
                } else {
                    "⚠️"
                };
                let _ = writeln!(md, "- {icon} **{}**: {}", e(&c.title), e(&c.message));
            }
            md.push('\n');
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::render_markdown;

    /// The verdict, then the flagged class and the smallest, by norm; nothing without a
    /// scan.
    #[test]
    fn a_backdoor_scan_gets_a_short_table() {
        let mut run = crate::testing::sample_run();
        run.dataset.class_names.clear();
        run.backdoor = Some(crate::testing::sample_scan(true));
        let md = render_markdown(&run);
        let at = md.find("### Backdoor scan (Neural Cleanse)").unwrap();
        let section: Vec<&str> = md[at..].lines().collect();
        assert!(
            section[2].starts_with("⚠️ 1 class flagged as a possible backdoor target"),
            "{md}"
        );
        assert_eq!(
            section[4],
            "| class | mask L1 | anomaly index | attack success | |"
        );
        assert_eq!(section[6], "| 1 | 11.50 | −6.86 | 99.0% | ⚠️ flagged |");
        assert_eq!(section[7], "| 2 | 38.00 | −0.90 | 99.0% |  |");
        assert_eq!(section.iter().filter(|l| l.starts_with("| ")).count(), 6);
        assert!(md[at..].contains("5 of 10 classes shown"));
        run.backdoor = None;
        assert!(!render_markdown(&run).contains("Backdoor scan"));
    }
}
