//! `robust eval --backdoor`: Neural Cleanse on the evaluated samples after the attacks, as a
//! section of eval's reports (`results.json`'s `backdoor`, a section of report.html, a table
//! in summary.md, one line in the terminal).
//!
//! The search is `robust backdoor`'s: the same library calls (`robust_backdoor`), the same
//! seeded draw of clean samples ([`super::backdoor::clean_subset`]) and the same defaults,
//! so `robust backdoor` on the same data with the same settings and seed finds the same
//! triggers. Settings come from the `--backdoor-*` flags, else `[backdoor]` in robust.toml,
//! else `robust backdoor`'s defaults; every one is checked before the model loads.
//!
//! A flagged class is a warning in the evaluation (reliability check
//! `backdoor/neural-cleanse`, status `warn`): eval's exit code stays the robustness gate's.
//! `robust backdoor` is the command whose exit code fails on a flagged class.

use std::path::Path;
use std::time::Instant;

use robust_backdoor::{planned_steps, scan_section, search_triggers, CleanseConfig, PairConfig};
use robust_data::Dataset;
use robust_models::{ComputeDevice, Model};

use crate::config::BackdoorConfig;
use crate::exit::bad_input;

/// The backdoor flags of `robust eval`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EvalBackdoorArgs {
    /// After the attacks, search every class's smallest trigger on the evaluated samples
    /// (Neural Cleanse, as `robust backdoor`) and add a backdoor section to the reports. A
    /// flagged class adds a warning check; it does not fail the gate or change the exit
    /// code (`robust backdoor` exits 1 on it). Also turned on by `[backdoor]` in robust.toml.
    #[arg(long, help_heading = "Backdoor scan")]
    pub backdoor: bool,
    /// all-sources (one trigger per class for the samples of every other class) or
    /// per-source (per (source, target) pair) [default: all-sources].
    #[arg(long, value_name = "SCOPE", help_heading = "Backdoor scan")]
    pub backdoor_scope: Option<String>,
    /// Most optimisation steps per class, or per finalist pair with per-source [default: 100].
    #[arg(long, value_name = "N", help_heading = "Backdoor scan")]
    pub backdoor_steps: Option<usize>,
    /// Clean samples to search on, drawn (seeded by --seed) from the evaluated ones when
    /// there are more [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Backdoor scan")]
    pub backdoor_samples: Option<usize>,
    /// per-source: steps every (source, target) pair gets in the screen [default: 10].
    #[arg(long, value_name = "N", help_heading = "Backdoor scan")]
    pub backdoor_pair_screen_steps: Option<usize>,
    /// per-source: sources per target that get the full steps [default: 2].
    #[arg(long, value_name = "N", help_heading = "Backdoor scan")]
    pub backdoor_pair_finalists: Option<usize>,
    /// Flag a class whose trigger norm is below the median with an anomaly index above
    /// this [default: 2].
    #[arg(long, value_name = "X", help_heading = "Backdoor scan")]
    pub backdoor_anomaly_threshold: Option<f64>,
}

/// A validated backdoor scan.
#[derive(Debug, Clone)]
pub(crate) struct BackdoorPlan {
    cfg: CleanseConfig,
    pairs: Option<PairConfig>,
    samples: usize,
    threshold: f64,
    /// Whether a batch size was set (then it must fit the device, else it is lowered).
    batch_size_set: bool,
}

/// Where a setting was given, for error messages: the flag, or the file and key.
struct Origin<'a> {
    config: Option<&'a Path>,
}

impl Origin<'_> {
    /// The file's section: `robust.toml: [backdoor]`.
    fn section(&self) -> String {
        match self.config {
            Some(c) => format!("{}: [backdoor]", c.display()),
            None => "[backdoor]".into(),
        }
    }

    fn name(&self, flag: Option<&str>, key: &str) -> String {
        match (flag, self.config) {
            (Some(f), _) => format!("--{f}"),
            (None, _) => format!("{} {key}", self.section()),
        }
    }
}

