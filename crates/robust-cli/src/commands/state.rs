//! `robust eval --state FILE`: an evaluation that survives being killed.
//!
//! After every batch the sweep's whole state (per attack and ε the counts and the per-sample
//! outcomes of the batches done so far, which component of an ensemble broke each sample,
//! the example images, the clean counts and each sample's SHA-256) is written to FILE
//! atomically (a temporary file renamed over it), so the file always holds a state after
//! some whole number of batches. A rerun with the same `--state` restores it, checks that
//! the data set's finished batches still hash to the digests recorded, and continues with
//! the next batch: every attack, ε and AutoAttack component of a finished batch is done,
//! and none of the next batch is. Floating-point values are stored as their bit patterns,
//! so the resumed run's results.json equals an uninterrupted run's (timing aside).
//!
//! The file records what it belongs to: the model's SHA-256 and input settings, the number
//! of samples and the SHA-256 of their labels, the attacks with every parameter, the ε,
//! seed, batch size, shard, example count, backend and robust's version. A state of another
//! run is refused (exit 2) with the first setting that differs. The file is kept after the
//! run: rerunning with it reports again without attacking anything.
//!
//! For tests, `ROBUST_STOP_AFTER_BATCHES=K` makes `robust eval --state` stop (exit 75)
//! right after it recorded its K-th batch, as if it had been killed there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use robust_attacks::sweep::{CleanStats, ExampleImage};
use robust_attacks::{AttackSpec, PointStats, Sweep};
use robust_report as report;
use serde::{Deserialize, Serialize};

use super::shard::Shard;
use crate::exit::bad_input;

/// The version of the state-file format this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// The environment variable that stops a run after it recorded this many batches (tests).
pub const STOP_AFTER_ENV: &str = "ROBUST_STOP_AFTER_BATCHES";

/// What a state file belongs to; a resumed run must match it exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunIdentity {
    pub model_sha256: String,
    pub input_shape: Vec<usize>,
    pub bounds: [f32; 2],
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    pub samples: usize,
    pub labels_sha256: String,
    pub specs: Vec<AttackSpec>,
    pub eps: Vec<f32>,
    pub seed: u64,
    pub batch_size: usize,
    pub shard: Option<Shard>,
    pub examples: usize,
    pub device_backend: String,
    pub tool_version: String,
}

