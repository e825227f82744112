//! The results schema: what `robust eval` writes and every renderer reads.
//!
//! One evaluation run is one [`RunResults`] value, stored as a pretty-printed JSON file.
//! The schema is versioned by [`SCHEMA_VERSION`], a *major* version: adding a field (with a
//! serde default) keeps the version, so an older robust still loads a newer file of the same
//! major version (unknown fields are ignored), while renaming, removing or changing the meaning
//! of a field bumps it, and [`RunResults::read`] refuses a file with a newer major version
//! with an error that says to upgrade.
//!
//! JSON has no NaN or infinity, so every `f64` here must be finite: a quantity that has no
//! value (the accuracy of a class without samples) is an `Option` and stored as `null`.
//! [`RunResults::write`] refuses results that break this rule rather than writing a file that
//! would not load back. Numbers are written in their shortest exact form; unless the
//! workspace enables serde_json's `float_roundtrip` feature, reading one back may differ from
//! the written value in the last binary digit, far below anything a report shows.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// The major version of the results schema that this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one evaluation run measured, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The schema's major version, [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The program that produced the results.
    pub tool: ToolInfo,
    /// When the run started, as an RFC 3339 timestamp (`2025-01-31T12:00:00Z`).
    pub started_at: String,
    /// Wall-clock duration of the run, in seconds.
    pub duration_s: f64,
    /// The seed of every random choice of the run (sample order, random starts).
    pub seed: u64,
    /// The device the model ran on.
    pub device: DeviceInfo,
    /// The model under evaluation.
    pub model: ModelInfo,
    /// The data set it was evaluated on.
    pub dataset: DatasetInfo,
    /// Accuracy on unperturbed inputs, in `[0, 1]`.
    pub clean_accuracy: f64,
    /// Clean accuracy of each class, indexed by class; `None` for a class with no samples.
    pub clean_per_class: Vec<Option<f64>>,
    /// One entry per attack configuration, each with its epsilon sweep.
    pub attacks: Vec<AttackResult>,
    /// Robust accuracy against the strongest attack at each epsilon: a sample counts as
    /// robust only if every attack listed failed on it. Points of different norms are never
    /// mixed: each point lists attacks of one norm.
    pub worst_case: Vec<WorstCasePoint>,
    /// A few adversarial examples to show in the report.
    pub examples: Vec<Example>,
    /// The reliability checks (see [`crate::reliability_checks`]).
    pub checks: Vec<Check>,
    /// The regression gate's verdict, when thresholds were given.
    pub gate: Option<GateReport>,
    /// The ε the report leads with (its headline robust accuracy); `None`: the report
    /// chooses (see [`crate::headlines`]).
    #[serde(default)]
    pub primary_eps: Option<f64>,
    /// The audit of the model file (`robust eval --audit`): what loading it would execute
    /// or expose. `None` when the model was not audited.
    #[serde(default)]
    pub audit: Option<ModelAudit>,
    /// The indicators of attack failure measured with extra passes on a few samples
    /// (unstable predictions, unconstrained attacks, randomness, output range). `None` in
    /// older files.
    #[serde(default)]
    pub probes: Option<Probes>,
    /// The backdoor scan (`robust eval --backdoor`): Neural Cleanse's smallest trigger per
    /// class and its anomaly analysis, with the trigger images. `None` when no scan was
    /// asked for, and in older files (the field is then left out of the JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backdoor: Option<crate::backdoor::BackdoorScan>,
}

/// What the extra passes behind some indicators of attack failure measured, on the first
/// [`Probes::samples`] samples (see `robust_attacks::indicators`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// Samples probed: the first this many of the evaluation.
    pub samples: usize,
    /// Unstable predictions (Pintor et al. 2022): how much the margin moves under tiny noise.
    pub unstable: UnstableProbe,
    /// AutoAttack's randomness check: repeated forward passes of the same inputs.
    pub randomness: RandomnessProbe,
    /// AutoAttack's output-range check: do the outputs look like probabilities?
    pub outputs: OutputProbe,
    /// Unconstrained attack failure (Pintor et al. 2022), per attack.
    pub unconstrained: Vec<UnconstrainedProbe>,
}

