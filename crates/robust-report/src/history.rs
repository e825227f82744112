//! A history of runs, one JSON object per line, to chart robust accuracy over time.
//!
//! Each line is a [`HistoryEntry`]: when the run started, which model (by SHA-256), the seed,
//! clean accuracy and the robust accuracy of every (attack label, epsilon) point. Lines are
//! only ever appended, one `write` each, so a CI job that appends after every run never
//! rewrites old entries.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};
use crate::schema::RunResults;

/// One run, as remembered by the history file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// The run's seed.
    pub seed: u64,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Robust accuracy of every (attack, epsilon) point of the run.
    pub points: Vec<HistoryPoint>,
}

/// Robust accuracy of one attack at one epsilon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The attack's label.
    pub attack: String,
    /// The epsilon.
    pub eps: f64,
    /// Robust accuracy.
    pub robust_accuracy: f64,
}

impl HistoryEntry {
    /// The entry that remembers `run`.
    pub fn from_run(run: &RunResults) -> HistoryEntry {
        HistoryEntry {
            started_at: run.started_at.clone(),
            model_sha256: run.model.sha256.clone(),
            seed: run.seed,
            clean_accuracy: run.clean_accuracy,
            points: run
                .attacks
                .iter()
                .flat_map(|a| {
                    a.points.iter().map(|p| HistoryPoint {
                        attack: a.label.clone(),
                        eps: p.eps,
                        robust_accuracy: p.robust_accuracy,
                    })
                })
                .collect(),
        }
    }
}

/// Appends one line for `run` to the history file at `path`, creating the file if missing.
///
/// The line is written with a single `write` on a file opened for appending, so concurrent
/// appenders do not interleave their lines. Refuses runs with
/// [problems](RunResults::problems) (a NaN would make the line unreadable).
pub fn append_history(path: impl AsRef<Path>, run: &RunResults) -> Result<()> {
    let path = path.as_ref();
    let problems = run.problems();
    if !problems.is_empty() {
        return Err(ReportError::InvalidResults {
            path: path.to_path_buf(),
            problems,
        });
    }
    let mut line =
        serde_json::to_string(&HistoryEntry::from_run(run)).map_err(ReportError::Serialize)?;
    line.push('\n');
    let write_err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    // One write call: O_APPEND places the whole buffer at the end atomically for regular
    // files of this size. write_all would split it only after a short write.
    let written = file.write(line.as_bytes()).map_err(write_err)?;
    if written != line.len() {
        file.write_all(&line.as_bytes()[written..])
            .map_err(write_err)?;
    }
    Ok(())
}

/// Reads every entry of a history file, oldest first. Blank lines are skipped; a malformed
/// line is an error naming the file and the line number.
pub fn read_history(path: impl AsRef<Path>) -> Result<Vec<HistoryEntry>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| ReportError::History {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Legend entries of a chart: (label, CSS colour, dashed).
pub type Legend = Vec<(String, String, bool)>;

/// The chart the HTML report shows for `attack` over the runs of `history` (robust
/// accuracy per ε, dashed clean accuracy) as an `<svg>` element, with its legend, which
/// is drawn outside the SVG.
pub fn history_chart_svg(history: &[HistoryEntry], attack: &str) -> Result<(String, Legend)> {
    let chart = crate::render::charts::history_chart(history, attack)?;
    let legend = chart
        .legend
        .into_iter()
        .map(|l| (l.label, l.color, l.dashed))
        .collect();
    Ok((chart.svg, legend))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_run;

    fn temp_file(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "robust-report-history-{name}-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn append_creates_then_appends_one_line_per_run() {
        let path = temp_file("append");
        let mut run = sample_run();
        append_history(&path, &run).unwrap();
        run.started_at = "2025-02-01T12:00:00Z".into();
        run.attacks[1].points[0].robust_accuracy = 0.65;
        append_history(&path, &run).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let h = read_history(&path).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].started_at, "2025-01-31T12:00:00Z");
        assert_eq!(h[0].model_sha256, sample_run().model.sha256);
        assert_eq!(h[1].points.len(), 6);
        assert_eq!(h[1].points[3].attack, "PGD-10 Linf");
        assert_eq!(h[1].points[3].robust_accuracy, 0.65);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn malformed_line_error_names_file_and_line() {
        let path = temp_file("malformed");
        append_history(&path, &sample_run()).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\n{\"started_at\": 3}\n")
            .unwrap();
        let err = read_history(&path).unwrap_err();
        assert!(
            matches!(err, ReportError::History { line: 3, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("line 3"),
            "{msg}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_history_is_a_read_error() {
        let err = read_history("/nonexistent/history.jsonl").unwrap_err();
        assert!(matches!(err, ReportError::Read { .. }));
    }
}