/// A setting from its flag, else the file, with the name to blame when it is bad.
fn pick<T: Copy>(
    flag: Option<T>,
    file: Option<T>,
    default: T,
    flag_name: &str,
    key: &str,
    o: &Origin<'_>,
) -> (T, String) {
    match (flag, file) {
        (Some(v), _) => (v, o.name(Some(flag_name), key)),
        (None, Some(v)) => (v, o.name(None, key)),
        (None, None) => (default, o.name(None, key)),
    }
}

/// The scan to run, `None` when none was asked for. `file` is robust.toml's `[backdoor]`
/// (read from `config`), `seed` eval's. Refuses (exit 2) a bad value, naming the flag or the
/// file and key, and a `--backdoor-*` flag with no scan to apply it to.
pub(crate) fn plan(
    args: &EvalBackdoorArgs,
    file: Option<BackdoorConfig>,
    config: Option<&Path>,
    seed: u64,
) -> anyhow::Result<Option<BackdoorPlan>> {
    let on = args.backdoor || file.as_ref().is_some_and(|f| f.enabled != Some(false));
    let given: Vec<&str> = [
        (args.backdoor_scope.is_some(), "--backdoor-scope"),
        (args.backdoor_steps.is_some(), "--backdoor-steps"),
        (args.backdoor_samples.is_some(), "--backdoor-samples"),
        (
            args.backdoor_pair_screen_steps.is_some(),
            "--backdoor-pair-screen-steps",
        ),
        (
            args.backdoor_pair_finalists.is_some(),
            "--backdoor-pair-finalists",
        ),
        (
            args.backdoor_anomaly_threshold.is_some(),
            "--backdoor-anomaly-threshold",
        ),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, f)| f)
    .collect();
    if !on {
        return match given.first() {
            Some(f) => Err(bad_input(format!(
                "{f}: no backdoor scan to apply it to; add --backdoor{}",
                match (&file, config) {
                    (Some(_), Some(c)) => format!(
                        " (the [backdoor] section of {} has enabled = false)",
                        c.display()
                    ),
                    _ => " (or a [backdoor] section in robust.toml)".into(),
                }
            ))),
            None => Ok(None),
        };
    }
    let f = file.unwrap_or_default();
    let o = Origin { config };
    let bad = |what: String, why: &str| Err(bad_input(format!("{what}: {why}")));

    let scope = match (&args.backdoor_scope, &f.scope) {
        (Some(s), _) => (s.clone(), o.name(Some("backdoor-scope"), "scope")),
        (None, Some(s)) => (s.clone(), o.name(None, "scope")),
        (None, None) => ("all-sources".to_string(), String::new()),
    };
    let per_source = match scope.0.as_str() {
        "all-sources" => false,
        "per-source" => true,
        other => {
            return bad(
                format!("{} '{other}'", scope.1),
                "expected all-sources or per-source",
            )
        }
    };
    let (steps, steps_at) = pick(
        args.backdoor_steps,
        f.steps,
        100,
        "backdoor-steps",
        "steps",
        &o,
    );
    if steps == 0 {
        return bad(
            format!("{steps_at} 0"),
            "at least 1 step per class is needed",
        );
    }
    let (samples, samples_at) = pick(
        args.backdoor_samples,
        f.samples,
        1000,
        "backdoor-samples",
        "samples",
        &o,
    );
    if samples == 0 {
        return bad(
            format!("{samples_at} 0"),
            "at least 1 clean sample is needed",
        );
    }
    let (threshold, threshold_at) = pick(
        args.backdoor_anomaly_threshold,
        f.anomaly_threshold,
        2.0,
        "backdoor-anomaly-threshold",
        "anomaly_threshold",
        &o,
    );
    if !(threshold.is_finite() && threshold > 0.0) {
        return bad(
            format!("{threshold_at} {threshold}"),
            "must be a positive number",
        );
    }
    let pair_flags = [
        (
            args.backdoor_pair_screen_steps.is_some(),
            f.pair_screen_steps.is_some(),
            "backdoor-pair-screen-steps",
            "pair_screen_steps",
        ),
        (
            args.backdoor_pair_finalists.is_some(),
            f.pair_finalists.is_some(),
            "backdoor-pair-finalists",
            "pair_finalists",
        ),
    ];
    if !per_source {
        if let Some((flag, _, name, key)) = pair_flags.iter().find(|p| p.0 || p.1) {
            return bad(
                o.name(flag.then_some(*name), key),
                "applies to the per-source scope only",
            );
        }
    }
    let pairs = if per_source {
        let (screen_steps, screen_at) = pick(
            args.backdoor_pair_screen_steps,
            f.pair_screen_steps,
            PairConfig::default().screen_steps,
            "backdoor-pair-screen-steps",
            "pair_screen_steps",
            &o,
        );
        let (finalists, finalists_at) = pick(
            args.backdoor_pair_finalists,
            f.pair_finalists,
            PairConfig::default().finalists,
            "backdoor-pair-finalists",
            "pair_finalists",
            &o,
        );
        if screen_steps == 0 {
            return bad(
                format!("{screen_at} 0"),
                "the screen needs at least 1 step per pair",
            );
        }
        if finalists == 0 {
            return bad(
                format!("{finalists_at} 0"),
                "at least 1 finalist source per target is needed",
            );
        }
        Some(PairConfig {
            screen_steps,
            finalists,
        })
    } else {
        None
    };
    let d = CleanseConfig::default();
    if f.batch_size == Some(0) {
        return bad(
            format!("{} 0", o.name(None, "batch_size")),
            "must be at least 1",
        );
    }
    let cfg = CleanseConfig {
        steps,
        batch_size: f.batch_size.unwrap_or(d.batch_size),
        measure_batch_size: d.measure_batch_size,
        batches_per_step: f.batches_per_step,
        learning_rate: f.lr.unwrap_or(d.learning_rate),
        init_cost: f.init_cost.unwrap_or(d.init_cost),
        cost_multiplier: f.cost_multiplier.unwrap_or(d.cost_multiplier),
        patience: f.patience.unwrap_or(d.patience),
        success_threshold: f.success_threshold.unwrap_or(d.success_threshold),
        early_stop: f.early_stop.unwrap_or(d.early_stop),
        early_stop_threshold: d.early_stop_threshold,
        early_stop_patience: f.early_stop_patience.unwrap_or(d.early_stop_patience),
        seed,
    };
    // What is left to check comes from the file only (the flags were checked above).
    cfg.validate()
        .map_err(|e| bad_input(format!("{}: {e}", o.section())))?;
    Ok(Some(BackdoorPlan {
        cfg,
        pairs,
        samples,
        threshold,
        batch_size_set: f.batch_size.is_some(),
    }))
}

