//! Indicators of attack failure: checks that tell a weak attack from a robust model.
//!
//! Pintor et al., *Indicators of Attack Failure* (NeurIPS 2022), name the ways a gradient
//! attack fails without saying so; AutoAttack (Croce & Hein 2020, `autoattack/checks.py`)
//! checks the model before it attacks. [`indicator_checks`] turns what `robust eval`
//! measured (the per-point counts of [`EpsPoint`] and the extra passes of [`Probes`]) into
//! checks, each saying what it found and what to do:
//!
//! | id | indicator | status when found |
//! |---|---|---|
//! | `gradients/<label>` | unavailable gradients (zero or NaN; see [`crate::checks`]) | warn / fail |
//! | `silent-success/<label>` | an iterate was adversarial, the returned point is not | warn |
//! | `incomplete-optimization/<label>` | the objective still rose over the last 10 steps | warn |
//! | `unconstrained-failure/<label>` | with ε covering the whole input box, some samples survive | warn |
//! | `unstable-predictions` | the margin moves a lot under tiny random noise | warn |
//! | `randomness` | repeated forward passes of one input differ (AutoAttack) | warn |
//! | `logits` | the outputs look like probabilities, not logits (AutoAttack) | warn |
//! | `square-vs-white-box/<label>` | Square breaks more than 0.2 points beyond the gradient attacks (AutoAttack) | warn |
//!
//! A check whose data the run did not record (an attack that does not trace its iterates,
//! an older results file without probes) is `n/a` or left out, never a pass.

use serde_json::Value;

use crate::checks::CheckOptions;
use crate::format::{eps as fmt_eps, pct};
use crate::schema::{AttackResult, Check, CheckStatus, EpsPoint, Probes, RunResults};

/// Every indicator check of `r`, in a stable order: per attack silent success, incomplete
/// optimisation and unconstrained failure; then the model's unstable predictions,
/// randomness and output range; then Square against the white-box attacks.
pub fn indicator_checks(r: &RunResults, opts: &CheckOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    for a in &r.attacks {
        checks.push(silent_success_check(a, opts));
        if let Some(c) = incomplete_check(a, opts) {
            checks.push(c);
        }
        if let Some(c) = r.probes.as_ref().and_then(|p| unconstrained_check(p, a)) {
            checks.push(c);
        }
    }
    if let Some(p) = &r.probes {
        checks.push(unstable_check(p, opts));
        checks.push(randomness_check(p, opts));
        checks.push(logits_check(p));
    }
    checks.extend(square_checks(r, opts));
    checks
}

fn frac(count: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        count as f64 / n as f64
    }
}

/// The point where `part / whole` is largest, with that fraction.
fn worst(
    a: &AttackResult,
    part: impl Fn(&EpsPoint) -> usize,
    whole: impl Fn(&EpsPoint) -> usize,
) -> Option<(&EpsPoint, f64)> {
    a.points
        .iter()
        .map(|p| (p, frac(part(p), whole(p))))
        .max_by(|x, y| x.1.total_cmp(&y.1))
}

/// Silent success: the attack failed on a sample although one of its iterates was
/// adversarial. Warns when, at some ε, such samples exceed
/// [`CheckOptions::max_silent_success_fraction`] of all samples.
fn silent_success_check(a: &AttackResult, opts: &CheckOptions) -> Check {
    let id = format!("silent-success/{}", a.label);
    let title = format!("{}: returns the adversarial examples it finds", a.label);
    if a.points.iter().all(|p| p.traced_samples == 0) {
        return Check {
            id,
            status: CheckStatus::NotApplicable,
            title,
            message: "Not applicable: this attack does not record its iterates (a \
                      gradient-free or minimum-norm attack keeps the best point it found), \
                      so a lost adversarial example cannot be seen."
                .into(),
        };
    }
    let Some((p, f)) = worst(a, |p| p.silent_success_samples, |p| p.n) else {
        return Check {
            id,
            status: CheckStatus::NotApplicable,
            title,
            message: "Not applicable: the attack has no points.".into(),
        };
    };
    if p.silent_success_samples > 0 && f > opts.max_silent_success_fraction {
        Check {
            id,
            status: CheckStatus::Warn,
            title,
            message: format!(
                "At eps {}, on {} of {} samples ({}) one of the attack's iterates was \
                 adversarial, but the point it returned is not: it found an adversarial \
                 example and lost it (a step overshot, or a restart replaced it). Robust \
                 accuracy at this eps is over-stated by up to {} points. Make the attack \
                 keep the first adversarial iterate of each sample (as apgd-ce and \
                 autoattack do), or use a smaller step size, and rerun.",
                fmt_eps(p.eps),
                p.silent_success_samples,
                p.n,
                pct(f),
                pct(f).trim_end_matches('%')
            ),
        }
    } else {
        let total: usize = a.points.iter().map(|p| p.silent_success_samples).sum();
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: if total == 0 {
                "No sample had an adversarial iterate that the attack then lost.".into()
            } else {
                format!(
                    "At most {} of samples (at most {} at any eps) had an adversarial \
                     iterate that the attack then lost: within the {} tolerated.",
                    pct(f),
                    p.silent_success_samples,
                    pct(opts.max_silent_success_fraction)
                )
            },
        }
    }
}

