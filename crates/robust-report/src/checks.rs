//! Reliability checks: warning signs that an evaluation over-states robustness.
//!
//! A robustness number is only as good as the attack behind it: a weak or broken attack
//! makes any model look robust. Carlini et al., *On Evaluating Adversarial Robustness*
//! (2019), list symptoms of such an evaluation that can be read off the results alone;
//! [`reliability_checks`] looks for them:
//!
//! | id | symptom | status when found |
//! |---|---|---|
//! | `monotonic/<label>` | robust accuracy rises as epsilon grows | warn |
//! | `large-eps/<norm>` | accuracy stays above chance at an epsilon large enough to erase any image | warn |
//! | `iterative-vs-single-step/<label>` | an iterative attack does worse than a single-step one | fail |
//! | `gradients/<label>` | many samples had zero (warn) or NaN/infinite (fail) gradients | warn / fail |
//!
//! Then the indicators of attack failure (Pintor et al. 2022, and AutoAttack's own checks;
//! see [`crate::indicators`]): silent success, incomplete optimisation, unconstrained
//! attack failure, unstable predictions, randomness, probabilities instead of logits, and
//! Square against the white-box attacks. The gradients check is their *unavailable
//! gradients* indicator.
//!
//! A fifth check needs a second run: [`stronger_attack_checks`] compares a run with one whose
//! attacks had twice the steps or restarts; if robust accuracy moves, the first attacks had
//! not converged.

use crate::format::{eps as fmt_eps, num, pct};
use crate::schema::{AttackResult, Check, CheckStatus, RunResults};

/// What the checks tolerate, and what counts as "large".
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Sampling noise tolerated when comparing two robust accuracies, in samples: with `n`
    /// samples a difference up to `noise_tolerance_samples / n` is ignored. Default `0.5`,
    /// so any difference of one whole sample or more counts.
    pub noise_tolerance_samples: f64,
    /// An L∞ epsilon at least this large, as a fraction of the input range
    /// (`bounds[1] - bounds[0]`), is "large". Default `0.5`: at that budget any image can be
    /// turned into uniform mid-grey, so no model can stay above chance.
    pub large_eps_linf: f64,
    /// An L2 epsilon at least this large, in units of the input range, is "large".
    /// `None` (the default) means `0.5·√d` for inputs of `d` values: again enough to turn
    /// any image into uniform mid-grey.
    pub large_eps_l2: Option<f64>,
    /// Robust accuracy counts as "near chance" up to `1 / num_classes + chance_margin`.
    /// Default `0.05`.
    pub chance_margin: f64,
    /// Fraction of samples with zero or non-finite gradients above which the gradients
    /// check is raised. Default `0.05`.
    pub max_bad_gradient_fraction: f64,
    /// For [`stronger_attack_checks`]: a change of robust accuracy larger than this (plus the
    /// sampling noise) means the weaker attack had not converged. Default `0.01`.
    pub convergence_tolerance: f64,
    /// Silent success ([`crate::indicators`]): the fraction of samples, at one ε, that
    /// may have had an adversarial iterate the attack then lost. Default `0.01`.
    pub max_silent_success_fraction: f64,
    /// Incomplete optimisation: the fraction of the samples an attack failed on, at one
    /// ε, whose objective may still be rising at the end. Default `0.1`.
    pub max_incomplete_fraction: f64,
    /// Unstable predictions: the largest mean relative change of the margin under tiny
    /// noise that still counts as stable. Default `0.1`.
    pub max_unstable_change: f64,
    /// Randomness: the largest change of the unit-normalised outputs between forward
    /// passes that still counts as deterministic (AutoAttack's `1e-4`).
    pub max_output_change: f64,
    /// Square against the white-box attacks: the largest fraction of samples Square may
    /// break beyond them (AutoAttack's `0.002`, 0.2 points).
    pub max_square_gain: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            noise_tolerance_samples: 0.5,
            large_eps_linf: 0.5,
            large_eps_l2: None,
            chance_margin: 0.05,
            max_bad_gradient_fraction: 0.05,
            convergence_tolerance: 0.01,
            max_silent_success_fraction: 0.01,
            max_incomplete_fraction: 0.1,
            max_unstable_change: 0.1,
            max_output_change: 1e-4,
            max_square_gain: 0.002,
        }
    }
}

