//! Sending a run to an MLflow tracking server through its REST API (no Python involved).
//!
//! A [`RunRecord`] is what one `robust` command has to say: parameters, metrics, tags and
//! artifact files. [`log_run`] sends it to the server named by an [`MlflowTarget`]:
//!
//! 1. the experiment is looked up by name (`GET /api/2.0/mlflow/experiments/get-by-name`)
//!    and created when missing (`POST .../experiments/create`);
//! 2. a run is created (`POST .../runs/create`) with its name, start time and tags;
//! 3. parameters, metrics and tags go in `POST .../runs/log-batch` requests, chunked to
//!    the server's limits (100 parameters, 100 tags, 1000 metrics a request);
//! 4. each artifact is uploaded through the tracking server's artifact proxy (`PUT
//!    /api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts/<name>`, the default
//!    of `mlflow server`; a server that stores artifacts elsewhere without serving them is
//!    reported as an error);
//! 5. the run is marked `FINISHED` (`POST .../runs/update`). If a step after the run was
//!    created fails, the run is marked `FAILED` (best effort) and the error is returned.
//!
//! Only `http://` URIs are supported: this build carries no TLS stack. The server's
//! standard client variables are honoured for authentication: `MLFLOW_TRACKING_TOKEN`
//! (a bearer token), or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic
//! authentication).
//!
//! MLflow's own limits are kept by the record: keys are at most 250 characters of
//! letters, digits and `_ - . / space` (other characters become `_`), parameter values
//! at most 6000 characters and tag values 8000 (longer values are cut, ending in `…`),
//! metrics must be finite (others are left out and counted in the tag
//! `robust.metrics_skipped`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{MonitorError, Result};

/// The `[mlflow]` table of `robust.toml`.
///
/// ```toml
/// [mlflow]
/// tracking_uri = "http://127.0.0.1:5000"
/// experiment = "robust"          # default "robust"
/// run_name = "nightly"           # default: the command and the time
/// required = false               # true: an unreachable server is an error (exit 2)
/// tags = { team = "vision" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// The tracking server, e.g. `http://127.0.0.1:5000`.
    pub tracking_uri: Option<String>,
    /// The experiment's name.
    pub experiment: Option<String>,
    /// The run's name.
    pub run_name: Option<String>,
    /// Whether a failure to log is an error rather than a warning.
    pub required: Option<bool>,
    /// Extra tags set on every run.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where and how to log: a resolved [`MlflowConfig`] plus command-line overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowTarget {
    /// The tracking server's base URI (`http://host:port[/prefix]`).
    pub tracking_uri: String,
    /// The experiment's name.
    pub experiment: String,
    /// The run's name; `None` lets the caller choose one.
    pub run_name: Option<String>,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
    /// Whether a failure to log is an error.
    pub required: bool,
}

/// Default experiment name.
pub const DEFAULT_EXPERIMENT: &str = "robust";
/// Longest parameter value MLflow accepts.
pub const MAX_PARAM_VALUE: usize = 6000;
/// Longest tag value MLflow accepts.
pub const MAX_TAG_VALUE: usize = 8000;
/// Longest key MLflow accepts.
pub const MAX_KEY: usize = 250;

/// What one command logs: parameters, metrics, tags and artifacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    /// Parameters (keys are made valid; a later value for a key replaces an earlier one).
    pub params: BTreeMap<String, String>,
    /// Metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Artifacts: file name in the run's artifact folder, and content.
    pub artifacts: Vec<(String, Vec<u8>)>,
}

impl RunRecord {
    /// Adds a parameter (the value cut to [`MAX_PARAM_VALUE`] characters).
    pub fn param(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.params
            .insert(clean_key(key), cut(&value.to_string(), MAX_PARAM_VALUE));
        self
    }

    /// Adds a metric.
    pub fn metric(&mut self, key: &str, value: f64) -> &mut Self {
        self.metrics.insert(clean_key(key), value);
        self
    }

    /// Adds a tag (the value cut to [`MAX_TAG_VALUE`] characters).
    pub fn tag(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.tags
            .insert(clean_key(key), cut(&value.to_string(), MAX_TAG_VALUE));
        self
    }

    /// Adds an artifact; `name` must be a plain file name.
    pub fn artifact(&mut self, name: &str, content: Vec<u8>) -> &mut Self {
        self.artifacts.push((name.to_string(), content));
        self
    }
}

