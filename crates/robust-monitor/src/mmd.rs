//! Multivariate drift: the maximum mean discrepancy (MMD) with a Gaussian kernel and a
//! permutation test, computed as alibi-detect's `MMDDrift` computes it.
//!
//! Per-feature tests look at one coordinate at a time; for images (or a model's
//! features) the shift is often in how coordinates vary together. The MMD compares
//! whole samples through a kernel `k(x, y) = exp(−‖x − y‖² / (2σ²))`.
//!
//! * **Bandwidth** (median heuristic, alibi-detect's `sigma_median` on the reference
//!   data, its default `configure_kernel_from_x_ref=True`): with `d₁ ≤ … ≤ d_P` the
//!   `P = n(n−1)/2` squared distances between distinct reference samples,
//!   `σ = √(d_⌈P/2⌉ / 2)`. A bandwidth can also be given ([`MmdOptions::sigma`]).
//! * **Statistic** (`distance`): the unbiased MMD² over the pooled kernel matrix with its
//!   diagonal set to zero, `ΣK_xx/(n(n−1)) + ΣK_yy/(m(m−1)) − 2·mean(K_xy)`, for `n`
//!   reference and `m` current samples.
//! * **Permutation test**: the pooled samples are shuffled `n_permutations` times
//!   (seeded ChaCha8, so a run is repeatable) and the statistic recomputed with the first
//!   `n` as reference; `p_val` is the fraction of permuted statistics `≥` the observed one
//!   (alibi-detect's `(mmd2 <= mmd2_permuted).mean()`, no `+1` correction), and
//!   `is_drift = p_val < p_val_level`. `distance_threshold` is the permuted statistics
//!   sorted descending, taken at index `⌊p_val_level · n_permutations⌋`.
//!
//! Distances are summed coordinate by coordinate in index order (no reassociation), so
//! the result does not depend on the CPU's vector width; permutations are drawn before
//! they are evaluated, so it does not depend on the thread count either.
//!
//! The statistic and bandwidth are tested against alibi-detect 0.13 (PyTorch backend,
//! float64 data) to floating-point accuracy, the p-values within Monte-Carlo error
//! (`datasets/alibi/`).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::drift::check_pair;
use crate::error::{MonitorError, Result};
use crate::table::FeatureTable;

/// Most pooled samples (reference + current) [`mmd_drift`] accepts: the kernel matrix
/// holds `N²` doubles (800 MB at the limit).
pub const MAX_MMD_SAMPLES: usize = 10_000;

/// Settings of [`mmd_drift`], named as in alibi-detect's `MMDDrift`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MmdOptions {
    /// Significance level of the permutation test, in (0, 1). Default 0.05.
    pub p_val: f64,
    /// Number of permutations. Default 100 (alibi-detect's default).
    pub n_permutations: usize,
    /// Kernel bandwidth; `None` (default) infers it from the reference data.
    pub sigma: Option<f64>,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for MmdOptions {
    fn default() -> Self {
        MmdOptions {
            p_val: 0.05,
            n_permutations: 100,
            sigma: None,
            seed: 0,
        }
    }
}

/// alibi-detect's `data` dictionary for `MMDDrift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmdData {
    /// 1 if the batch drifted, else 0.
    pub is_drift: u8,
    /// The permutation p-value.
    pub p_val: f64,
    /// The significance level the p-value is compared with.
    pub threshold: f64,
    /// The observed MMD².
    pub distance: f64,
    /// The MMD² above which a batch would count as drifted at this level.
    pub distance_threshold: f64,
}

/// What was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmdMeta {
    /// `"MMDDrift"`.
    pub name: String,
    /// `"drift"`.
    pub detector_type: String,
    /// `"gaussian-rbf"`.
    pub kernel: String,
    /// The bandwidth used.
    pub sigma: f64,
    /// Whether `sigma` was inferred with the median heuristic.
    pub sigma_inferred: bool,
    /// Number of permutations.
    pub n_permutations: usize,
    /// Seed of the permutations.
    pub seed: u64,
    /// Rows of the reference table.
    pub n_reference: usize,
    /// Rows of the current table.
    pub n_current: usize,
    /// Number of features.
    pub n_features: usize,
}

/// Result of [`mmd_drift`]: alibi-detect's `{"data": ..., "meta": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmdReport {
    /// Verdict, p-value and statistic.
    pub data: MmdData,
    /// Settings and sizes.
    pub meta: MmdMeta,
}