impl CheckOptions {
    fn noise(&self, n: usize) -> f64 {
        if n == 0 {
            0.0
        } else {
            self.noise_tolerance_samples / n as f64
        }
    }
}

/// Runs every check that needs only one run, in a stable order: monotonicity per attack,
/// large epsilon per norm, iterative versus single-step per iterative attack, gradients per
/// attack, then the indicators of attack failure ([`crate::indicators::indicator_checks`]),
/// then the backdoor scan's check when the run has one ([`crate::backdoor_check`]). A check
/// that does not apply (no single-step attack to compare with) is left out;
/// the large-epsilon check passes with a note when no epsilon is large.
pub fn reliability_checks(r: &RunResults, opts: &CheckOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    for a in &r.attacks {
        checks.push(monotonic_check(a, opts));
    }
    checks.extend(large_eps_checks(r, opts));
    for a in &r.attacks {
        if let Some(c) = iterative_vs_single_step_check(r, a, opts) {
            checks.push(c);
        }
    }
    for a in &r.attacks {
        checks.push(gradient_check(a, opts));
    }
    if let Some(c) = conversion_check(r) {
        checks.push(c);
    }
    if let Some(a) = &r.audit {
        checks.push(audit_check(a));
    }
    checks.extend(crate::indicators::indicator_checks(r, opts));
    checks.extend(crate::backdoor::backdoor_check(r));
    checks
}

/// (f) With `--audit`: the model file holds nothing that runs code or reads outside the
/// model when loaded. Findings of severity medium or above fail it.
fn audit_check(a: &crate::ModelAudit) -> Check {
    let failing: Vec<String> = a
        .findings
        .iter()
        .filter(|f| matches!(f.severity.as_str(), "medium" | "high" | "critical"))
        .map(|f| format!("{} ({}, {}): {}", f.file, f.severity, f.kind, f.message))
        .collect();
    let title = "The model files hold nothing that runs code when loaded".to_string();
    if failing.is_empty() {
        Check {
            id: "model-audit".into(),
            status: CheckStatus::Pass,
            title,
            message: format!(
                "{} file{} audited: no finding of severity medium or above.",
                a.files_scanned,
                if a.files_scanned == 1 { "" } else { "s" }
            ),
        }
    } else {
        Check {
            id: "model-audit".into(),
            status: CheckStatus::Fail,
            title,
            message: format!(
                "{} finding{} of severity medium or above: {}. Do not load these files \
                 outside a sandbox until they are explained (see the model audit section).",
                failing.len(),
                if failing.len() == 1 { "" } else { "s" },
                failing.join("; ")
            ),
        }
    }
}

/// (e) Inputs the model did not get as stored: channels converted or images resized to fit
/// its input. Not an error, but a frequent cause of wrong numbers (a CIFAR-size RGB data
/// set shrunk to gray 28×28 for an MNIST model scores near 0% with no other sign), so it
/// is a warning that names every conversion. Left out when every sample fit.
fn conversion_check(r: &RunResults) -> Option<Check> {
    if r.dataset.conversions.is_empty() {
        return None;
    }
    let what: Vec<String> = r
        .dataset
        .conversions
        .iter()
        .map(|c| format!("{} ({} of {} samples)", c.what, c.samples, r.dataset.size))
        .collect();
    Some(Check {
        id: "inputs/conversions".into(),
        status: CheckStatus::Warn,
        title: "The data was converted to fit the model's input".into(),
        message: format!(
            "The samples do not have the model's input shape {:?}, so robust converted them: \
             {}. If the model was trained on data of another shape or colour, its accuracy \
             here says little about it: evaluate it on data like its training data.",
            r.model.input_shape,
            what.join("; ")
        ),
    })
}

fn sorted_points(a: &AttackResult) -> Vec<&crate::EpsPoint> {
    let mut points: Vec<_> = a.points.iter().collect();
    points.sort_by(|p, q| p.eps.total_cmp(&q.eps));
    points
}