/// A key MLflow accepts: characters outside `[A-Za-z0-9_\-./ ]` become `_`, at most
/// [`MAX_KEY`] characters, never empty.
pub fn clean_key(key: &str) -> String {
    let k: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_KEY)
        .collect();
    if k.is_empty() {
        "_".into()
    } else {
        k
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A run that was logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRun {
    /// The experiment's id.
    pub experiment_id: String,
    /// The run's id.
    pub run_id: String,
    /// The run's artifact URI as the server reports it.
    pub artifact_uri: String,
}

impl LoggedRun {
    /// The run's page in the MLflow UI served at `tracking_uri`.
    pub fn ui_url(&self, tracking_uri: &str) -> String {
        format!(
            "{}/#/experiments/{}/runs/{}",
            tracking_uri.trim_end_matches('/'),
            self.experiment_id,
            self.run_id
        )
    }
}

/// A blocking client of MLflow's REST API.
#[derive(Debug)]
pub struct MlflowClient {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl MlflowClient {
    /// A client for the server at `tracking_uri` (`http://host:port[/prefix]`); each
    /// request may take up to `timeout`. Authentication comes from the environment (see
    /// the [module documentation](self)).
    pub fn new(tracking_uri: &str, timeout: Duration) -> Result<Self> {
        let base = tracking_uri.trim().trim_end_matches('/').to_string();
        let bad = |reason: &str| MonitorError::Mlflow {
            uri: tracking_uri.to_string(),
            reason: reason.to_string(),
        };
        if base.starts_with("https://") {
            return Err(bad(
                "https:// is not supported (this build of robust has no TLS); use the \
                 server's http:// address, e.g. through an SSH tunnel",
            ));
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(bad(
                "expected an http:// tracking server address such as http://127.0.0.1:5000 \
                 (start one with `mlflow server --backend-store-uri sqlite:///mlruns.db`)",
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let auth = auth_header(
            std::env::var("MLFLOW_TRACKING_TOKEN").ok(),
            std::env::var("MLFLOW_TRACKING_USERNAME").ok(),
            std::env::var("MLFLOW_TRACKING_PASSWORD").ok(),
        );
        Ok(MlflowClient { base, agent, auth })
    }

    /// The base URI.
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    fn err(&self, reason: impl Into<String>) -> MonitorError {
        MonitorError::Mlflow {
            uri: self.base.clone(),
            reason: reason.into(),
        }
    }

    /// Turns a transport error or a non-2xx answer into a one-line error; returns the
    /// JSON body of a success.
    fn answer(
        &self,
        what: &str,
        result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut response = result.map_err(|e| self.err(format!("{what}: {}", transport(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.err(format!("{what}: cannot read the answer: {e}")))?;
        if (200..300).contains(&status) {
            if body.trim().is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_str(&body)
                .map_err(|e| self.err(format!("{what}: the answer is not JSON ({e})")));
        }
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .map(|v| {
                format!(
                    "{} {}",
                    v["error_code"].as_str().unwrap_or(""),
                    v["message"].as_str().unwrap_or("")
                )
                .trim()
                .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| body.chars().take(200).collect::<String>());
        let detail = detail.replace(['\n', '\r'], " ");
        Err(self.err(format!("{what}: HTTP {status}: {detail}")))
    }

    fn post(&self, path: &str, what: &str, body: &Value) -> Result<Value> {
        let mut req = self
            .agent
            .post(format!("{}/api/2.0/mlflow/{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        self.answer(what, req.send(body.to_string()))
    }

    fn get(&self, path: &str, what: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut req = self.agent.get(format!("{}/api/2.0/{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        self.answer(what, req.call())
    }

    /// The id of the experiment called `name`, created when it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        match self.get(
            "mlflow/experiments/get-by-name",
            "get the experiment",
            &[("experiment_name", name)],
        ) {
            Ok(v) => {
                let exp = &v["experiment"];
                if exp["lifecycle_stage"] == "deleted" {
                    return Err(self.err(format!(
                        "the experiment '{name}' is deleted; restore it (mlflow experiments \
                         restore) or choose another name"
                    )));
                }
                return id_field(exp, "experiment_id").ok_or_else(|| {
                    self.err("get the experiment: the answer has no experiment_id")
                });
            }
            Err(MonitorError::Mlflow { reason, .. })
                if reason.contains("RESOURCE_DOES_NOT_EXIST") || reason.contains("HTTP 404") => {}
            Err(e) => return Err(e),
        }
        match self.post(
            "experiments/create",
            "create the experiment",
            &json!({ "name": name }),
        ) {
            Ok(v) => id_field(&v, "experiment_id")
                .ok_or_else(|| self.err("create the experiment: the answer has no experiment_id")),
            // Created by someone else in the meantime.
            Err(MonitorError::Mlflow { reason, .. })
                if reason.contains("RESOURCE_ALREADY_EXISTS") =>
            {
                let v = self.get(
                    "mlflow/experiments/get-by-name",
                    "get the experiment",
                    &[("experiment_name", name)],
                )?;
                id_field(&v["experiment"], "experiment_id")
                    .ok_or_else(|| self.err("get the experiment: the answer has no experiment_id"))
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a run; returns (run id, artifact URI).
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &BTreeMap<String, String>,
        start_ms: u64,
    ) -> Result<(String, String)> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let v = self.post(
            "runs/create",
            "create the run",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_ms,
                "tags": tags,
            }),
        )?;
        let info = &v["run"]["info"];
        let run_id = id_field(info, "run_id")
            .or_else(|| id_field(info, "run_uuid"))
            .ok_or_else(|| self.err("create the run: the answer has no run_id"))?;
        let artifact_uri = info["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((run_id, artifact_uri))
    }

    /// Logs parameters, metrics and tags, in as many requests as the server's limits need.
    /// Non-finite metrics are left out; returns how many were.
    pub fn log_batch(&self, run_id: &str, record: &RunRecord, timestamp_ms: u64) -> Result<usize> {
        let params: Vec<Value> = record
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let tags: Vec<Value> = record
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let finite: Vec<Value> = record
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp_ms, "step": 0}))
            .collect();
        let skipped = record.metrics.len() - finite.len();
        for chunk in params.chunks(100) {
            self.post(
                "runs/log-batch",
                "log parameters",
                &json!({"run_id": run_id, "params": chunk}),
            )?;
        }
        for chunk in tags.chunks(100) {
            self.post(
                "runs/log-batch",
                "log tags",
                &json!({"run_id": run_id, "tags": chunk}),
            )?;
        }
        for chunk in finite.chunks(1000) {
            self.post(
                "runs/log-batch",
                "log metrics",
                &json!({"run_id": run_id, "metrics": chunk}),
            )?;
        }
        Ok(skipped)
    }

    /// Uploads one artifact file into the run's artifact folder through the server's
    /// `mlflow-artifacts` proxy.
    pub fn upload_artifact(&self, artifact_uri: &str, name: &str, content: &[u8]) -> Result<()> {
        let url = self.artifact_url(artifact_uri, name)?;
        let mut req = self
            .agent
            .put(url)
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        self.answer(&format!("upload the artifact {name}"), req.send(content))?;
        Ok(())
    }

    /// Downloads one artifact file of a run through the `mlflow-artifacts` proxy.
    pub fn download_artifact(&self, artifact_uri: &str, name: &str) -> Result<Vec<u8>> {
        let url = self.artifact_url(artifact_uri, name)?;
        let mut req = self.agent.get(url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let what = format!("download the artifact {name}");
        let mut response = req
            .call()
            .map_err(|e| self.err(format!("{what}: {}", transport(&e))))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.err(format!("{what}: HTTP {status}")));
        }
        response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| self.err(format!("{what}: {e}")))
    }

    /// The proxy URL of artifact `name` under a run's `mlflow-artifacts:` URI.
    fn artifact_url(&self, artifact_uri: &str, name: &str) -> Result<String> {
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return Err(self.err(format!("artifact name {name:?} is not a plain file name")));
        }
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(self.err(format!(
                "the server stores this run's artifacts at {artifact_uri}, which robust can \
                 only reach through the server's artifact proxy (mlflow-artifacts:/...); \
                 start `mlflow server` with artifact serving on (the default, not \
                 --no-serve-artifacts)"
            )));
        };
        // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
        let path = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map(|x| x.1).unwrap_or(""),
            None => rest,
        };
        let path = path.trim_matches('/');
        let encode = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
        let path: Vec<String> = path.split('/').map(encode).collect();
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            self.base,
            path.join("/"),
            encode(name)
        ))
    }

    /// Marks a run `FINISHED` or `FAILED`.
    pub fn set_status(&self, run_id: &str, finished: bool, end_ms: u64) -> Result<()> {
        self.post(
            "runs/update",
            "mark the run",
            &json!({
                "run_id": run_id,
                "status": if finished { "FINISHED" } else { "FAILED" },
                "end_time": end_ms,
            }),
        )?;
        Ok(())
    }

    /// The run as the server returns it (`GET /api/2.0/mlflow/runs/get`): `info` and
    /// `data` (`params`, `metrics`, `tags` as lists of `{key, value}`).
    pub fn get_run(&self, run_id: &str) -> Result<Value> {
        let v = self.get("mlflow/runs/get", "get the run", &[("run_id", run_id)])?;
        Ok(v["run"].clone())
    }
}

/// Characters escaped in one URL path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn id_field(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One line for a transport error: refused, unreachable, timed out.
fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the server running?)".into()
            }
            _ => format!("cannot connect: {io}"),
        },
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string().replace(['\n', '\r'], " "),
    }
}

