//! `robust drift --reference A --current B`: has the data drifted?
//!
//! Three detectors (`--method`), each on features chosen by `--feature-space`:
//!
//! * `ks` (default): one two-sample Kolmogorov–Smirnov test per feature with SciPy's
//!   default p-values, Bonferroni or Benjamini–Hochberg across features, `p ≤ threshold`.
//! * `alibi-ks`: the verdicts of alibi-detect's `KSDrift` (asymptotic p-values, float32
//!   results, strict `<`, alibi's FDR rule) with its `data`/`meta` JSON layout.
//! * `mmd`: one multivariate test, the Gaussian-kernel MMD with the median-heuristic
//!   bandwidth and a seeded permutation test (alibi-detect's `MMDDrift`).
//!
//! With a model, `--feature-space softmax` gives black-box shift detection (KS on the
//! predicted probabilities) and `entropy` classifier-uncertainty drift (KS on the entropy
//! of the predictions, as alibi-detect's `ClassifierUncertaintyDrift`). Feature tables
//! given with those spaces are read as logits.
//!
//! Exit codes: 0 no drift, 1 drift, 2 bad input. With `--mlflow`, the statistics and the
//! JSON report go to an MLflow run after the local outputs are written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use robust_integrity::write_atomic;
use robust_monitor::{
    alibi_ks_drift, detect_drift, entropy, mmd_drift, softmax, AlibiKsOptions, AlibiKsReport,
    Correction, DriftOptions, DriftReport, FeatureTable, MmdOptions, MmdReport, MonitorError,
    RunRecord,
};

use super::integrity::inputs::{features_of, resolve_kind, FeatureSpace, InputKind, ModelArgs};
use super::mlflow::MlflowArgs;
use crate::exit::bad_input;

fn parse_correction(s: &str) -> std::result::Result<Correction, String> {
    s.parse().map_err(|e: MonitorError| e.to_string())
}

/// Drifted features printed without --all.
const PRINT_LIMIT: usize = 20;
/// Most features whose p-value and distance are logged to MLflow one by one.
const MLFLOW_PER_FEATURE: usize = 100;

/// The drift detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftMethod {
    /// A KS test per feature, SciPy's p-values, `p ≤ threshold`.
    Ks,
    /// alibi-detect's KSDrift: asymptotic p-values, float32, strict `<`.
    AlibiKs,
    /// Maximum mean discrepancy with a permutation test (alibi-detect's MMDDrift).
    Mmd,
}

impl DriftMethod {
    fn name(self) -> &'static str {
        match self {
            DriftMethod::Ks => "ks",
            DriftMethod::AlibiKs => "alibi-ks",
            DriftMethod::Mmd => "mmd",
        }
    }
}

/// What the detector looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftSpace {
    /// Pixels of a data set (no model).
    Pixels,
    /// The model's penultimate features (or `--layer`).
    Penultimate,
    /// The model's logits.
    Logits,
    /// Softmax of the logits: black-box shift detection.
    Softmax,
    /// Entropy of the softmax: classifier-uncertainty drift (one feature).
    Entropy,
}

impl DriftSpace {
    fn name(self) -> &'static str {
        match self {
            DriftSpace::Pixels => "pixels",
            DriftSpace::Penultimate => "penultimate",
            DriftSpace::Logits => "logits",
            DriftSpace::Softmax => "softmax",
            DriftSpace::Entropy => "entropy",
        }
    }

    /// The space a model (or table) provides before the transform.
    fn base(self) -> FeatureSpace {
        match self {
            DriftSpace::Pixels => FeatureSpace::Pixels,
            DriftSpace::Penultimate => FeatureSpace::Penultimate,
            DriftSpace::Logits | DriftSpace::Softmax | DriftSpace::Entropy => FeatureSpace::Logits,
        }
    }

    fn transform(self, t: FeatureTable) -> Result<FeatureTable, MonitorError> {
        match self {
            DriftSpace::Softmax => softmax(&t),
            DriftSpace::Entropy => entropy(&softmax(&t)?),
            _ => Ok(t),
        }
    }
}

