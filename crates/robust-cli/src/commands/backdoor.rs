//! `robust backdoor`: is the model itself backdoored (Neural Cleanse), and which inputs carry
//! its trigger (`--screen`, STRIP)? The methods live in `robust_backdoor`; this file turns
//! flags into a plan, loads the model and the clean samples as `eval` does, runs one of the
//! two screens with a progress bar, and writes JSON and HTML (all or nothing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robust_backdoor::{
    planned_steps, render_cleanse_html, render_strip_html, search_triggers, strip_screen, CleanSet,
    CleanseConfig, CleanseReport, PageInfo, PairConfig, Scope, StepEvent, StripConfig, StripReport,
};
use robust_data::{DataSpec, Dataset};
use robust_models::{select_device, ComputeDevice, DeviceChoice, Model};
use serde::Serialize;

use crate::exit::{bad_input, BadInput};
use crate::model_flags::ModelFlags;

/// Flags of `robust backdoor`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  robust backdoor --model models/poisoned-cnn/model.onnx --data datasets/mnist-demo
  robust backdoor --model models/mnist-cnn/model.onnx --mean 0.1307 --std 0.3081 \\
                  --data datasets/mnist-demo --samples 500 --steps 50 --out reports/nc
  robust backdoor --model models/poisoned-cnn/model.onnx --data datasets/mnist-demo \\
                  --screen datasets/mnist-poisoned/images.npy --fpr 0.01

Neural Cleanse (default): for every class, Adam finds the smallest mask and pattern that send
clean samples of the other classes to it; a class whose trigger norm is a low outlier
(median-absolute-deviation anomaly index above --anomaly-threshold) is flagged. Writes
backdoor.json, backdoor.html, backdoor_masks.npy [K,H,W] and backdoor_patterns.npy
[K,C,H,W] to --out.

--screen INPUTS (STRIP): blends every input with --overlays clean samples and flags inputs
whose predictions keep a low entropy; the threshold is set on the clean samples for a
false-positive rate --fpr. Writes strip.json and strip.html to --out.

Exit code 0: nothing flagged; 1: a class (Neural Cleanse) or an input (STRIP) flagged;
2: bad input or any other error. Outputs are written together or not at all.")]
pub struct BackdoorArgs {
    /// The model: file, architecture, shape, bounds, normalization.
    #[command(flatten)]
    pub model: ModelFlags,
    /// Clean, labelled samples of every class (any data set `eval` reads).
    #[arg(long, value_name = "CLEAN")]
    pub data: PathBuf,
    /// Labels file for .npy or IDX clean data.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Screen these inputs with STRIP instead of searching triggers (.npy, folder, CSV, IDX;
    /// labels are not needed).
    #[arg(long, value_name = "INPUTS")]
    pub screen: Option<PathBuf>,
    /// Clean samples to use, drawn at random (seeded) when the data set has more.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub samples: usize,

