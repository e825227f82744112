//! Drift in a model's outputs rather than its inputs: black-box shift detection (a KS
//! test per class on the softmax probabilities, Lipton et al. 2018; Rabanser et al. 2019)
//! and classifier-uncertainty drift (a KS test on the entropy of the predictions, as
//! alibi-detect's `ClassifierUncertaintyDrift` with `uncertainty_type='entropy'`).
//!
//! Both turn a table of logits (`[samples, classes]`) into features and hand them to a
//! KS detector ([`alibi_ks_drift`](crate::alibi_ks_drift) or
//! [`detect_drift`](crate::detect_drift)). The softmax is `exp(z − max z) / Σ exp(z −
//! max z)` (SciPy's `softmax`); the entropy is `−Σ pᵢ ln pᵢ` with `p` normalised to sum
//! 1 and `0 · ln 0 = 0` (SciPy's `stats.entropy`).

use crate::error::{MonitorError, Result};
use crate::table::FeatureTable;

/// Row-wise softmax of a logits table; the column names are kept.
///
/// Errors: a non-finite logit ([`MonitorError::Shape`], naming sample and class).
pub fn softmax(logits: &FeatureTable) -> Result<FeatureTable> {
    let k = logits.n_features();
    let mut out = Vec::with_capacity(logits.values().len());
    for i in 0..logits.n_samples() {
        let row = logits.row(i);
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} holds a non-finite logit at sample {i}, class {j}",
                    logits.label("logits")
                ),
            });
        }
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    let table = FeatureTable::new(logits.n_samples(), k, out)?;
    match logits.names() {
        Some(names) => table.with_names(names.to_vec()),
        None => Ok(table),
    }
}

/// The entropy (in nats) of each row of a probability table: a one-column table named
/// `entropy`.
///
/// Errors: a negative or non-finite probability, or a row summing to zero
/// ([`MonitorError::Shape`]).
pub fn entropy(probs: &FeatureTable) -> Result<FeatureTable> {
    let mut out = Vec::with_capacity(probs.n_samples());
    for i in 0..probs.n_samples() {
        let row = probs.row(i);
        if let Some(j) = row.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} holds {} at sample {i}, class {j}; probabilities must be finite and \
                     non-negative",
                    probs.label("probabilities"),
                    row[j]
                ),
            });
        }
        let sum: f64 = row.iter().sum();
        if sum <= 0.0 {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} sample {i}: the probabilities sum to 0",
                    probs.label("probabilities")
                ),
            });
        }
        let h: f64 = row
            .iter()
            .map(|&p| {
                let q = p / sum;
                if q > 0.0 {
                    -q * q.ln()
                } else {
                    0.0
                }
            })
            .sum();
        out.push(h);
    }
    FeatureTable::new(probs.n_samples(), 1, out)?.with_names(vec!["entropy".into()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_entropy_closed_forms() {
        // Equal logits: uniform probabilities, entropy ln k.
        let logits = FeatureTable::new(2, 4, vec![3.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 1e3]).unwrap();
        let p = softmax(&logits).unwrap();
        assert_eq!(p.row(0), &[0.25; 4]);
        assert_eq!(p.row(1), &[0.0, 0.0, 0.0, 1.0]);
        let h = entropy(&p).unwrap();
        assert!((h.row(0)[0] - 4f64.ln()).abs() < 1e-15);
        assert_eq!(h.row(1)[0], 0.0);
        // Two classes with logits 0 and ln 3: p = (1/4, 3/4).
        let two = FeatureTable::new(1, 2, vec![0.0, 3f64.ln()]).unwrap();
        let h = entropy(&softmax(&two).unwrap()).unwrap();
        let expected = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
        assert!((h.row(0)[0] - expected).abs() < 1e-15);
    }

    #[test]
    fn bad_values_are_named() {
        let logits = FeatureTable::new(1, 2, vec![0.0, f64::INFINITY]).unwrap();
        let err = softmax(&logits).unwrap_err().to_string();
        assert!(err.contains("sample 0, class 1"), "{err}");
        let probs = FeatureTable::new(1, 2, vec![0.5, -0.5]).unwrap();
        assert!(entropy(&probs).is_err());
    }
}
