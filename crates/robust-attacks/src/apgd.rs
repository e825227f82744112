//! Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and the targeted APGD-T.
//!
//! This follows the reference implementation (`autoattack/autopgd_base.py` of
//! github.com/fra31/auto-attack, `pyautoattack` 0.2.0 on PyPI) step for step:
//!
//! * a random start at the surface of the ball (L-inf: uniform noise scaled so that its
//!   largest entry is ε; L2: a Gaussian direction of length ε), clipped to the bounds;
//! * an initial step of 2ε and momentum 0.75 (none on the first step): the iterate moves to
//!   `x + 0.75·(z − x) + 0.25·(x − x_prev)` where `z` is the projected gradient step, and is
//!   projected and clipped again;
//! * checkpoints after `⌊0.22·N⌋` iterations, then at intervals shrinking by `⌊0.03·N⌋`
//!   down to `⌊0.06·N⌋` ([`checkpoints`]); at each, a sample's step is halved and its iterate
//!   reset to its best point when (a) at most ρ = 0.75 of the steps since the last checkpoint
//!   increased the loss, or (b) its step was not halved at the last checkpoint and its best
//!   loss has not improved since (the reference's quirk of comparing the first loss with the
//!   last, still zero, entry of its loss table at the first checkpoint is kept);
//! * the losses cross-entropy, DLR `−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e-12)` and, for
//!   APGD-T, targeted DLR `−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e-12)` ([`dlr_objective`]);
//! * only clean-correct points are attacked, restarts (and APGD-T's target classes, the
//!   2nd … (K'+1)-th highest clean logits) run only on points not yet broken, and a point
//!   counts as broken as soon as any iterate misclassifies it; that iterate is returned,
//!   and unbroken points are returned unchanged, as the reference does.
//!
//! Unlike the reference, which seeds one generator for the batch (from the clock by
//! default), every random draw comes from the sample's own generator
//! ([`AttackCtx::sample_rngs`]), so a run is repeatable under `--seed` and a sample's start
//! does not depend on its batch.

use burn::tensor::{Int, Tensor, TensorData};
use rand::RngExt;
use serde_json::{json, Map, Value};

use crate::attack::{mix, Attack, AttackCtx, Batch};
use crate::loss::Loss;
use crate::norm::{gaussian, l2_norms, Norm};
use crate::AttackError;

/// The momentum of the reference implementation.
pub const MOMENTUM: f32 = 0.75;

/// The loss APGD climbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApgdLoss {
    /// Cross-entropy (targeted: minus the cross-entropy of the target class).
    CrossEntropy,
    /// The difference of logits ratio (targeted: the targeted DLR).
    Dlr,
}

impl std::fmt::Display for ApgdLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CrossEntropy => "ce",
            Self::Dlr => "dlr",
        })
    }
}

/// The iterations (0-based) after which APGD checks its step size, for `n_iter` iterations:
/// the first after `max(⌊0.22·n⌋, 1)` iterations, then every `k` iterations where `k`
/// starts there and shrinks by `max(⌊0.03·n⌋, 1)` after each check, down to
/// `max(⌊0.06·n⌋, 1)`. For 100 iterations: 21, 40, 56, 69, 79, 86, 92, 98 — the paper's
/// p₀ = 0, p₁ = 0.22, pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06).
pub fn checkpoints(n_iter: usize) -> Vec<usize> {
    let s = Schedule::new(n_iter);
    let mut out = Vec::new();
    let mut k = s.first;
    let mut counter = 0;
    for i in 0..n_iter {
        counter += 1;
        if counter == k {
            out.push(i);
            k = k.saturating_sub(s.decrease).max(s.min);
            counter = 0;
        }
    }
    out
}

/// The checkpoint parameters of the reference (`n_iter_2`, `n_iter_min`, `size_decr`).
#[derive(Clone, Copy, Debug)]
struct Schedule {
    first: usize,
    min: usize,
    decrease: usize,
}

impl Schedule {
    fn new(n_iter: usize) -> Self {
        // Python's int(0.22 * n) on doubles.
        let frac = |f: f64| ((f * n_iter as f64) as usize).max(1);
        Self {
            first: frac(0.22),
            min: frac(0.06),
            decrease: frac(0.03),
        }
    }
}

/// Class indices of one row of logits, highest first (ties keep the lower index first).
fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

