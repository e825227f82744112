//! The backdoor scan of an evaluation (`robust eval --backdoor`): Neural Cleanse's per-class
//! trigger norms and their anomaly analysis, stored in [`RunResults::backdoor`] so that a
//! report can be re-rendered from the results file alone, without the model.
//!
//! The scan itself runs in `robust_backdoor` (which builds a [`BackdoorScan`] from its
//! report); this module holds the stored form, its validation, the reliability check it
//! adds ([`backdoor_check`]) and the one-line verdict the terminal and the reports share
//! ([`backdoor_verdict`]).
//!
//! A flagged class is a *warning* in an evaluation (check status `warn`): the regression
//! gate, and so `robust eval`'s exit code, stays about robust accuracy. `robust backdoor`
//! is the command whose exit code fails (1) on a flagged class.

use serde::{Deserialize, Serialize};

use crate::schema::{Check, CheckStatus, RunResults};

/// The id of the reliability check a backdoor scan adds.
pub const BACKDOOR_CHECK_ID: &str = "backdoor/neural-cleanse";

/// Classes, besides the flagged ones, whose trigger images are stored: the ones with the
/// smallest trigger norms.
pub const IMAGED_SMALLEST: usize = 5;

/// What Neural Cleanse found on the evaluation's clean data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackdoorScan {
    /// The method: `neural-cleanse`.
    pub method: String,
    /// Which samples a class's trigger had to move: `all-sources` (every other class at
    /// once, the paper's method) or `per-source` (per (source, target) pair; per target the
    /// smallest pair trigger).
    pub scope: String,
    /// Clean samples the triggers were optimised and measured on (a seeded draw from the
    /// evaluated samples when there were more).
    pub samples: usize,
    /// The seed of the draw, the initial triggers and the mini-batch order (the run's seed).
    pub seed: u64,
    /// Wall time of the scan, in seconds.
    pub duration_s: f64,
    /// The optimisation settings.
    pub settings: BackdoorSettings,
    /// A class is flagged when its norm is below the median with an anomaly index above
    /// this (2 in the paper).
    pub anomaly_threshold: f64,
    /// The median of the class norms.
    pub median_norm: f64,
    /// The median absolute deviation of the class norms from their median.
    pub mad: f64,
    /// Pixels of one mask (`H · W`): the largest norm a mask can have.
    pub mask_pixels: usize,
    /// One row per class, in class order.
    pub classes: Vec<BackdoorClass>,
    /// The flagged classes, in class order.
    pub flagged: Vec<usize>,
}

/// The settings of a trigger search (those of `robust backdoor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackdoorSettings {
    /// Most optimisation steps per class (per finalist pair with the per-source scope).
    pub steps: usize,
    /// Samples per mini-batch.
    pub batch_size: usize,
    /// Mini-batches per step; `None`: one pass over the samples to move.
    pub batches_per_step: Option<usize>,
    /// Adam's learning rate on the mask and pattern logits.
    pub learning_rate: f64,
    /// The first weight λ of the mask's L1 norm.
    pub init_cost: f64,
    /// λ's multiplier up (down: its power 1.5).
    pub cost_multiplier: f64,
    /// Steps of success (or failure) in a row before λ changes.
    pub patience: usize,
    /// The attack success rate a trigger must reach to count.
    pub success_threshold: f64,
    /// Whether a class stops once its best norm stopped improving.
    pub early_stop: bool,
    /// Steps without improvement before a class stops early.
    pub early_stop_patience: usize,
    /// Per-source scope: steps every (source, target) pair gets in the screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_screen_steps: Option<usize>,
    /// Per-source scope: sources per target that get the full budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_finalists: Option<usize>,
}

/// The smallest trigger found for one class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackdoorClass {
    /// The target class.
    pub class: usize,
    /// Per-source scope: the source class of the smallest pair trigger into this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<usize>,
    /// L1 norm of the mask (the number of fully masked pixels it amounts to).
    pub norm: f64,
    /// `|norm − median| / (1.4826 · MAD)`; `None` stands for +∞ (a MAD of zero and a norm
    /// off the median), which JSON cannot store.
    pub anomaly_index: Option<f64>,
    /// Whether the norm is below the median (only low outliers are flagged).
    pub below_median: bool,
    /// Whether the class is flagged.
    pub flagged: bool,
    /// Whether some step reached the success threshold; if not, the norm says little.
    pub reached_threshold: bool,
    /// Fraction of the clean samples it had to move that the recovered trigger sends to
    /// the class.
    pub attack_success: f64,
    /// Samples that measurement used.
    pub attack_samples: usize,
    /// Steps run.
    pub steps: usize,
    /// λ at the end.
    pub final_cost: f64,
    /// The trigger as images, stored for the flagged classes and the
    /// [`IMAGED_SMALLEST`] classes of smallest norm only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<TriggerImages>,
}

/// A trigger as base64 PNG data (no `data:` prefix, as [`crate::png_base64`] returns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerImages {
    /// The mask, white where the trigger replaces the input.
    pub mask_png: String,
    /// The pattern, mapped from the model's bounds to `[0, 1]`.
    pub pattern_png: String,
    /// The mask times the pattern: what the trigger stamps on an input.
    pub trigger_png: String,
}

