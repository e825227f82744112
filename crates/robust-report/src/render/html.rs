//! The HTML report: one self-contained file.
//!
//! Everything the page needs is inside it: CSS in a `<style>` element, charts as inline
//! SVG (drawn with plotters), example images as `data:` URIs. It loads no script, font or
//! other resource, so it can be archived as a CI artifact and opened anywhere, offline.
//!
//! The page is rendered by minijinja from `templates/report.html` (embedded in the binary)
//! with HTML auto-escaping on: every string from the results (class names, file names,
//! labels) is escaped. The only values inserted unescaped are the SVG charts, which plotters
//! escapes itself, and image `data:` URIs, built only from text checked to be base64.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::error::Result;
use crate::format::{eps as fmt_eps, num, pct, pct_opt, sig3};
use crate::gate::threshold_text;
use crate::history::HistoryEntry;
use crate::render::{charts, norm_display, norms, worst_case_norm};
use crate::schema::RunResults;

const TEMPLATE: &str = include_str!("../../templates/report.html");

/// The report's style sheet, for other pages that should look like it (`robust scan
/// --html`).
pub const REPORT_CSS: &str = include_str!("../../templates/report.css");

/// Options of [`render_html`].
#[derive(Debug, Clone)]
pub struct HtmlOptions<'a> {
    /// Past runs (oldest first, including this one if it was appended): with two or more
    /// entries the report charts robust accuracy over time, one chart per attack.
    pub history: Option<&'a [HistoryEntry]>,
    /// The per-class heat map shows at most this many classes: the ones with the lowest
    /// robust accuracy at the largest epsilon, in class order. Default 50.
    pub max_heatmap_classes: usize,
}

impl Default for HtmlOptions<'_> {
    fn default() -> Self {
        HtmlOptions {
            history: None,
            max_heatmap_classes: 50,
        }
    }
}

#[derive(Serialize)]
struct View {
    title: String,
    model_name: String,
    cards: Vec<Card>,
    model_rows: Vec<(String, String)>,
    data_rows: Vec<(String, String)>,
    run_rows: Vec<(String, String)>,
    class_names: Vec<String>,
    norms: Vec<NormView>,
    heatmaps: Vec<HeatmapView>,
    examples: Vec<ExampleGroup>,
    checks: Vec<CheckView>,
    audit: Option<crate::ModelAudit>,
    backdoor: Option<BackdoorView>,
    gate: Option<GateView>,
    history: Vec<HistoryView>,
    history_note: Option<String>,
    generator: String,
}

#[derive(Serialize)]
struct Card {
    label: String,
    value: String,
    detail: String,
    tone: &'static str,
}

#[derive(Serialize)]
struct NormView {
    name: String,
    chart: charts::Chart,
    rows: Vec<TableRow>,
    /// Lines on ensemble attacks (AutoAttack): accuracy after each component, parts left out.
    notes: Vec<String>,
}

#[derive(Serialize)]
struct TableRow {
    attack: String,
    eps: String,
    robust: String,
    success: String,
    mean_pert: String,
    max_pert: String,
    worst: bool,
    first: bool,
    span: usize,
}

#[derive(Serialize)]
struct HeatmapView {
    attack: String,
    eps: Vec<String>,
    rows: Vec<HeatRow>,
    note: Option<String>,
}

#[derive(Serialize)]
struct HeatRow {
    class: String,
    cells: Vec<HeatCell>,
}

#[derive(Serialize)]
struct HeatCell {
    text: String,
    color: String,
}

#[derive(Serialize)]
struct ExampleView {
    attack: String,
    eps: String,
    index: usize,
    true_label: String,
    clean_pred: String,
    clean_conf: String,
    adv_pred: String,
    adv_conf: String,
    fooled: bool,
    clean_src: Option<String>,
    adv_src: Option<String>,
    pert_src: Option<String>,
}

/// The examples of one attack at one ε, shown as one collapsible group.
#[derive(Serialize)]
struct ExampleGroup {
    attack: String,
    eps: String,
    fooled: usize,
    open: bool,
    items: Vec<ExampleView>,
}

#[derive(Serialize)]
struct CheckView {
    status: &'static str,
    css: &'static str,
    title: String,
    message: String,
}

#[derive(Serialize)]
struct GateView {
    passed: bool,
    baseline: Option<String>,
    rows: Vec<GateRowView>,
}

