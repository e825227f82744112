//! Adversarial attacks for robust, and the shared code that evaluates them.
//!
//! # Design
//!
//! Following Foolbox, an attack is small: it implements [`Attack::run`] for one ε and
//! returns candidate adversarial inputs. Everything an attack could get wrong is shared code
//! in [`sweep`]: the loop over ε values, the projection onto the ε-ball, the clip to the
//! model's input bounds, the predictions and the per-sample success bookkeeping (robust
//! accuracy, success rate, perturbation sizes, per-class counts, the worst case over attacks).
//!
//! FGSM, BIM and PGD are one type, [`GradientDescent`]: FGSM is a single step of size ε,
//! PGD several projected steps from a random start. A [`Norm`] supplies the three things that
//! differ between threat models: a random start, the step direction and the projection.
//!
//! The AutoAttack family follows its reference implementation (github fra31/auto-attack)
//! step for step, each attack in its own module: [`apgd`] (APGD-CE, APGD-DLR, APGD-T),
//! [`fab`] (FAB-T), [`square`] (Square Attack, forward passes only), [`mifgsm`] (MI-FGSM) and
//! [`autoattack`] (the ensemble, which runs each component only on the points still robust
//! and records which one broke each point in a [`Breakdown`] the sweep keeps per ε).
//! [`fab`] also has the untargeted FAB of AutoAttack's `plus` version.
//!
//! Minimum-norm attacks, [`cw`] (Carlini–Wagner L2) and [`deepfool`], look for each point's
//! smallest adversarial perturbation whatever ε ([`minimum_norm::MinimumNorm`]): the sweep
//! runs them once per batch, counts a point as broken at ε when that perturbation is within
//! ε, and keeps the sizes for the median the reports show.
//!
//! Every iterate an attack evaluates is recorded ([`AttackCtx::trace`]), so that the reports
//! can tell a weak attack from a robust model ([`indicators`]: silent success, incomplete
//! optimisation, unstable predictions, unconstrained attack failure, after Pintor et al.,
//! NeurIPS 2022, and AutoAttack's own checks).
//!
//! Gradients come from [`AttackCtx::gradient`], which differentiates the model's graph with
//! burn's autodiff on whatever device the model lives on. Randomness comes from per-sample
//! generators seeded by the run's seed and the sample's index, so a seed makes a run
//! repeatable and a sample's random start does not depend on its batch.
//!
//! # Example
//!
//! ```no_run
//! use robust_attacks::{AttackPlan, AttackRegistry, AttackSpec, Sweep, TargetMode};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)?.device;
//! let model = robust_models::load("models/mnist-cnn/model.onnx", &device)?;
//! let pgd = AttackRegistry::builtin().build(&AttackSpec::named("pgd"))?;
//! let plan = AttackPlan { attack: pgd, eps: vec![0.0, 0.1], target: TargetMode::None };
//! let mut sweep = Sweep::new(vec![plan], model.info().num_classes, 0, 0);
//! let x = burn::tensor::Tensor::<4>::zeros([2, 1, 28, 28], &device);
//! sweep.run_batch(&model, x, vec![0, 1], vec![0, 1], || {})?;
//! println!("robust accuracy at 0.1: {}", sweep.stats[0][1].robust_accuracy());
//! # Ok(()) }
//! ```

pub mod apgd;
mod attack;
pub mod autoattack;
pub mod cw;
pub mod deepfool;
pub mod fab;
mod gradient;
pub mod indicators;
mod loss;
pub mod mifgsm;
pub mod minimum_norm;
mod norm;
mod registry;
pub mod square;
pub mod sweep;

pub use attack::{
    predictions, Attack, AttackCtx, Batch, Breakdown, GradStats, GradientPass, SampleTrace,
};
pub use gradient::{GradientDescent, StepSize};
pub use loss::Loss;
pub use norm::Norm;
pub use registry::{AttackRegistry, AttackSpec, Constructor};
pub use sweep::{attack_at, AttackPlan, CleanPass, EpsOutcome, PointStats, Sweep, TargetMode};

/// Errors of attacks and sweeps.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] robust_models::ModelError),
    /// A bad parameter or input.
    #[error("{0}")]
    Input(String),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}
