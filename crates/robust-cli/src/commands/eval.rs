//! `robust eval`: clean accuracy and robust accuracy under attack sweeps, with reports and a
//! regression gate.
//!
//! Flags are parsed into [`EvalArgs`], merged with `robust.toml`, and turned into one
//! validated [`Plan`] before anything heavy runs; then the model is loaded, the data set
//! streamed batch by batch through every attack at every ε, and the results written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use robust_attacks::{AttackPlan, AttackRegistry, AttackSpec, Loss, Norm, Sweep, TargetMode};
use robust_data::{DataFormat, DataSpec, Dataset, ResizeMode};
use robust_models::{select_device, ComputeDevice, DeviceChoice, Model, ModelInfo, ModelSpec};
use robust_report as report;

use super::shard::Shard;
use crate::config::Config;
use crate::exit::bad_input;
use crate::model_flags::ModelFlags;

/// Arguments of `robust eval`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  robust eval --attack fgsm --eps 0.1                      # the bundled demo (robust.toml)
  robust eval --model net.onnx --data images/ --attack fgsm,pgd --eps 0,2/255,8/255
  robust eval --model net.onnx --data test.csv --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
  robust eval --device wgpu --attack pgd --steps 20 --restarts 2 --eps 0.03
  robust eval --baseline reports/baseline.json --max-drop 0.02   # exit 1 on regression

--backdoor (or [backdoor] in robust.toml) adds Neural Cleanse on the evaluated samples after
the attacks (as `robust backdoor`, seeded by --seed): a section in every report. A flagged
class is a warning check; it does not fail the gate or change the exit code.

Exit code 0: evaluated, and every gate held; 1: the gate failed (a regression or a robust
accuracy below --min-robust), or the model did not verify against --require-signature;
2: bad input: a missing or malformed file, an invalid flag, no samples to evaluate, a model
whose outputs are not finite, an output that would overwrite an input, or an output that
cannot be written. The outputs (results.json, report.html, summary.md, junit.xml) are
written together or not at all, and --history is appended only after they were.")]
pub struct EvalArgs {
    /// Configuration file (default: robust.toml in the current directory, if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The model: file, architecture, shape, bounds, normalization.
    #[command(flatten)]
    pub model: ModelFlags,

    /// Data: an image folder (one subfolder per class), a CSV of path,label, an .npy of
    /// images (labels.npy beside it), or MNIST IDX files.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Labels file for .npy or IDX data.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Class names, one per line.
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
    /// Data format (default: detected).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<DataFormat>,
    /// How images of another size reach the model's size: resize (the whole image,
    /// aspect ratio not kept), center-crop, or resize-crop (torchvision's Resize +
    /// CenterCrop) [default: resize]. Every conversion is warned about and recorded.
    #[arg(long, value_name = "MODE")]
    pub resize: Option<ResizeMode>,

    /// Attacks, comma-separated (`robust eval --attack list` is not needed: an unknown name
    /// lists them). Settings for one attack follow its name after colons, e.g.
    /// `fgsm,pgd:steps=20:restarts=2`; the keys are those of an `[[attack]]` table in
    /// robust.toml. A per-attack setting beats the flag of the same name.
    #[arg(long, value_delimiter = ',', value_name = "NAME[:KEY=VALUE...],...")]
    pub attack: Option<Vec<String>>,
    /// ε values, comma-separated; fractions such as 8/255 are accepted.
    #[arg(long, value_delimiter = ',', value_name = "EPS,...", value_parser = parse_eps)]
    pub eps: Option<Vec<f32>>,
    /// The ε the report and summary lead with (one of --eps) [default: the gate's ε, else
    /// the middle of the sweep].
    #[arg(long, value_name = "EPS", value_parser = parse_eps)]
    pub primary_eps: Option<f32>,
    /// Threat model: linf or l2.
    #[arg(long)]
    pub norm: Option<Norm>,
    /// Steps of iterative attacks (default 10). This and the attack flags below apply to
    /// the attacks that take them (`--attack fgsm,pgd --steps 20` sets PGD's steps);
    /// a flag that no chosen attack takes is an error.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Absolute step size.
    #[arg(long, conflicts_with = "rel_step_size")]
    pub step_size: Option<f32>,
    /// Step size as a fraction of ε (PGD default 2.5/steps).
    #[arg(long)]
    pub rel_step_size: Option<f32>,
    /// Random start inside the ε-ball (PGD default true).
    #[arg(long, value_name = "BOOL")]
    pub random_start: Option<bool>,
    /// Restarts; the per-sample worst case is kept.
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Loss: cross-entropy (ce) or margin.
    #[arg(long)]
    pub loss: Option<Loss>,
    /// Targeted attack: random, least-likely, or a class index.
    #[arg(long, value_name = "MODE", value_parser = parse_target)]
    pub targeted: Option<TargetMode>,

    /// Device: auto (a hardware GPU if present, else the CPU), cpu or wgpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Samples per batch [default: 256, lowered on a GPU when one activation of the model
    /// would not fit in one device buffer].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed for every random choice (random starts, random targets).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory for results.json, report.html, summary.md and junit.xml.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Example images per attack and ε in the report.
    #[arg(long)]
    pub examples: Option<usize>,
    /// Append this run to a history file (JSON lines) and chart it in the report.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// MLflow tracking: --mlflow URI and its options.
    #[command(flatten)]
    pub mlflow: super::mlflow::MlflowArgs,

    /// Baseline results.json to compare with. It must come from a like run: the same
    /// samples (count and content) and every attack and ε it holds; otherwise exit 2,
    /// saying what differs.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// After a run whose gate passed (or that had no gate), also write its results.json
    /// here, e.g. to start or move forward the baseline (`--baseline B --save-baseline B`).
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
    /// Largest allowed drop of robust accuracy against the baseline (e.g. 0.02).
    #[arg(long)]
    pub max_drop: Option<f64>,
    /// Minimum robust accuracy, ATTACK@EPS=ACC (ATTACK is a label, a name or *), repeatable.
    #[arg(long = "min-robust", value_name = "RULE", value_parser = parse_min_rule)]
    pub min_robust: Vec<report::MinRule>,
    /// Re-run iterative attacks with doubled steps and restarts and flag results that change.
    #[arg(long)]
    pub check_convergence: bool,

    /// Audit the model's files as `robust audit` does (code that would run on load, paths
    /// leaving the model folder, malformed headers) and add the findings to the report; a
    /// finding of severity medium or above fails a reliability check.
    #[arg(long)]
    pub audit: bool,

    /// Refuse to evaluate a model that does not verify against this signature file (robust's
    /// JSON, a raw SHA-256 openssl signature or an OpenSSF bundle, told apart by content).
    #[arg(long, value_name = "SIG", requires = "pubkey")]
    pub require_signature: Option<PathBuf>,
    /// Public key (PEM) for --require-signature.
    #[arg(long, value_name = "PEM", requires = "require_signature")]
    pub pubkey: Option<PathBuf>,

    /// Evaluate shard K of N (0 ≤ K < N): the batches b with b % N == K, into a partial
    /// results file `shard-K-of-N.json` in --out, for `robust merge`. K may be `auto`: taken
    /// from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID (Slurm).
    #[arg(long, value_name = "K/N", value_parser = super::shard::parse_shard_arg)]
    pub shard: Option<super::shard::ShardArg>,

    /// Record progress in FILE after every batch (atomically), and resume from it: a killed
    /// run restarted with the same --state continues with the next batch and writes the
    /// same results as an uninterrupted one. FILE records the model, data, attacks, ε,
    /// seed and batch size it belongs to, and a different run is refused (exit 2). The file
    /// is kept afterwards; delete it to start over.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// The backdoor scan (Neural Cleanse) after the attacks.
    #[command(flatten)]
    pub backdoor: super::eval_backdoor::EvalBackdoorArgs,

