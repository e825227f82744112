//! Renderings of [`crate::RunResults`]: a self-contained HTML report, a Markdown summary
//! and JUnit XML.

pub(crate) mod charts;
pub mod html;
pub mod junit;
pub mod markdown;

/// The display name of a norm: `linf` → `L∞`, `l2` → `L2`; anything else unchanged.
pub(crate) fn norm_display(norm: &str) -> String {
    match norm {
        "linf" => "L∞".to_string(),
        "l2" => "L2".to_string(),
        "l1" => "L1".to_string(),
        "l0" => "L0".to_string(),
        other => other.to_string(),
    }
}

/// The norms of a run's attacks, in order of first appearance.
pub(crate) fn norms(run: &crate::RunResults) -> Vec<String> {
    let mut norms: Vec<String> = Vec::new();
    for a in &run.attacks {
        if !norms.contains(&a.norm) {
            norms.push(a.norm.clone());
        }
    }
    norms
}

/// The norm shared by all attacks of a worst-case point, `None` when they differ or are
/// unknown.
pub(crate) fn worst_case_norm(
    run: &crate::RunResults,
    w: &crate::WorstCasePoint,
) -> Option<String> {
    let mut norm: Option<&str> = None;
    for label in &w.attacks {
        let n = run.attack(label)?.norm.as_str();
        match norm {
            None => norm = Some(n),
            Some(m) if m == n => {}
            Some(_) => return None,
        }
    }
    norm.map(str::to_string)
}

/// The number a report leads with for one norm: robust accuracy at the run's primary ε.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// The norm (`linf`, `l2`, ...).
    pub norm: String,
    /// The ε of the headline.
    pub eps: f64,
    /// Why this ε: `primary` (set by the user), `gate` (the gate's threshold), `only` (the
    /// sweep's one non-zero ε) or `middle` (the middle of the sweep).
    pub chosen_by: &'static str,
    /// Robust accuracy at `eps`: the worst case over this norm's attacks when there is one,
    /// else the lowest of the attacks there.
    pub robust_accuracy: f64,
    /// The largest ε of the sweep and the robust accuracy there, when it is not `eps`.
    pub largest: Option<(f64, f64)>,
}

/// The lowest robust accuracy of `norm`'s attacks at `eps` (the worst-case point when the
/// run has one).
fn accuracy_at(run: &crate::RunResults, norm: &str, eps: f64) -> Option<f64> {
    let worst = run
        .worst_case
        .iter()
        .filter(|w| worst_case_norm(run, w).as_deref() == Some(norm))
        .find(|w| crate::eps_eq(w.eps, eps))
        .map(|w| w.robust_accuracy);
    worst.or_else(|| {
        run.attacks
            .iter()
            .filter(|a| a.norm == norm)
            .filter_map(|a| a.point(eps).map(|p| p.robust_accuracy))
            .min_by(f64::total_cmp)
    })
}

/// The headline of each norm of `run` (see [`Headline`]). The ε is, in order of preference:
/// [`crate::RunResults::primary_eps`] when this norm's sweep has it; the ε of the first
/// gate threshold on one of this norm's attacks; the middle of the sweep's non-zero ε
/// (the upper middle for an even count). Leading with the largest ε would make every
/// sweep's headline its most extreme point.
pub fn headlines(run: &crate::RunResults) -> Vec<Headline> {
    let mut out = Vec::new();
    for norm in norms(run) {
        let mut grid: Vec<f64> = run
            .attacks
            .iter()
            .filter(|a| a.norm == norm)
            .flat_map(|a| a.points.iter().map(|p| p.eps))
            .filter(|&e| e > 0.0)
            .collect();
        grid.sort_by(f64::total_cmp);
        grid.dedup_by(|a, b| crate::eps_eq(*a, *b));
        let Some(&largest) = grid.last() else {
            continue;
        };
        let has = |e: f64| grid.iter().any(|&g| crate::eps_eq(g, e));
        let primary = run.primary_eps.filter(|&e| has(e)).map(|e| (e, "primary"));
        let gate = || {
            run.gate.as_ref().and_then(|g| {
                g.rows
                    .iter()
                    .filter(|r| !r.all_eps && has(r.eps))
                    .find(|r| {
                        run.attack(&r.attack).is_some_and(|a| a.norm == norm) || r.attack == "*"
                    })
                    .map(|r| (r.eps, "gate"))
            })
        };
        let (eps, chosen_by) = primary.or_else(gate).unwrap_or(if grid.len() == 1 {
            (grid[0], "only")
        } else {
            (grid[grid.len() / 2], "middle")
        });
        let Some(robust_accuracy) = accuracy_at(run, &norm, eps) else {
            continue;
        };
        let largest = (!crate::eps_eq(largest, eps))
            .then(|| accuracy_at(run, &norm, largest).map(|a| (largest, a)))
            .flatten();
        out.push(Headline {
            norm,
            eps,
            chosen_by,
            robust_accuracy,
            largest,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::attack;

    fn run() -> crate::RunResults {
        let mut r = crate::testing::sample_run();
        r.attacks = vec![
            attack(
                "FGSM",
                "linf",
                1,
                &[(0.0, 0.9), (0.1, 0.6), (0.2, 0.4), (0.3, 0.2)],
            ),
            attack(
                "PGD",
                "linf",
                10,
                &[(0.0, 0.9), (0.1, 0.5), (0.2, 0.3), (0.3, 0.1)],
            ),
        ];
        r.worst_case = vec![crate::WorstCasePoint {
            eps: 0.2,
            robust_accuracy: 0.25,
            attacks: vec!["FGSM".into(), "PGD".into()],
        }];
        r.gate = None;
        r.primary_eps = None;
        r
    }

    #[test]
    fn headline_is_mid_sweep_by_default_and_the_primary_eps_when_given() {
        let mut r = run();
        // Non-zero grid [0.1, 0.2, 0.3]: the middle is 0.2, where the worst case is 25%.
        let h = &headlines(&r)[0];
        assert_eq!(
            (h.eps, h.chosen_by, h.robust_accuracy),
            (0.2, "middle", 0.25)
        );
        // At the largest eps there is no worst-case point: the lowest attack (PGD, 10%).
        assert_eq!(h.largest, Some((0.3, 0.1)));
        r.primary_eps = Some(0.1);
        let h = &headlines(&r)[0];
        assert_eq!(
            (h.eps, h.chosen_by, h.robust_accuracy),
            (0.1, "primary", 0.5)
        );
        // A primary eps the sweep lacks is ignored rather than invented.
        r.primary_eps = Some(0.15);
        assert_eq!(headlines(&r)[0].chosen_by, "middle");
    }

    #[test]
    fn headline_follows_the_gate_when_no_primary_eps() {
        let mut r = run();
        r.gate = Some(crate::GateReport {
            passed: true,
            baseline: None,
            rows: vec![crate::GateRow {
                attack: "PGD".into(),
                eps: 0.3,
                ..Default::default()
            }],
        });
        let h = &headlines(&r)[0];
        assert_eq!((h.eps, h.chosen_by, h.robust_accuracy), (0.3, "gate", 0.1));
        assert_eq!(h.largest, None);
    }
}