    /// Neural Cleanse: which samples a trigger must move. per-source: per (source, target)
    /// pair, the source's samples only, and per target the smallest trigger over sources
    /// (finds backdoors planted on one source class); all-sources: the paper's main method,
    /// one trigger per target for the samples of every other class.
    #[arg(long, default_value = "all-sources", value_parser = ["all-sources", "per-source"],
          help_heading = "Neural Cleanse")]
    pub scope: String,
    /// Neural Cleanse: most optimisation steps per class, or per finalist pair with
    /// --scope per-source (a step is one pass over the samples to move, or
    /// --batches-per-step mini-batches).
    #[arg(long, default_value_t = 100, help_heading = "Neural Cleanse")]
    pub steps: usize,
    /// Neural Cleanse, per-source: steps every (source, target) pair gets in the screen.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "N",
        help_heading = "Neural Cleanse"
    )]
    pub pair_screen_steps: usize,
    /// Neural Cleanse, per-source: sources per target (smallest screened triggers) that get
    /// the full --steps; at K-1 every pair does and there is no screen.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        help_heading = "Neural Cleanse"
    )]
    pub pair_finalists: usize,
    /// Neural Cleanse: mini-batches per step [default: one pass].
    #[arg(long, value_name = "N", help_heading = "Neural Cleanse")]
    pub batches_per_step: Option<usize>,
    /// Samples per mini-batch (Neural Cleanse), blended images per forward pass (STRIP)
    /// [default: 32; STRIP 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Neural Cleanse: Adam's learning rate on the mask and pattern logits.
    #[arg(long, default_value_t = 0.1, help_heading = "Neural Cleanse")]
    pub lr: f64,
    /// Neural Cleanse: the first weight λ of the mask's L1 norm.
    #[arg(long, default_value_t = 1e-3, help_heading = "Neural Cleanse")]
    pub init_cost: f64,
    /// Neural Cleanse: λ's multiplier up (down: its power 1.5).
    #[arg(long, default_value_t = 1.5, help_heading = "Neural Cleanse")]
    pub cost_multiplier: f64,
    /// Neural Cleanse: steps of success (or failure) in a row before λ changes.
    #[arg(long, default_value_t = 5, help_heading = "Neural Cleanse")]
    pub patience: usize,
    /// Neural Cleanse: attack success rate a trigger must reach.
    #[arg(long, default_value_t = 0.99, help_heading = "Neural Cleanse")]
    pub success_threshold: f64,
    /// Neural Cleanse: steps without a 1% better norm before a class stops early.
    #[arg(long, default_value_t = 10, help_heading = "Neural Cleanse")]
    pub early_stop_patience: usize,
    /// Neural Cleanse: run every class for all --steps.
    #[arg(long, help_heading = "Neural Cleanse")]
    pub no_early_stop: bool,
    /// Neural Cleanse: flag a class whose norm is below the median with an anomaly index
    /// above this.
    #[arg(long, default_value_t = 2.0, help_heading = "Neural Cleanse")]
    pub anomaly_threshold: f64,

    /// STRIP: clean images blended with each input.
    #[arg(long, default_value_t = 100, help_heading = "STRIP")]
    pub overlays: usize,
    /// STRIP: false-positive rate on the clean samples that sets the threshold.
    #[arg(long, default_value_t = 0.01, help_heading = "STRIP")]
    pub fpr: f64,

    /// Device: auto (a hardware GPU if present, else the CPU), cpu or wgpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed of every random choice (samples, initial triggers, batch order, overlays).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `robust backdoor`. Every error exits 2 (1 means "flagged").
pub fn run(args: &BackdoorArgs) -> anyhow::Result<ExitCode> {
    execute(args).map_err(|e| {
        if e.downcast_ref::<BadInput>().is_some() {
            e
        } else {
            bad_input(crate::one_line(&e))
        }
    })
}

/// The output files of a mode, in the order they are written.
fn output_names(screen: bool) -> &'static [&'static str] {
    if screen {
        &["strip.json", "strip.html"]
    } else {
        &[
            "backdoor.json",
            "backdoor.html",
            "backdoor_masks.npy",
            "backdoor_patterns.npy",
        ]
    }
}

fn check_flags(args: &BackdoorArgs) -> anyhow::Result<()> {
    args.model.validate()?;
    if args.samples == 0 {
        return Err(bad_input("--samples must be at least 1"));
    }
    if args.batch_size == Some(0) {
        return Err(bad_input("--batch-size must be at least 1"));
    }
    if !(args.anomaly_threshold.is_finite() && args.anomaly_threshold > 0.0) {
        return Err(bad_input("--anomaly-threshold must be a positive number"));
    }
    if args.out.exists() && !args.out.is_dir() {
        return Err(bad_input(format!(
            "--out {}: exists and is not a folder",
            args.out.display()
        )));
    }
    let mut inputs: Vec<&Path> = vec![&args.data];
    inputs.extend(args.labels.as_deref());
    inputs.extend(args.screen.as_deref());
    inputs.extend(args.model.model.as_deref());
    inputs.extend(args.model.arch.as_deref());
    let inputs = super::with_folder_files(&inputs);
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let outputs: Vec<PathBuf> = output_names(args.screen.is_some())
        .iter()
        .map(|f| args.out.join(f))
        .collect();
    let outputs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    super::refuse_overlap(&inputs, &outputs)
}

