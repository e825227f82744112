//! Backdoors in a trained image classifier: is the model itself trojaned, and which inputs
//! carry its trigger?
//!
//! # Design
//!
//! A backdoored model behaves on clean data and switches to the attacker's class when a
//! small trigger is present. Both screens here need only what robust already has: the
//! user's model as a differentiable burn graph ([`robust_models::Model`]) and clean samples.
//!
//! * **Neural Cleanse** ([`neural_cleanse`], module [`cleanse`]) reverse-engineers, for each
//!   class, the smallest mask-and-pattern trigger that sends clean inputs of the other
//!   classes to it, by Adam on the trigger's logits through the model's input gradients.
//!   A backdoor's target class needs a much smaller trigger than the others; the
//!   median-absolute-deviation anomaly index ([`anomaly_index`]) turns "much smaller" into a
//!   test (index > 2 below the median). With a per-source scope ([`pair_cleanse`], module
//!   [`pairs`]) every (source, target) pair gets its own trigger, K-Arm-style (a short screen
//!   of all pairs, then the full budget for the smallest), for backdoors planted on one
//!   source class.
//! * **STRIP** ([`strip_screen`], module [`strip`]) screens individual inputs at run time:
//!   an input that still gets confident predictions when blended with random clean images
//!   carries something that overrides the image content. The threshold is set on clean
//!   inputs at a chosen false-positive rate.
//! * **In an evaluation's report** ([`scan_section`], module [`section`]): a Neural Cleanse
//!   run as the backdoor section of `robust eval --backdoor`'s results
//!   ([`robust_report::BackdoorScan`]), with the triggers as PNG images.
//!
//! Both are seeded (initial triggers, mini-batch order, overlay draws) and run on whatever
//! device the model was loaded on. The closed-form pieces ([`anomaly_index`],
//! [`entropy_bits`], [`threshold_at_fpr`]) are plain functions with unit tests; the
//! renderings ([`render_cleanse_html`], [`render_strip_html`]) are pure functions of the
//! results.
//!
//! # Example
//!
//! ```no_run
//! use robust_backdoor::{neural_cleanse, CleanSet, CleanseConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)?.device;
//! let model = robust_models::load("models/poisoned-cnn/model.onnx", &device)?;
//! let (pixels, labels) = (vec![0.5f32; 40 * 784], (0..40).map(|i| i % 10).collect());
//! let clean = CleanSet::new([1, 28, 28], pixels, labels)?;
//! let cfg = CleanseConfig { steps: 20, ..Default::default() };
//! let report = neural_cleanse(&model, &clean, &cfg, 2.0, &mut |_| {})?;
//! for t in &report.triggers {
//!     println!("class {}: norm {:.1}, index {:.2}", t.class, t.norm, report.anomaly.index[t.class]);
//! }
//! println!("flagged: {:?}", report.flagged);
//! # Ok(()) }
//! ```

pub mod anomaly;
pub mod cleanse;
mod data;
mod error;
pub mod pairs;
mod render;
pub mod section;
pub mod strip;

pub use anomaly::{anomaly_index, low_outliers, median, AnomalyStats};
pub use cleanse::{
    attack_success, neural_cleanse, reverse_engineer, reverse_engineer_pair, CleanseConfig,
    CleanseReport, Scope, StepEvent, Trigger,
};
pub use data::CleanSet;
pub use error::{BackdoorError, Result};
pub use pairs::{pair_cleanse, planned_steps, search_triggers, PairConfig, PairScreen};
pub use render::{render_cleanse_html, render_strip_html, PageInfo};
pub use section::{scan_section, trigger_images};
pub use strip::{
    entropy_bits, strip_entropies, strip_screen, superimpose, threshold_at_fpr, Exclude,
    ScreenedInput, StripConfig, StripReport,
};

/// SplitMix64-style mixing of several words into one seed (as robust-attacks does).
pub(crate) fn mix(words: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &w in words {
        h ^= w
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}
