//! Minimum-norm attacks (Carlini–Wagner L2, DeepFool): attacks that look for the smallest
//! adversarial perturbation of each point, whatever ε, and how the sweep judges them.
//!
//! A minimum-norm attack implements [`MinimumNorm::find`] (ε-independent) and returns itself
//! from [`Attack::minimum_norm`]. The sweep then runs it **once per batch**, not once per ε
//! ([`Found::run`]), and at each ε counts a point as broken when the perturbation it found is
//! adversarial and no larger than ε ([`Found::within`]); everything else (projection, clip,
//! prediction, bookkeeping) is the shared judgement of [`crate::attack_at`]. The reports add
//! the median of the smallest perturbations found ([`median_minimum_norm`]), over the points
//! classified correctly when clean, with the points no perturbation broke counted as +∞.
//!
//! [`Attack::run`] of such an attack (used when something calls [`crate::attack_at`]
//! directly, e.g. a reliability check) finds and then keeps what lies within ε
//! ([`run_within`]): the same answer, without the cache.

use burn::tensor::{Tensor, TensorData};

use crate::apgd::argmax_rows;
use crate::attack::{Attack, AttackCtx, Batch, GradStats};
use crate::norm::Norm;
use crate::AttackError;

/// A minimum-norm attack: per point, the smallest adversarial perturbation it can find.
///
/// Required: [`find`](MinimumNorm::find). An attack that implements it also implements
/// [`Attack`], returns `Some(self)` from [`Attack::minimum_norm`] and answers
/// [`Attack::run`] with [`run_within`].
pub trait MinimumNorm {
    /// Per sample of `batch`, the adversarial input with the smallest perturbation found, in
    /// the input bounds (the clean input where none was found). Independent of ε.
    fn find(&self, ctx: &mut AttackCtx<'_>, batch: &Batch) -> Result<Tensor<4>, AttackError>;
}

/// What a minimum-norm attack found on one batch, judged once: the inputs found and, per
/// sample, the size of the perturbation in the attack's norm (+∞ where the input found is
/// not adversarial: a wrong class, or the target class for a targeted batch).
pub struct Found {
    pixels: Vec<f32>,
    sizes: Vec<f32>,
    dims: [usize; 4],
    grad: GradStats,
}

impl Found {
    /// Runs `attack` on `batch` with a context seeded by `seed` and judges what it found.
    pub fn run(
        model: &robust_models::Model,
        attack: &dyn MinimumNorm,
        norm: Norm,
        batch: &Batch,
        seed: u64,
    ) -> Result<Self, AttackError> {
        let mut ctx = AttackCtx::new(model, seed);
        let found = attack.find(&mut ctx, batch)?;
        let mut out = Self::judge(&ctx, batch, norm, found)?;
        out.grad = ctx.grad_stats();
        Ok(out)
    }

    /// Clips `found` to the input bounds, predicts it and measures its perturbations.
    pub fn judge(
        ctx: &AttackCtx<'_>,
        batch: &Batch,
        norm: Norm,
        found: Tensor<4>,
    ) -> Result<Self, AttackError> {
        let dims = batch.x.dims();
        if found.dims() != dims {
            return Err(AttackError::Internal(format!(
                "a minimum-norm attack returned shape {:?} for inputs of shape {dims:?}",
                found.dims()
            )));
        }
        let found = ctx.clip(found);
        let z = robust_models::to_host(ctx.model().forward(found.clone())?);
        let pred = argmax_rows(&z, z.len() / batch.len().max(1));
        let sizes = norm.measure(found.clone() - batch.x.clone());
        let sizes = sizes
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let adversarial = match &batch.targets {
                    Some(t) => pred[i] == t[i] && t[i] != batch.labels[i],
                    None => pred[i] != batch.labels[i],
                };
                if adversarial {
                    s
                } else {
                    f32::INFINITY
                }
            })
            .collect();
        Ok(Self {
            pixels: robust_models::to_host(found),
            sizes,
            dims,
            grad: GradStats::default(),
        })
    }

    /// Per sample, the size of the smallest adversarial perturbation found (+∞: none).
    pub fn sizes(&self) -> &[f32] {
        &self.sizes
    }

    /// Gradient statistics of the run.
    pub fn grad_stats(&self) -> GradStats {
        self.grad
    }

    /// The inputs to judge at `eps`: per sample, the input found where its perturbation is
    /// adversarial and at most `eps`, else the clean input (rows copied, not recomputed).
    pub fn within(&self, batch: &Batch, eps: f32) -> Tensor<4> {
        let per = self.dims[1] * self.dims[2] * self.dims[3];
        let mut out = robust_models::to_host(batch.x.clone());
        for (i, &s) in self.sizes.iter().enumerate() {
            if s <= eps {
                out[i * per..(i + 1) * per].copy_from_slice(&self.pixels[i * per..(i + 1) * per]);
            }
        }
        Tensor::from_data(TensorData::new(out, self.dims.to_vec()), &batch.x.device())
    }
}

