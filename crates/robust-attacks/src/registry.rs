//! Attacks by name: the table the CLI and `robust.toml` build attacks from.
//!
//! A researcher's attack joins the same sweep, reports and regression gate by registering a
//! constructor under a new name ([`AttackRegistry::register`]).

use std::collections::BTreeMap;

use crate::attack::Attack;
use crate::gradient::{GradientDescent, StepSize};
use crate::loss::Loss;
use crate::norm::Norm;
use crate::sweep::TargetMode;
use crate::AttackError;

/// An attack as written in `robust.toml` (`[[attack]]`) or built from flags.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Registered name: `fgsm`, `fgm`, `bim`, `pgd`, or a custom one.
    pub name: String,
    /// Threat model (default L-inf, except `fgm`: L2).
    #[serde(default)]
    pub norm: Option<Norm>,
    /// ε values for this attack (default: the run's list).
    #[serde(default)]
    pub eps: Option<Vec<f32>>,
    /// Gradient steps (iterative attacks).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Absolute step size.
    #[serde(default)]
    pub step_size: Option<f32>,
    /// Step size as a fraction of ε.
    #[serde(default)]
    pub rel_step_size: Option<f32>,
    /// Random start inside the ball.
    #[serde(default)]
    pub random_start: Option<bool>,
    /// Restarts (the per-sample best is kept).
    #[serde(default)]
    pub restarts: Option<usize>,
    /// Loss.
    #[serde(default)]
    pub loss: Option<Loss>,
    /// Targeting (default untargeted).
    #[serde(default)]
    pub target: Option<TargetMode>,
    /// Target classes of `apgd-t` (and of `autoattack`'s targeted components): the
    /// highest non-true classes attacked in turn (default 9, capped at K − 1).
    #[serde(default)]
    pub n_target_classes: Option<usize>,
    /// Gradient samples averaged per step by APGD (expectation over transformation; default
    /// 1, and 20 in `autoattack`'s `rand` version).
    #[serde(default)]
    pub eot_iter: Option<usize>,
    /// Query budget of `square` per point (default 5000), not counting its initial query.
    #[serde(default)]
    pub queries: Option<usize>,
    /// `square`'s initial fraction of pixels changed per query (default 0.8).
    #[serde(default)]
    pub p_init: Option<f32>,
    /// `autoattack`'s version: `standard` (default), `plus` or `rand`.
    #[serde(default)]
    pub version: Option<String>,
    /// `cw-l2`: rounds of the binary search over the constant c (default 9).
    #[serde(default)]
    pub binary_search_steps: Option<usize>,
    /// `cw-l2`: the constant c the binary search starts from (default 0.001).
    #[serde(default)]
    pub initial_const: Option<f32>,
    /// `cw-l2`: the logit margin κ an adversarial point must have (default 0).
    #[serde(default)]
    pub confidence: Option<f32>,
    /// `cw-l2`: stop a point's optimisation when its loss stalls (default true).
    #[serde(default)]
    pub abort_early: Option<bool>,
    /// `deepfool`: candidate classes, the predicted one included (default 10).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// `deepfool`: how far past the linearised boundary to step (default 0.02).
    #[serde(default)]
    pub overshoot: Option<f32>,
}

