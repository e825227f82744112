//! `--mlflow URI` on `eval`, `drift` and `scan`: after the local outputs are written, the
//! run goes to an MLflow tracking server (see `robust_monitor::mlflow`).
//!
//! Settings come from the flags, else from the `[mlflow]` table of the configuration
//! (`eval`: the file it reads; `drift` and `scan`: `robust.toml` in the current
//! directory, if present, of which only `[mlflow]` is read). Logging is on when a
//! tracking URI is given either way. A server that cannot be reached or refuses is a
//! one-line warning and the exit code is the command's own; with `--mlflow-required` (or
//! `required = true`) it is an error, exit 2. Either way the local outputs were written
//! first, so nothing is lost.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use robust_monitor::mlflow::{log_run, MlflowConfig, MlflowTarget, RunRecord, DEFAULT_EXPERIMENT};
use serde_json::Value;

use crate::exit::bad_input;

/// Longest one request to the tracking server may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The MLflow flags shared by `eval`, `drift` and `scan`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MlflowArgs {
    /// Log this run to the MLflow tracking server at URI (http://host:port), after the
    /// local outputs are written [default: tracking_uri of robust.toml's `[mlflow]`].
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// MLflow experiment [default: experiment of `[mlflow]`, else "robust"].
    #[arg(long, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
    /// MLflow run name [default: run_name of `[mlflow]`, else the command and the time].
    #[arg(long, value_name = "NAME")]
    pub mlflow_run_name: Option<String>,
    /// Extra MLflow tag, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub mlflow_tag: Vec<(String, String)>,
    /// Make a failure to log to MLflow an error (exit 2) instead of a warning.
    #[arg(long)]
    pub mlflow_required: bool,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Reads the `[mlflow]` table of a configuration file (nothing when the file or the
/// table is absent); errors name the file.
pub fn read_config(path: &Path) -> anyhow::Result<Option<MlflowConfig>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad_input(format!("cannot read {}: {e}", path.display()))),
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| bad_input(format!("{}: {}", path.display(), one_line(&e.to_string()))))?;
    match table.get("mlflow") {
        None => Ok(None),
        Some(v) => v
            .clone()
            .try_into()
            .map(Some)
            .map_err(|e: toml::de::Error| {
                bad_input(format!(
                    "{}: [mlflow]: {}",
                    path.display(),
                    one_line(&e.to_string())
                ))
            }),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl MlflowArgs {
    /// The target, if logging is on: flags over the `[mlflow]` table of `config` (a file
    /// that may not exist). A malformed URI or a `--mlflow-required` without a URI is
    /// bad input, reported before any work is done.
    pub fn target(&self, config: Option<&Path>) -> anyhow::Result<Option<MlflowTarget>> {
        let cfg = match config {
            Some(p) => read_config(p)?.unwrap_or_default(),
            None => MlflowConfig::default(),
        };
        let required = self.mlflow_required || cfg.required.unwrap_or(false);
        let Some(uri) = self.mlflow.clone().or(cfg.tracking_uri) else {
            if required {
                return Err(bad_input(
                    "--mlflow-required needs a tracking server: --mlflow URI or [mlflow] \
                     tracking_uri in robust.toml",
                ));
            }
            return Ok(None);
        };
        // Checks the URI's form now, not after the run.
        robust_monitor::MlflowClient::new(&uri, TIMEOUT).map_err(bad_input)?;
        let mut tags: BTreeMap<String, String> = cfg.tags;
        tags.extend(self.mlflow_tag.iter().cloned());
        Ok(Some(MlflowTarget {
            tracking_uri: uri,
            experiment: self
                .mlflow_experiment
                .clone()
                .or(cfg.experiment)
                .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string()),
            run_name: self.mlflow_run_name.clone().or(cfg.run_name),
            tags,
            required,
        }))
    }
}