fn cleanse_config(args: &BackdoorArgs) -> anyhow::Result<CleanseConfig> {
    let cfg = CleanseConfig {
        steps: args.steps,
        batch_size: args.batch_size.unwrap_or(32),
        measure_batch_size: 256,
        batches_per_step: args.batches_per_step,
        learning_rate: args.lr,
        init_cost: args.init_cost,
        cost_multiplier: args.cost_multiplier,
        patience: args.patience,
        success_threshold: args.success_threshold,
        early_stop: !args.no_early_stop,
        early_stop_threshold: 0.99,
        early_stop_patience: args.early_stop_patience,
        seed: args.seed,
    };
    cfg.validate()
        .map_err(|e| bad_input(format!("Neural Cleanse settings: {e}")))?;
    Ok(cfg)
}

/// The pair budget of `--scope per-source`, `None` for `all-sources`.
fn pair_config(args: &BackdoorArgs) -> anyhow::Result<Option<PairConfig>> {
    if args.scope != Scope::PerSource.name() {
        return Ok(None);
    }
    let cfg = PairConfig {
        screen_steps: args.pair_screen_steps,
        finalists: args.pair_finalists,
    };
    cfg.validate()
        .map_err(|e| bad_input(format!("Neural Cleanse settings: {e}")))?;
    Ok(Some(cfg))
}

fn strip_config(args: &BackdoorArgs) -> anyhow::Result<StripConfig> {
    let cfg = StripConfig {
        overlays: args.overlays,
        fpr: args.fpr,
        batch_size: args.batch_size.unwrap_or(256),
        seed: args.seed,
    };
    cfg.validate()
        .map_err(|e| bad_input(format!("STRIP settings: {e}")))?;
    Ok(cfg)
}

/// The model, loaded on the chosen device.
fn load_model(args: &BackdoorArgs) -> anyhow::Result<(Model, ComputeDevice, [usize; 3])> {
    let spec = args
        .model
        .spec()
        .ok_or_else(|| bad_input("backdoor needs --model FILE"))?;
    let choice: DeviceChoice = args.device.parse().map_err(bad_input)?;
    let device = select_device(choice).map_err(bad_input)?;
    if let Some(note) = &device.fallback_note {
        eprintln!("warning: --device auto: {note}");
    }
    let model = Model::load(&spec, &device.device).map_err(bad_input)?;
    for note in &model.info().notes {
        eprintln!("note: {}: {note}", model.info().path.display());
    }
    let shape = <[usize; 3]>::try_from(model.info().input_shape.clone()).map_err(|_| {
        bad_input(format!(
            "model {}: input shape {:?} is not [C, H, W]",
            model.info().path.display(),
            model.info().input_shape
        ))
    })?;
    Ok((model, device, shape))
}

/// Up to `n` indices of `0..len`, drawn without replacement from `seed`, in order.
fn draw(len: usize, n: usize, seed: u64) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A3D_1E5C_0BAD_D00D);
    let mut all: Vec<usize> = (0..len).collect();
    for d in 0..n {
        let j = rng.random_range(d..len);
        all.swap(d, j);
    }
    let mut out = all[..n].to_vec();
    out.sort_unstable();
    out
}

/// The clean samples (a seeded subset of `--samples`), their class names and source.
fn load_clean(
    args: &BackdoorArgs,
    model: &Model,
    shape: [usize; 3],
) -> anyhow::Result<(CleanSet, Vec<String>, String)> {
    let mut spec = DataSpec::new(&args.data);
    spec.labels = args.labels.clone();
    let info = model.info();
    let dataset = Dataset::open(&spec, shape, info.bounds, None).map_err(bad_input)?;
    let set = clean_subset(
        &dataset,
        shape,
        args.samples,
        args.seed,
        info.num_classes,
        &args.data,
    )?;
    Ok((
        set,
        dataset.info().class_names.clone(),
        dataset.info().source.clone(),
    ))
}

