//! Feature-wise data drift: one two-sample KS test per feature, corrected for multiple
//! testing.
//!
//! For `k` features and significance level `p_val` (the family-wise error rate for
//! Bonferroni, the false discovery rate for Benjamini–Hochberg):
//!
//! * **Bonferroni**: threshold `p_val / k`; feature `j` drifted if `p_j ≤ threshold`.
//! * **Benjamini–Hochberg** (`fdr`): with `p_(1) ≤ … ≤ p_(k)` sorted, let `i*` be the
//!   largest `i` with `p_(i) ≤ p_val · i / k`. Then the threshold is `p_val · i* / k` and
//!   every feature with `p_j ≤ threshold` is drifted. If no such `i` exists nothing
//!   drifted and the reported threshold is the strictest one, `p_val / k`.
//!
//! `is_drift` is true when any feature drifted. Features are tested in parallel (one
//! thread per available core); results do not depend on the thread count.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};
use crate::ks::{ks_sorted, KsMethod, KsMethodUsed};
use crate::table::FeatureTable;

/// Multiple-testing correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Bonferroni (controls the family-wise error rate).
    #[default]
    Bonferroni,
    /// Benjamini–Hochberg (controls the false discovery rate).
    Fdr,
}

impl FromStr for Correction {
    type Err = MonitorError;

    /// Parses `bonferroni` or `fdr` (also `bh`, `benjamini-hochberg`), case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "bonferroni" => Ok(Correction::Bonferroni),
            "fdr" | "bh" | "benjamini-hochberg" => Ok(Correction::Fdr),
            _ => Err(MonitorError::param(
                "correction",
                s,
                "expected bonferroni or fdr",
            )),
        }
    }
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Correction::Bonferroni => "bonferroni",
            Correction::Fdr => "fdr",
        })
    }
}

/// Settings of [`detect_drift`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftOptions {
    /// Significance level, in (0, 1). Default 0.05.
    pub p_val: f64,
    /// Multiple-testing correction. Default Bonferroni.
    pub correction: Correction,
    /// How KS p-values are computed. Default `Auto` (as SciPy).
    pub method: KsMethod,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            p_val: 0.05,
            correction: Correction::Bonferroni,
            method: KsMethod::Auto,
        }
    }
}

/// The test of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Column index.
    pub index: usize,
    /// Column name, when the reference table has names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// KS statistic.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// How the p-value was computed.
    pub method: KsMethodUsed,
    /// Whether `p_value ≤ threshold`.
    pub drifted: bool,
}

/// Result of [`detect_drift`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Whether any feature drifted.
    pub is_drift: bool,
    /// The significance level asked for.
    pub p_val: f64,
    /// The correction used.
    pub correction: Correction,
    /// The corrected per-feature threshold.
    pub threshold: f64,
    /// Rows in the reference table.
    pub n_reference: usize,
    /// Rows in the current table.
    pub n_current: usize,
    /// Number of features tested.
    pub n_features: usize,
    /// Number of drifted features.
    pub n_drifted: usize,
    /// Every feature, in column order.
    pub features: Vec<FeatureDrift>,
}

impl DriftReport {
    /// A plain-text table: a summary line, then one line per feature
    /// (`feature  statistic  p-value  drift`), drifted features marked with `*`. With
    /// `only_drifted`, features that did not drift are left out.
    pub fn to_table(&self, only_drifted: bool) -> String {
        let mut out = format!(
            "drift: {}  ({} of {} features, {} correction, p_val {}, threshold {:.6e}; \
             reference n={}, current n={})\n",
            if self.is_drift { "YES" } else { "no" },
            self.n_drifted,
            self.n_features,
            self.correction,
            self.p_val,
            self.threshold,
            self.n_reference,
            self.n_current,
        );
        let width = self
            .features
            .iter()
            .map(|f| feature_label(f).len())
            .max()
            .unwrap_or(7)
            .max(7);
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>12}  drift\n",
            "feature", "statistic", "p-value"
        ));
        for f in &self.features {
            if only_drifted && !f.drifted {
                continue;
            }
            out.push_str(&format!(
                "{:<width$}  {:>10.6}  {:>12.6e}  {}\n",
                feature_label(f),
                f.statistic,
                f.p_value,
                if f.drifted { "*" } else { "" }
            ));
        }
        out
    }
}

fn feature_label(f: &FeatureDrift) -> String {
    match &f.name {
        Some(n) => n.clone(),
        None => f.index.to_string(),
    }
}