/// `robust.toml` in the current directory, the configuration `drift` and `scan` read
/// `[mlflow]` from.
pub fn default_config() -> &'static Path {
    Path::new("robust.toml")
}

/// Sends `record`; prints where it went, or a one-line warning (an error with
/// `required`).
pub fn send(
    target: Option<&MlflowTarget>,
    command: &str,
    mut record: RunRecord,
) -> anyhow::Result<()> {
    let Some(target) = target else {
        return Ok(());
    };
    record.tag("robust.command", command);
    record.tag("mlflow.source.name", format!("robust {command}"));
    record.tag("mlflow.source.type", "LOCAL");
    let name = format!(
        "robust-{command}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    match log_run(target, &name, &record, TIMEOUT) {
        Ok(run) => {
            println!(
                "mlflow: logged run {} in experiment '{}': {}",
                run.run_id,
                target.experiment,
                run.ui_url(&target.tracking_uri)
            );
            Ok(())
        }
        Err(e) if target.required => Err(bad_input(format!(
            "{e} (--mlflow-required; the local outputs were written)"
        ))),
        Err(e) => {
            eprintln!("warning: not logged to MLflow: {e}; the local outputs were written");
            Ok(())
        }
    }
}

/// Adds `value` as parameters under `prefix`: objects and arrays flattened with `.`
/// (arrays of scalars kept whole, as JSON), strings as they are.
pub fn params_from_json(record: &mut RunRecord, prefix: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                params_from_json(record, &format!("{prefix}.{k}"), v);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            record.param(prefix, s);
        }
        other => {
            record.param(prefix, other);
        }
    }
}

/// An ε as it reads in the results (`0.03`, not `0.029999999329447746`): robust's ε are
/// `f32` values, written as their shortest `f32` decimal.
pub fn eps_key(eps: f64) -> String {
    (eps as f32).to_string()
}

/// The record of an `eval` run: its settings as parameters, accuracies as metrics, git
/// commit, signature and gate as tags, and `results.json` and `report.html` from `out`.
pub fn eval_record(run: &robust_report::RunResults, out: &Path) -> anyhow::Result<RunRecord> {
    let mut r = RunRecord::default();
    r.param("seed", run.seed);
    r.param("device.requested", &run.device.requested);
    r.param("device.backend", &run.device.backend);
    r.param("device.adapter", &run.device.adapter);
    r.param("robust.version", &run.tool.version);
    r.param("burn.version", &run.tool.burn_version);
    r.param("model.path", &run.model.path);
    r.param("model.sha256", &run.model.sha256);
    r.param("model.format", &run.model.format);
    r.param("model.input_shape", format!("{:?}", run.model.input_shape));
    r.param("model.bounds", format!("{:?}", run.model.bounds));
    if let Some(m) = &run.model.mean {
        r.param("model.mean", format!("{m:?}"));
    }
    if let Some(s) = &run.model.std {
        r.param("model.std", format!("{s:?}"));
    }
    r.param("model.num_classes", run.model.num_classes);
    r.param("data.source", &run.dataset.source);
    r.param("data.format", &run.dataset.format);
    r.param("data.size", run.dataset.size);
    if let Some(d) = &run.dataset.samples_sha256 {
        r.param("data.samples_sha256", d);
    }
    if let Some(e) = run.primary_eps {
        r.param("primary_eps", eps_key(e));
    }
    r.metric("clean_accuracy", run.clean_accuracy);
    r.metric("duration_s", run.duration_s);
    for a in &run.attacks {
        r.param(&format!("attack.{}.name", a.label), &a.name);
        r.param(&format!("attack.{}.norm", a.label), &a.norm);
        params_from_json(
            &mut r,
            &format!("attack.{}", a.label),
            &Value::Object(a.params.clone()),
        );
        let eps: Vec<String> = a.points.iter().map(|p| eps_key(p.eps)).collect();
        r.param(&format!("attack.{}.eps", a.label), eps.join(","));
        for p in &a.points {
            let e = eps_key(p.eps);
            r.metric(
                &format!("robust_accuracy/{}/eps_{e}", a.label),
                p.robust_accuracy,
            );
            r.metric(
                &format!("attack_success_rate/{}/eps_{e}", a.label),
                p.attack_success_rate,
            );
        }
    }
    for w in &run.worst_case {
        r.metric(
            &format!("robust_accuracy/worst_case/eps_{}", eps_key(w.eps)),
            w.robust_accuracy,
        );
    }
    if let Some(c) = &run.tool.git_commit {
        r.tag("mlflow.source.git.commit", c);
    }
    r.tag(
        "robust.signature",
        match run.model.signature_verified {
            Some(true) => "verified",
            Some(false) => "not verified",
            None => "not checked",
        },
    );
    r.tag(
        "robust.gate",
        match &run.gate {
            Some(g) if g.passed => "passed",
            Some(_) => "failed",
            None => "none",
        },
    );
    for name in ["results.json", "report.html"] {
        let path = out.join(name);
        let bytes = std::fs::read(&path)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
        r.artifact(name, bytes);
    }
    Ok(r)
}