/// Test two tables or data sets for drift: per-feature KS (SciPy's or alibi-detect's
/// verdicts) or multivariate MMD; exit 1 on drift.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  robust drift --reference train_features.npy --current prod_features.npy
  robust drift --reference ref.csv --current today.csv --p-val 0.01 --correction fdr --json drift.json
  robust drift --reference ref.npy --current cur.npy --method alibi-ks     # alibi-detect's KSDrift
  robust drift --reference ref.npy --current cur.npy --method mmd --n-permutations 1000 --seed 1
  robust drift --reference datasets/mnist-demo --current incoming/images.npy \\
      --model models/mnist-cnn/model.onnx --mean 0.1307 --std 0.3081
  robust drift --reference train/ --current prod/ --model net.onnx --feature-space softmax   # BBSD
  robust drift --reference train/ --current prod/ --model net.onnx --feature-space entropy   # uncertainty
  robust drift --reference ref.npy --current cur.npy --mlflow http://127.0.0.1:5000

Inputs (--input auto decides by the file; --input features|data overrides):
  feature tables: .npy of rank 1 or 2 (f4/f8/u1/i4/i8; [samples, features]) or a CSV
    with a header row of feature names;
  data sets: an image folder (one subfolder per class), a CSV of path,label, an images
    .npy of rank 3 or 4 (labels.npy beside it is optional here) or a folder holding
    images.npy, MNIST IDX files.
Both inputs must be the same kind. A data set becomes features: per pixel without
--model (the image size comes from the .npy/IDX header, else --input-shape); with
--model, the model's penultimate features (default; --layer picks another value), logits,
softmax probabilities or prediction entropy (--feature-space); feature tables given with
softmax or entropy are read as logits. The inputs must have the same number of features.

Methods:
  ks        p-values as scipy.stats.ks_2samp (exact up to 10000 samples, asymptotic
            above), then Bonferroni or Benjamini-Hochberg (fdr); drift where p <= threshold.
  alibi-ks  alibi-detect's KSDrift(x_ref, p_val, correction).predict(x): asymptotic
            p-values, float32 results, drift where p < threshold; JSON {data, meta} with
            is_drift, p_val, threshold, distance as alibi-detect returns them.
  mmd       alibi-detect's MMDDrift: Gaussian kernel, median-heuristic bandwidth (or
            --sigma), unbiased MMD^2, --n-permutations permutations seeded by --seed.
Exit code 0: no drift; 1: drift; 2: bad input (missing file, mismatched feature
counts, bad flag value) or, with --mlflow-required, a run that could not be logged.")]
pub struct DriftArgs {
    /// Reference: a feature table or a data set.
    #[arg(long, value_name = "A")]
    pub reference: PathBuf,
    /// Current: a feature table or a data set, of the same kind and width as the reference.
    #[arg(long, value_name = "B")]
    pub current: PathBuf,
    /// How to read the inputs: auto, features or data.
    #[arg(long, value_enum, default_value = "auto", value_name = "KIND")]
    pub input: InputKind,
    /// Features: pixels, penultimate, logits, softmax or entropy (default: penultimate
    /// with --model, pixels without).
    #[arg(long, value_enum, value_name = "SPACE")]
    pub feature_space: Option<DriftSpace>,
    /// The detector: ks, alibi-ks or mmd.
    #[arg(long, value_enum, default_value = "ks", value_name = "METHOD")]
    pub method: DriftMethod,
    /// Significance level, in (0, 1).
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub p_val: f64,
    /// Multiple-testing correction of ks and alibi-ks: `bonferroni` or `fdr`.
    #[arg(long, value_name = "METHOD", default_value = "bonferroni", value_parser = parse_correction)]
    pub correction: Correction,
    /// Permutations of the mmd test.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub n_permutations: usize,
    /// Kernel bandwidth of the mmd test [default: median heuristic on the reference].
    #[arg(long, value_name = "SIGMA")]
    pub sigma: Option<f64>,
    /// Seed of the mmd permutations.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// List every feature, not only the first drifted ones.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub mlflow: MlflowArgs,
}

/// A detector's result.
enum Outcome {
    Ks(DriftReport),
    Alibi(AlibiKsReport),
    Mmd(MmdReport),
}

impl Outcome {
    fn is_drift(&self) -> bool {
        match self {
            Outcome::Ks(r) => r.is_drift,
            Outcome::Alibi(r) => r.is_drift(),
            Outcome::Mmd(r) => r.data.is_drift == 1,
        }
    }

    fn to_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Outcome::Ks(r) => serde_json::to_value(r)?,
            Outcome::Alibi(r) => serde_json::to_value(r)?,
            Outcome::Mmd(r) => serde_json::to_value(r)?,
        })
    }
}