impl AttackSpec {
    /// A spec with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// Builds an attack from a spec.
pub type Constructor = fn(&AttackSpec) -> Result<Box<dyn Attack>, AttackError>;

/// Name → constructor.
#[derive(Clone)]
pub struct AttackRegistry {
    table: BTreeMap<String, Constructor>,
}

impl Default for AttackRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

fn gd_common(mut a: GradientDescent, s: &AttackSpec) -> Result<GradientDescent, AttackError> {
    match (s.step_size, s.rel_step_size) {
        (Some(_), Some(_)) => {
            return Err(AttackError::Input(format!(
                "attack '{}': give step_size or rel_step_size, not both",
                s.name
            )))
        }
        (Some(a_), None) if a_ > 0.0 => a = a.with_step(StepSize::Absolute(a_)),
        (None, Some(r)) if r > 0.0 => a = a.with_step(StepSize::Relative(r)),
        (None, None) => {}
        _ => {
            return Err(AttackError::Input(format!(
                "attack '{}': the step size must be positive",
                s.name
            )))
        }
    }
    if let Some(rs) = s.random_start {
        a = a.with_random_start(rs);
    }
    if let Some(r) = s.restarts {
        if r == 0 {
            return Err(AttackError::Input(format!(
                "attack '{}': restarts must be at least 1",
                s.name
            )));
        }
        a = a.with_restarts(r);
    }
    if let Some(l) = s.loss {
        a = a.with_loss(l);
    }
    Ok(a)
}

pub(crate) fn steps_of(s: &AttackSpec, default: usize) -> Result<usize, AttackError> {
    match s.steps {
        Some(0) => Err(AttackError::Input(format!(
            "attack '{}': steps must be at least 1",
            s.name
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

fn fgsm(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    if s.steps.is_some_and(|n| n != 1) {
        return Err(AttackError::Input(format!(
            "attack '{}' is single-step; use pgd or bim for several steps",
            s.name
        )));
    }
    let norm = s.norm.unwrap_or(Norm::Linf);
    Ok(Box::new(gd_common(GradientDescent::fgsm(norm), s)?))
}

fn fgm(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    let mut s = s.clone();
    s.norm = Some(s.norm.unwrap_or(Norm::L2));
    fgsm(&s)
}

fn pgd(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    let norm = s.norm.unwrap_or(Norm::Linf);
    let steps = steps_of(s, 10)?;
    Ok(Box::new(gd_common(GradientDescent::pgd(norm, steps), s)?))
}

fn bim(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    let norm = s.norm.unwrap_or(Norm::Linf);
    let steps = steps_of(s, 10)?;
    let base = GradientDescent::pgd(norm, steps)
        .with_name("bim")
        .with_random_start(false)
        .with_step(StepSize::Relative(1.0 / steps as f32));
    Ok(Box::new(gd_common(base, s)?))
}

impl AttackRegistry {
    /// The built-in attacks: `fgsm`, `fgm`, `bim`, `pgd`, the AutoAttack family
    /// (`apgd-ce`, `apgd-dlr`, `apgd-t`, `fab`, `fab-t`, `square`, `autoattack`, `mifgsm`; see
    /// [`crate::autoattack`]) and the minimum-norm `cw-l2` (alias `cw`) and `deepfool`
    /// ([`crate::minimum_norm`]).
    pub fn builtin() -> Self {
        let mut r = Self {
            table: BTreeMap::new(),
        };
        r.register("fgsm", fgsm);
        r.register("fgm", fgm);
        r.register("bim", bim);
        r.register("pgd", pgd);
        crate::autoattack::register(&mut r);
        r.register("cw-l2", cw_l2);
        r.register("cw", cw_l2);
        r.register("deepfool", deepfool);
        r
    }

    /// Adds (or replaces) an attack constructor.
    pub fn register(&mut self, name: &str, ctor: Constructor) {
        self.table.insert(name.to_ascii_lowercase(), ctor);
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.table.keys().map(|s| s.as_str()).collect()
    }

    /// Builds the attack a spec describes.
    pub fn build(&self, spec: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
        let ctor = self
            .table
            .get(&spec.name.to_ascii_lowercase())
            .ok_or_else(|| {
                AttackError::Input(format!(
                    "unknown attack '{}' (available: {})",
                    spec.name,
                    self.names().join(", ")
                ))
            })?;
        ctor(spec)
    }
}

/// A finite, positive number or a one-line error naming the attack and field.
fn positive_f32(s: &AttackSpec, field: &str, v: Option<f32>) -> Result<Option<f32>, AttackError> {
    match v {
        Some(x) if !(x > 0.0 && x.is_finite()) => Err(AttackError::Input(format!(
            "attack '{}': {field} must be a positive number, got {x}",
            s.name
        ))),
        other => Ok(other),
    }
}

fn untargeted_only(s: &AttackSpec) -> Result<(), AttackError> {
    if s.target.is_some_and(|t| t != TargetMode::None) {
        return Err(AttackError::Input(format!(
            "attack '{}' is untargeted; drop the target setting",
            s.name
        )));
    }
    Ok(())
}

fn cw_l2(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    crate::autoattack::only(
        s,
        &[
            "step_size",
            "binary_search_steps",
            "initial_const",
            "confidence",
            "abort_early",
        ],
    )?;
    if s.norm.is_some_and(|n| n != Norm::L2) {
        return Err(AttackError::Input(format!(
            "attack '{}' is an L2 attack; drop norm = linf (deepfool and fab have L-inf)",
            s.name
        )));
    }
    let mut a = crate::cw::CarliniWagner::new().with_steps(steps_of(s, 1000)?);
    if let Some(n) = s.binary_search_steps {
        if n == 0 {
            return Err(AttackError::Input(format!(
                "attack '{}': binary_search_steps must be at least 1",
                s.name
            )));
        }
        a = a.with_binary_search_steps(n);
    }
    if let Some(v) = positive_f32(s, "step_size", s.step_size)? {
        a = a.with_stepsize(v);
    }
    if let Some(v) = positive_f32(s, "initial_const", s.initial_const)? {
        a = a.with_initial_const(v);
    }
    if let Some(k) = s.confidence {
        if !(k >= 0.0 && k.is_finite()) {
            return Err(AttackError::Input(format!(
                "attack '{}': confidence must be a finite number ≥ 0, got {k}",
                s.name
            )));
        }
        a = a.with_confidence(k);
    }
    if let Some(on) = s.abort_early {
        a = a.with_abort_early(on);
    }
    Ok(Box::new(a))
}

fn deepfool(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    crate::autoattack::only(s, &["candidates", "overshoot", "loss"])?;
    untargeted_only(s)?;
    let mut a =
        crate::deepfool::DeepFool::new(s.norm.unwrap_or(Norm::L2)).with_steps(steps_of(s, 50)?);
    if let Some(c) = s.candidates {
        if c < 2 {
            return Err(AttackError::Input(format!(
                "attack '{}': candidates must be at least 2 (the predicted class and one \
                 other)",
                s.name
            )));
        }
        a = a.with_candidates(c);
    }
    if let Some(o) = s.overshoot {
        if !(o >= 0.0 && o.is_finite()) {
            return Err(AttackError::Input(format!(
                "attack '{}': overshoot must be a finite number ≥ 0, got {o}",
                s.name
            )));
        }
        a = a.with_overshoot(o);
    }
    if let Some(l) = s.loss {
        a = a.with_loss(l);
    }
    Ok(Box::new(a))
}