/// (a) Robust accuracy must not rise with epsilon: a larger budget allows every
/// perturbation a smaller one does.
fn monotonic_check(a: &AttackResult, opts: &CheckOptions) -> Check {
    let mut violations = Vec::new();
    let mut best: Option<&crate::EpsPoint> = None; // lowest accuracy so far
    for p in sorted_points(a) {
        if let Some(b) = best {
            let tol = opts.noise(p.n.min(b.n).max(1));
            if p.robust_accuracy > b.robust_accuracy + tol {
                violations.push(format!(
                    "{} at eps {} but {} at eps {}",
                    pct(b.robust_accuracy),
                    fmt_eps(b.eps),
                    pct(p.robust_accuracy),
                    fmt_eps(p.eps)
                ));
            }
        }
        if best.is_none_or(|b| p.robust_accuracy < b.robust_accuracy) {
            best = Some(p);
        }
    }
    let title = format!("{}: robust accuracy falls as epsilon grows", a.label);
    if violations.is_empty() {
        Check {
            id: format!("monotonic/{}", a.label),
            status: CheckStatus::Pass,
            title,
            message: "Robust accuracy never rises with epsilon, as expected.".into(),
        }
    } else {
        Check {
            id: format!("monotonic/{}", a.label),
            status: CheckStatus::Warn,
            title,
            message: format!(
                "Robust accuracy rises with epsilon: {}. A larger epsilon allows every \
                 perturbation a smaller one allows, so a working attack can only do better. \
                 The attack is getting stuck (too few steps, a step size that is too large or \
                 too small, or gradient masking). Increase the number of steps or restarts, \
                 or tune the step size, and rerun.",
                violations.join("; ")
            ),
        }
    }
}

/// The epsilon above which a perturbation of `norm` is "large", in input units.
fn large_eps(r: &RunResults, norm: &str, opts: &CheckOptions) -> Option<f64> {
    let range = f64::from(r.model.bounds[1] - r.model.bounds[0]);
    let range = if range > 0.0 { range } else { 1.0 };
    match norm {
        "linf" => Some(opts.large_eps_linf * range),
        "l2" => {
            let d: usize = r.model.input_shape.iter().product();
            let unit = opts
                .large_eps_l2
                .unwrap_or_else(|| 0.5 * (d.max(1) as f64).sqrt());
            Some(unit * range)
        }
        _ => None,
    }
}