/// Checks the flags that need no file.
fn check_flags(args: &DriftArgs) -> Result<DriftSpace> {
    if !(args.p_val > 0.0 && args.p_val < 1.0) {
        return Err(bad_input(format!(
            "--p-val {} must lie in (0, 1)",
            args.p_val
        )));
    }
    if args.method == DriftMethod::Mmd && args.n_permutations == 0 {
        return Err(bad_input("--n-permutations must be at least 1"));
    }
    if let Some(s) = args.sigma {
        if args.method != DriftMethod::Mmd {
            return Err(bad_input("--sigma applies to --method mmd only"));
        }
        if !(s.is_finite() && s > 0.0) {
            return Err(bad_input(format!("--sigma {s} must be a positive number")));
        }
    }
    args.model.validate()?;
    if let Some(out) = &args.json {
        let mut inputs: Vec<&std::path::Path> = vec![&args.reference, &args.current];
        inputs.extend(args.model.spec.model.as_deref());
        inputs.extend(args.model.spec.arch.as_deref());
        let inputs = crate::commands::with_folder_files(&inputs);
        let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
        crate::commands::refuse_overlap(&inputs, &[out])?;
    }
    let space = match (args.feature_space, &args.model.spec.model) {
        (Some(s), _) => s,
        (None, Some(_)) => DriftSpace::Penultimate,
        (None, None) => DriftSpace::Pixels,
    };
    Ok(space)
}

