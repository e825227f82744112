//! Feature-wise KS drift with alibi-detect's verdicts: what
//! `alibi_detect.cd.KSDrift(x_ref, p_val).predict(x)` returns, computed natively.
//!
//! [`detect_drift`](crate::detect_drift) follows SciPy's default `ks_2samp` (exact
//! p-values up to 10 000 samples) and counts `p ≤ threshold` as drift. alibi-detect's
//! `KSDrift` (version 0.13, the default `drift_type='batch'`, `alternative='two-sided'`)
//! differs in four documented ways, which [`alibi_ks_drift`] reproduces:
//!
//! 1. **Asymptotic p-values.** Each feature is tested with
//!    `ks_2samp(x_ref[:, f], x[:, f], mode='asymp')`: `kstwo.sf(D, round(n₁n₂/(n₁+n₂)))`
//!    for every sample size ([`crate::KsMethod::Asymptotic`]).
//! 2. **Single precision.** The p-values and distances are stored in `float32` arrays,
//!    so each is rounded to the nearest `f32`; the comparisons below use those rounded
//!    values (widened back to `f64`, as NumPy does when it compares a `float32` array
//!    with a Python float).
//! 3. **Strict comparison.** A feature counts against the threshold when `p < threshold`.
//! 4. **Corrections.** Bonferroni (the default): `threshold = p_val / k` and
//!    `is_drift = any(p < threshold)`. FDR (Benjamini–Hochberg): with the p-values
//!    sorted, `q_i = p_val · i / k` (`i = 1..k`, computed as `(p_val · i) / k`); if no
//!    sorted `p_(i) < q_i`, there is no drift and alibi returns the *whole vector* `q` as
//!    the threshold ([`AlibiThreshold::PerRank`]); otherwise, with `i*` the largest such
//!    `i`, the threshold is `q_{i*}` and `is_drift = any(p < q_{i*})`.
//!
//! The result has alibi's layout ([`AlibiKsReport`]): `data` holds `is_drift` (0 or 1),
//! `p_val` and `distance` (one per feature) and `threshold`; `meta` says what was run.
//! The agreement is tested against alibi-detect 0.13 itself on committed cases
//! (`datasets/alibi/`, with the script that made them).

use serde::{Deserialize, Serialize};

use crate::drift::{check_pair, per_feature_tests, Correction};
use crate::error::{MonitorError, Result};
use crate::ks::KsMethod;
use crate::table::FeatureTable;

/// Settings of [`alibi_ks_drift`], named as in alibi-detect's `KSDrift`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlibiKsOptions {
    /// `p_val`: the significance level, in (0, 1). Default 0.05.
    pub p_val: f64,
    /// `correction`: `bonferroni` (default) or `fdr`.
    pub correction: Correction,
}

impl Default for AlibiKsOptions {
    fn default() -> Self {
        AlibiKsOptions {
            p_val: 0.05,
            correction: Correction::Bonferroni,
        }
    }
}

/// The `threshold` alibi-detect reports: one number, or (FDR without drift) the whole
/// vector of rank thresholds `p_val · i / k`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlibiThreshold {
    /// The threshold the p-values were compared with.
    Single(f64),
    /// FDR found no rank below its threshold: `p_val · i / k` for `i = 1..k`.
    PerRank(Vec<f64>),
}

impl AlibiThreshold {
    /// The strictest (smallest) threshold: the single value, or the first rank's.
    pub fn strictest(&self) -> f64 {
        match self {
            AlibiThreshold::Single(t) => *t,
            AlibiThreshold::PerRank(v) => v.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// alibi-detect's `data` dictionary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlibiKsData {
    /// 1 if the batch drifted, else 0 (an integer, as alibi-detect returns it).
    pub is_drift: u8,
    /// The p-value of each feature, rounded to `f32`.
    pub p_val: Vec<f32>,
    /// The threshold after the correction.
    pub threshold: AlibiThreshold,
    /// The KS statistic of each feature, rounded to `f32`.
    pub distance: Vec<f32>,
}

/// What was run, alongside [`AlibiKsData`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlibiKsMeta {
    /// `"KSDrift"`.
    pub name: String,
    /// `"drift"`.
    pub detector_type: String,
    /// The significance level asked for.
    pub p_val: f64,
    /// The correction used.
    pub correction: Correction,
    /// Always `"two-sided"`.
    pub alternative: String,
    /// Rows of the reference table.
    pub n_reference: usize,
    /// Rows of the current table.
    pub n_current: usize,
    /// Number of features tested.
    pub n_features: usize,
}

/// Result of [`alibi_ks_drift`]: alibi-detect's `{"data": ..., "meta": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlibiKsReport {
    /// The verdict, p-values, threshold and distances.
    pub data: AlibiKsData,
    /// The detector's settings and the sample sizes.
    pub meta: AlibiKsMeta,
}

impl AlibiKsReport {
    /// Whether the batch drifted.
    pub fn is_drift(&self) -> bool {
        self.data.is_drift == 1
    }

    /// Features whose p-value is below the threshold, as indices (none when FDR found
    /// no rank below its threshold).
    pub fn drifted_features(&self) -> Vec<usize> {
        match self.data.threshold {
            AlibiThreshold::Single(t) => (0..self.data.p_val.len())
                .filter(|&j| f64::from(self.data.p_val[j]) < t)
                .collect(),
            AlibiThreshold::PerRank(_) => Vec::new(),
        }
    }
}

