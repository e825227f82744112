//! The shared evaluation loop: for every batch, every attack and every ε, run the attack,
//! project onto the ε-ball, clip to the bounds, predict, and count.
//!
//! This is the code an attack cannot get wrong: whatever [`Attack::run`] returns is projected
//! and clipped here before it is judged, and the statistics (robust accuracy, success rate,
//! perturbation sizes, per-class counts, per-sample outcomes for a worst case over attacks)
//! are kept in one place.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use rand::RngExt;

use crate::attack::{
    mix, predictions, Attack, AttackCtx, Batch, Breakdown, GradStats, GradientPass,
};
use crate::loss::Loss;
use crate::minimum_norm::{Cached, Found};
use crate::AttackError;
use robust_models::Model;

/// How a targeted attack picks its target class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// Untargeted: any wrong class is a success.
    #[default]
    None,
    /// A uniformly random class other than the true one (seeded per sample).
    Random,
    /// The class with the lowest clean logit.
    LeastLikely,
    /// One given class for every sample.
    Class(usize),
}

impl std::fmt::Display for TargetMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("untargeted"),
            Self::Random => f.write_str("random"),
            Self::LeastLikely => f.write_str("least-likely"),
            Self::Class(c) => write!(f, "class {c}"),
        }
    }
}

/// One attack with its ε values and targeting.
pub struct AttackPlan {
    /// The attack.
    pub attack: Box<dyn Attack>,
    /// The ε values to sweep (0 means the clean input).
    pub eps: Vec<f32>,
    /// Targeting.
    pub target: TargetMode,
}

/// The per-sample result of one attack at one ε on one batch.
pub struct EpsOutcome {
    /// The adversarial batch, projected and clipped.
    pub adv: Tensor<4>,
    /// Predicted classes on `adv`.
    pub pred: Vec<usize>,
    /// Softmax confidence of those predictions.
    pub conf: Vec<f32>,
    /// Whether the attack reached its goal (a wrong class, or the target).
    pub success: Vec<bool>,
    /// Size of the perturbation in the attack's norm.
    pub perturbation: Vec<f32>,
    /// Gradient statistics of the run.
    pub grad: GradStats,
    /// For an ensemble attack: which component broke each sample.
    pub breakdown: Option<Breakdown>,
    /// Per sample: the number of iterates the attack recorded ([`AttackCtx::trace`]).
    pub iterates: Vec<usize>,
    /// Per sample: whether any iterate the attack recorded was adversarial
    /// ([`AttackCtx::trace`]; false when it recorded none).
    pub iterate_adversarial: Vec<bool>,
    /// Per sample: whether the attack's objective was still rising when it stopped
    /// ([`crate::indicators::still_improving`]); `None` with fewer than two recorded steps.
    pub still_improving: Vec<Option<bool>>,
}

/// Runs `attack` at `eps` on `batch`, then projects, clips and judges the result.
pub fn attack_at(
    model: &Model,
    attack: &dyn Attack,
    batch: &Batch,
    eps: f32,
    seed: u64,
) -> Result<EpsOutcome, AttackError> {
    if eps < 0.0 || !eps.is_finite() {
        return Err(AttackError::Input(format!(
            "epsilon {eps} must be a finite number ≥ 0"
        )));
    }
    let mut ctx = AttackCtx::new(model, seed);
    let raw = if eps > 0.0 {
        attack.run(&mut ctx, batch, eps)?
    } else {
        batch.x.clone()
    };
    if raw.dims() != batch.x.dims() {
        return Err(AttackError::Internal(format!(
            "attack '{}' returned shape {:?} for inputs of shape {:?}",
            attack.name(),
            raw.dims(),
            batch.x.dims()
        )));
    }
    let norm = attack.norm();
    let adv = ctx.clip(norm.project(&batch.x, raw, eps));
    let logits = model.forward(adv.clone())?;
    let (pred, conf) = predictions(logits);
    let success = match &batch.targets {
        Some(t) => pred
            .iter()
            .zip(t)
            .zip(&batch.labels)
            .map(|((p, t), y)| p == t && t != y)
            .collect(),
        None => pred
            .iter()
            .zip(&batch.labels)
            .map(|(p, y)| p != y)
            .collect(),
    };
    let perturbation = norm.measure(adv.clone() - batch.x.clone());
    let traces = ctx.traces();
    let trace = |i: usize| traces.get(&batch.indices[i]);
    let iterates = (0..batch.len())
        .map(|i| trace(i).map_or(0, |t| t.objective.len()))
        .collect();
    let iterate_adversarial = (0..batch.len())
        .map(|i| trace(i).is_some_and(|t| t.adversarial))
        .collect();
    let still_improving = (0..batch.len())
        .map(|i| trace(i).and_then(|t| crate::indicators::still_improving(&t.objective)))
        .collect();
    Ok(EpsOutcome {
        adv,
        pred,
        conf,
        success,
        perturbation,
        grad: ctx.grad_stats(),
        breakdown: ctx.breakdown().cloned(),
        iterates,
        iterate_adversarial,
        still_improving,
    })
}

