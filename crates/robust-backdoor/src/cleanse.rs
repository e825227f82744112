//! Neural Cleanse: reverse-engineer, for every class, the smallest trigger that sends clean
//! inputs of the other classes to it (Wang et al., *Neural Cleanse: Identifying and
//! Mitigating Backdoor Attacks in Neural Networks*, IEEE S&P 2019).
//!
//! A trigger is a mask `m ∈ [0, 1]^{H×W}` (shared by the channels) and a pattern
//! `p ∈ [lo, hi]^{C×H×W}`; applied to an input it gives `x' = (1 − m) ⊙ x + m ⊙ p`. Both are
//! optimised through unconstrained logits, `m = tanh(a)/2 + 1/2` and
//! `p = lo + (hi − lo)(tanh(b)/2 + 1/2)`, with Adam (β = 0.5, 0.9, as the authors' code)
//! on `CE(f(x'), t) + λ·|m|₁`, the cross-entropy averaged over a mini-batch.
//!
//! λ follows the paper's adaptive schedule (the authors' `visualizer.py`): after each step
//! (one pass of mini-batches), if the step's attack success rate reached the threshold for
//! `patience` steps in a row λ is multiplied by `cost_multiplier`, if it missed for
//! `patience` steps in a row λ is divided by `cost_multiplier^1.5`; a λ of 0 is set to
//! `init_cost` once the attack succeeds. The trigger kept is the one with the smallest
//! mean mask norm among steps whose success rate reached the threshold; the run stops early
//! once λ has been raised and lowered at least once and the best norm has not improved by
//! more than `1 − early_stop_threshold` for `early_stop_patience` steps.

use burn::tensor::{activation, Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robust_models::{to_host, Model};
use serde::Serialize;

use crate::anomaly::{anomaly_index, low_outliers, AnomalyStats};
use crate::data::CleanSet;
use crate::error::{BackdoorError, Result};
use crate::mix;

/// Settings of the trigger search (the defaults are the paper's, except `steps`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CleanseConfig {
    /// Most optimisation steps per class (a step is `batches_per_step` mini-batches).
    pub steps: usize,
    /// Samples per mini-batch.
    pub batch_size: usize,
    /// Samples per forward pass when a recovered trigger's attack success is measured.
    pub measure_batch_size: usize,
    /// Mini-batches per step; `None`: one pass over the samples of the other classes.
    pub batches_per_step: Option<usize>,
    /// Adam's learning rate on the mask and pattern logits.
    pub learning_rate: f64,
    /// The first λ.
    pub init_cost: f64,
    /// λ's multiplier up; down is this to the power 1.5.
    pub cost_multiplier: f64,
    /// Steps of success (or failure) in a row before λ changes.
    pub patience: usize,
    /// The attack success rate a trigger must reach to count.
    pub success_threshold: f64,
    /// Stop a class once its best norm stopped improving (see the module docs).
    pub early_stop: bool,
    /// The best norm "did not improve" when it is at least this fraction of the previous best.
    pub early_stop_threshold: f64,
    /// Steps without improvement before stopping.
    pub early_stop_patience: usize,
    /// Seed of the initial masks and patterns and of the mini-batch order.
    pub seed: u64,
}

impl Default for CleanseConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 32,
            measure_batch_size: 256,
            batches_per_step: None,
            learning_rate: 0.1,
            init_cost: 1e-3,
            cost_multiplier: 1.5,
            patience: 5,
            success_threshold: 0.99,
            early_stop: true,
            early_stop_threshold: 0.99,
            early_stop_patience: 10,
            seed: 0,
        }
    }
}

