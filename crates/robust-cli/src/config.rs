//! `robust.toml`: the project's model, data, sweep and gate settings. Flags override it.
//!
//! ```toml
//! [model]
//! path = "models/mnist-cnn/model.onnx"
//! bounds = [0.0, 1.0]
//! mean = [0.1307]
//! std = [0.3081]
//!
//! [data]
//! path = "datasets/mnist-demo/images.npy"
//! classes = "datasets/mnist-demo/classes.txt"
//!
//! [data.limits]         # optional: sizes read from data files (robust_data::DataLimits)
//! max_classes = 100_000             # a label must be below this without a classes file
//! max_image_pixels = 67_108_864     # width × height of one image (8192 × 8192)
//!
//! [eval]
//! attacks = ["fgsm", "pgd"]
//! eps = [0.0, 0.01, 0.03, 0.1]
//! primary_eps = 0.03    # the ε reports lead with (default: the gate's, else mid-sweep)
//! batch_size = 250
//! seed = 0
//!
//! [[attack]]            # optional: full control over one attack
//! name = "pgd"
//! steps = 20
//! restarts = 2
//!
//! [gate]
//! max_drop = 0.02
//! baseline = "reports/baseline.json"
//! min = [{ attack = "PGD-10 Linf", eps = 0.1, min_robust_accuracy = 0.5 }]
//!
//! [backdoor]            # optional: Neural Cleanse after the attacks (see eval --backdoor)
//! scope = "all-sources" # or "per-source"
//! steps = 100
//! samples = 1000
//!
//! [mlflow]              # optional: log eval, drift and scan runs (see commands::mlflow)
//! tracking_uri = "http://127.0.0.1:5000"
//! experiment = "robust"
//! ```
//!
//! Relative paths are resolved against the directory that holds the file.

use std::path::{Path, PathBuf};

use robust_attacks::{AttackRegistry, AttackSpec};
use robust_data::DataSpec;
use robust_models::{DeviceChoice, ModelSpec};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model.
    pub model: Option<ModelSpec>,
    /// The data set.
    pub data: Option<DataSpec>,
    /// Sweep settings.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Detailed attack specifications (used when `--attack` is not given).
    #[serde(default)]
    pub attack: Vec<AttackSpec>,
    /// The regression gate.
    #[serde(default)]
    pub gate: GateConfig,
    /// MLflow tracking. Parsed here so that a bad `[mlflow]` table is refused with the
    /// rest of the file; `commands::mlflow` reads it (also for `drift` and `scan`).
    #[allow(dead_code)]
    pub mlflow: Option<robust_monitor::MlflowConfig>,
    /// The backdoor scan of `robust eval` (its presence turns the scan on).
    pub backdoor: Option<BackdoorConfig>,
}

/// `[backdoor]`: Neural Cleanse on the evaluated samples after the attacks, as `robust eval
/// --backdoor` (whose flags override these). The section's presence turns the scan on,
/// unless `enabled = false`. The keys are `robust backdoor`'s flags; the seed is eval's.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackdoorConfig {
    /// `false` keeps the section but runs no scan (unless `--backdoor` is given).
    pub enabled: Option<bool>,
    /// `all-sources` or `per-source`.
    pub scope: Option<String>,
    /// Most optimisation steps per class (per finalist pair with `per-source`).
    pub steps: Option<usize>,
    /// Clean samples to search on, drawn (seeded) from the evaluated ones when there are more.
    pub samples: Option<usize>,
    /// `per-source`: steps every (source, target) pair gets in the screen.
    pub pair_screen_steps: Option<usize>,
    /// `per-source`: sources per target that get the full budget.
    pub pair_finalists: Option<usize>,
    /// Samples per mini-batch.
    pub batch_size: Option<usize>,
    /// Mini-batches per step (default: one pass).
    pub batches_per_step: Option<usize>,
    /// Adam's learning rate.
    pub lr: Option<f64>,
    /// The first weight λ of the mask's L1 norm.
    pub init_cost: Option<f64>,
    /// λ's multiplier.
    pub cost_multiplier: Option<f64>,
    /// Steps in a row before λ changes.
    pub patience: Option<usize>,
    /// The attack success rate a trigger must reach.
    pub success_threshold: Option<f64>,
    /// Whether a class stops once its norm stopped improving.
    pub early_stop: Option<bool>,
    /// Steps without improvement before an early stop.
    pub early_stop_patience: Option<usize>,
    /// The anomaly index above which a low norm is flagged.
    pub anomaly_threshold: Option<f64>,
}

