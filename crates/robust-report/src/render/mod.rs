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
