//! Results, reliability checks, regression gate and reports of a robustness evaluation.
//!
//! `robust eval` measures how a classifier's accuracy falls under adversarial attacks
//! (FGSM, PGD, ...) as the perturbation budget epsilon grows. This crate owns everything
//! that happens to those measurements afterwards, and nothing that needs a model or a GPU:
//!
//! * **The schema** ([`RunResults`] and friends, module [`schema`]): the one JSON document
//!   a run produces. It is versioned ([`SCHEMA_VERSION`]), written atomically and read back
//!   with errors that name the file. Every other part reads only this type, so a report
//!   can be re-rendered from an archived results file without rerunning anything.
//! * **Reliability checks** ([`reliability_checks`]): an evaluation can only show that an
//!   attack failed, not that the model is robust. The checks look for the warning signs of
//!   a weak evaluation listed by Carlini et al., *On Evaluating Adversarial Robustness*
//!   (accuracy rising with epsilon, accuracy above chance at an epsilon large enough to
//!   erase any image, iterative attacks weaker than single-step ones, dead gradients) and
//!   explain each finding in words a non-expert can act on.
//! * **The gate** ([`evaluate_gate`]): minimum robust accuracies and a maximum drop against
//!   a baseline run, for CI. A point that disappeared from the run fails the gate rather
//!   than passing silently.
//! * **Backdoor scan** ([`BackdoorScan`], module [`backdoor`]): with `robust eval
//!   --backdoor`, Neural Cleanse's per-class trigger norms, stored with their images so the
//!   section re-renders from the file; a flagged class adds a warning check
//!   ([`backdoor_check`]), not a gate failure.
//! * **History** ([`append_history`], [`read_history`]): one JSON line per run, charted
//!   over time in the HTML report.
//! * **Renderings** ([`render_html`], [`render_markdown`], [`render_junit`]): a
//!   self-contained HTML page (inline CSS and SVG charts, images as `data:` URIs, nothing
//!   loaded from the network; templates under `templates/`, auto-escaped), a Markdown
//!   summary for pull requests, and JUnit XML for CI test views.
//!
//! Renderers are pure functions from results to text; the caller decides where text goes.
//!
//! # Example
//!
//! ```
//! use robust_report::*;
//!
//! let mut run = RunResults {
//!     schema_version: SCHEMA_VERSION,
//!     clean_accuracy: 0.9,
//!     attacks: vec![AttackResult {
//!         name: "pgd".into(),
//!         label: "PGD-10 Linf".into(),
//!         norm: "linf".into(),
//!         points: vec![EpsPoint { eps: 0.03, robust_accuracy: 0.4, n: 100, ..Default::default() }],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! run.checks = reliability_checks(&run, &CheckOptions::default());
//! let thresholds = Thresholds {
//!     min: vec![MinRule { attack: "pgd".into(), eps: Some(0.03), min_robust_accuracy: 0.5 }],
//!     max_drop: None,
//! };
//! run.gate = Some(evaluate_gate(&run, None, &thresholds));
//! assert!(!run.gate.as_ref().unwrap().passed); // 40% < 50%
//!
//! let html = render_html(&run, &HtmlOptions::default()).unwrap();
//! assert!(html.contains("<svg"));
//! assert!(render_markdown(&run).contains("❌"));
//! assert!(render_junit(&run).contains("<failure"));
//! ```

pub mod backdoor;
pub mod checks;
mod components;
mod error;
mod format;
pub mod gate;
pub mod history;
mod images;
pub mod indicators;
mod minimum_norm;
pub mod render;
pub mod schema;
#[cfg(test)]
mod testing;

pub use backdoor::{
    backdoor_check, backdoor_verdict, BackdoorClass, BackdoorScan, BackdoorSettings, TriggerImages,
    BACKDOOR_CHECK_ID,
};
pub use checks::{reliability_checks, stronger_attack_check, stronger_attack_checks, CheckOptions};
pub use components::components_line;
pub use error::{ReportError, Result};
pub use gate::{evaluate_gate, threshold_text, unlike_baseline, MinRule, Thresholds};
pub use history::{append_history, read_history, HistoryEntry, HistoryPoint};
pub use images::{perturbation_to_unit, png_base64};
pub use minimum_norm::median_perturbation_line;
pub use render::html::{render_html, HtmlOptions, REPORT_CSS};
pub use render::junit::render_junit;
pub use render::markdown::render_markdown;
pub use render::{headlines, Headline};
pub use schema::{
    eps_eq, write_atomic, AttackResult, AuditFinding, Check, CheckStatus, DataConversion,
    DatasetInfo, DeviceInfo, EpsPoint, Example, GateReport, GateRow, ModelAudit, ModelInfo,
    OutputProbe, Probes, RandomnessProbe, RunResults, ToolInfo, UnconstrainedProbe, UnstableProbe,
    WorstCasePoint, EPS_TOLERANCE, SCHEMA_VERSION,
};