#[derive(Serialize)]
struct GateRowView {
    passed: bool,
    attack: String,
    eps: String,
    rule: String,
    baseline: String,
    actual: String,
    message: String,
}

/// The backdoor scan section.
#[derive(Serialize)]
struct BackdoorView {
    verdict: String,
    flagged: bool,
    per_source: bool,
    threshold: String,
    median: String,
    mad: String,
    mask_pixels: usize,
    rows: Vec<(String, String)>,
    classes: Vec<BackdoorRow>,
    thumbs: Vec<BackdoorThumb>,
}

#[derive(Serialize)]
struct BackdoorRow {
    name: String,
    source: String,
    norm: String,
    index: String,
    flagged: bool,
    reached: bool,
    success: String,
    steps: usize,
}

#[derive(Serialize)]
struct BackdoorThumb {
    name: String,
    caption: String,
    flagged: bool,
    mask_src: Option<String>,
    pattern_src: Option<String>,
    trigger_src: Option<String>,
}

#[derive(Serialize)]
struct HistoryView {
    attack: String,
    chart: charts::Chart,
}

/// Whether `s` is non-empty standard base64 (so it is safe inside a `data:` URI).
fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

fn png_src(b64: &str) -> Option<String> {
    is_base64(b64).then(|| format!("data:image/png;base64,{b64}"))
}

/// The background of a heat-map cell: red at 0, yellow at 0.5, green at 1.
fn heat_color(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let hue = (v.clamp(0.0, 1.0) * 120.0).round();
            format!("hsl({hue}, 70%, 80%)")
        }
        _ => "#f0f0f0".to_string(),
    }
}

fn yes_no(v: Option<bool>, none: &str) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "NO: signature did not verify".into(),
        None => none.into(),
    }
}

fn floats(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| num(f64::from(*x))).collect();
    format!("[{}]", parts.join(", "))
}

/// Label/value rows of a summary table.
type Rows = Vec<(String, String)>;

fn summary(run: &RunResults) -> (Rows, Rows, Rows) {
    let m = &run.model;
    let normalization = match (&m.mean, &m.std) {
        (None, None) => "none".to_string(),
        (mean, std) => format!(
            "mean {}, std {}",
            mean.as_deref().map(floats).unwrap_or_else(|| "—".into()),
            std.as_deref().map(floats).unwrap_or_else(|| "—".into())
        ),
    };
    let shape: Vec<String> = m.input_shape.iter().map(|d| d.to_string()).collect();
    let model_rows = vec![
        ("File".into(), m.file_name.clone()),
        ("Path".into(), m.path.clone()),
        ("Format".into(), m.format.clone()),
        ("SHA-256".into(), m.sha256.clone()),
        ("Input shape".into(), format!("[{}]", shape.join(" × "))),
        (
            "Bounds".into(),
            format!(
                "[{}, {}]",
                num(f64::from(m.bounds[0])),
                num(f64::from(m.bounds[1]))
            ),
        ),
        ("Normalization".into(), normalization),
        ("Classes".into(), m.num_classes.to_string()),
        (
            "Signature verified".into(),
            yes_no(m.signature_verified, "not checked"),
        ),
    ];
    let d = &run.dataset;
    let data_rows = vec![
        ("Source".into(), d.source.clone()),
        ("Format".into(), d.format.clone()),
        ("Samples".into(), d.size.to_string()),
        ("Classes".into(), d.num_classes.to_string()),
    ];
    let mut data_rows = data_rows;
    if let Some(sha) = &d.samples_sha256 {
        data_rows.push(("Samples SHA-256".into(), sha.clone()));
    }
    for c in &d.conversions {
        data_rows.push((
            "Converted".into(),
            format!("{} ({} of {} samples)", c.what, c.samples, d.size),
        ));
    }
    let git = run
        .tool
        .git_commit
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let run_rows = vec![
        ("Started at".into(), run.started_at.clone()),
        ("Run time".into(), format!("{:.1} s", run.duration_s)),
        ("Seed".into(), run.seed.to_string()),
        (
            "Device".into(),
            format!(
                "{} (requested {}), {}",
                run.device.backend, run.device.requested, run.device.adapter
            ),
        ),
        (
            "Versions".into(),
            format!(
                "{} {}{git}, burn {}",
                run.tool.name, run.tool.version, run.tool.burn_version
            ),
        ),
    ];
    (model_rows, data_rows, run_rows)
}