fn auth_header(
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
) -> Option<String> {
    use base64::Engine as _;
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return Some(format!("Bearer {t}"));
    }
    match (user, password) {
        (Some(u), Some(p)) if !u.is_empty() => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends `record` as a new run of `target`'s experiment (see the
/// [module documentation](self)). `default_run_name` is used when the target names none.
/// The target's tags are added to the record's (the record's win on a clash).
pub fn log_run(
    target: &MlflowTarget,
    default_run_name: &str,
    record: &RunRecord,
    timeout: Duration,
) -> Result<LoggedRun> {
    let client = MlflowClient::new(&target.tracking_uri, timeout)?;
    let start = now_ms();
    let experiment_id = client.experiment_id(&target.experiment)?;
    let run_name = target
        .run_name
        .clone()
        .unwrap_or_else(|| default_run_name.to_string());
    let mut tags = target.tags.clone();
    tags.extend(record.tags.clone());
    let (run_id, artifact_uri) = client.create_run(&experiment_id, &run_name, &tags, start)?;
    let logged = LoggedRun {
        experiment_id,
        run_id: run_id.clone(),
        artifact_uri: artifact_uri.clone(),
    };
    let rest = (|| -> Result<()> {
        let mut record = record.clone();
        record.tags.clear(); // sent with the run
        let skipped = client.log_batch(&run_id, &record, start)?;
        if skipped > 0 {
            let mut note = RunRecord::default();
            note.tag("robust.metrics_skipped", skipped);
            client.log_batch(&run_id, &note, start)?;
        }
        for (name, content) in &record.artifacts {
            client.upload_artifact(&artifact_uri, name, content)?;
        }
        client.set_status(&run_id, true, now_ms())
    })();
    match rest {
        Ok(()) => Ok(logged),
        Err(e) => {
            // Best effort: the run exists, so say that it did not complete.
            let _ = client.set_status(&run_id, false, now_ms());
            Err(match e {
                MonitorError::Mlflow { uri, reason } => MonitorError::Mlflow {
                    uri,
                    reason: format!("run {run_id} marked FAILED: {reason}"),
                },
                other => other,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_valid_and_values_cut() {
        assert_eq!(
            clean_key("robust_accuracy/PGD-10 Linf/eps=0.03"),
            "robust_accuracy/PGD-10 Linf/eps_0.03"
        );
        assert_eq!(clean_key(""), "_");
        assert_eq!(clean_key(&"k".repeat(300)).len(), MAX_KEY);
        let mut r = RunRecord::default();
        r.param("p", "x".repeat(7000));
        assert_eq!(r.params["p"].chars().count(), MAX_PARAM_VALUE);
        assert!(r.params["p"].ends_with('…'));
    }

    #[test]
    fn artifact_urls_through_the_proxy() {
        let c = MlflowClient::new("http://127.0.0.1:5000/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.artifact_url("mlflow-artifacts:/1/abc/artifacts", "report.html")
                .unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/report.html"
        );
        assert_eq!(
            c.artifact_url("mlflow-artifacts://h:5000/1/abc/artifacts", "a b.json")
                .unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/a%20b.json"
        );
        let err = c
            .artifact_url("/srv/mlruns/1/abc/artifacts", "x")
            .unwrap_err();
        assert!(err.to_string().contains("artifact proxy"), "{err}");
        assert!(c.artifact_url("mlflow-artifacts:/1", "../x").is_err());
    }

    #[test]
    fn only_http_uris() {
        for bad in [
            "https://mlflow.example",
            "sqlite:///mlruns.db",
            "localhost:5000",
            "http://",
        ] {
            let err = MlflowClient::new(bad, Duration::from_secs(1)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("MLflow tracking server {bad}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_refused_connection_is_one_line() {
        // Bind a port, then close it: nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = MlflowTarget {
            tracking_uri: format!("http://127.0.0.1:{port}"),
            experiment: "x".into(),
            run_name: None,
            tags: BTreeMap::new(),
            required: false,
        };
        let err = log_run(&target, "r", &RunRecord::default(), Duration::from_secs(5)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("connection refused"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn auth_from_the_environment_variables() {
        assert_eq!(
            auth_header(Some("t".into()), None, None).unwrap(),
            "Bearer t"
        );
        // base64("u:p") = dTpw
        assert_eq!(
            auth_header(None, Some("u".into()), Some("p".into())).unwrap(),
            "Basic dTpw"
        );
        assert_eq!(auth_header(None, Some("u".into()), None), None);
    }
}