impl EpsOutcome {
    /// Whether the attack recorded any iterate of sample `i` of the batch.
    pub fn traced(&self, i: usize) -> bool {
        self.iterates.get(i).is_some_and(|&n| n > 0)
    }
}

/// Aggregated results of one attack at one ε.
#[derive(Clone, Debug, Default)]
pub struct PointStats {
    /// ε.
    pub eps: f32,
    /// Samples evaluated.
    pub n: usize,
    /// Samples correct on the clean input.
    pub clean_correct: usize,
    /// Samples correct on the clean AND the adversarial input.
    pub robust_correct: usize,
    /// Clean-correct samples on which the attack succeeded.
    pub fooled: usize,
    /// Sum of perturbation sizes over all samples.
    pub perturbation_sum: f64,
    /// Largest perturbation size.
    pub perturbation_max: f32,
    /// Samples per true class.
    pub per_class_n: Vec<usize>,
    /// Robust-correct samples per true class.
    pub per_class_robust: Vec<usize>,
    /// Samples with an all-zero first gradient.
    pub zero_grad: usize,
    /// Samples with a non-finite first gradient.
    pub nonfinite_grad: usize,
    /// Per sample (in evaluation order): correct on clean and adversarial.
    pub robust: Vec<bool>,
    /// Per sample (in evaluation order): the perturbation's size in the attack's norm
    /// (what `perturbation_sum` adds up, in this order; `robust merge` re-adds them).
    pub perturbations: Vec<f32>,
    /// For a minimum-norm attack ([`crate::minimum_norm`]), per sample (in evaluation
    /// order): the smallest adversarial perturbation it found, the same at every ε (0 for a
    /// sample misclassified when clean, +∞ where none was found); empty for other attacks.
    pub minimum_norms: Vec<f32>,
    /// For an ensemble attack (AutoAttack): its components in the order they ran (empty for
    /// a single attack).
    pub components: Vec<String>,
    /// For an ensemble attack, per sample (in evaluation order): the component that broke
    /// it (`None`: misclassified when clean, or robust).
    pub broken_by: Vec<Option<usize>>,
    /// Clean-correct samples of which the attack recorded at least one iterate
    /// ([`AttackCtx::trace`]): those the silent-success indicator can judge.
    pub traced: usize,
    /// Clean-correct samples the attack failed on although one of its iterates was
    /// adversarial (silent success).
    pub silent_success: usize,
    /// Clean-correct samples the attack failed on with at least two recorded steps: those
    /// the incomplete-optimisation indicator can judge.
    pub traced_failures: usize,
    /// Of those, the samples whose objective was still rising when the attack stopped.
    pub incomplete: usize,
}

impl PointStats {
    /// For an ensemble attack: per component, the samples it broke (evaluation order) and
    /// the robust accuracy after it ran (the last equals [`PointStats::robust_accuracy`]).
    pub fn component_results(&self) -> Vec<(String, Vec<usize>, f64)> {
        let mut left = self.clean_correct;
        self.components
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let samples: Vec<usize> = (0..self.broken_by.len())
                    .filter(|&i| self.broken_by[i] == Some(c))
                    .collect();
                left = left.saturating_sub(samples.len());
                (name.clone(), samples, ratio(left, self.n))
            })
            .collect()
    }
}

impl PointStats {
    /// Robust accuracy (robust-correct / n).
    pub fn robust_accuracy(&self) -> f64 {
        ratio(self.robust_correct, self.n)
    }