impl CleanseConfig {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(BackdoorError::Input(what.to_string()));
        if self.steps == 0 {
            return bad("steps must be at least 1");
        }
        if self.batch_size == 0 || self.measure_batch_size == 0 {
            return bad("the batch size must be at least 1");
        }
        if self.batches_per_step == Some(0) {
            return bad("batches per step must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if !(self.init_cost.is_finite() && self.init_cost >= 0.0) {
            return bad("the initial cost λ must be a finite number ≥ 0");
        }
        if !(self.cost_multiplier.is_finite() && self.cost_multiplier > 1.0) {
            return bad("the cost multiplier must be a number above 1");
        }
        if self.patience == 0 || self.early_stop_patience == 0 {
            return bad("patience must be at least 1");
        }
        if !(self.success_threshold > 0.0 && self.success_threshold <= 1.0) {
            return bad("the attack success threshold must lie in (0, 1]");
        }
        if !(self.early_stop_threshold > 0.0 && self.early_stop_threshold <= 1.0) {
            return bad("the early-stop threshold must lie in (0, 1]");
        }
        Ok(())
    }
}

/// What one step of a class's optimisation reached (for progress displays).
#[derive(Clone, Copy, Debug)]
pub struct StepEvent {
    /// The target class.
    pub class: usize,
    /// The source class of a pair search; `None` when every other class is a source.
    pub source: Option<usize>,
    /// Steps done in this search (1-based).
    pub step: usize,
    /// The step budget of this search (a screened pair gets fewer steps than a finalist).
    pub budget: usize,
    /// λ after the step.
    pub cost: f64,
    /// Mean attack success rate over the step's mini-batches.
    pub success: f64,
    /// Mean mask L1 norm over the step's mini-batches.
    pub norm: f64,
    /// True on the class's last step (early stop or the step limit).
    pub last: bool,
}

/// The trigger recovered for one class.
#[derive(Clone, Debug, Serialize)]
pub struct Trigger {
    /// The target class.
    pub class: usize,
    /// The only source class whose samples the trigger had to move (a pair search);
    /// `None`: the samples of every other class.
    pub source: Option<usize>,
    /// L1 norm of the mask (the number of fully masked pixels it amounts to).
    pub norm: f64,
    /// Whether some step reached the success threshold; if not, the last mask is kept and
    /// its norm says little.
    pub reached: bool,
    /// Fraction of the clean samples it had to move (every other class, or the source) that
    /// the trigger sends to the class (measured after the search, on every such sample).
    pub attack_success: f64,
    /// Samples that measurement used.
    pub attack_samples: usize,
    /// Steps run.
    pub steps: usize,
    /// λ at the end.
    pub final_cost: f64,
    /// The mask, `H · W` values in `[0, 1]`.
    #[serde(skip)]
    pub mask: Vec<f32>,
    /// The pattern, `C · H · W` values within the model's bounds.
    #[serde(skip)]
    pub pattern: Vec<f32>,
}

/// Which samples a class's trigger must move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Per target, the samples of every other class at once: the paper's main method
    /// ([`neural_cleanse`]).
    #[default]
    AllSources,
    /// Per target and source class, the samples of that source only; per target the
    /// smallest trigger over its sources is analysed ([`crate::pair_cleanse`]).
    PerSource,
}

impl Scope {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scope::PerSource => "per-source",
            Scope::AllSources => "all-sources",
        }
    }
}

/// Per-class triggers and the anomaly analysis of their norms.
#[derive(Clone, Debug, Serialize)]
pub struct CleanseReport {
    /// Which samples each trigger had to move.
    pub scope: Scope,
    /// The settings used (for [`Scope::PerSource`], `steps` is the finalists' budget).
    pub config: CleanseConfig,
    /// The pair budget ([`Scope::PerSource`] only).
    pub pairs: Option<crate::pairs::PairConfig>,
    /// One trigger per class, in class order: for [`Scope::PerSource`] the smallest final
    /// trigger of the class over its sources (its `source` says which).
    pub triggers: Vec<Trigger>,
    /// MAD statistics of the norms.
    pub anomaly: AnomalyStats,
    /// The anomaly index above which a low norm is flagged (2 in the paper).
    pub threshold: f64,
    /// The flagged classes, in class order.
    pub flagged: Vec<usize>,
    /// [`Scope::PerSource`]: every pair's screen, by target then source (empty when every
    /// pair was a finalist).
    pub screen: Vec<crate::pairs::PairScreen>,
    /// [`Scope::PerSource`]: the fully optimised pairs, by target then source.
    pub finals: Vec<Trigger>,
}