/// Tests every feature of `current` against `reference` as alibi-detect's `KSDrift` does
/// (see the [module documentation](self)).
///
/// Errors: as [`detect_drift`](crate::detect_drift): empty tables, different or zero
/// feature counts, a NaN, or `p_val` outside (0, 1).
pub fn alibi_ks_drift(
    reference: &FeatureTable,
    current: &FeatureTable,
    options: &AlibiKsOptions,
) -> Result<AlibiKsReport> {
    let p_val = options.p_val;
    if !(p_val > 0.0 && p_val < 1.0) {
        return Err(MonitorError::param("p-val", p_val, "must lie in (0, 1)"));
    }
    let k = check_pair(reference, current)?;
    let results = per_feature_tests(reference, current, KsMethod::Asymptotic);
    let p: Vec<f32> = results.iter().map(|r| r.1 as f32).collect();
    let distance: Vec<f32> = results.iter().map(|r| r.0 as f32).collect();
    let (is_drift, threshold) = match options.correction {
        Correction::Bonferroni => {
            let t = p_val / k as f64;
            (
                p.iter().any(|&v| f64::from(v) < t),
                AlibiThreshold::Single(t),
            )
        }
        Correction::Fdr => alibi_fdr(&p, p_val),
    };
    Ok(AlibiKsReport {
        data: AlibiKsData {
            is_drift: u8::from(is_drift),
            p_val: p,
            threshold,
            distance,
        },
        meta: AlibiKsMeta {
            name: "KSDrift".into(),
            detector_type: "drift".into(),
            p_val,
            correction: options.correction,
            alternative: "two-sided".into(),
            n_reference: reference.n_samples(),
            n_current: current.n_samples(),
            n_features: k,
        },
    })
}

/// alibi-detect's `fdr(p_val, q_val)` for a vector of p-values: (drift, threshold).
pub fn alibi_fdr(p: &[f32], q: f64) -> (bool, AlibiThreshold) {
    let n = p.len();
    let mut sorted: Vec<f32> = p.to_vec();
    sorted.sort_by(f32::total_cmp);
    let q_threshold: Vec<f64> = (1..=n).map(|i| q * i as f64 / n as f64).collect();
    let last_below = sorted
        .iter()
        .zip(&q_threshold)
        .rposition(|(&pi, &qi)| f64::from(pi) < qi);
    match last_below {
        None => (false, AlibiThreshold::PerRank(q_threshold)),
        Some(i) => {
            let t = q_threshold[i];
            (
                p.iter().any(|&v| f64::from(v) < t),
                AlibiThreshold::Single(t),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdr_without_a_rank_below_returns_every_rank_threshold() {
        let (drift, t) = alibi_fdr(&[0.5, 0.9, 0.04], 0.05);
        assert!(!drift);
        match t {
            AlibiThreshold::PerRank(v) => {
                // (p_val · i) / k, in that order: the last is 0.05000000000000001, as NumPy's.
                assert_eq!(v, vec![0.05 / 3.0, 0.05 * 2.0 / 3.0, 0.05 * 3.0 / 3.0]);
                assert_ne!(v[2], 0.05);
            }
            other => panic!("expected per-rank thresholds, got {other:?}"),
        }
    }

    #[test]
    fn fdr_uses_the_largest_rank_below_and_a_strict_comparison() {
        // Sorted: 0.001 < 0.05·1/4, 0.02 < 0.05·2/4 = 0.025, 0.0375 = 0.05·3/4 (not <),
        // 0.3: i* = 2, threshold 0.025.
        let (drift, t) = alibi_fdr(&[0.3, 0.0375, 0.02, 0.001], 0.05);
        assert!(drift);
        assert_eq!(t, AlibiThreshold::Single(0.05 * 2.0 / 4.0));
    }

    #[test]
    fn identical_samples_give_p_one_and_no_drift() {
        let reference = FeatureTable::new(4, 1, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let report = alibi_ks_drift(&reference, &reference, &AlibiKsOptions::default()).unwrap();
        assert_eq!(report.data.is_drift, 0);
        assert_eq!(report.data.p_val, vec![1.0]);
        assert_eq!(report.data.distance, vec![0.0]);
        assert_eq!(report.data.threshold, AlibiThreshold::Single(0.05));
        assert!(report.drifted_features().is_empty());
    }

    #[test]
    fn a_p_value_equal_to_the_threshold_is_not_drift() {
        // p = 0.5 exactly (an f32) against the FDR rank threshold 0.5·1/1 = 0.5: not below.
        let (drift, t) = alibi_fdr(&[0.5], 0.5);
        assert!(!drift);
        assert_eq!(t, AlibiThreshold::PerRank(vec![0.5]));
    }

    #[test]
    fn bad_p_val_is_refused() {
        let t = FeatureTable::new(2, 1, vec![0.0, 1.0]).unwrap();
        let opts = AlibiKsOptions {
            p_val: 1.0,
            ..AlibiKsOptions::default()
        };
        assert!(matches!(
            alibi_ks_drift(&t, &t, &opts),
            Err(MonitorError::InvalidParameter { .. })
        ));
    }
}
