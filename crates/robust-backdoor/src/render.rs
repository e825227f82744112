//! The HTML report of both screens: one self-contained page in the look of robust-report's
//! evaluation report (same palette, cards and tables), rendered by minijinja from
//! `templates/backdoor.html` with HTML auto-escaping. The only values inserted unescaped are
//! image `data:` URIs, built here from PNG bytes encoded as base64.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::cleanse::CleanseReport;
use crate::error::{BackdoorError, Result};
use crate::strip::StripReport;

const TEMPLATE: &str = include_str!("../templates/backdoor.html");

/// Flagged inputs shown as thumbnails in the STRIP section.
const STRIP_THUMBS: usize = 48;

/// What the page says about the run besides the results.
#[derive(Clone, Debug, Default)]
pub struct PageInfo {
    /// The model file.
    pub model: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The clean data set.
    pub data: String,
    /// The device that ran it.
    pub device: String,
    /// The seed.
    pub seed: u64,
    /// Wall time of the search or screen, in seconds.
    pub seconds: f64,
    /// Class names by index (an index is shown where a name is missing).
    pub class_names: Vec<String>,
    /// The model's input bounds `[lo, hi]`.
    pub bounds: [f32; 2],
    /// `[C, H, W]` of an input.
    pub shape: [usize; 3],
    /// Further rows for the run table (settings), in order.
    pub rows: Vec<(String, String)>,
    /// The tool and version, for the footer.
    pub generator: String,
}

impl PageInfo {
    fn class(&self, k: usize) -> String {
        match self.class_names.get(k) {
            Some(n) if n != &k.to_string() => format!("{k} ({n})"),
            _ => k.to_string(),
        }
    }

    fn run_rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("model".to_string(), self.model.clone()),
            ("model SHA-256".into(), self.sha256.clone()),
            ("clean data".into(), self.data.clone()),
            ("device".into(), self.device.clone()),
            ("seed".into(), self.seed.to_string()),
            ("run time".into(), format!("{:.1} s", self.seconds)),
        ];
        rows.extend(self.rows.iter().cloned());
        rows
    }
}

#[derive(Serialize)]
struct Card {
    label: String,
    value: String,
    detail: String,
    tone: &'static str,
}

#[derive(Serialize)]
struct ClassView {
    name: String,
    norm: String,
    index: String,
    flagged: bool,
    reached: bool,
    success: String,
    steps: usize,
    cost: String,
    mask_src: String,
    pattern_src: String,
    trigger_src: String,
}

#[derive(Serialize)]
struct Thumb {
    index: usize,
    predicted: String,
    entropy: String,
    src: String,
}

#[derive(Serialize)]
struct StripView {
    overlays: usize,
    threshold: String,
    clean_samples: usize,
    clean_flagged: usize,
    fpr: String,
    clean_summary: String,
    input_summary: String,
    flagged: usize,
    screened: usize,
    shown: usize,
    thumbs: Vec<Thumb>,
}

#[derive(Serialize)]
struct View {
    title: String,
    subtitle: String,
    generator: String,
    cards: Vec<Card>,
    run_rows: Vec<(String, String)>,
    threshold: String,
    median: String,
    mad: String,
    classes: Vec<ClassView>,
    strip: Option<StripView>,
}

/// A `data:` URI of an image (`channels · h · w` values in `[0, 1]`; any channel count other
/// than 1 or 3 shows its first channel).
fn image_src(values: &[f32], shape: [usize; 3]) -> Result<String> {
    let [c, h, w] = shape;
    let shown = if c == 3 { 3 } else { 1 };
    let png = robust_report::png_base64(w as u32, h as u32, shown as u32, &values[..shown * h * w])
        .map_err(|e| BackdoorError::Render(e.to_string()))?;
    Ok(format!("data:image/png;base64,{png}"))
}

fn unit(values: &[f32], bounds: [f32; 2]) -> Vec<f32> {
    let span = bounds[1] - bounds[0];
    values.iter().map(|v| (v - bounds[0]) / span).collect()
}

fn render(view: &View) -> Result<String> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    let fail = |e: minijinja::Error| BackdoorError::Render(e.to_string());
    env.add_template("backdoor.html", TEMPLATE).map_err(fail)?;
    env.get_template("backdoor.html")
        .map_err(fail)?
        .render(view)
        .map_err(fail)
}

fn index_text(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "∞".into()
    }
}