/// Up to `n` samples of `dataset` (images of `shape`, the model's), drawn without
/// replacement from `seed` ([`draw`]), in index order; `path` names the data in errors.
/// `robust eval --backdoor` draws its samples here too, so that both commands search on
/// the same samples given the same data, `n` and seed.
pub(crate) fn clean_subset(
    dataset: &Dataset,
    shape: [usize; 3],
    n: usize,
    seed: u64,
    num_classes: usize,
    path: &Path,
) -> anyhow::Result<CleanSet> {
    if dataset.is_empty() {
        return Err(bad_input(format!("{}: no clean samples", path.display())));
    }
    if let Some(&bad) = dataset.labels().iter().find(|&&y| y >= num_classes) {
        return Err(bad_input(format!(
            "{}: label {bad} is out of range for a model with {num_classes} outputs",
            path.display()
        )));
    }
    let chosen = draw(dataset.len(), n, seed);
    let per: usize = shape.iter().product();
    let mut pixels = Vec::with_capacity(chosen.len() * per);
    let mut labels = Vec::with_capacity(chosen.len());
    // Runs of consecutive indices are read as one batch.
    let mut k = 0;
    while k < chosen.len() {
        let mut end = k + 1;
        while end < chosen.len() && chosen[end] == chosen[end - 1] + 1 && end - k < 256 {
            end += 1;
        }
        let b = dataset.batch(chosen[k], end - k).map_err(bad_input)?;
        pixels.extend(b.pixels);
        labels.extend(b.labels);
        k = end;
    }
    CleanSet::new(shape, pixels, labels).map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

/// The inputs to screen, all of them.
fn load_screen(path: &Path, model: &Model, shape: [usize; 3]) -> anyhow::Result<Vec<f32>> {
    let mut spec = DataSpec::new(path);
    spec.unlabelled = true;
    let dataset = Dataset::open(&spec, shape, model.info().bounds, None).map_err(bad_input)?;
    if dataset.is_empty() {
        return Err(bad_input(format!(
            "{}: no inputs to screen",
            path.display()
        )));
    }
    let mut pixels = Vec::with_capacity(dataset.len() * shape.iter().product::<usize>());
    for b in dataset.batches(256) {
        pixels.extend(b.map_err(bad_input)?.pixels);
    }
    if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
        return Err(bad_input(format!(
            "{}: input {} has a non-finite value",
            path.display(),
            i / shape.iter().product::<usize>()
        )));
    }
    Ok(pixels)
}

/// A progress bar with `template`, hidden when `quiet`.
pub(crate) fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

fn execute(args: &BackdoorArgs) -> anyhow::Result<ExitCode> {
    check_flags(args)?;
    let screen = args.screen.is_some();
    let (cleanse_cfg, strip_cfg) = if screen {
        (None, Some(strip_config(args)?))
    } else {
        (Some((cleanse_config(args)?, pair_config(args)?)), None)
    };
    let (model, device, shape) = load_model(args)?;
    // On wgpu no batch may need a buffer larger than the device allows (as in eval).
    let cap = |default| {
        super::eval::capped_batch_size(args.batch_size, default, &device, model.info(), args.quiet)
    };
    let cleanse_cfg = match cleanse_cfg {
        Some((mut cfg, pairs)) => {
            cfg.batch_size = cap(cfg.batch_size)?;
            cfg.measure_batch_size = super::eval::capped_batch_size(
                None,
                cfg.measure_batch_size,
                &device,
                model.info(),
                true,
            )?;
            Some((cfg, pairs))
        }
        None => None,
    };
    let strip_cfg = match strip_cfg {
        Some(mut cfg) => {
            cfg.batch_size = cap(cfg.batch_size)?;
            Some(cfg)
        }
        None => None,
    };
    let (clean, class_names, source) = load_clean(args, &model, shape)?;
    let info = model.info();
    if !args.quiet {
        eprintln!(
            "robust backdoor: {} (sha256 {}…) with {} clean samples of {}, {} [{}], seed {}",
            info.path.display(),
            &info.sha256[..12.min(info.sha256.len())],
            clean.len(),
            source,
            device.adapter,
            device.backend.name(),
            args.seed
        );
    }
    let page = PageInfo {
        model: info.path.display().to_string(),
        sha256: info.sha256.clone(),
        data: format!("{source} ({} samples used)", clean.len()),
        device: format!("{} [{}]", device.adapter, device.backend.name()),
        seed: args.seed,
        seconds: 0.0,
        class_names,
        bounds: info.bounds,
        shape,
        rows: Vec::new(),
        generator: format!("robust {}", env!("CARGO_PKG_VERSION")),
    };
    match (cleanse_cfg, strip_cfg, &args.screen) {
        (Some((cfg, pairs)), _, _) => run_cleanse(args, &model, &clean, &cfg, pairs.as_ref(), page),
        (_, Some(cfg), Some(path)) => {
            let inputs = load_screen(path, &model, shape)?;
            run_strip(args, &model, &clean, &inputs, &cfg, page)
        }
        _ => unreachable!("one mode is chosen"),
    }
}