/// Tests whether `current` comes from the distribution of `reference` with the MMD
/// permutation test described in the [module documentation](self).
///
/// Errors: as [`detect_drift`](crate::detect_drift); fewer than 2 samples in either
/// table, more than [`MAX_MMD_SAMPLES`] pooled, zero permutations, or a bandwidth that is
/// not a positive finite number ([`MonitorError::InvalidParameter`]); an infinite value
/// ([`MonitorError::Shape`]: the kernel needs finite distances).
pub fn mmd_drift(
    reference: &FeatureTable,
    current: &FeatureTable,
    options: &MmdOptions,
) -> Result<MmdReport> {
    let p_level = options.p_val;
    if !(p_level > 0.0 && p_level < 1.0) {
        return Err(MonitorError::param("p-val", p_level, "must lie in (0, 1)"));
    }
    if options.n_permutations == 0 {
        return Err(MonitorError::param(
            "n-permutations",
            0,
            "must be at least 1",
        ));
    }
    if let Some(s) = options.sigma {
        if !(s.is_finite() && s > 0.0) {
            return Err(MonitorError::param("sigma", s, "must be a positive number"));
        }
    }
    let d = check_pair(reference, current)?;
    let (n, m) = (reference.n_samples(), current.n_samples());
    for (t, what) in [(reference, "reference"), (current, "current")] {
        if t.n_samples() < 2 {
            return Err(MonitorError::param(
                "sample size",
                t.n_samples(),
                format!("the MMD needs at least 2 {what} samples"),
            ));
        }
        if let Some(pos) = t.values().iter().position(|v| v.is_infinite()) {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} holds an infinite value at sample {}, feature {}; the MMD needs \
                     finite features",
                    t.label(what),
                    pos / d,
                    pos % d
                ),
            });
        }
    }
    if n + m > MAX_MMD_SAMPLES {
        return Err(MonitorError::param(
            "sample size",
            n + m,
            format!(
                "the MMD keeps an N×N kernel matrix; at most {MAX_MMD_SAMPLES} reference and \
                 current samples together (subsample the inputs)"
            ),
        ));
    }

    let pooled: Vec<&[f64]> = (0..n)
        .map(|i| reference.row(i))
        .chain((0..m).map(|i| current.row(i)))
        .collect();
    let mut kernel = squared_distances(&pooled);
    let total = n + m;
    let (sigma, inferred) = match options.sigma {
        Some(s) => (s, false),
        None => (median_sigma(&kernel, total, n), true),
    };
    let gamma = 1.0 / (2.0 * sigma * sigma);
    for (idx, v) in kernel.iter_mut().enumerate() {
        *v = if idx / total == idx % total {
            0.0
        } else {
            (-gamma * *v).exp()
        };
    }

    let mut labels: Vec<bool> = (0..total).map(|i| i >= n).collect();
    let observed = mmd2_with_labels(&kernel, &labels, n, m);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let permutations: Vec<Vec<bool>> = (0..options.n_permutations)
        .map(|_| {
            labels.shuffle(&mut rng);
            labels.clone()
        })
        .collect();
    let permuted = parallel_map(&permutations, |z| mmd2_with_labels(&kernel, z, n, m));
    let p_value =
        permuted.iter().filter(|&&s| observed <= s).count() as f64 / permuted.len() as f64;
    let mut sorted = permuted.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let idx = ((p_level * sorted.len() as f64) as usize).min(sorted.len() - 1);
    Ok(MmdReport {
        data: MmdData {
            is_drift: u8::from(p_value < p_level),
            p_val: p_value,
            threshold: p_level,
            distance: observed,
            distance_threshold: sorted[idx],
        },
        meta: MmdMeta {
            name: "MMDDrift".into(),
            detector_type: "drift".into(),
            kernel: "gaussian-rbf".into(),
            sigma,
            sigma_inferred: inferred,
            n_permutations: options.n_permutations,
            seed: options.seed,
            n_reference: n,
            n_current: m,
            n_features: d,
        },
    })
}

/// The bandwidth the median heuristic picks for `reference` (see the
/// [module documentation](self)). Needs at least 2 rows.
pub fn median_heuristic_sigma(reference: &FeatureTable) -> f64 {
    let rows: Vec<&[f64]> = (0..reference.n_samples())
        .map(|i| reference.row(i))
        .collect();
    let n = rows.len();
    median_sigma(&squared_distances(&rows), n, n)
}

/// `√(d_⌈P/2⌉ / 2)` over the upper triangle of the first `n` rows of a `total`-square
/// matrix of squared distances.
fn median_sigma(dist: &[f64], total: usize, n: usize) -> f64 {
    let mut upper: Vec<f64> = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        upper.extend_from_slice(&dist[i * total + i + 1..i * total + n]);
    }
    let p = upper.len();
    let k = p.div_ceil(2) - 1;
    let (_, median, _) = upper.select_nth_unstable_by(k, f64::total_cmp);
    (0.5 * *median).sqrt()
}

