//! FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), targeted (FAB-T) and
//! untargeted, as AutoAttack runs it.
//!
//! This follows `fab_base.py`, `fab_pt.py` and `fab_projections.py` of AutoAttack
//! (github.com/fra31/auto-attack, `pyautoattack` 0.2.0). FAB is a minimum-norm attack: at
//! each of its 100 iterations it linearises the decision boundary between the true class `y`
//! and the target `t` at the current iterate (`z_t − z_y` and its gradient: one backward pass
//! per step), projects both the iterate and the clean input onto that hyperplane within the
//! input box (exact L-inf / L2 projections, [`project_linf`], [`project_l2`]), and moves to a
//! convex combination of the two projections, overshooting by η = 1.05 and biased towards
//! the clean input by at most α_max = 0.1. Whenever the iterate is misclassified it records
//! it if it is the smallest perturbation so far and steps back towards the clean input
//! (β = 0.9). The target classes are the 2nd … (K'+1)-th highest clean logits (K' = 9, capped
//! at K − 1), each run only on points not yet broken; a point counts as broken only if the
//! smallest adversarial perturbation FAB found is within ε. Restarts after the first start
//! from a random point at distance ε/2 (L-inf: uniform noise scaled to ε/2 in its largest
//! entry; L2: a Gaussian direction of length ε/2).
//!
//! The untargeted FAB (`fab`, AutoAttack's `plus` version, 5 restarts there) linearises, at
//! each step, the boundary between `y` and *every* other class `c` (`z_c − z_y` and its
//! gradient: one backward pass per class, as `get_diff_logits_grads_batch` of `fab_pt.py`
//! computes the full Jacobian) and takes the one whose linearised boundary is nearest,
//! `|z_c − z_y| / ‖∇(z_c − z_y)‖_*` (the dual norm: L1 for L-inf, L2 for L2); the rest of the
//! step is FAB-T's.
//!
//! Everything but the gradients and predictions runs on the host, one point at a time.

use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use serde_json::{json, Map, Value};

use crate::apgd::{argmax_rows, clean_fooled, clean_logits, scatter_rows, sub_batch};
use crate::attack::{mix, Attack, AttackCtx, Batch};
use crate::norm::{gaussian, Norm};
use crate::AttackError;

/// FAB, targeted (FAB-T, [`FabT::new`]) or untargeted ([`FabT::untargeted`]).
#[derive(Clone, Debug)]
pub struct FabT {
    targeted: bool,
    norm: Norm,
    steps: usize,
    restarts: usize,
    target_classes: usize,
    alpha_max: f32,
    eta: f32,
    beta: f32,
}

impl FabT {
    /// AutoAttack's FAB-T: 100 iterations, 1 restart, `n_target_classes` targets, α_max 0.1,
    /// η 1.05, β 0.9.
    pub fn new(norm: Norm, n_target_classes: usize) -> Self {
        Self {
            targeted: true,
            norm,
            steps: 100,
            restarts: 1,
            target_classes: n_target_classes.max(1),
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
        }
    }

    /// AutoAttack's untargeted FAB: 100 iterations, 1 restart (5 in AutoAttack's `plus`),
    /// α_max 0.1, η 1.05, β 0.9; every other class is a candidate at each step.
    pub fn untargeted(norm: Norm) -> Self {
        Self {
            targeted: false,
            ..Self::new(norm, 1)
        }
    }