/// The unstable-predictions measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnstableProbe {
    /// Random perturbations per sample.
    pub draws: usize,
    /// Width of the uniform noise, as a fraction of the input range.
    pub radius: f64,
    /// Per sample: the mean relative change of the margin `z_y − max_{j≠y} z_j`.
    pub relative_change: Vec<f64>,
}

impl UnstableProbe {
    /// The indicator's value: the mean relative change over samples, capped at 1 (as in
    /// the reference).
    pub fn value(&self) -> f64 {
        if self.relative_change.is_empty() {
            return 0.0;
        }
        let mean = self.relative_change.iter().sum::<f64>() / self.relative_change.len() as f64;
        mean.min(1.0)
    }
}

/// The randomness measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RandomnessProbe {
    /// Forward passes compared.
    pub passes: usize,
    /// Largest L2 distance between two passes' unit-normalised outputs of one sample.
    pub max_output_change: f64,
    /// Samples whose prediction changed between passes.
    pub prediction_changes: usize,
}

/// The range of the model's outputs on the probed samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputProbe {
    /// Smallest output.
    pub min: f64,
    /// Largest output.
    pub max: f64,
    /// Largest distance of a row's sum from 1.
    pub max_row_sum_error: f64,
}

/// One attack run with an ε that covers the whole input box.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnconstrainedProbe {
    /// The attack's label.
    pub attack: String,
    /// The ε used.
    pub eps: f64,
    /// Clean-correct samples attacked.
    pub attacked: usize,
    /// Of those, the samples the attack did not break.
    pub failed: usize,
}

/// What `robust audit` found in the evaluated model's files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAudit {
    /// Files scanned.
    pub files_scanned: usize,
    /// Every finding, most severe first within each file.
    pub findings: Vec<AuditFinding>,
}

/// One finding of a model audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFinding {
    /// The file.
    pub file: String,
    /// `low`, `medium`, `high` or `critical`; medium and above fail the audit.
    pub severity: String,
    /// A stable identifier, e.g. `dangerous-import`, `custom-domain`.
    pub kind: String,
    /// Where in the file.
    pub location: String,
    /// What and why.
    pub message: String,
}

impl ModelAudit {
    /// Whether any finding is of severity medium or above.
    pub fn failed(&self) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f.severity.as_str(), "medium" | "high" | "critical"))
    }
}

/// The program that produced a results file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Program name, `robust`.
    pub name: String,
    /// Program version.
    pub version: String,
    /// Version of the burn deep-learning framework it was built with.
    pub burn_version: String,
    /// Git commit it was built from, when known.
    pub git_commit: Option<String>,
}

/// The device a run used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// What the user asked for: `auto`, `cpu` or `wgpu`.
    pub requested: String,
    /// The burn backend that ran: `flex` (CPU) or `wgpu`.
    pub backend: String,
    /// The adapter's name (GPU model, or a CPU description).
    pub adapter: String,
}

/// The model under evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model file's path as given on the command line.
    pub path: String,
    /// The model file's name, without its directory.
    pub file_name: String,
    /// SHA-256 of the model file, lowercase hex.
    pub sha256: String,
    /// File format: `onnx` or `safetensors`.
    pub format: String,
    /// Input shape without the batch dimension, e.g. `[3, 32, 32]`.
    pub input_shape: Vec<usize>,
    /// The range of valid pixel values `[low, high]` in which attacks operate, e.g. `[0, 1]`.
    pub bounds: [f32; 2],
    /// Per-channel mean subtracted before the model, when the model expects normalised input.
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by before the model.
    pub std: Option<Vec<f32>>,
    /// Number of output classes.
    pub num_classes: usize,
    /// Whether the model's signature was verified: `None` when no signature was checked.
    pub signature_verified: Option<bool>,
}