/// The DLR loss on differentiable `logits` `[N, K]` whose values are `values` (row-major):
/// untargeted `−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e-12)`; with `targets`,
/// `−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e-12)`, where π sorts the logits in decreasing
/// order. The classes are picked from the values; the gradient flows through the picked
/// logits only, as through the reference's sort. Needs K ≥ 3 (untargeted) or K ≥ 4.
pub fn dlr_objective(
    logits: Tensor<2>,
    values: &[f32],
    labels: &[usize],
    targets: Option<&[usize]>,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    let mut num = vec![0f32; n * k];
    let mut den = vec![0f32; n * k];
    for i in 0..n {
        let row = &values[i * k..(i + 1) * k];
        let pi = ranked(row);
        let y = labels[i];
        num[i * k + y] += 1.0;
        den[i * k + pi[0]] += 1.0;
        match targets {
            None => {
                let other = if pi[0] == y { pi[1] } else { pi[0] };
                num[i * k + other] -= 1.0;
                den[i * k + pi[2]] -= 1.0;
            }
            Some(t) => {
                num[i * k + t[i]] -= 1.0;
                den[i * k + pi[2]] -= 0.5;
                den[i * k + pi[3]] -= 0.5;
            }
        }
    }
    let device = logits.device();
    let wn = Tensor::<2>::from_data(TensorData::new(num, [n, k]), &device);
    let wd = Tensor::<2>::from_data(TensorData::new(den, [n, k]), &device);
    let numerator = (logits.clone() * wn).sum_dim(1);
    let denominator = (logits * wd).sum_dim(1).add_scalar(1e-12);
    (numerator / denominator).neg().reshape([n])
}

/// APGD with the cross-entropy or DLR loss, or APGD-T (targeted DLR over several target
/// classes).
#[derive(Clone, Debug)]
pub struct Apgd {
    name: String,
    norm: Norm,
    loss: ApgdLoss,
    steps: usize,
    restarts: usize,
    rho: f32,
    eot_iter: usize,
    random_start: bool,
    /// `Some(n)`: APGD-T over the `n` highest non-true classes.
    target_classes: Option<usize>,
}

impl Apgd {
    /// APGD on `loss` (`apgd-ce` or `apgd-dlr`): 100 iterations, one restart, ρ 0.75.
    pub fn new(norm: Norm, loss: ApgdLoss) -> Self {
        Self {
            name: format!("apgd-{loss}"),
            norm,
            loss,
            steps: 100,
            restarts: 1,
            rho: 0.75,
            eot_iter: 1,
            random_start: true,
            target_classes: None,
        }
    }

    /// APGD-T: targeted DLR towards each of the `n_target_classes` highest non-true classes
    /// in turn (9 in AutoAttack's standard version; capped at K − 1).
    pub fn targeted(norm: Norm, n_target_classes: usize) -> Self {
        Self {
            name: "apgd-t".into(),
            target_classes: Some(n_target_classes.max(1)),
            ..Self::new(norm, ApgdLoss::Dlr)
        }
    }