/// Incomplete optimisation: among the samples an iterative attack failed on, the share
/// whose objective was still rising over its last steps. Left out for single-step attacks.
fn incomplete_check(a: &AttackResult, opts: &CheckOptions) -> Option<Check> {
    if a.steps() == Some(1) {
        return None;
    }
    let id = format!("incomplete-optimization/{}", a.label);
    let title = format!(
        "{}: the attack ran until its objective stopped rising",
        a.label
    );
    if a.points.iter().all(|p| p.traced_samples == 0) {
        return Some(Check {
            id,
            status: CheckStatus::NotApplicable,
            title,
            message: "Not applicable: this attack does not record the objective it climbs \
                      at each step, so its convergence cannot be judged here (use \
                      --check-convergence)."
                .into(),
        });
    }
    let judged: usize = a.points.iter().map(|p| p.traced_failed_samples).sum();
    let (p, f) = worst(a, |p| p.incomplete_samples, |p| p.traced_failed_samples)?;
    Some(if judged > 0 && f > opts.max_incomplete_fraction {
        Check {
            id,
            status: CheckStatus::Warn,
            title,
            message: format!(
                "At eps {}, on {} of the {} samples the attack failed on ({}), its objective \
                 was still rising over its last {} steps (the best value rose by more than 5% \
                 of its range): the attack stopped before it converged, and these samples \
                 may not be robust at all. Give it more steps (or a larger step size), or use \
                 apgd-ce, whose step size adapts, and rerun.",
                fmt_eps(p.eps),
                p.incomplete_samples,
                p.traced_failed_samples,
                pct(f),
                LAST_STEPS
            ),
        }
    } else if judged == 0 {
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: "The attack broke every clean-correct sample it ran long enough to \
                      judge: no failure is left to explain."
                .into(),
        }
    } else {
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: format!(
                "Among the samples the attack failed on, at most {} (at eps {}) had an \
                 objective still rising over the last {LAST_STEPS} steps: within the {} \
                 tolerated.",
                pct(f),
                fmt_eps(p.eps),
                pct(opts.max_incomplete_fraction)
            ),
        }
    })
}

/// The steps the incomplete-optimisation indicator looks at.
const LAST_STEPS: usize = 10;

/// Unconstrained attack failure: the attack, given an ε covering the whole input box,
/// still fails on some clean-correct samples of the probe.
fn unconstrained_check(p: &Probes, a: &AttackResult) -> Option<Check> {
    let u = p.unconstrained.iter().find(|u| u.attack == a.label)?;
    let id = format!("unconstrained-failure/{}", a.label);
    let title = format!("{}: breaks every sample when epsilon is unbounded", a.label);
    Some(if u.attacked == 0 {
        Check {
            id,
            status: CheckStatus::NotApplicable,
            title,
            message: format!(
                "Not applicable: none of the {} samples probed was classified correctly, so \
                 there was nothing to attack.",
                p.samples
            ),
        }
    } else if u.failed > 0 {
        Check {
            id,
            status: CheckStatus::Warn,
            title,
            message: format!(
                "Given eps {} (enough to reach any input in the valid range), the attack \
                 still failed on {} of the {} correctly classified samples probed (the \
                 first {} of the data). With that budget a working attack breaks every \
                 sample, so this attack is not working against this model: gradients masked \
                 or zero, a loss that saturates, or too few steps for the distance. Its \
                 robust accuracies over-state robustness until this is fixed: try the \
                 margin loss, more steps, or a gradient-free attack (square).",
                fmt_eps(u.eps),
                u.failed,
                u.attacked,
                p.samples
            ),
        }
    } else {
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: format!(
                "Given eps {} (the whole valid range), the attack broke all {} correctly \
                 classified samples probed.",
                fmt_eps(u.eps),
                u.attacked
            ),
        }
    })
}

