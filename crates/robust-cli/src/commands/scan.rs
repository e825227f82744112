//! `robust scan --data TRAIN [--model M]`: screens a training set for anomalous and
//! poisoned samples, and reports; it does not gate unless asked to.
//!
//! One pass over the data set keeps the pixels and, with a model, its logits and
//! penultimate features; then the screens of `robust_monitor::scan` run on them:
//! per-feature summary statistics (`describe`), exact and near-duplicate images, labels
//! that contradict the model's confident prediction, and the spectral-signature backdoor
//! screen per class. The result is printed as a compact table and, on request, written as
//! JSON (everything, including the per-pixel statistics) and as a self-contained HTML
//! section with thumbnails of the flagged images. Output files are rendered in memory and
//! written atomically, so a failed run leaves none behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use robust_monitor::{
    describe, find_duplicates, label_disagreements, spectral_signatures_with, DuplicateOptions,
    DuplicateReport, FeatureSummary, FeatureTable, ImageGeometry, LabelDisagreement, Layout,
    SpectralCut, SpectralReport,
};
use robust_report::render::junit::escape_xml as escape;
use serde::Serialize;

use super::integrity::inputs::{
    extract, native_shape, open_dataset, value_name, FeatureSpace, ModelArgs,
};
use crate::exit::bad_input;

/// Rows of each list printed on the terminal (the JSON holds all).
const PRINT_LIMIT: usize = 10;
/// Thumbnails per list in the HTML section.
const HTML_IMAGES: usize = 24;

/// `--fraction`: the assumed poisoned fraction of the spectral screen, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fraction {
    /// Flag `⌊1.5 · ε · n_c⌋` samples of every class.
    Fixed(f64),
    /// Flag the samples outside Tukey's fences (`--fence`) of each class's projections.
    Auto,
}

fn parse_fraction(s: &str) -> std::result::Result<Fraction, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Fraction::Auto);
    }
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is neither a number nor auto"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(Fraction::Fixed(v))
    } else {
        Err(format!("{v} must lie in (0, 1]"))
    }
}

/// Screen a training set: summary statistics, duplicates and, with a model, label
/// disagreements and a spectral-signature backdoor screen.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
      robust scan --data datasets/mnist-demo
      robust scan --data datasets/mnist-poisoned --model models/poisoned-cnn/model.onnx \\
          --fraction 0.1 --json scan.json --html scan.html
      robust scan --data train/ --model net.onnx --mean 0.485,0.456,0.406 \\
          --std 0.229,0.224,0.225 --fraction auto --fail-on-findings   # a CI gate

    Screens:
      describe     per-pixel count/mean/std/min/quartiles/max (pandas describe()); the
                   terminal shows an aggregate, --json holds every feature
      duplicates   exact copies, and near-duplicates: perceptual average hash within
                   --max-hamming bits, confirmed by relative L1 distance <= --max-distance
      labels       (with --model) samples whose label differs from a prediction made with
                   probability >= --confidence: mislabelled or poisoned
      spectral     (with --model) per class, the top singular direction of the centred
                   penultimate features (Tran et al. 2018); flags the 1.5 * F * n_c
                   highest-scoring samples of each class for --fraction F, or with
                   --fraction auto only the samples whose projection on that direction
                   lies outside the class's fences [Q1 - K IQR, Q3 + K IQR] (--fence K,
                   default 3): nothing in a class without outliers, and the separated
                   cluster a backdoor makes. A fixed fraction always flags samples, so
                   gate on the screen with --fraction auto

    Data: an image folder, a CSV of path,label, an images .npy with labels.npy beside it
    (or --labels), MNIST IDX. Without --model the image size comes from the .npy/IDX
    header, else --input-shape C,H,W. The whole set is held in memory.
    Exit code 0: scanned (findings are reported, not failed on); 1: with
    --fail-on-findings, something was flagged; 2: bad input.")]
