//! AutoAttack (Croce & Hein, ICML 2020) as one attack, and the AutoAttack family in the
//! registry: `apgd-ce`, `apgd-dlr`, `apgd-t`, `fab`, `fab-t`, `square`, `autoattack` (and
//! `mifgsm`).
//!
//! [`AutoAttack`] runs its components in order, each only on the points still robust after
//! the ones before it, exactly as `run_standard_evaluation` of the reference does, and
//! records which component broke each point ([`Breakdown`]) for the reports:
//!
//! * `standard`: APGD-CE, APGD-T (9 target classes), FAB-T (9 target classes), Square
//!   (5000 queries), one restart each;
//! * `plus`: APGD-CE and APGD-DLR (5 restarts each), the untargeted FAB (5 restarts), Square
//!   (5000 queries), APGD-T and FAB-T (9 target classes each, one restart), in that order;
//! * `rand` (for randomized models): APGD-CE and APGD-DLR with the gradient averaged over 20
//!   forward passes (EOT).
//!
//! Each constructor reads an [`AttackSpec`] and refuses settings the attack does not have
//! (a fixed step size for APGD, whose step adapts) with a one-line error naming the attack.

use burn::tensor::{Tensor, TensorData};
use serde_json::{json, Map, Value};

use crate::apgd::{
    argmax_rows, clean_fooled, clean_logits, scatter_rows, sub_batch, Apgd, ApgdLoss,
};
use crate::attack::{Attack, AttackCtx, Batch, Breakdown};
use crate::fab::FabT;
use crate::gradient::StepSize;
use crate::mifgsm::MiFgsm;
use crate::norm::Norm;
use crate::registry::{steps_of, AttackRegistry, AttackSpec};
use crate::square::Square;
use crate::sweep::TargetMode;
use crate::AttackError;

/// Adds the AutoAttack family to `registry`.
pub(crate) fn register(registry: &mut AttackRegistry) {
    registry.register("apgd-ce", apgd_ce);
    registry.register("apgd-dlr", apgd_dlr);
    registry.register("apgd-t", apgd_t);
    registry.register("square", square);
    registry.register("autoattack", autoattack);
    registry.register("mifgsm", mifgsm);
    registry.register("fab-t", fab_t);
    registry.register("fab", fab);
}

/// AutoAttack's versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// APGD-CE, APGD-T, FAB-T, Square.
    Standard,
    /// APGD-CE and APGD-DLR (5 restarts each), untargeted FAB (5 restarts), Square,
    /// APGD-T and FAB-T (9 target classes each).
    Plus,
    /// APGD-CE and APGD-DLR with EOT over 20 samples, for randomized models.
    Rand,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(Self::Standard),
            "rand" => Ok(Self::Rand),
            "plus" => Ok(Self::Plus),
            other => Err(format!(
                "unknown autoattack version '{other}' (available: standard, plus, rand)"
            )),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standard => "standard",
            Self::Plus => "plus",
            Self::Rand => "rand",
        })
    }
}

/// AutoAttack: an ensemble run in sequence, each component only on the points still robust.
pub struct AutoAttack {
    version: Version,
    norm: Norm,
    components: Vec<Box<dyn Attack>>,
}

/// The settings AutoAttack's versions share (the reference's defaults in brackets).
#[derive(Clone, Copy, Debug)]
pub struct AutoAttackSettings {
    /// APGD and FAB iterations (100).
    pub steps: usize,
    /// Square's queries (5000).
    pub queries: usize,
    /// Target classes of APGD-T and FAB-T (9, capped at K − 1).
    pub target_classes: usize,
    /// Restarts of every component (1), each only on points not yet broken; in `plus`, of
    /// APGD-CE, APGD-DLR and FAB only (the reference and `--attack autoattack:version=plus`
    /// use 5).
    pub restarts: usize,
}

impl Default for AutoAttackSettings {
    fn default() -> Self {
        Self {
            steps: 100,
            queries: 5000,
            target_classes: 9,
            restarts: 1,
        }
    }
}

