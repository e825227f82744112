//! Square Attack (Andriushchenko et al., ECCV 2020): a score-based attack that needs forward
//! passes only.
//!
//! This follows AutoAttack's `square.py` (github.com/fra31/auto-attack, `pyautoattack` 0.2.0)
//! as AutoAttack runs it (`resc_schedule=False`):
//!
//! * the margin loss `z_y − max_{j≠y} z_j` (targeted: `max_{j≠t} z_j − z_t` for the margin and
//!   the target's cross-entropy as the loss), minimised; a point is broken once its margin
//!   is ≤ 0 and is then no longer queried;
//! * L-inf: start from vertical stripes (`±ε` per column and channel), then at each query
//!   set a random square window of side `s` to `±2ε` per channel around the best point so
//!   far, project and clip, and keep it if the loss decreased (or the point is broken);
//! * L2: start from a grid of `s = ⌊h/5⌋` blocks each holding a signed "eta" pattern, then
//!   move the mass of a random window into a new eta pattern and zero a second window,
//!   renormalised to `‖δ‖₂ = ε`;
//! * the fraction `p` of changed pixels starts at `p_init` (0.8) and halves after queries
//!   10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000: the side is `s = round(√(p·h·w))`
//!   (at least 1; L2: at least 3 and odd), at most `min(h, w)`;
//! * the query budget is per point: one query for the initial point, then one per
//!   iteration while the point is still robust, for at most `queries` iterations
//!   ([`Square::attack_counted`] returns the counts).
//!
//! The reference draws one window and one set of signs per iteration for the whole batch,
//! from one generator seeded by the clock by default; here every point draws its own from
//! its own generator ([`AttackCtx::sample_rngs`]), as in the original paper, so that a run
//! is repeatable under `--seed` and a point's result does not depend on its batch.
//!
//! Everything but the forward passes runs on the host (a window per point per query); the
//! candidates of all robust points go to the model's device as one batch per query.

use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::apgd::{clean_fooled, clean_logits, sub_batch};
use crate::attack::{Attack, AttackCtx, Batch};
use crate::norm::Norm;
use crate::AttackError;

/// One run's outcome: the best points (row-major), whether each was broken, and the queries
/// spent on each.
type RunResult = (Vec<f32>, Vec<bool>, Vec<usize>);

/// The Square Attack.
#[derive(Clone, Debug)]
pub struct Square {
    norm: Norm,
    queries: usize,
    p_init: f32,
    restarts: usize,
}

/// The fraction of pixels changed at iteration `it` (0-based) from `p_init`: halved after
/// 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 iterations (the reference's
/// `p_selection` without rescaling).
pub fn p_schedule(p_init: f32, it: usize) -> f32 {
    let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        .iter()
        .filter(|&&b| it > b)
        .count();
    p_init / (1u32 << halvings) as f32
}

/// The side of the square window at iteration `it` for `h × w` images.
pub fn window_side(norm: Norm, p_init: f32, it: usize, h: usize, w: usize) -> usize {
    let p = p_schedule(p_init, it);
    let raw = ((p * (h * w) as f32) as f64).sqrt().round() as usize;
    let s = match norm {
        Norm::Linf => raw.max(1),
        Norm::L2 => {
            let s = raw.max(3);
            if s.is_multiple_of(2) {
                s + 1
            } else {
                s
            }
        }
    };
    s.min(h.min(w))
}

impl Square {
    /// Square Attack with AutoAttack's settings: 5000 queries, `p_init` 0.8.
    pub fn new(norm: Norm) -> Self {
        Self {
            norm,
            queries: 5000,
            p_init: 0.8,
            restarts: 1,
        }
    }

