//! Performance drift over time: has a metric fallen from its best recent value?
//!
//! A nightly job that compares each run with the previous one misses a slow decline: five
//! runs that each lose one point of robust accuracy pass a 2-point gate every night and
//! still lose five points. [`trend`] compares the *latest* value of a series with the
//! *best* value of the runs before it (all of them, or the last `window`); the drop is
//! `best − latest`, and it is flagged when it exceeds `max_drop` (strictly).
//!
//! A series is one value per run, `None` where a run did not measure it (another attack
//! list, another ε). A series the latest run did not measure has no trend.

use serde::Serialize;

/// One metric over runs, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What it measures, e.g. `PGD-10 Linf @ eps 0.03`.
    pub name: String,
    /// One value per run.
    pub values: Vec<Option<f64>>,
}

/// The trend of one [`Series`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// The series' name.
    pub name: String,
    /// Runs that measured it.
    pub runs: usize,
    /// Its first value.
    pub first: f64,
    /// The best value of the runs compared with (the latest itself if there are none).
    pub best: f64,
    /// The run (0-based, in the history) that had it.
    pub best_run: usize,
    /// The latest value.
    pub latest: f64,
    /// `best − latest` (0 or more).
    pub drop: f64,
    /// Whether `drop > max_drop`.
    pub flagged: bool,
}

/// The trend of `series`, comparing its latest value with the best of the `window` runs
/// before it (all earlier runs when `None`); flagged when the drop exceeds `max_drop`.
/// `None` when the latest run did not measure the series.
pub fn trend(series: &Series, window: Option<usize>, max_drop: Option<f64>) -> Option<Trend> {
    let last = series.values.len().checked_sub(1)?;
    let latest = series.values[last]?;
    let from = window.map_or(0, |w| last.saturating_sub(w));
    let (best_run, best) = series.values[from..last]
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (from + i, v)))
        .fold(
            (last, latest),
            |acc, (i, v)| if v > acc.1 { (i, v) } else { acc },
        );
    let first = series.values.iter().flatten().copied().next()?;
    let drop = (best - latest).max(0.0);
    Some(Trend {
        name: series.name.clone(),
        runs: series.values.iter().flatten().count(),
        first,
        best,
        best_run,
        latest,
        drop,
        flagged: max_drop.is_some_and(|m| drop > m),
    })
}

/// A one-line chart of values in [0, 1]: one block character per run, `·` where a run
/// did not measure the series.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|v| match v {
            Some(v) => BLOCKS[((v.clamp(0.0, 1.0) * 7.0).round()) as usize],
            None => '·',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(values: &[Option<f64>]) -> Series {
        Series {
            name: "x".into(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn a_slow_decline_is_caught_that_each_step_hides() {
        let v: Vec<Option<f64>> = (0..6).map(|i| Some(0.80 - 0.01 * i as f64)).collect();
        // Each night loses one point: run-to-run (window 1) stays under a 2-point limit...
        let nightly = trend(&s(&v), Some(1), Some(0.02)).unwrap();
        assert!(!nightly.flagged);
        assert!((nightly.drop - 0.01).abs() < 1e-12);
        // ...but against the best of all earlier runs it has lost five.
        let t = trend(&s(&v), None, Some(0.02)).unwrap();
        assert!(t.flagged);
        assert!((t.drop - 0.05).abs() < 1e-12);
        assert_eq!((t.best_run, t.runs, t.first), (0, 6, 0.80));
        // A window of 3 runs compares with run 2 (0.78): a drop of 0.03.
        let w = trend(&s(&v), Some(3), Some(0.02)).unwrap();
        assert_eq!(w.best_run, 2);
        assert!((w.drop - 0.03).abs() < 1e-12);
    }

    #[test]
    fn improvements_gaps_and_limits() {
        // Better than ever: no drop.
        let t = trend(&s(&[Some(0.5), Some(0.6)]), None, Some(0.0)).unwrap();
        assert_eq!((t.drop, t.flagged, t.best_run), (0.0, false, 1));
        // Exactly the limit is not beyond it.
        let t = trend(&s(&[Some(0.5), Some(0.25)]), None, Some(0.25)).unwrap();
        assert!(!t.flagged);
        // Runs without the series are skipped; a latest run without it has no trend.
        let t = trend(&s(&[None, Some(0.7), None, Some(0.6)]), None, Some(0.05)).unwrap();
        assert!(t.flagged && t.runs == 2 && t.first == 0.7);
        assert_eq!(trend(&s(&[Some(0.7), None]), None, None), None);
        assert_eq!(trend(&s(&[]), None, None), None);
        // No limit: never flagged.
        assert!(
            !trend(&s(&[Some(0.9), Some(0.1)]), None, None)
                .unwrap()
                .flagged
        );
    }

    #[test]
    fn sparkline_blocks() {
        assert_eq!(sparkline(&[Some(0.0), Some(1.0), None, Some(0.5)]), "▁█·▅");
    }
}