impl AutoAttack {
    /// The given version for `norm`.
    pub fn new(version: Version, norm: Norm, s: AutoAttackSettings) -> Self {
        let components: Vec<Box<dyn Attack>> = match version {
            Version::Standard => vec![
                Box::new(
                    Apgd::new(norm, ApgdLoss::CrossEntropy)
                        .with_steps(s.steps)
                        .with_restarts(s.restarts),
                ),
                Box::new(
                    Apgd::targeted(norm, s.target_classes)
                        .with_steps(s.steps)
                        .with_restarts(s.restarts),
                ),
                Box::new(
                    FabT::new(norm, s.target_classes)
                        .with_steps(s.steps)
                        .with_restarts(s.restarts),
                ),
                Box::new(
                    Square::new(norm)
                        .with_queries(s.queries)
                        .with_restarts(s.restarts),
                ),
            ],
            Version::Plus => {
                // `restarts` is for APGD-CE, APGD-DLR and FAB only (the reference: 5, the
                // registry's default for `plus`); the targeted ones and Square run once.
                let many = s.restarts;
                vec![
                    Box::new(
                        Apgd::new(norm, ApgdLoss::CrossEntropy)
                            .with_steps(s.steps)
                            .with_restarts(many),
                    ),
                    Box::new(
                        Apgd::new(norm, ApgdLoss::Dlr)
                            .with_steps(s.steps)
                            .with_restarts(many),
                    ),
                    Box::new(
                        FabT::untargeted(norm)
                            .with_steps(s.steps)
                            .with_restarts(many),
                    ),
                    Box::new(Square::new(norm).with_queries(s.queries)),
                    Box::new(Apgd::targeted(norm, s.target_classes).with_steps(s.steps)),
                    Box::new(FabT::new(norm, s.target_classes).with_steps(s.steps)),
                ]
            }
            Version::Rand => vec![
                Box::new(
                    Apgd::new(norm, ApgdLoss::CrossEntropy)
                        .with_steps(s.steps)
                        .with_eot_iter(20)
                        .with_restarts(s.restarts),
                ),
                Box::new(
                    Apgd::new(norm, ApgdLoss::Dlr)
                        .with_steps(s.steps)
                        .with_eot_iter(20)
                        .with_restarts(s.restarts),
                ),
            ],
        };
        Self {
            version,
            norm,
            components,
        }
    }
}