    /// Sets the iterations per run (at least 1).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps.max(1);
        self
    }

    /// Sets the restarts (at least 1); each runs only on points not yet broken.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts.max(1);
        self
    }

    /// Sets the gradient samples averaged per step (expectation over transformation).
    pub fn with_eot_iter(mut self, eot_iter: usize) -> Self {
        self.eot_iter = eot_iter.max(1);
        self
    }

    /// Sets the fraction ρ of successful steps below which the step is halved.
    pub fn with_rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Turns the random start on (the reference) or off (start at the clean input).
    pub fn with_random_start(mut self, on: bool) -> Self {
        self.random_start = on;
        self
    }

    /// Renames the attack.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The loss climbed.
    pub fn loss(&self) -> ApgdLoss {
        self.loss
    }

    /// One run of `steps` iterations on `sub` (all of whose points are attacked). Returns,
    /// per point, whether it was broken, and the first-found adversarial iterates.
    fn single_run(
        &self,
        ctx: &mut AttackCtx<'_>,
        sub: &Batch,
        loss_targets: Option<&[usize]>,
        eps: f32,
        stream: u64,
    ) -> Result<(Vec<bool>, Tensor<4>), AttackError> {
        let x = sub.x.clone();
        let dims = x.dims();
        let m = dims[0];
        let device = x.device();
        let eps = eps.min(f32::MAX / 4.0);
        let mut x_adv = if self.random_start {
            let mut rngs = ctx.sample_rngs(sub, stream);
            ctx.clip(x.clone() + start_noise(self.norm, dims, eps, &mut rngs, &device))
        } else {
            x.clone()
        };
        let mut x_best = x_adv.clone();
        let mut x_best_adv = x_adv.clone();
        let (mut grad, logits, loss) = self.evaluate(ctx, &x_adv, sub, loss_targets)?;
        let mut grad_best = grad.clone();
        let mut broken = self.fooled(&logits, sub);
        let mut loss_best = loss;
        let mut step = vec![2.0 * eps; m];
        let mut x_adv_old = x_adv.clone();
        let schedule = Schedule::new(self.steps);
        let mut k = schedule.first;
        let mut counter = 0;
        let mut loss_best_last_check = loss_best.clone();
        let mut reduced_last_check = vec![true; m];
        let mut loss_steps = vec![vec![0f32; m]; self.steps];
        for i in 0..self.steps {
            let grad2 = x_adv.clone() - x_adv_old;
            x_adv_old = x_adv.clone();
            let a = if i > 0 { MOMENTUM } else { 1.0 };
            let step_t = column(&step, &device);
            let direction = match self.norm {
                Norm::Linf => grad.clone().sign(),
                Norm::L2 => grad.clone() / l2_norms(grad.clone()).add_scalar(1e-12),
            };
            let z = self.project(ctx, &x, x_adv.clone() + direction * step_t, eps);
            let moved =
                x_adv.clone() + (z - x_adv.clone()).mul_scalar(a) + grad2.mul_scalar(1.0 - a);
            x_adv = self.project(ctx, &x, moved, eps);
            let (g, logits, loss) = self.evaluate(ctx, &x_adv, sub, loss_targets)?;
            grad = g;
            let fooled = self.fooled(&logits, sub);
            if fooled.iter().any(|&f| f) {
                x_best_adv = pick(&fooled, &x_adv, &x_best_adv);
            }
            for (b, f) in broken.iter_mut().zip(&fooled) {
                *b |= *f;
            }
            let improved: Vec<bool> = loss.iter().zip(&loss_best).map(|(l, b)| l > b).collect();
            if improved.iter().any(|&v| v) {
                x_best = pick(&improved, &x_adv, &x_best);
                grad_best = pick(&improved, &grad, &grad_best);
            }
            for j in 0..m {
                if improved[j] {
                    loss_best[j] = loss[j];
                }
            }
            loss_steps[i] = loss;
            counter += 1;
            if counter == k {
                let reduce: Vec<bool> = (0..m)
                    .map(|j| {
                        let increases = (0..k)
                            .filter(|&c| {
                                let now = loss_steps[i - c][j];
                                // Python's x[-1] is the table's last row (still zero).
                                let before = (i + self.steps - c - 1) % self.steps;
                                now > loss_steps[before][j]
                            })
                            .count();
                        let oscillating = increases as f32 <= k as f32 * self.rho;
                        let stalled =
                            !reduced_last_check[j] && loss_best_last_check[j] >= loss_best[j];
                        oscillating || stalled
                    })
                    .collect();
                reduced_last_check.clone_from(&reduce);
                loss_best_last_check.clone_from(&loss_best);
                if reduce.iter().any(|&r| r) {
                    for j in 0..m {
                        if reduce[j] {
                            step[j] /= 2.0;
                        }
                    }
                    x_adv = pick(&reduce, &x_best, &x_adv);
                    grad = pick(&reduce, &grad_best, &grad);
                }
                k = k.saturating_sub(schedule.decrease).max(schedule.min);
                counter = 0;
            }
        }
        Ok((broken, x_best_adv))
    }

    /// Projects onto the ε-ball around `x` as the reference does, then clips.
    fn project(&self, ctx: &AttackCtx<'_>, x: &Tensor<4>, z: Tensor<4>, eps: f32) -> Tensor<4> {
        match self.norm {
            Norm::Linf => ctx.clip(self.norm.project(x, z, eps)),
            Norm::L2 => {
                // x + (d / (‖d‖ + 1e-12))·min(ε, ‖d‖)
                let d = z - x.clone();
                let n = l2_norms(d.clone());
                let scale = n.clone().clamp_max(eps) / n.add_scalar(1e-12);
                ctx.clip(x.clone() + d * scale)
            }
        }
    }

    /// Gradient (averaged over `eot_iter` passes), logits and loss of the last pass; the
    /// iterate is recorded for the indicators of attack failure ([`AttackCtx::trace`]).
    fn evaluate(
        &self,
        ctx: &mut AttackCtx<'_>,
        x: &Tensor<4>,
        sub: &Batch,
        loss_targets: Option<&[usize]>,
    ) -> Result<(Tensor<4>, Vec<f32>, Vec<f32>), AttackError> {
        let mut total: Option<Tensor<4>> = None;
        let mut last = (Vec::new(), Vec::new());
        for _ in 0..self.eot_iter {
            let (g, logits, loss) = match self.loss {
                ApgdLoss::CrossEntropy => {
                    let onehot = sub.onehot.clone().autodiff();
                    let targeted = sub.targeted();
                    ctx.gradient_of(x, |z, _| Loss::CrossEntropy.objective(z, onehot, targeted))?
                }
                ApgdLoss::Dlr => {
                    ctx.gradient_of(x, |z, v| dlr_objective(z, v, &sub.labels, loss_targets))?
                }
            };
            total = Some(match total {
                None => g,
                Some(t) => t + g,
            });
            last = (logits, loss);
        }
        let g = total.ok_or_else(|| AttackError::Internal("no gradient pass".into()))?;
        ctx.trace(sub, &last.0, &last.1);
        let g = if self.eot_iter > 1 {
            g.div_scalar(self.eot_iter as f32)
        } else {
            g
        };
        Ok((g, last.0, last.1))
    }

    /// Whether each point of `sub` is fooled at these logits (a wrong class; with targets
    /// in the batch, the target class).
    fn fooled(&self, logits: &[f32], sub: &Batch) -> Vec<bool> {
        let k = logits.len() / sub.len().max(1);
        argmax_rows(logits, k)
            .into_iter()
            .enumerate()
            .map(|(i, p)| match &sub.targets {
                Some(t) if self.target_classes.is_none() => p == t[i],
                _ => p != sub.labels[i],
            })
            .collect()
    }
}