pub struct ScanArgs {
    /// Training data set.
    #[arg(long, value_name = "TRAIN")]
    pub data: PathBuf,
    /// Labels file for .npy or IDX data (default: beside the images).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Scan only the first N samples.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Assumed poisoned fraction ε of the spectral screen, in (0, 1], or `auto`.
    #[arg(long, value_name = "F|auto", default_value = "0.05", value_parser = parse_fraction)]
    pub fraction: Fraction,
    /// Tukey fence multiplier K of `--fraction auto` (3: "far out", 1.5: "outside").
    #[arg(long, value_name = "K", default_value_t = 3.0)]
    pub fence: f64,
    /// Smallest model probability for a label disagreement, in [0, 1].
    #[arg(long, value_name = "P", default_value_t = 0.9)]
    pub confidence: f32,
    /// Most differing average-hash bits of a near-duplicate candidate (0..=63).
    #[arg(long, value_name = "BITS", default_value_t = 4)]
    pub max_hamming: u32,
    /// Largest relative L1 distance of a near-duplicate pair, in [0, 1].
    #[arg(long, value_name = "D", default_value_t = 0.05)]
    pub max_distance: f64,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page (one `<section>`) to this file.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Exit 1 when any screen flags a sample (duplicates, label disagreements, spectral).
    #[arg(long)]
    pub fail_on_findings: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub mlflow: super::mlflow::MlflowArgs,
}

/// Aggregate of the per-feature statistics, for the terminal.
#[derive(Debug, Clone, Serialize)]
pub struct DescribeAggregate {
    /// Features (pixels × channels).
    pub features: usize,
    /// Smallest value of any feature.
    pub min: Option<f64>,
    /// Largest value of any feature.
    pub max: Option<f64>,
    /// Mean over all values.
    pub mean: Option<f64>,
    /// Mean of the per-feature standard deviations.
    pub mean_std: Option<f64>,
    /// Features with one value throughout (e.g. an always-black border pixel).
    pub constant_features: usize,
}

/// The spectral screen as reported.
#[derive(Debug, Clone, Serialize)]
pub struct SpectralSection {
    /// `"fraction 0.05"` or `"auto, fence 3"`.
    pub mode: String,
    /// The model value used as features.
    pub layer: String,
    /// Feature width.
    pub dim: usize,
    /// The library's report (cut, scores, flagged indices, per-class details).
    #[serde(flatten)]
    pub report: SpectralReport,
}

/// Everything `robust scan` found.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The data set.
    pub data: DataSection,
    /// The model, if one was given.
    pub model: Option<ModelSection>,
    /// Aggregate of `describe`.
    pub summary: DescribeAggregate,
    /// `describe()` of every feature.
    pub describe: Vec<FeatureSummary>,
    /// Duplicate settings and groups.
    pub duplicates: DuplicateSection,
    /// Label disagreements (with a model).
    pub label_disagreements: Option<LabelSection>,
    /// Spectral signatures (with a model).
    pub spectral_signatures: Option<SpectralSection>,
    /// Samples flagged by any screen (duplicates count every member but the first of a group).
    pub flagged_samples: usize,
}

/// The data set scanned.
#[derive(Debug, Clone, Serialize)]
pub struct DataSection {
    /// Its path.
    pub source: String,
    /// Its format.
    pub format: String,
    /// Samples scanned.
    pub samples: usize,
    /// `[C, H, W]` of the images as scanned.
    pub shape: [usize; 3],
    /// Samples per label.
    pub class_counts: BTreeMap<usize, usize>,
}

/// The model used.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSection {
    /// Its file.
    pub path: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// Duplicate groups.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateSection {
    /// Most differing hash bits of a candidate.
    pub max_hamming: u32,
    /// Largest relative L1 distance.
    pub max_distance: f64,
    /// Groups found.
    #[serde(flatten)]
    pub groups: DuplicateReport,
}

/// Label disagreements.
#[derive(Debug, Clone, Serialize)]
pub struct LabelSection {
    /// The confidence threshold.
    pub confidence: f32,
    /// The samples, in index order.
    pub samples: Vec<LabelDisagreement>,
}

/// Refuses (exit 2) a `--json` or `--html` that is one of the inputs (the data, a file of
/// the data folder, the labels, the model), or two outputs that are one file.
fn refuse_overwriting_inputs(args: &ScanArgs) -> Result<()> {
    let mut inputs: Vec<&Path> = vec![&args.data];
    inputs.extend(args.labels.as_deref());
    inputs.extend(args.model.spec.model.as_deref());
    inputs.extend(args.model.spec.arch.as_deref());
    let inputs = super::with_folder_files(&inputs);
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let outputs: Vec<&Path> = args
        .json
        .iter()
        .chain(&args.html)
        .map(PathBuf::as_path)
        .collect();
    super::refuse_overlap(&inputs, &outputs)
}