fn cards(run: &RunResults) -> Vec<Card> {
    let mut cards = vec![Card {
        label: "Clean accuracy".into(),
        value: pct(run.clean_accuracy),
        detail: format!("{} samples", run.dataset.size),
        tone: "neutral",
    }];
    for h in crate::render::headlines(run) {
        let why = match h.chosen_by {
            "primary" => "the primary eps",
            "gate" => "the gate's eps",
            "only" => "the one eps swept",
            _ => "the middle of the sweep",
        };
        let largest = h
            .largest
            .map(|(e, a)| format!("; at the largest eps {}: {}", fmt_eps(e), pct(a)))
            .unwrap_or_default();
        cards.push(Card {
            label: format!(
                "Robust accuracy, {} eps {}",
                norm_display(&h.norm),
                fmt_eps(h.eps)
            ),
            value: pct(h.robust_accuracy),
            detail: format!("worst case at {why}{largest}"),
            tone: "neutral",
        });
    }
    let [pass, warn, fail, na] = crate::schema::check_counts(&run.checks);
    if !run.checks.is_empty() {
        cards.push(Card {
            label: "Reliability checks".into(),
            value: if fail > 0 {
                format!("{fail} failed")
            } else if warn > 0 {
                format!("{warn} warning{}", if warn == 1 { "" } else { "s" })
            } else {
                "all passed".into()
            },
            detail: if na > 0 {
                format!(
                    "{pass} of {} applicable checks passed; {na} not applicable",
                    pass + warn + fail
                )
            } else {
                format!("{} checks", run.checks.len())
            },
            tone: if fail > 0 {
                "fail"
            } else if warn > 0 {
                "warn"
            } else {
                "pass"
            },
        });
    }
    if let Some(s) = &run.backdoor {
        cards.push(Card {
            label: "Backdoor scan".into(),
            value: if s.flagged.is_empty() {
                "no class flagged".into()
            } else {
                let names: Vec<String> = s.flagged.iter().map(|&k| run.class_name(k)).collect();
                format!("class {} flagged", names.join(", "))
            },
            detail: format!(
                "Neural Cleanse, {} classes, {} scope",
                s.classes.len(),
                s.scope
            ),
            tone: if s.flagged.is_empty() { "pass" } else { "warn" },
        });
    }
    if let Some(g) = &run.gate {
        let failed = g.rows.iter().filter(|r| !r.passed).count();
        cards.push(Card {
            label: "Regression gate".into(),
            value: if g.passed { "passed" } else { "FAILED" }.into(),
            detail: if g.passed {
                format!("{} thresholds held", g.rows.len())
            } else {
                format!("{failed} of {} thresholds failed", g.rows.len())
            },
            tone: if g.passed { "pass" } else { "fail" },
        });
    }
    cards
}

fn norm_views(run: &RunResults) -> Result<Vec<NormView>> {
    let mut views = Vec::new();
    for norm in norms(run) {
        let mut rows = Vec::new();
        for a in run.attacks.iter().filter(|a| a.norm == norm) {
            let mut points: Vec<_> = a.points.iter().collect();
            points.sort_by(|p, q| p.eps.total_cmp(&q.eps));
            for (i, p) in points.iter().enumerate() {
                rows.push(TableRow {
                    attack: a.label.clone(),
                    eps: fmt_eps(p.eps),
                    robust: pct(p.robust_accuracy),
                    success: pct(p.attack_success_rate),
                    mean_pert: sig3(p.mean_perturbation),
                    max_pert: sig3(p.max_perturbation),
                    worst: false,
                    first: i == 0,
                    span: points.len(),
                });
            }
        }
        let worst: Vec<_> = run
            .worst_case
            .iter()
            .filter(|w| worst_case_norm(run, w).as_deref() == Some(norm.as_str()))
            .collect();
        for (i, w) in worst.iter().enumerate() {
            rows.push(TableRow {
                attack: "worst case".into(),
                eps: fmt_eps(w.eps),
                robust: pct(w.robust_accuracy),
                success: String::new(),
                mean_pert: String::new(),
                max_pert: String::new(),
                worst: true,
                first: i == 0,
                span: worst.len(),
            });
        }
        let notes = run
            .attacks
            .iter()
            .filter(|a| a.norm == norm)
            .flat_map(|a| {
                [
                    crate::components_line(&a.params),
                    crate::median_perturbation_line(&a.params),
                ]
                .into_iter()
                .flatten()
                .map(move |l| format!("{}: {l}", a.label))
            })
            .collect();
        views.push(NormView {
            name: norm_display(&norm),
            chart: charts::accuracy_chart(run, &norm)?,
            rows,
            notes,
        });
    }
    Ok(views)
}

