//! Indicators of attack failure: measurements that tell a weak evaluation from a robust
//! model.
//!
//! Pintor et al., *Indicators of Attack Failure: Debugging and Improving Optimization of
//! Adversarial Examples* (NeurIPS 2022; reference code github.com/pralab/
//! IndicatorsOfAttackFailure, `src/indicators/indicators.py`) list the ways a gradient
//! attack fails silently, and AutoAttack (`autoattack/checks.py` of fra31/auto-attack)
//! checks the model before it attacks. robust gathers what they need in two ways:
//!
//! * **during the attack, for free**: every iterate an attack evaluates is recorded
//!   ([`crate::AttackCtx::trace`]): whether it was adversarial, and the objective there.
//!   The sweep turns that into *silent success* (an adversarial iterate, but the returned
//!   point is not adversarial) and *incomplete optimisation* ([`still_improving`]);
//!   *unavailable gradients* are the zero and non-finite gradients
//!   ([`crate::GradStats`]) counted on each run's first gradient;
//! * **on a small subsample, with extra passes** (the first [`PROBE_SAMPLES`] samples, all
//!   draws seeded by `--seed` and the sample's index): *unstable predictions*
//!   ([`unstable_predictions`]: [`UNSTABLE_DRAWS`] forward passes), *unconstrained attack
//!   failure* ([`crate::Sweep::unbounded`]: each attack once more at an ε that covers the
//!   whole input box), and AutoAttack's *randomness* ([`randomness`]:
//!   [`RANDOMNESS_PASSES`] forward passes) and *probabilities instead of logits*
//!   ([`output_range`]: no extra pass) checks.
//!
//! The thresholds that turn these numbers into warnings live in `robust-report`'s checks.

use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robust_models::{to_host, Model};

use crate::attack::mix;
use crate::AttackError;

/// Samples the extra-pass indicators look at: the first 32 evaluated.
pub const PROBE_SAMPLES: usize = 32;

/// Random perturbations per sample for [`unstable_predictions`] (the reference draws 100;
/// 32 keep the cost at one small batch per draw).
pub const UNSTABLE_DRAWS: usize = 32;

/// Width of the uniform noise of [`unstable_predictions`], as a fraction of the input range:
/// each pixel moves by at most half of it (the reference's `radius = 8/255`).
pub const UNSTABLE_RADIUS: f32 = 8.0 / 255.0;

/// Forward passes compared by [`randomness`] (AutoAttack's `n = 5`).
pub const RANDOMNESS_PASSES: usize = 5;

/// The steps [`still_improving`] looks at (the reference's last 10).
pub const LAST_STEPS: usize = 10;

/// How much the best objective may still rise over the last steps, as a fraction of its
/// whole range over the attack, before the optimisation counts as incomplete (the
/// reference's 0.05).
pub const RISE_TOLERANCE: f32 = 0.05;

/// Whether an attack's objective was still improving when it stopped (Pintor et al.'s
/// incomplete-optimisation indicator): the objective, rescaled to `[0, 1]` over the whole
/// trace, is replaced by its running best, and the best rose by more than
/// [`RISE_TOLERANCE`] over the last [`LAST_STEPS`] values. `None` for fewer than two
/// finite values (nothing to judge, e.g. a single-step attack).
///
/// ```
/// use robust_attacks::indicators::still_improving;
/// assert_eq!(still_improving(&[0.0, 1.0, 2.0, 3.0]), Some(true));
/// let flat: Vec<f32> = (0..30).map(|i| if i < 15 { i as f32 } else { 15.0 }).collect();
/// assert_eq!(still_improving(&flat), Some(false));
/// assert_eq!(still_improving(&[1.0]), None);
/// ```
pub fn still_improving(objective: &[f32]) -> Option<bool> {
    let v: Vec<f32> = objective
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.len() < 2 {
        return None;
    }
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = hi - lo;
    if range <= 0.0 {
        return Some(false);
    }
    let mut best = f32::NEG_INFINITY;
    let running: Vec<f32> = v
        .iter()
        .map(|&x| {
            best = best.max((x - lo) / range);
            best
        })
        .collect();
    let window = &running[running.len() - running.len().min(LAST_STEPS)..];
    Some(window[window.len() - 1] - window[0] > RISE_TOLERANCE)
}

