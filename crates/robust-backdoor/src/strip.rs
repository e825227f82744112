//! STRIP: a run-time screen for inputs that carry a trigger (Gao et al., *STRIP: A Defence
//! Against Trojan Attacks on Deep Neural Networks*, ACSAC 2019).
//!
//! An input is superimposed with `N` clean images drawn at random, and the model predicts
//! each blend. A clean input loses its identity in the blend, so the predictions scatter
//! and their entropy is high; a trigger keeps its grip on the prediction whatever it is
//! blended with, so an input that carries one gives predictions of low entropy. The score
//! is the mean Shannon entropy (bits) of the `N` predicted distributions (the paper's
//! normalised entropy, its equation 2 divided by `N`).
//!
//! The blend is the authors' `cv2.addWeighted(x, 1, y, 1, 0)`: the pixel-wise sum, clipped
//! to the input bounds (for bounds `[lo, hi]`: `clip(x + y − lo, lo, hi)`), which keeps a
//! bright trigger intact.
//!
//! The threshold comes from clean inputs screened the same way (each blended only with
//! other clean samples): at a false-positive rate `r` over `n` clean entropies it is the
//! `⌊r·n⌋ + 1`-th smallest, and an input is flagged when its entropy is *below* it, so at
//! most `⌊r·n⌋` of the clean inputs are flagged.

use burn::tensor::{activation, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robust_models::{to_host, Model};
use serde::Serialize;

use crate::data::CleanSet;
use crate::error::{BackdoorError, Result};
use crate::mix;

/// Settings of the screen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StripConfig {
    /// Clean images blended with each input (`N`; the paper uses 100).
    pub overlays: usize,
    /// The false-positive rate on clean inputs the threshold is set for.
    pub fpr: f64,
    /// Blended images per forward pass.
    pub batch_size: usize,
    /// Seed of the overlay draws.
    pub seed: u64,
}

impl Default for StripConfig {
    fn default() -> Self {
        Self {
            overlays: 100,
            fpr: 0.01,
            batch_size: 256,
            seed: 0,
        }
    }
}