    /// Sets the iterations per run (at least 1).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps.max(1);
        self
    }

    /// Sets the restarts per target class (at least 1; the later ones start at random).
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts.max(1);
        self
    }

    fn size(&self, v: &[f32]) -> f32 {
        match self.norm {
            Norm::Linf => v.iter().fold(0f32, |m, x| m.max(x.abs())),
            Norm::L2 => v.iter().map(|x| x * x).sum::<f32>().sqrt(),
        }
    }

    /// One run towards `targets` (untargeted: `None`) on all points of `sub`: per point, the
    /// smallest adversarial perturbation found (`None`: none found) as the adversarial pixels.
    fn single_run(
        &self,
        ctx: &mut AttackCtx<'_>,
        sub: &Batch,
        targets: Option<&[usize]>,
        eps: f32,
        stream: Option<u64>,
    ) -> Result<Vec<Option<Vec<f32>>>, AttackError> {
        let dims = sub.x.dims();
        let m = dims[0];
        let per = dims[1] * dims[2] * dims[3];
        let device = sub.x.device();
        let [lo, hi] = ctx.bounds();
        let im2 = robust_models::to_host(sub.x.clone());
        let mut x1 = im2.clone();
        if let Some(stream) = stream {
            let mut rngs = ctx.sample_rngs(sub, stream);
            for (j, rng) in rngs.iter_mut().enumerate() {
                let t: Vec<f32> = match self.norm {
                    Norm::Linf => (0..per).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                    Norm::L2 => (0..per).map(|_| gaussian(rng)).collect(),
                };
                let size = self.size(&t);
                for (i, v) in t.iter().enumerate() {
                    let k = j * per + i;
                    x1[k] = (im2[k] + eps * v / size * 0.5).clamp(lo, hi);
                }
            }
        }
        let mut best: Vec<Option<Vec<f32>>> = vec![None; m];
        let mut res2 = vec![1e10f32; m];
        let k = ctx.model().info().num_classes;
        // The classes whose boundary with y each step linearises: the target, or every class.
        let columns: Vec<Vec<usize>> = match targets {
            Some(t) => vec![t.to_vec()],
            None => (0..k).map(|c| vec![c; m]).collect(),
        };
        let mut d1 = vec![0f32; per];
        let mut d2 = vec![0f32; per];
        for _ in 0..self.steps {
            let x = Tensor::<4>::from_data(TensorData::new(x1.clone(), dims.to_vec()), &device);
            // Per class column: z_c − z_y and its gradient, per point.
            let mut dfs = Vec::with_capacity(columns.len());
            let mut dgs = Vec::with_capacity(columns.len());
            for col in &columns {
                let mut wt = vec![0f32; m * k];
                for j in 0..m {
                    wt[j * k + col[j]] += 1.0;
                    wt[j * k + sub.labels[j]] -= 1.0;
                }
                let (g, _, df) = ctx.gradient_of(&x, |z, _| {
                    let w = Tensor::<2>::from_data(TensorData::new(wt, [m, k]), &device).autodiff();
                    (z * w).sum_dim(1).reshape([m])
                })?;
                dfs.push(df);
                dgs.push(robust_models::to_host(g));
            }
            for j in 0..m {
                let pick = if targets.is_some() {
                    0
                } else {
                    self.nearest(&dfs, &dgs, j, per, sub.labels[j])
                };
                let df = &dfs[pick];
                let w = &dgs[pick][j * per..(j + 1) * per];
                let xr = &x1[j * per..(j + 1) * per];
                let cr = &im2[j * per..(j + 1) * per];
                let b = -df[j] + dot(w, xr);
                self.project(xr, w, b, [lo, hi], &mut d1);
                self.project(cr, w, b, [lo, hi], &mut d2);
                let a1 = self.size(&d1).max(1e-8);
                let a2 = self.size(&d2).max(1e-8);
                let alpha = (a1 / (a1 + a2)).max(0.0).min(self.alpha_max);
                let row = &mut x1[j * per..(j + 1) * per];
                for i in 0..per {
                    let v = (row[i] + self.eta * d1[i]) * (1.0 - alpha)
                        + (cr[i] + d2[i] * self.eta) * alpha;
                    row[i] = v.clamp(lo, hi);
                }
            }
            let x = Tensor::<4>::from_data(TensorData::new(x1.clone(), dims.to_vec()), &device);
            let z = robust_models::to_host(ctx.model().forward(x)?);
            let pred = argmax_rows(&z, z.len() / m);
            for j in 0..m {
                if pred[j] == sub.labels[j] {
                    continue;
                }
                let row = &mut x1[j * per..(j + 1) * per];
                let cr = &im2[j * per..(j + 1) * per];
                let delta: Vec<f32> = row.iter().zip(cr).map(|(a, c)| a - c).collect();
                let t = self.size(&delta);
                if t < res2[j] {
                    res2[j] = t;
                    best[j] = Some(row.to_vec());
                }
                for i in 0..per {
                    row[i] = cr[i] + (row[i] - cr[i]) * self.beta;
                }
            }
        }
        Ok(best)
    }

    /// The class (index into `dfs`) whose linearised boundary with the true class `y` is
    /// nearest to point `j`: argmin of `|df| / (1e-12 + ‖dg‖_*)`, with `y` itself excluded
    /// (the reference sets its `df` to 1e10); the first on ties, as torch's `min`.
    fn nearest(&self, dfs: &[Vec<f32>], dgs: &[Vec<f32>], j: usize, per: usize, y: usize) -> usize {
        let mut best = (usize::MAX, f32::INFINITY);
        for (c, (df, dg)) in dfs.iter().zip(dgs).enumerate() {
            if c == y {
                continue;
            }
            let g = &dg[j * per..(j + 1) * per];
            let dual = match self.norm {
                Norm::Linf => g.iter().map(|v| v.abs()).sum::<f32>(),
                Norm::L2 => g.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            let d = df[j].abs() / (1e-12 + dual);
            if best.0 == usize::MAX || d < best.1 {
                best = (c, d);
            }
        }
        best.0
    }

    /// Projects `t` onto the hyperplane `w·x = b` within the box `[lo, hi]`: writes the step
    /// `d` (in the box's units) into `out`.
    fn project(&self, t: &[f32], w: &[f32], b: f32, [lo, hi]: [f32; 2], out: &mut [f32]) {
        // The reference's projections work in [0, 1]: x = lo + span·u.
        let span = hi - lo;
        let u: Vec<f32> = t.iter().map(|v| (v - lo) / span).collect();
        let wu: Vec<f32> = w.iter().map(|v| v * span).collect();
        let bu = b - lo * w.iter().sum::<f32>();
        let d = match self.norm {
            Norm::Linf => project_linf(&u, &wu, bu),
            Norm::L2 => project_l2(&u, &wu, bu),
        };
        for (o, v) in out.iter_mut().zip(d) {
            *o = v * span;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The smallest L-inf step `d` with `w·(t + d) = b` and `t + d` in `[0, 1]ⁿ` (or, when the
/// hyperplane is out of reach inside the box, the step to the box's farthest corner along
/// `w`): the reference's `projection_linf` for one point.
pub fn project_linf(t: &[f32], w: &[f32], b: f32) -> Vec<f32> {
    let n = t.len();
    let sign = if dot(w, t) - b >= 0.0 { 1.0 } else { -1.0 };
    let w: Vec<f32> = w.iter().map(|v| v * sign).collect();
    let b = b * sign;
    let a: Vec<f32> = w.iter().map(|&v| if v < 0.0 { 1.0 } else { 0.0 }).collect();
    let mut d: Vec<f32> = (0..n)
        .map(|i| if w[i] != 0.0 { a[i] - t[i] } else { 0.0 })
        .collect();
    let p: Vec<f32> = (0..n).map(|i| a[i] - t[i] * (2.0 * a[i] - 1.0)).collect();
    let mut indp: Vec<usize> = (0..n).collect();
    indp.sort_by(|&x, &y| p[x].total_cmp(&p[y]));
    let b = b - dot(&w, t);
    let b0 = dot(&w, &d);
    let mut s = vec![0f32; n];
    let mut sb = vec![0f32; n];
    let (mut acc_s, mut acc_sb) = (0f32, 0f32);
    for j in 0..n {
        let i = indp[n - 1 - j];
        acc_s += w[i].abs();
        acc_sb += -w[i] * d[i];
        s[j] = acc_s;
        sb[j] = acc_sb + b0;
    }
    let b2 = sb[n - 1] - s[n - 1] * p[indp[0]];
    let c_l = b - b2 > 0.0;
    let c2 = (b - b0 > 0.0) && !c_l;
    if c_l {
        let lmbd = ((b - sb[n - 1]) / (-s[n - 1])).max(0.0);
        for i in 0..n {
            d[i] = (2.0 * a[i] - 1.0) * lmbd;
        }
    } else if c2 {
        let (mut lb, mut ub) = (0f32, (n - 1) as f32);
        let iters = (n as f64).log2().ceil() as usize;
        for _ in 0..iters {
            let mid = ((lb + ub) / 2.0).floor();
            let c = mid as usize;
            let cur = indp[n - 1 - c];
            let b2 = sb[c] - s[c] * p[cur];
            if b - b2 > 0.0 {
                lb = mid;
            } else {
                ub = mid;
            }
        }
        let lb = lb as usize;
        let lmbd = ((b - sb[lb]) / (-s[lb])).max(0.0);
        for i in 0..n {
            d[i] = lmbd.min(d[i]) * a[i] + (-lmbd).max(d[i]) * (1.0 - a[i]);
        }
    }
    for i in 0..n {
        if w[i] == 0.0 {
            d[i] = 0.0;
        }
    }
    d
}

/// The smallest L2 step `d` with `w·(t + d) = b` and `t + d` in `[0, 1]ⁿ` (or the step to
/// the box boundary when the hyperplane is out of reach): the reference's `projection_l2`
/// for one point.
pub fn project_l2(t: &[f32], w: &[f32], b: f32) -> Vec<f32> {
    let n = t.len();
    let big = 1e12f32;
    let mut c = dot(w, t) - b;
    let sign = if c >= 0.0 { 1.0 } else { -1.0 };
    let w: Vec<f32> = w.iter().map(|v| v * sign).collect();
    c *= sign;
    let tiny = |v: f32| v.abs() < 1e-8;
    let r: Vec<f32> = (0..n)
        .map(|i| {
            if tiny(w[i]) {
                return big;
            }
            let v = (t[i] / w[i]).max((t[i] - 1.0) / w[i]).clamp(-big, big);
            if v == -big {
                big
            } else {
                v
            }
        })
        .collect();
    let mut indr: Vec<usize> = (0..n).collect();
    indr.sort_by(|&x, &y| r[x].total_cmp(&r[y]));
    let rs_raw: Vec<f32> = indr.iter().map(|&i| r[i]).collect();
    let zero_big = |v: f32| if v == big { 0.0 } else { v };
    let rs: Vec<f32> = rs_raw.iter().map(|&v| zero_big(v)).collect();
    let rs2: Vec<f32> = (0..n)
        .map(|j| {
            if j + 1 < n {
                zero_big(rs_raw[j + 1])
            } else {
                0.0
            }
        })
        .collect();
    let w3s: Vec<f32> = indr.iter().map(|&i| w[i] * w[i]).collect();
    let w5: f32 = w3s.iter().sum();
    let mut ws = vec![0f32; n];
    let mut acc = 0f32;
    for j in 0..n {
        acc += w3s[j];
        ws[j] = w5 - acc;
    }
    let mut d: Vec<f32> = (0..n)
        .map(|i| if tiny(w[i]) { 0.0 } else { -(r[i] * w[i]) })
        .collect();
    let mut s = vec![0f32; n + 1];
    s[0] = -w5 * rs[0];
    let mut acc = 0f32;
    for j in 0..n {
        acc += (-rs2[j] + rs[j]) * ws[j];
        s[j + 1] = acc - w5 * rs[0];
    }
    let c4 = s[0] + c < 0.0;
    let c3 = dot(&d, &w) + c > 0.0;
    let c2 = !(c4 || c3);
    if c4 {
        let alpha = c / w5;
        for i in 0..n {
            d[i] = -alpha * w[i];
        }
    } else if c2 {
        let (mut lb, mut ub) = (0f32, (n - 1) as f32);
        let iters = (n as f64).log2().ceil() as usize;
        for _ in 0..iters {
            let mid = ((lb + ub) / 2.0).floor();
            if s[mid as usize] + c > 0.0 {
                lb = mid;
            } else {
                ub = mid;
            }
        }
        let lb = lb as usize;
        let alpha = if ws[lb] == 0.0 {
            0.0
        } else {
            (s[lb] + c) / ws[lb] + rs[lb]
        };
        for i in 0..n {
            if alpha <= r[i] {
                d[i] = -alpha * w[i];
            }
        }
    }
    for i in 0..n {
        if tiny(w[i]) {
            d[i] = 0.0;
        }
    }
    d
}

impl Attack for FabT {
    fn name(&self) -> &str {
        if self.targeted {
            "fab-t"
        } else {
            "fab"
        }
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        let name = if self.targeted { "FAB-T" } else { "FAB" };
        if self.steps == 100 && self.restarts == 1 {
            format!("{name} {norm}")
        } else {
            format!(
                "{name} {norm} ({} steps, {} restarts)",
                self.steps, self.restarts
            )
        }
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("steps".into(), json!(self.steps));
        m.insert("restarts".into(), json!(self.restarts));
        if self.targeted {
            m.insert("n_target_classes".into(), json!(self.target_classes));
        } else {
            m.insert("targeted".into(), json!(false));
        }
        m.insert("alpha_max".into(), json!(self.alpha_max));
        m.insert("eta".into(), json!(self.eta));
        m.insert("beta".into(), json!(self.beta));
        m.insert("minimum_norm".into(), json!(true));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        let (logits, k) = clean_logits(ctx, batch, self.name(), 2)?;
        let dims = batch.x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let eps = eps.min(f32::MAX / 4.0);
        let mut alive: Vec<bool> = clean_fooled(batch, &logits, k)
            .into_iter()
            .map(|f| !f)
            .collect();
        let mut out = robust_models::to_host(batch.x.clone());
        let order: Vec<Vec<usize>> = logits
            .chunks(k)
            .map(|row| {
                let mut idx: Vec<usize> = (0..k).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx
            })
            .collect();
        let rounds = if self.targeted {
            self.target_classes.min(k - 1)
        } else {
            1
        };
        for round in 0..rounds {
            for restart in 0..self.restarts {
                let rows: Vec<usize> = (0..batch.len()).filter(|&i| alive[i]).collect();
                if rows.is_empty() {
                    break;
                }
                let sub = sub_batch(batch, &rows, None, k)?;
                let targets: Vec<usize> = rows.iter().map(|&r| order[r][round + 1]).collect();
                let stream = (restart > 0).then(|| {
                    if self.targeted {
                        mix(&[0xFAB, round as u64, restart as u64])
                    } else {
                        mix(&[0xFAB0, restart as u64])
                    }
                });
                let targets = self.targeted.then_some(targets.as_slice());
                let found = self.single_run(ctx, &sub, targets, eps, stream)?;
                // Judged as the reference judges it: misclassified and within ε.
                let mut adv = robust_models::to_host(sub.x.clone());
                let mut take = vec![false; rows.len()];
                for (j, f) in found.iter().enumerate() {
                    if let Some(px) = f {
                        adv[j * per..(j + 1) * per].copy_from_slice(px);
                        take[j] = true;
                    }
                }
                let adv_t = Tensor::<4>::from_data(
                    TensorData::new(adv.clone(), [rows.len(), dims[1], dims[2], dims[3]]),
                    &batch.x.device(),
                );
                let z = robust_models::to_host(ctx.model().forward(adv_t)?);
                let pred = argmax_rows(&z, k);
                let clean = robust_models::to_host(sub.x.clone());
                for j in 0..rows.len() {
                    let delta: Vec<f32> = adv[j * per..(j + 1) * per]
                        .iter()
                        .zip(&clean[j * per..(j + 1) * per])
                        .map(|(a, c)| a - c)
                        .collect();
                    take[j] = take[j] && pred[j] != sub.labels[j] && self.size(&delta) <= eps;
                }
                scatter_rows(&mut out, per, &rows, &take, &adv);
                for (j, &r) in rows.iter().enumerate() {
                    if take[j] {
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