/// One class's row of `backdoor.json`.
#[derive(Serialize)]
struct ClassRow {
    class: usize,
    name: String,
    /// The source of the class's smallest pair trigger (per-source scope only).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<usize>,
    norm: f64,
    anomaly_index: f64,
    below_median: bool,
    flagged: bool,
    reached_threshold: bool,
    attack_success: f64,
    attack_samples: usize,
    steps: usize,
    final_cost: f64,
}

/// One fully optimised pair of `backdoor.json` (per-source scope).
#[derive(Serialize)]
struct PairRow {
    source: usize,
    target: usize,
    norm: f64,
    reached_threshold: bool,
    attack_success: f64,
    attack_samples: usize,
    steps: usize,
}

#[derive(Serialize)]
struct CleanseJson<'a> {
    tool: String,
    method: &'static str,
    scope: &'static str,
    model: String,
    model_sha256: String,
    data: String,
    samples: usize,
    device: String,
    seed: u64,
    duration_s: f64,
    config: &'a CleanseConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pair_budget: Option<&'a PairConfig>,
    anomaly_threshold: f64,
    median_norm: f64,
    mad: f64,
    classes: Vec<ClassRow>,
    flagged: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    flagged_pairs: Option<Vec<(usize, usize)>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pairs: Vec<PairRow>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pair_screen: &'a [robust_backdoor::PairScreen],
}

/// The template of a trigger search's progress bar.
pub(crate) const TRIGGER_BAR: &str = "{msg} [{bar:30}] {pos}/{len} (trigger steps) {elapsed}<{eta}";