/// The margin `z_y − max_{j≠y} z_j` of each row of `logits` (`[N·K]`, row-major).
fn margins(logits: &[f32], labels: &[usize]) -> Vec<f32> {
    let k = logits.len() / labels.len().max(1);
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = &logits[i * k..(i + 1) * k];
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y)
                .map(|(_, &z)| z)
                .fold(f32::NEG_INFINITY, f32::max);
            row[y] - other
        })
        .collect()
}

/// Pintor et al.'s unstable-predictions indicator, per sample: the mean over `draws`
/// uniform perturbations in `[−r/2, r/2]` per pixel (`r` = `radius` × the input range,
/// clipped to the bounds) of `|m(x + δ) − m(x)| / |m(x)|`, where `m` is the margin
/// `z_y − max_{j≠y} z_j` (`|m(x)| = 0` counts as 1, as in the reference).
///
/// The reference measures the attack's own loss; robust measures the margin, because the
/// cross-entropy of a confidently correct sample is so close to zero that its relative
/// change is rounding noise. A smooth model moves its margin by a few percent under such
/// noise; a model whose output jumps (a high-frequency transformation of the input, a
/// randomized defence) moves it by about its own size. Each sample's noise comes from a
/// generator seeded by `seed` and its global index. Several draws go through the model in
/// one pass, up to `max_batch` images (the evaluation's batch size, which bounds memory).
#[allow(clippy::too_many_arguments)]
pub fn unstable_predictions(
    model: &Model,
    x: &Tensor<4>,
    labels: &[usize],
    indices: &[usize],
    seed: u64,
    draws: usize,
    radius: f32,
    max_batch: usize,
) -> Result<Vec<f32>, AttackError> {
    let dims = x.dims();
    let per = dims[1] * dims[2] * dims[3];
    let [lo, hi] = model.info().bounds;
    let width = radius * (hi - lo);
    let base = margins(&to_host(model.forward(x.clone())?), labels);
    let mut rngs: Vec<ChaCha8Rng> = indices
        .iter()
        .map(|&i| ChaCha8Rng::seed_from_u64(mix(&[seed, 0x5354_4142_4C45, i as u64])))
        .collect();
    let mut total = vec![0f64; labels.len()];
    // Several draws per forward pass (up to `max_batch` images): the same noise, drawn in
    // the same order, as one draw per pass; small batches waste most of a pass on a large
    // model.
    let n = labels.len().max(1);
    let group = (max_batch / n).clamp(1, draws.max(1));
    let mut done = 0;
    while done < draws {
        let g = group.min(draws - done);
        let mut noise = Vec::with_capacity(g * labels.len() * per);
        for _ in 0..g {
            for rng in rngs.iter_mut() {
                noise.extend((0..per).map(|_| (rng.random::<f32>() - 0.5) * width));
            }
        }
        let mut stacked = dims;
        stacked[0] *= g;
        let delta = Tensor::<4>::from_data(TensorData::new(noise, stacked.to_vec()), &x.device());
        let repeated = Tensor::cat(vec![x.clone(); g], 0);
        let out = to_host(model.forward((repeated + delta).clamp(lo, hi))?);
        let k = out.len() / (g * n);
        for d in 0..g {
            let m = margins(&out[d * n * k..(d + 1) * n * k], labels);
            for (i, t) in total.iter_mut().enumerate() {
                let scale = if base[i] == 0.0 { 1.0 } else { base[i].abs() };
                *t += f64::from((m[i] - base[i]).abs() / scale);
            }
        }
        done += g;
    }
    Ok(total
        .into_iter()
        .map(|t| (t / draws.max(1) as f64) as f32)
        .collect())
}

/// What [`randomness`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Randomness {
    /// Forward passes compared.
    pub passes: usize,
    /// The largest L2 distance between two passes' outputs of one sample, each output
    /// scaled to unit L2 norm first (AutoAttack flags more than 1e-4).
    pub max_output_change: f32,
    /// Samples whose predicted class was not the same in every pass.
    pub prediction_changes: usize,
}