/// Logs an `eval` run from the outputs it wrote to `out` (`results.json`,
/// `report.html`); a no-op without a target.
pub fn after_eval(target: Option<&MlflowTarget>, out: &Path) -> anyhow::Result<()> {
    let Some(target) = target else {
        return Ok(());
    };
    let run = robust_report::RunResults::read(out.join("results.json")).map_err(bad_input)?;
    send(Some(target), "eval", eval_record(&run, out)?)
}

/// The record of a `scan` run: its settings, the counts of each screen, the model's
/// digest, and the JSON report (and the HTML one, when written) as artifacts.
pub fn scan_record(
    args: &super::scan::ScanArgs,
    report: &super::scan::ScanReport,
    json: &[u8],
    html: Option<&[u8]>,
) -> RunRecord {
    let mut r = RunRecord::default();
    r.param("data.source", &report.data.source);
    r.param("data.format", &report.data.format);
    r.param("data.shape", format!("{:?}", report.data.shape));
    if let Some(limit) = args.limit {
        r.param("limit", limit);
    }
    r.param("max_hamming", args.max_hamming);
    r.param("max_distance", args.max_distance);
    if let Some(m) = &report.model {
        r.param("model.path", &m.path);
        r.param("model.sha256", &m.sha256);
        r.param("confidence", args.confidence);
        r.param("fence", args.fence);
    }
    r.metric("scan.samples", report.data.samples as f64);
    r.metric("scan.flagged_samples", report.flagged_samples as f64);
    r.metric(
        "scan.exact_duplicate_groups",
        report.duplicates.groups.exact.len() as f64,
    );
    r.metric(
        "scan.near_duplicate_groups",
        report.duplicates.groups.near.len() as f64,
    );
    r.metric(
        "scan.constant_features",
        report.summary.constant_features as f64,
    );
    if let Some(l) = &report.label_disagreements {
        r.metric("scan.label_disagreements", l.samples.len() as f64);
    }
    if let Some(s) = &report.spectral_signatures {
        r.metric("scan.spectral_flagged", s.report.flagged.len() as f64);
    }
    r.tag(
        "robust.scan",
        if report.flagged_samples > 0 {
            "findings"
        } else {
            "clean"
        },
    );
    r.artifact("scan.json", json.to_vec());
    if let Some(h) = html {
        r.artifact("scan.html", h.to_vec());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_keys_read_as_written() {
        assert_eq!(eps_key(f64::from(0.03f32)), "0.03");
        assert_eq!(eps_key(0.03), "0.03");
        assert_eq!(eps_key(8.0 / 255.0), (8.0f32 / 255.0).to_string());
        assert_eq!(eps_key(0.0), "0");
    }

    #[test]
    fn tags_need_a_key() {
        assert_eq!(parse_tag("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("x").is_err());
    }
}
