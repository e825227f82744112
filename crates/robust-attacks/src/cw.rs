//! The Carlini–Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017), as Foolbox 3.3.4's
//! `L2CarliniWagnerAttack` runs it: a minimum-norm attack ([`crate::minimum_norm`]).
//!
//! Per point it minimises `c·max(0, z_y − max_{i≠y} z_i + κ) + ‖x' − x‖²` (targeted:
//! `c·max(0, max_{i≠t} z_i − z_t + κ)`) over `x' = a + b·tanh(w)`, the change of variables
//! that keeps `x'` inside the input box `[lo, hi]` (`a`, `b` its centre and half-width;
//! the clean point maps to `w₀ = atanh(0.999999·(x − a)/b)`), with Adam (β 0.9, 0.999,
//! 1e-8) on `w`, from `w₀`, for `steps` steps of size `stepsize`. The constant `c` is found
//! by a binary search per point: it starts at `initial_const`, grows tenfold while no
//! adversarial point was found, and then halves the interval between the largest `c` that
//! failed and the smallest that succeeded, for `binary_search_steps` rounds (with 10 or more
//! rounds, the last one reruns at the smallest successful `c`). Every iterate that is
//! adversarial with margin κ and closer to `x` than the best so far is kept.
//!
//! One difference from Foolbox: `abort_early` stops a point's optimisation when *its own*
//! loss has not fallen by 0.01% over a tenth of the steps, where Foolbox stops the whole
//! batch on the batch's summed loss; so a point's result does not depend on its batch. With
//! `abort_early=false` the two run the same iterations. Points misclassified when clean are
//! not attacked (they are adversarial at distance 0).

use burn::tensor::{Tensor, TensorData};
use serde_json::{json, Map, Value};

use crate::apgd::{argmax_rows, clean_fooled, clean_logits};
use crate::attack::{Attack, AttackCtx, Batch};
use crate::minimum_norm::{decimal, run_within, MinimumNorm};
use crate::norm::Norm;
use crate::AttackError;

/// Carlini–Wagner L2.
#[derive(Clone, Debug)]
pub struct CarliniWagner {
    binary_search_steps: usize,
    steps: usize,
    stepsize: f32,
    confidence: f32,
    initial_const: f32,
    abort_early: bool,
}

impl Default for CarliniWagner {
    fn default() -> Self {
        Self::new()
    }
}

/// Maps a pixel in `[lo, hi]` to the attack's tanh space, as Foolbox does.
pub fn to_attack_space(v: f32, [lo, hi]: [f32; 2]) -> f32 {
    let (a, b) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
    (((v - a) / b) * 0.999_999).atanh()
}

/// Maps a value of the attack's tanh space back into `(lo, hi)`.
pub fn to_model_space(w: f32, [lo, hi]: [f32; 2]) -> f32 {
    let (a, b) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
    w.tanh() * b + a
}

impl CarliniWagner {
    /// Foolbox's defaults but for `steps`: 9 binary-search steps, step size 0.01,
    /// confidence 0, initial constant 0.001, abort early; 1000 Adam steps per search step
    /// (Foolbox: 10000, i.e. up to 90,000 gradients per point).
    pub fn new() -> Self {
        Self {
            binary_search_steps: 9,
            steps: 1000,
            stepsize: 0.01,
            confidence: 0.0,
            initial_const: 1e-3,
            abort_early: true,
        }
    }

    /// Sets the binary-search steps over the constant `c` (at least 1).
    pub fn with_binary_search_steps(mut self, n: usize) -> Self {
        self.binary_search_steps = n.max(1);
        self
    }

    /// Sets the Adam steps per binary-search step (at least 1).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps.max(1);
        self
    }

    /// Sets Adam's step size.
    pub fn with_stepsize(mut self, stepsize: f32) -> Self {
        self.stepsize = stepsize;
        self
    }

    /// Sets the confidence κ: the logit margin an adversarial point must have.
    pub fn with_confidence(mut self, confidence: f32) -> Self {
        self.confidence = confidence;
        self
    }

    /// Sets the initial constant `c`.
    pub fn with_initial_const(mut self, c: f32) -> Self {
        self.initial_const = c;
        self
    }

    /// Stops a point's optimisation early when its loss stalls (see the module docs).
    pub fn with_abort_early(mut self, on: bool) -> Self {
        self.abort_early = on;
        self
    }

    /// Whether logits `z` of a point with label `y` (and target `t`) are adversarial with
    /// margin κ, as Foolbox's `is_adversarial`.
    fn is_adversarial(&self, z: &[f32], y: usize, target: Option<usize>) -> bool {
        let mut z = z.to_vec();
        match target {
            Some(t) => {
                z[t] -= self.confidence;
                argmax_rows(&z, z.len())[0] == t
            }
            None => {
                z[y] += self.confidence;
                argmax_rows(&z, z.len())[0] != y
            }
        }
    }
}