/// The data set a run was evaluated on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Where the data came from (a path, or a built-in name).
    pub source: String,
    /// Its format (`npz`, `image-folder`, ...).
    pub format: String,
    /// Number of samples evaluated.
    pub size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, indexed by class; may be empty when the data set has none.
    pub class_names: Vec<String>,
    /// SHA-256 of the evaluated samples as the model received them: the SHA-256 of the
    /// concatenated per-sample SHA-256s (each over the label as u64 little-endian, then the
    /// pixels as f32 little-endian, C×H×W), in sample order, so shards can combine theirs.
    /// The gate refuses to compare runs whose digests differ. `None` in older files.
    #[serde(default)]
    pub samples_sha256: Option<String>,
    /// How the samples were changed to fit the model (channels, size), with counts; empty
    /// when every sample already fit.
    #[serde(default)]
    pub conversions: Vec<DataConversion>,
}

/// One way samples were changed to fit the model's input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataConversion {
    /// What was done, e.g. `RGB → gray (...)` or `32×32 → 28×28 (resize)`.
    pub what: String,
    /// How many samples it was applied to.
    pub samples: usize,
}

/// One attack configuration and its sweep over epsilons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    /// The attack's registry name, e.g. `fgsm`, `pgd`.
    pub name: String,
    /// A display label, unique within a run, e.g. `PGD-10 Linf`.
    pub label: String,
    /// The norm the perturbation is bounded in: `linf` or `l2`.
    pub norm: String,
    /// The attack's parameters (`steps`, `step_size`, `restarts`, ...). The reliability
    /// checks read `steps`: `1` for a single-step attack.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// One point per epsilon, in increasing epsilon order.
    pub points: Vec<EpsPoint>,
}

/// What one attack achieved at one epsilon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpsPoint {
    /// The perturbation budget, in the attack's norm and in input units (within `bounds`).
    pub eps: f64,
    /// Fraction of all samples still classified correctly under attack, in `[0, 1]`.
    pub robust_accuracy: f64,
    /// Among samples classified correctly when clean, the fraction the attack fooled.
    pub attack_success_rate: f64,
    /// Mean size of the perturbations found, in the attack's norm.
    pub mean_perturbation: f64,
    /// Largest perturbation found, in the attack's norm (at most `eps`).
    pub max_perturbation: f64,
    /// Robust accuracy of each class, indexed by class; `None` for a class with no samples.
    pub per_class_robust: Vec<Option<f64>>,
    /// Number of samples whose loss gradient was exactly zero at some step.
    pub zero_grad_samples: usize,
    /// Number of samples whose loss gradient had a NaN or infinite component at some step.
    pub nonfinite_grad_samples: usize,
    /// Number of samples attacked.
    pub n: usize,
    /// Clean-correct samples of which the attack recorded its iterates (gradient attacks
    /// do; gradient-free and minimum-norm ones may not): those the silent-success check
    /// can judge. 0 in older files.
    #[serde(default)]
    pub traced_samples: usize,
    /// Clean-correct samples the attack failed on although one of its iterates was
    /// adversarial: it found an adversarial example and returned another point (silent
    /// success, Pintor et al. 2022).
    #[serde(default)]
    pub silent_success_samples: usize,
    /// Clean-correct samples the attack failed on with at least two recorded steps: those
    /// the incomplete-optimisation check can judge.
    #[serde(default)]
    pub traced_failed_samples: usize,
    /// Of those, the samples whose objective was still rising over the attack's last
    /// steps (incomplete optimisation, Pintor et al. 2022).
    #[serde(default)]
    pub incomplete_samples: usize,
}

/// Robust accuracy against the union of several attacks at one epsilon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorstCasePoint {
    /// The perturbation budget.
    pub eps: f64,
    /// Fraction of samples that no listed attack fooled.
    pub robust_accuracy: f64,
    /// Labels of the attacks included (all of one norm).
    pub attacks: Vec<String>,
}