/// The SHA-256 of the labels (u64 little-endian each), in order.
pub(crate) fn labels_sha256(labels: &[usize]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for &y in labels {
        h.update((y as u64).to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// One (attack, ε) after some batches, floats as bit patterns.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PointSnap {
    eps: u32,
    n: usize,
    clean_correct: usize,
    robust_correct: usize,
    fooled: usize,
    perturbation_sum: u64,
    perturbation_max: u32,
    per_class_n: Vec<usize>,
    per_class_robust: Vec<usize>,
    zero_grad: usize,
    nonfinite_grad: usize,
    /// `1`/`0` per sample.
    robust: String,
    perturbations: Vec<u32>,
    components: Vec<String>,
    broken_by: Vec<Option<usize>>,
    traced: usize,
    silent_success: usize,
    traced_failures: usize,
    incomplete: usize,
}

impl PointSnap {
    fn of(s: &PointStats) -> Self {
        Self {
            eps: s.eps.to_bits(),
            n: s.n,
            clean_correct: s.clean_correct,
            robust_correct: s.robust_correct,
            fooled: s.fooled,
            perturbation_sum: s.perturbation_sum.to_bits(),
            perturbation_max: s.perturbation_max.to_bits(),
            per_class_n: s.per_class_n.clone(),
            per_class_robust: s.per_class_robust.clone(),
            zero_grad: s.zero_grad,
            nonfinite_grad: s.nonfinite_grad,
            robust: s
                .robust
                .iter()
                .map(|&r| if r { '1' } else { '0' })
                .collect(),
            perturbations: s.perturbations.iter().map(|d| d.to_bits()).collect(),
            components: s.components.clone(),
            broken_by: s.broken_by.clone(),
            traced: s.traced,
            silent_success: s.silent_success,
            traced_failures: s.traced_failures,
            incomplete: s.incomplete,
        }
    }

    fn restore(&self, st: &mut PointStats) -> Result<(), String> {
        if self.eps != st.eps.to_bits() {
            return Err(format!(
                "eps {} where the run has {}",
                f32::from_bits(self.eps),
                st.eps
            ));
        }
        if self.robust.len() != self.n || self.perturbations.len() != self.n {
            return Err(format!(
                "the point at eps {} is not one value per sample",
                st.eps
            ));
        }
        let classes = st.per_class_n.len();
        if self.per_class_n.len() != classes || self.per_class_robust.len() != classes {
            return Err(format!(
                "the point at eps {} has another number of classes",
                st.eps
            ));
        }
        *st = PointStats {
            eps: st.eps,
            n: self.n,
            clean_correct: self.clean_correct,
            robust_correct: self.robust_correct,
            fooled: self.fooled,
            perturbation_sum: f64::from_bits(self.perturbation_sum),
            perturbation_max: f32::from_bits(self.perturbation_max),
            per_class_n: self.per_class_n.clone(),
            per_class_robust: self.per_class_robust.clone(),
            zero_grad: self.zero_grad,
            nonfinite_grad: self.nonfinite_grad,
            robust: self.robust.chars().map(|c| c == '1').collect(),
            perturbations: self
                .perturbations
                .iter()
                .map(|&b| f32::from_bits(b))
                .collect(),
            components: self.components.clone(),
            broken_by: self.broken_by.clone(),
            traced: self.traced,
            silent_success: self.silent_success,
            traced_failures: self.traced_failures,
            incomplete: self.incomplete,
            ..PointStats::default()
        };
        Ok(())
    }
}

/// One kept example, floats as bit patterns.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ExampleSnap {
    plan: usize,
    eps: u32,
    index: usize,
    label: usize,
    clean: (usize, u32),
    adv: (usize, u32),
    shape: [usize; 3],
    clean_pixels: Vec<u32>,
    adv_pixels: Vec<u32>,
}

impl ExampleSnap {
    fn of(e: &ExampleImage) -> Self {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect();
        Self {
            plan: e.plan,
            eps: e.eps.to_bits(),
            index: e.index,
            label: e.label,
            clean: (e.clean.0, e.clean.1.to_bits()),
            adv: (e.adv.0, e.adv.1.to_bits()),
            shape: e.shape,
            clean_pixels: bits(&e.clean_pixels),
            adv_pixels: bits(&e.adv_pixels),
        }
    }

    fn restore(&self) -> ExampleImage {
        let floats = |v: &[u32]| v.iter().map(|&b| f32::from_bits(b)).collect();
        ExampleImage {
            plan: self.plan,
            eps: f32::from_bits(self.eps),
            index: self.index,
            label: self.label,
            clean: (self.clean.0, f32::from_bits(self.clean.1)),
            adv: (self.adv.0, f32::from_bits(self.adv.1)),
            shape: self.shape,
            clean_pixels: floats(&self.clean_pixels),
            adv_pixels: floats(&self.adv_pixels),
        }
    }
}

/// One sweep (the evaluation, or the convergence check's rerun) after some batches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SweepSnap {
    /// Batches finished, in the order the run evaluates them.
    pub batches_done: usize,
    indices: Vec<usize>,
    digests: Vec<String>,
    clean_n: usize,
    clean_correct: usize,
    clean_per_class_n: Vec<usize>,
    clean_per_class_correct: Vec<usize>,
    points: Vec<Vec<PointSnap>>,
    examples: Vec<ExampleSnap>,
}

impl SweepSnap {
    /// The state of `sweep` after `batches_done` batches.
    pub fn of(sweep: &Sweep, batches_done: usize, indices: &[usize], digests: &[[u8; 32]]) -> Self {
        Self {
            batches_done,
            indices: indices.to_vec(),
            digests: digests.iter().map(hex::encode).collect(),
            clean_n: sweep.clean.n,
            clean_correct: sweep.clean.correct,
            clean_per_class_n: sweep.clean.per_class_n.clone(),
            clean_per_class_correct: sweep.clean.per_class_correct.clone(),
            points: sweep
                .stats
                .iter()
                .map(|per| per.iter().map(PointSnap::of).collect())
                .collect(),
            examples: sweep.examples.iter().map(ExampleSnap::of).collect(),
        }
    }