/// The class with the largest logit other than `exclude` (the first on ties).
fn best_other(z: &[f32], exclude: usize) -> usize {
    let mut best = usize::MAX;
    for (j, &v) in z.iter().enumerate() {
        if j != exclude && (best == usize::MAX || v > z[best]) {
            best = j;
        }
    }
    best
}

/// Adam's state for one point.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(per: usize) -> Self {
        Self {
            m: vec![0.0; per],
            v: vec![0.0; per],
            t: 0,
        }
    }

    /// Adds Adam's step for gradient `g` (of a loss to minimise) to `delta`.
    fn step(&mut self, g: &[f32], stepsize: f32, delta: &mut [f32]) {
        let (b1, b2, e) = (0.9f32, 0.999f32, 1e-8f32);
        self.t += 1;
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..g.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let m_hat = self.m[i] / c1;
            let v_hat = self.v[i] / c2;
            delta[i] += -stepsize * m_hat / (v_hat.sqrt() + e);
        }
    }
}

impl MinimumNorm for CarliniWagner {
    fn find(&self, ctx: &mut AttackCtx<'_>, batch: &Batch) -> Result<Tensor<4>, AttackError> {
        let (logits, k) = clean_logits(ctx, batch, "cw-l2", 2)?;
        let dims = batch.x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let device = batch.x.device();
        let bounds = ctx.bounds();
        let x0 = robust_models::to_host(batch.x.clone());
        let rows: Vec<usize> = clean_fooled(batch, &logits, k)
            .into_iter()
            .enumerate()
            .filter(|&(_, f)| !f)
            .map(|(i, _)| i)
            .collect();
        let m = rows.len();
        let targets: Vec<Option<usize>> = rows
            .iter()
            .map(|&r| batch.targets.as_ref().map(|t| t[r]))
            .collect();
        let w0: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x0[r * per..(r + 1) * per].iter())
            .map(|&v| to_attack_space(v, bounds))
            .collect();
        let recon: Vec<f32> = w0.iter().map(|&w| to_model_space(w, bounds)).collect();
        let half = (bounds[1] - bounds[0]) / 2.0;
        let mut consts = vec![f64::from(self.initial_const); m];
        let mut lower = vec![0f64; m];
        let mut upper = vec![f64::INFINITY; m];
        let mut best_norm = vec![f32::INFINITY; m];
        let mut best: Vec<Vec<f32>> = vec![Vec::new(); m];
        let check_every = self.steps.div_ceil(10);
        for search in 0..self.binary_search_steps {
            if search == self.binary_search_steps - 1 && self.binary_search_steps >= 10 {
                for (c, &u) in consts.iter_mut().zip(&upper) {
                    *c = u.min(1e10);
                }
            }
            let c32: Vec<f32> = consts.iter().map(|&c| c as f32).collect();
            let mut delta = vec![0f32; m * per];
            let mut adam: Vec<Adam> = (0..m).map(|_| Adam::new(per)).collect();
            let mut found = vec![false; m];
            let mut previous = vec![f32::INFINITY; m];
            let mut active = vec![true; m];
            for step in 0..self.steps {
                let act: Vec<usize> = (0..m).filter(|&j| active[j]).collect();
                if act.is_empty() {
                    break;
                }
                let na = act.len();
                let mut xs = Vec::with_capacity(na * per);
                for &j in &act {
                    let w = &w0[j * per..(j + 1) * per];
                    let d = &delta[j * per..(j + 1) * per];
                    xs.extend(
                        w.iter()
                            .zip(d)
                            .map(|(&w, &d)| to_model_space(w + d, bounds)),
                    );
                }
                let x = Tensor::<4>::from_data(
                    TensorData::new(xs.clone(), [na, dims[1], dims[2], dims[3]]),
                    &device,
                );
                let labels: Vec<usize> = act.iter().map(|&j| batch.labels[rows[j]]).collect();
                let tg: Vec<Option<usize>> = act.iter().map(|&j| targets[j]).collect();
                let (g, z, margin) = ctx.gradient_of(&x, |logits, values| {
                    // z_min − z_max: the logit to push down minus the one to push up.
                    let mut wt = vec![0f32; na * k];
                    for r in 0..na {
                        let row = &values[r * k..(r + 1) * k];
                        let (down, up) = match tg[r] {
                            Some(t) => (best_other(row, t), t),
                            None => (labels[r], best_other(row, labels[r])),
                        };
                        wt[r * k + down] += 1.0;
                        wt[r * k + up] -= 1.0;
                    }
                    let w =
                        Tensor::<2>::from_data(TensorData::new(wt, [na, k]), &device).autodiff();
                    (logits * w).sum_dim(1).reshape([na])
                })?;
                let g = robust_models::to_host(g);
                for (r, &j) in act.iter().enumerate() {
                    let xr = &xs[r * per..(r + 1) * per];
                    let rc = &recon[j * per..(j + 1) * per];
                    let hinge = margin[r] + self.confidence;
                    let squared: f32 = xr.iter().zip(rc).map(|(a, b)| (a - b) * (a - b)).sum();
                    let loss = c32[j] * hinge.max(0.0) + squared;
                    let scale = if hinge > 0.0 { c32[j] } else { 0.0 };
                    let w = &w0[j * per..(j + 1) * per];
                    let grad_w: Vec<f32> = (0..per)
                        .map(|i| {
                            let gx = scale * g[r * per + i] + 2.0 * (xr[i] - rc[i]);
                            let t = (w[i] + delta[j * per + i]).tanh();
                            gx * half * (1.0 - t * t)
                        })
                        .collect();
                    adam[j].step(&grad_w, self.stepsize, &mut delta[j * per..(j + 1) * per]);
                    if self.abort_early && step % check_every == 0 {
                        // As Foolbox: a NaN loss also stops.
                        let improved = loss <= 0.9999 * previous[j];
                        if !improved {
                            active[j] = false;
                            continue;
                        }
                        previous[j] = loss;
                    }
                    let y = batch.labels[rows[j]];
                    if self.is_adversarial(&z[r * k..(r + 1) * k], y, targets[j]) {
                        found[j] = true;
                        let orig = &x0[rows[j] * per..(rows[j] + 1) * per];
                        let norm = xr
                            .iter()
                            .zip(orig)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                            .sqrt();
                        if norm < best_norm[j] {
                            best_norm[j] = norm;
                            best[j] = xr.to_vec();
                        }
                    }
                }
            }
            for j in 0..m {
                if found[j] {
                    upper[j] = consts[j];
                } else {
                    lower[j] = consts[j];
                }
                consts[j] = if upper[j].is_infinite() {
                    consts[j] * 10.0
                } else {
                    (lower[j] + upper[j]) / 2.0
                };
            }
        }
        let mut out = x0;
        for (j, &r) in rows.iter().enumerate() {
            if best_norm[j].is_finite() {
                out[r * per..(r + 1) * per].copy_from_slice(&best[j]);
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(out, dims.to_vec()),
            &device,
        ))
    }
}

impl Attack for CarliniWagner {
    fn name(&self) -> &str {
        "cw-l2"
    }

    fn norm(&self) -> Norm {
        Norm::L2
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn label(&self) -> String {
        let d = Self::new();
        if self.binary_search_steps == d.binary_search_steps && self.steps == d.steps {
            "CW-L2".into()
        } else {
            format!("CW-L2 ({}×{} steps)", self.binary_search_steps, self.steps)
        }
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "binary_search_steps".into(),
            json!(self.binary_search_steps),
        );
        m.insert("steps".into(), json!(self.steps));
        m.insert("step_size".into(), json!(decimal(self.stepsize)));
        m.insert("confidence".into(), json!(decimal(self.confidence)));
        m.insert("initial_const".into(), json!(decimal(self.initial_const)));
        m.insert("abort_early".into(), json!(self.abort_early));
        m.insert("minimum_norm".into(), json!(true));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        run_within(self, Norm::L2, ctx, batch, eps)
    }

    fn minimum_norm(&self) -> Option<&dyn MinimumNorm> {
        Some(self)
    }
}
