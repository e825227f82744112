//! DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), L2 and L-inf, as Foolbox
//! 3.3.4's `L2DeepFoolAttack` / `LinfDeepFoolAttack` run it: a minimum-norm attack
//! ([`crate::minimum_norm`]).
//!
//! The candidate classes are the `candidates` highest clean logits (default 10), the first
//! being the predicted class `c₀`. At each of at most `steps` steps (default 50), for every
//! point not yet misclassified, DeepFool linearises `f_k = z_{c_k} − z_{c₀}` (loss `logits`;
//! with `crossentropy`, the difference of the log-softmax values) for each other candidate,
//! picks the candidate whose linearised boundary is nearest, `d_k = |f_k| / ‖∇f_k‖_*` (the
//! dual norm: L2 for L2, L1 for L-inf), and adds the step to that boundary to the total
//! perturbation: `(d + 1e-4)·∇f/(‖∇f‖₂ + 1e-8)` (L2) or `(d + 1e-4)·sign(∇f)` (L-inf).
//! The iterate is the clean point plus `(1 + overshoot)` times the total (overshoot 0.02),
//! clipped to the input bounds; a point stops moving once it is misclassified.
//!
//! On a linear (affine) classifier the first step lands on the nearest boundary exactly,
//! the closed form `|f| / ‖w‖_*` (tested). Points misclassified when clean are not attacked.

use burn::tensor::{activation, Tensor, TensorData};
use serde_json::{json, Map, Value};

use crate::apgd::{argmax_rows, clean_logits};
use crate::attack::{Attack, AttackCtx, Batch};
use crate::loss::Loss;
use crate::minimum_norm::{decimal, run_within, MinimumNorm};
use crate::norm::Norm;
use crate::AttackError;

/// DeepFool.
#[derive(Clone, Debug)]
pub struct DeepFool {
    norm: Norm,
    steps: usize,
    candidates: usize,
    overshoot: f32,
    loss: Loss,
}

impl DeepFool {
    /// Foolbox's defaults: 50 steps, 10 candidate classes, overshoot 0.02, loss `logits`
    /// ([`Loss::Margin`]).
    pub fn new(norm: Norm) -> Self {
        Self {
            norm,
            steps: 50,
            candidates: 10,
            overshoot: 0.02,
            loss: Loss::Margin,
        }
    }

    /// Sets the maximum number of steps (at least 1).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps.max(1);
        self
    }

    /// Sets the number of candidate classes, the predicted one included (at least 2).
    pub fn with_candidates(mut self, candidates: usize) -> Self {
        self.candidates = candidates.max(2);
        self
    }

    /// Sets the overshoot.
    pub fn with_overshoot(mut self, overshoot: f32) -> Self {
        self.overshoot = overshoot;
        self
    }

    /// Sets the loss: [`Loss::Margin`] (Foolbox's `logits`) or [`Loss::CrossEntropy`].
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }
}