/// (b) At a large epsilon, robust accuracy must be at most chance.
fn large_eps_checks(r: &RunResults, opts: &CheckOptions) -> Vec<Check> {
    let mut norms: Vec<&str> = Vec::new();
    for a in &r.attacks {
        if !norms.contains(&a.norm.as_str()) {
            norms.push(&a.norm);
        }
    }
    let k = r.num_classes();
    let chance = if k > 0 { 1.0 / k as f64 } else { 0.0 };
    let mut checks = Vec::new();
    for norm in norms {
        let Some(large) = large_eps(r, norm, opts) else {
            continue;
        };
        let attacks: Vec<&AttackResult> = r.attacks.iter().filter(|a| a.norm == norm).collect();
        let Some(max_eps) = attacks
            .iter()
            .flat_map(|a| a.points.iter().map(|p| p.eps))
            .max_by(f64::total_cmp)
        else {
            continue;
        };
        // The strongest attack of this norm at the largest epsilon.
        let Some((label, acc)) = attacks
            .iter()
            .filter_map(|a| a.point(max_eps).map(|p| (&a.label, p.robust_accuracy)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
        else {
            continue;
        };
        let id = format!("large-eps/{norm}");
        let title = format!("{norm}: accuracy reaches chance at a large epsilon");
        let check = if max_eps < large {
            Check {
                id,
                status: CheckStatus::NotApplicable,
                title,
                message: format!(
                    "Not applicable: the largest {norm} epsilon, {}, is below {}, the budget \
                     at which any input can be erased. To verify that the attacks work at \
                     all, add an epsilon of at least {} to the sweep: robust accuracy there \
                     must fall to chance ({}) or below.",
                    fmt_eps(max_eps),
                    num(large),
                    num(large),
                    pct(chance)
                ),
            }
        } else if acc > chance + opts.chance_margin {
            Check {
                id,
                status: CheckStatus::Warn,
                title,
                message: format!(
                    "At {norm} epsilon {} every input can be turned into a uniform grey image, \
                     yet robust accuracy is still {} (best attack: {label}), above chance \
                     ({}). The attacks are not working: the model may mask its gradients \
                     (non-differentiable preprocessing, saturated softmax), or the attack's \
                     step size or number of steps is too small. Do not trust the robust \
                     accuracies of this run until this is fixed.",
                    fmt_eps(max_eps),
                    pct(acc),
                    pct(chance)
                ),
            }
        } else {
            Check {
                id,
                status: CheckStatus::Pass,
                title,
                message: format!(
                    "At {norm} epsilon {} robust accuracy is {}, at most chance ({}) plus \
                     margin: the attacks can break the model when given enough budget.",
                    fmt_eps(max_eps),
                    pct(acc),
                    pct(chance)
                ),
            }
        };
        checks.push(check);
    }
    checks
}

fn is_single_step(a: &AttackResult) -> bool {
    match a.steps() {
        Some(s) => s == 1,
        None => a.name.eq_ignore_ascii_case("fgsm"),
    }
}

/// (c) An iterative attack includes the single step of FGSM as its first move (with a
/// suitable step size), so it must never do worse.
fn iterative_vs_single_step_check(
    r: &RunResults,
    a: &AttackResult,
    opts: &CheckOptions,
) -> Option<Check> {
    if a.steps().is_none_or(|s| s <= 1) {
        return None;
    }
    let mut compared = false;
    let mut violations = Vec::new();
    for s in r
        .attacks
        .iter()
        .filter(|s| s.norm == a.norm && is_single_step(s))
    {
        for p in &a.points {
            let Some(q) = s.point(p.eps) else { continue };
            compared = true;
            let tol = opts.noise(p.n.min(q.n).max(1));
            if p.robust_accuracy > q.robust_accuracy + tol {
                violations.push(format!(
                    "at eps {}: {} against {}, {} against {}",
                    fmt_eps(p.eps),
                    pct(p.robust_accuracy),
                    a.label,
                    pct(q.robust_accuracy),
                    s.label
                ));
            }
        }
    }
    if !compared {
        return None;
    }
    let id = format!("iterative-vs-single-step/{}", a.label);
    let title = format!(
        "{}: iterative attack at least as strong as single-step",
        a.label
    );
    Some(if violations.is_empty() {
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: "The iterative attack is at least as strong as the single-step attacks \
                      at every shared epsilon."
                .into(),
        }
    } else {
        Check {
            id,
            status: CheckStatus::Fail,
            title,
            message: format!(
                "The iterative attack leaves more samples correct than a single-step attack \
                 ({}). Many small steps should never do worse than one large step, so the \
                 iterative attack is misconfigured (step size far too small for the number of \
                 steps, or a bug) or the model masks its gradients. Increase the step size or \
                 the number of steps so that steps × step size is at least epsilon, and \
                 rerun.",
                violations.join("; ")
            ),
        }
    })
}

/// (d) Zero or non-finite gradients leave an attack blind: Pintor et al.'s *unavailable
/// gradients* indicator, and AutoAttack's `check_zero_gradients`.
fn gradient_check(a: &AttackResult, opts: &CheckOptions) -> Check {
    let frac = |count: usize, n: usize| {
        if n == 0 {
            0.0
        } else {
            count as f64 / n as f64
        }
    };
    let worst_zero = a
        .points
        .iter()
        .max_by(|p, q| frac(p.zero_grad_samples, p.n).total_cmp(&frac(q.zero_grad_samples, q.n)));
    let worst_nonfinite = a.points.iter().max_by(|p, q| {
        frac(p.nonfinite_grad_samples, p.n).total_cmp(&frac(q.nonfinite_grad_samples, q.n))
    });
    let id = format!("gradients/{}", a.label);
    let title = format!("{}: gradients are usable", a.label);
    if let Some(p) = worst_nonfinite {
        let f = frac(p.nonfinite_grad_samples, p.n);
        if f > opts.max_bad_gradient_fraction {
            return Check {
                id,
                status: CheckStatus::Fail,
                title,
                message: format!(
                    "{} of {} samples ({}) had NaN or infinite gradients at eps {}. The attack \
                     cannot follow such gradients, so its results are meaningless for those \
                     samples. This usually comes from a log or division of zero in the model \
                     or loss (for example a softmax followed by a log instead of a \
                     log-softmax). Fix the model export, or use a loss on logits, and rerun.",
                    p.nonfinite_grad_samples,
                    p.n,
                    pct(f),
                    fmt_eps(p.eps)
                ),
            };
        }
    }
    if let Some(p) = worst_zero {
        let f = frac(p.zero_grad_samples, p.n);
        if f > opts.max_bad_gradient_fraction {
            return Check {
                id,
                status: CheckStatus::Warn,
                title,
                message: format!(
                    "{} of {} samples ({}) had exactly zero gradients at eps {}. A zero \
                     gradient gives a gradient attack no direction, so these samples look \
                     robust without being so (gradient masking: saturated softmax, rounding \
                     or thresholding in the model, very confident logits). Try a margin loss \
                     on logits, random restarts, or a gradient-free attack before trusting \
                     these numbers.",
                    p.zero_grad_samples,
                    p.n,
                    pct(f),
                    fmt_eps(p.eps)
                ),
            };
        }
    }
    let most = a
        .points
        .iter()
        .map(|p| p.zero_grad_samples + p.nonfinite_grad_samples)
        .max()
        .unwrap_or(0);
    Check {
        id,
        status: CheckStatus::Pass,
        title,
        message: if most == 0 {
            "No sample had a zero or non-finite gradient: gradients are available.".into()
        } else {
            format!(
                "At most {most} samples at one epsilon had a zero or non-finite gradient,                  within the {} tolerated; they are robust only to this gradient attack.",
                pct(opts.max_bad_gradient_fraction)
            )
        },
    }
}

/// (e) Compares an attack with a stronger version of itself (twice the steps or restarts):
/// if robust accuracy moves by more than [`CheckOptions::convergence_tolerance`] plus the
/// sampling noise at any shared epsilon, the weaker attack had not converged (warn).
pub fn stronger_attack_check(
    base: &AttackResult,
    stronger: &AttackResult,
    opts: &CheckOptions,
) -> Check {
    let mut changes = Vec::new();
    let mut compared = 0;
    for p in &base.points {
        let Some(q) = stronger.point(p.eps) else {
            continue;
        };
        compared += 1;
        let tol = opts.convergence_tolerance + opts.noise(p.n.min(q.n).max(1));
        if (p.robust_accuracy - q.robust_accuracy).abs() > tol {
            changes.push(format!(
                "eps {}: {} → {}",
                fmt_eps(p.eps),
                pct(p.robust_accuracy),
                pct(q.robust_accuracy)
            ));
        }
    }
    let id = format!("convergence/{}", base.label);
    let title = format!(
        "{}: results stable with a stronger attack ({})",
        base.label, stronger.label
    );
    if compared == 0 {
        return Check {
            id,
            status: CheckStatus::Warn,
            title,
            message: format!(
                "The two runs share no epsilon for this attack, so nothing was compared. \
                 Rerun '{}' with the same epsilons.",
                stronger.label
            ),
        };
    }
    if changes.is_empty() {
        Check {
            id,
            status: CheckStatus::Pass,
            title,
            message: format!(
                "Robust accuracy changed by at most {} at every epsilon: the attack has \
                 converged.",
                pct(opts.convergence_tolerance)
            ),
        }
    } else {
        Check {
            id,
            status: CheckStatus::Warn,
            title,
            message: format!(
                "Robust accuracy changed when the attack was made stronger ({}). The weaker \
                 attack had not converged, so its numbers over-state robustness. Use the \
                 stronger settings (more steps or restarts) and repeat this comparison until \
                 the numbers stop moving.",
                changes.join("; ")
            ),
        }
    }
}

/// Runs [`stronger_attack_check`] for every attack of `run`, pairing it with the attack of
/// `stronger` (a rerun with twice the steps or restarts) that has the same name and norm, in
/// order of appearance. An attack without a partner is reported as a warning.
pub fn stronger_attack_checks(
    run: &RunResults,
    stronger: &RunResults,
    opts: &CheckOptions,
) -> Vec<Check> {
    let mut used = vec![false; stronger.attacks.len()];
    let mut checks = Vec::new();
    for a in &run.attacks {
        let partner = stronger
            .attacks
            .iter()
            .enumerate()
            .find(|(i, s)| !used[*i] && s.name == a.name && s.norm == a.norm);
        match partner {
            Some((i, s)) => {
                used[i] = true;
                checks.push(stronger_attack_check(a, s, opts));
            }
            None => checks.push(Check {
                id: format!("convergence/{}", a.label),
                status: CheckStatus::Warn,
                title: format!("{}: results stable with a stronger attack", a.label),
                message: format!(
                    "The stronger run has no '{}' attack in {}, so convergence was not \
                     checked.",
                    a.name, a.norm
                ),
            }),
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attack, sample_run};

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
    }

    #[test]
    fn sample_run_passes_every_check() {
        let checks = reliability_checks(&sample_run(), &CheckOptions::default());
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "monotonic/FGSM Linf",
                "monotonic/PGD-10 Linf",
                "large-eps/linf",
                "iterative-vs-single-step/PGD-10 Linf",
                "gradients/FGSM Linf",
                "gradients/PGD-10 Linf",
                "silent-success/FGSM Linf",
                "silent-success/PGD-10 Linf",
                "incomplete-optimization/PGD-10 Linf",
            ]
        );
        // sample_run records no iterates: the indicators do not apply.
        for c in checks
            .iter()
            .filter(|c| c.id != "large-eps/linf" && c.status != CheckStatus::NotApplicable)
        {
            assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
        }
        // eps 0.1 < 0.5: the large-eps check does not apply, and says why.
        let large = find(&checks, "large-eps/linf");
        assert_eq!(large.status, CheckStatus::NotApplicable);
        assert!(large.message.starts_with("Not applicable"));
    }

    #[test]
    fn rising_accuracy_warns_but_noise_within_tolerance_does_not() {
        let mut r = sample_run();
        r.attacks = vec![attack(
            "A",
            "linf",
            10,
            &[(0.01, 0.5), (0.03, 0.6), (0.1, 0.2)],
        )];
        let c = monotonic_check(&r.attacks[0], &CheckOptions::default());
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message
                .contains("50.0% at eps 0.01 but 60.0% at eps 0.03"),
            "{}",
            c.message
        );

        // Half a sample of 100 is within the default tolerance.
        r.attacks = vec![attack("A", "linf", 10, &[(0.01, 0.5), (0.03, 0.504)])];
        let c = monotonic_check(&r.attacks[0], &CheckOptions::default());
        assert_eq!(c.status, CheckStatus::Pass);
        // One whole sample is not.
        r.attacks = vec![attack("A", "linf", 10, &[(0.01, 0.5), (0.03, 0.51)])];
        let c = monotonic_check(&r.attacks[0], &CheckOptions::default());
        assert_eq!(c.status, CheckStatus::Warn);
    }

    #[test]
    fn monotonic_check_compares_with_the_lowest_accuracy_so_far_in_eps_order() {
        // Unsorted points; 0.3 at 0.03 then 0.35 at 0.2 (a rise after a fall).
        let a = attack("A", "linf", 10, &[(0.2, 0.35), (0.01, 0.5), (0.03, 0.3)]);
        let c = monotonic_check(&a, &CheckOptions::default());
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("30.0% at eps 0.03 but 35.0% at eps 0.2"),
            "{}",
            c.message
        );
    }

    #[test]
    fn large_eps_above_chance_warns_and_at_chance_passes() {
        let mut r = sample_run(); // 3 classes: chance 33.3%, threshold 38.3%
        r.attacks = vec![attack("PGD", "linf", 10, &[(0.1, 0.6), (0.5, 0.45)])];
        let checks = large_eps_checks(&r, &CheckOptions::default());
        let c = find(&checks, "large-eps/linf");
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("45.0%") && c.message.contains("33.3%"),
            "{}",
            c.message
        );

        r.attacks = vec![attack("PGD", "linf", 10, &[(0.1, 0.6), (0.5, 0.35)])];
        let checks = large_eps_checks(&r, &CheckOptions::default());
        assert_eq!(find(&checks, "large-eps/linf").status, CheckStatus::Pass);
    }

    #[test]
    fn large_eps_uses_the_strongest_attack_and_scales_with_bounds() {
        let mut r = sample_run();
        r.model.bounds = [0.0, 255.0];
        // 100 is below 0.5 * 255: not large.
        r.attacks = vec![attack("PGD", "linf", 10, &[(100.0, 0.9)])];
        let c = &large_eps_checks(&r, &CheckOptions::default())[0];
        assert_eq!(c.status, CheckStatus::NotApplicable);
        assert!(c.message.starts_with("Not applicable"));
        // 130 is; FGSM stays high but PGD reaches chance: pass.
        r.attacks = vec![
            attack("FGSM", "linf", 1, &[(130.0, 0.9)]),
            attack("PGD", "linf", 10, &[(130.0, 0.1)]),
        ];
        let c = &large_eps_checks(&r, &CheckOptions::default())[0];
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
    }

    #[test]
    fn large_l2_default_is_half_sqrt_d() {
        let mut r = sample_run(); // 1x28x28: 0.5 * 28 = 14
        r.attacks = vec![attack("PGD L2", "l2", 10, &[(10.0, 0.9)])];
        assert!(large_eps_checks(&r, &CheckOptions::default())[0]
            .message
            .starts_with("Not applicable"));
        r.attacks = vec![attack("PGD L2", "l2", 10, &[(14.0, 0.9)])];
        assert_eq!(
            large_eps_checks(&r, &CheckOptions::default())[0].status,
            CheckStatus::Warn
        );
        let opts = CheckOptions {
            large_eps_l2: Some(4.0),
            ..CheckOptions::default()
        };
        r.attacks = vec![attack("PGD L2", "l2", 10, &[(4.0, 0.9)])];
        assert_eq!(large_eps_checks(&r, &opts)[0].status, CheckStatus::Warn);
    }

    #[test]
    fn iterative_weaker_than_single_step_fails() {
        let mut r = sample_run();
        r.attacks = vec![
            attack("FGSM", "linf", 1, &[(0.03, 0.4)]),
            attack("PGD", "linf", 10, &[(0.03, 0.5)]),
            // Another norm is never compared.
            attack("PGD L2", "l2", 10, &[(0.03, 0.9)]),
        ];
        let checks = reliability_checks(&r, &CheckOptions::default());
        let c = find(&checks, "iterative-vs-single-step/PGD");
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(
            c.message.contains("50.0% against PGD, 40.0% against FGSM"),
            "{}",
            c.message
        );
        assert!(!checks
            .iter()
            .any(|c| c.id == "iterative-vs-single-step/PGD L2"));
        assert!(!checks
            .iter()
            .any(|c| c.id == "iterative-vs-single-step/FGSM"));
    }

    #[test]
    fn attack_named_fgsm_without_steps_counts_as_single_step() {
        let mut r = sample_run();
        let mut fgsm = attack("F", "linf", 1, &[(0.03, 0.4)]);
        fgsm.params.clear();
        r.attacks = vec![fgsm, attack("PGD", "linf", 10, &[(0.03, 0.3)])];
        let checks = reliability_checks(&r, &CheckOptions::default());
        assert_eq!(
            find(&checks, "iterative-vs-single-step/PGD").status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn gradient_problems_warn_or_fail_above_the_fraction() {
        let opts = CheckOptions::default();
        let mut a = attack("PGD", "linf", 10, &[(0.01, 0.5), (0.03, 0.3)]);
        a.points[1].zero_grad_samples = 5; // exactly 5%: not more
        assert_eq!(gradient_check(&a, &opts).status, CheckStatus::Pass);
        a.points[1].zero_grad_samples = 6;
        let c = gradient_check(&a, &opts);
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("6 of 100 samples (6.0%)"),
            "{}",
            c.message
        );
        a.points[0].nonfinite_grad_samples = 20;
        let c = gradient_check(&a, &opts);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.message.contains("NaN or infinite"), "{}", c.message);
    }

    #[test]
    fn stronger_attack_that_changes_accuracy_warns() {
        let opts = CheckOptions::default();
        let base = attack("PGD-10", "linf", 10, &[(0.01, 0.5), (0.03, 0.3)]);
        let same = attack("PGD-20", "linf", 20, &[(0.01, 0.495), (0.03, 0.3)]);
        let c = stronger_attack_check(&base, &same, &opts);
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
        let lower = attack("PGD-20", "linf", 20, &[(0.01, 0.5), (0.03, 0.2)]);
        let c = stronger_attack_check(&base, &lower, &opts);
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(
            c.message.contains("eps 0.03: 30.0% → 20.0%"),
            "{}",
            c.message
        );
    }

    #[test]
    fn stronger_run_pairs_attacks_by_name_and_norm() {
        let run = sample_run();
        let mut stronger = sample_run();
        stronger.attacks[1].label = "PGD-20 Linf".into();
        stronger.attacks[1].points[2].robust_accuracy = 0.0;
        stronger.attacks.remove(0);
        let checks = stronger_attack_checks(&run, &stronger, &CheckOptions::default());
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].id, "convergence/FGSM Linf");
        assert_eq!(checks[0].status, CheckStatus::Warn);
        assert!(checks[0].message.contains("no 'fgsm' attack"));
        assert_eq!(checks[1].id, "convergence/PGD-10 Linf");
        assert_eq!(checks[1].status, CheckStatus::Warn);
        assert!(
            checks[1].message.contains("eps 0.1: 5.0% → 0.0%"),
            "{}",
            checks[1].message
        );
    }
}