/// Unstable predictions: the margin moves by more than
/// [`CheckOptions::max_unstable_change`] of itself, on average, under tiny noise.
fn unstable_check(p: &Probes, opts: &CheckOptions) -> Check {
    let u = &p.unstable;
    let value = u.value();
    let over = u
        .relative_change
        .iter()
        .filter(|&&v| v > opts.max_unstable_change)
        .count();
    let noise = format!(
        "uniform noise of at most ±{} of the input range per pixel ({} draws on each of the \
         first {} samples)",
        crate::format::num(u.radius / 2.0),
        u.draws,
        u.relative_change.len()
    );
    let (status, message) = if u.relative_change.is_empty() {
        (
            CheckStatus::NotApplicable,
            "Not applicable: no sample was probed.".to_string(),
        )
    } else if value > opts.max_unstable_change {
        (
            CheckStatus::Warn,
            format!(
                "Under {noise}, the margin between the true class and the next moved by {} \
                 of itself on average ({over} samples by more than {}). The model's output \
                 jumps under perturbations far smaller than any epsilon, so the gradient at \
                 one point says little about its neighbours and gradient attacks lose their \
                 way (a high-frequency or randomized transformation of the input). Average \
                 the gradient over noise (autoattack:version=rand, apgd-ce:eot_iter=20) or \
                 use a gradient-free attack (square) before trusting these numbers.",
                pct(value),
                pct(opts.max_unstable_change)
            ),
        )
    } else {
        (
            CheckStatus::Pass,
            format!(
                "Under {noise}, the margin between the true class and the next moved by {} \
                 of itself on average: the model's output is stable.",
                pct(value)
            ),
        )
    };
    Check {
        id: "unstable-predictions".into(),
        status,
        title: "Predictions are stable under tiny random noise".into(),
        message,
    }
}

/// AutoAttack's randomness check: repeated forward passes of the same inputs differ.
fn randomness_check(p: &Probes, opts: &CheckOptions) -> Check {
    let r = &p.randomness;
    let random = r.prediction_changes > 0 || r.max_output_change > opts.max_output_change;
    Check {
        id: "randomness".into(),
        status: if random {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        },
        title: "The model's forward pass is deterministic".into(),
        message: if random {
            format!(
                "{} forward passes of the same {} inputs gave different outputs (largest \
                 change {} of the output's norm; {} predictions changed): the model seems to \
                 be randomized. A gradient from one pass then misleads the attack: use \
                 autoattack:version=rand, or apgd-ce:eot_iter=20, which average over \
                 passes.",
                r.passes,
                p.samples,
                crate::format::num(r.max_output_change),
                r.prediction_changes
            )
        } else {
            format!(
                "{} forward passes of the same {} inputs gave the same outputs.",
                r.passes, p.samples
            )
        },
    }
}

/// AutoAttack's output-range check: outputs in [0, 1] summing to 1 are probabilities.
fn logits_check(p: &Probes) -> Check {
    let o = &p.outputs;
    let tol = 1e-5;
    let probabilities = o.max < 1.0 + tol && o.min > -tol && o.max_row_sum_error < tol;
    Check {
        id: "logits".into(),
        status: if probabilities {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        },
        title: "The model outputs logits, not probabilities".into(),
        message: if probabilities {
            format!(
                "On the {} samples probed every output is in [0, 1] and each sample's \
                 outputs sum to 1: the model outputs probabilities (a softmax at the end of \
                 its graph), not logits. The attacks' losses assume logits; on \
                 probabilities they saturate and their gradients vanish, so the model looks \
                 more robust than it is. Export the model without its final softmax and \
                 rerun.",
                p.samples
            )
        } else {
            format!(
                "The outputs range from {} to {}: logits, as the attacks' losses expect.",
                crate::format::num(o.min),
                crate::format::num(o.max)
            )
        },
    }
}

/// For an ensemble's `components_by_eps`: per ε, the fraction of samples its `square`
/// component broke (the drop of robust accuracy across it), if it ran after another one.
fn square_share(a: &AttackResult) -> Vec<(f64, f64)> {
    let Some(Value::Array(per_eps)) = a.params.get("components_by_eps") else {
        return Vec::new();
    };
    per_eps
        .iter()
        .filter_map(|e| {
            let eps = e.get("eps")?.as_f64()?;
            let comps = e.get("components")?.as_array()?;
            let accs: Vec<(&str, f64)> = comps
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get("component")?.as_str()?,
                        c.get("robust_accuracy_after")?.as_f64()?,
                    ))
                })
                .collect();
            let s = accs.iter().position(|(n, _)| *n == "square")?;
            (s > 0).then(|| (eps, accs[s - 1].1 - accs[s].1))
        })
        .collect()
}