/// One adversarial example, with its images as base64 PNG data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Label of the attack that produced it.
    pub attack: String,
    /// The epsilon it was produced at.
    pub eps: f64,
    /// Index of the sample in the data set.
    pub index: usize,
    /// The sample's true class.
    pub true_label: usize,
    /// The model's prediction on the clean input.
    pub clean_pred: usize,
    /// The model's confidence (softmax probability) in `clean_pred`.
    pub clean_conf: f32,
    /// The model's prediction on the adversarial input.
    pub adv_pred: usize,
    /// The model's confidence in `adv_pred`.
    pub adv_conf: f32,
    /// The clean input, base64 PNG data without a `data:` prefix (see [`crate::png_base64`]).
    pub clean_png: String,
    /// The adversarial input, base64 PNG data.
    pub adv_png: String,
    /// The perturbation, rescaled so that zero is mid-grey, base64 PNG data.
    pub perturbation_png: String,
}

/// The outcome of one reliability check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A stable identifier, e.g. `monotonic/PGD-10 Linf`.
    pub id: String,
    /// Pass, warn or fail.
    pub status: CheckStatus,
    /// A one-line title.
    pub title: String,
    /// What was found and what to do about it, for a reader who is not an expert.
    pub message: String,
}

/// The status of a [`Check`], stored in lowercase.
///
/// The renderers count a run's checks with [`check_counts`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check could not be made on this run (e.g. no ε large enough); stored as
    /// `not-applicable`. It neither passes nor counts toward "all passed".
    #[serde(rename = "not-applicable")]
    NotApplicable,
    /// Nothing suspicious.
    #[default]
    Pass,
    /// Suspicious: read the message and decide.
    Warn,
    /// The evaluation is very likely flawed.
    Fail,
}

impl CheckStatus {
    /// `n/a`, `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::NotApplicable => "n/a",
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }
}

/// How many of `checks` passed, warned, failed and did not apply, in that order.
pub fn check_counts(checks: &[Check]) -> [usize; 4] {
    let n = |s: CheckStatus| checks.iter().filter(|c| c.status == s).count();
    [
        n(CheckStatus::Pass),
        n(CheckStatus::Warn),
        n(CheckStatus::Fail),
        n(CheckStatus::NotApplicable),
    ]
}

/// One line summing up `checks` when none warned or failed: `all 4 passed`, or
/// `all 3 applicable passed (1 not applicable)`.
pub fn all_passed_text(checks: &[Check]) -> String {
    let [pass, _, _, na] = check_counts(checks);
    if na == 0 {
        format!("all {pass} passed")
    } else {
        format!("all {pass} applicable passed ({na} not applicable)")
    }
}

/// The regression gate's verdict (see [`crate::evaluate_gate`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// True when every row passed (also when there are no rows).
    pub passed: bool,
    /// One row per threshold compared.
    pub rows: Vec<GateRow>,
    /// Path of the baseline results the run was compared with, if any.
    pub baseline: Option<String>,
}