fn run_cleanse(
    args: &BackdoorArgs,
    model: &Model,
    clean: &CleanSet,
    cfg: &CleanseConfig,
    pairs: Option<&PairConfig>,
    mut page: PageInfo,
) -> anyhow::Result<ExitCode> {
    let k = model.info().num_classes;
    let pb = bar(planned_steps(k, cfg, pairs) as u64, args.quiet, TRIGGER_BAR);
    let started = Instant::now();
    let mut on_step = |e: StepEvent| show_step(&pb, e);
    let report = search_triggers(
        model,
        clean,
        cfg,
        pairs,
        args.anomaly_threshold,
        &mut on_step,
    )
    .map_err(|e| bad_input(format!("{}: {e}", model.info().path.display())))?;
    pb.finish_and_clear();
    page.seconds = started.elapsed().as_secs_f64();
    page.rows = settings_rows(&report);
    let html = render_cleanse_html(&report, &page).map_err(bad_input)?;
    let json = cleanse_json(&report, clean, &page);
    let [c, h, w] = clean.shape;
    let masks: Vec<f32> = report
        .triggers
        .iter()
        .flat_map(|t| t.mask.clone())
        .collect();
    let patterns: Vec<f32> = report
        .triggers
        .iter()
        .flat_map(|t| t.pattern.clone())
        .collect();
    let files = vec![
        (args.out.join("backdoor.json"), json.into_bytes()),
        (args.out.join("backdoor.html"), html.into_bytes()),
        (
            args.out.join("backdoor_masks.npy"),
            npy_f32(&[k as u64, h as u64, w as u64], &masks)?,
        ),
        (
            args.out.join("backdoor_patterns.npy"),
            npy_f32(&[k as u64, c as u64, h as u64, w as u64], &patterns)?,
        ),
    ];
    write_outputs(&args.out, &files)?;
    print!("{}", cleanse_table(&report, &page));
    println!("wrote {}", args.out.join("backdoor.html").display());
    Ok(if report.flagged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The progress bar of a trigger search (see [`TRIGGER_BAR`]) after step `e`.
pub(crate) fn show_step(pb: &ProgressBar, e: StepEvent) {
    let what = match e.source {
        Some(s) => format!("pair {s} → {}", e.class),
        None => format!("class {}", e.class),
    };
    pb.set_message(format!(
        "{what}: step {}, success {:.0}%, norm {:.1}, λ {:.1e}",
        e.step,
        100.0 * e.success,
        e.norm,
        e.cost
    ));
    pb.inc(if e.last {
        (e.budget - e.step + 1) as u64
    } else {
        1
    });
}

/// The settings rows of the HTML page.
pub(crate) fn settings_rows(report: &CleanseReport) -> Vec<(String, String)> {
    let cfg = &report.config;
    let mut rows = vec![(
        "settings".into(),
        format!(
            "{} steps at most, batch {}, Adam lr {}, λ₀ {}, ×{} / patience {}, success ≥ {}, early stop {}",
            cfg.steps,
            cfg.batch_size,
            cfg.learning_rate,
            cfg.init_cost,
            cfg.cost_multiplier,
            cfg.patience,
            cfg.success_threshold,
            if cfg.early_stop { "on" } else { "off" }
        ),
    )];
    rows.push((
        "scope".into(),
        match &report.pairs {
            Some(p) => format!(
                "per source: every (source, target) pair screened for {} steps, the {} smallest \
                 sources per target optimised for {} steps; per target the smallest trigger",
                p.screen_steps, p.finalists, cfg.steps
            ),
            None => {
                "all sources: one trigger per target for the samples of every other class".into()
            }
        },
    ));
    rows
}

fn cleanse_json(report: &CleanseReport, clean: &CleanSet, page: &PageInfo) -> String {
    let classes = report
        .triggers
        .iter()
        .map(|t| ClassRow {
            class: t.class,
            name: page
                .class_names
                .get(t.class)
                .cloned()
                .unwrap_or_else(|| t.class.to_string()),
            source: t.source,
            norm: t.norm,
            anomaly_index: report.anomaly.index[t.class],
            below_median: t.norm < report.anomaly.median,
            flagged: report.flagged.contains(&t.class),
            reached_threshold: t.reached,
            attack_success: t.attack_success,
            attack_samples: t.attack_samples,
            steps: t.steps,
            final_cost: t.final_cost,
        })
        .collect();
    let pairs = report
        .finals
        .iter()
        .map(|t| PairRow {
            source: t.source.unwrap_or(t.class),
            target: t.class,
            norm: t.norm,
            reached_threshold: t.reached,
            attack_success: t.attack_success,
            attack_samples: t.attack_samples,
            steps: t.steps,
        })
        .collect();
    let doc = CleanseJson {
        tool: page.generator.clone(),
        method: "neural-cleanse",
        scope: report.scope.name(),
        model: page.model.clone(),
        model_sha256: page.sha256.clone(),
        data: page.data.clone(),
        samples: clean.len(),
        device: page.device.clone(),
        seed: page.seed,
        duration_s: page.seconds,
        config: &report.config,
        pair_budget: report.pairs.as_ref(),
        anomaly_threshold: report.threshold,
        median_norm: report.anomaly.median,
        mad: report.anomaly.mad,
        classes,
        flagged: &report.flagged,
        flagged_pairs: (report.scope == Scope::PerSource).then(|| report.flagged_pairs()),
        pairs,
        pair_screen: &report.screen,
    };
    // An infinite anomaly index (MAD 0) is written as null by serde_json.
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn cleanse_table(report: &CleanseReport, page: &PageInfo) -> String {
    let per_source = report.scope == Scope::PerSource;
    let mut out = format!(
        "\n{:>5}  {:>6}  {:>10}  {:>13}  {:>9}  {:>5}  {:>9}  verdict\n",
        "class",
        if per_source { "source" } else { "" },
        "mask L1",
        "anomaly index",
        "success",
        "steps",
        "final λ"
    );
    for t in &report.triggers {
        let idx = report.anomaly.index[t.class];
        let verdict = if report.flagged.contains(&t.class) {
            "FLAGGED (backdoor target?)"
        } else if !t.reached {
            "threshold not reached"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>5}  {:>6}  {:>10.2}  {:>13}  {:>8.2}%  {:>5}  {:>9.2e}  {verdict}\n",
            t.class,
            t.source.map(|s| s.to_string()).unwrap_or_default(),
            t.norm,
            format!(
                "{}{:.2}",
                if t.norm < report.anomaly.median {
                    "-"
                } else {
                    "+"
                },
                idx
            ),
            100.0 * t.attack_success,
            t.steps,
            t.final_cost
        ));
    }
    let verdict = if report.flagged.is_empty() {
        "no class flagged".to_string()
    } else if per_source {
        let pairs: Vec<String> = report
            .flagged_pairs()
            .iter()
            .map(|(s, t)| format!("{s} → {t}"))
            .collect();
        format!(
            "flagged: class {:?} (source → target: {})",
            report.flagged,
            pairs.join(", ")
        )
    } else {
        format!("flagged: class {:?}", report.flagged)
    };
    out.push_str(&format!(
        "{} scope; median norm {:.2}, MAD {:.2}; {verdict} in {:.1} s\n",
        report.scope.name(),
        report.anomaly.median,
        report.anomaly.mad,
        page.seconds
    ));
    out
}

#[derive(Serialize)]
struct StripJson<'a> {
    tool: String,
    method: &'static str,
    model: String,
    model_sha256: String,
    clean_data: String,
    screened: String,
    device: String,
    seed: u64,
    duration_s: f64,
    #[serde(flatten)]
    report: &'a StripReport,
}