impl BackdoorClass {
    /// The anomaly index as text, signed (− below the median): `−2.31`, `+0.40`, `−∞`.
    pub fn index_text(&self) -> String {
        let sign = if self.below_median { "−" } else { "+" };
        match self.anomaly_index {
            Some(v) => format!("{sign}{v:.2}"),
            None => format!("{sign}∞"),
        }
    }
}

impl BackdoorScan {
    /// The class with the smallest trigger norm.
    pub fn smallest(&self) -> Option<&BackdoorClass> {
        self.classes.iter().min_by(|a, b| a.norm.total_cmp(&b.norm))
    }

    /// The classes a report shows images of: the flagged ones and the [`IMAGED_SMALLEST`]
    /// of smallest norm, ordered by norm (smallest first).
    pub fn shown_classes(&self) -> Vec<&BackdoorClass> {
        let mut by_norm: Vec<&BackdoorClass> = self.classes.iter().collect();
        by_norm.sort_by(|a, b| a.norm.total_cmp(&b.norm).then(a.class.cmp(&b.class)));
        by_norm
            .into_iter()
            .enumerate()
            .filter(|(rank, c)| *rank < IMAGED_SMALLEST || c.flagged)
            .map(|(_, c)| c)
            .collect()
    }

    /// Classes whose search did not reach the success threshold.
    pub fn unreached(&self) -> usize {
        self.classes.iter().filter(|c| !c.reached_threshold).count()
    }

    /// What makes the scan unusable (non-finite or out-of-range numbers, classes out of
    /// order, a flagged list that contradicts the rows), each prefixed with `backdoor`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut number = |what: String, x: f64, nonneg: bool, unit: bool| {
            if !x.is_finite() {
                problems.push(format!("backdoor.{what} is {x}, not a finite number"));
            } else if (nonneg || unit) && x < 0.0 {
                problems.push(format!("backdoor.{what} is {x}, expected a number ≥ 0"));
            } else if unit && x > 1.0 {
                problems.push(format!(
                    "backdoor.{what} is {x}, expected a value in [0, 1]"
                ));
            }
        };
        number("duration_s".into(), self.duration_s, true, false);
        number(
            "anomaly_threshold".into(),
            self.anomaly_threshold,
            true,
            false,
        );
        number("median_norm".into(), self.median_norm, true, false);
        number("mad".into(), self.mad, true, false);
        for (k, c) in self.classes.iter().enumerate() {
            let at = |f: &str| format!("classes[{k}].{f}");
            number(at("norm"), c.norm, true, false);
            if let Some(a) = c.anomaly_index {
                number(at("anomaly_index"), a, true, false);
            }
            number(at("attack_success"), c.attack_success, false, true);
            number(at("final_cost"), c.final_cost, true, false);
        }
        for (k, c) in self.classes.iter().enumerate() {
            if c.class != k {
                problems.push(format!(
                    "backdoor.classes[{k}] is class {}: rows must be in class order",
                    c.class
                ));
            }
        }
        let flagged_rows: Vec<usize> = self
            .classes
            .iter()
            .filter(|c| c.flagged)
            .map(|c| c.class)
            .collect();
        if flagged_rows != self.flagged {
            problems.push(format!(
                "backdoor.flagged is {:?} but the rows flag {flagged_rows:?}",
                self.flagged
            ));
        }
        problems
    }
}

/// `class 1 (one)`, or `class 1` when the name is the index.
fn class_label(run: &RunResults, k: usize) -> String {
    let name = run.class_name(k);
    if name == k.to_string() {
        format!("class {k}")
    } else {
        format!("class {k} ({name})")
    }
}

/// The scan's verdict in one line, for the terminal and the reports: `no class flagged
/// (smallest trigger class 1: mask L1 11.5, anomaly index −1.90; median 42.0); all-sources
/// scope, 300 samples, anomaly threshold 2` or `1 class flagged as a possible backdoor
/// target (...)`; `None` when the run has no scan.
pub fn backdoor_verdict(run: &RunResults) -> Option<String> {
    let s = run.backdoor.as_ref()?;
    let rows = |ks: &[usize]| -> Vec<String> {
        ks.iter()
            .filter_map(|&k| s.classes.get(k))
            .map(|c| {
                let from = c
                    .source
                    .map(|src| format!(", from class {src}"))
                    .unwrap_or_default();
                format!(
                    "{}: mask L1 {:.1}{from}, anomaly index {}",
                    class_label(run, c.class),
                    c.norm,
                    c.index_text()
                )
            })
            .collect()
    };
    let head = if s.flagged.is_empty() {
        match s.smallest() {
            Some(c) => format!(
                "no class flagged (smallest trigger {}; median {:.1})",
                rows(&[c.class]).join(""),
                s.median_norm
            ),
            None => "no class scanned".to_string(),
        }
    } else {
        format!(
            "{} flagged as a possible backdoor target ({}; median {:.1})",
            if s.flagged.len() == 1 {
                "1 class".to_string()
            } else {
                format!("{} classes", s.flagged.len())
            },
            rows(&s.flagged).join("; "),
            s.median_norm
        )
    };
    let unreached = s.unreached();
    let tail = if unreached > 0 {
        format!(
            "; {unreached} class{} did not reach {:.0}% attack success (raise the steps)",
            if unreached == 1 { "" } else { "es" },
            100.0 * s.settings.success_threshold
        )
    } else {
        String::new()
    };
    Some(format!(
        "{head}; {} scope, {} samples, anomaly threshold {}{tail}",
        s.scope, s.samples, s.anomaly_threshold
    ))
}

