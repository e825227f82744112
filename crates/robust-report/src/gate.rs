//! The regression gate: thresholds a run must meet, alone and against a baseline.
//!
//! Two kinds of rule:
//!
//! * **min** ([`MinRule`]): robust accuracy of matching attacks at matching epsilons must be
//!   at least a threshold. A rule names an attack by label or registry name (`*` for any)
//!   and optionally one epsilon. A rule that matches nothing in the run is a *failed* row:
//!   a gate must not pass because the attack it guards was dropped from the run.
//! * **max_drop**: for every (attack label, epsilon) point of the baseline run, the run's
//!   robust accuracy may be at most `max_drop` below the baseline's. Epsilons match within
//!   [`crate::EPS_TOLERANCE`]. A baseline point missing from the run is a **failed** row with
//!   `actual: None`, for the same reason. Without a baseline, `max_drop` adds no rows.

use serde::{Deserialize, Serialize};

use crate::format::{eps as fmt_eps, num, pct};
use crate::schema::{eps_eq, GateReport, GateRow, RunResults};

/// The thresholds of the gate, as found in a `[gate]` TOML table or JSON object:
///
/// ```toml
/// max_drop = 0.02
/// [[min]]
/// attack = "PGD-10 Linf"
/// eps = 0.03
/// min_robust_accuracy = 0.40
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum robust accuracies.
    #[serde(default)]
    pub min: Vec<MinRule>,
    /// Largest fall of robust accuracy allowed against the baseline (a fraction, `0.02` is
    /// two percentage points); `None` for no comparison.
    #[serde(default)]
    pub max_drop: Option<f64>,
}

/// Robust accuracy of matching attacks must be at least `min_robust_accuracy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinRule {
    /// An attack label (`PGD-10 Linf`) or registry name (`pgd`), or `*` for every attack.
    pub attack: String,
    /// The epsilon the rule applies to; `None` for every epsilon of the matching attacks.
    #[serde(default)]
    pub eps: Option<f64>,
    /// The smallest robust accuracy allowed, a fraction in `[0, 1]`.
    pub min_robust_accuracy: f64,
}

impl MinRule {
    /// What makes the rule unusable, if anything: its ε must be a finite number ≥ 0 and its
    /// minimum a fraction in `[0, 1]` (a NaN minimum would make the results file invalid,
    /// and one above 1 a gate no model can pass).
    pub fn problem(&self) -> Option<String> {
        if let Some(eps) = self.eps {
            if !(eps.is_finite() && eps >= 0.0) {
                return Some(format!(
                    "rule for '{}': epsilon {eps} must be a finite number ≥ 0",
                    self.attack
                ));
            }
        }
        let min = self.min_robust_accuracy;
        if !(0.0..=1.0).contains(&min) {
            return Some(format!(
                "rule for '{}': minimum robust accuracy {min} must be a fraction between 0 and 1",
                self.attack
            ));
        }
        None
    }
}

/// The JUnit-style description of a row's threshold: `min_robust_accuracy>=0.8` or
/// `max_drop<=0.02`.
pub fn threshold_text(row: &GateRow) -> String {
    match row.kind.as_str() {
        "max_drop" => format!("max_drop<={}", num(row.threshold)),
        _ => format!("min_robust_accuracy>={}", num(row.threshold)),
    }
}

/// Why `run` cannot be compared with `baseline`: an empty list when it can. Runs are alike
/// when they evaluated the same number of samples, the same samples (by
/// [`crate::DatasetInfo::samples_sha256`], when both files record it), and every attack
/// and ε of the baseline. A different model is what a baseline comparison is for, so the
/// model may differ; extra attacks or ε in `run` are fine.
pub fn unlike_baseline(baseline: &RunResults, run: &RunResults) -> Vec<String> {
    let mut why = Vec::new();
    if baseline.dataset.size != run.dataset.size {
        why.push(format!(
            "the baseline evaluated {} samples, this run {}",
            baseline.dataset.size, run.dataset.size
        ));
    } else if let (Some(b), Some(r)) = (
        &baseline.dataset.samples_sha256,
        &run.dataset.samples_sha256,
    ) {
        if b != r {
            why.push(format!(
                "the samples differ (data set {} with digest {}… in the baseline, {} with \
                 {}… here)",
                baseline.dataset.source,
                &b[..b.len().min(12)],
                run.dataset.source,
                &r[..r.len().min(12)]
            ));
        }
    }
    let mut missing = Vec::new();
    for ba in &baseline.attacks {
        match run.attack(&ba.label) {
            None => missing.push(format!("{} (every ε)", ba.label)),
            Some(a) => {
                let eps: Vec<String> = ba
                    .points
                    .iter()
                    .filter(|p| a.point(p.eps).is_none())
                    .map(|p| fmt_eps(p.eps))
                    .collect();
                if !eps.is_empty() {
                    missing.push(format!("{} at eps {}", ba.label, eps.join(", ")));
                }
            }
        }
    }
    if !missing.is_empty() {
        why.push(format!(
            "the baseline has points this run does not: {}",
            missing.join("; ")
        ));
    }
    why
}