/// One threshold compared by the gate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    /// The attack's label (or, for a rule that matched no attack, the rule's pattern).
    pub attack: String,
    /// The epsilon compared (`0` when [`GateRow::all_eps`] is set).
    pub eps: f64,
    /// `min` (robust accuracy must be at least `threshold`) or `max_drop` (robust accuracy
    /// must not fall more than `threshold` below the baseline's).
    pub kind: String,
    /// The threshold.
    pub threshold: f64,
    /// The baseline's robust accuracy (`max_drop` rows only).
    pub baseline: Option<f64>,
    /// This run's robust accuracy; `None` when the point is missing from this run.
    pub actual: Option<f64>,
    /// Whether the threshold held. A missing point never passes.
    pub passed: bool,
    /// Set on a row for a rule without an epsilon that matched no attack at all: the row
    /// stands for every epsilon, and `eps` means nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_eps: bool,
    /// A sentence explaining the row's outcome.
    #[serde(default)]
    pub message: String,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl RunResults {
    /// Reads results from a JSON file.
    ///
    /// Fails, naming the file, when it is missing or unreadable, not JSON, has no
    /// `schema_version`, has a newer major `schema_version` than [`SCHEMA_VERSION`], does not
    /// match the schema, or has [problems](RunResults::problems).
    pub fn read(path: impl AsRef<Path>) -> Result<RunResults> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses results from JSON text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<RunResults> {
        let path = path.as_ref();
        // Check the version first: a newer major version may not match the schema at all,
        // and "upgrade robust" is a better message than "missing field".
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| ReportError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ReportError::MissingSchemaVersion {
                path: path.to_path_buf(),
            })?;
        if version > u64::from(SCHEMA_VERSION) {
            return Err(ReportError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            return Err(ReportError::InvalidSchemaVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        // Parse the text again (not the value) so that errors carry line and column.
        let results: RunResults =
            serde_json::from_str(text).map_err(|source| ReportError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let problems = results.problems();
        if !problems.is_empty() {
            return Err(ReportError::InvalidResults {
                path: path.to_path_buf(),
                problems,
            });
        }
        Ok(results)
    }

    /// Serialises to pretty-printed JSON.
    ///
    /// Non-finite numbers would silently become `null` and make the text unreadable, so
    /// call [`RunResults::problems`] first (as [`RunResults::write`] does).
    pub fn to_json_string(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self).map_err(ReportError::Serialize)?;
        text.push('\n');
        Ok(text)
    }

    /// Writes the results as pretty-printed JSON, atomically.
    ///
    /// The text goes to a temporary file in the same directory, which is flushed to disk and
    /// then renamed over `path`: a reader sees the old file or the new one, never a part.
    /// Refuses results that have [problems](RunResults::problems).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(ReportError::InvalidResults {
                path: path.to_path_buf(),
                problems,
            });
        }
        write_atomic(path, self.to_json_string()?.as_bytes())
    }

    /// Lists what makes these results unusable, empty when they are fine: non-finite
    /// numbers (which JSON cannot store); accuracies, rates and confidences outside
    /// `[0, 1]`; negative epsilons, perturbations or durations; counts that contradict each
    /// other (a point with more attacked samples than the data set holds, more samples with
    /// dead gradients than attacked, more per-class values than the model has classes);
    /// empty or duplicate attack labels; a backdoor scan's
    /// [problems](crate::BackdoorScan::problems).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |what: String, x: f64, range: Range| {
            if !x.is_finite() {
                problems.push(format!("{what} is {x}, not a finite number"));
            } else if !range.contains(x) {
                problems.push(format!("{what} is {x}, {}", range.expected()));
            }
        };
        check("duration_s".into(), self.duration_s, Range::NonNegative);
        check("clean_accuracy".into(), self.clean_accuracy, Range::Unit);
        for (c, acc) in self.clean_per_class.iter().enumerate() {
            if let Some(acc) = acc {
                check(format!("clean_per_class[{c}]"), *acc, Range::Unit);
            }
        }
        for a in &self.attacks {
            for p in &a.points {
                let at = |field: &str| format!("attack '{}' eps {}: {field}", a.label, p.eps);
                check(at("eps"), p.eps, Range::NonNegative);
                check(at("robust_accuracy"), p.robust_accuracy, Range::Unit);
                check(
                    at("attack_success_rate"),
                    p.attack_success_rate,
                    Range::Unit,
                );
                check(
                    at("mean_perturbation"),
                    p.mean_perturbation,
                    Range::NonNegative,
                );
                check(
                    at("max_perturbation"),
                    p.max_perturbation,
                    Range::NonNegative,
                );
                for (c, acc) in p.per_class_robust.iter().enumerate() {
                    if let Some(acc) = acc {
                        check(at(&format!("per_class_robust[{c}]")), *acc, Range::Unit);
                    }
                }
            }
        }
        for w in &self.worst_case {
            check(
                format!("worst_case eps {}: eps", w.eps),
                w.eps,
                Range::NonNegative,
            );
            check(
                format!("worst_case eps {}: robust_accuracy", w.eps),
                w.robust_accuracy,
                Range::Unit,
            );
        }
        for e in &self.examples {
            check(
                format!("example {} eps", e.index),
                e.eps,
                Range::NonNegative,
            );
            check(
                format!("example {} clean_conf", e.index),
                f64::from(e.clean_conf),
                Range::Unit,
            );
            check(
                format!("example {} adv_conf", e.index),
                f64::from(e.adv_conf),
                Range::Unit,
            );
        }
        if let Some(gate) = &self.gate {
            for r in &gate.rows {
                let at = format!("gate row '{}' eps {}", r.attack, r.eps);
                check(format!("{at}: eps"), r.eps, Range::NonNegative);
                check(format!("{at}: threshold"), r.threshold, Range::Any);
                for v in [r.baseline, r.actual].into_iter().flatten() {
                    check(format!("{at}: value"), v, Range::Unit);
                }
            }
        }
        if let Some(pr) = &self.probes {
            for (i, v) in pr.unstable.relative_change.iter().enumerate() {
                check(
                    format!("probes.unstable.relative_change[{i}]"),
                    *v,
                    Range::NonNegative,
                );
            }
            check(
                "probes.unstable.radius".into(),
                pr.unstable.radius,
                Range::NonNegative,
            );
            check(
                "probes.randomness.max_output_change".into(),
                pr.randomness.max_output_change,
                Range::NonNegative,
            );
            check("probes.outputs.min".into(), pr.outputs.min, Range::Any);
            check("probes.outputs.max".into(), pr.outputs.max, Range::Any);
            check(
                "probes.outputs.max_row_sum_error".into(),
                pr.outputs.max_row_sum_error,
                Range::NonNegative,
            );
            for u in &pr.unconstrained {
                check(
                    format!("probes.unconstrained '{}': eps", u.attack),
                    u.eps,
                    Range::NonNegative,
                );
            }
        }
        problems.extend(self.count_problems());
        if let Some(b) = &self.backdoor {
            problems.extend(b.problems());
        }
        let mut seen = HashSet::new();
        for a in &self.attacks {
            if a.label.trim().is_empty() {
                problems.push(format!("attack '{}' has an empty label", a.name));
            } else if !seen.insert(a.label.as_str()) {
                problems.push(format!(
                    "attack label '{}' is used twice: labels must be unique within a run",
                    a.label
                ));
            }
        }
        problems
    }

    /// Counts that contradict each other (see [`RunResults::problems`]).
    fn count_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for u in self.probes.iter().flat_map(|p| &p.unconstrained) {
            if u.failed > u.attacked {
                problems.push(format!(
                    "probes.unconstrained '{}': failed is {}, more than attacked = {}",
                    u.attack, u.failed, u.attacked
                ));
            }
        }
        let size = self.dataset.size;
        let classes = self.model.num_classes;
        if classes > 0 && self.clean_per_class.len() > classes {
            problems.push(format!(
                "clean_per_class has {} values for a model with {classes} classes",
                self.clean_per_class.len()
            ));
        }
        for a in &self.attacks {
            for p in &a.points {
                let at = format!("attack '{}' eps {}", a.label, p.eps);
                if size > 0 && p.n > size {
                    problems.push(format!(
                        "{at}: n is {}, more samples than the data set's size {size}",
                        p.n
                    ));
                }
                for (field, v) in [
                    ("zero_grad_samples", p.zero_grad_samples),
                    ("nonfinite_grad_samples", p.nonfinite_grad_samples),
                    ("traced_samples", p.traced_samples),
                    ("traced_failed_samples", p.traced_failed_samples),
                ] {
                    if v > p.n {
                        problems.push(format!("{at}: {field} is {v}, more than n = {}", p.n));
                    }
                }
                if p.silent_success_samples > p.traced_samples {
                    problems.push(format!(
                        "{at}: silent_success_samples is {}, more than traced_samples = {}",
                        p.silent_success_samples, p.traced_samples
                    ));
                }
                if p.incomplete_samples > p.traced_failed_samples {
                    problems.push(format!(
                        "{at}: incomplete_samples is {}, more than traced_failed_samples = {}",
                        p.incomplete_samples, p.traced_failed_samples
                    ));
                }
                if classes > 0 && p.per_class_robust.len() > classes {
                    problems.push(format!(
                        "{at}: per_class_robust has {} values for a model with {classes} \
                         classes",
                        p.per_class_robust.len()
                    ));
                }
            }
        }
        problems
    }

    /// The attack with this label.
    pub fn attack(&self, label: &str) -> Option<&AttackResult> {
        self.attacks.iter().find(|a| a.label == label)
    }

    /// The name of class `c`: its name from the data set, or its number when there is none.
    pub fn class_name(&self, c: usize) -> String {
        match self.dataset.class_names.get(c) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => c.to_string(),
        }
    }

    /// The number of classes: the model's, else the data set's, else the longest per-class list.
    pub fn num_classes(&self) -> usize {
        if self.model.num_classes > 0 {
            return self.model.num_classes;
        }
        if self.dataset.num_classes > 0 {
            return self.dataset.num_classes;
        }
        self.attacks
            .iter()
            .flat_map(|a| a.points.iter().map(|p| p.per_class_robust.len()))
            .chain([self.clean_per_class.len()])
            .max()
            .unwrap_or(0)
    }
}