/// Runs `robust drift`.
pub fn run(args: &DriftArgs) -> Result<ExitCode> {
    // Cheap checks first: flags, files, kinds, MLflow settings; then the model and data.
    let space = check_flags(args)?;
    let mlflow = args.mlflow.target(Some(super::mlflow::default_config()))?;
    let ref_kind = resolve_kind(&args.reference, args.input)?;
    let cur_kind = resolve_kind(&args.current, args.input)?;
    if ref_kind != cur_kind {
        let name = |k: InputKind| {
            if k == InputKind::Data {
                "a data set"
            } else {
                "a feature table"
            }
        };
        return Err(bad_input(format!(
            "{} is {} but {} is {}; compare two of the same kind (or set --input)",
            args.reference.display(),
            name(ref_kind),
            args.current.display(),
            name(cur_kind)
        )));
    }
    if ref_kind == InputKind::Features && args.model.spec.model.is_some() {
        return Err(bad_input(format!(
            "{} is a feature table, and --model needs data sets (image folder, CSV of \
             path,label, images .npy, IDX); drop --model to compare the tables as they \
             are, or pass --input data",
            args.reference.display()
        )));
    }
    // Tables are compared as they are (softmax and entropy read them as logits); data
    // sets become pixels or, through the model, penultimate features or logits.
    let tables = ref_kind == InputKind::Features;
    let needs_model = matches!(space, DriftSpace::Penultimate | DriftSpace::Logits)
        || (!tables && space != DriftSpace::Pixels);
    if needs_model && args.model.spec.model.is_none() {
        return Err(bad_input(format!(
            "--feature-space {} needs --model{}",
            space.name(),
            if tables {
                " (feature tables are compared as they are; softmax and entropy read them                  as logits)"
            } else {
                ""
            }
        )));
    }
    let base = if tables {
        FeatureSpace::Pixels
    } else {
        space.base()
    };
    let model = args.model.load()?;
    let (reference, ref_what) =
        features_of(&args.reference, ref_kind, base, model.as_ref(), &args.model)?;
    let (current, cur_what) =
        features_of(&args.current, cur_kind, base, model.as_ref(), &args.model)?;
    let reference = space.transform(reference).map_err(bad_input)?;
    let current = space.transform(current).map_err(bad_input)?;
    let (ref_what, cur_what) = match space {
        DriftSpace::Softmax | DriftSpace::Entropy => {
            let then = |what: String| {
                format!(
                    "{what}, then their {} ({} feature{})",
                    space.name(),
                    reference.n_features(),
                    if reference.n_features() == 1 { "" } else { "s" }
                )
            };
            (then(ref_what), then(cur_what))
        }
        _ => (ref_what, cur_what),
    };

    let outcome = match args.method {
        DriftMethod::Ks => Outcome::Ks(
            detect_drift(
                &reference,
                &current,
                &DriftOptions {
                    p_val: args.p_val,
                    correction: args.correction,
                    ..DriftOptions::default()
                },
            )
            .map_err(bad_input)?,
        ),
        DriftMethod::AlibiKs => Outcome::Alibi(
            alibi_ks_drift(
                &reference,
                &current,
                &AlibiKsOptions {
                    p_val: args.p_val,
                    correction: args.correction,
                },
            )
            .map_err(bad_input)?,
        ),
        DriftMethod::Mmd => Outcome::Mmd(
            mmd_drift(
                &reference,
                &current,
                &MmdOptions {
                    p_val: args.p_val,
                    n_permutations: args.n_permutations,
                    sigma: args.sigma,
                    seed: args.seed,
                },
            )
            .map_err(bad_input)?,
        ),
    };

    let space_name = if ref_kind == InputKind::Data || space != DriftSpace::Pixels {
        space.name()
    } else {
        "table"
    };
    let mut json = outcome.to_json()?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("method".into(), args.method.name().into());
        obj.insert("reference".into(), ref_what.clone().into());
        obj.insert("current".into(), cur_what.clone().into());
        obj.insert("feature_space".into(), space_name.into());
        if let Some(m) = &model {
            obj.insert(
                "model".into(),
                serde_json::json!({
                    "path": m.info().path.display().to_string(),
                    "sha256": m.info().sha256,
                }),
            );
        }
    }
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    // Rendered in memory first; the file is written before anything is printed so a
    // failed write is the only message.
    if let Some(out) = &args.json {
        write_atomic(out, text.as_bytes()).map_err(bad_input)?;
    }
    println!("reference: {ref_what}");
    println!("current:   {cur_what}");
    match &outcome {
        Outcome::Ks(r) => print_ks(r, args.all),
        Outcome::Alibi(r) => print_alibi(r, &reference, args.all),
        Outcome::Mmd(r) => print_mmd(r),
    }
    let mut record = mlflow_record(args, &outcome, &reference, space_name);
    if let Some(m) = &model {
        record.param("model.sha256", &m.info().sha256);
        record.param("model.path", m.info().path.display());
    }
    record.param("reference", &ref_what);
    record.param("current", &cur_what);
    record.artifact("drift.json", text.into_bytes());
    super::mlflow::send(mlflow.as_ref(), "drift", record)?;
    Ok(if outcome.is_drift() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the first lines of a table (all with `all`), then how many were left out.
fn print_limited(table: &str, all: bool, header_lines: usize) {
    let mut lines = table.lines();
    let mut printed = 0;
    for line in lines.by_ref() {
        println!("{line}");
        printed += 1;
        if !all && printed >= PRINT_LIMIT + header_lines {
            break;
        }
    }
    let rest = lines.count();
    if rest > 0 {
        println!(
            "... {rest} more drifted feature{} (--all lists them; --json writes every p-value)",
            if rest == 1 { "" } else { "s" }
        );
    }
}

fn print_ks(report: &DriftReport, all: bool) {
    print_limited(&report.to_table(!all), all, 2);
    if let Some(f) = report
        .features
        .iter()
        .min_by(|a, b| a.p_value.total_cmp(&b.p_value))
    {
        println!(
            "smallest p-value: {:.3e} (feature {}, statistic {:.4}); threshold {:.3e}",
            f.p_value,
            f.name.clone().unwrap_or_else(|| f.index.to_string()),
            f.statistic,
            report.threshold
        );
    }
}

fn feature_name(table: &FeatureTable, j: usize) -> String {
    table
        .name(j)
        .map(str::to_string)
        .unwrap_or_else(|| j.to_string())
}

fn print_alibi(r: &AlibiKsReport, table: &FeatureTable, all: bool) {
    let drifted = r.drifted_features();
    let threshold = match &r.data.threshold {
        robust_monitor::AlibiThreshold::Single(t) => format!("{t:.6e}"),
        robust_monitor::AlibiThreshold::PerRank(v) => format!(
            "none of the {} FDR rank thresholds ({:.3e} … {:.3e}) reached",
            v.len(),
            v.first().copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0)
        ),
    };
    let mut out = format!(
        "drift: {}  (alibi-detect KSDrift: {} of {} features below the threshold, {} \
         correction, p_val {}, threshold {threshold}; reference n={}, current n={})\n",
        if r.is_drift() { "YES" } else { "no" },
        drifted.len(),
        r.meta.n_features,
        r.meta.correction,
        r.meta.p_val,
        r.meta.n_reference,
        r.meta.n_current,
    );
    let width = (0..r.meta.n_features)
        .map(|j| feature_name(table, j).len())
        .max()
        .unwrap_or(7)
        .max(7);
    out.push_str(&format!(
        "{:<width$}  {:>10}  {:>12}  drift\n",
        "feature", "distance", "p_val"
    ));
    for j in 0..r.meta.n_features {
        let is = drifted.contains(&j);
        if !all && !is {
            continue;
        }
        out.push_str(&format!(
            "{:<width$}  {:>10.6}  {:>12.6e}  {}\n",
            feature_name(table, j),
            r.data.distance[j],
            r.data.p_val[j],
            if is { "*" } else { "" }
        ));
    }
    print_limited(&out, all, 2);
}