    /// Skip the failure-indicator probes that cost extra passes (unstable predictions,
    /// randomness, logits or probabilities, and each attack once more with an unbounded
    /// eps, on the first 32 samples: about 1,000 forward passes and one more attack). Their
    /// checks then show n/a. For throughput measurements and very large models.
    #[arg(long)]
    pub no_probes: bool,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_eps(s: &str) -> Result<f32, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f32 = a
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a number"))?;
            let b: f32 = b
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a number"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a number"))?,
    };
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("epsilon '{s}' must be a finite number ≥ 0"))
    }
}

fn parse_target(s: &str) -> Result<TargetMode, String> {
    match s {
        "random" => Ok(TargetMode::Random),
        "least-likely" | "ll" => Ok(TargetMode::LeastLikely),
        "none" => Ok(TargetMode::None),
        other => other
            .parse::<usize>()
            .map(TargetMode::Class)
            .map_err(|_| format!("'{other}' is not random, least-likely or a class index")),
    }
}

fn parse_min_rule(s: &str) -> Result<report::MinRule, String> {
    let (lhs, acc) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}' is not ATTACK@EPS=ACC"))?;
    let acc: f64 = acc
        .trim()
        .parse()
        .map_err(|_| format!("'{acc}' is not a number"))?;
    let (attack, eps) = match lhs.split_once('@') {
        Some((a, e)) => (a.to_string(), Some(eps_f64(parse_eps(e)?))),
        None => (lhs.to_string(), None),
    };
    let rule = report::MinRule {
        attack,
        eps,
        min_robust_accuracy: acc,
    };
    match rule.problem() {
        Some(problem) => Err(problem),
        None => Ok(rule),
    }
}

/// Parses one `--attack` item, `NAME[:KEY=VALUE...]`, into a spec; also returns the keys
/// it set. Values are TOML values (`20`, `0.01`, `true`), or else strings (`linf`).
fn parse_attack_item(item: &str) -> Result<(AttackSpec, Vec<String>), String> {
    let mut parts = item.split(':');
    let name = parts.next().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(format!(
            "--attack '{item}': an attack name is missing (e.g. pgd:steps=20)"
        ));
    }
    let mut table = toml::Table::new();
    table.insert("name".into(), toml::Value::String(name.into()));
    let mut keys = Vec::new();
    for kv in parts {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            format!("--attack '{item}': '{kv}' is not KEY=VALUE (e.g. pgd:steps=20)")
        })?;
        let (k, v) = (k.trim().replace('-', "_"), v.trim());
        if k == "name" || k == "eps" {
            return Err(format!(
                "--attack '{item}': '{k}' cannot be set here{}",
                if k == "eps" {
                    " (give an attack its own ε in a [[attack]] table of robust.toml)"
                } else {
                    ""
                }
            ));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        if table.insert(k.clone(), value).is_some() {
            return Err(format!("--attack '{item}': '{k}' is given twice"));
        }
        keys.push(k);
    }
    let spec: AttackSpec = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            format!(
                "--attack '{item}': {}",
                e.message().lines().collect::<Vec<_>>().join(" ")
            )
        })?;
    Ok((spec, keys))
}

/// Applies the attack flags (`--steps`, `--norm`, ...) to the attacks that take them: a flag
/// an attack refuses (FGSM's steps) is skipped for it; a flag no attack takes is an error,
/// with the reason the last attack gave. Keys in `explicit[i]` (set per attack on the
/// command line) are left alone.
fn apply_attack_flags(
    args: &EvalArgs,
    specs: &mut [AttackSpec],
    explicit: &[Vec<String>],
) -> anyhow::Result<()> {
    type Setter<'a> = (&'a str, Box<dyn Fn(&mut AttackSpec) + 'a>);
    let mut setters: Vec<Setter<'_>> = Vec::new();
    macro_rules! flag {
        ($f:ident, $name:literal) => {
            if let Some(v) = &args.$f {
                setters.push((
                    $name,
                    Box::new(move |s: &mut AttackSpec| s.$f = Some(v.clone())),
                ));
            }
        };
    }
    flag!(norm, "norm");
    flag!(steps, "steps");
    flag!(step_size, "step_size");
    flag!(rel_step_size, "rel_step_size");
    flag!(random_start, "random_start");
    flag!(restarts, "restarts");
    flag!(loss, "loss");
    if let Some(t) = args.targeted {
        setters.push((
            "target",
            Box::new(move |s: &mut AttackSpec| s.target = Some(t)),
        ));
    }
    let registry = AttackRegistry::builtin();
    for (key, set) in &setters {
        let mut taken = false;
        let mut last_refusal = None;
        for (spec, own) in specs.iter_mut().zip(explicit) {
            if own.iter().any(|k| k == key) {
                taken = true;
                continue;
            }
            let mut candidate = spec.clone();
            set(&mut candidate);
            // An unknown attack name is reported later, once, by build_plans.
            match registry.build(&candidate) {
                Ok(_) => {
                    *spec = candidate;
                    taken = true;
                }
                Err(e) if registry.build(spec).is_ok() => last_refusal = Some(e),
                Err(_) => {
                    *spec = candidate;
                    taken = true;
                }
            }
        }
        if !taken {
            let flag = format!("--{}", key.replace('_', "-"));
            return Err(bad_input(match last_refusal {
                Some(e) => format!("{flag}: no chosen attack takes it: {e}"),
                None => format!("{flag}: no chosen attack takes it"),
            }));
        }
    }
    Ok(())
}

/// Everything a run needs, validated.
struct Plan {
    config_path: Option<PathBuf>,
    model: ModelSpec,
    data: DataSpec,
    specs: Vec<AttackSpec>,
    eps: Vec<f32>,
    primary_eps: Option<f32>,
    device: DeviceChoice,
    /// `None`: chosen for the device once the model is loaded ([`batch_size_for`]).
    batch_size: Option<usize>,
    limit: Option<usize>,
    seed: u64,
    out: PathBuf,
    examples: usize,
    history: Option<PathBuf>,
    baseline: Option<PathBuf>,
    save_baseline: Option<PathBuf>,
    thresholds: report::Thresholds,
    check_convergence: bool,
    signature: Option<(PathBuf, PathBuf)>,
    /// `--shard K/N`, resolved.
    shard: Option<Shard>,
    /// `--state FILE`: progress recorded after each batch, and resumed from.
    state: Option<PathBuf>,
    audit: bool,
    /// `--backdoor` or `[backdoor]`: Neural Cleanse after the attacks.
    backdoor: Option<super::eval_backdoor::BackdoorPlan>,
    /// `--no-probes`: no failure-indicator probes.
    no_probes: bool,
    quiet: bool,
}

