//! The gradient-descent core shared by FGSM, BIM and PGD.
//!
//! FGSM is one full step (ε) from the clean input; PGD is several smaller steps from a random
//! start, each projected back onto the ε-ball and clipped to the bounds. Restarts keep, per
//! sample, the best result over restarts (a success beats a failure; otherwise the higher
//! objective wins).

use burn::tensor::{Tensor, TensorData};
use serde_json::{json, Map, Value};

use crate::attack::{Attack, AttackCtx, Batch};
use crate::loss::Loss;
use crate::norm::Norm;
use crate::AttackError;

/// The size of each step.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepSize {
    /// An absolute step.
    Absolute(f32),
    /// A fraction of ε.
    Relative(f32),
}

impl StepSize {
    /// The step for a given ε. A relative step of a huge ε is capped at `f32::MAX`: it
    /// still takes every pixel with a nonzero gradient to the bounds, as an infinite step
    /// would, but leaves the others in place instead of making them `0 × ∞ = NaN`.
    pub fn for_eps(self, eps: f32) -> f32 {
        match self {
            Self::Absolute(a) => a,
            Self::Relative(r) => (r * eps).min(f32::MAX),
        }
    }
}

/// Projected gradient ascent on a loss, within an ε-ball.
#[derive(Clone, Debug)]
pub struct GradientDescent {
    name: String,
    norm: Norm,
    steps: usize,
    step: StepSize,
    random_start: bool,
    restarts: usize,
    loss: Loss,
}

impl GradientDescent {
    /// FGSM (L-inf) or the fast gradient method (L2): one step of size ε, no random start.
    pub fn fgsm(norm: Norm) -> Self {
        Self {
            name: match norm {
                Norm::Linf => "fgsm".into(),
                Norm::L2 => "fgm".into(),
            },
            norm,
            steps: 1,
            step: StepSize::Relative(1.0),
            random_start: false,
            restarts: 1,
            loss: Loss::CrossEntropy,
        }
    }

    /// PGD (Madry et al.): `steps` steps of 2.5·ε/steps from a random start.
    pub fn pgd(norm: Norm, steps: usize) -> Self {
        let steps = steps.max(1);
        Self {
            name: "pgd".into(),
            norm,
            steps,
            step: StepSize::Relative(2.5 / steps as f32),
            random_start: true,
            restarts: 1,
            loss: Loss::CrossEntropy,
        }
    }

    /// Sets the step size.
    pub fn with_step(mut self, step: StepSize) -> Self {
        self.step = step;
        self
    }

    /// Turns the random start on or off.
    pub fn with_random_start(mut self, on: bool) -> Self {
        self.random_start = on;
        self
    }

    /// Sets the number of restarts (at least 1).
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts.max(1);
        self
    }

    /// Sets the loss.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the number of steps (at least 1).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps.max(1);
        self
    }

    /// Renames the attack (its machine name).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn one_run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
        restart: usize,
    ) -> Result<Tensor<4>, AttackError> {
        let alpha = self.step.for_eps(eps);
        let mut x = batch.x.clone();
        if self.random_start {
            let mut rngs = ctx.sample_rngs(batch, restart as u64);
            let noise = self
                .norm
                .random_start(x.dims(), eps, &mut rngs, &x.device());
            x = ctx.clip(x + noise);
        }
        for step in 0..self.steps {
            let g = if step == 0 && !self.random_start {
                ctx.clean_gradient(batch, self.loss)?
            } else {
                ctx.gradient(&x, batch, self.loss)?
            };
            let stepped = x + self.norm.normalize(g).mul_scalar(alpha);
            x = ctx.clip(self.norm.project(&batch.x, stepped, eps));
        }
        Ok(x)
    }
}

impl Attack for GradientDescent {
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
        let base = if self.steps > 1 {
            format!("{}-{} {norm}", self.name.to_uppercase(), self.steps)
        } else {
            format!("{} {norm}", self.name.to_uppercase())
        };
        let mut extras = Vec::new();
        if self.restarts > 1 {
            extras.push(format!("{} restarts", self.restarts));
        }
        if self.loss != Loss::CrossEntropy {
            extras.push(self.loss.to_string());
        }
        if extras.is_empty() {
            base
        } else {
            format!("{base} ({})", extras.join(", "))
        }
    }

    fn clean_start(&self) -> Option<Loss> {
        (!self.random_start).then_some(self.loss)
    }

    fn params(&self) -> Map<String, Value> {
        let (kind, value) = match self.step {
            StepSize::Absolute(a) => ("absolute", a),
            StepSize::Relative(r) => ("relative", r),
        };
        let mut m = Map::new();
        m.insert("steps".into(), json!(self.steps));
        m.insert("step_size".into(), json!(value));
        m.insert("step_size_mode".into(), json!(kind));
        m.insert("random_start".into(), json!(self.random_start));
        m.insert("restarts".into(), json!(self.restarts));
        m.insert("loss".into(), json!(self.loss.to_string()));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        if self.restarts == 1 {
            return self.one_run(ctx, batch, eps, 0);
        }
        let mut best: Option<(Tensor<4>, Vec<f32>, Vec<bool>)> = None;
        for r in 0..self.restarts {
            let x = self.one_run(ctx, batch, eps, r)?;
            let (logits, obj) = ctx.objective(&x, batch, self.loss)?;
            let (pred, _) = crate::attack::predictions(logits);
            let success: Vec<bool> = match &batch.targets {
                Some(t) => pred.iter().zip(t).map(|(p, t)| p == t).collect(),
                None => pred
                    .iter()
                    .zip(&batch.labels)
                    .map(|(p, y)| p != y)
                    .collect(),
            };
            best = Some(match best {
                None => (x, obj, success),
                Some((bx, bobj, bsucc)) => {
                    let take: Vec<bool> = (0..obj.len())
                        .map(|i| {
                            (success[i] && !bsucc[i])
                                || (success[i] == bsucc[i] && obj[i] > bobj[i])
                        })
                        .collect();
                    let n = take.len();
                    let mask = Tensor::<4>::from_data(
                        TensorData::new(
                            take.iter()
                                .map(|&t| if t { 1f32 } else { 0.0 })
                                .collect::<Vec<_>>(),
                            [n, 1, 1, 1],
                        ),
                        &x.device(),
                    );
                    // m ∈ {0, 1}: x·m + b·(1 − m) picks exactly one of the two.
                    let merged = x * mask.clone() + bx * (mask.neg().add_scalar(1.0));
                    let obj = (0..n)
                        .map(|i| if take[i] { obj[i] } else { bobj[i] })
                        .collect();
                    let succ = (0..n)
                        .map(|i| if take[i] { success[i] } else { bsucc[i] })
                        .collect();
                    (merged, obj, succ)
                }
            });
        }
        Ok(best.map(|b| b.0).unwrap_or_else(|| batch.x.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::StepSize;

    /// PGD's relative step of a huge ε was ∞, and a pixel with a zero gradient became
    /// 0 × ∞ = NaN.
    #[test]
    fn a_relative_step_of_a_huge_epsilon_is_finite() {
        assert_eq!(StepSize::Relative(2.5).for_eps(3.4e38), f32::MAX);
        assert_eq!(StepSize::Relative(0.25).for_eps(0.1), 0.25 * 0.1);
        assert_eq!(StepSize::Absolute(0.01).for_eps(3.4e38), 0.01);
    }
}