/// The page of a Neural Cleanse run: verdict, per-class norms and anomaly indices, and each
/// class's mask, pattern and masked pattern as images.
pub fn render_cleanse_html(report: &CleanseReport, info: &PageInfo) -> Result<String> {
    let [c, h, w] = info.shape;
    let mut classes = Vec::with_capacity(report.triggers.len());
    for (k, t) in report.triggers.iter().enumerate() {
        let pattern = unit(&t.pattern, info.bounds);
        let masked: Vec<f32> = pattern
            .iter()
            .enumerate()
            .map(|(i, p)| p * t.mask[i % (h * w)])
            .collect();
        classes.push(ClassView {
            name: info.class(t.class),
            norm: format!("{:.2}", t.norm),
            index: format!(
                "{}{}",
                if t.norm < report.anomaly.median {
                    "−"
                } else {
                    "+"
                },
                index_text(report.anomaly.index[k])
            ),
            flagged: report.flagged.contains(&t.class),
            reached: t.reached,
            success: format!("{:.2}%", 100.0 * t.attack_success),
            steps: t.steps,
            cost: format!("{:.3e}", t.final_cost),
            mask_src: image_src(&t.mask, [1, h, w])?,
            pattern_src: image_src(&pattern, [c, h, w])?,
            trigger_src: image_src(&masked, [c, h, w])?,
        });
    }
    let smallest = report
        .triggers
        .iter()
        .min_by(|a, b| a.norm.total_cmp(&b.norm))
        .map(|t| (t.class, t.norm, report.anomaly.index[t.class]));
    let flagged_names: Vec<String> = report.flagged.iter().map(|&k| info.class(k)).collect();
    let mut cards = vec![Card {
        label: "verdict".into(),
        value: if flagged_names.is_empty() {
            "no class flagged".into()
        } else {
            format!("class {} flagged", flagged_names.join(", "))
        },
        detail: format!(
            "low outliers with anomaly index > {} among {} classes",
            report.threshold,
            report.triggers.len()
        ),
        tone: if flagged_names.is_empty() {
            "pass"
        } else {
            "fail"
        },
    }];
    if let Some((k, norm, idx)) = smallest {
        cards.push(Card {
            label: "smallest trigger".into(),
            value: format!("{norm:.1}"),
            detail: format!("class {}, anomaly index {}", info.class(k), index_text(idx)),
            tone: "neutral",
        });
    }
    cards.push(Card {
        label: "median trigger norm".into(),
        value: format!("{:.1}", report.anomaly.median),
        detail: format!("MAD {:.2}; mask L1 of {} pixels", report.anomaly.mad, h * w),
        tone: "neutral",
    });
    let unreached = report.triggers.iter().filter(|t| !t.reached).count();
    if unreached > 0 {
        cards.push(Card {
            label: "classes not reached".into(),
            value: unreached.to_string(),
            detail: format!(
                "no trigger reached {:.0}% attack success: raise --steps",
                100.0 * report.config.success_threshold
            ),
            tone: "warn",
        });
    }
    let view = View {
        title: format!("Backdoor search: {}", info.model),
        subtitle: "Neural Cleanse (Wang et al., IEEE S&P 2019)".into(),
        generator: info.generator.clone(),
        cards,
        run_rows: info.run_rows(),
        threshold: report.threshold.to_string(),
        median: format!("{:.2}", report.anomaly.median),
        mad: format!("{:.2}", report.anomaly.mad),
        classes,
        strip: None,
    };
    render(&view)
}

fn summary(values: &[f64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    format!(
        "min {:.3}, 1% {:.3}, median {:.3}, max {:.3}",
        v[0],
        q(0.01),
        q(0.5),
        v[v.len() - 1]
    )
}

/// The page of a STRIP screen: threshold, counts and the flagged inputs (`inputs` holds the
/// screened images, `n · C · H · W` values) of lowest entropy as thumbnails.
pub fn render_strip_html(report: &StripReport, inputs: &[f32], info: &PageInfo) -> Result<String> {
    let per: usize = info.shape.iter().product();
    let mut flagged: Vec<&crate::strip::ScreenedInput> =
        report.inputs.iter().filter(|s| s.flagged).collect();
    flagged.sort_by(|a, b| a.entropy.total_cmp(&b.entropy).then(a.index.cmp(&b.index)));
    let mut thumbs = Vec::new();
    for s in flagged.iter().take(STRIP_THUMBS) {
        let img = unit(&inputs[s.index * per..(s.index + 1) * per], info.bounds);
        thumbs.push(Thumb {
            index: s.index,
            predicted: info.class(s.predicted),
            entropy: format!("{:.3}", s.entropy),
            src: image_src(&img, info.shape)?,
        });
    }
    let n = report.inputs.len();
    let entropies: Vec<f64> = report.inputs.iter().map(|s| s.entropy).collect();
    let cards = vec![
        Card {
            label: "flagged inputs".into(),
            value: format!("{} of {n}", report.flagged.len()),
            detail: format!(
                "{:.2}% of the screened inputs",
                100.0 * report.flagged.len() as f64 / n.max(1) as f64
            ),
            tone: if report.flagged.is_empty() {
                "pass"
            } else {
                "fail"
            },
        },
        Card {
            label: "entropy threshold".into(),
            value: format!("{:.3} bits", report.threshold),
            detail: format!("false-positive rate {} on clean inputs", report.config.fpr),
            tone: "neutral",
        },
        Card {
            label: "clean inputs below it".into(),
            value: format!("{} of {}", report.clean_flagged, report.clean_samples),
            detail: format!("{} blends per input", report.config.overlays),
            tone: "neutral",
        },
    ];
    let view = View {
        title: format!("Input screen: {}", info.model),
        subtitle: "STRIP (Gao et al., ACSAC 2019)".into(),
        generator: info.generator.clone(),
        cards,
        run_rows: info.run_rows(),
        threshold: String::new(),
        median: String::new(),
        mad: String::new(),
        classes: Vec::new(),
        strip: Some(StripView {
            overlays: report.config.overlays,
            threshold: format!("{:.4}", report.threshold),
            clean_samples: report.clean_samples,
            clean_flagged: report.clean_flagged,
            fpr: report.config.fpr.to_string(),
            clean_summary: summary(&report.clean_entropies),
            input_summary: summary(&entropies),
            flagged: report.flagged.len(),
            screened: n,
            shown: thumbs.len(),
            thumbs,
        }),
    };
    render(&view)
}