/// `[eval]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Attack names (simple form of `[[attack]]`).
    pub attacks: Option<Vec<String>>,
    /// ε values.
    pub eps: Option<Vec<f32>>,
    /// The ε reports lead with (one of `eps`).
    pub primary_eps: Option<f32>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Evaluate only the first N samples.
    pub limit: Option<usize>,
    /// Seed.
    pub seed: Option<u64>,
    /// `auto`, `cpu` or `wgpu`.
    pub device: Option<String>,
    /// Output directory.
    pub out: Option<PathBuf>,
    /// History file (JSON lines) to append each run to.
    pub history: Option<PathBuf>,
    /// Example images per attack and ε in the report.
    pub examples: Option<usize>,
}

/// `[gate]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Baseline results to compare with.
    pub baseline: Option<PathBuf>,
    /// Largest allowed drop in robust accuracy against the baseline.
    pub max_drop: Option<f64>,
    /// Minimum robust accuracy rules.
    #[serde(default)]
    pub min: Vec<robust_report::MinRule>,
}

fn rebase(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    /// Reads a config file; relative paths in it become relative to its directory.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| {
            format!(
                "{}: invalid configuration: {}",
                path.display(),
                e.to_string().lines().collect::<Vec<_>>().join(" ")
            )
        })?;
        cfg.check()
            .map_err(|e| format!("{}: invalid configuration: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if base.as_os_str().is_empty() {
            return Ok(cfg);
        }
        if let Some(m) = &mut cfg.model {
            rebase(base, &mut m.path);
            if let Some(a) = &mut m.arch {
                rebase(base, a);
            }
        }
        if let Some(d) = &mut cfg.data {
            rebase(base, &mut d.path);
            for p in [&mut d.labels, &mut d.classes].into_iter().flatten() {
                rebase(base, p);
            }
        }
        for p in [
            &mut cfg.eval.out,
            &mut cfg.eval.history,
            &mut cfg.gate.baseline,
        ]
        .into_iter()
        .flatten()
        {
            rebase(base, p);
        }
        Ok(cfg)
    }

    /// Checks the values the file sets, so that a bad one is reported with the file's name
    /// (as bad input, exit 2) instead of as a flag, or only when a sweep reaches it. The
    /// same checks apply to flags later, when the plan is made.
    fn check(&self) -> Result<(), String> {
        fn check_eps(what: &str, eps: &[f32]) -> Result<(), String> {
            if eps.is_empty() {
                return Err(format!("{what} needs at least one value"));
            }
            match eps.iter().find(|e| !e.is_finite() || **e < 0.0) {
                Some(bad) => Err(format!("{what}: epsilon {bad} must be a finite number ≥ 0")),
                None => Ok(()),
            }
        }
        let eval = &self.eval;
        if let Some(eps) = &eval.eps {
            check_eps("[eval] eps", eps)?;
        }
        if eval.batch_size == Some(0) {
            return Err("[eval] batch_size must be at least 1".into());
        }
        if eval.limit == Some(0) {
            return Err("[eval] limit 0 evaluates no sample; give at least 1".into());
        }
        if let Some(device) = &eval.device {
            device
                .parse::<DeviceChoice>()
                .map_err(|e| format!("[eval] device: {e}"))?;
        }
        let registry = AttackRegistry::builtin();
        for name in eval.attacks.iter().flatten() {
            registry
                .build(&AttackSpec::named(name))
                .map_err(|e| format!("[eval] attacks: {e}"))?;
        }
        for (i, spec) in self.attack.iter().enumerate() {
            let what = format!("[[attack]] number {} ({:?})", i + 1, spec.name);
            if let Some(eps) = &spec.eps {
                check_eps(&format!("{what} eps"), eps)?;
            }
            registry.build(spec).map_err(|e| format!("{what}: {e}"))?;
        }
        if let Some(d) = self.gate.max_drop {
            if !(0.0..=1.0).contains(&d) {
                return Err(format!("[gate] max_drop {d} must be between 0 and 1"));
            }
        }
        for rule in &self.gate.min {
            if let Some(problem) = rule.problem() {
                return Err(format!("[gate] min: {problem}"));
            }
        }
        Ok(())
    }
}