/// The reliability check of a run's backdoor scan: `warn` when a class is flagged, `pass`
/// otherwise; `None` when the run has no scan.
pub fn backdoor_check(run: &RunResults) -> Option<Check> {
    let s = run.backdoor.as_ref()?;
    let verdict = backdoor_verdict(run)?;
    let title =
        "No class is reachable with an abnormally small trigger (backdoor scan, Neural Cleanse)"
            .to_string();
    if s.flagged.is_empty() {
        return Some(Check {
            id: BACKDOOR_CHECK_ID.into(),
            status: CheckStatus::Pass,
            title,
            message: format!(
                "{} classes scanned: {verdict}. This is no proof of absence: {}a larger \
                 budget finds smaller triggers.",
                s.classes.len(),
                if s.scope == "per-source" {
                    ""
                } else {
                    "a trigger planted on one source class may only show with the per-source \
                     scope, and "
                }
            ),
        });
    }
    Some(Check {
        id: BACKDOOR_CHECK_ID.into(),
        status: CheckStatus::Warn,
        title,
        message: format!(
            "{verdict}. Inputs of the other classes are sent to a flagged class by a far \
             smaller change than to any other class: the signature of a backdoor (a trigger \
             planted in training), though some natural classes are easy to reach too. Look at the \
             recovered mask and pattern in the backdoor section: a compact patch or a \
             repeated stamp points to a planted trigger. Confirm with `robust backdoor` at \
             the full budget (its exit code fails on a flag) and screen the inputs the model \
             will see with `robust backdoor --screen` (STRIP). This warning does not change \
             the gate or eval's exit code."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_scan;

    fn run_with(s: BackdoorScan) -> RunResults {
        RunResults {
            backdoor: Some(s),
            ..Default::default()
        }
    }

    #[test]
    fn a_flagged_class_warns_and_names_the_class() {
        let run = run_with(sample_scan(true));
        let c = backdoor_check(&run).unwrap();
        assert_eq!(c.id, BACKDOOR_CHECK_ID);
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message
                .starts_with("1 class flagged as a possible backdoor target (class 1: mask L1 11.5, anomaly index −6.86; median 42.0)"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("1 class did not reach 99%"),
            "{}",
            c.message
        );
        assert!(c.message.contains("robust backdoor"));
        assert!(run.backdoor.as_ref().unwrap().problems().is_empty());
    }

    #[test]
    fn no_flag_passes_and_no_scan_adds_no_check() {
        let c = backdoor_check(&run_with(sample_scan(false))).unwrap();
        assert_eq!(c.status, CheckStatus::Pass);
        assert!(
            c.message
                .contains("no class flagged (smallest trigger class 1: mask L1 11.5"),
            "{}",
            c.message
        );
        assert!(backdoor_check(&RunResults::default()).is_none());
        assert!(backdoor_verdict(&RunResults::default()).is_none());
    }

    /// The flagged classes and the five smallest, by norm.
    #[test]
    fn shown_classes_are_the_flagged_and_the_smallest() {
        let mut s = sample_scan(false);
        let shown: Vec<usize> = s.shown_classes().iter().map(|c| c.class).collect();
        assert_eq!(shown, vec![1, 2, 8, 0, 6]);
        s.classes[5].flagged = true;
        s.flagged = vec![5];
        let shown: Vec<usize> = s.shown_classes().iter().map(|c| c.class).collect();
        assert_eq!(shown, vec![1, 2, 8, 0, 6, 5]);
    }

    #[test]
    fn problems_name_the_bad_field() {
        let mut s = sample_scan(true);
        s.classes[3].norm = f64::NAN;
        s.classes[4].attack_success = 1.5;
        s.flagged = vec![2];
        let p = s.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("backdoor.classes[3].norm is NaN"), "{p:?}");
        assert!(p[1].contains("classes[4].attack_success is 1.5"), "{p:?}");
        assert!(
            p[2].contains("backdoor.flagged is [2] but the rows flag [1]"),
            "{p:?}"
        );
    }

    #[test]
    fn an_infinite_index_is_null_in_json_and_shown_as_infinity() {
        let mut s = sample_scan(true);
        s.classes[1].anomaly_index = None;
        assert_eq!(s.classes[1].index_text(), "−∞");
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""anomaly_index":null"#), "{text}");
        let back: BackdoorScan = serde_json::from_str(&text).unwrap();
        assert_eq!(back.classes[1].anomaly_index, None);
        assert_eq!(back.classes[1].images, s.classes[1].images);
        assert_eq!((back.flagged, back.classes.len()), (vec![1], 10));
    }
}