impl CleanseReport {
    /// The flagged `(source, target)` pairs of a [`Scope::PerSource`] run: each flagged
    /// target with its smallest trigger's source (empty for [`Scope::AllSources`]).
    pub fn flagged_pairs(&self) -> Vec<(usize, usize)> {
        self.flagged
            .iter()
            .filter_map(|&t| self.triggers[t].source.map(|s| (s, t)))
            .collect()
    }
}

/// Adam's state for one tensor.
struct Adam {
    m: Tensor<4>,
    v: Tensor<4>,
}

const BETA1: f64 = 0.5;
const BETA2: f64 = 0.9;
const ADAM_EPS: f64 = 1e-7;

impl Adam {
    fn new(like: &Tensor<4>) -> Self {
        Self {
            m: like.zeros_like(),
            v: like.zeros_like(),
        }
    }

    /// One Adam update of `p` with gradient `g` at step `t` (1-based).
    fn step(&mut self, p: Tensor<4>, g: Tensor<4>, lr: f64, t: i32) -> Tensor<4> {
        self.m = self.m.clone().mul_scalar(BETA1) + g.clone().mul_scalar(1.0 - BETA1);
        self.v = self.v.clone().mul_scalar(BETA2) + (g.clone() * g).mul_scalar(1.0 - BETA2);
        let mhat = self.m.clone().div_scalar(1.0 - BETA1.powi(t));
        let vhat = self.v.clone().div_scalar(1.0 - BETA2.powi(t));
        p - (mhat / vhat.sqrt().add_scalar(ADAM_EPS)).mul_scalar(lr)
    }
}

/// The logit whose `tanh(a)/2 + 1/2` is `u` (kept off the ends so it is finite).
fn unit_logit(u: f32) -> f32 {
    let u = u.clamp(1e-3, 1.0 - 1e-3);
    (2.0 * u - 1.0).atanh()
}

/// The mask `[1, 1, H, W]` and pattern `[1, C, H, W]` of their logits.
fn trigger_of(a: Tensor<4>, b: Tensor<4>, bounds: [f32; 2]) -> (Tensor<4>, Tensor<4>) {
    let mask = a.tanh().mul_scalar(0.5).add_scalar(0.5);
    let unit = b.tanh().mul_scalar(0.5).add_scalar(0.5);
    let pattern = unit.mul_scalar(bounds[1] - bounds[0]).add_scalar(bounds[0]);
    (mask, pattern)
}

/// `(1 − m) ⊙ x + m ⊙ p` for a batch `x` `[N, C, H, W]`.
pub(crate) fn apply(x: Tensor<4>, mask: Tensor<4>, pattern: Tensor<4>) -> Tensor<4> {
    let dims = x.dims();
    let m = mask.expand(dims);
    let p = pattern.expand(dims);
    x.clone() + (p - x) * m
}

/// Samples whose label is not `class`.
fn others(set: &CleanSet, class: usize) -> Vec<usize> {
    (0..set.len()).filter(|&i| set.labels[i] != class).collect()
}

fn batch_tensor(set: &CleanSet, idx: &[usize], device: &Device) -> Tensor<4> {
    let [c, h, w] = set.shape;
    Tensor::from_data(
        TensorData::new(set.gather(idx), [idx.len(), c, h, w]),
        device,
    )
}