fn run_strip(
    args: &BackdoorArgs,
    model: &Model,
    clean: &CleanSet,
    inputs: &[f32],
    cfg: &StripConfig,
    mut page: PageInfo,
) -> anyhow::Result<ExitCode> {
    let n = inputs.len() / clean.sample_len();
    let pb = bar(
        (clean.len() + n) as u64,
        args.quiet,
        "STRIP [{bar:30}] {pos}/{len} (clean + screened inputs) {elapsed}<{eta}",
    );
    let started = Instant::now();
    let report = strip_screen(model, clean, inputs, cfg, &mut || pb.inc(1))
        .map_err(|e| bad_input(format!("{}: {e}", model.info().path.display())))?;
    pb.finish_and_clear();
    page.seconds = started.elapsed().as_secs_f64();
    let screened = args.screen.as_deref().unwrap_or(Path::new(""));
    page.rows = vec![
        (
            "screened inputs".into(),
            format!("{} ({n})", screened.display()),
        ),
        (
            "settings".into(),
            format!(
                "{} overlays per input, false-positive rate {}, blend: clipped sum",
                cfg.overlays, cfg.fpr
            ),
        ),
    ];
    let html = render_strip_html(&report, inputs, &page).map_err(bad_input)?;
    let doc = StripJson {
        tool: page.generator.clone(),
        method: "strip",
        model: page.model.clone(),
        model_sha256: page.sha256.clone(),
        clean_data: page.data.clone(),
        screened: format!("{}", screened.display()),
        device: page.device.clone(),
        seed: page.seed,
        duration_s: page.seconds,
        report: &report,
    };
    let mut json = serde_json::to_string_pretty(&doc)?;
    json.push('\n');
    let files = vec![
        (args.out.join("strip.json"), json.into_bytes()),
        (args.out.join("strip.html"), html.into_bytes()),
    ];
    write_outputs(&args.out, &files)?;
    println!(
        "STRIP: {} of {n} inputs flagged (entropy below {:.4} bits; {} of {} clean samples \
         below it, target false-positive rate {}) in {:.1} s",
        report.flagged.len(),
        report.threshold,
        report.clean_flagged,
        report.clean_samples,
        cfg.fpr,
        page.seconds
    );
    println!("wrote {}", args.out.join("strip.html").display());
    Ok(if report.flagged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_outputs(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    let created = super::create_dirs(dir)?;
    if let Err(e) = super::write_all_or_nothing(files) {
        super::remove_created(&created);
        return Err(e);
    }
    Ok(())
}

/// A float32 `.npy` file in memory.
fn npy_f32(shape: &[u64], data: &[f32]) -> anyhow::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_are_distinct_sorted_and_seeded() {
        let a = super::draw(1000, 50, 7);
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, super::draw(1000, 50, 7));
        assert_ne!(a, super::draw(1000, 50, 8));
        assert_eq!(super::draw(5, 50, 7), vec![0, 1, 2, 3, 4]);
    }
}