/// Runs `robust scan`.
pub fn run(args: &ScanArgs) -> Result<ExitCode> {
    args.model.validate()?;
    let mlflow = args.mlflow.target(Some(super::mlflow::default_config()))?;
    if !(0.0..=1.0).contains(&args.confidence) {
        return Err(bad_input(format!(
            "--confidence {} must lie in [0, 1]",
            args.confidence
        )));
    }
    if args.max_hamming > 63 {
        return Err(bad_input(format!(
            "--max-hamming {} must be at most 63",
            args.max_hamming
        )));
    }
    if !(args.fence.is_finite() && args.fence > 0.0) {
        return Err(bad_input(format!(
            "--fence {} must be a positive number",
            args.fence
        )));
    }
    if !(0.0..=1.0).contains(&args.max_distance) {
        return Err(bad_input(format!(
            "--max-distance {} must lie in [0, 1]",
            args.max_distance
        )));
    }
    if !args.data.exists() {
        return Err(bad_input(format!(
            "data set not found: {}",
            args.data.display()
        )));
    }
    refuse_overwriting_inputs(args)?;
    let model = args.model.load()?;
    let shape = match &model {
        Some(m) => <[usize; 3]>::try_from(m.info().input_shape.clone())
            .map_err(|_| bad_input("model input shape is not [C, H, W]"))?,
        None => native_shape(&args.data, args.model.spec.input_shape.as_deref())?,
    };
    let bounds = args.model.bounds(model.as_ref());
    let dataset = open_dataset(
        &args.data,
        args.labels.as_deref(),
        shape,
        bounds,
        args.limit,
        false,
    )?;
    if dataset.is_empty() {
        return Err(bad_input(format!(
            "{}: no samples to scan",
            args.data.display()
        )));
    }
    let names: Vec<String> = match &model {
        Some(m) => {
            let logits = m.info().outputs[0].clone();
            let penult = value_name(m, FeatureSpace::Penultimate, args.model.layer.as_deref())?
                .unwrap_or_default();
            if let Some(&bad) = dataset
                .labels()
                .iter()
                .find(|&&y| y >= m.info().num_classes)
            {
                return Err(bad_input(format!(
                    "{}: label {bad} is out of range for a model with {} outputs",
                    args.data.display(),
                    m.info().num_classes
                )));
            }
            vec![logits, penult]
        }
        None => Vec::new(),
    };
    let ex = extract(
        &dataset,
        shape,
        model.as_ref(),
        &names,
        true,
        args.model.batch_size,
        args.model.quiet,
    )?;
    let n = ex.labels.len();
    let chw: usize = shape.iter().product();
    let pixels = ex.pixels.unwrap_or_default();

    // describe()
    let table = FeatureTable::new(n, chw, pixels.iter().map(|&v| f64::from(v)).collect())
        .map_err(bad_input)?;
    let described = describe(&table);
    drop(table);
    let summary = aggregate(&described, &pixels);

    // Duplicates.
    let rows: Vec<&[f32]> = pixels.chunks_exact(chw).collect();
    let dup_options = DuplicateOptions {
        max_hamming: args.max_hamming,
        max_distance: args.max_distance,
    };
    let geometry = ImageGeometry {
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        layout: Layout::Chw,
    };
    let groups = find_duplicates(&rows, geometry, &dup_options).map_err(bad_input)?;

    // Model screens.
    let (labels_section, spectral) = match &model {
        Some(_) => {
            let (classes, logits) = &ex.values[0];
            let probs: Vec<Vec<f32>> = logits.chunks_exact(*classes).map(softmax).collect();
            let samples =
                label_disagreements(&probs, &ex.labels, args.confidence).map_err(bad_input)?;
            let (dim, feats) = &ex.values[1];
            let feature_rows: Vec<&[f32]> = feats.chunks_exact(*dim).collect();
            let cut = match args.fraction {
                Fraction::Fixed(f) => SpectralCut::Fraction(f),
                Fraction::Auto => SpectralCut::Fence(args.fence),
            };
            let spectral =
                spectral_signatures_with(&feature_rows, &ex.labels, cut).map_err(bad_input)?;
            (
                Some(LabelSection {
                    confidence: args.confidence,
                    samples,
                }),
                Some(SpectralSection {
                    mode: match args.fraction {
                        Fraction::Fixed(f) => format!("fraction {f}"),
                        Fraction::Auto => format!("auto, fence {}", args.fence),
                    },
                    layer: names[1].clone(),
                    dim: *dim,
                    report: spectral,
                }),
            )
        }
        None => (None, None),
    };

    let mut flagged = std::collections::BTreeSet::new();
    for g in groups.exact.iter().chain(&groups.near) {
        flagged.extend(g.iter().skip(1).copied());
    }
    if let Some(l) = &labels_section {
        flagged.extend(l.samples.iter().map(|s| s.index));
    }
    if let Some(s) = &spectral {
        flagged.extend(s.report.flagged.iter().copied());
    }
    let mut class_counts = BTreeMap::new();
    for &y in &ex.labels {
        *class_counts.entry(y).or_insert(0) += 1;
    }
    let report = ScanReport {
        data: DataSection {
            source: dataset.info().source.clone(),
            format: dataset.info().format.name().into(),
            samples: n,
            shape,
            class_counts,
        },
        model: model.as_ref().map(|m| ModelSection {
            path: m.info().path.display().to_string(),
            sha256: m.info().sha256.clone(),
        }),
        summary,
        describe: described,
        duplicates: DuplicateSection {
            max_hamming: args.max_hamming,
            max_distance: args.max_distance,
            groups,
        },
        label_disagreements: labels_section,
        spectral_signatures: spectral,
        flagged_samples: flagged.len(),
    };

    // Render everything, then write, then print.
    let json = (args.json.is_some() || mlflow.is_some())
        .then(|| {
            serde_json::to_string_pretty(&report).map(|mut s| {
                s.push('\n');
                s
            })
        })
        .transpose()?;
    let html = match &args.html {
        Some(_) => Some(render_html(&report, &pixels, &ex.labels, shape, bounds)?),
        None => None,
    };
    let files: Vec<(PathBuf, Vec<u8>)> = [(&args.json, &json), (&args.html, &html)]
        .into_iter()
        .filter_map(|(path, text)| Some((path.clone()?, text.clone()?.into_bytes())))
        .collect();
    super::write_all_or_nothing(&files)?;
    print!("{}", render_text(&report));
    if let Some(json) = &json {
        let record = super::mlflow::scan_record(
            args,
            &report,
            json.as_bytes(),
            html.as_deref().map(str::as_bytes),
        );
        super::mlflow::send(mlflow.as_ref(), "scan", record)?;
    }
    Ok(if args.fail_on_findings && report.flagged_samples > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&z| f64::from(z - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

fn aggregate(described: &[FeatureSummary], pixels: &[f32]) -> DescribeAggregate {
    let min = described.iter().filter_map(|s| s.min).reduce(f64::min);
    let max = described.iter().filter_map(|s| s.max).reduce(f64::max);
    let mean = (!pixels.is_empty())
        .then(|| pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / pixels.len() as f64);
    let stds: Vec<f64> = described.iter().filter_map(|s| s.std).collect();
    DescribeAggregate {
        features: described.len(),
        min,
        max,
        mean,
        mean_std: (!stds.is_empty()).then(|| stds.iter().sum::<f64>() / stds.len() as f64),
        constant_features: described
            .iter()
            .filter(|s| s.count > 0 && s.min == s.max)
            .count(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn list(items: &[usize]) -> String {
    let mut s: Vec<String> = items
        .iter()
        .take(PRINT_LIMIT * 2)
        .map(usize::to_string)
        .collect();
    if items.len() > PRINT_LIMIT * 2 {
        s.push(format!("... (+{})", items.len() - PRINT_LIMIT * 2));
    }
    s.join(" ")
}

/// The terminal table.
fn render_text(r: &ScanReport) -> String {
    let mut out = String::new();
    let d = &r.data;
    out.push_str(&format!(
        "scan: {} ({}, {} samples, {}×{}×{})\n",
        d.source, d.format, d.samples, d.shape[0], d.shape[1], d.shape[2]
    ));
    out.push_str(&format!(
        "classes: {}\n",
        d.class_counts
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let s = &r.summary;
    out.push_str(&format!(
        "\ndescribe: {} features; values in [{}, {}], mean {}, mean per-feature std {}; {} \
         constant feature{} (every feature's statistics: --json)\n",
        s.features,
        opt(s.min),
        opt(s.max),
        opt(s.mean),
        opt(s.mean_std),
        s.constant_features,
        if s.constant_features == 1 { "" } else { "s" }
    ));
    let g = &r.duplicates.groups;
    out.push_str(&format!(
        "\nduplicates: {} exact group{}, {} near-duplicate group{} (max hamming {}, max distance {})\n",
        g.exact.len(),
        if g.exact.len() == 1 { "" } else { "s" },
        g.near.len(),
        if g.near.len() == 1 { "" } else { "s" },
        r.duplicates.max_hamming,
        r.duplicates.max_distance
    ));
    for (kind, groups) in [("exact", &g.exact), ("near ", &g.near)] {
        for grp in groups.iter().take(PRINT_LIMIT) {
            out.push_str(&format!("  {kind}  {}\n", list(grp)));
        }
        if groups.len() > PRINT_LIMIT {
            out.push_str(&format!(
                "  {kind}  ... {} more groups\n",
                groups.len() - PRINT_LIMIT
            ));
        }
    }
    match &r.label_disagreements {
        Some(l) => {
            out.push_str(&format!(
                "\nlabel disagreements (model confidence >= {}): {}\n",
                l.confidence,
                l.samples.len()
            ));
            if !l.samples.is_empty() {
                out.push_str(&format!(
                    "  {:>8}  {:>5}  {:>9}  {:>10}\n",
                    "sample", "label", "predicted", "confidence"
                ));
            }
            for x in l.samples.iter().take(PRINT_LIMIT) {
                out.push_str(&format!(
                    "  {:>8}  {:>5}  {:>9}  {:>10.4}\n",
                    x.index, x.label, x.predicted, x.confidence
                ));
            }
            if l.samples.len() > PRINT_LIMIT {
                out.push_str(&format!("  ... {} more\n", l.samples.len() - PRINT_LIMIT));
            }
        }
        None => out.push_str("\nlabel disagreements: skipped (needs --model)\n"),
    }
    match &r.spectral_signatures {
        Some(sp) => {
            out.push_str(&format!(
                "\nspectral signatures ({}, features `{}`, {} wide): {} flagged\n",
                sp.mode,
                sp.layer,
                sp.dim,
                sp.report.flagged.len()
            ));
            out.push_str(&format!(
                "  {:>6}  {:>7}  {:>7}  {:>12}  {:>12}\n",
                "class", "samples", "flagged", "sigma1", "min score"
            ));
            for c in &sp.report.classes {
                out.push_str(&format!(
                    "  {:>6}  {:>7}  {:>7}  {:>12.4}  {:>12}\n",
                    c.class,
                    c.count,
                    c.flagged,
                    c.singular_value,
                    opt(c.threshold)
                ));
            }
            if sp.report.flagged.is_empty() {
                out.push_str("  flagged: none\n");
            } else {
                out.push_str(&format!("  flagged: {}\n", list(&sp.report.flagged)));
            }
        }
        None => out.push_str("\nspectral signatures: skipped (needs --model)\n"),
    }
    out.push_str(&format!(
        "\n{} sample{} flagged by some screen\n",
        r.flagged_samples,
        if r.flagged_samples == 1 { "" } else { "s" }
    ));
    out
}

/// A self-contained HTML page holding one `<section id="data-scan">`.
fn render_html(
    r: &ScanReport,
    pixels: &[f32],
    labels: &[usize],
    shape: [usize; 3],
    bounds: [f32; 2],
) -> Result<String> {
    let [c, h, w] = shape;
    let chw = c * h * w;
    let span = bounds[1] - bounds[0];
    // Every thumbnail shows the sample's index and its label in the data set.
    let thumb = |i: usize, caption: String| -> Result<String> {
        let img: Vec<f32> = pixels[i * chw..(i + 1) * chw]
            .iter()
            .map(|v| (v - bounds[0]) / span)
            .collect();
        // Grey or RGB as they are; any other channel count shows its first channel.
        let shown = if c == 3 { 3 } else { 1 };
        let png =
            robust_report::png_base64(w as u32, h as u32, shown as u32, &img[..shown * h * w])?;
        let label = labels
            .get(i)
            .map(|l| format!("#{i}, label {l}"))
            .unwrap_or_else(|| format!("#{i}"));
        Ok(format!(
            "<figure class=\"thumb\"><img alt=\"sample {i}\" src=\"data:image/png;base64,{png}\"><figcaption>{}<br>{}</figcaption></figure>",
            escape(&label),
            escape(&caption)
        ))
    };
    let d = &r.data;
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Training-data scan: {}</title>\n<style>\n{}\n\
         figure.thumb{{display:inline-block;margin:4px 6px;text-align:center;font-size:12px;color:var(--muted)}}\
         figure.thumb img{{width:64px;height:64px;image-rendering:pixelated;border:1px solid var(--line);display:block;margin:0 auto 2px}}\
         </style></head><body>\n<header><h1>Training-data scan: {}</h1><p>robust scan</p></header>\n<main>\n<section id=\"data-scan\">\n",
        escape(&d.source),
        robust_report::REPORT_CSS,
        escape(&d.source)
    );
    s.push_str(&format!(
        "<h2>Data</h2>\n<p>{} ({}, {} samples, {}×{}×{}){}</p>\n",
        escape(&d.source),
        escape(&d.format),
        d.samples,
        c,
        h,
        w,
        r.model
            .as_ref()
            .map(|m| format!(
                "; model {} (sha256 {}…)",
                escape(&m.path),
                &m.sha256[..12.min(m.sha256.len())]
            ))
            .unwrap_or_default()
    ));
    s.push_str("<h3>Classes</h3>\n<table><tr><th>class</th><th>samples</th></tr>\n");
    for (k, v) in &d.class_counts {
        s.push_str(&format!("<tr><td>{k}</td><td>{v}</td></tr>\n"));
    }
    s.push_str("</table>\n");
    let a = &r.summary;
    s.push_str(&format!(
        "<h3>Summary statistics</h3>\n<p>{} features; values in [{}, {}]; mean {}; mean per-feature std {}; {} constant features.</p>\n",
        a.features, opt(a.min), opt(a.max), opt(a.mean), opt(a.mean_std), a.constant_features
    ));
    let g = &r.duplicates.groups;
    s.push_str(&format!(
        "<h3>Duplicates</h3>\n<p>{} exact and {} near-duplicate groups (max hamming {}, max distance {}).</p>\n",
        g.exact.len(),
        g.near.len(),
        r.duplicates.max_hamming,
        r.duplicates.max_distance
    ));
    for (kind, groups) in [("exact", &g.exact), ("near", &g.near)] {
        for grp in groups.iter().take(HTML_IMAGES / 2) {
            s.push_str("<div>");
            for &i in grp.iter().take(8) {
                s.push_str(&thumb(i, format!("{kind} #{i}"))?);
            }
            s.push_str("</div>\n");
        }
    }
    if let Some(l) = &r.label_disagreements {
        s.push_str(&format!(
            "<h3>Label disagreements</h3>\n<p>{} samples whose label differs from a prediction with probability ≥ {}.</p>\n<div>",
            l.samples.len(),
            l.confidence
        ));
        for x in l.samples.iter().take(HTML_IMAGES) {
            s.push_str(&thumb(
                x.index,
                format!(
                    "#{} label {} → {} ({:.2})",
                    x.index, x.label, x.predicted, x.confidence
                ),
            )?);
        }
        s.push_str("</div>\n");
    }
    if let Some(sp) = &r.spectral_signatures {
        s.push_str(&format!(
            "<h3>Spectral signatures</h3>\n<p>{}; features <code>{}</code> ({} wide): {} samples flagged.</p>\n\
             <table><tr><th>class</th><th>samples</th><th>flagged</th><th>σ₁</th><th>lowest flagged score</th></tr>\n",
            escape(&sp.mode),
            escape(&sp.layer),
            sp.dim,
            sp.report.flagged.len()
        ));
        for cl in &sp.report.classes {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td></tr>\n",
                cl.class,
                cl.count,
                cl.flagged,
                cl.singular_value,
                opt(cl.threshold)
            ));
        }
        s.push_str("</table>\n<p>Highest-scoring flagged samples:</p>\n<div>");
        let mut top: Vec<usize> = sp.report.flagged.clone();
        top.sort_by(|&a, &b| {
            sp.report.scores[b]
                .total_cmp(&sp.report.scores[a])
                .then(a.cmp(&b))
        });
        for &i in top.iter().take(HTML_IMAGES) {
            s.push_str(&thumb(i, format!("#{i} score {:.3}", sp.report.scores[i]))?);
        }
        s.push_str("</div>\n");
    }
    s.push_str(&format!(
        "<p><strong>{} samples flagged by some screen.</strong></p>\n</section>\n</main>\n</body></html>\n",
        r.flagged_samples
    ));
    Ok(s)
}