/// Fisher–Yates with the crate's seeded generator (stable across rand versions' helpers).
fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Predicted classes of logits `[N, K]`, on the host (first maximum on ties).
pub(crate) fn argmax_rows(logits: Tensor<2>) -> Vec<usize> {
    let [n, k] = logits.dims();
    let v = to_host(logits);
    (0..n)
        .map(|i| {
            let row = &v[i * k..(i + 1) * k];
            let mut best = 0;
            for (j, &z) in row.iter().enumerate() {
                if z > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Searches the smallest trigger that sends clean samples of every other class to `class`
/// (see the module docs). `on_step` sees every step.
pub fn reverse_engineer(
    model: &Model,
    set: &CleanSet,
    class: usize,
    cfg: &CleanseConfig,
    on_step: &mut dyn FnMut(StepEvent),
) -> Result<Trigger> {
    cfg.validate()?;
    check_class(model, class)?;
    let pool = others(set, class);
    if pool.is_empty() {
        return Err(BackdoorError::Input(format!(
            "no clean sample of a class other than {class}: a trigger for it cannot be measured"
        )));
    }
    let job = Job {
        class,
        source: None,
        pool: &pool,
        steps: cfg.steps,
        seed: mix(&[cfg.seed, class as u64]),
    };
    search(model, set, &job, cfg, on_step)
}

/// Searches the smallest trigger that sends the clean samples of `source` (only those) to
/// `target`, for at most `steps` steps: the source-specific trigger of Neural Cleanse's
/// section VII. Its attack success is measured on the samples of `source`.
pub fn reverse_engineer_pair(
    model: &Model,
    set: &CleanSet,
    source: usize,
    target: usize,
    steps: usize,
    cfg: &CleanseConfig,
    on_step: &mut dyn FnMut(StepEvent),
) -> Result<Trigger> {
    cfg.validate()?;
    check_class(model, source)?;
    check_class(model, target)?;
    if source == target || steps == 0 {
        return Err(BackdoorError::Input(format!(
            "a pair search needs two different classes and at least one step (got {source} → \
             {target}, {steps} steps)"
        )));
    }
    let pool: Vec<usize> = (0..set.len())
        .filter(|&i| set.labels[i] == source)
        .collect();
    if pool.is_empty() {
        return Err(BackdoorError::Input(format!(
            "no clean sample of class {source}: its triggers cannot be measured"
        )));
    }
    // A word of its own keeps pair streams apart from the all-source ones.
    let job = Job {
        class: target,
        source: Some(source),
        pool: &pool,
        steps,
        seed: mix(&[cfg.seed, target as u64, source as u64, 0x5041_4952]),
    };
    search(model, set, &job, cfg, on_step)
}

fn check_class(model: &Model, class: usize) -> Result<()> {
    let k = model.info().num_classes;
    if class >= k {
        return Err(BackdoorError::Input(format!(
            "class {class} is out of range for a model with {k} classes"
        )));
    }
    Ok(())
}

/// One trigger search: send the samples `pool` (of `source`, or of every class but `class`)
/// to `class` within `steps` steps, from the random stream `seed`.
struct Job<'a> {
    class: usize,
    source: Option<usize>,
    pool: &'a [usize],
    steps: usize,
    seed: u64,
}

/// The optimisation shared by both scopes (see the module docs).
fn search(
    model: &Model,
    set: &CleanSet,
    job: &Job,
    cfg: &CleanseConfig,
    on_step: &mut dyn FnMut(StepEvent),
) -> Result<Trigger> {
    let Job {
        class,
        source,
        pool,
        steps,
        seed,
    } = *job;
    let k = model.info().num_classes;
    let [c, h, w] = set.shape;
    let device = model.device().clone();
    let ad = device.clone().autodiff();
    let bounds = model.info().bounds;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let init = |n: usize, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..n)
            .map(|_| unit_logit(rng.random_range(0.0f32..1.0)))
            .collect()
    };
    let mut a = Tensor::<4>::from_data(
        TensorData::new(init(h * w, &mut rng), [1, 1, h, w]),
        &device,
    );
    let mut b = Tensor::<4>::from_data(
        TensorData::new(init(c * h * w, &mut rng), [1, c, h, w]),
        &device,
    );
    let (mut adam_a, mut adam_b) = (Adam::new(&a), Adam::new(&b));
    let mut onehot = vec![0f32; k];
    onehot[class] = 1.0;

    let per_step = cfg
        .batches_per_step
        .unwrap_or_else(|| pool.len().div_ceil(cfg.batch_size));
    let mut order = pool.to_vec();
    let mut cursor = order.len();
    let mut cost = cfg.init_cost;
    let mut best: Option<(f64, Vec<f32>, Vec<f32>)> = None;
    let (mut set_counter, mut up_counter, mut down_counter) = (0usize, 0usize, 0usize);
    let (mut up_flag, mut down_flag) = (false, false);
    let mut early_counter = 0usize;
    let mut early_best = f64::INFINITY;
    let mut t = 0i32;
    let mut steps_run = 0;
    for step in 1..=steps {
        steps_run = step;
        let (mut hits, mut seen, mut norm_sum) = (0usize, 0usize, 0f64);
        for _ in 0..per_step {
            if cursor >= order.len() {
                shuffle(&mut order, &mut rng);
                cursor = 0;
            }
            let end = (cursor + cfg.batch_size).min(order.len());
            let idx = &order[cursor..end];
            cursor = end;
            let n = idx.len();
            let x = batch_tensor(set, idx, &ad);
            let ag = a.clone().autodiff().require_grad();
            let bg = b.clone().autodiff().require_grad();
            let (mask, pattern) = trigger_of(ag.clone(), bg.clone(), bounds);
            let logits = model.forward(apply(x, mask.clone(), pattern))?;
            let target =
                Tensor::<2>::from_data(TensorData::new(onehot.clone(), [1, k]), &ad).expand([n, k]);
            let ce = (activation::log_softmax(logits.clone(), 1) * target)
                .sum()
                .neg()
                .div_scalar(n as f64);
            let l1 = mask.sum();
            let loss = ce + l1.clone().mul_scalar(cost);
            let grads = loss.backward();
            let missing = || BackdoorError::Internal("the trigger received no gradient".into());
            let ga = ag.grad(&grads).ok_or_else(missing)?.without_autodiff();
            let gb = bg.grad(&grads).ok_or_else(missing)?.without_autodiff();
            t += 1;
            a = adam_a.step(a, ga, cfg.learning_rate, t);
            b = adam_b.step(b, gb, cfg.learning_rate, t);
            let pred = argmax_rows(logits.detach().without_autodiff());
            hits += pred.iter().filter(|&&p| p == class).count();
            seen += n;
            norm_sum += f64::from(to_host(l1.detach().without_autodiff())[0]);
        }
        let success = hits as f64 / seen as f64;
        let norm = norm_sum / per_step as f64;
        if !norm.is_finite() {
            return Err(BackdoorError::Input(format!(
                "the mask norm became {norm} while searching a trigger for class {class}: \
                 the model's outputs or gradients are not finite"
            )));
        }
        let reached = success >= cfg.success_threshold;
        if reached && best.as_ref().is_none_or(|(r, _, _)| norm < *r) {
            let (mask, pattern) = trigger_of(a.clone(), b.clone(), bounds);
            best = Some((norm, to_host(mask), to_host(pattern)));
        }
        // Early stop (only once a successful trigger exists).
        let mut stop = false;
        if cfg.early_stop {
            let reg_best = best.as_ref().map_or(f64::INFINITY, |b| b.0);
            if reg_best.is_finite() {
                if reg_best >= cfg.early_stop_threshold * early_best {
                    early_counter += 1;
                } else {
                    early_counter = 0;
                }
            }
            early_best = early_best.min(reg_best);
            stop = up_flag && down_flag && early_counter >= cfg.early_stop_patience;
        }
        // The adaptive λ.
        if cost == 0.0 && reached {
            set_counter += 1;
            if set_counter >= cfg.patience {
                cost = cfg.init_cost;
                (up_counter, down_counter, up_flag, down_flag) = (0, 0, false, false);
            }
        } else {
            set_counter = 0;
        }
        if reached {
            up_counter += 1;
            down_counter = 0;
        } else {
            up_counter = 0;
            down_counter += 1;
        }
        if up_counter >= cfg.patience {
            up_counter = 0;
            cost *= cfg.cost_multiplier;
            up_flag = true;
        } else if down_counter >= cfg.patience {
            down_counter = 0;
            cost /= cfg.cost_multiplier.powf(1.5);
            down_flag = true;
        }
        let last = stop || step == steps;
        on_step(StepEvent {
            class,
            source,
            step,
            budget: steps,
            cost,
            success,
            norm,
            last,
        });
        if stop {
            break;
        }
    }
    let reached = best.is_some();
    let (mask, pattern) = match best {
        Some((_, m, p)) => (m, p),
        None => {
            let (m, p) = trigger_of(a, b, bounds);
            (to_host(m), to_host(p))
        }
    };
    let norm = mask.iter().map(|&v| f64::from(v)).sum();
    let (hits, n) = success_on(
        model,
        set,
        pool,
        class,
        &mask,
        &pattern,
        cfg.measure_batch_size,
    )?;
    Ok(Trigger {
        class,
        source,
        norm,
        reached,
        attack_success: hits as f64 / n as f64,
        attack_samples: n,
        steps: steps_run,
        final_cost: cost,
        mask,
        pattern,
    })
}

/// How many clean samples of classes other than `class` the trigger (`mask` `H · W`,
/// `pattern` `C · H · W`) sends to `class`, out of how many.
pub fn attack_success(
    model: &Model,
    set: &CleanSet,
    class: usize,
    mask: &[f32],
    pattern: &[f32],
    batch_size: usize,
) -> Result<(usize, usize)> {
    let [c, h, w] = set.shape;
    if mask.len() != h * w || pattern.len() != c * h * w {
        return Err(BackdoorError::Input(format!(
            "a trigger of {} mask and {} pattern values does not fit images of shape {:?}",
            mask.len(),
            pattern.len(),
            set.shape
        )));
    }
    success_on(
        model,
        set,
        &others(set, class),
        class,
        mask,
        pattern,
        batch_size,
    )
}

/// How many of the samples `pool` the trigger sends to `class`, out of how many.
fn success_on(
    model: &Model,
    set: &CleanSet,
    pool: &[usize],
    class: usize,
    mask: &[f32],
    pattern: &[f32],
    batch_size: usize,
) -> Result<(usize, usize)> {
    let [c, h, w] = set.shape;
    let device = model.device();
    let m = Tensor::<4>::from_data(TensorData::new(mask.to_vec(), [1, 1, h, w]), device);
    let p = Tensor::<4>::from_data(TensorData::new(pattern.to_vec(), [1, c, h, w]), device);
    let mut hits = 0;
    for idx in pool.chunks(batch_size.max(1)) {
        let x = batch_tensor(set, idx, device);
        let pred = argmax_rows(model.forward(apply(x, m.clone(), p.clone()))?);
        hits += pred.iter().filter(|&&p| p == class).count();
    }
    Ok((hits, pool.len()))
}

/// Runs [`reverse_engineer`] for every class of the model and flags the classes whose
/// trigger norm is a low outlier by the MAD anomaly index (above `threshold`).
pub fn neural_cleanse(
    model: &Model,
    set: &CleanSet,
    cfg: &CleanseConfig,
    threshold: f64,
    on_step: &mut dyn FnMut(StepEvent),
) -> Result<CleanseReport> {
    cfg.validate()?;
    if !(threshold.is_finite() && threshold > 0.0) {
        return Err(BackdoorError::Input(
            "the anomaly-index threshold must be a positive number".into(),
        ));
    }
    let k = model.info().num_classes;
    let triggers = (0..k)
        .map(|class| reverse_engineer(model, set, class, cfg, on_step))
        .collect::<Result<Vec<_>>>()?;
    let norms: Vec<f64> = triggers.iter().map(|t| t.norm).collect();
    let anomaly = anomaly_index(&norms)
        .ok_or_else(|| BackdoorError::Internal("a trigger norm is NaN".into()))?;
    let flagged = low_outliers(&norms, &anomaly, threshold);
    Ok(CleanseReport {
        scope: Scope::AllSources,
        config: cfg.clone(),
        pairs: None,
        triggers,
        anomaly,
        threshold,
        flagged,
        screen: Vec::new(),
        finals: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> Device {
        robust_models::select_device(robust_models::DeviceChoice::Cpu)
            .expect("the CPU backend exists")
            .device
    }

    fn t4(v: Vec<f32>, shape: [usize; 4], d: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    #[test]
    fn unit_logits_invert_the_mask_map() {
        for &u in &[0.01f32, 0.25, 0.5, 0.9, 0.999] {
            let back = unit_logit(u).tanh() * 0.5 + 0.5;
            assert!((back - u).abs() < 1e-5, "{u} -> {back}");
        }
        assert!(unit_logit(0.0).is_finite() && unit_logit(1.0).is_finite());
    }

    /// `(1 − m) x + m p`, the mask broadcast over channels and the batch, checked value by
    /// value; the pattern maps into the bounds.
    #[test]
    fn applying_a_trigger_blends_by_the_mask() {
        let d = cpu();
        let x: Vec<f32> = (0..2 * 2 * 2 * 2).map(|i| i as f32 / 16.0).collect();
        let m = vec![0.0, 0.25, 0.5, 1.0];
        let p: Vec<f32> = vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let out = to_host(apply(
            t4(x.clone(), [2, 2, 2, 2], &d),
            t4(m.clone(), [1, 1, 2, 2], &d),
            t4(p.clone(), [1, 2, 2, 2], &d),
        ));
        for n in 0..2 {
            for c in 0..2 {
                for j in 0..4 {
                    let i = n * 8 + c * 4 + j;
                    let want = (1.0 - m[j]) * x[i] + m[j] * p[c * 4 + j];
                    assert!((out[i] - want).abs() < 1e-6, "{i}: {} vs {want}", out[i]);
                }
            }
        }
        let (mask, pattern) = trigger_of(
            t4(vec![0.0, 10.0], [1, 1, 1, 2], &d),
            t4(vec![0.0, -10.0], [1, 1, 1, 2], &d),
            [-1.0, 3.0],
        );
        let (mask, pattern) = (to_host(mask), to_host(pattern));
        assert!((mask[0] - 0.5).abs() < 1e-6 && (mask[1] - 1.0).abs() < 1e-6);
        assert!((pattern[0] - 1.0).abs() < 1e-6 && (pattern[1] + 1.0).abs() < 1e-6);
    }

    /// Adam's bias correction makes its first step `lr · g / (|g| + ε)`; the second, with
    /// the same gradient, the same again.
    #[test]
    fn adam_steps_match_the_closed_form() {
        let d = cpu();
        let p0 = vec![0.5f32, -1.0, 2.0, 0.0];
        let g = vec![0.3f32, -2.0, 1e-3, 5.0];
        let mut adam = Adam::new(&t4(p0.clone(), [1, 1, 2, 2], &d));
        let p1 = adam.step(
            t4(p0.clone(), [1, 1, 2, 2], &d),
            t4(g.clone(), [1, 1, 2, 2], &d),
            0.1,
            1,
        );
        let p2 = to_host(adam.step(p1.clone(), t4(g.clone(), [1, 1, 2, 2], &d), 0.1, 2));
        let p1 = to_host(p1);
        for i in 0..4 {
            let step = 0.1 * f64::from(g[i]) / (f64::from(g[i]).abs() + ADAM_EPS);
            let want1 = f64::from(p0[i]) - step;
            assert!(
                (f64::from(p1[i]) - want1).abs() < 1e-5,
                "{i}: {} vs {want1}",
                p1[i]
            );
            assert!((f64::from(p2[i]) - (want1 - step)).abs() < 1e-5);
        }
    }
}