    /// Sets the restarts (at least 1); each runs only on points not yet broken, with its
    /// own random draws, and spends its own query budget.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts.max(1);
        self
    }

    /// Sets the query budget (iterations after the initial query).
    pub fn with_queries(mut self, queries: usize) -> Self {
        self.queries = queries;
        self
    }

    /// Sets the initial fraction of pixels changed per query (in `(0, 1]`).
    pub fn with_p_init(mut self, p_init: f32) -> Self {
        self.p_init = p_init;
        self
    }

    /// Runs the attack and also returns the queries spent on each point: 0 for a point
    /// already misclassified (not attacked), else, per restart it took part in, 1 (the
    /// initial point) plus one per iteration it took part in.
    pub fn attack_counted(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<(Tensor<4>, Vec<usize>), AttackError> {
        let dims = batch.x.dims();
        let [n, c, h, w] = dims;
        let per = c * h * w;
        let (logits, k) = clean_logits(ctx, batch, "square", 2)?;
        let rows: Vec<usize> = clean_fooled(batch, &logits, k)
            .into_iter()
            .enumerate()
            .filter(|(_, f)| !f)
            .map(|(i, _)| i)
            .collect();
        let mut out = robust_models::to_host(batch.x.clone());
        let mut counts = vec![0usize; n];
        let mut alive = vec![false; n];
        for &r in &rows {
            alive[r] = true;
        }
        for restart in 0..self.restarts {
            let rows: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
            if rows.is_empty() {
                break;
            }
            let sub = sub_batch(batch, &rows, None, k)?;
            let stream = 0x5051_5541 + restart as u64;
            let (best, broken, queries) = self.single_run(ctx, &sub, &out, &rows, eps, stream)?;
            for (j, &r) in rows.iter().enumerate() {
                counts[r] += queries[j];
                if broken[j] {
                    alive[r] = false;
                    out[r * per..(r + 1) * per].copy_from_slice(&best[j * per..(j + 1) * per]);
                }
            }
        }
        let adv = Tensor::from_data(TensorData::new(out, dims.to_vec()), &batch.x.device());
        Ok((adv, counts))
    }

    /// One run on the points `rows` of the clean pixels `clean` (`sub` is their batch):
    /// the best points, whether each was broken, and the queries spent on each.
    fn single_run(
        &self,
        ctx: &mut AttackCtx<'_>,
        sub: &Batch,
        clean: &[f32],
        rows: &[usize],
        eps: f32,
        stream: u64,
    ) -> Result<RunResult, AttackError> {
        let dims = sub.x.dims();
        let [_, c, h, w] = dims;
        let per = c * h * w;
        let mut rngs = ctx.sample_rngs(sub, stream);
        let goal: Vec<usize> = match &sub.targets {
            Some(t) => t.clone(),
            None => sub.labels.clone(),
        };
        let targeted = sub.targeted();
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&r| clean[r * per..(r + 1) * per].to_vec())
            .collect();
        let [lo, hi] = ctx.bounds();
        let eps = eps.min(f32::MAX / 4.0);
        let m = rows.len();
        let mut best = vec![0f32; m * per];
        for j in 0..m {
            let xr = &x[j * per..(j + 1) * per];
            let br = &mut best[j * per..(j + 1) * per];
            match self.norm {
                Norm::Linf => init_stripes(xr, br, [c, h, w], eps, [lo, hi], &mut rngs[j]),
                Norm::L2 => init_l2(xr, br, [c, h, w], eps, [lo, hi], &mut rngs[j]),
            }
        }
        let all: Vec<usize> = (0..m).collect();
        let (mut margin, mut loss) =
            self.margin_and_loss(ctx, &best, &all, &goal, dims, targeted)?;
        let mut queries = vec![1usize; m];
        let mut candidate = vec![0f32; per];
        for it in 0..self.queries {
            let active: Vec<usize> = (0..m).filter(|&j| margin[j] > 0.0).collect();
            if active.is_empty() {
                break;
            }
            let s = window_side(self.norm, self.p_init, it, h, w);
            let mut cands = vec![0f32; active.len() * per];
            for (a, &j) in active.iter().enumerate() {
                let xr = &x[j * per..(j + 1) * per];
                let br = &best[j * per..(j + 1) * per];
                match self.norm {
                    Norm::Linf => step_linf(
                        xr,
                        br,
                        &mut candidate,
                        [c, h, w],
                        s,
                        eps,
                        [lo, hi],
                        &mut rngs[j],
                    ),
                    Norm::L2 => step_l2(
                        xr,
                        br,
                        &mut candidate,
                        [c, h, w],
                        s,
                        eps,
                        [lo, hi],
                        &mut rngs[j],
                    ),
                }
                cands[a * per..(a + 1) * per].copy_from_slice(&candidate);
            }
            let (mg, ls) = self.margin_and_loss(ctx, &cands, &active, &goal, dims, targeted)?;
            for (a, &j) in active.iter().enumerate() {
                queries[j] += 1;
                let improved = ls[a] < loss[j];
                if improved {
                    loss[j] = ls[a];
                }
                if improved || mg[a] <= 0.0 {
                    margin[j] = mg[a];
                    best[j * per..(j + 1) * per].copy_from_slice(&cands[a * per..(a + 1) * per]);
                }
            }
        }
        let broken = margin.iter().map(|&v| v <= 0.0).collect();
        Ok((best, broken, queries))
    }

    /// Margin and loss of the candidates `data` (one row per entry of `which`, indices into
    /// `goal`): untargeted `z_y − max_{j≠y} z_j` for both; targeted `max_{j≠t} z_j − z_t`
    /// and the target's cross-entropy.
    fn margin_and_loss(
        &self,
        ctx: &AttackCtx<'_>,
        data: &[f32],
        which: &[usize],
        goal: &[usize],
        dims: [usize; 4],
        targeted: bool,
    ) -> Result<(Vec<f32>, Vec<f32>), AttackError> {
        let [_, c, h, w] = dims;
        let x = Tensor::<4>::from_data(
            TensorData::new(data.to_vec(), [which.len(), c, h, w]),
            ctx.model().device(),
        );
        let logits = ctx.model().forward(x)?;
        let k = logits.dims()[1];
        let z = robust_models::to_host(logits);
        let mut margins = Vec::with_capacity(which.len());
        let mut losses = Vec::with_capacity(which.len());
        for (a, &j) in which.iter().enumerate() {
            let row = &z[a * k..(a + 1) * k];
            let y = goal[j];
            let other = row
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != y)
                .fold(f32::NEG_INFINITY, |acc, (_, &v)| acc.max(v));
            if targeted {
                let peak = row.iter().fold(f32::NEG_INFINITY, |acc, &v| acc.max(v));
                let lse = peak + row.iter().map(|&v| (v - peak).exp()).sum::<f32>().ln();
                margins.push(other - row[y]);
                losses.push(lse - row[y]);
            } else {
                margins.push(row[y] - other);
                losses.push(row[y] - other);
            }
        }
        Ok((margins, losses))
    }
}