/// Tests every feature of `current` against the same feature of `reference`.
///
/// Errors: a table without rows ([`MonitorError::Empty`]), different feature counts or
/// no features ([`MonitorError::Shape`]), a NaN ([`MonitorError::NotANumber`]), or
/// `p_val` outside (0, 1) ([`MonitorError::InvalidParameter`]).
pub fn detect_drift(
    reference: &FeatureTable,
    current: &FeatureTable,
    options: &DriftOptions,
) -> Result<DriftReport> {
    let p_val = options.p_val;
    if !(p_val > 0.0 && p_val < 1.0) {
        return Err(MonitorError::param("p-val", p_val, "must lie in (0, 1)"));
    }
    let k = check_pair(reference, current)?;

    let results = per_feature_tests(reference, current, options.method);
    let p_values: Vec<f64> = results.iter().map(|r| r.1).collect();
    let threshold = match options.correction {
        Correction::Bonferroni => p_val / k as f64,
        Correction::Fdr => benjamini_hochberg_threshold(&p_values, p_val),
    };
    let features: Vec<FeatureDrift> = results
        .into_iter()
        .enumerate()
        .map(|(index, (statistic, p_value, method))| FeatureDrift {
            index,
            name: reference
                .name(index)
                .or_else(|| current.name(index))
                .map(str::to_string),
            statistic,
            p_value,
            method,
            drifted: p_value <= threshold,
        })
        .collect();
    let n_drifted = features.iter().filter(|f| f.drifted).count();
    Ok(DriftReport {
        is_drift: n_drifted > 0,
        p_val,
        correction: options.correction,
        threshold,
        n_reference: reference.n_samples(),
        n_current: current.n_samples(),
        n_features: k,
        n_drifted,
        features,
    })
}

/// Checks two tables for a drift test and returns their feature count: both have rows,
/// the same positive number of features, and no NaN.
pub(crate) fn check_pair(reference: &FeatureTable, current: &FeatureTable) -> Result<usize> {
    let ref_label = reference.label("reference");
    let cur_label = current.label("current");
    if reference.n_samples() == 0 {
        return Err(MonitorError::Empty { what: ref_label });
    }
    if current.n_samples() == 0 {
        return Err(MonitorError::Empty { what: cur_label });
    }
    if reference.n_features() != current.n_features() {
        return Err(MonitorError::Shape {
            reason: format!(
                "{ref_label} has {} features but {cur_label} has {}",
                reference.n_features(),
                current.n_features()
            ),
        });
    }
    let k = reference.n_features();
    if k == 0 {
        return Err(MonitorError::Shape {
            reason: format!("{ref_label} has no features"),
        });
    }
    for (table, label) in [(reference, &ref_label), (current, &cur_label)] {
        if let Some(pos) = table.values().iter().position(|v| v.is_nan()) {
            return Err(MonitorError::NotANumber {
                what: label.clone(),
                sample: pos / k,
                feature: pos % k,
            });
        }
    }
    Ok(k)
}

/// The Benjamini–Hochberg threshold described in the [module documentation](self).
pub fn benjamini_hochberg_threshold(p_values: &[f64], q: f64) -> f64 {
    let k = p_values.len();
    if k == 0 {
        return q;
    }
    let mut sorted: Vec<f64> = p_values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut threshold = q / k as f64;
    for (i, p) in sorted.iter().enumerate() {
        let t = q * ((i + 1) as f64 / k as f64);
        if *p <= t {
            threshold = t;
        }
    }
    threshold
}

/// (statistic, p-value, method) for every feature, computed on several threads.
pub(crate) fn per_feature_tests(
    reference: &FeatureTable,
    current: &FeatureTable,
    method: KsMethod,
) -> Vec<(f64, f64, KsMethodUsed)> {
    let k = reference.n_features();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(k)
        .max(1);
    let test = |j: usize| {
        let mut a = reference.column(j);
        let mut b = current.column(j);
        for v in a.iter_mut().chain(b.iter_mut()) {
            *v += 0.0; // -0.0 → 0.0, so total_cmp orders like NumPy
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let r = ks_sorted(&a, &b, method);
        (r.statistic, r.p_value, r.method)
    };
    if threads == 1 {
        return (0..k).map(test).collect();
    }
    // Interleaved assignment balances columns of very different cost (constant pixels
    // are cheap, drifted ones with large samples are not).
    let mut out = vec![(0.0, 0.0, KsMethodUsed::Exact); k];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let test = &test;
                scope.spawn(move || {
                    (t..k)
                        .step_by(threads)
                        .map(|j| (j, test(j)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            // A worker only panics on a bug; re-raise it rather than hide it.
            let part = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (j, r) in part {
                out[j] = r;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_threshold_by_hand() {
        // Sorted: .001 .008 .039 .041 .042 .06 .074 .205 ; q=.05, k=8 → i/k*q = .00625·i
        // p(1)=.001 ≤ .00625, p(2)=.008 ≤ .0125, p(3)=.039 > .01875, p(4)=.041 > .025 ...
        let p = [0.041, 0.001, 0.205, 0.039, 0.008, 0.06, 0.042, 0.074];
        assert!((benjamini_hochberg_threshold(&p, 0.05) - 0.0125).abs() < 1e-15);
        // Nothing significant → strictest threshold q/k.
        assert_eq!(benjamini_hochberg_threshold(&[0.5, 0.9], 0.05), 0.025);
        // BH step-up: a later p can rescue earlier ones (all below q).
        assert_eq!(
            benjamini_hochberg_threshold(&[0.04, 0.045, 0.049], 0.05),
            0.05
        );
    }

    #[test]
    fn correction_parses() {
        assert_eq!("FDR".parse::<Correction>().unwrap(), Correction::Fdr);
        assert_eq!(
            "bonferroni".parse::<Correction>().unwrap(),
            Correction::Bonferroni
        );
        assert!("holm".parse::<Correction>().is_err());
    }
}