fn plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    let (cfg, config_path) = match &args.config {
        Some(p) => (Config::read(p).map_err(bad_input)?, Some(p.clone())),
        None if Path::new("robust.toml").is_file() => (
            Config::read(Path::new("robust.toml")).map_err(bad_input)?,
            Some(PathBuf::from("robust.toml")),
        ),
        None => (Config::default(), None),
    };
    args.model.validate()?;
    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    let model = match (args.model.spec(), cfg.model) {
        // The config's [model] settings (normalization, bounds, shape) belong to the model
        // it names: they apply to --model only when it is that same file.
        (Some(m), Some(mut c)) if same_file(&m.path, &c.path) => {
            args.model.apply(&mut c);
            c
        }
        (Some(m), Some(c)) => {
            if !args.quiet {
                eprintln!(
                    "note: --model {} is not the model robust.toml names ({}): none of that \
                     [model] section's settings (mean/std, bounds, input shape) apply",
                    m.path.display(),
                    c.path.display()
                );
            }
            m
        }
        (Some(m), None) => m,
        (None, Some(mut m)) => {
            args.model.apply(&mut m);
            m
        }
        (None, None) => {
            return Err(bad_input(match &config_path {
                Some(c) => format!(
                    "no model given: {} has no [model] section; add one or pass --model FILE",
                    c.display()
                ),
                None => {
                    "no model given: pass --model FILE or run where a robust.toml names one".into()
                }
            }))
        }
    };
    let mut data =
        match (&args.data, cfg.data) {
            (Some(p), _) => DataSpec::new(p),
            (None, Some(d)) => d,
            (None, None) => return Err(bad_input(match &config_path {
                Some(c) => format!(
                    "no data given: {} has no [data] section; add one or pass --data PATH",
                    c.display()
                ),
                None => {
                    "no data given: pass --data PATH or run where a robust.toml names a data set"
                        .into()
                }
            })),
        };
    if let Some(l) = &args.labels {
        data.labels = Some(l.clone());
    }
    if let Some(c) = &args.classes {
        data.classes = Some(c.clone());
    }
    if let Some(f) = args.format {
        data.format = Some(f);
    }
    if let Some(r) = args.resize {
        data.resize = r;
    }

    let eps = args
        .eps
        .clone()
        .or(cfg.eval.eps)
        .unwrap_or_else(|| vec![0.0, 0.01, 0.03, 0.1]);
    if eps.is_empty() {
        return Err(bad_input("--eps needs at least one value"));
    }
    if let Some(bad) = eps.iter().find(|e| !e.is_finite() || **e < 0.0) {
        return Err(bad_input(format!(
            "epsilon {bad} must be a finite number ≥ 0"
        )));
    }
    // Per-attack settings written on the command line (`pgd:steps=20`) beat the flags.
    let (mut specs, explicit): (Vec<AttackSpec>, Vec<Vec<String>>) =
        match (&args.attack, cfg.eval.attacks) {
            (Some(items), _) => items
                .iter()
                .map(|i| parse_attack_item(i).map_err(bad_input))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into_iter()
                .unzip(),
            (None, _) if !cfg.attack.is_empty() => {
                let n = cfg.attack.len();
                (cfg.attack, vec![Vec::new(); n])
            }
            (None, Some(names)) => (
                names.iter().map(AttackSpec::named).collect(),
                vec![Vec::new(); names.len()],
            ),
            (None, None) => (
                vec![AttackSpec::named("fgsm"), AttackSpec::named("pgd")],
                vec![Vec::new(); 2],
            ),
        };
    apply_attack_flags(args, &mut specs, &explicit)?;
    let primary_eps = args.primary_eps.or(cfg.eval.primary_eps);
    if let Some(p) = primary_eps {
        let in_grid = eps.iter().any(|&e| eps_f64(e) == eps_f64(p))
            || specs
                .iter()
                .flat_map(|s| s.eps.iter().flatten())
                .any(|&e| eps_f64(e) == eps_f64(p));
        if !in_grid || p == 0.0 {
            return Err(bad_input(format!(
                "--primary-eps {p}: not one of the swept non-zero ε ({})",
                eps.iter()
                    .filter(|&&e| e > 0.0)
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let device = args
        .device
        .clone()
        .or(cfg.eval.device)
        .unwrap_or_else(|| "auto".into())
        .parse::<DeviceChoice>()
        .map_err(bad_input)?;
    let batch_size = args.batch_size.or(cfg.eval.batch_size);
    if batch_size == Some(0) {
        return Err(bad_input("--batch-size must be at least 1"));
    }
    let mut thresholds = report::Thresholds {
        min: cfg.gate.min,
        max_drop: cfg.gate.max_drop,
    };
    thresholds.min.extend(args.min_robust.iter().cloned());
    if args.max_drop.is_some() {
        thresholds.max_drop = args.max_drop;
    }
    if let Some(d) = thresholds.max_drop {
        if !(0.0..=1.0).contains(&d) {
            return Err(bad_input(format!("--max-drop {d} must be between 0 and 1")));
        }
    }
    let baseline = args.baseline.clone().or(cfg.gate.baseline);
    if thresholds.max_drop.is_some() && baseline.is_none() {
        return Err(bad_input(match (&args.max_drop, &config_path) {
            (None, Some(c)) => format!(
                "{}: [gate] max_drop needs a baseline results file: set [gate] baseline or pass \
                 --baseline",
                c.display()
            ),
            _ => "--max-drop needs a --baseline results file".into(),
        }));
    }
    let limit = args.limit.or(cfg.eval.limit);
    if limit == Some(0) {
        return Err(bad_input(
            "--limit 0 evaluates no sample, so nothing would be measured; give at least 1",
        ));
    }
    let seed = args.seed.or(cfg.eval.seed).unwrap_or(0);
    let backdoor =
        super::eval_backdoor::plan(&args.backdoor, cfg.backdoor, config_path.as_deref(), seed)?;
    if backdoor.is_some() && args.shard.is_some() {
        return Err(bad_input(
            "--backdoor cannot run in a shard: scan the model in a run of its own (`robust \
             backdoor`, or `robust eval --backdoor` without --shard)",
        ));
    }
    let out = args
        .out
        .clone()
        .or(cfg.eval.out)
        .unwrap_or_else(|| PathBuf::from("reports"));
    if out.exists() && !out.is_dir() {
        return Err(bad_input(format!(
            "--out {}: exists and is not a folder; --out names the folder that receives \
             results.json, report.html, summary.md and junit.xml",
            out.display()
        )));
    }
    Ok(Plan {
        config_path,
        model,
        data,
        specs,
        eps,
        primary_eps,
        device,
        batch_size,
        limit,
        seed,
        out,
        examples: args.examples.or(cfg.eval.examples).unwrap_or(3),
        history: args.history.clone().or(cfg.eval.history),
        baseline,
        save_baseline: args.save_baseline.clone(),
        thresholds,
        check_convergence: args.check_convergence,
        signature: args.require_signature.clone().zip(args.pubkey.clone()),
        shard: match args.shard {
            Some(s) => {
                if args.check_convergence {
                    return Err(bad_input(
                        "--check-convergence cannot run in a shard: run it on the merged \
                         configuration on one machine",
                    ));
                }
                if args.save_baseline.is_some() || args.history.is_some() {
                    return Err(bad_input(
                        "--save-baseline and --history belong to `robust merge`, not to a shard",
                    ));
                }
                Some(s.resolve().map_err(bad_input)?)
            }
            None => None,
        },
        state: args.state.clone(),
        audit: args.audit,
        backdoor,
        no_probes: args.no_probes,
        quiet: args.quiet,
    })
}

/// The files of a run's `--out` folder, in the order they are written.
const OUTPUT_FILES: [&str; 4] = ["results.json", "report.html", "summary.md", "junit.xml"];

/// Refuses (exit 2) an output that would overwrite an input: a file of the `--out` folder
/// or the history that is the model, the data (or the labels or classes file beside it),
/// the baseline, the configuration or a signature file.
fn refuse_overwriting_inputs(plan: &Plan) -> anyhow::Result<()> {
    let mut inputs: Vec<PathBuf> = vec![plan.model.path.clone(), plan.data.path.clone()];
    inputs.extend(plan.model.arch.clone());
    inputs.extend(plan.data.labels.clone());
    inputs.extend(plan.data.classes.clone());
    // The files read by default beside (or inside) the data.
    let data_dir = if plan.data.path.is_dir() {
        plan.data.path.clone()
    } else {
        plan.data
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    for name in ["images.npy", "labels.npy", "classes.txt"] {
        let p = data_dir.join(name);
        if p.exists() {
            inputs.push(p);
        }
    }
    // Saving the new baseline over the one compared with is the usual way to move it on.
    if plan.baseline != plan.save_baseline {
        inputs.extend(plan.baseline.clone());
    }
    inputs.extend(plan.config_path.clone());
    if let Some((sig, key)) = &plan.signature {
        inputs.extend([sig.clone(), key.clone()]);
    }
    let mut outputs: Vec<PathBuf> = OUTPUT_FILES.iter().map(|f| plan.out.join(f)).collect();
    outputs.extend(plan.history.clone());
    outputs.extend(plan.save_baseline.clone());
    outputs.extend(plan.state.clone());
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let outputs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    super::refuse_overlap(&inputs, &outputs)
}

/// Refuses (exit 2) a target class the model does not have, and targeted attacks on a
/// model with fewer than two classes, before any attack runs.
fn check_targets(plans: &[AttackPlan], info: &ModelInfo) -> anyhow::Result<()> {
    let k = info.num_classes;
    for p in plans {
        match p.target {
            TargetMode::None => {}
            TargetMode::Class(t) if t >= k => {
                return Err(bad_input(format!(
                    "--targeted {t}: the model {} has {k} class{} (0..={})",
                    info.path.display(),
                    if k == 1 { "" } else { "es" },
                    k.saturating_sub(1)
                )))
            }
            _ if k < 2 => {
                return Err(bad_input(format!(
                    "--targeted {}: the model {} has {k} class; a targeted attack needs at \
                     least 2",
                    p.target,
                    info.path.display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Builds the attack plans, with unique labels.
pub(crate) fn build_plans(
    specs: &[AttackSpec],
    eps: &[f32],
    double: bool,
) -> anyhow::Result<Vec<AttackPlan>> {
    let registry = AttackRegistry::builtin();
    let mut plans: Vec<AttackPlan> = Vec::new();
    for spec in specs {
        let mut spec = spec.clone();
        let mut attack = registry.build(&spec).map_err(bad_input)?;
        if double {
            // The convergence check reruns iterative attacks with twice the steps and
            // restarts; single-step attacks have nothing to converge.
            if attack.steps() <= 1 {
                continue;
            }
            spec.steps = Some(attack.steps() * 2);
            // Restarts only for attacks that have them (MI-FGSM and AutoAttack do not).
            if attack.params().contains_key("restarts") {
                spec.restarts = Some(spec.restarts.unwrap_or(1) * 2);
            }
            attack = registry.build(&spec).map_err(bad_input)?;
        }
        plans.push(AttackPlan {
            attack,
            eps: spec.eps.clone().unwrap_or_else(|| eps.to_vec()),
            target: spec.target.unwrap_or_default(),
        });
    }
    Ok(plans)
}

/// For an ensemble (AutoAttack): per ε, each component's robust accuracy after it ran and
/// the samples (evaluation order) it broke.
fn component_params(stats: &[robust_attacks::PointStats]) -> Option<serde_json::Value> {
    let per_eps: Vec<serde_json::Value> = stats
        .iter()
        .filter(|s| !s.components.is_empty())
        .map(|s| {
            let after: Vec<serde_json::Value> = s
                .component_results()
                .into_iter()
                .map(|(name, broken, acc)| {
                    serde_json::json!({
                        "component": name,
                        "robust_accuracy_after": acc,
                        "broken": broken,
                    })
                })
                .collect();
            serde_json::json!({"eps": eps_f64(s.eps), "components": after})
        })
        .collect();
    (!per_eps.is_empty()).then(|| per_eps.into())
}

/// For a minimum-norm attack (CW-L2, DeepFool): the median of the smallest adversarial
/// perturbations found over the points classified correctly when clean (`null` when it is
/// +∞), with the points no perturbation broke counted as +∞. The same at every ε.
fn median_params(stats: &[robust_attacks::PointStats]) -> Option<serde_json::Value> {
    let s = stats.iter().find(|s| !s.minimum_norms.is_empty())?;
    let median = s.median_minimum_norm()?;
    let unbroken = s.minimum_norms.iter().filter(|v| v.is_infinite()).count();
    Some(serde_json::json!({
        "median": median.is_finite().then_some(median),
        "points": s.clean_correct,
        "unbroken": unbroken,
        "unbroken_counted_as": "+inf",
    }))
}

pub(crate) fn labels_of(plans: &[AttackPlan]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for p in plans {
        let mut l = p.attack.label();
        if p.target != TargetMode::None {
            l = format!("{l} targeted {}", p.target);
        }
        let mut k = 2;
        let base = l.clone();
        while labels.contains(&l) {
            l = format!("{base} #{k}");
            k += 1;
        }
        labels.push(l);
    }
    labels
}

/// Runs a sweep over the whole data set.
/// The batch size when none was given.
const DEFAULT_BATCH_SIZE: usize = 256;

/// The batch size to run with: the requested one, or [`DEFAULT_BATCH_SIZE`]; on a device that
/// limits the size of one buffer (wgpu), lowered so that the model's largest activation fits,
/// and a requested size that cannot fit is a bad-input error rather than a crash mid-run.
fn batch_size_for(
    requested: Option<usize>,
    device: &ComputeDevice,
    info: &ModelInfo,
    quiet: bool,
) -> anyhow::Result<usize> {
    capped_batch_size(requested, DEFAULT_BATCH_SIZE, device, info, quiet)
}

/// [`batch_size_for`] with another default (`robust backdoor`'s trigger and STRIP batches).
pub(crate) fn capped_batch_size(
    requested: Option<usize>,
    default: usize,
    device: &ComputeDevice,
    info: &ModelInfo,
    quiet: bool,
) -> anyhow::Result<usize> {
    let per_sample = info.largest_activation_bytes_per_sample;
    let (Some(limit), Some(cap)) = (device.max_buffer_bytes, device.max_batch(per_sample)) else {
        return Ok(requested.unwrap_or(default));
    };
    let why = || {
        format!(
            "the model's largest activation is {} per sample and one buffer of {} holds at \
             most {}",
            super::human_bytes(per_sample),
            device.adapter,
            super::human_bytes(limit)
        )
    };
    if cap == 0 {
        return Err(bad_input(format!(
            "{}: the model cannot run on this device: {}",
            info.path.display(),
            why()
        )));
    }
    match requested {
        Some(b) if b > cap => Err(bad_input(format!(
            "--batch-size {b} is too large for this device: {}; use at most {cap}",
            why()
        ))),
        Some(b) => Ok(b),
        None if cap < default => {
            if !quiet {
                eprintln!("note: batch size {cap} instead of {default}: {}", why());
            }
            Ok(cap)
        }
        None => Ok(default),
    }
}

/// Refuses (exit 2) a batch on which the model's clean outputs are NaN or infinite: no
/// accuracy measured on them would mean anything. Returns the batch's one clean pass (the
/// logits, and the first gradient of the attacks that start at the clean inputs), which the
/// sweep then uses.
fn check_logits(
    model: &Model,
    sweep: &Sweep,
    x: &Tensor<4>,
    labels: &[usize],
    indices: &[usize],
    data: &str,
) -> anyhow::Result<robust_attacks::CleanPass> {
    // A model that fails while it runs (a node that does not fit the data) is bad input
    // (exit 2), named by file and node.
    let clean = sweep
        .clean_pass(model, x, labels, indices)
        .map_err(|e| attack_error(model, e))?;
    let logits = robust_models::to_host(clean.logits.clone());
    let per = logits.len().checked_div(indices.len()).unwrap_or(0).max(1);
    if let Some(bad) = logits.iter().position(|v| !v.is_finite()) {
        let sample = indices.get(bad / per).copied().unwrap_or(0);
        return Err(bad_input(format!(
            "{}: the model's outputs are not finite ({} for sample {sample} of {data}); a \
             model with NaN or infinite logits cannot be evaluated (check its weights and \
             --mean/--std)",
            model.info().path.display(),
            logits[bad]
        )));
    }
    Ok(clean)
}

/// What one pass over the data set produced: the sweep's statistics, and per evaluated
/// sample (in index order) its global index and the SHA-256 of its label (u64, LE) and
/// pixels (f32, LE, C×H×W) as the model received them.
pub(crate) struct SweepRun {
    pub sweep: Sweep,
    pub indices: Vec<usize>,
    pub digests: Vec<[u8; 32]>,
}

/// The data set's digest: SHA-256 of the per-sample digests, in index order. Being a digest
/// of digests, it is the same whether one machine or several shards computed them.
pub(crate) fn samples_digest(digests: &[[u8; 32]]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for d in digests {
        h.update(d);
    }
    hex::encode(h.finalize())
}

/// The sample ranges `[start, end)` of the batches this run evaluates: every batch, or with
/// `--shard K/N` the batches `b` with `b % N == K`. Shards are cut along the same batches a
/// single run uses, so each sample is computed in the same batch, with the same numbers.
fn batch_ranges(len: usize, batch_size: usize, shard: Option<Shard>) -> Vec<(usize, usize)> {
    (0..len.div_ceil(batch_size))
        .filter(|b| shard.is_none_or(|s| b % s.count == s.index))
        .map(|b| (b * batch_size, ((b + 1) * batch_size).min(len)))
        .collect()
}

/// Runs the plans over the data set, batch by batch. With `state`, the sweep `what` resumes
/// after the batches it records (their samples re-hashed and compared with the digests
/// recorded) and its state is recorded after each new batch.
fn run_sweep(
    model: &Model,
    dataset: &Dataset,
    plans: Vec<AttackPlan>,
    plan: &Plan,
    batch_size: usize,
    what: &str,
    mut state: Option<&mut super::state::StateFile>,
) -> anyhow::Result<SweepRun> {
    use sha2::Digest as _;
    let num_classes = model.info().num_classes;
    let [c, h, w] = <[usize; 3]>::try_from(model.info().input_shape.clone())
        .map_err(|_| anyhow::anyhow!("model input shape is not [C, H, W]"))?;
    let ranges = batch_ranges(dataset.len(), batch_size, plan.shard);
    let units: u64 = plans.iter().map(|p| p.eps.len() as u64).sum::<u64>() * ranges.len() as u64;
    let bar = if plan.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(units);
        b.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} (attack × ε × batch) {per_sec} {elapsed}<{eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    };
    let units_per_batch: u64 = plans.iter().map(|p| p.eps.len() as u64).sum();
    let mut sweep = Sweep::new(plans, num_classes, plan.seed, plan.examples);
    let mut indices = Vec::new();
    let mut digests = Vec::new();
    let mut done = 0;
    if let Some(snap) = state
        .as_deref()
        .and_then(|s| s.sweep(what).map(|snap| (s, snap)))
    {
        let (st, snap) = snap;
        let bad = |why: String| bad_input(format!("--state {}: {why}", st.path().display()));
        if snap.batches_done > ranges.len() {
            return Err(bad(format!(
                "records {} batches where this run has {}",
                snap.batches_done,
                ranges.len()
            )));
        }
        (indices, digests) = snap.restore(&mut sweep).map_err(bad)?;
        done = snap.batches_done;
        bar.inc(done as u64 * units_per_batch);
        if !plan.quiet {
            eprintln!(
                "note: --state {}: resuming {what} after {done} of {} batches",
                st.path().display(),
                ranges.len()
            );
        }
    }
    let restored = indices.len();
    let mut checked = 0;
    let per = c * h * w;
    // One worker thread decodes the next batch while this one is attacked; the channel
    // holds one batch, so memory stays at about two batches whatever the data set's size.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ranges = &ranges;
        scope.spawn(move || {
            for &(start, end) in ranges {
                if tx.send(dataset.batch(start, end - start)).is_err() {
                    return;
                }
            }
        });
        for (b, batch) in rx.into_iter().enumerate() {
            let batch = batch.map_err(bad_input)?;
            if let Some(&bad) = batch.labels.iter().find(|&&y| y >= num_classes) {
                return Err(bad_input(format!(
                    "{}: label {bad} is out of range for a model with {num_classes} outputs",
                    dataset.info().source
                )));
            }
            let n = batch.labels.len();
            let batch_digests: Vec<[u8; 32]> = batch
                .labels
                .iter()
                .enumerate()
                .map(|(k, &y)| {
                    let mut d = sha2::Sha256::new();
                    d.update((y as u64).to_le_bytes());
                    for v in &batch.pixels[k * per..(k + 1) * per] {
                        d.update(v.to_le_bytes());
                    }
                    <[u8; 32]>::from(d.finalize())
                })
                .collect();
            if b < done {
                // A finished batch: its samples must be the ones the state recorded.
                let end = checked + n;
                if end > restored
                    || indices[checked..end] != batch.indices[..]
                    || digests[checked..end] != batch_digests[..]
                {
                    return Err(bad_input(format!(
                        "--state {}: the data differs from the run it recorded (batch {b} of {}); resume with the same data, or give another --state file",
                        state.as_deref().map(|s| s.path().display().to_string()).unwrap_or_default(),
                        dataset.info().source
                    )));
                }
                checked = end;
                continue;
            }
            digests.extend_from_slice(&batch_digests);
            indices.extend_from_slice(&batch.indices);
            let x =
                Tensor::<4>::from_data(TensorData::new(batch.pixels, [n, c, h, w]), model.device());
            let clean = check_logits(
                model,
                &sweep,
                &x,
                &batch.labels,
                &batch.indices,
                &dataset.info().source,
            )?;
            sweep
                .run_batch_with_clean(model, x, clean, batch.labels, batch.indices, || bar.inc(1))
                .map_err(|e| attack_error(model, e))?;
            if let Some(st) = state.as_deref_mut() {
                st.record(
                    what,
                    super::state::SweepSnap::of(&sweep, b + 1, &indices, &digests),
                )?;
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(SweepRun {
        sweep,
        indices,
        digests,
    })
}

/// A failure of the attack code: the model's (bad input, naming the file) or an internal one.
fn attack_error(model: &Model, e: robust_attacks::AttackError) -> anyhow::Error {
    match e {
        robust_attacks::AttackError::Model(m) => {
            bad_input(format!("{}: {m}", model.info().path.display()))
        }
        other => anyhow::Error::new(other).context("attack sweep failed"),
    }
}

/// The indicators of attack failure that cost extra passes, measured on the first
/// [`robust_attacks::indicators::PROBE_SAMPLES`] samples of the evaluation (the same in
/// every shard, and on a resumed run): the output range and randomness of the forward pass
/// (AutoAttack's checks), unstable predictions, and each attack once more with an ε that
/// covers the whole input box (unconstrained attack failure). Every draw is seeded by
/// `seed` and the sample's index.
fn probe_indicators(
    model: &Model,
    dataset: &Dataset,
    sweep: &Sweep,
    labels: &[String],
    seed: u64,
    batch_size: usize,
) -> anyhow::Result<report::Probes> {
    use robust_attacks::indicators as ind;
    let info = model.info();
    let k = info.num_classes;
    let [c, h, w] = <[usize; 3]>::try_from(info.input_shape.clone())
        .map_err(|_| anyhow::anyhow!("model input shape is not [C, H, W]"))?;
    let n = dataset.len().min(ind::PROBE_SAMPLES);
    let b = dataset.batch(0, n).map_err(bad_input)?;
    if let Some(&bad) = b.labels.iter().find(|&&y| y >= k) {
        return Err(bad_input(format!(
            "{}: label {bad} is out of range for a model with {k} outputs",
            dataset.info().source
        )));
    }
    let n = b.labels.len();
    let x = Tensor::<4>::from_data(TensorData::new(b.pixels, [n, c, h, w]), model.device());
    let err = |e| attack_error(model, e);
    let forward = || -> Result<Vec<f32>, robust_attacks::AttackError> {
        Ok(robust_models::to_host(model.forward(x.clone())?))
    };
    let outputs = ind::output_range(&forward().map_err(err)?, k);
    let randomness = ind::randomness(forward, k, ind::RANDOMNESS_PASSES).map_err(err)?;
    let unstable = ind::unstable_predictions(
        model,
        &x,
        &b.labels,
        &b.indices,
        seed,
        ind::UNSTABLE_DRAWS,
        ind::UNSTABLE_RADIUS,
        batch_size,
    )
    .map_err(err)?;
    let unbounded = sweep
        .unbounded(model, x, b.labels, b.indices)
        .map_err(err)?;
    // Outputs were checked finite on every batch; a NaN here would not survive JSON.
    let finite = |v: f32| {
        if v.is_finite() {
            f64::from(v)
        } else {
            f64::MAX
        }
    };
    Ok(report::Probes {
        samples: n,
        unstable: report::UnstableProbe {
            draws: ind::UNSTABLE_DRAWS,
            radius: eps_f64(ind::UNSTABLE_RADIUS),
            relative_change: unstable.into_iter().map(finite).collect(),
        },
        randomness: report::RandomnessProbe {
            passes: randomness.passes,
            max_output_change: finite(randomness.max_output_change),
            prediction_changes: randomness.prediction_changes,
        },
        outputs: report::OutputProbe {
            min: finite(outputs.min),
            max: finite(outputs.max),
            max_row_sum_error: finite(outputs.max_row_sum_error),
        },
        unconstrained: unbounded
            .into_iter()
            .zip(labels)
            .map(
                |((eps, attacked, failed), label)| report::UnconstrainedProbe {
                    attack: label.clone(),
                    eps: eps_f64(eps),
                    attacked,
                    failed,
                },
            )
            .collect(),
    })
}

/// An ε as the decimal the user wrote (0.05, not 0.05000000074505806): the shortest
/// decimal that reads back as the same f32.
pub(crate) fn eps_f64(eps: f32) -> f64 {
    eps.to_string().parse().unwrap_or(f64::from(eps))
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn opt_ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn attack_results(sweep: &Sweep, labels: &[String]) -> Vec<report::AttackResult> {
    sweep
        .plans
        .iter()
        .enumerate()
        .map(|(p, plan)| {
            let mut params = plan.attack.params();
            params.insert("target".into(), plan.target.to_string().into());
            params.insert(
                "eps".into(),
                plan.eps
                    .iter()
                    .map(|&e| eps_f64(e))
                    .collect::<Vec<_>>()
                    .into(),
            );
            if let Some(c) = component_params(&sweep.stats[p]) {
                params.insert("components_by_eps".into(), c);
            }
            if let Some(m) = median_params(&sweep.stats[p]) {
                params.insert("median_perturbation".into(), m);
            }
            report::AttackResult {
                name: plan.attack.name().to_string(),
                label: labels[p].clone(),
                norm: plan.attack.norm().to_string(),
                params,
                points: sweep.stats[p]
                    .iter()
                    .map(|s| report::EpsPoint {
                        eps: eps_f64(s.eps),
                        robust_accuracy: s.robust_accuracy(),
                        attack_success_rate: s.success_rate(),
                        mean_perturbation: s.mean_perturbation(),
                        max_perturbation: s.perturbation_max as f64,
                        per_class_robust: s
                            .per_class_n
                            .iter()
                            .zip(&s.per_class_robust)
                            .map(|(&n, &r)| opt_ratio(r, n))
                            .collect(),
                        zero_grad_samples: s.zero_grad,
                        nonfinite_grad_samples: s.nonfinite_grad,
                        n: s.n,
                        traced_samples: s.traced,
                        silent_success_samples: s.silent_success,
                        traced_failed_samples: s.traced_failures,
                        incomplete_samples: s.incomplete,
                    })
                    .collect(),
            }
        })
        .collect()
}

fn examples(sweep: &Sweep, labels: &[String]) -> anyhow::Result<Vec<report::Example>> {
    sweep
        .examples
        .iter()
        .map(|ex| {
            let [c, h, w] = ex.shape;
            let delta: Vec<f32> = ex
                .adv_pixels
                .iter()
                .zip(&ex.clean_pixels)
                .map(|(a, b)| a - b)
                .collect();
            let lo_hi = |v: &[f32]| -> Vec<f32> {
                let lo = v.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
                let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(1.0);
                v.iter().map(|x| (x - lo) / (hi - lo)).collect()
            };
            Ok(report::Example {
                attack: labels[ex.plan].clone(),
                eps: eps_f64(ex.eps),
                index: ex.index,
                true_label: ex.label,
                clean_pred: ex.clean.0,
                clean_conf: ex.clean.1,
                adv_pred: ex.adv.0,
                adv_conf: ex.adv.1,
                clean_png: report::png_base64(
                    w as u32,
                    h as u32,
                    c as u32,
                    &lo_hi(&ex.clean_pixels),
                )?,
                adv_png: report::png_base64(w as u32, h as u32, c as u32, &lo_hi(&ex.adv_pixels))?,
                perturbation_png: report::png_base64(
                    w as u32,
                    h as u32,
                    c as u32,
                    &report::perturbation_to_unit(&delta),
                )?,
            })
        })
        .collect()
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

pub(crate) fn print_table(run: &report::RunResults) {
    println!(
        "clean accuracy: {}  ({} samples)",
        pct(run.clean_accuracy),
        run.dataset.size
    );
    for h in report::headlines(run) {
        println!(
            "robust accuracy: {} at {} eps {}  (worst case over the attacks; {})",
            pct(h.robust_accuracy),
            h.norm,
            h.eps,
            match h.chosen_by {
                "primary" => "the primary eps",
                "gate" => "the gate's eps",
                "only" => "the one eps swept",
                _ => "mid-sweep, --primary-eps chooses",
            }
        );
    }
    let width = run
        .attacks
        .iter()
        .map(|a| a.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(10);
    println!(
        "\n{:<width$}  {:>8}  {:>10}  {:>8}  {:>9}  {:>9}",
        "attack", "eps", "robust acc", "success", "mean pert", "max pert"
    );
    for a in &run.attacks {
        for p in &a.points {
            println!(
                "{:<width$}  {:>8.4}  {:>10}  {:>8}  {:>9.4}  {:>9.4}",
                a.label,
                p.eps,
                pct(p.robust_accuracy),
                pct(p.attack_success_rate),
                p.mean_perturbation,
                p.max_perturbation
            );
        }
        if let Some(line) = report::components_line(&a.params) {
            println!("  {line}");
        }
        if let Some(line) = report::median_perturbation_line(&a.params) {
            println!("  {line}");
        }
    }
    for w in &run.worst_case {
        println!(
            "{:<width$}  {:>8.4}  {:>10}",
            "worst case",
            w.eps,
            pct(w.robust_accuracy)
        );
    }
    let flagged: Vec<&report::Check> = run
        .checks
        .iter()
        .filter(|c| {
            matches!(
                c.status,
                report::CheckStatus::Warn | report::CheckStatus::Fail
            )
        })
        .collect();
    if flagged.is_empty() {
        println!(
            "\nreliability checks: {}",
            report::schema::all_passed_text(&run.checks)
        );
    } else {
        println!("\nreliability checks:");
        for c in flagged {
            println!("  [{}] {}: {}", c.status.as_str(), c.title, c.message);
        }
    }
    if let Some(verdict) = report::backdoor_verdict(run) {
        println!("\nbackdoor scan (Neural Cleanse): {verdict}");
    }
    if let Some(g) = &run.gate {
        println!(
            "\ngate: {}{}",
            if g.passed { "PASSED" } else { "FAILED" },
            g.baseline
                .as_ref()
                .map(|b| format!(" (baseline {b})"))
                .unwrap_or_default()
        );
        for r in &g.rows {
            println!(
                "  {} {:<width$} eps {:<8} {:<28} baseline {:>8} actual {:>8}",
                if r.passed { "ok  " } else { "FAIL" },
                r.attack,
                r.eps,
                report::threshold_text(r),
                r.baseline.map(pct).unwrap_or_else(|| "-".into()),
                r.actual.map(pct).unwrap_or_else(|| "missing".into()),
            );
        }
    }
}

/// Renders every output in memory, writes them all or none (see
/// [`super::write_all_or_nothing`]), and only then appends the run to the history; returns
/// the path of results.json. A failed write is bad input (exit 2) naming the file.
fn write_outputs(
    run: &report::RunResults,
    out: &Path,
    history: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let results_path = out.join(OUTPUT_FILES[0]);
    let problems = run.problems();
    if !problems.is_empty() {
        return Err(report::ReportError::InvalidResults {
            path: results_path,
            problems,
        }
        .into());
    }
    // The chart shows the history as it will be once this run is appended; reading it now
    // refuses a malformed history before anything is written.
    let history_entries = match history {
        Some(h) if h.exists() => {
            let mut entries = report::read_history(h).map_err(bad_input)?;
            entries.push(report::HistoryEntry::from_run(run));
            Some(entries)
        }
        Some(_) => Some(vec![report::HistoryEntry::from_run(run)]),
        None => None,
    };
    let html = report::render_html(
        run,
        &report::HtmlOptions {
            history: history_entries.as_deref(),
            ..Default::default()
        },
    )?;
    let texts = [
        run.to_json_string()?,
        html,
        report::render_markdown(run),
        report::render_junit(run),
    ];
    let files: Vec<(PathBuf, Vec<u8>)> = OUTPUT_FILES
        .iter()
        .zip(texts)
        .map(|(name, text)| (out.join(name), text.into_bytes()))
        .collect();
    let created = super::create_dirs(out)?;
    if let Err(e) = super::write_all_or_nothing(&files) {
        super::remove_created(&created);
        return Err(e);
    }
    if let Some(h) = history {
        report::append_history(h, run).map_err(bad_input)?;
    }
    Ok(results_path)
}

/// Runs `robust eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let plan = plan(args)?;
    refuse_overwriting_inputs(&plan)?;
    let mlflow = args.mlflow.target(plan.config_path.as_deref())?;
    // Check cheap inputs before the model loads.
    let baseline = match &plan.baseline {
        Some(p) => Some((
            p.display().to_string(),
            report::RunResults::read(p).map_err(bad_input)?,
        )),
        None => None,
    };
    let plans = build_plans(&plan.specs, &plan.eps, false)?;

    let signature_verified = match &plan.signature {
        // Any format robust verifies: its JSON, raw openssl bytes, an OpenSSF bundle.
        Some((sig, pubkey)) => match super::signing::verify_for_eval(&plan.model.path, sig, pubkey)
        {
            Ok(_) => Some(true),
            Err((true, why)) => {
                eprintln!("error: refusing to evaluate an unverified model: {why}");
                return Ok(ExitCode::from(1));
            }
            Err((false, why)) => return Err(bad_input(why)),
        },
        None => None,
    };

    let audit = if plan.audit {
        Some(audit_model(&plan.model)?)
    } else {
        None
    };
    let device = select_device(plan.device).map_err(bad_input)?;
    if let Some(note) = &device.fallback_note {
        if !plan.quiet {
            eprintln!("note: --device auto: {note}");
        }
    }
    let model = Model::load(&plan.model, &device.device).map_err(bad_input)?;
    let info = model.info().clone();
    for note in &info.notes {
        eprintln!("note: {}: {note}", info.path.display());
    }
    if !plan.quiet {
        let [lo, hi] = info.bounds;
        if info.mean.is_none() {
            eprintln!(
                "note: {}: no --mean/--std given: the model gets raw pixels in [{lo}, {hi}]; \
                 if it was trained on normalized inputs, pass them",
                info.path.display()
            );
        }
        if let Some(big) = plan.eps.iter().find(|&&e| e > hi - lo) {
            eprintln!(
                "warning: epsilon {big} is larger than the whole input range [{lo}, {hi}] \
                 (for 8/255 write 8/255 or 0.0314)"
            );
        }
    }
    let batch_size = batch_size_for(plan.batch_size, &device, &info, plan.quiet)?;
    let shape = <[usize; 3]>::try_from(info.input_shape.clone()).map_err(|_| {
        bad_input(format!(
            "model {}: input shape {:?} is not [C, H, W]",
            info.path.display(),
            info.input_shape
        ))
    })?;
    check_targets(&plans, &info)?;
    let dataset =
        Dataset::open(&plan.data, shape, info.bounds, plan.limit).map_err(|e| match e {
            // Options concern the model and the settings together: name them all.
            robust_data::DataError::Options { .. } => bad_input(format!(
                "{e} (data {}, model {}{})",
                plan.data.path.display(),
                info.path.display(),
                plan.config_path
                    .as_ref()
                    .map(|c| format!(", settings from {}", c.display()))
                    .unwrap_or_default()
            )),
            e => bad_input(e),
        })?;
    if dataset.is_empty() {
        return Err(bad_input(format!(
            "{}: no samples to evaluate",
            plan.data.path.display()
        )));
    }
    if dataset.info().num_classes > info.num_classes {
        return Err(bad_input(format!(
            "{}: the data set has {} classes but the model has {} outputs",
            plan.data.path.display(),
            dataset.info().num_classes,
            info.num_classes
        )));
    }
    if !plan.quiet {
        eprintln!(
            "robust eval: {} ({}, sha256 {}…) on {} ({} samples), {} [{}], seed {}",
            info.path.display(),
            info.format.name(),
            &info.sha256[..12],
            dataset.info().source,
            dataset.len(),
            device.adapter,
            device.backend.name(),
            plan.seed
        );
    }

    let labels = labels_of(&plans);
    if let Some((path, base)) = &baseline {
        // What can be compared before any attack runs: sample count, attacks and ε.
        let planned = report::RunResults {
            dataset: report::DatasetInfo {
                size: dataset.len(),
                ..Default::default()
            },
            attacks: plans
                .iter()
                .zip(&labels)
                .map(|(p, l)| report::AttackResult {
                    label: l.clone(),
                    points: p
                        .eps
                        .iter()
                        .map(|&e| report::EpsPoint {
                            eps: eps_f64(e),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        refuse_unlike(path, &report::unlike_baseline(base, &planned), None)?;
    }
    let mut state = match &plan.state {
        Some(path) => Some(super::state::StateFile::open(
            path,
            super::state::RunIdentity {
                model_sha256: info.sha256.clone(),
                input_shape: info.input_shape.clone(),
                bounds: info.bounds,
                mean: info.mean.clone(),
                std: info.std.clone(),
                samples: dataset.len(),
                labels_sha256: super::state::labels_sha256(dataset.labels()),
                specs: plan.specs.clone(),
                eps: plan.eps.clone(),
                seed: plan.seed,
                batch_size,
                shard: plan.shard,
                examples: plan.examples,
                device_backend: device.backend.name().into(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
            },
        )?),
        None => None,
    };
    let swept = run_sweep(
        &model,
        &dataset,
        plans,
        &plan,
        batch_size,
        "attacking",
        state.as_mut(),
    )?;
    let samples_sha256 = samples_digest(&swept.digests);
    let sweep = &swept.sweep;
    if sweep.clean.n == 0 {
        return Err(bad_input(format!(
            "{}: no samples were evaluated",
            plan.data.path.display()
        )));
    }

    let class_names = dataset.info().class_names.clone();
    let conversions = dataset.conversions();
    // After the conversions are counted: the probes decode their samples a second time.
    let probes = if plan.no_probes {
        None
    } else {
        Some(probe_indicators(
            &model, &dataset, sweep, &labels, plan.seed, batch_size,
        )?)
    };
    let backdoor = match &plan.backdoor {
        Some(bp) => Some(super::eval_backdoor::scan(
            &model, &device, &dataset, shape, bp, plan.quiet,
        )?),
        None => None,
    };
    for c in &conversions {
        eprintln!(
            "warning: {}: {} of {} samples converted to fit the model ({}): {}",
            plan.data.path.display(),
            c.samples,
            dataset.len(),
            info.path.display(),
            c.what
        );
    }
    let mut run = report::RunResults {
        schema_version: report::SCHEMA_VERSION,
        tool: report::ToolInfo {
            name: "robust".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            burn_version: robust_models::BURN_VERSION.into(),
            git_commit: git_commit(),
        },
        started_at,
        duration_s: 0.0,
        seed: plan.seed,
        device: report::DeviceInfo {
            requested: plan.device.to_string(),
            backend: device.backend.name().into(),
            adapter: device.adapter.clone(),
        },
        model: report::ModelInfo {
            path: info.path.display().to_string(),
            file_name: info
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: info.sha256.clone(),
            format: info.format.name().into(),
            input_shape: info.input_shape.clone(),
            bounds: info.bounds,
            mean: info.mean.clone(),
            std: info.std.clone(),
            num_classes: info.num_classes,
            signature_verified,
        },
        dataset: report::DatasetInfo {
            source: dataset.info().source.clone(),
            format: dataset.info().format.name().into(),
            size: dataset.len(),
            num_classes: info.num_classes,
            class_names: (0..info.num_classes)
                .map(|c| class_names.get(c).cloned().unwrap_or_else(|| c.to_string()))
                .collect(),
            samples_sha256: Some(samples_sha256),
            conversions: conversions
                .iter()
                .map(|c| report::DataConversion {
                    what: c.what.clone(),
                    samples: c.samples,
                })
                .collect(),
        },
        clean_accuracy: 0.0,
        clean_per_class: Vec::new(),
        attacks: Vec::new(),
        worst_case: Vec::new(),
        examples: examples(sweep, &labels)?,
        checks: Vec::new(),
        gate: None,
        primary_eps: plan.primary_eps.map(eps_f64),
        audit,
        probes,
        backdoor,
    };
    sweep_fields(&mut run, sweep, &labels);
    let check_opts = report::CheckOptions::default();
    run.checks = report::reliability_checks(&run, &check_opts);
    if plan.check_convergence {
        let doubled = build_plans(&plan.specs, &plan.eps, true)?;
        if !doubled.is_empty() {
            let dlabels = labels_of(&doubled);
            let dsweep = run_sweep(
                &model,
                &dataset,
                doubled,
                &plan,
                batch_size,
                "convergence check",
                state.as_mut(),
            )?;
            let mut drun = run.clone();
            drun.attacks = attack_results(&dsweep.sweep, &dlabels);
            // Only iterative attacks were rerun; single-step ones have nothing to converge.
            let mut iterative = run.clone();
            iterative
                .attacks
                .retain(|a| a.steps().is_some_and(|s| s > 1));
            run.checks.extend(report::stronger_attack_checks(
                &iterative,
                &drun,
                &check_opts,
            ));
        }
    }
    if let Some(shard) = plan.shard {
        run.duration_s = started.elapsed().as_secs_f64();
        return super::shard::write_partial(
            &run,
            &swept,
            &super::shard::PartialMeta {
                shard,
                batch_size,
                total_samples: dataset.len(),
                labels: dataset.labels(),
                specs: &plan.specs,
                eps: &plan.eps,
                examples: plan.examples,
                thresholds: &plan.thresholds,
                baseline: plan.baseline.as_deref(),
            },
            &plan.out,
        );
    }
    let code = finish(
        run,
        started,
        &Finish {
            out: &plan.out,
            history: plan.history.as_deref(),
            baseline,
            thresholds: &plan.thresholds,
            save_baseline: plan.save_baseline.as_deref(),
            config_path: plan.config_path.as_deref(),
        },
    )?;
    super::mlflow::after_eval(mlflow.as_ref(), &plan.out)?;
    Ok(code)
}

/// Audits the model file (and its architecture file, for safetensors) for `--audit`.
fn audit_model(model: &ModelSpec) -> anyhow::Result<report::ModelAudit> {
    let mut out = report::ModelAudit::default();
    for path in std::iter::once(&model.path).chain(model.arch.as_ref()) {
        let a = robust_integrity::audit_path(path).map_err(bad_input)?;
        for f in &a.files {
            if f.format != "not scanned" {
                out.files_scanned += 1;
            }
            for x in &f.findings {
                out.findings.push(report::AuditFinding {
                    file: f.path.clone(),
                    severity: x.severity.to_string(),
                    kind: x.kind.clone(),
                    location: x.location.clone(),
                    message: x.message.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Sets the fields of `run` that come from the sweep: clean accuracy, the attacks' points
/// and the worst case. `robust merge` calls it on the sweep it rebuilds from shards, so a
/// merged run is computed by the same code as a single one.
pub(crate) fn sweep_fields(run: &mut report::RunResults, sweep: &Sweep, labels: &[String]) {
    run.clean_accuracy = sweep.clean.correct as f64 / sweep.clean.n.max(1) as f64;
    run.clean_per_class = sweep
        .clean
        .per_class_n
        .iter()
        .zip(&sweep.clean.per_class_correct)
        .map(|(&n, &c)| opt_ratio(c, n))
        .collect();
    run.attacks = attack_results(sweep, labels);
    run.worst_case = sweep
        .worst_case()
        .into_iter()
        .map(|(_, eps, acc, members)| report::WorstCasePoint {
            eps: eps_f64(eps),
            robust_accuracy: acc,
            attacks: members.iter().map(|&m| labels[m].clone()).collect(),
        })
        .collect();
}

/// What happens after the numbers are in, for `eval` and `merge` alike.
pub(crate) struct Finish<'a> {
    pub out: &'a Path,
    pub history: Option<&'a Path>,
    pub baseline: Option<(String, report::RunResults)>,
    pub thresholds: &'a report::Thresholds,
    pub save_baseline: Option<&'a Path>,
    pub config_path: Option<&'a Path>,
}

/// The gate (unless the baseline is unlike the run), the outputs, the table, and the new
/// baseline; returns the exit code.
pub(crate) fn finish(
    mut run: report::RunResults,
    started: Instant,
    fin: &Finish<'_>,
) -> anyhow::Result<ExitCode> {
    let baseline = &fin.baseline;
    let unlike = baseline
        .as_ref()
        .map(|(p, b)| (p.clone(), report::unlike_baseline(b, &run)))
        .filter(|(_, why)| !why.is_empty());
    if unlike.is_none() && (!fin.thresholds.min.is_empty() || baseline.is_some()) {
        run.gate = Some(report::evaluate_gate(
            &run,
            baseline.as_ref().map(|(p, r)| (p.as_str(), r)),
            fin.thresholds,
        ));
    }
    run.duration_s = started.elapsed().as_secs_f64();

    let results_path = write_outputs(&run, fin.out, fin.history)?;
    if let Some((path, why)) = &unlike {
        // Only the samples' digest is left to differ here; the results stand on their own.
        refuse_unlike(path, why, Some(&results_path))?;
    }

    print_table(&run);
    println!(
        "\nwrote {} (+ report.html, summary.md, junit.xml) in {:.1} s{}",
        results_path.display(),
        run.duration_s,
        fin.config_path
            .map(|c| format!("; settings from {}", c.display()))
            .unwrap_or_default()
    );
    let passed = run.gate.as_ref().is_none_or(|g| g.passed);
    if let Some(save) = fin.save_baseline {
        if passed {
            let json = run.to_json_string()?;
            report::write_atomic(save, json.as_bytes()).map_err(bad_input)?;
            println!("saved the baseline {}", save.display());
        } else {
            eprintln!(
                "note: --save-baseline {}: not saved, because the gate failed",
                save.display()
            );
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Refuses (exit 2) a baseline that cannot be compared with this run, saying what differs.
fn refuse_unlike(baseline: &str, why: &[String], written: Option<&Path>) -> anyhow::Result<()> {
    if why.is_empty() {
        return Ok(());
    }
    Err(bad_input(format!(
        "--baseline {baseline}: not comparable with this run: {}; run with the baseline's \
         data, --limit, attacks and ε, or save a new baseline with --save-baseline{}",
        why.join("; "),
        written
            .map(|p| format!(" (this run's results are in {}, with no gate)", p.display()))
            .unwrap_or_default()
    )))
}