    /// Attack success rate among clean-correct samples.
    pub fn success_rate(&self) -> f64 {
        ratio(self.fooled, self.clean_correct)
    }

    /// For a minimum-norm attack: the median of the smallest adversarial perturbations
    /// found, over the samples classified correctly when clean, unbroken ones counted as +∞
    /// ([`crate::minimum_norm::median_minimum_norm`]); `None` for other attacks.
    pub fn median_minimum_norm(&self) -> Option<f64> {
        if self.minimum_norms.is_empty() {
            return None;
        }
        crate::minimum_norm::median_minimum_norm(&self.minimum_norms, self.clean_correct)
    }

    /// Mean perturbation size.
    pub fn mean_perturbation(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.perturbation_sum / self.n as f64
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// A sample kept for the report's example grid.
#[derive(Clone, Debug)]
pub struct ExampleImage {
    /// Index of the plan (attack) in the sweep.
    pub plan: usize,
    /// ε.
    pub eps: f32,
    /// Sample index in evaluation order.
    pub index: usize,
    /// True class.
    pub label: usize,
    /// Clean prediction and confidence.
    pub clean: (usize, f32),
    /// Adversarial prediction and confidence.
    pub adv: (usize, f32),
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// Clean pixels.
    pub clean_pixels: Vec<f32>,
    /// Adversarial pixels.
    pub adv_pixels: Vec<f32>,
}

/// Clean accuracy counts.
#[derive(Clone, Debug, Default)]
pub struct CleanStats {
    /// Samples evaluated.
    pub n: usize,
    /// Correct samples.
    pub correct: usize,
    /// Samples per class.
    pub per_class_n: Vec<usize>,
    /// Correct samples per class.
    pub per_class_correct: Vec<usize>,
}

/// A batch's clean pass ([`Sweep::clean_pass`]).
#[derive(Clone, Debug)]
pub struct CleanPass {
    /// The clean logits `[N, K]`, on the model's device.
    pub logits: Tensor<2>,
    /// The first gradient of the plans that start at the clean inputs.
    gradient: Option<Arc<GradientPass>>,
}

/// A whole sweep: plans in, statistics out, fed one batch at a time.
pub struct Sweep {
    /// The attacks and their ε values.
    pub plans: Vec<AttackPlan>,
    /// Statistics per plan and ε (same order as `plans[k].eps`).
    pub stats: Vec<Vec<PointStats>>,
    /// Clean accuracy.
    pub clean: CleanStats,
    /// Examples kept for the report.
    pub examples: Vec<ExampleImage>,
    seed: u64,
    num_classes: usize,
    examples_per_point: usize,
}

impl Sweep {
    /// A sweep over `plans` for a model with `num_classes` classes.
    pub fn new(
        plans: Vec<AttackPlan>,
        num_classes: usize,
        seed: u64,
        examples_per_point: usize,
    ) -> Self {
        let stats = plans
            .iter()
            .map(|p| {
                p.eps
                    .iter()
                    .map(|&eps| PointStats {
                        eps,
                        per_class_n: vec![0; num_classes],
                        per_class_robust: vec![0; num_classes],
                        ..Default::default()
                    })
                    .collect()
            })
            .collect();
        Self {
            plans,
            stats,
            clean: CleanStats {
                per_class_n: vec![0; num_classes],
                per_class_correct: vec![0; num_classes],
                ..Default::default()
            },
            examples: Vec::new(),
            seed,
            num_classes,
            examples_per_point,
        }
    }

    /// Runs every plan at every ε on one batch. `x` is on the model's device; `indices` are
    /// the samples' positions in evaluation order. `progress` is called after each (plan, ε).
    pub fn run_batch(
        &mut self,
        model: &Model,
        x: Tensor<4>,
        labels: Vec<usize>,
        indices: Vec<usize>,
        progress: impl FnMut(),
    ) -> Result<(), AttackError> {
        let clean = self.clean_pass(model, &x, &labels, &indices)?;
        self.run_batch_with_clean(model, x, clean, labels, indices, progress)
    }

    /// The loss of the gradient a batch's clean pass computes: that of the first untargeted
    /// plan (at some ε > 0) whose attack takes its first gradient at the clean inputs
    /// ([`Attack::clean_start`]); `None` when no plan does.
    pub fn clean_loss(&self) -> Option<Loss> {
        self.plans
            .iter()
            .filter(|p| matches!(p.target, TargetMode::None))
            .filter(|p| p.eps.iter().any(|&e| e > 0.0))
            .filter(|p| p.attack.minimum_norm().is_none())
            .find_map(|p| p.attack.clean_start())
    }

    /// The batch's clean pass: the model's logits of `x` and, when a plan starts at the
    /// clean inputs ([`Sweep::clean_loss`]), the gradient of its loss from the same forward
    /// pass, which that plan's first step (at every ε) then takes instead of a pass of its
    /// own. The logits and the gradient are those the separate passes give, bit for bit.
    pub fn clean_pass(
        &self,
        model: &Model,
        x: &Tensor<4>,
        labels: &[usize],
        indices: &[usize],
    ) -> Result<CleanPass, AttackError> {
        let Some(loss) = self.clean_loss() else {
            return Ok(CleanPass {
                logits: model.forward(x.clone())?,
                gradient: None,
            });
        };
        let batch = Batch::new(
            x.clone(),
            labels.to_vec(),
            None,
            indices.to_vec(),
            self.num_classes,
        )?;
        let pass = AttackCtx::new(model, self.seed).compute_gradient(x, &batch, loss)?;
        let n = labels.len();
        let k = pass.logits().len().checked_div(n).unwrap_or(0);
        let logits =
            Tensor::from_data(TensorData::new(pass.logits().to_vec(), [n, k]), &x.device());
        Ok(CleanPass {
            logits,
            gradient: Some(Arc::new(pass)),
        })
    }

    /// [`Sweep::run_batch`] with the batch's clean pass already done
    /// ([`Sweep::clean_pass`]), for a caller that needed the clean logits first (to check
    /// them), so that the batch's clean pass runs once.
    pub fn run_batch_with_clean(
        &mut self,
        model: &Model,
        x: Tensor<4>,
        clean: CleanPass,
        labels: Vec<usize>,
        indices: Vec<usize>,
        mut progress: impl FnMut(),
    ) -> Result<(), AttackError> {
        let CleanPass {
            logits: clean_logits,
            gradient: clean_gradient,
        } = clean;
        let k = self.num_classes;
        let [n, kk] = clean_logits.dims();
        if n != labels.len() || kk != k {
            return Err(AttackError::Internal(format!(
                "clean logits of shape [{n}, {kk}] for {} samples and {k} classes",
                labels.len()
            )));
        }
        let (clean_pred, clean_conf) = predictions(clean_logits.clone());
        let clean_ok: Vec<bool> = clean_pred
            .iter()
            .zip(&labels)
            .map(|(p, y)| p == y)
            .collect();
        self.clean.n += labels.len();
        for (i, &y) in labels.iter().enumerate() {
            self.clean.per_class_n[y] += 1;
            if clean_ok[i] {
                self.clean.correct += 1;
                self.clean.per_class_correct[y] += 1;
            }
        }
        let mut host_x: Option<Vec<f32>> = None;
        let [_, c, h, w] = x.dims();
        for p in 0..self.plans.len() {
            let targets = self.targets_for(p, &clean_logits, &labels, &indices);
            let batch = Batch::new(x.clone(), labels.clone(), targets, indices.clone(), k)?
                .with_clean(clean_gradient.as_ref());
            // A minimum-norm attack runs once per batch, whatever ε; each ε judges its result.
            let found = match self.plans[p].attack.minimum_norm() {
                Some(mn) if self.plans[p].eps.iter().any(|&e| e > 0.0) => {
                    let seed = mix(&[self.seed, p as u64, 0x4D49_4E5F_4E4F_524D]);
                    let norm = self.plans[p].attack.norm();
                    Some(Found::run(model, mn, norm, &batch, seed)?)
                }
                _ => None,
            };
            for e in 0..self.plans[p].eps.len() {
                let eps = self.plans[p].eps[e];
                let seed = mix(&[self.seed, p as u64, eps.to_bits() as u64]);
                let out = match &found {
                    Some(found) => {
                        let cached = Cached {
                            attack: self.plans[p].attack.as_ref(),
                            found,
                        };
                        let mut out = attack_at(model, &cached, &batch, eps, seed)?;
                        if eps > 0.0 {
                            out.grad = found.grad_stats();
                        }
                        out
                    }
                    None => attack_at(model, self.plans[p].attack.as_ref(), &batch, eps, seed)?,
                };
                let st = &mut self.stats[p][e];
                st.zero_grad += out.grad.zero;
                st.nonfinite_grad += out.grad.nonfinite;
                // Example slots still free for this (attack, ε), counted once per batch.
                let free = self.examples_per_point.saturating_sub(
                    self.examples
                        .iter()
                        .filter(|ex| ex.plan == p && ex.eps == eps)
                        .count(),
                );
                let mut keep = Vec::new();
                for i in 0..labels.len() {
                    let y = labels[i];
                    let robust = clean_ok[i] && out.pred[i] == y;
                    st.n += 1;
                    st.per_class_n[y] += 1;
                    if clean_ok[i] {
                        st.clean_correct += 1;
                        if out.success[i] {
                            st.fooled += 1;
                        }
                    }
                    if robust {
                        st.robust_correct += 1;
                        st.per_class_robust[y] += 1;
                    }
                    st.robust.push(robust);
                    if clean_ok[i] && out.traced(i) {
                        st.traced += 1;
                        if !out.success[i] && out.iterate_adversarial[i] {
                            st.silent_success += 1;
                        }
                    }
                    if let (true, false, Some(rising)) =
                        (clean_ok[i], out.success[i], out.still_improving[i])
                    {
                        st.traced_failures += 1;
                        st.incomplete += usize::from(rising);
                    }
                    if let Some(b) = &out.breakdown {
                        if st.components.is_empty() {
                            st.components.clone_from(&b.components);
                        }
                        // The sweep's own judgement wins: a sample it finds robust was
                        // broken by no component.
                        let by = b.broken_by.get(i).copied().flatten();
                        st.broken_by
                            .push(if robust || !clean_ok[i] { None } else { by });
                    }
                    let d = out.perturbation[i];
                    st.perturbations.push(d);
                    if let Some(found) = &found {
                        st.minimum_norms
                            .push(if clean_ok[i] { found.sizes()[i] } else { 0.0 });
                    }
                    st.perturbation_sum += d as f64;
                    st.perturbation_max = st.perturbation_max.max(d);
                    if eps > 0.0 && clean_ok[i] && out.success[i] && keep.len() < free {
                        keep.push(i);
                    }
                }
                if !keep.is_empty() {
                    let hx = host_x.get_or_insert_with(|| robust_models::to_host(x.clone()));
                    let per = c * h * w;
                    for i in keep {
                        let adv_pixels = robust_models::to_host(out.adv.clone().narrow(0, i, 1));
                        self.examples.push(ExampleImage {
                            plan: p,
                            eps,
                            index: indices[i],
                            label: labels[i],
                            clean: (clean_pred[i], clean_conf[i]),
                            adv: (out.pred[i], out.conf[i]),
                            shape: [c, h, w],
                            clean_pixels: hx[i * per..(i + 1) * per].to_vec(),
                            adv_pixels,
                        });
                    }
                }
                progress();
            }
        }
        Ok(())
    }

    /// The target of each sample for plan `p` (`None`: untargeted).
    fn targets_for(
        &self,
        p: usize,
        clean_logits: &Tensor<2>,
        labels: &[usize],
        indices: &[usize],
    ) -> Option<Vec<usize>> {
        let k = self.num_classes;
        match self.plans[p].target {
            TargetMode::None => None,
            TargetMode::Class(t) => Some(vec![t; labels.len()]),
            TargetMode::LeastLikely => Some(least_likely(clean_logits.clone())),
            TargetMode::Random => {
                Some(
                    indices
                        .iter()
                        .zip(labels)
                        .map(|(&i, &y)| {
                            let mut rng =
                                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(mix(
                                    &[self.seed, 0x7A46_4E54, p as u64, i as u64],
                                ));
                            let t = rng.random_range(0..k - 1);
                            if t >= y {
                                t + 1
                            } else {
                                t
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    /// Pintor et al.'s unconstrained-attack-failure indicator: runs every plan's attack
    /// once more on these samples (the first few of the data set, see
    /// [`crate::indicators::PROBE_SAMPLES`]) at an ε that covers the whole input box (L∞:
    /// the input range; L2: the box's diagonal), with its own targets and a seed of its own.
    /// With that budget a working attack breaks every clean-correct sample; one it cannot
    /// break points to masked gradients or a broken attack. Returns, per plan, the ε used,
    /// the clean-correct samples attacked and those on which the attack failed.
    pub fn unbounded(
        &self,
        model: &Model,
        x: Tensor<4>,
        labels: Vec<usize>,
        indices: Vec<usize>,
    ) -> Result<Vec<(f32, usize, usize)>, AttackError> {
        let k = self.num_classes;
        let clean_logits = model.forward(x.clone())?;
        let (clean_pred, _) = predictions(clean_logits.clone());
        let [_, c, h, w] = x.dims();
        let [lo, hi] = model.info().bounds;
        let mut out = Vec::with_capacity(self.plans.len());
        for p in 0..self.plans.len() {
            let attack = self.plans[p].attack.as_ref();
            let eps = match attack.norm() {
                crate::Norm::Linf => hi - lo,
                crate::Norm::L2 => (hi - lo) * ((c * h * w) as f32).sqrt(),
            };
            let targets = self.targets_for(p, &clean_logits, &labels, &indices);
            let batch = Batch::new(x.clone(), labels.clone(), targets, indices.clone(), k)?;
            let seed = mix(&[self.seed, p as u64, 0x0055_4E42_4F55_4E44]);
            let outcome = attack_at(model, attack, &batch, eps, seed)?;
            let correct: Vec<bool> = clean_pred
                .iter()
                .zip(&labels)
                .map(|(p, y)| p == y)
                .collect();
            let attacked = correct.iter().filter(|&&ok| ok).count();
            let failed = (0..labels.len())
                .filter(|&i| correct[i] && !outcome.success[i])
                .count();
            out.push((eps, attacked, failed));
        }
        Ok(out)
    }

    /// Per ε common to several plans of one norm: the robust accuracy when each sample counts
    /// as robust only if it survives every attack (the per-sample worst case).
    pub fn worst_case(&self) -> Vec<(crate::Norm, f32, f64, Vec<usize>)> {
        let mut out = Vec::new();
        for norm in [crate::Norm::Linf, crate::Norm::L2] {
            let mut eps_values: Vec<f32> = Vec::new();
            for (p, plan) in self.plans.iter().enumerate() {
                if plan.attack.norm() != norm {
                    continue;
                }
                for st in &self.stats[p] {
                    if !eps_values.contains(&st.eps) {
                        eps_values.push(st.eps);
                    }
                }
            }
            eps_values.sort_by(f32::total_cmp);
            for eps in eps_values {
                let members: Vec<(usize, &PointStats)> = self
                    .plans
                    .iter()
                    .enumerate()
                    .filter(|(_, plan)| plan.attack.norm() == norm)
                    .filter_map(|(p, _)| {
                        self.stats[p].iter().find(|s| s.eps == eps).map(|s| (p, s))
                    })
                    .collect();
                let n = members.first().map(|m| m.1.robust.len()).unwrap_or(0);
                if members.len() < 2 || n == 0 {
                    continue;
                }
                let robust = (0..n)
                    .filter(|&i| members.iter().all(|(_, s)| s.robust[i]))
                    .count();
                out.push((
                    norm,
                    eps,
                    robust as f64 / n as f64,
                    members.iter().map(|m| m.0).collect(),
                ));
            }
        }
        out
    }
}

fn least_likely(logits: Tensor<2>) -> Vec<usize> {
    let [n, k] = logits.dims();
    let v = robust_models::to_host(logits);
    (0..n)
        .map(|i| {
            let row = &v[i * k..(i + 1) * k];
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |acc, (j, &z)| if z < acc.1 { (j, z) } else { acc },
                )
                .0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttackRegistry, AttackSpec, GradientDescent, Norm};
    use rand::{RngExt, SeedableRng};

    fn demo() -> (Model, Tensor<4>, Vec<usize>, Vec<usize>) {
        let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)
            .unwrap()
            .device;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/mnist-cnn/model.onnx"
        );
        let model = robust_models::load(path, &device).unwrap();
        let n = 12;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let pixels: Vec<f32> = (0..n * 28 * 28).map(|_| rng.random::<f32>()).collect();
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let x = Tensor::from_data(TensorData::new(pixels, [n, 1, 28, 28]), &device);
        (model, x, labels, (0..n).collect())
    }

    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        robust_models::to_host(t)
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    fn plan(attack: Box<dyn Attack>, target: TargetMode) -> AttackPlan {
        AttackPlan {
            attack,
            eps: vec![0.0, 0.1],
            target,
        }
    }

    /// The clean pass's logits and gradient are those of separate passes, bit for bit, and
    /// every attack that starts at the clean inputs returns the same adversarial batch,
    /// gradient statistics and traces with it as without it.
    #[test]
    fn the_clean_pass_gradient_is_the_attacks_own_first_gradient() {
        let (model, x, labels, indices) = demo();
        let registry = AttackRegistry::builtin();
        let pgd = GradientDescent::pgd(Norm::Linf, 3).with_random_start(false);
        let plans = vec![
            plan(
                registry.build(&AttackSpec::named("fgsm")).unwrap(),
                TargetMode::None,
            ),
            plan(Box::new(pgd), TargetMode::None),
            plan(
                registry.build(&AttackSpec::named("mifgsm")).unwrap(),
                TargetMode::None,
            ),
            plan(
                registry.build(&AttackSpec::named("fgsm")).unwrap(),
                TargetMode::Class(3),
            ),
        ];
        let sweep = Sweep::new(plans, 10, 5, 0);
        assert_eq!(sweep.clean_loss(), Some(Loss::CrossEntropy));
        let clean = sweep.clean_pass(&model, &x, &labels, &indices).unwrap();
        assert_eq!(
            bits(clean.logits.clone()),
            bits(model.forward(x.clone()).unwrap())
        );
        let pass = clean
            .gradient
            .as_ref()
            .expect("the plans start at the clean inputs");
        for (p, plan) in sweep.plans.iter().enumerate() {
            let targets = sweep.targets_for(p, &clean.logits, &labels, &indices);
            let fresh =
                Batch::new(x.clone(), labels.clone(), targets, indices.clone(), 10).unwrap();
            let cached = fresh.clone().with_clean(Some(pass));
            assert_eq!(cached.clean.is_some(), plan.target == TargetMode::None);
            let a = attack_at(&model, plan.attack.as_ref(), &fresh, 0.1, 9).unwrap();
            let b = attack_at(&model, plan.attack.as_ref(), &cached, 0.1, 9).unwrap();
            let label = plan.attack.label();
            assert_eq!(bits(a.adv), bits(b.adv), "{label}");
            assert_eq!(a.grad, b.grad, "{label}");
            assert_eq!(a.iterates, b.iterates, "{label}");
            assert_eq!(a.iterate_adversarial, b.iterate_adversarial, "{label}");
        }
    }

    /// The attacks do take the clean pass's gradient: given one that is zero everywhere,
    /// FGSM does not move and counts every sample's gradient as zero.
    #[test]
    fn attacks_that_start_at_the_clean_inputs_take_the_clean_pass_gradient() {
        let (model, x, labels, indices) = demo();
        let fgsm = AttackRegistry::builtin()
            .build(&AttackSpec::named("fgsm"))
            .unwrap();
        assert_eq!(fgsm.clean_start(), Some(Loss::CrossEntropy));
        let sweep = Sweep::new(vec![plan(fgsm, TargetMode::None)], 10, 5, 0);
        let clean = sweep.clean_pass(&model, &x, &labels, &indices).unwrap();
        let mut pass = (**clean.gradient.as_ref().unwrap()).clone();
        pass.grad = pass.grad.zeros_like();
        let batch = Batch::new(x.clone(), labels.clone(), None, indices.clone(), 10)
            .unwrap()
            .with_clean(Some(&Arc::new(pass)));
        let out = attack_at(&model, sweep.plans[0].attack.as_ref(), &batch, 0.1, 9).unwrap();
        assert_eq!(bits(out.adv), bits(x.clone()));
        assert_eq!(out.grad.zero, labels.len());
        // A random start does not begin at the clean inputs.
        let pgd = GradientDescent::pgd(Norm::Linf, 3);
        assert_eq!(pgd.clean_start(), None);
        let sweep = Sweep::new(vec![plan(Box::new(pgd), TargetMode::None)], 10, 5, 0);
        assert!(sweep
            .clean_pass(&model, &x, &labels, &indices)
            .unwrap()
            .gradient
            .is_none());
    }
}