/// The full matrix of squared Euclidean distances, row-major, each summed in index order.
fn squared_distances(rows: &[&[f64]]) -> Vec<f64> {
    let n = rows.len();
    let upper: Vec<Vec<f64>> = parallel_map(&(0..n).collect::<Vec<_>>(), |&i| {
        (i + 1..n)
            .map(|j| {
                rows[i]
                    .iter()
                    .zip(rows[j])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            })
            .collect()
    });
    let mut out = vec![0.0; n * n];
    for (i, row) in upper.iter().enumerate() {
        for (off, &v) in row.iter().enumerate() {
            let j = i + 1 + off;
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

/// Unbiased MMD² for the split given by `is_current` (zero-diagonal kernel matrix).
fn mmd2_with_labels(kernel: &[f64], is_current: &[bool], n: usize, m: usize) -> f64 {
    let total = is_current.len();
    let (mut k_xx, mut k_yy, mut k_xy) = (0.0, 0.0, 0.0);
    for i in 0..total {
        let row = &kernel[i * total..(i + 1) * total];
        let (mut to_x, mut to_y) = (0.0, 0.0);
        for (v, &cur) in row.iter().zip(is_current) {
            if cur {
                to_y += v;
            } else {
                to_x += v;
            }
        }
        if is_current[i] {
            k_yy += to_y;
        } else {
            k_xx += to_x;
            k_xy += to_y;
        }
    }
    let (nf, mf) = (n as f64, m as f64);
    k_xx / (nf * (nf - 1.0)) + k_yy / (mf * (mf - 1.0)) - 2.0 * k_xy / (nf * mf)
}

/// `items.map(f)` on the available cores, in order; the result does not depend on the
/// thread count.
pub(crate) fn parallel_map<T: Sync, R: Send + Default + Clone>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(items.len())
        .max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let mut out = vec![R::default(); items.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || {
                    (t..items.len())
                        .step_by(threads)
                        .map(|i| (i, f(&items[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            let part = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (i, r) in part {
                out[i] = r;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[f64]]) -> FeatureTable {
        FeatureTable::from_rows(rows).unwrap()
    }

    #[test]
    fn median_heuristic_by_hand() {
        // 1-D points 0, 1, 3: squared distances 1, 9, 4 → sorted 1, 4, 9; P = 3,
        // ⌈P/2⌉ = 2nd = 4 → σ = √2.
        let t = table(&[&[0.0], &[1.0], &[3.0]]);
        assert_eq!(median_heuristic_sigma(&t), 2f64.sqrt());
        // Four points 0, 1, 2, 4: distances 1, 4, 16, 1, 9, 4 → 1, 1, 4, 4, 9, 16; P = 6,
        // 3rd = 4 → σ = √2.
        let t = table(&[&[0.0], &[1.0], &[2.0], &[4.0]]);
        assert_eq!(median_heuristic_sigma(&t), 2f64.sqrt());
    }

    #[test]
    fn mmd2_closed_form_for_two_by_two() {
        // x = {0, 1}, y = {10, 11}, σ = 1: K_xx off-diagonal e^{-1/2} (twice), K_yy the
        // same, K_xy: e^{-100/2}, e^{-121/2}, e^{-81/2}, e^{-100/2}.
        let x = table(&[&[0.0], &[1.0]]);
        let y = table(&[&[10.0], &[11.0]]);
        let opts = MmdOptions {
            sigma: Some(1.0),
            n_permutations: 5,
            ..MmdOptions::default()
        };
        let r = mmd_drift(&x, &y, &opts).unwrap();
        let e = |d: f64| (-d / 2.0).exp();
        let expected = 2.0 * e(1.0) / 2.0 + 2.0 * e(1.0) / 2.0
            - 2.0 * (e(100.0) + e(121.0) + e(81.0) + e(100.0)) / 4.0;
        assert!(
            (r.data.distance - expected).abs() < 1e-15,
            "{}",
            r.data.distance
        );
        assert!(!r.meta.sigma_inferred);
    }

    #[test]
    fn same_seed_same_result_and_bad_parameters_refused() {
        let x = table(&[&[0.0, 1.0], &[1.0, 0.5], &[2.0, 2.0], &[0.3, 0.1]]);
        let y = table(&[&[0.5, 1.0], &[1.5, 0.2], &[2.5, 1.0]]);
        let opts = MmdOptions {
            seed: 7,
            ..MmdOptions::default()
        };
        assert_eq!(
            mmd_drift(&x, &y, &opts).unwrap(),
            mmd_drift(&x, &y, &opts).unwrap()
        );
        for bad in [
            MmdOptions {
                n_permutations: 0,
                ..opts
            },
            MmdOptions {
                sigma: Some(0.0),
                ..opts
            },
            MmdOptions { p_val: 0.0, ..opts },
        ] {
            assert!(matches!(
                mmd_drift(&x, &y, &bad),
                Err(MonitorError::InvalidParameter { .. })
            ));
        }
        let one = table(&[&[0.0, 1.0]]);
        assert!(mmd_drift(&one, &y, &opts).is_err());
    }
}
