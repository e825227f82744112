//! MI-FGSM (Dong et al., CVPR 2018): iterative FGSM with momentum on the L1-normalised
//! gradient.
//!
//! Each step accumulates `g ← μ·g + ∇/mean|∇|` (per sample; μ = 1.0, torchattacks' `decay`)
//! and moves by `α·sign(g)` (L2: `α·g/‖g‖₂`), then projects onto the ε-ball and clips, from
//! the clean input (no random start). The step defaults to α = ε/steps, the paper's choice,
//! so that the last iterate can reach the surface of the ball.

use burn::tensor::Tensor;
use serde_json::{json, Map, Value};

use crate::attack::{Attack, AttackCtx, Batch};
use crate::gradient::StepSize;
use crate::loss::Loss;
use crate::norm::Norm;
use crate::AttackError;

/// MI-FGSM.
#[derive(Clone, Debug)]
pub struct MiFgsm {
    norm: Norm,
    steps: usize,
    step: Option<StepSize>,
    decay: f32,
    loss: Loss,
}

impl MiFgsm {
    /// `steps` steps of ε/steps with momentum 1.0 on the cross-entropy.
    pub fn new(norm: Norm, steps: usize) -> Self {
        Self {
            norm,
            steps: steps.max(1),
            step: None,
            decay: 1.0,
            loss: Loss::CrossEntropy,
        }
    }

    /// Sets the step size (default ε/steps).
    pub fn with_step(mut self, step: StepSize) -> Self {
        self.step = Some(step);
        self
    }

    /// Sets the momentum decay μ (default 1.0).
    pub fn with_decay(mut self, decay: f32) -> Self {
        self.decay = decay;
        self
    }

    /// Sets the loss.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    fn alpha(&self, eps: f32) -> f32 {
        self.step
            .unwrap_or(StepSize::Relative(1.0 / self.steps as f32))
            .for_eps(eps)
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> &str {
        "mifgsm"
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        format!("MI-FGSM-{} {norm}", self.steps)
    }

    fn clean_start(&self) -> Option<Loss> {
        Some(self.loss)
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("steps".into(), json!(self.steps));
        match self.step {
            Some(StepSize::Absolute(a)) => {
                m.insert("step_size".into(), json!(a));
                m.insert("step_size_mode".into(), json!("absolute"));
            }
            Some(StepSize::Relative(r)) => {
                m.insert("step_size".into(), json!(r));
                m.insert("step_size_mode".into(), json!("relative"));
            }
            None => {
                m.insert("step_size".into(), json!(1.0 / self.steps as f64));
                m.insert("step_size_mode".into(), json!("relative"));
            }
        }
        m.insert("decay".into(), json!(self.decay));
        m.insert("loss".into(), json!(self.loss.to_string()));
        m.insert("random_start".into(), json!(false));
        m
    }

    fn run(
        &self,
        ctx: &mut AttackCtx<'_>,
        batch: &Batch,
        eps: f32,
    ) -> Result<Tensor<4>, AttackError> {
        let alpha = self.alpha(eps);
        let mut x = batch.x.clone();
        let mut momentum: Option<Tensor<4>> = None;
        for step in 0..self.steps {
            let g = if step == 0 {
                ctx.clean_gradient(batch, self.loss)?
            } else {
                ctx.gradient(&x, batch, self.loss)?
            };
            let [n, c, h, w] = g.dims();
            let l1 = g
                .clone()
                .abs()
                .reshape([n, c * h * w])
                .mean_dim(1)
                .reshape([n, 1, 1, 1]);
            let g = g / l1;
            let g = match momentum {
                Some(m) => g + m.mul_scalar(self.decay),
                None => g,
            };
            momentum = Some(g.clone());
            let stepped = x + self.norm.normalize(g).mul_scalar(alpha);
            x = ctx.clip(self.norm.project(&batch.x, stepped, eps));
        }
        Ok(x)
    }
}