fn heatmaps(run: &RunResults, max_classes: usize) -> Vec<HeatmapView> {
    let k = run
        .attacks
        .iter()
        .flat_map(|a| a.points.iter().map(|p| p.per_class_robust.len()))
        .chain([run.clean_per_class.len()])
        .max()
        .unwrap_or(0);
    if k == 0 {
        return Vec::new();
    }
    let mut views = Vec::new();
    for a in &run.attacks {
        if a.points.iter().all(|p| p.per_class_robust.is_empty()) {
            continue;
        }
        let mut points: Vec<_> = a.points.iter().collect();
        points.sort_by(|p, q| p.eps.total_cmp(&q.eps));
        let mut classes: Vec<usize> = (0..k).collect();
        let mut note = None;
        if k > max_classes {
            let last = points.last().map(|p| &p.per_class_robust);
            let key = |c: &usize| {
                last.and_then(|v| v.get(*c).copied().flatten())
                    .unwrap_or(f64::INFINITY)
            };
            classes.sort_by(|x, y| key(x).total_cmp(&key(y)).then(x.cmp(y)));
            classes.truncate(max_classes);
            classes.sort_unstable();
            note = Some(format!(
                "Showing the {max_classes} of {k} classes with the lowest robust accuracy at \
                 the largest epsilon."
            ));
        }
        let rows = classes
            .iter()
            .map(|&c| {
                let clean = run.clean_per_class.get(c).copied().flatten();
                let mut cells = vec![HeatCell {
                    text: pct_opt(clean),
                    color: heat_color(clean),
                }];
                cells.extend(points.iter().map(|p| {
                    let v = p.per_class_robust.get(c).copied().flatten();
                    HeatCell {
                        text: pct_opt(v),
                        color: heat_color(v),
                    }
                }));
                HeatRow {
                    class: run.class_name(c),
                    cells,
                }
            })
            .collect();
        views.push(HeatmapView {
            attack: a.label.clone(),
            eps: points.iter().map(|p| fmt_eps(p.eps)).collect(),
            rows,
            note,
        });
    }
    views
}

/// The examples grouped by attack and ε, in the run's order; only the groups at each
/// norm's headline ε start open, so a sweep of many ε stays readable.
fn examples(run: &RunResults) -> Vec<ExampleGroup> {
    let heads = crate::render::headlines(run);
    let mut groups: Vec<ExampleGroup> = Vec::new();
    for e in &run.examples {
        let view = ExampleView {
            attack: e.attack.clone(),
            eps: fmt_eps(e.eps),
            index: e.index,
            true_label: run.class_name(e.true_label),
            clean_pred: run.class_name(e.clean_pred),
            clean_conf: pct(f64::from(e.clean_conf)),
            adv_pred: run.class_name(e.adv_pred),
            adv_conf: pct(f64::from(e.adv_conf)),
            fooled: e.adv_pred != e.true_label,
            clean_src: png_src(&e.clean_png),
            adv_src: png_src(&e.adv_png),
            pert_src: png_src(&e.perturbation_png),
        };
        let fooled = usize::from(view.fooled);
        if let Some(g) = groups
            .iter_mut()
            .find(|g| g.attack == view.attack && g.eps == view.eps)
        {
            g.fooled += fooled;
            g.items.push(view);
            continue;
        }
        let norm = run.attack(&e.attack).map(|a| a.norm.as_str());
        let open = heads
            .iter()
            .any(|h| Some(h.norm.as_str()) == norm && crate::eps_eq(h.eps, e.eps));
        groups.push(ExampleGroup {
            attack: view.attack.clone(),
            eps: view.eps.clone(),
            fooled,
            open,
            items: vec![view],
        });
    }
    groups
}