impl AttackResult {
    /// The `steps` parameter, when present and a non-negative integer.
    pub fn steps(&self) -> Option<u64> {
        self.params.get("steps").and_then(serde_json::Value::as_u64)
    }

    /// The point whose epsilon equals `eps` within [`EPS_TOLERANCE`].
    pub fn point(&self, eps: f64) -> Option<&EpsPoint> {
        self.points.iter().find(|p| eps_eq(p.eps, eps))
    }
}

/// The valid range of a number in [`RunResults::problems`].
#[derive(Clone, Copy)]
enum Range {
    /// `[0, 1]`: accuracies, rates, confidences.
    Unit,
    /// `[0, ∞)`: epsilons, perturbations, durations.
    NonNegative,
    /// Any finite number.
    Any,
}

impl Range {
    fn contains(self, x: f64) -> bool {
        match self {
            Range::Unit => (0.0..=1.0).contains(&x),
            Range::NonNegative => x >= 0.0,
            Range::Any => true,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Range::Unit => "outside [0, 1]",
            Range::NonNegative => "below 0",
            Range::Any => "",
        }
    }
}

/// Two epsilons closer than this are the same epsilon.
pub const EPS_TOLERANCE: f64 = 1e-9;

/// Whether two epsilons are equal within [`EPS_TOLERANCE`].
pub fn eps_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS_TOLERANCE
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`, so that a reader sees the old file or the new one, never a
/// part. On failure the temporary file is removed. Used for results and for rendered
/// reports.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let write_err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        write_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(write_err(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_run;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "robust-report-schema-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_file() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("results.json");
        let run = sample_run();
        run.write(&path).unwrap();
        assert_eq!(RunResults::read(&path).unwrap(), run);
        // Overwrite: still one file.
        run.write(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("results.json")]);
    }

    #[test]
    fn check_status_is_lowercase_in_json() {
        let c = Check {
            status: CheckStatus::Warn,
            ..Check::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"], "warn");
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let err = RunResults::read("/nonexistent/dir/results.json").unwrap_err();
        assert!(matches!(err, ReportError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/dir/results.json"),
            "{err}"
        );
    }

    #[test]
    fn not_json_error_names_the_file_and_position() {
        let err = RunResults::from_json_str("{ not json", "bad.json").unwrap_err();
        assert!(matches!(err, ReportError::Json { .. }));
        let msg = err.to_string();
        assert!(msg.contains("bad.json") && msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn newer_major_version_is_refused_with_upgrade_hint() {
        let mut v = serde_json::to_value(sample_run()).unwrap();
        v["schema_version"] = 2.into();
        let err = RunResults::from_json_str(&v.to_string(), "new.json").unwrap_err();
        assert!(matches!(err, ReportError::NewerSchema { found: 2, .. }));
        assert!(err.to_string().contains("upgrade robust"), "{err}");
        assert!(err.to_string().contains("new.json"), "{err}");
    }

    #[test]
    fn missing_or_zero_version_is_refused() {
        let err = RunResults::from_json_str(r#"{"a": 1}"#, "other.json").unwrap_err();
        assert!(matches!(err, ReportError::MissingSchemaVersion { .. }));
        let mut v = serde_json::to_value(sample_run()).unwrap();
        v["schema_version"] = 0.into();
        let err = RunResults::from_json_str(&v.to_string(), "zero.json").unwrap_err();
        assert!(matches!(err, ReportError::InvalidSchemaVersion { .. }));
    }

    #[test]
    fn unknown_fields_from_a_newer_minor_version_are_ignored() {
        let mut v = serde_json::to_value(sample_run()).unwrap();
        v["some_future_field"] = "x".into();
        v["attacks"][0]["points"][0]["another_one"] = 3.into();
        let run = RunResults::from_json_str(&v.to_string(), "future.json").unwrap();
        assert_eq!(run, sample_run());
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let mut v = serde_json::to_value(sample_run()).unwrap();
        v["clean_accuracy"] = "high".into();
        let err = RunResults::from_json_str(&v.to_string(), "shape.json").unwrap_err();
        assert!(matches!(err, ReportError::Json { .. }));
    }

    #[test]
    fn non_finite_numbers_and_duplicate_labels_are_refused_on_write() {
        let dir = temp_dir("invalid");
        let path = dir.join("results.json");
        let mut run = sample_run();
        run.attacks[0].points[1].robust_accuracy = f64::NAN;
        let dup = run.attacks[0].clone();
        run.attacks.push(dup);
        let err = run.write(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("robust_accuracy is NaN"), "{msg}");
        assert!(msg.contains("used twice"), "{msg}");
        assert!(!path.exists(), "no file may be written");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn values_out_of_range_and_inconsistent_counts_are_refused_on_read() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit, &str); 6] = [
            (
                "negative accuracy",
                |v| v["clean_accuracy"] = (-5.0).into(),
                "clean_accuracy is -5, outside [0, 1]",
            ),
            (
                "accuracy above 1",
                |v| v["attacks"][0]["points"][1]["robust_accuracy"] = 1.5.into(),
                "robust_accuracy is 1.5, outside [0, 1]",
            ),
            (
                "negative eps",
                |v| v["attacks"][1]["points"][0]["eps"] = (-0.1).into(),
                "eps is -0.1, below 0",
            ),
            (
                "more samples than the data set",
                |v| v["attacks"][0]["points"][0]["n"] = 101.into(),
                "n is 101, more samples than the data set's size 100",
            ),
            (
                "more dead gradients than samples",
                |v| v["attacks"][0]["points"][0]["zero_grad_samples"] = 500.into(),
                "zero_grad_samples is 500, more than n = 100",
            ),
            (
                "more per-class values than classes",
                |v| v["clean_per_class"] = serde_json::json!([0.5, 0.5, 0.5, 0.5]),
                "clean_per_class has 4 values for a model with 3 classes",
            ),
        ];
        for (what, edit, needle) in cases {
            let mut v = serde_json::to_value(sample_run()).unwrap();
            edit(&mut v);
            let err = RunResults::from_json_str(&v.to_string(), "r.json").unwrap_err();
            assert!(matches!(err, ReportError::InvalidResults { .. }), "{what}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("r.json: invalid results: "),
                "{what}: {msg}"
            );
            assert!(msg.contains(needle), "{what}: {msg}");
            assert!(!msg.contains('\n'), "{what}: {msg}");
        }
    }

    #[test]
    fn write_into_missing_directory_fails_naming_the_file() {
        let err = sample_run()
            .write("/nonexistent/dir/results.json")
            .unwrap_err();
        assert!(matches!(err, ReportError::Write { .. }));
        assert!(err.to_string().contains("/nonexistent/dir/results.json"));
    }
}