    /// Puts this state into a fresh `sweep` of the same plans; returns the sample indices
    /// and digests of the finished batches.
    pub fn restore(&self, sweep: &mut Sweep) -> Result<(Vec<usize>, Vec<[u8; 32]>), String> {
        if self.points.len() != sweep.stats.len()
            || self
                .points
                .iter()
                .zip(&sweep.stats)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err("its attacks do not match the run's".into());
        }
        for (snaps, stats) in self.points.iter().zip(sweep.stats.iter_mut()) {
            for (snap, st) in snaps.iter().zip(stats.iter_mut()) {
                snap.restore(st)?;
            }
        }
        let classes = sweep.clean.per_class_n.len();
        if self.clean_per_class_n.len() != classes || self.clean_per_class_correct.len() != classes
        {
            return Err("its clean counts have another number of classes".into());
        }
        sweep.clean = CleanStats {
            n: self.clean_n,
            correct: self.clean_correct,
            per_class_n: self.clean_per_class_n.clone(),
            per_class_correct: self.clean_per_class_correct.clone(),
        };
        sweep.examples = self.examples.iter().map(ExampleSnap::restore).collect();
        let digests = self
            .digests
            .iter()
            .map(|d| {
                hex::decode(d)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| "a sample digest is not 64 hex digits".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if digests.len() != self.indices.len() || self.clean_n != self.indices.len() {
            return Err("its per-sample lists do not match its sample count".into());
        }
        Ok((self.indices.clone(), digests))
    }
}

/// The file on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StateDoc {
    state_version: u32,
    run: RunIdentity,
    /// By sweep (`attacking`, `convergence check`).
    sweeps: BTreeMap<String, SweepSnap>,
}

/// An open state file: what was restored, and where to record progress.
pub(crate) struct StateFile {
    path: PathBuf,
    doc: StateDoc,
    /// Batches recorded by this process (for [`STOP_AFTER_ENV`]).
    recorded: usize,
    stop_after: Option<usize>,
}

impl StateFile {
    /// Opens `path` for the run `run`: restores it when it exists (refusing a state of
    /// another run), starts a new one otherwise. Nothing is written yet.
    pub fn open(path: &Path, run: RunIdentity) -> anyhow::Result<Self> {
        let stop_after =
            match std::env::var(STOP_AFTER_ENV) {
                Ok(v) => Some(v.trim().parse::<usize>().map_err(|_| {
                    bad_input(format!("{STOP_AFTER_ENV}='{v}' is not a whole number"))
                })?),
                Err(_) => None,
            };
        let doc = if path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad_input(format!("--state {}: cannot read: {e}", path.display())))?;
            let doc: StateDoc = serde_json::from_str(&text).map_err(|e| {
                bad_input(format!(
                    "--state {}: not a robust state file ({e}); delete it or give another \
                     --state file",
                    path.display()
                ))
            })?;
            if doc.state_version != STATE_VERSION {
                return Err(bad_input(format!(
                    "--state {}: state version {}; this robust reads version {STATE_VERSION}",
                    path.display(),
                    doc.state_version
                )));
            }
            if let Some(key) = first_difference(&doc.run, &run) {
                return Err(bad_input(format!(
                    "--state {}: belongs to another run (its `{key}` differs from this \
                     run's); resume with the same model, data, attacks, eps, seed and batch \
                     size, or give another --state file",
                    path.display()
                )));
            }
            doc
        } else {
            StateDoc {
                state_version: STATE_VERSION,
                run,
                sweeps: BTreeMap::new(),
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            doc,
            recorded: 0,
            stop_after,
        })
    }

    /// The recorded state of the sweep `what`, if any.
    pub fn sweep(&self, what: &str) -> Option<&SweepSnap> {
        self.doc.sweeps.get(what)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the state of the sweep `what` after a batch, atomically; with
    /// [`STOP_AFTER_ENV`] set, stops the process once that many batches were recorded.
    pub fn record(&mut self, what: &str, snap: SweepSnap) -> anyhow::Result<()> {
        self.doc.sweeps.insert(what.to_string(), snap);
        let json = serde_json::to_string(&self.doc)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                bad_input(format!(
                    "--state {}: cannot create its folder: {e}",
                    self.path.display()
                ))
            })?;
        }
        report::write_atomic(&self.path, json.as_bytes()).map_err(bad_input)?;
        self.recorded += 1;
        if self.stop_after == Some(self.recorded) {
            eprintln!(
                "stopped after {} batch{} ({STOP_AFTER_ENV}); resume with the same --state {}",
                self.recorded,
                if self.recorded == 1 { "" } else { "es" },
                self.path.display()
            );
            std::process::exit(75);
        }
        Ok(())
    }
}

/// The first field in which two run identities differ.
fn first_difference(a: &RunIdentity, b: &RunIdentity) -> Option<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Some("run".into());
    };
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
}