fn backdoor_view(run: &RunResults) -> Option<BackdoorView> {
    let s = run.backdoor.as_ref()?;
    let cfg = &s.settings;
    let mut settings = format!(
        "{} steps at most{}, batch {}, Adam lr {}, λ₀ {}, ×{} / patience {}, success ≥ {}, \
         early stop {}",
        cfg.steps,
        if s.scope == "per-source" {
            " per finalist pair"
        } else {
            " per class"
        },
        cfg.batch_size,
        num(cfg.learning_rate),
        num(cfg.init_cost),
        num(cfg.cost_multiplier),
        cfg.patience,
        num(cfg.success_threshold),
        if cfg.early_stop { "on" } else { "off" }
    );
    if let (Some(screen), Some(finalists)) = (cfg.pair_screen_steps, cfg.pair_finalists) {
        settings.push_str(&format!(
            "; every (source, target) pair screened for {screen} steps, the {finalists} \
             smallest source{} per target optimised in full",
            if finalists == 1 { "" } else { "s" }
        ));
    }
    let rows = vec![
        (
            "Scope".into(),
            if s.scope == "per-source" {
                "per source: per target, the smallest trigger from any one source class".into()
            } else {
                "all sources: one trigger per target for the samples of every other class".into()
            },
        ),
        (
            "Clean samples".into(),
            format!("{} (seed {})", s.samples, s.seed),
        ),
        ("Settings".into(), settings),
        ("Run time".into(), format!("{:.1} s", s.duration_s)),
    ];
    let classes = s
        .classes
        .iter()
        .map(|c| BackdoorRow {
            name: run.class_name(c.class),
            source: c.source.map(|k| run.class_name(k)).unwrap_or_default(),
            norm: format!("{:.2}", c.norm),
            index: c.index_text(),
            flagged: c.flagged,
            reached: c.reached_threshold,
            success: pct(c.attack_success),
            steps: c.steps,
        })
        .collect();
    let thumbs = s
        .shown_classes()
        .into_iter()
        .filter_map(|c| {
            let im = c.images.as_ref()?;
            Some(BackdoorThumb {
                name: run.class_name(c.class),
                caption: format!("mask L1 {:.1}, index {}", c.norm, c.index_text()),
                flagged: c.flagged,
                mask_src: png_src(&im.mask_png),
                pattern_src: png_src(&im.pattern_png),
                trigger_src: png_src(&im.trigger_png),
            })
        })
        .collect();
    Some(BackdoorView {
        verdict: crate::backdoor_verdict(run).unwrap_or_default(),
        flagged: !s.flagged.is_empty(),
        per_source: s.scope == "per-source",
        threshold: num(s.anomaly_threshold),
        median: format!("{:.2}", s.median_norm),
        mad: format!("{:.2}", s.mad),
        mask_pixels: s.mask_pixels,
        rows,
        classes,
        thumbs,
    })
}

fn gate_view(run: &RunResults) -> Option<GateView> {
    run.gate.as_ref().map(|g| GateView {
        passed: g.passed,
        baseline: g.baseline.clone(),
        rows: g
            .rows
            .iter()
            .map(|r| GateRowView {
                passed: r.passed,
                attack: r.attack.clone(),
                eps: if r.all_eps {
                    "all".into()
                } else {
                    fmt_eps(r.eps)
                },
                rule: threshold_text(r),
                baseline: pct_opt(r.baseline),
                actual: r.actual.map(pct).unwrap_or_else(|| "missing".into()),
                message: r.message.clone(),
            })
            .collect(),
    })
}

fn history_views(history: Option<&[HistoryEntry]>) -> Result<(Vec<HistoryView>, Option<String>)> {
    let Some(history) = history else {
        return Ok((Vec::new(), None));
    };
    if history.len() < 2 {
        return Ok((
            Vec::new(),
            Some(format!(
                "The history has {} run; the chart appears from the second run on.",
                history.len()
            )),
        ));
    }
    // Attacks of the latest run, in its order.
    let mut attacks: Vec<&str> = Vec::new();
    for p in &history[history.len() - 1].points {
        if !attacks.contains(&p.attack.as_str()) {
            attacks.push(&p.attack);
        }
    }
    let mut views = Vec::new();
    for attack in attacks {
        views.push(HistoryView {
            attack: attack.to_string(),
            chart: charts::history_chart(history, attack)?,
        });
    }
    let models: std::collections::HashSet<&str> =
        history.iter().map(|h| h.model_sha256.as_str()).collect();
    let note = (models.len() > 1).then(|| {
        format!(
            "The history spans {} different model files (by SHA-256).",
            models.len()
        )
    });
    Ok((views, note))
}