/// [`Attack::run`] for a minimum-norm attack: find, then keep what lies within `eps`.
pub fn run_within(
    attack: &dyn MinimumNorm,
    norm: Norm,
    ctx: &mut AttackCtx<'_>,
    batch: &Batch,
    eps: f32,
) -> Result<Tensor<4>, AttackError> {
    let found = attack.find(ctx, batch)?;
    Ok(Found::judge(ctx, batch, norm, found)?.within(batch, eps))
}

/// The attack the sweep runs at each ε once a minimum-norm attack has run on the batch: it
/// answers with what was found ([`Found::within`]), under the original's name and norm.
pub(crate) struct Cached<'a> {
    pub(crate) attack: &'a dyn Attack,
    pub(crate) found: &'a Found,
}

impl Attack for Cached<'_> {
    fn name(&self) -> &str {
        self.attack.name()
    }

    fn norm(&self) -> Norm {
        self.attack.norm()
    }

    fn run(
        &self,
        _ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        Ok(self.found.within(batch, eps))
    }
}

/// An f32 setting as the decimal it was written as (0.02, not 0.019999999552965164), for
/// the reports' parameters.
pub(crate) fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The median of the smallest adversarial perturbations of the points classified correctly
/// when clean, with the points no perturbation broke counted as +∞ (so the median is +∞
/// when at least half of them are unbroken; the mean of the two middle values for an even
/// count, as NumPy's `median`). `sizes` holds one value per sample: 0 for a sample
/// misclassified when clean (already adversarial), else its smallest perturbation or +∞;
/// `clean_correct` is the number of samples classified correctly. `None` when there are
/// none.
pub fn median_minimum_norm(sizes: &[f32], clean_correct: usize) -> Option<f64> {
    if clean_correct == 0 || clean_correct > sizes.len() {
        return None;
    }
    let mut v: Vec<f64> = sizes.iter().map(|&s| f64::from(s)).collect();
    v.sort_by(f64::total_cmp);
    // The misclassified samples are the zeros at the front.
    let v = &v[sizes.len() - clean_correct..];
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median_minimum_norm;

    #[test]
    fn the_median_skips_misclassified_points_and_counts_unbroken_as_infinite() {
        let inf = f32::INFINITY;
        // Two misclassified (0), four correct: 1, 3, 2, +∞ → median (2 + 3)/2.
        assert_eq!(
            median_minimum_norm(&[0.0, 1.0, 3.0, 0.0, 2.0, inf], 4),
            Some(2.5)
        );
        assert_eq!(
            median_minimum_norm(&[0.5, inf, inf], 3),
            Some(f64::INFINITY)
        );
        assert_eq!(median_minimum_norm(&[0.5, inf, 0.25], 3), Some(0.5));
        assert_eq!(median_minimum_norm(&[0.0, 0.0], 0), None);
    }
}
