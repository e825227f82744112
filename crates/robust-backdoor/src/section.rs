//! A Neural Cleanse run as the backdoor section of an evaluation's results
//! ([`robust_report::BackdoorScan`], written by `robust eval --backdoor`).
//!
//! The numbers are the report's own (norms, anomaly indices, attack success); the triggers
//! of the flagged classes and of the [`robust_report::backdoor::IMAGED_SMALLEST`] classes of
//! smallest norm are stored as PNG images (mask, pattern mapped to `[0, 1]`, and their
//! product), so the section re-renders from the results file without the model, and the
//! file stays small however many classes the model has.

use robust_report::{BackdoorClass, BackdoorScan, BackdoorSettings, TriggerImages};

use crate::cleanse::CleanseReport;
use crate::error::{BackdoorError, Result};

/// The section of `report`, a search on `samples` clean samples of images of shape
/// `[C, H, W]` (`shape`) within `bounds`, that took `seconds`.
pub fn scan_section(
    report: &CleanseReport,
    samples: usize,
    shape: [usize; 3],
    bounds: [f32; 2],
    seconds: f64,
) -> Result<BackdoorScan> {
    let [c, h, w] = shape;
    let cfg = &report.config;
    let mut classes: Vec<BackdoorClass> = report
        .triggers
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let index = report.anomaly.index.get(k).copied().unwrap_or(0.0);
            BackdoorClass {
                class: t.class,
                source: t.source,
                norm: t.norm,
                anomaly_index: index.is_finite().then_some(index),
                below_median: t.norm < report.anomaly.median,
                flagged: report.flagged.contains(&t.class),
                reached_threshold: t.reached,
                attack_success: t.attack_success,
                attack_samples: t.attack_samples,
                steps: t.steps,
                final_cost: t.final_cost,
                images: None,
            }
        })
        .collect();
    let mut scan = BackdoorScan {
        method: "neural-cleanse".into(),
        scope: report.scope.name().into(),
        samples,
        seed: cfg.seed,
        duration_s: seconds,
        settings: BackdoorSettings {
            steps: cfg.steps,
            batch_size: cfg.batch_size,
            batches_per_step: cfg.batches_per_step,
            learning_rate: cfg.learning_rate,
            init_cost: cfg.init_cost,
            cost_multiplier: cfg.cost_multiplier,
            patience: cfg.patience,
            success_threshold: cfg.success_threshold,
            early_stop: cfg.early_stop,
            early_stop_patience: cfg.early_stop_patience,
            pair_screen_steps: report.pairs.as_ref().map(|p| p.screen_steps),
            pair_finalists: report.pairs.as_ref().map(|p| p.finalists),
        },
        anomaly_threshold: report.threshold,
        median_norm: report.anomaly.median,
        mad: report.anomaly.mad,
        mask_pixels: h * w,
        classes: Vec::new(),
        flagged: report.flagged.clone(),
    };
    // Which classes get images: decided on the rows, by the report crate's rule.
    scan.classes = classes.clone();
    let shown: Vec<usize> = scan.shown_classes().iter().map(|r| r.class).collect();
    for k in shown {
        let t = &report.triggers[k];
        classes[k].images = Some(trigger_images(&t.mask, &t.pattern, [c, h, w], bounds)?);
    }
    scan.classes = classes;
    Ok(scan)
}

/// The mask (`H · W` values in `[0, 1]`), the pattern (`C · H · W` within `bounds`) and
/// their product as base64 PNG images. Patterns with a channel count other than 1 or 3
/// show their first channel.
pub fn trigger_images(
    mask: &[f32],
    pattern: &[f32],
    shape: [usize; 3],
    bounds: [f32; 2],
) -> Result<TriggerImages> {
    let [c, h, w] = shape;
    if mask.len() != h * w || pattern.len() != c * h * w {
        return Err(BackdoorError::Input(format!(
            "a trigger of {} mask and {} pattern values does not fit images of shape {shape:?}",
            mask.len(),
            pattern.len()
        )));
    }
    let shown = if c == 3 { 3 } else { 1 };
    let span = bounds[1] - bounds[0];
    let unit: Vec<f32> = pattern[..shown * h * w]
        .iter()
        .map(|v| (v - bounds[0]) / span)
        .collect();
    let stamped: Vec<f32> = unit
        .iter()
        .enumerate()
        .map(|(i, p)| p * mask[i % (h * w)])
        .collect();
    let png = |values: &[f32], channels: usize| {
        robust_report::png_base64(w as u32, h as u32, channels as u32, values)
            .map_err(|e| BackdoorError::Render(e.to_string()))
    };
    Ok(TriggerImages {
        mask_png: png(mask, 1)?,
        pattern_png: png(&unit, shown)?,
        trigger_png: png(&stamped, shown)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::anomaly_index;
    use crate::cleanse::{CleanseConfig, Scope, Trigger};

    fn trigger(class: usize, norm_pixels: usize) -> Trigger {
        let mut mask = vec![0.0f32; 16];
        for v in mask.iter_mut().take(norm_pixels) {
            *v = 1.0;
        }
        Trigger {
            class,
            source: None,
            norm: norm_pixels as f64,
            reached: true,
            attack_success: 0.995,
            attack_samples: 90,
            steps: 7,
            final_cost: 2e-3,
            mask,
            pattern: vec![0.5; 16],
        }
    }

    /// Eight classes on 4×4 images: class 2's trigger (1 pixel) is flagged; the rows carry
    /// the report's numbers, images go to the flagged class and the five smallest only.
    #[test]
    fn the_section_carries_the_report_and_images_of_the_shown_classes() {
        let sizes = [9, 8, 1, 10, 9, 11, 8, 12];
        let triggers: Vec<Trigger> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| trigger(k, n))
            .collect();
        let norms: Vec<f64> = triggers.iter().map(|t| t.norm).collect();
        let anomaly = anomaly_index(&norms).unwrap();
        let report = CleanseReport {
            scope: Scope::AllSources,
            config: CleanseConfig {
                steps: 7,
                seed: 11,
                ..Default::default()
            },
            pairs: None,
            triggers,
            anomaly: anomaly.clone(),
            threshold: 2.0,
            flagged: vec![2],
            screen: Vec::new(),
            finals: Vec::new(),
        };
        let s = scan_section(&report, 100, [1, 4, 4], [0.0, 1.0], 1.5).unwrap();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(
            (s.scope.as_str(), s.seed, s.samples),
            ("all-sources", 11, 100)
        );
        assert_eq!(s.mask_pixels, 16);
        assert_eq!(s.median_norm, anomaly.median);
        for (k, c) in s.classes.iter().enumerate() {
            assert_eq!(c.norm, norms[k]);
            assert_eq!(c.anomaly_index, Some(anomaly.index[k]));
            assert_eq!(c.flagged, k == 2);
        }
        // Smallest five: 2 (1), 1 and 6 (8), 0 and 4 (9).
        let imaged: Vec<usize> = s
            .classes
            .iter()
            .filter(|c| c.images.is_some())
            .map(|c| c.class)
            .collect();
        assert_eq!(imaged, vec![0, 1, 2, 4, 6]);
        let im = s.classes[2].images.as_ref().unwrap();
        assert!(im.mask_png.starts_with("iVBORw0KGgo"));
        assert_ne!(im.mask_png, im.pattern_png);
    }

    #[test]
    fn a_trigger_of_the_wrong_size_is_refused() {
        let e = trigger_images(&[0.0; 15], &[0.0; 16], [1, 4, 4], [0.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("15 mask"), "{e}");
    }
}