/// Renders the HTML report of `run`. See the module documentation for what it contains.
pub fn render_html(run: &RunResults, opts: &HtmlOptions<'_>) -> Result<String> {
    let (model_rows, data_rows, run_rows) = summary(run);
    let (history, history_note) = history_views(opts.history)?;
    let model_name = if run.model.file_name.is_empty() {
        run.model.path.clone()
    } else {
        run.model.file_name.clone()
    };
    let view = View {
        title: format!("Robustness report: {model_name}"),
        model_name,
        cards: cards(run),
        model_rows,
        data_rows,
        run_rows,
        class_names: (0..run.num_classes()).map(|c| run.class_name(c)).collect(),
        norms: norm_views(run)?,
        heatmaps: heatmaps(run, opts.max_heatmap_classes.max(1)),
        examples: examples(run),
        checks: run
            .checks
            .iter()
            .map(|c| CheckView {
                status: c.status.as_str(),
                css: match c.status {
                    crate::CheckStatus::NotApplicable => "na",
                    other => other.as_str(),
                },
                title: c.title.clone(),
                message: c.message.clone(),
            })
            .collect(),
        audit: run.audit.clone(),
        backdoor: backdoor_view(run),
        gate: gate_view(run),
        history,
        history_note,
        generator: format!("robust-report {}", env!("CARGO_PKG_VERSION")),
    };
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("report.css", REPORT_CSS)?;
    env.add_template("report.html", TEMPLATE)?;
    let html = env.get_template("report.html")?.render(&view)?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_base64_becomes_a_data_uri() {
        assert_eq!(png_src("iVBO"), Some("data:image/png;base64,iVBO".into()));
        assert_eq!(png_src(""), None);
        assert_eq!(png_src("x\" onerror=\"alert(1)"), None);
        assert_eq!(png_src("abc"), None);
    }

    /// A flagged scan: the section with its verdict, warning badge and card, the trigger
    /// thumbnails of the flagged and smallest classes only, and a row per class; a run
    /// without a scan has none of it.
    #[test]
    fn a_backdoor_scan_gets_its_section() {
        let mut run = crate::testing::sample_run();
        run.dataset.class_names.clear();
        let mut scan = crate::testing::sample_scan(true);
        scan.classes[9].images = None;
        scan.classes[2].images.as_mut().unwrap().mask_png = "AAAA".into();
        run.backdoor = Some(scan);
        let html = render_html(&run, &HtmlOptions::default()).unwrap();
        assert!(html.contains(r##"<a href="#backdoor">Backdoor scan</a>"##));
        assert!(html.contains(
            r#"Backdoor scan (Neural Cleanse): <span class="badge warn">class flagged</span>"#
        ));
        assert!(
            html.contains("1 class flagged as a possible backdoor target (class 1: mask L1 11.5")
        );
        assert!(html.contains("class 1 flagged"), "the card");
        // Thumbnails: classes 1, 2, 8, 0, 6 (by norm); class 2's mask is its own image.
        assert_eq!(html.matches(r#"alt="mask of class"#).count(), 5);
        assert!(html.contains(r#"<img src="data:image/png;base64,AAAA" alt="mask of class 2">"#));
        assert!(!html.contains(r#"alt="mask of class 9""#));
        assert_eq!(html.matches("backdoor?").count(), 1);
        assert_eq!(html.matches("not reached").count(), 1);
        assert!(html.contains(r#"<td class="num">11.50</td><td class="num">−6.86</td>"#));
        run.backdoor = None;
        let html = render_html(&run, &HtmlOptions::default()).unwrap();
        assert!(!html.contains("Backdoor scan"));
    }

    #[test]
    fn heat_colors_go_from_red_to_green() {
        assert_eq!(heat_color(Some(0.0)), "hsl(0, 70%, 80%)");
        assert_eq!(heat_color(Some(1.0)), "hsl(120, 70%, 80%)");
        assert_eq!(heat_color(Some(7.0)), "hsl(120, 70%, 80%)");
        assert_eq!(heat_color(None), "#f0f0f0");
    }
}