impl StripConfig {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.overlays == 0 {
            return Err(BackdoorError::Input("overlays must be at least 1".into()));
        }
        if !(self.fpr > 0.0 && self.fpr < 1.0) {
            return Err(BackdoorError::Input(
                "the false-positive rate must lie in (0, 1)".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(BackdoorError::Input(
                "the batch size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Shannon entropy in bits of a probability vector (terms with `p = 0` count 0).
///
/// ```
/// assert_eq!(robust_backdoor::entropy_bits(&[0.25; 4]), 2.0);
/// assert_eq!(robust_backdoor::entropy_bits(&[1.0, 0.0]), 0.0);
/// ```
pub fn entropy_bits(p: &[f32]) -> f64 {
    p.iter()
        .map(|&v| f64::from(v))
        .filter(|&v| v > 0.0)
        .map(|v| -v * v.log2())
        .sum()
}

/// The blend of `x` and `y` (same length): the sum clipped to `bounds`,
/// `clip(x + y − lo, lo, hi)`.
pub fn superimpose(x: &[f32], y: &[f32], bounds: [f32; 2], out: &mut Vec<f32>) {
    let [lo, hi] = bounds;
    out.extend(x.iter().zip(y).map(|(&a, &b)| (a + b - lo).clamp(lo, hi)));
}

/// The flagging threshold for a false-positive rate `fpr` over clean entropies: the
/// `⌊fpr·n⌋ + 1`-th smallest (an entropy below it is flagged). `None` without clean values.
pub fn threshold_at_fpr(clean: &[f64], fpr: f64) -> Option<f64> {
    if clean.is_empty() || clean.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = clean.to_vec();
    v.sort_by(f64::total_cmp);
    let k = ((fpr * v.len() as f64).floor() as usize).min(v.len() - 1);
    Some(v[k])
}

/// Whose overlays a screened input may not use.
#[derive(Clone, Copy, Debug)]
pub enum Exclude {
    /// Any clean sample may be blended with any input (inputs from elsewhere).
    None,
    /// Input `i` is clean sample `i`: it is never blended with itself.
    SameIndex,
}

/// The mean prediction entropy of each input (`n · C · H · W` values) blended with
/// `cfg.overlays` clean samples of `pool`, drawn per input from `(seed, stream, index)`.
/// `on_input` is called once per input done.
pub fn strip_entropies(
    model: &Model,
    inputs: &[f32],
    pool: &CleanSet,
    exclude: Exclude,
    stream: u64,
    cfg: &StripConfig,
    on_input: &mut dyn FnMut(),
) -> Result<Vec<f64>> {
    cfg.validate()?;
    let per = pool.sample_len();
    let [c, h, w] = pool.shape;
    if !inputs.len().is_multiple_of(per) {
        return Err(BackdoorError::Input(format!(
            "{} input values do not make images of shape {:?}",
            inputs.len(),
            pool.shape
        )));
    }
    let n = inputs.len() / per;
    let available = match exclude {
        Exclude::None => pool.len(),
        Exclude::SameIndex => pool.len().saturating_sub(1),
    };
    if available < cfg.overlays {
        return Err(BackdoorError::Input(format!(
            "{} overlays per input need at least {} clean samples to draw from; there are {}",
            cfg.overlays,
            cfg.overlays + usize::from(matches!(exclude, Exclude::SameIndex)),
            pool.len()
        )));
    }
    let bounds = model.info().bounds;
    let device = model.device();
    let mut sums = vec![0f64; n];
    let mut pending: Vec<usize> = Vec::with_capacity(cfg.batch_size);
    let mut pixels: Vec<f32> = Vec::with_capacity(cfg.batch_size * per);
    let mut flush = |pending: &mut Vec<usize>, pixels: &mut Vec<f32>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let m = pending.len();
        let x = Tensor::<4>::from_data(
            TensorData::new(std::mem::take(pixels), [m, c, h, w]),
            device,
        );
        let logits = model.forward(x)?;
        let k = logits.dims()[1];
        let probs = to_host(activation::softmax(logits, 1));
        for (r, &owner) in pending.iter().enumerate() {
            let e = entropy_bits(&probs[r * k..(r + 1) * k]);
            if !e.is_finite() {
                return Err(BackdoorError::Input(format!(
                    "the model's outputs are not finite on a blend of input {owner}"
                )));
            }
            sums[owner] += e;
        }
        pending.clear();
        Ok(())
    };
    let mut candidates: Vec<usize> = Vec::with_capacity(pool.len());
    for i in 0..n {
        let x = &inputs[i * per..(i + 1) * per];
        let mut rng = ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, stream, i as u64]));
        candidates.clear();
        candidates.extend((0..pool.len()).filter(|&j| match exclude {
            Exclude::None => true,
            Exclude::SameIndex => j != i,
        }));
        // A partial Fisher–Yates draw of `overlays` distinct samples.
        for d in 0..cfg.overlays {
            let j = rng.random_range(d..candidates.len());
            candidates.swap(d, j);
            superimpose(x, pool.sample(candidates[d]), bounds, &mut pixels);
            pending.push(i);
            if pending.len() == cfg.batch_size {
                flush(&mut pending, &mut pixels)?;
            }
        }
        on_input();
    }
    flush(&mut pending, &mut pixels)?;
    Ok(sums.iter().map(|s| s / cfg.overlays as f64).collect())
}

/// One screened input.
#[derive(Clone, Debug, Serialize)]
pub struct ScreenedInput {
    /// Its index in the screened set.
    pub index: usize,
    /// Its mean blend entropy (bits).
    pub entropy: f64,
    /// The model's prediction on the input itself.
    pub predicted: usize,
    /// Entropy below the threshold.
    pub flagged: bool,
}

/// The STRIP screen of a set of inputs.
#[derive(Clone, Debug, Serialize)]
pub struct StripReport {
    /// The settings used.
    pub config: StripConfig,
    /// Clean inputs the threshold came from.
    pub clean_samples: usize,
    /// Their entropies, in order.
    pub clean_entropies: Vec<f64>,
    /// The threshold: entropies below it are flagged.
    pub threshold: f64,
    /// Clean inputs below the threshold (at most `⌊fpr · clean_samples⌋`).
    pub clean_flagged: usize,
    /// Every screened input, in order.
    pub inputs: Vec<ScreenedInput>,
    /// Indices of the flagged inputs.
    pub flagged: Vec<usize>,
}

/// Calibrates the threshold on `clean` (each blended with the others) and screens `inputs`
/// (`n · C · H · W` values) against it. `on_input` is called once per clean or screened
/// input done.
pub fn strip_screen(
    model: &Model,
    clean: &CleanSet,
    inputs: &[f32],
    cfg: &StripConfig,
    on_input: &mut dyn FnMut(),
) -> Result<StripReport> {
    cfg.validate()?;
    let clean_entropies = strip_entropies(
        model,
        &clean.pixels,
        clean,
        Exclude::SameIndex,
        0,
        cfg,
        on_input,
    )?;
    let threshold = threshold_at_fpr(&clean_entropies, cfg.fpr)
        .ok_or_else(|| BackdoorError::Input("no clean sample to set the threshold".into()))?;
    let entropies = strip_entropies(model, inputs, clean, Exclude::None, 1, cfg, on_input)?;
    let per = clean.sample_len();
    let [c, h, w] = clean.shape;
    let mut predicted = Vec::with_capacity(entropies.len());
    for chunk in inputs.chunks(cfg.batch_size * per) {
        let m = chunk.len() / per;
        let x = Tensor::<4>::from_data(
            TensorData::new(chunk.to_vec(), [m, c, h, w]),
            model.device(),
        );
        predicted.extend(crate::cleanse::argmax_rows(model.forward(x)?));
    }
    let screened: Vec<ScreenedInput> = entropies
        .iter()
        .zip(predicted)
        .enumerate()
        .map(|(index, (&entropy, predicted))| ScreenedInput {
            index,
            entropy,
            predicted,
            flagged: entropy < threshold,
        })
        .collect();
    Ok(StripReport {
        config: cfg.clone(),
        clean_samples: clean.len(),
        clean_flagged: clean_entropies.iter().filter(|&&e| e < threshold).count(),
        clean_entropies,
        threshold,
        flagged: screened
            .iter()
            .filter(|s| s.flagged)
            .map(|s| s.index)
            .collect(),
        inputs: screened,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_distributions() {
        assert_eq!(entropy_bits(&[1.0]), 0.0);
        assert_eq!(entropy_bits(&[0.5, 0.5]), 1.0);
        // Uniform over 10 classes: log2 10 (up to 0.1 not being exact in f32).
        let p = f64::from(0.1f32);
        assert!((entropy_bits(&[0.1; 10]) - (-10.0 * p * p.log2())).abs() < 1e-12);
        assert!((entropy_bits(&[0.1; 10]) - 10f64.log2()).abs() < 1e-6);
        // Closed form for (p, 1 − p): −p log2 p − (1 − p) log2 (1 − p).
        for &p in &[0.01f32, 0.2, 0.375, 0.9] {
            let (a, b) = (f64::from(p), f64::from(1.0 - p));
            let want = -a * a.log2() - b * b.log2();
            assert!((entropy_bits(&[p, 1.0 - p]) - want).abs() < 1e-12);
        }
        // Zero probabilities add nothing; order does not matter.
        assert_eq!(entropy_bits(&[0.5, 0.0, 0.5]), 1.0);
        assert_eq!(entropy_bits(&[0.25, 0.5, 0.25]), 1.5);
    }

    #[test]
    fn blends_are_clipped_sums() {
        let mut out = Vec::new();
        superimpose(&[0.0, 0.4, 0.9], &[0.3, 0.4, 0.9], [0.0, 1.0], &mut out);
        assert_eq!(out, vec![0.3, 0.8, 1.0]);
        out.clear();
        // Bounds [-1, 1]: -1 is "black", so black + x = x.
        superimpose(&[-1.0, 0.5], &[0.2, 0.9], [-1.0, 1.0], &mut out);
        assert!((out[0] - 0.2).abs() < 1e-6 && out[1] == 1.0, "{out:?}");
    }

    #[test]
    fn threshold_keeps_the_false_positive_rate() {
        let clean: Vec<f64> = (0..200).map(|i| f64::from(i) / 10.0).collect();
        // fpr 1%: floor(2) = 2 values below the threshold -> threshold is the 3rd smallest.
        let t = threshold_at_fpr(&clean, 0.01).unwrap();
        assert_eq!(t, 0.2);
        assert_eq!(clean.iter().filter(|&&e| e < t).count(), 2);
        // Fewer than 1/fpr values: nothing below the smallest.
        assert_eq!(threshold_at_fpr(&[3.0, 1.0, 2.0], 0.01), Some(1.0));
        assert_eq!(threshold_at_fpr(&[], 0.01), None);
    }
}