/// ±1 with equal probability (the reference's `sign(2·rand − 1)`).
fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random_range(0.0f32..1.0) < 0.5 {
        -1.0
    } else {
        1.0
    }
}

/// The reference's `random_int(0, n)`: ⌊n·u⌋ for u uniform in [0, 1) (0 when n is 0).
fn position(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    ((n as f64 * u) as usize).min(n.saturating_sub(1))
}

/// L-inf start: `x + ε·σ` with one sign σ per channel and column, clipped.
fn init_stripes(
    x: &[f32],
    out: &mut [f32],
    [c, h, w]: [usize; 3],
    eps: f32,
    [lo, hi]: [f32; 2],
    rng: &mut ChaCha8Rng,
) {
    for ch in 0..c {
        let signs: Vec<f32> = (0..w).map(|_| sign(rng)).collect();
        for r in 0..h {
            for (col, sg) in signs.iter().enumerate() {
                let i = (ch * h + r) * w + col;
                out[i] = (x[i] + eps * sg).clamp(lo, hi);
            }
        }
    }
}

/// One L-inf proposal: the best point with a random `s × s` window set to `±2ε` per
/// channel, projected onto the ball around `x` and clipped.
#[allow(clippy::too_many_arguments)]
fn step_linf(
    x: &[f32],
    best: &[f32],
    out: &mut [f32],
    [c, h, w]: [usize; 3],
    s: usize,
    eps: f32,
    [lo, hi]: [f32; 2],
    rng: &mut ChaCha8Rng,
) {
    out.copy_from_slice(best);
    let vh = position(rng, h - s);
    let vw = position(rng, w - s);
    for ch in 0..c {
        let d = 2.0 * eps * sign(rng);
        for r in vh..vh + s {
            for col in vw..vw + s {
                let i = (ch * h + r) * w + col;
                out[i] = (best[i] + d).clamp(x[i] - eps, x[i] + eps).clamp(lo, hi);
            }
        }
    }
}