/// Checks `run` against the thresholds and, for `max_drop`, against `baseline` (its path,
/// for the report, and its results). Rows come in rule order, then baseline order; the
/// report passes when every row passes. See the module documentation for missing points.
pub fn evaluate_gate(
    run: &RunResults,
    baseline: Option<(&str, &RunResults)>,
    t: &Thresholds,
) -> GateReport {
    let mut rows = Vec::new();
    for rule in &t.min {
        let mut matched = false;
        for a in run
            .attacks
            .iter()
            .filter(|a| rule.attack == "*" || a.label == rule.attack || a.name == rule.attack)
        {
            for p in a
                .points
                .iter()
                .filter(|p| rule.eps.is_none_or(|e| eps_eq(e, p.eps)))
            {
                matched = true;
                let passed = p.robust_accuracy >= rule.min_robust_accuracy;
                rows.push(GateRow {
                    attack: a.label.clone(),
                    eps: p.eps,
                    kind: "min".into(),
                    threshold: rule.min_robust_accuracy,
                    baseline: None,
                    actual: Some(p.robust_accuracy),
                    passed,
                    all_eps: false,
                    message: format!(
                        "robust accuracy {} {} the minimum {}",
                        pct(p.robust_accuracy),
                        if passed { "meets" } else { "is below" },
                        pct(rule.min_robust_accuracy)
                    ),
                });
            }
        }
        if !matched {
            rows.push(GateRow {
                attack: rule.attack.clone(),
                eps: rule.eps.unwrap_or(0.0),
                kind: "min".into(),
                threshold: rule.min_robust_accuracy,
                baseline: None,
                actual: None,
                passed: false,
                all_eps: rule.eps.is_none(),
                message: match rule.eps {
                    Some(e) => format!(
                        "no attack matching '{}' was run at eps {}: the rule cannot hold",
                        rule.attack,
                        fmt_eps(e)
                    ),
                    None => format!(
                        "no attack matching '{}' was run: the rule cannot hold",
                        rule.attack
                    ),
                },
            });
        }
    }
    if let (Some(max_drop), Some((_, base))) = (t.max_drop, baseline) {
        for ba in &base.attacks {
            for bp in &ba.points {
                let actual = run
                    .attack(&ba.label)
                    .and_then(|a| a.point(bp.eps))
                    .map(|p| p.robust_accuracy);
                let (passed, message) = match actual {
                    Some(act) => {
                        let drop = bp.robust_accuracy - act;
                        // A hair of slack so that an exact `max_drop` fall passes despite
                        // rounding (0.5 - 0.48 > 0.02 in binary floating point).
                        let passed = drop <= max_drop + 1e-12;
                        (
                            passed,
                            format!(
                                "{} against {} in the baseline: {}",
                                pct(act),
                                pct(bp.robust_accuracy),
                                if drop.abs() < 5e-4 {
                                    "unchanged".to_string()
                                } else if drop < 0.0 {
                                    format!("up {:.1} points", -drop * 100.0)
                                } else {
                                    format!(
                                        "down {:.1} points, {} the {:.1} allowed",
                                        drop * 100.0,
                                        if passed { "within" } else { "more than" },
                                        max_drop * 100.0
                                    )
                                }
                            ),
                        )
                    }
                    None => (
                        false,
                        "the baseline has this point but this run does not: it was not \
                         evaluated"
                            .to_string(),
                    ),
                };
                rows.push(GateRow {
                    attack: ba.label.clone(),
                    eps: bp.eps,
                    kind: "max_drop".into(),
                    threshold: max_drop,
                    baseline: Some(bp.robust_accuracy),
                    actual,
                    passed,
                    all_eps: false,
                    message,
                });
            }
        }
    }
    GateReport {
        passed: rows.iter().all(|r| r.passed),
        rows,
        baseline: baseline.map(|(path, _)| path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_run;

    #[test]
    fn a_rule_needs_a_finite_epsilon_and_a_fraction() {
        assert_eq!(rule("*", Some(0.1), 0.5).problem(), None);
        assert_eq!(rule("*", None, 0.0).problem(), None);
        assert_eq!(rule("*", None, 1.0).problem(), None);
        for bad in [
            rule("pgd", Some(f64::NAN), 0.5),
            rule("pgd", Some(-0.1), 0.5),
            rule("pgd", None, f64::NAN),
            rule("pgd", None, 1.5),
            rule("pgd", None, -0.01),
        ] {
            let problem = bad.problem().expect("a problem");
            assert!(problem.starts_with("rule for 'pgd': "), "{problem}");
        }
    }

    fn rule(attack: &str, eps: Option<f64>, min: f64) -> MinRule {
        MinRule {
            attack: attack.into(),
            eps,
            min_robust_accuracy: min,
        }
    }

    #[test]
    fn min_rules_match_by_label_name_star_and_eps() {
        let run = sample_run(); // PGD-10 Linf: 0.7, 0.4, 0.05
        let t = Thresholds {
            min: vec![
                rule("PGD-10 Linf", Some(0.03), 0.4),
                rule("pgd", Some(0.03 + 1e-12), 0.3),
                rule("*", Some(0.01), 0.7),
            ],
            max_drop: None,
        };
        let g = evaluate_gate(&run, None, &t);
        assert!(g.passed, "{g:#?}");
        let got: Vec<(&str, f64)> = g.rows.iter().map(|r| (r.attack.as_str(), r.eps)).collect();
        assert_eq!(
            got,
            [
                ("PGD-10 Linf", 0.03),
                ("PGD-10 Linf", 0.03),
                ("FGSM Linf", 0.01),
                ("PGD-10 Linf", 0.01)
            ]
        );
        assert_eq!(g.baseline, None);
    }

    #[test]
    fn min_rule_below_threshold_fails() {
        let t = Thresholds {
            min: vec![rule("pgd", None, 0.1)],
            max_drop: None,
        };
        let g = evaluate_gate(&sample_run(), None, &t);
        assert!(!g.passed);
        let passed: Vec<bool> = g.rows.iter().map(|r| r.passed).collect();
        assert_eq!(passed, [true, true, false]);
        assert_eq!(g.rows[2].actual, Some(0.05));
        assert!(g.rows[2].message.contains("is below the minimum 10.0%"));
    }

    #[test]
    fn min_rule_matching_nothing_is_a_failed_row() {
        let t = Thresholds {
            min: vec![rule("cw", None, 0.1), rule("pgd", Some(0.5), 0.1)],
            max_drop: None,
        };
        let g = evaluate_gate(&sample_run(), None, &t);
        assert!(!g.passed);
        assert_eq!(g.rows.len(), 2);
        assert!(g.rows.iter().all(|r| !r.passed && r.actual.is_none()));
        assert!(g.rows[0].all_eps && !g.rows[1].all_eps);
        assert_eq!(g.rows[1].eps, 0.5);
    }

    #[test]
    fn max_drop_passes_within_and_fails_beyond() {
        let base = sample_run();
        let mut run = sample_run();
        run.attacks[1].points[1].robust_accuracy = 0.38; // drop of exactly 0.02
        let t = Thresholds {
            min: vec![],
            max_drop: Some(0.02),
        };
        let g = evaluate_gate(&run, Some(("base.json", &base)), &t);
        assert!(g.passed, "{g:#?}");
        assert_eq!(g.rows.len(), 6);
        assert_eq!(g.baseline.as_deref(), Some("base.json"));

        run.attacks[1].points[1].robust_accuracy = 0.37;
        let g = evaluate_gate(&run, Some(("base.json", &base)), &t);
        assert!(!g.passed);
        let failed: Vec<_> = g.rows.iter().filter(|r| !r.passed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attack, "PGD-10 Linf");
        assert_eq!(failed[0].eps, 0.03);
        assert_eq!(failed[0].baseline, Some(0.4));
        assert_eq!(failed[0].actual, Some(0.37));
        assert_eq!(
            failed[0].message,
            "37.0% against 40.0% in the baseline: down 3.0 points, more than the 2.0 allowed"
        );
    }

    #[test]
    fn improvements_and_eps_rounding_pass() {
        let base = sample_run();
        let mut run = sample_run();
        for p in &mut run.attacks[0].points {
            p.robust_accuracy += 0.1;
            p.eps += 1e-10;
        }
        let t = Thresholds {
            min: vec![],
            max_drop: Some(0.0),
        };
        let g = evaluate_gate(&run, Some(("b", &base)), &t);
        assert!(g.passed, "{g:#?}");
    }

    #[test]
    fn baseline_point_missing_from_run_fails() {
        let base = sample_run();
        let mut run = sample_run();
        run.attacks[1].points.pop(); // eps 0.1 gone
        run.attacks.remove(0); // FGSM gone
        let t = Thresholds {
            min: vec![],
            max_drop: Some(0.5),
        };
        let g = evaluate_gate(&run, Some(("b", &base)), &t);
        assert!(!g.passed);
        let missing: Vec<(&str, f64)> = g
            .rows
            .iter()
            .filter(|r| r.actual.is_none())
            .map(|r| (r.attack.as_str(), r.eps))
            .collect();
        assert_eq!(
            missing,
            [
                ("FGSM Linf", 0.01),
                ("FGSM Linf", 0.03),
                ("FGSM Linf", 0.1),
                ("PGD-10 Linf", 0.1)
            ]
        );
        assert!(g
            .rows
            .iter()
            .filter(|r| r.actual.is_none())
            .all(|r| !r.passed));
    }

    #[test]
    fn max_drop_without_baseline_adds_no_rows_and_empty_gate_passes() {
        let t = Thresholds {
            min: vec![],
            max_drop: Some(0.01),
        };
        let g = evaluate_gate(&sample_run(), None, &t);
        assert!(g.passed && g.rows.is_empty());
    }

    #[test]
    fn thresholds_load_from_json_with_defaults() {
        let t: Thresholds = serde_json::from_str(
            r#"{"min": [{"attack": "*", "min_robust_accuracy": 0.1}], "max_drop": 0.02}"#,
        )
        .unwrap();
        assert_eq!(t.min[0].eps, None);
        assert_eq!(t.max_drop, Some(0.02));
        let t: Thresholds = serde_json::from_str("{}").unwrap();
        assert_eq!(t, Thresholds::default());
        assert!(serde_json::from_str::<Thresholds>(r#"{"max_dorp": 0.1}"#).is_err());
    }

    #[test]
    fn thresholds_load_from_the_documented_toml() {
        let t: Thresholds = toml::from_str(
            r#"
            max_drop = 0.02
            [[min]]
            attack = "PGD-10 Linf"
            eps = 0.03
            min_robust_accuracy = 0.40
            [[min]]
            attack = "*"
            min_robust_accuracy = 0.05
            "#,
        )
        .unwrap();
        assert_eq!(t.max_drop, Some(0.02));
        assert_eq!(t.min[0], rule("PGD-10 Linf", Some(0.03), 0.40));
        assert_eq!(t.min[1], rule("*", None, 0.05));
        let g = evaluate_gate(&sample_run(), None, &t);
        // PGD at 0.03 holds 0.4; every point is >= 0.05 except PGD at 0.1 (0.05 itself holds).
        assert!(g.passed, "{g:#?}");
        assert_eq!(g.rows.len(), 1 + 6);
    }

    #[test]
    fn threshold_text_is_compact() {
        let g = evaluate_gate(
            &sample_run(),
            None,
            &Thresholds {
                min: vec![rule("pgd", Some(0.1), 0.8)],
                max_drop: None,
            },
        );
        assert_eq!(threshold_text(&g.rows[0]), "min_robust_accuracy>=0.8");
    }
}