fn print_mmd(r: &MmdReport) {
    println!(
        "drift: {}  (MMD: p = {:.4} from {} permutations, seed {}; p_val {}; reference n={}, \
         current n={}, {} features)",
        if r.data.is_drift == 1 { "YES" } else { "no" },
        r.data.p_val,
        r.meta.n_permutations,
        r.meta.seed,
        r.data.threshold,
        r.meta.n_reference,
        r.meta.n_current,
        r.meta.n_features
    );
    println!(
        "MMD² {:.6e} (drift above {:.6e} at this level); Gaussian kernel, sigma {:.6} ({})",
        r.data.distance,
        r.data.distance_threshold,
        r.meta.sigma,
        if r.meta.sigma_inferred {
            "median heuristic"
        } else {
            "--sigma"
        }
    );
}

/// Parameters, metrics and tags of a drift run for MLflow.
fn mlflow_record(
    args: &DriftArgs,
    outcome: &Outcome,
    table: &FeatureTable,
    space: &str,
) -> RunRecord {
    let mut r = RunRecord::default();
    r.param("method", args.method.name());
    r.param("p_val", args.p_val);
    r.param("feature_space", space);
    r.tag(
        "robust.drift",
        if outcome.is_drift() {
            "drift"
        } else {
            "no drift"
        },
    );
    r.metric("drift.is_drift", if outcome.is_drift() { 1.0 } else { 0.0 });
    let per_feature = |r: &mut RunRecord, p: &[f64], d: &[f64]| {
        r.metric("drift.n_features", p.len() as f64);
        if let Some(min) = p.iter().copied().reduce(f64::min) {
            r.metric("drift.min_p_val", min);
        }
        if let Some(max) = d.iter().copied().reduce(f64::max) {
            r.metric("drift.max_distance", max);
        }
        if p.len() <= MLFLOW_PER_FEATURE {
            for j in 0..p.len() {
                let name = feature_name(table, j);
                r.metric(&format!("drift.p_val/{name}"), p[j]);
                r.metric(&format!("drift.distance/{name}"), d[j]);
            }
        }
    };
    match outcome {
        Outcome::Ks(k) => {
            r.param("correction", k.correction);
            r.metric("drift.threshold", k.threshold);
            r.metric("drift.n_drifted", k.n_drifted as f64);
            let p: Vec<f64> = k.features.iter().map(|f| f.p_value).collect();
            let d: Vec<f64> = k.features.iter().map(|f| f.statistic).collect();
            per_feature(&mut r, &p, &d);
        }
        Outcome::Alibi(a) => {
            r.param("correction", a.meta.correction);
            r.metric("drift.threshold", a.data.threshold.strictest());
            r.metric("drift.n_drifted", a.drifted_features().len() as f64);
            let p: Vec<f64> = a.data.p_val.iter().map(|&v| f64::from(v)).collect();
            let d: Vec<f64> = a.data.distance.iter().map(|&v| f64::from(v)).collect();
            per_feature(&mut r, &p, &d);
        }
        Outcome::Mmd(m) => {
            r.param("n_permutations", m.meta.n_permutations);
            r.param("seed", m.meta.seed);
            r.param("sigma", m.meta.sigma);
            r.metric("drift.p_val", m.data.p_val);
            r.metric("drift.distance", m.data.distance);
            r.metric("drift.distance_threshold", m.data.distance_threshold);
            r.metric("drift.sigma", m.meta.sigma);
        }
    }
    r
}