impl Attack for AutoAttack {
    fn name(&self) -> &str {
        "autoattack"
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    /// APGD's and FAB's iterations (what the convergence check doubles).
    fn steps(&self) -> usize {
        self.components[0].steps()
    }

    fn label(&self) -> String {
        let norm = self.norm.label();
        format!("AutoAttack {} {norm}", self.version)
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("version".into(), json!(self.version.to_string()));
        m.insert(
            "components".into(),
            json!(self
                .components
                .iter()
                .map(|c| c.label())
                .collect::<Vec<_>>()),
        );
        m.insert(
            "component_params".into(),
            Value::Array(
                self.components
                    .iter()
                    .map(|c| Value::Object(c.params()))
                    .collect(),
            ),
        );
        m.insert("steps".into(), json!(self.steps()));
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
        let mut alive: Vec<bool> = clean_fooled(batch, &logits, k)
            .into_iter()
            .map(|f| !f)
            .collect();
        let mut out = robust_models::to_host(batch.x.clone());
        let mut broken_by = vec![None; batch.len()];
        for (c, component) in self.components.iter().enumerate() {
            let rows: Vec<usize> = (0..batch.len()).filter(|&i| alive[i]).collect();
            if rows.is_empty() {
                break;
            }
            let sub = sub_batch(batch, &rows, None, k)?;
            let mut child = ctx.child();
            let raw = component.run(&mut child, &sub, eps)?;
            ctx.absorb(&child);
            // Judged as the sweep will judge the final result: projected and clipped.
            let adv = ctx.clip(self.norm.project(&sub.x, raw, eps));
            let z = robust_models::to_host(ctx.model().forward(adv.clone())?);
            let fooled: Vec<bool> = argmax_rows(&z, k)
                .into_iter()
                .zip(&sub.labels)
                .map(|(p, &y)| p != y)
                .collect();
            scatter_rows(&mut out, per, &rows, &fooled, &robust_models::to_host(adv));
            for (j, &r) in rows.iter().enumerate() {
                if fooled[j] {
                    alive[r] = false;
                    broken_by[r] = Some(c);
                }
            }
        }
        ctx.set_breakdown(Breakdown {
            components: self
                .components
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            broken_by,
        });
        Ok(Tensor::from_data(
            TensorData::new(out, dims.to_vec()),
            &batch.x.device(),
        ))
    }
}

fn refuse(s: &AttackSpec, field: &str, why: &str) -> AttackError {
    AttackError::Input(format!("attack '{}' has no {field}: {why}", s.name))
}

/// Refuses fields that only other attacks read.
pub(crate) fn only(s: &AttackSpec, allowed: &[&str]) -> Result<(), AttackError> {
    let given: [(&str, bool); 15] = [
        ("step_size", s.step_size.is_some()),
        ("rel_step_size", s.rel_step_size.is_some()),
        ("random_start", s.random_start.is_some()),
        ("restarts", s.restarts.is_some()),
        ("loss", s.loss.is_some()),
        ("n_target_classes", s.n_target_classes.is_some()),
        ("eot_iter", s.eot_iter.is_some()),
        ("queries", s.queries.is_some()),
        ("p_init", s.p_init.is_some()),
        ("binary_search_steps", s.binary_search_steps.is_some()),
        ("initial_const", s.initial_const.is_some()),
        ("confidence", s.confidence.is_some()),
        ("abort_early", s.abort_early.is_some()),
        ("candidates", s.candidates.is_some()),
        ("overshoot", s.overshoot.is_some()),
    ];
    for (field, set) in given {
        if set && !allowed.contains(&field) {
            return Err(refuse(
                s,
                field,
                "remove it (see `robust eval --help` for what each attack reads)",
            ));
        }
    }
    if s.version.is_some() && !s.name.eq_ignore_ascii_case("autoattack") {
        return Err(refuse(s, "version", "only autoattack has versions"));
    }
    Ok(())
}

fn positive(s: &AttackSpec, field: &str, v: Option<usize>) -> Result<Option<usize>, AttackError> {
    match v {
        Some(0) => Err(AttackError::Input(format!(
            "attack '{}': {field} must be at least 1",
            s.name
        ))),
        other => Ok(other),
    }
}

fn apgd_common(mut a: Apgd, s: &AttackSpec) -> Result<Apgd, AttackError> {
    a = a.with_steps(steps_of(s, 100)?);
    if let Some(r) = positive(s, "restarts", s.restarts)? {
        a = a.with_restarts(r);
    }
    if let Some(e) = positive(s, "eot_iter", s.eot_iter)? {
        a = a.with_eot_iter(e);
    }
    if let Some(rs) = s.random_start {
        a = a.with_random_start(rs);
    }
    Ok(a)
}

fn apgd_ce(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["random_start", "restarts", "eot_iter"])?;
    let a = Apgd::new(s.norm.unwrap_or(Norm::Linf), ApgdLoss::CrossEntropy);
    Ok(Box::new(apgd_common(a, s)?))
}

fn apgd_dlr(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["random_start", "restarts", "eot_iter"])?;
    let a = Apgd::new(s.norm.unwrap_or(Norm::Linf), ApgdLoss::Dlr);
    Ok(Box::new(apgd_common(a, s)?))
}

fn apgd_t(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(
        s,
        &["random_start", "restarts", "eot_iter", "n_target_classes"],
    )?;
    if s.target.is_some_and(|t| t != TargetMode::None) {
        return Err(AttackError::Input(format!(
            "attack '{}' picks its own target classes (the highest non-true logits); \
             drop the target setting or use apgd-ce/apgd-dlr with it",
            s.name
        )));
    }
    let n = positive(s, "n_target_classes", s.n_target_classes)?.unwrap_or(9);
    let a = Apgd::targeted(s.norm.unwrap_or(Norm::Linf), n);
    Ok(Box::new(apgd_common(a, s)?))
}

fn square(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["queries", "p_init", "restarts"])?;
    let queries = queries_of(s)?;
    let mut a = Square::new(s.norm.unwrap_or(Norm::Linf)).with_queries(queries);
    if let Some(r) = positive(s, "restarts", s.restarts)? {
        a = a.with_restarts(r);
    }
    if let Some(p) = s.p_init {
        if !(p > 0.0 && p <= 1.0) {
            return Err(AttackError::Input(format!(
                "attack '{}': p_init must be in (0, 1], got {p}",
                s.name
            )));
        }
        a = a.with_p_init(p);
    }
    Ok(Box::new(a))
}