impl MinimumNorm for DeepFool {
    fn find(&self, ctx: &mut AttackCtx<'_>, batch: &Batch) -> Result<Tensor<4>, AttackError> {
        let (logits, k) = clean_logits(ctx, batch, "deepfool", 2)?;
        let cand = self.candidates.min(k);
        let dims = batch.x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let device = batch.x.device();
        let [lo, hi] = ctx.bounds();
        let x0 = robust_models::to_host(batch.x.clone());
        // Per point, its candidate classes by clean logit, highest first.
        let classes: Vec<Vec<usize>> = logits
            .chunks(k)
            .map(|row| {
                let mut idx: Vec<usize> = (0..k).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx.truncate(cand);
                idx
            })
            .collect();
        let mut x = x0.clone();
        let mut p_total = vec![0f32; x0.len()];
        let pred = argmax_rows(&logits, k);
        let mut alive: Vec<usize> = (0..batch.len())
            .filter(|&i| pred[i] == batch.labels[i])
            .collect();
        for _ in 0..self.steps {
            if alive.is_empty() {
                break;
            }
            // f_k and ∇f_k for k = 1..cand, on the points not yet adversarial.
            let mut f: Vec<Vec<f32>> = Vec::new();
            let mut grads: Vec<Vec<f32>> = Vec::new();
            for kk in 1..cand {
                let n = alive.len();
                let xs: Vec<f32> = alive
                    .iter()
                    .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
                    .collect();
                let xt = Tensor::<4>::from_data(
                    TensorData::new(xs, [n, dims[1], dims[2], dims[3]]),
                    &device,
                );
                let mut wt = vec![0f32; n * k];
                for (r, &i) in alive.iter().enumerate() {
                    wt[r * k + classes[i][kk]] += 1.0;
                    wt[r * k + classes[i][0]] -= 1.0;
                }
                let loss = self.loss;
                let (g, z, obj) = ctx.gradient_of(&xt, |logits, _| {
                    let w = Tensor::<2>::from_data(TensorData::new(wt, [n, k]), &device).autodiff();
                    let values = match loss {
                        Loss::Margin => logits,
                        Loss::CrossEntropy => activation::log_softmax(logits, 1),
                    };
                    (values * w).sum_dim(1).reshape([n])
                })?;
                if kk == 1 {
                    // Points the first pass finds misclassified stop here.
                    let p = argmax_rows(&z, k);
                    let keep: Vec<bool> = alive
                        .iter()
                        .enumerate()
                        .map(|(r, &i)| p[r] == batch.labels[i])
                        .collect();
                    let g = robust_models::to_host(g);
                    let mut next = Vec::new();
                    let mut g_keep = Vec::new();
                    let mut f_keep = Vec::new();
                    for (r, &i) in alive.iter().enumerate() {
                        if keep[r] {
                            next.push(i);
                            g_keep.extend_from_slice(&g[r * per..(r + 1) * per]);
                            f_keep.push(obj[r]);
                        }
                    }
                    alive = next;
                    if alive.is_empty() {
                        break;
                    }
                    f.push(f_keep);
                    grads.push(g_keep);
                } else {
                    f.push(obj);
                    grads.push(robust_models::to_host(g));
                }
            }
            if alive.is_empty() {
                break;
            }
            for (r, &i) in alive.iter().enumerate() {
                let mut best = (0usize, f32::INFINITY);
                for (kk, (fk, gk)) in f.iter().zip(&grads).enumerate() {
                    let g = &gk[r * per..(r + 1) * per];
                    let dual = match self.norm {
                        Norm::L2 => g.iter().map(|v| v * v).sum::<f32>().sqrt(),
                        Norm::Linf => g.iter().map(|v| v.abs()).sum::<f32>(),
                    };
                    let d = fk[r].abs() / (dual + 1e-8);
                    if d < best.1 {
                        best = (kk, d);
                    }
                }
                let (kk, d) = best;
                let g = &grads[kk][r * per..(r + 1) * per];
                let d = d + 1e-4;
                let pt = &mut p_total[i * per..(i + 1) * per];
                match self.norm {
                    Norm::L2 => {
                        let n2 = g.iter().map(|v| v * v).sum::<f32>().sqrt();
                        let s = d / (n2 + 1e-8);
                        for (p, &gv) in pt.iter_mut().zip(g) {
                            *p += s * gv;
                        }
                    }
                    Norm::Linf => {
                        for (p, &gv) in pt.iter_mut().zip(g) {
                            *p += d * sign(gv);
                        }
                    }
                }
                let row = &mut x[i * per..(i + 1) * per];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (x0[i * per + j] + (1.0 + self.overshoot) * pt[j]).clamp(lo, hi);
                }
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(x, dims.to_vec()),
            &device,
        ))
    }
}

/// The sign as torch computes it: 0 at 0.
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Attack for DeepFool {
    fn name(&self) -> &str {
        "deepfool"
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        if self.steps == 50 && self.candidates == 10 {
            format!("DeepFool {norm}")
        } else {
            format!(
                "DeepFool {norm} ({} steps, {} candidates)",
                self.steps, self.candidates
            )
        }
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("steps".into(), json!(self.steps));
        m.insert("candidates".into(), json!(self.candidates));
        m.insert("overshoot".into(), json!(decimal(self.overshoot)));
        m.insert(
            "loss".into(),
            json!(match self.loss {
                Loss::Margin => "logits",
                Loss::CrossEntropy => "crossentropy",
            }),
        );
        m.insert("minimum_norm".into(), json!(true));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        run_within(self, self.norm, ctx, batch, eps)
    }

    fn minimum_norm(&self) -> Option<&dyn MinimumNorm> {
        Some(self)
    }
}
