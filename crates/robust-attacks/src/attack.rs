//! The extension point: the [`Attack`] trait, and the services an attack may use.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::{activation, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use robust_models::{to_host, Model};

use crate::loss::Loss;
use crate::norm::Norm;
use crate::AttackError;

/// One batch of clean inputs with its labels (and targets, for a targeted attack).
#[derive(Clone, Debug)]
pub struct Batch {
    /// Clean inputs `[N, C, H, W]` in pixel space, on the model's (plain) device.
    pub x: Tensor<4>,
    /// True labels.
    pub labels: Vec<usize>,
    /// Target classes for a targeted attack (`None`: untargeted).
    pub targets: Option<Vec<usize>>,
    /// Global indices of the samples in the data set (seeds per-sample randomness).
    pub indices: Vec<usize>,
    /// One-hot `[N, K]` of the targets if any, else of the labels.
    pub(crate) onehot: Tensor<2>,
    /// The objective's gradient at `x`, from the batch's clean pass (untargeted only).
    pub(crate) clean: Option<Arc<GradientPass>>,
}

/// One forward and backward pass: the gradient of an attack objective, with the logits and
/// objective values of the same forward pass. A batch's clean pass
/// ([`crate::Sweep::clean_pass`]) computes one at the clean inputs, which every attack
/// whose first gradient is taken there gets ([`Attack::clean_start`],
/// [`AttackCtx::clean_gradient`]).
#[derive(Clone, Debug)]
pub struct GradientPass {
    pub(crate) loss: Loss,
    pub(crate) grad: Tensor<4>,
    pub(crate) logits: Vec<f32>,
    pub(crate) objective: Vec<f32>,
}

impl GradientPass {
    /// The loss whose gradient this is.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The logits (`[N·K]`, row-major, on the host).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

impl Batch {
    /// Builds a batch; `num_classes` sizes the one-hot encoding.
    pub fn new(
        x: Tensor<4>,
        labels: Vec<usize>,
        targets: Option<Vec<usize>>,
        indices: Vec<usize>,
        num_classes: usize,
    ) -> Result<Self, AttackError> {
        let n = x.dims()[0];
        if labels.len() != n || indices.len() != n || targets.as_ref().is_some_and(|t| t.len() != n)
        {
            return Err(AttackError::Input(format!(
                "batch of {n} inputs with {} labels and {} indices",
                labels.len(),
                indices.len()
            )));
        }
        let classes = targets.as_ref().unwrap_or(&labels);
        if let Some(&bad) = classes.iter().find(|&&c| c >= num_classes) {
            return Err(AttackError::Input(format!(
                "class {bad} is out of range for a model with {num_classes} classes"
            )));
        }
        let mut hot = vec![0f32; n * num_classes];
        for (i, &c) in classes.iter().enumerate() {
            hot[i * num_classes + c] = 1.0;
        }
        let onehot = Tensor::from_data(TensorData::new(hot, [n, num_classes]), &x.device());
        Ok(Self {
            x,
            labels,
            targets,
            indices,
            onehot,
            clean: None,
        })
    }

    /// Attaches the gradient of the clean pass, for an untargeted batch with the same
    /// inputs; a targeted batch keeps none (its objective differs).
    pub(crate) fn with_clean(mut self, clean: Option<&Arc<GradientPass>>) -> Self {
        if self.targets.is_none() {
            self.clean = clean.cloned();
        }
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether the attack is targeted.
    pub fn targeted(&self) -> bool {
        self.targets.is_some()
    }
}

/// Counts of suspicious gradients, gathered from each run's first gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GradStats {
    /// Samples whose gradient is exactly zero everywhere.
    pub zero: usize,
    /// Samples whose gradient has a NaN or infinite entry.
    pub nonfinite: usize,
}

/// What an attack's iterates showed for one sample: whether any of them was adversarial,
/// and the objective the attack climbed at each (see [`AttackCtx::trace`]). The sweep reads
/// it for two indicators of attack failure (Pintor et al., NeurIPS 2022): *silent success*
/// (an adversarial iterate was found but not returned) and *incomplete optimisation* (the
/// objective was still rising over the last steps).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleTrace {
    /// Whether any traced iterate was adversarial (a wrong class; the target class for a
    /// targeted batch).
    pub adversarial: bool,
    /// The objective at each traced iterate, in the order the attack evaluated them (over
    /// all its restarts and target classes).
    pub objective: Vec<f32>,
}