/// AutoAttack's `check_square_sr`: the gradient-free Square breaking more than 0.2 points
/// beyond the white-box attacks means the gradients mislead them. Within an ensemble, the
/// points Square broke after the others; for a separate `square` attack, its robust
/// accuracy against the lowest of the white-box attacks of its norm at a shared ε.
fn square_checks(r: &RunResults, opts: &CheckOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    let advice = "Square needs no gradients, so the gradient attacks are misled here \
                  (masked, noisy or saturated gradients): the robust accuracy of the \
                  gradient attacks alone over-states robustness. Run Square with more \
                  queries and restarts, or an adaptive attack, and report the worst case.";
    for a in &r.attacks {
        let shares = square_share(a);
        if shares.is_empty() {
            continue;
        }
        let (eps, share) = shares
            .iter()
            .copied()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or((0.0, 0.0));
        let id = format!("square-vs-white-box/{}", a.label);
        let title = format!("{}: Square adds little to the white-box attacks", a.label);
        checks.push(if share > opts.max_square_gain {
            Check {
                id,
                status: CheckStatus::Warn,
                title,
                message: format!(
                    "At eps {}, Square broke {} of the samples after the white-box \
                     components had run, more than the {} AutoAttack tolerates. {advice}",
                    fmt_eps(eps),
                    pct(share),
                    pct(opts.max_square_gain)
                ),
            }
        } else {
            Check {
                id,
                status: CheckStatus::Pass,
                title,
                message: format!(
                    "Square broke at most {} of the samples after the white-box components \
                     (within the {} AutoAttack tolerates).",
                    pct(share),
                    pct(opts.max_square_gain)
                ),
            }
        });
    }
    for s in r.attacks.iter().filter(|a| a.name == "square") {
        let mut gains: Vec<(f64, f64, &str)> = Vec::new();
        for p in &s.points {
            let best = r
                .attacks
                .iter()
                .filter(|w| w.norm == s.norm && w.name != "square" && w.name != "autoattack")
                .filter_map(|w| {
                    w.point(p.eps)
                        .map(|q| (q.robust_accuracy, w.label.as_str()))
                })
                .min_by(|x, y| x.0.total_cmp(&y.0));
            if let Some((acc, label)) = best {
                gains.push((p.eps, acc - p.robust_accuracy, label));
            }
        }
        let Some(&(eps, gain, label)) = gains.iter().max_by(|x, y| x.1.total_cmp(&y.1)) else {
            continue;
        };
        let id = format!("square-vs-white-box/{}", s.label);
        let title = format!("{}: no stronger than the white-box attacks", s.label);
        checks.push(if gain > opts.max_square_gain {
            Check {
                id,
                status: CheckStatus::Warn,
                title,
                message: format!(
                    "At eps {}, Square's robust accuracy is {} points below that of the \
                     strongest white-box attack ({label}), more than the {} AutoAttack \
                     tolerates. {advice}",
                    fmt_eps(eps),
                    pct(gain).trim_end_matches('%'),
                    pct(opts.max_square_gain)
                ),
            }
        } else {
            Check {
                id,
                status: CheckStatus::Pass,
                title,
                message: format!(
                    "At every shared eps Square is at most {} stronger than the strongest \
                     white-box attack.",
                    pct(opts.max_square_gain)
                ),
            }
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{OutputProbe, RandomnessProbe, UnconstrainedProbe, UnstableProbe};
    use crate::testing::{attack, sample_run};

    fn probes() -> Probes {
        Probes {
            samples: 4,
            unstable: UnstableProbe {
                draws: 8,
                radius: 8.0 / 255.0,
                relative_change: vec![0.01, 0.02, 0.01, 0.03],
            },
            randomness: RandomnessProbe {
                passes: 5,
                max_output_change: 0.0,
                prediction_changes: 0,
            },
            outputs: OutputProbe {
                min: -3.0,
                max: 9.0,
                max_row_sum_error: 5.0,
            },
            unconstrained: vec![UnconstrainedProbe {
                attack: "PGD".into(),
                eps: 1.0,
                attacked: 4,
                failed: 0,
            }],
        }
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
    }

    fn run_with(points: &[(usize, usize, usize, usize)]) -> RunResults {
        let mut r = sample_run();
        let mut a = attack("PGD", "linf", 10, &[(0.01, 0.5), (0.03, 0.3)]);
        for (p, &(traced, silent, failed, incomplete)) in a.points.iter_mut().zip(points) {
            p.traced_samples = traced;
            p.silent_success_samples = silent;
            p.traced_failed_samples = failed;
            p.incomplete_samples = incomplete;
        }
        r.attacks = vec![a];
        r.probes = Some(probes());
        r
    }

    #[test]
    fn a_clean_run_passes_every_indicator() {
        let r = run_with(&[(90, 0, 50, 1), (90, 0, 30, 0)]);
        let checks = indicator_checks(&r, &CheckOptions::default());
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "silent-success/PGD",
                "incomplete-optimization/PGD",
                "unconstrained-failure/PGD",
                "unstable-predictions",
                "randomness",
                "logits"
            ]
        );
        for c in &checks {
            assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
        }
    }

    #[test]
    fn each_indicator_fires() {
        let opts = CheckOptions::default();
        // 3 of 100 samples lost an adversarial iterate at eps 0.03.
        let r = run_with(&[(90, 0, 50, 0), (90, 3, 30, 12)]);
        let checks = indicator_checks(&r, &opts);
        let c = find(&checks, "silent-success/PGD");
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("on 3 of 100 samples (3.0%)"),
            "{}",
            c.message
        );
        let c = find(&checks, "incomplete-optimization/PGD");
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("on 12 of the 30 samples"),
            "{}",
            c.message
        );

        let mut r = run_with(&[(90, 0, 50, 0), (90, 0, 30, 0)]);
        let p = r.probes.as_mut().unwrap();
        p.unconstrained[0].failed = 2;
        p.unstable.relative_change = vec![0.9, 1.5, 0.01, 0.02];
        p.randomness.prediction_changes = 1;
        p.outputs = OutputProbe {
            min: 0.0,
            max: 0.99,
            max_row_sum_error: 1e-7,
        };
        let checks = indicator_checks(&r, &opts);
        for id in [
            "unconstrained-failure/PGD",
            "unstable-predictions",
            "randomness",
            "logits",
        ] {
            assert_eq!(find(&checks, id).status, CheckStatus::Warn, "{id}");
        }
        assert!(find(&checks, "unconstrained-failure/PGD")
            .message
            .contains("failed on 2 of the 4"));
        assert!(find(&checks, "unstable-predictions")
            .message
            .contains("(2 samples by more than"));
    }

    #[test]
    fn untraced_attacks_are_not_applicable_and_single_step_is_left_out() {
        let mut r = sample_run();
        r.probes = None;
        let checks = indicator_checks(&r, &CheckOptions::default());
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "silent-success/FGSM Linf",
                "silent-success/PGD-10 Linf",
                "incomplete-optimization/PGD-10 Linf"
            ]
        );
        for c in &checks {
            assert_eq!(c.status, CheckStatus::NotApplicable, "{c:#?}");
            assert!(c.message.starts_with("Not applicable"));
        }
    }

    #[test]
    fn square_beating_the_white_box_attacks_warns() {
        let opts = CheckOptions::default();
        let mut r = sample_run();
        let mut aa = attack("AA", "linf", 100, &[(0.1, 0.4)]);
        aa.name = "autoattack".into();
        aa.params.insert(
            "components_by_eps".into(),
            serde_json::json!([{"eps": 0.1, "components": [
                {"component": "apgd-ce", "robust_accuracy_after": 0.45, "broken": []},
                {"component": "apgd-t", "robust_accuracy_after": 0.44, "broken": []},
                {"component": "fab-t", "robust_accuracy_after": 0.44, "broken": []},
                {"component": "square", "robust_accuracy_after": 0.43, "broken": []}
            ]}]),
        );
        let mut sq = attack("Square", "linf", 5000, &[(0.1, 0.40)]);
        sq.name = "square".into();
        let pgd = attack("PGD", "linf", 10, &[(0.1, 0.401)]);
        r.attacks = vec![aa, sq, pgd];
        let checks = square_checks(&r, &opts);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].id, "square-vs-white-box/AA");
        assert_eq!(checks[0].status, CheckStatus::Warn);
        assert!(
            checks[0].message.contains("broke 1.0%"),
            "{}",
            checks[0].message
        );
        // 0.1 points: within AutoAttack's 0.2.
        assert_eq!(checks[1].id, "square-vs-white-box/Square");
        assert_eq!(checks[1].status, CheckStatus::Pass, "{:#?}", checks[1]);
        r.attacks[2].points[0].robust_accuracy = 0.45;
        let checks = square_checks(&r, &opts);
        assert_eq!(checks[1].status, CheckStatus::Warn);
        assert!(
            checks[1].message.contains("5.0 points below"),
            "{}",
            checks[1].message
        );
    }
}