/// The starting noise of the reference: L-inf, uniform in [−1, 1] per pixel scaled so that
/// its largest entry is ε; L2, a Gaussian direction scaled to length ε.
fn start_noise(
    norm: Norm,
    dims: [usize; 4],
    eps: f32,
    rngs: &mut [rand_chacha::ChaCha8Rng],
    device: &burn::tensor::Device,
) -> Tensor<4> {
    let per = dims[1] * dims[2] * dims[3];
    let mut data = Vec::with_capacity(dims[0] * per);
    for rng in rngs.iter_mut().take(dims[0]) {
        let t: Vec<f32> = match norm {
            Norm::Linf => (0..per).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            Norm::L2 => (0..per).map(|_| gaussian(rng)).collect(),
        };
        let size = match norm {
            Norm::Linf => t.iter().fold(0f32, |a, v| a.max(v.abs())),
            Norm::L2 => t.iter().map(|v| v * v).sum::<f32>().sqrt(),
        };
        data.extend(t.iter().map(|v| eps * (v / (size + 1e-12))));
    }
    Tensor::from_data(TensorData::new(data, dims.to_vec()), device)
}

/// A per-sample column `[N, 1, 1, 1]`.
pub(crate) fn column(values: &[f32], device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
        device,
    )
}

/// Per sample: `a` where `take`, else `b` (both finite; m·a + (1 − m)·b is exact for m ∈ {0, 1}).
pub(crate) fn pick(take: &[bool], a: &Tensor<4>, b: &Tensor<4>) -> Tensor<4> {
    let m: Vec<f32> = take.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
    let mask = column(&m, &a.device());
    a.clone() * mask.clone() + b.clone() * mask.neg().add_scalar(1.0)
}