/// Which component of an ensemble attack (e.g. AutoAttack) broke each sample of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// Component labels, in the order they ran.
    pub components: Vec<String>,
    /// Per sample of the batch: the component that broke it (`None`: misclassified when
    /// clean, or robust to every component).
    pub broken_by: Vec<Option<usize>>,
}

/// What an attack gets to work with: the model's gradients, the input bounds and seeded
/// per-sample randomness. Created by the sweep, one per (attack, epsilon, batch).
pub struct AttackCtx<'a> {
    model: &'a Model,
    bounds: [f32; 2],
    seed: u64,
    stats: GradStats,
    recorded: bool,
    breakdown: Option<Breakdown>,
    traces: BTreeMap<usize, SampleTrace>,
}

impl<'a> AttackCtx<'a> {
    /// A context for `model`; `seed` determines every random choice of the run.
    pub fn new(model: &'a Model, seed: u64) -> Self {
        Self {
            model,
            bounds: model.info().bounds,
            seed,
            stats: GradStats::default(),
            recorded: false,
            breakdown: None,
            traces: BTreeMap::new(),
        }
    }

    /// A context with the same model, bounds and seed, but its own gradient statistics
    /// (for a component of an ensemble attack; merge them back with
    /// [`AttackCtx::absorb`]).
    pub fn child(&self) -> AttackCtx<'a> {
        Self::new(self.model, self.seed)
    }

    /// Takes in a component context's gradient statistics and traces. The components of an
    /// ensemble attack the same samples (each on those still robust), so a count is the
    /// largest of any component's, never more than the batch; traces are appended.
    pub fn absorb(&mut self, child: &AttackCtx<'_>) {
        self.stats.zero = self.stats.zero.max(child.stats.zero);
        self.stats.nonfinite = self.stats.nonfinite.max(child.stats.nonfinite);
        for (&i, t) in &child.traces {
            let mine = self.traces.entry(i).or_default();
            mine.adversarial |= t.adversarial;
            mine.objective.extend_from_slice(&t.objective);
        }
    }

    /// Records one iterate of the attack on `batch`: its logits (`[N·K]`, row-major) and the
    /// per-sample objective the attack climbs (`[N]`), per sample by its global index.
    /// [`AttackCtx::gradient`] calls it on every step; an attack that computes its
    /// gradients with [`AttackCtx::gradient_of`] calls it itself, with the values that
    /// method returns, so that the reports can tell an attack that found an adversarial
    /// iterate but returned another point (silent success), or stopped while its objective
    /// was still rising (incomplete optimisation). Only iterates inside the threat model
    /// (projected and clipped) should be recorded.
    pub fn trace(&mut self, batch: &Batch, logits: &[f32], objective: &[f32]) {
        let n = batch.len();
        if n == 0 || !logits.len().is_multiple_of(n) || objective.len() != n {
            return;
        }
        let k = logits.len() / n;
        for (row, &index) in batch.indices.iter().enumerate() {
            let z = &logits[row * k..(row + 1) * k];
            let mut best = 0;
            for (j, &v) in z.iter().enumerate().skip(1) {
                if v > z[best] {
                    best = j;
                }
            }
            let adversarial = match &batch.targets {
                Some(t) => best == t[row] && t[row] != batch.labels[row],
                None => best != batch.labels[row],
            };
            let t = self.traces.entry(index).or_default();
            t.adversarial |= adversarial;
            t.objective.push(objective[row]);
        }
    }

    /// The traces recorded so far, by global sample index.
    pub fn traces(&self) -> &BTreeMap<usize, SampleTrace> {
        &self.traces
    }

    /// Records which component of an ensemble broke each sample (read by the sweep).
    pub fn set_breakdown(&mut self, breakdown: Breakdown) {
        self.breakdown = Some(breakdown);
    }

    /// The breakdown an ensemble attack recorded, if any.
    pub fn breakdown(&self) -> Option<&Breakdown> {
        self.breakdown.as_ref()
    }

    /// The model under attack.
    pub fn model(&self) -> &Model {
        self.model
    }

    /// The input bounds `[low, high]`.
    pub fn bounds(&self) -> [f32; 2] {
        self.bounds
    }

    /// Clips a batch to the input bounds.
    pub fn clip(&self, x: Tensor<4>) -> Tensor<4> {
        x.clamp(self.bounds[0], self.bounds[1])
    }

    /// One generator per sample of `batch`, derived from the run's seed, the sample's global
    /// index and `stream` (use a different stream for each independent draw, e.g. restarts).
    pub fn sample_rngs(&self, batch: &Batch, stream: u64) -> Vec<ChaCha8Rng> {
        batch
            .indices
            .iter()
            .map(|&i| ChaCha8Rng::seed_from_u64(mix(&[self.seed, stream, i as u64])))
            .collect()
    }

    /// Logits and the per-sample objective for `x` (no gradient).
    pub fn objective(
        &self,
        x: &Tensor<4>,
        batch: &Batch,
        loss: Loss,
    ) -> Result<(Tensor<2>, Vec<f32>), AttackError> {
        let logits = self.model.forward(x.clone())?;
        let obj = loss.objective(logits.clone(), batch.onehot.clone(), batch.targeted());
        Ok((logits, to_host(obj)))
    }

    /// The gradient of the per-sample objective (to be increased) with respect to `x`.
    /// The first call of a run also records zero and non-finite gradients for the reports;
    /// every call records the iterate `x` ([`AttackCtx::trace`]).
    pub fn gradient(
        &mut self,
        x: &Tensor<4>,
        batch: &Batch,
        loss: Loss,
    ) -> Result<Tensor<4>, AttackError> {
        let pass = self.compute_gradient(x, batch, loss)?;
        Ok(self.take(batch, &pass))
    }

    /// [`AttackCtx::gradient`] at the batch's clean inputs (`batch.x`). When the batch's
    /// clean pass already computed it for `loss` (an attack that declares
    /// [`Attack::clean_start`]), that gradient is returned, with no model pass; the
    /// bookkeeping (trace, gradient statistics) is the same as for a fresh one.
    pub fn clean_gradient(&mut self, batch: &Batch, loss: Loss) -> Result<Tensor<4>, AttackError> {
        match &batch.clean {
            Some(clean) if clean.loss == loss => Ok(self.take(batch, clean)),
            _ => self.gradient(&batch.x, batch, loss),
        }
    }

    /// Records a gradient's iterate and statistics, and hands out the gradient.
    fn take(&mut self, batch: &Batch, g: &GradientPass) -> Tensor<4> {
        self.trace(batch, &g.logits, &g.objective);
        self.record(&g.grad);
        g.grad.clone()
    }

    /// One forward and backward pass: the gradient of `loss` at `x`, with its logits and
    /// objective values, no bookkeeping.
    pub(crate) fn compute_gradient(
        &self,
        x: &Tensor<4>,
        batch: &Batch,
        loss: Loss,
    ) -> Result<GradientPass, AttackError> {
        let xg = x.clone().detach().autodiff().require_grad();
        let logits = self.model.forward(xg.clone())?;
        let values = to_host(logits.clone().without_autodiff());
        let onehot = batch.onehot.clone().autodiff();
        let obj = loss.objective(logits, onehot, batch.targeted());
        let objective = to_host(obj.clone().without_autodiff());
        let grads = obj.sum().backward();
        let grad = xg
            .grad(&grads)
            .ok_or_else(|| AttackError::Internal("the input received no gradient".into()))?
            .without_autodiff();
        Ok(GradientPass {
            loss,
            grad,
            logits: values,
            objective,
        })
    }

    /// The gradient of a custom per-sample objective (to be increased) with respect to `x`,
    /// with the logits and objective values of the same forward pass, on the host.
    ///
    /// `objective` gets the logits (on the autodiff device) and their values (`[N·K]`,
    /// row-major), so that it can pick classes by value (sorted logits, targets) before
    /// building the differentiable objective `[N]`. The first call of a run records zero and
    /// non-finite gradients for the reports, as [`AttackCtx::gradient`] does.
    pub fn gradient_of(
        &mut self,
        x: &Tensor<4>,
        objective: impl FnOnce(Tensor<2>, &[f32]) -> Tensor<1>,
    ) -> Result<(Tensor<4>, Vec<f32>, Vec<f32>), AttackError> {
        let xg = x.clone().detach().autodiff().require_grad();
        let logits = self.model.forward(xg.clone())?;
        let values = to_host(logits.clone().without_autodiff());
        let obj = objective(logits, &values);
        let obj_values = to_host(obj.clone().without_autodiff());
        let grads = obj.sum().backward();
        let g = xg
            .grad(&grads)
            .ok_or_else(|| AttackError::Internal("the input received no gradient".into()))?
            .without_autodiff();
        self.record(&g);
        Ok((g, values, obj_values))
    }

    /// Counts zero and non-finite per-sample gradients, once per run (the first gradient).
    fn record(&mut self, g: &Tensor<4>) {
        if !self.recorded {
            self.recorded = true;
            let [n, c, h, w] = g.dims();
            let flat = g.clone().reshape([n, c * h * w]);
            let abs_sum = to_host(flat.abs().sum_dim(1).reshape([n]));
            for s in abs_sum {
                if !s.is_finite() {
                    self.stats.nonfinite += 1;
                } else if s == 0.0 {
                    self.stats.zero += 1;
                }
            }
        }
    }

    /// Gradient statistics recorded so far.
    pub fn grad_stats(&self) -> GradStats {
        self.stats
    }
}