/// The reference's `eta_rectangles(x, y)`: nested rectangles weighted 1/(k+1)², unit L2.
fn eta_rectangles(x: usize, y: usize) -> Vec<f32> {
    let mut d = vec![0f32; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc as i64 - 1, yc as i64 - 1);
    for counter in 0..xc.max(yc) as i64 {
        let r0 = c0.max(0) as usize;
        let r1 = ((c0 + 2 * counter + 1).min(x as i64)).max(0) as usize;
        let q0 = c1.max(0) as usize;
        let q1 = ((c1 + 2 * counter + 1).min(y as i64)).max(0) as usize;
        let v = 1.0 / ((counter + 1) as f32).powi(2);
        for r in r0..r1 {
            for q in q0..q1 {
                d[r * y + q] += v;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    let n = d.iter().map(|v| v * v).sum::<f32>().sqrt();
    d.iter().map(|v| v / n).collect()
}

/// The reference's `eta(s)`: two opposite halves of nested rectangles, unit L2, transposed
/// with probability 1/2.
fn eta(s: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let top = eta_rectangles(s / 2, s);
    let bottom = eta_rectangles(s - s / 2, s);
    let mut d: Vec<f32> = top
        .into_iter()
        .chain(bottom.into_iter().map(|v| -v))
        .collect();
    let n = d.iter().map(|v| v * v).sum::<f32>().sqrt();
    for v in &mut d {
        *v /= n;
    }
    if rng.random_range(0.0f32..1.0) > 0.5 {
        let mut t = vec![0f32; s * s];
        for r in 0..s {
            for q in 0..s {
                t[q * s + r] = d[r * s + q];
            }
        }
        d = t;
    }
    d
}

/// L2 start: a grid of `⌊h/5⌋`-sized blocks, each an eta pattern with a random sign per
/// channel, scaled to `‖δ‖₂ = ε` and clipped.
fn init_l2(
    x: &[f32],
    out: &mut [f32],
    [c, h, w]: [usize; 3],
    eps: f32,
    [lo, hi]: [f32; 2],
    rng: &mut ChaCha8Rng,
) {
    let mut delta = vec![0f32; c * h * w];
    let s = (h / 5).max(1);
    let sp = h.saturating_sub(s * 5) / 2;
    let mut vh = sp;
    for _ in 0..h / s {
        let mut vw = sp;
        for _ in 0..w / s {
            let e = eta(s, rng);
            for ch in 0..c {
                let sg = sign(rng);
                for r in 0..s {
                    for q in 0..s {
                        let (rr, qq) = (vh + r, vw + q);
                        if rr < h && qq < w {
                            delta[(ch * h + rr) * w + qq] += e[r * s + q] * sg;
                        }
                    }
                }
            }
            vw += s;
        }
        vh += s;
    }
    let n = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
    for i in 0..out.len() {
        out[i] = (x[i] + delta[i] / (n + 1e-12) * eps).clamp(lo, hi);
    }
}

/// One L2 proposal (the reference's loop body): the mass of window 1 and of a fresh eta
/// pattern goes to window 1, window 2 is zeroed, and the whole perturbation is rescaled to
/// `‖δ‖₂ = ε` and clipped.
#[allow(clippy::too_many_arguments)]
fn step_l2(
    x: &[f32],
    best: &[f32],
    out: &mut [f32],
    [c, h, w]: [usize; 3],
    s: usize,
    eps: f32,
    [lo, hi]: [f32; 2],
    rng: &mut ChaCha8Rng,
) {
    let at = |ch: usize, r: usize, q: usize| (ch * h + r) * w + q;
    let mut delta: Vec<f32> = best.iter().zip(x).map(|(b, x)| b - x).collect();
    let vh = position(rng, h - s);
    let vw = position(rng, w - s);
    let vh2 = position(rng, h - s);
    let vw2 = position(rng, w - s);
    let in1 = |r: usize, q: usize| r >= vh && r < vh + s && q >= vw && q < vw + s;
    let in2 = |r: usize, q: usize| r >= vh2 && r < vh2 + s && q >= vw2 && q < vw2 + s;
    let norm_image = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
    let e = eta(s, rng);
    let mut fresh = vec![0f32; c * s * s];
    for ch in 0..c {
        let sg = sign(rng);
        let mut n1 = 0f32;
        let mut nw = 0f32;
        for r in 0..h {
            for q in 0..w {
                let v = delta[at(ch, r, q)];
                if in1(r, q) {
                    n1 += v * v;
                }
                if in1(r, q) || in2(r, q) {
                    nw += v * v;
                }
            }
        }
        let (n1, nw) = (n1.sqrt(), nw.sqrt());
        let block = &mut fresh[ch * s * s..(ch + 1) * s * s];
        for r in 0..s {
            for q in 0..s {
                block[r * s + q] = e[r * s + q] * sg + delta[at(ch, vh + r, vw + q)] / (1e-12 + n1);
            }
        }
        let nb = block.iter().map(|v| v * v).sum::<f32>().sqrt();
        let room = ((eps * eps - norm_image * norm_image).max(0.0) / c as f32 + nw * nw).sqrt();
        for v in block.iter_mut() {
            *v = *v / (1e-12 + nb) * room;
        }
    }
    for ch in 0..c {
        for r in vh2..vh2 + s {
            for q in vw2..vw2 + s {
                delta[at(ch, r, q)] = 0.0;
            }
        }
        for r in 0..s {
            for q in 0..s {
                delta[at(ch, vh + r, vw + q)] = fresh[ch * s * s + r * s + q];
            }
        }
    }
    let n = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
    for i in 0..out.len() {
        out[i] = (x[i] + delta[i] / (n + 1e-12) * eps).clamp(lo, hi);
    }
}

impl Attack for Square {
    fn name(&self) -> &str {
        "square"
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn steps(&self) -> usize {
        self.queries
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        format!("Square-{} {norm}", self.queries)
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("queries".into(), json!(self.queries));
        m.insert("p_init".into(), json!(self.p_init));
        m.insert("loss".into(), json!("margin"));
        m.insert("restarts".into(), json!(self.restarts));
        m.insert("gradient_free".into(), json!(true));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        Ok(self.attack_counted(ctx, batch, eps)?.0)
    }
}