/// The index of the largest value of each row of `k` values (the first on ties, as torch).
pub(crate) fn argmax_rows(values: &[f32], k: usize) -> Vec<usize> {
    values
        .chunks(k.max(1))
        .map(|row| {
            let mut best = 0;
            for (j, &z) in row.iter().enumerate().skip(1) {
                if z > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// The sub-batch of `batch` at `rows` (global indices kept, so per-sample randomness is
/// the same whichever batch a sample is in), with optional replacement targets.
pub(crate) fn sub_batch(
    batch: &Batch,
    rows: &[usize],
    targets: Option<Vec<usize>>,
    num_classes: usize,
) -> Result<Batch, AttackError> {
    let device = batch.x.device();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        &device,
    );
    let x = batch.x.clone().select(0, idx);
    let targets = targets.or_else(|| {
        batch
            .targets
            .as_ref()
            .map(|t| rows.iter().map(|&r| t[r]).collect())
    });
    Batch::new(
        x,
        rows.iter().map(|&r| batch.labels[r]).collect(),
        targets,
        rows.iter().map(|&r| batch.indices[r]).collect(),
        num_classes,
    )
}

/// The clean logits of a batch on the host, and the number of classes; an input error when
/// the model has fewer than `need` classes, which attack `name` requires.
pub(crate) fn clean_logits(
    ctx: &AttackCtx<'_>,
    batch: &Batch,
    name: &str,
    need: usize,
) -> Result<(Vec<f32>, usize), AttackError> {
    let logits = ctx.model().forward(batch.x.clone())?;
    let k = logits.dims()[1];
    if k < need {
        return Err(AttackError::Input(format!(
            "attack '{name}' needs a model with at least {need} classes (this one has {k})"
        )));
    }
    Ok((robust_models::to_host(logits), k))
}

/// Whether each clean point of `batch` is already adversarial (a wrong class; the target
/// class when the batch is targeted).
pub(crate) fn clean_fooled(batch: &Batch, logits: &[f32], k: usize) -> Vec<bool> {
    argmax_rows(logits, k)
        .into_iter()
        .enumerate()
        .map(|(i, p)| match &batch.targets {
            Some(t) => p == t[i],
            None => p != batch.labels[i],
        })
        .collect()
}

/// Writes the rows `rows[j]` of `host` (`[N·per]`) from row `j` of `values` where `take[j]`.
pub(crate) fn scatter_rows(
    host: &mut [f32],
    per: usize,
    rows: &[usize],
    take: &[bool],
    values: &[f32],
) {
    for (j, &r) in rows.iter().enumerate() {
        if take[j] {
            host[r * per..(r + 1) * per].copy_from_slice(&values[j * per..(j + 1) * per]);
        }
    }
}

impl Attack for Apgd {
    fn name(&self) -> &str {
        &self.name
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        let mut extras = Vec::new();
        if self.steps != 100 {
            extras.push(format!("{} steps", self.steps));
        }
        if self.restarts > 1 {
            extras.push(format!("{} restarts", self.restarts));
        }
        if self.eot_iter > 1 {
            extras.push(format!("EOT {}", self.eot_iter));
        }
        let base = format!("{} {norm}", self.name.to_uppercase());
        if extras.is_empty() {
            base
        } else {
            format!("{base} ({})", extras.join(", "))
        }
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("steps".into(), json!(self.steps));
        m.insert("restarts".into(), json!(self.restarts));
        m.insert("loss".into(), json!(self.loss.to_string()));
        m.insert("rho".into(), json!(self.rho));
        m.insert("momentum".into(), json!(MOMENTUM));
        m.insert("initial_step".into(), json!("2 eps"));
        m.insert("eot_iter".into(), json!(self.eot_iter));
        m.insert("random_start".into(), json!(self.random_start));
        if let Some(t) = self.target_classes {
            m.insert("n_target_classes".into(), json!(t));
        }
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        let need = match (self.target_classes, self.loss, batch.targeted()) {
            (Some(_), _, _) => 4,
            (None, ApgdLoss::Dlr, false) => 3,
            (None, ApgdLoss::Dlr, true) => 4,
            _ => 2,
        };
        let (logits, k) = clean_logits(ctx, batch, &self.name, need)?;
        let dims = batch.x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let mut alive: Vec<bool> = clean_fooled(batch, &logits, k)
            .into_iter()
            .map(|f| !f)
            .collect();
        let mut out = robust_models::to_host(batch.x.clone());
        let rounds = self.target_classes.map(|t| t.min(k - 1)).unwrap_or(1);
        let order: Vec<Vec<usize>> = logits.chunks(k).map(ranked).collect();
        for round in 0..rounds {
            for restart in 0..self.restarts {
                let rows: Vec<usize> = (0..batch.len()).filter(|&i| alive[i]).collect();
                if rows.is_empty() {
                    break;
                }
                let sub = sub_batch(batch, &rows, None, k)?;
                let loss_targets: Option<Vec<usize>> = match self.target_classes {
                    // The (round + 2)-th highest clean logit: the reference's
                    // sort(...)[:, -target_class] for target_class = round + 2.
                    Some(_) => Some(rows.iter().map(|&r| order[r][round + 1]).collect()),
                    None => sub.targets.clone(),
                };
                let stream = mix(&[0xA9_6D, round as u64, restart as u64]);
                let (broken, adv) =
                    self.single_run(ctx, &sub, loss_targets.as_deref(), eps, stream)?;
                let adv = robust_models::to_host(adv);
                scatter_rows(&mut out, per, &rows, &broken, &adv);
                for (j, &r) in rows.iter().enumerate() {
                    if broken[j] {
                        alive[r] = false;
                    }
                }
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(out, dims.to_vec()),
            &batch.x.device(),
        ))
    }
}