/// Square's budget: `queries`, or `steps` (what the convergence check doubles); both must
/// agree when both are given.
fn queries_of(s: &AttackSpec) -> Result<usize, AttackError> {
    match (s.queries, s.steps) {
        (Some(q), Some(st)) if q != st => Err(AttackError::Input(format!(
            "attack '{}': queries ({q}) and steps ({st}) disagree; give one",
            s.name
        ))),
        (Some(0), _) | (None, Some(0)) => Err(AttackError::Input(format!(
            "attack '{}': queries must be at least 1",
            s.name
        ))),
        (Some(q), _) | (None, Some(q)) => Ok(q),
        (None, None) => Ok(5000),
    }
}

fn autoattack(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["queries", "n_target_classes", "restarts"])?;
    if s.target.is_some_and(|t| t != TargetMode::None) {
        return Err(AttackError::Input(format!(
            "attack '{}' is untargeted (its APGD-T picks its own targets); drop the target \
             setting",
            s.name
        )));
    }
    let version: Version = match &s.version {
        Some(v) => v.parse().map_err(AttackError::Input)?,
        None => Version::Standard,
    };
    let steps = steps_of(s, 100)?;
    let queries = match s.queries {
        Some(0) => {
            return Err(AttackError::Input(format!(
                "attack '{}': queries must be at least 1",
                s.name
            )))
        }
        Some(q) => q,
        None => 5000,
    };
    let version_restarts = if version == Version::Plus { 5 } else { 1 };
    let restarts = positive(s, "restarts", s.restarts)?.unwrap_or(version_restarts);
    let target_classes = positive(s, "n_target_classes", s.n_target_classes)?.unwrap_or(9);
    Ok(Box::new(AutoAttack::new(
        version,
        s.norm.unwrap_or(Norm::Linf),
        AutoAttackSettings {
            steps,
            queries,
            target_classes,
            restarts,
        },
    )))
}

fn mifgsm(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["step_size", "rel_step_size", "loss"])?;
    let mut a = MiFgsm::new(s.norm.unwrap_or(Norm::Linf), steps_of(s, 10)?);
    match (s.step_size, s.rel_step_size) {
        (Some(_), Some(_)) => {
            return Err(AttackError::Input(format!(
                "attack '{}': give step_size or rel_step_size, not both",
                s.name
            )))
        }
        (Some(v), None) | (None, Some(v)) if !(v > 0.0 && v.is_finite()) => {
            return Err(AttackError::Input(format!(
                "attack '{}': the step size must be positive",
                s.name
            )))
        }
        (Some(v), None) => a = a.with_step(StepSize::Absolute(v)),
        (None, Some(v)) => a = a.with_step(StepSize::Relative(v)),
        (None, None) => {}
    }
    if let Some(l) = s.loss {
        a = a.with_loss(l);
    }
    Ok(Box::new(a))
}

fn fab_t(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["restarts", "n_target_classes"])?;
    if s.target.is_some_and(|t| t != TargetMode::None) {
        return Err(AttackError::Input(format!(
            "attack '{}' picks its own target classes (the highest non-true logits); drop \
             the target setting",
            s.name
        )));
    }
    let n = positive(s, "n_target_classes", s.n_target_classes)?.unwrap_or(9);
    let mut a = FabT::new(s.norm.unwrap_or(Norm::Linf), n).with_steps(steps_of(s, 100)?);
    if let Some(r) = positive(s, "restarts", s.restarts)? {
        a = a.with_restarts(r);
    }
    Ok(Box::new(a))
}

fn fab(s: &AttackSpec) -> Result<Box<dyn Attack>, AttackError> {
    only(s, &["restarts"])?;
    if s.target.is_some_and(|t| t != TargetMode::None) {
        return Err(AttackError::Input(format!(
            "attack '{}' is untargeted (fab-t is the targeted FAB); drop the target setting",
            s.name
        )));
    }
    let mut a = FabT::untargeted(s.norm.unwrap_or(Norm::Linf)).with_steps(steps_of(s, 100)?);
    if let Some(r) = positive(s, "restarts", s.restarts)? {
        a = a.with_restarts(r);
    }
    Ok(Box::new(a))
}