/// Runs the scan on up to `plan.samples` samples of `dataset` (the evaluated samples, read
/// as images of `shape`), with a progress bar unless `quiet`; returns the report section.
pub(crate) fn scan(
    model: &Model,
    device: &ComputeDevice,
    dataset: &Dataset,
    shape: [usize; 3],
    plan: &BackdoorPlan,
    quiet: bool,
) -> anyhow::Result<robust_report::BackdoorScan> {
    let info = model.info();
    let mut cfg = plan.cfg.clone();
    // On wgpu no batch may need a buffer larger than the device allows (as in eval).
    cfg.batch_size = super::eval::capped_batch_size(
        plan.batch_size_set.then_some(cfg.batch_size),
        cfg.batch_size,
        device,
        info,
        quiet,
    )?;
    cfg.measure_batch_size =
        super::eval::capped_batch_size(None, cfg.measure_batch_size, device, info, true)?;
    let source = Path::new(&dataset.info().source);
    let clean = super::backdoor::clean_subset(
        dataset,
        shape,
        plan.samples,
        cfg.seed,
        info.num_classes,
        source,
    )?;
    let pb = super::backdoor::bar(
        planned_steps(info.num_classes, &cfg, plan.pairs.as_ref()) as u64,
        quiet,
        super::backdoor::TRIGGER_BAR,
    );
    pb.set_message("backdoor scan");
    let started = Instant::now();
    let report = search_triggers(
        model,
        &clean,
        &cfg,
        plan.pairs.as_ref(),
        plan.threshold,
        &mut |e| super::backdoor::show_step(&pb, e),
    )
    .map_err(|e| bad_input(format!("{}: backdoor scan: {e}", info.path.display())))?;
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    scan_section(&report, clean.len(), shape, info.bounds, seconds)
        .map_err(|e| bad_input(format!("{}: backdoor scan: {e}", info.path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> EvalBackdoorArgs {
        EvalBackdoorArgs {
            backdoor: true,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_those_of_robust_backdoor_and_the_seed_is_evals() {
        let p = plan(&args(), None, None, 9).unwrap().unwrap();
        let want = CleanseConfig {
            seed: 9,
            ..CleanseConfig::default()
        };
        assert_eq!(p.cfg, want);
        assert_eq!((p.samples, p.threshold, p.pairs), (1000, 2.0, None));
        assert!(plan(&EvalBackdoorArgs::default(), None, None, 0)
            .unwrap()
            .is_none());
    }

    /// Flags beat the file; the file's section turns the scan on; `enabled = false` off.
    #[test]
    fn flags_override_the_file() {
        let file = BackdoorConfig {
            scope: Some("per-source".into()),
            steps: Some(7),
            pair_finalists: Some(1),
            lr: Some(0.05),
            ..Default::default()
        };
        let none = EvalBackdoorArgs::default();
        let p = plan(&none, Some(file.clone()), None, 0).unwrap().unwrap();
        assert_eq!((p.cfg.steps, p.cfg.learning_rate), (7, 0.05));
        assert_eq!(
            p.pairs,
            Some(PairConfig {
                screen_steps: 10,
                finalists: 1
            })
        );
        let mut a = args();
        a.backdoor_steps = Some(3);
        let p = plan(&a, Some(file.clone()), None, 0).unwrap().unwrap();
        assert_eq!(p.cfg.steps, 3);
        let off = BackdoorConfig {
            enabled: Some(false),
            ..file
        };
        assert!(plan(&none, Some(off.clone()), None, 0).unwrap().is_none());
        assert!(plan(&args(), Some(off), None, 0).unwrap().is_some());
    }

    #[test]
    fn bad_values_name_the_flag_or_the_key() {
        let cfg = Path::new("conf/robust.toml");
        let err = |a: EvalBackdoorArgs, f: Option<BackdoorConfig>| {
            plan(&a, f, Some(cfg), 0).unwrap_err().to_string()
        };
        let mut a = args();
        a.backdoor_steps = Some(0);
        assert_eq!(
            err(a, None),
            "--backdoor-steps 0: at least 1 step per class is needed"
        );
        let mut a = args();
        a.backdoor_scope = Some("some".into());
        assert_eq!(
            err(a, None),
            "--backdoor-scope 'some': expected all-sources or per-source"
        );
        let mut a = args();
        a.backdoor_pair_finalists = Some(2);
        assert_eq!(
            err(a, None),
            "--backdoor-pair-finalists: applies to the per-source scope only"
        );
        let f = BackdoorConfig {
            success_threshold: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            err(EvalBackdoorArgs::default(), Some(f)),
            "conf/robust.toml: [backdoor]: the attack success threshold must lie in (0, 1]"
        );
        let f = BackdoorConfig {
            samples: Some(0),
            ..Default::default()
        };
        assert_eq!(
            err(EvalBackdoorArgs::default(), Some(f)),
            "conf/robust.toml: [backdoor] samples 0: at least 1 clean sample is needed"
        );
        let a = EvalBackdoorArgs {
            backdoor_steps: Some(5),
            ..Default::default()
        };
        assert!(err(a, None).starts_with("--backdoor-steps: no backdoor scan to apply it to"));
    }
}