/// AutoAttack's `check_randomized`: runs `forward` (the outputs `[N·K]` of the same inputs)
/// `passes` times and compares. A deterministic model gives identical outputs; a
/// randomized defence (noise, random transformations, dropout left on) does not, and then
/// needs `autoattack:version=rand` (gradients averaged over several passes).
pub fn randomness(
    mut forward: impl FnMut() -> Result<Vec<f32>, AttackError>,
    k: usize,
    passes: usize,
) -> Result<Randomness, AttackError> {
    let k = k.max(1);
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(passes);
    for _ in 0..passes {
        let z = forward()?;
        let mut unit = Vec::with_capacity(z.len());
        for row in z.chunks(k) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-10;
            unit.extend(row.iter().map(|v| v / norm));
        }
        outputs.push(unit);
    }
    let argmax = |row: &[f32]| {
        let mut best = 0;
        for (j, &v) in row.iter().enumerate().skip(1) {
            if v > row[best] {
                best = j;
            }
        }
        best
    };
    let n = outputs.first().map(|o| o.len() / k).unwrap_or(0);
    let mut out = Randomness {
        passes,
        ..Randomness::default()
    };
    for i in 0..n {
        let rows: Vec<&[f32]> = outputs.iter().map(|o| &o[i * k..(i + 1) * k]).collect();
        if rows.iter().any(|r| argmax(r) != argmax(rows[0])) {
            out.prediction_changes += 1;
        }
        for a in 0..rows.len() {
            for b in a + 1..rows.len() {
                let d = rows[a]
                    .iter()
                    .zip(rows[b])
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum::<f32>()
                    .sqrt();
                if d.is_nan() || d > out.max_output_change {
                    out.max_output_change = if d.is_nan() { f32::INFINITY } else { d };
                }
            }
        }
    }
    Ok(out)
}

/// The range of a model's outputs (AutoAttack's `check_range_output`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutputRange {
    /// Smallest output.
    pub min: f32,
    /// Largest output.
    pub max: f32,
    /// The largest `|Σ_k z_k − 1|` over samples.
    pub max_row_sum_error: f32,
}

impl OutputRange {
    /// Whether the outputs look like probabilities rather than logits: every value in
    /// `[0, 1]` and every row summing to 1, each within 1e-5 (AutoAttack's tolerance).
    pub fn looks_like_probabilities(&self) -> bool {
        self.max < 1.0 + 1e-5 && self.min > -1e-5 && self.max_row_sum_error < 1e-5
    }
}

/// The range of `logits` (`[N·K]`, row-major) and how far its rows are from summing to 1.
pub fn output_range(logits: &[f32], k: usize) -> OutputRange {
    let mut r = OutputRange {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        max_row_sum_error: 0.0,
    };
    for row in logits.chunks(k.max(1)) {
        for &v in row {
            r.min = r.min.min(v);
            r.max = r.max.max(v);
        }
        let sum: f32 = row.iter().sum();
        r.max_row_sum_error = r.max_row_sum_error.max((sum - 1.0).abs());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_improving_follows_the_reference() {
        // The best rose by 4/104 of its range over the last ten values: complete.
        let mut v = vec![0.0, 50.0];
        v.extend([100.0; 15]);
        v.push(104.0);
        assert_eq!(still_improving(&v), Some(false));
        // By 10/110: still improving.
        *v.last_mut().unwrap() = 110.0;
        assert_eq!(still_improving(&v), Some(true));
        // Falling then flat: the running best does not move.
        assert_eq!(still_improving(&[5.0, 4.0, 3.0, 2.0, 1.0]), Some(false));
        assert_eq!(still_improving(&[2.0, 2.0]), Some(false));
        assert_eq!(still_improving(&[f32::NAN, 1.0]), None);
    }

    #[test]
    fn randomness_and_output_range() {
        let mut calls = 0u32;
        let r = randomness(
            || {
                calls += 1;
                Ok(vec![1.0, 2.0, 0.5, 3.0])
            },
            2,
            5,
        )
        .unwrap();
        assert_eq!(calls, 5);
        assert_eq!((r.max_output_change, r.prediction_changes), (0.0, 0));
        let mut flip = false;
        let r = randomness(
            || {
                flip = !flip;
                Ok(if flip {
                    vec![1.0, 2.0, 0.5, 3.0]
                } else {
                    vec![2.0, 1.0, 0.5, 3.0]
                })
            },
            2,
            5,
        )
        .unwrap();
        assert_eq!(r.prediction_changes, 1);
        assert!(r.max_output_change > 0.1);

        assert!(output_range(&[0.2, 0.8, 1.0, 0.0], 2).looks_like_probabilities());
        assert!(!output_range(&[2.0, -1.0, 0.3, 0.7], 2).looks_like_probabilities());
        assert!(!output_range(&[0.2, 0.7], 2).looks_like_probabilities());
    }
}