/// Softmax probabilities, predictions and confidences of logits, on the host.
pub fn predictions(logits: Tensor<2>) -> (Vec<usize>, Vec<f32>) {
    let [n, k] = logits.dims();
    let probs = to_host(activation::softmax(logits, 1).reshape([n * k]));
    (0..n)
        .map(|i| {
            let row = &probs[i * k..(i + 1) * k];
            let (best, conf) =
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |acc, (j, &p)| if p > acc.1 { (j, p) } else { acc },
                    );
            (best, conf)
        })
        .unzip()
}

/// SplitMix64-style mixing of several words into one seed.
pub(crate) fn mix(words: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &w in words {
        h ^= w
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// An adversarial attack for one epsilon.
///
/// Required: [`name`](Attack::name), [`norm`](Attack::norm) and [`run`](Attack::run). An
/// attack only proposes adversarial inputs: the sweep over epsilons, the projection onto the
/// ε-ball, the clip to the input bounds and the success bookkeeping are done by
/// [`crate::sweep`], after `run`, in code the attack cannot override.
///
/// ```
/// use burn::tensor::Tensor;
/// use robust_attacks::{Attack, AttackCtx, AttackError, Batch, Loss, Norm};
///
/// /// Adds ε·sign(∇) twice, each time with half the budget.
/// struct TwoHalfSteps;
///
/// impl Attack for TwoHalfSteps {
///     fn name(&self) -> &str { "two-half-steps" }
///     fn norm(&self) -> Norm { Norm::Linf }
///     fn run(&self, ctx: &mut AttackCtx<'_>, batch: &Batch, eps: f32)
///         -> Result<Tensor<4>, AttackError> {
///         let mut x = batch.x.clone();
///         for _ in 0..2 {
///             let g = ctx.gradient(&x, batch, Loss::CrossEntropy)?;
///             x = ctx.clip(x + g.sign().mul_scalar(eps / 2.0));
///         }
///         Ok(x)
///     }
/// }
/// ```
pub trait Attack: Send + Sync {
    /// Short machine name, e.g. `pgd`.
    fn name(&self) -> &str;

    /// The threat model's norm.
    fn norm(&self) -> Norm;

    /// Proposes adversarial inputs for `batch` within `eps` (ε > 0).
    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError>;

    /// Display label, unique within a run, e.g. `PGD-10 Linf` (default: the name and norm).
    fn label(&self) -> String {
        format!("{} {}", self.name(), self.norm())
    }

    /// Every parameter, for reports (default: none beyond name and norm).
    fn params(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Number of gradient steps per run (1 for single-step attacks); reports use it to
    /// compare iterative and single-step attacks.
    fn steps(&self) -> usize {
        1
    }

    /// A minimum-norm attack (Carlini–Wagner, DeepFool) returns itself here, so that the
    /// sweep runs it once per batch and judges what it found at every ε
    /// ([`crate::minimum_norm`]); default: `None`.
    fn minimum_norm(&self) -> Option<&dyn crate::minimum_norm::MinimumNorm> {
        None
    }

    /// The loss of the attack's first gradient when that gradient is taken at the clean
    /// inputs (with [`AttackCtx::clean_gradient`]) on an untargeted batch; default: `None`.
    /// The sweep then computes it in the batch's clean pass, whose forward pass gives the
    /// clean logits too, so that the attack's first step costs no model pass (and one
    /// backward pass serves every attack and ε of the sweep that starts there).
    fn clean_start(&self) -> Option<Loss> {
        None
    }
}
