//! `--mlflow` end to end against a real MLflow tracking server.
//!
//! The test starts `mlflow server --backend-store-uri sqlite:///… --host 127.0.0.1 --port
//! <free port>` from the venv `.ci/run` installs (`$ROBUST_MLFLOW`, default
//! `/var/tmp/robust-ci-venv/bin/mlflow`), runs `robust eval`, `drift` and `scan` with
//! `--mlflow`, and reads every run back with MLflow's own Python client (REST underneath):
//! parameters, metrics and tags exactly as robust wrote them in its JSON outputs, the
//! artifacts byte for byte equal to the local files, the status FINISHED. Without the
//! `mlflow` executable the test is skipped, unless `ROBUST_REQUIRE_MLFLOW=1` (set by
//! `.ci/run`), which makes a missing server a failure.
//!
//! The other tests need no server: a tracking server that is down is a one-line warning
//! (the command's own exit code, the local outputs written), and with `--mlflow-required`
//! an error, exit 2, with the local outputs still written.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn robust(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_robust"))
        .args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .output()
        .expect("robust runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two small feature tables (CSV, named columns): the second is shifted in column `b`.
fn write_tables(dir: &Path) -> (PathBuf, PathBuf) {
    let write = |name: &str, shift: f64| {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "a,b,c").unwrap();
        for i in 0..120 {
            let u = ((i * 37) % 120) as f64 / 120.0;
            let v = ((i * 53) % 120) as f64 / 120.0;
            writeln!(f, "{u},{},{}", v + shift, (u * 7.0).sin()).unwrap();
        }
        path
    };
    (write("ref.csv", 0.0), write("cur.csv", 0.35))
}

#[test]
fn a_server_that_is_down_is_a_warning_and_required_makes_it_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = write_tables(dir.path());
    let uri = format!("http://127.0.0.1:{}", free_port());
    let out = dir.path().join("drift.json");
    let args = [
        "drift",
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
        "--mlflow",
        &uri,
    ];
    let o = robust(&args);
    assert_eq!(o.status.code(), Some(1), "drift is found: {}", stderr(&o));
    let err = stderr(&o);
    let warning: Vec<&str> = err.lines().filter(|l| l.contains("MLflow")).collect();
    assert_eq!(warning.len(), 1, "{err}");
    assert!(
        warning[0].starts_with("warning: not logged to MLflow"),
        "{err}"
    );
    assert!(warning[0].contains("connection refused"), "{err}");
    assert!(out.is_file(), "the local output is written");

    std::fs::remove_file(&out).unwrap();
    let mut required = args.to_vec();
    required.push("--mlflow-required");
    let o = robust(&required);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--mlflow-required"), "{err}");
    assert!(
        out.is_file(),
        "the local output is written before the error"
    );

    // A malformed URI is refused before any work.
    let o = robust(&[
        "drift",
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--mlflow",
        "https://mlflow.example",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("https:// is not supported"),
        "{}",
        stderr(&o)
    );
    let o = robust(&[
        "drift",
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--mlflow-required",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("needs a tracking server"),
        "{}",
        stderr(&o)
    );
}

/// A running `mlflow server`, stopped (with its workers) on drop.
struct Server {
    child: Child,
    uri: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server runs in its own process group: stop its workers with it.
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args(["-s", sig, "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
        };
        signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever of the group is left (a worker that ignored TERM).
        signal("KILL");
        let _ = self.child.wait();
    }
}

fn mlflow_bin() -> Option<PathBuf> {
    let path = std::env::var_os("ROBUST_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/robust-ci-venv/bin/mlflow"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("ROBUST_REQUIRE_MLFLOW").as_deref() != Ok("1"),
        "ROBUST_REQUIRE_MLFLOW=1 but {} does not exist (.ci/run installs it)",
        path.display()
    );
    eprintln!(
        "skipped: {} not found (set ROBUST_MLFLOW, or run .ci/run to install it)",
        path.display()
    );
    None
}

fn start_server(bin: &Path, dir: &Path) -> Server {
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(bin)
        .args([
            "server",
            "--backend-store-uri",
            &format!("sqlite:///{}", dir.join("mlruns.db").display()),
            "--artifacts-destination",
            dir.join("mlartifacts").to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .current_dir(dir)
        // No background job runner (MLflow 3 starts several worker processes for it).
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("mlflow server starts");
    let server = Server {
        child,
        uri: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Listening; the first request may still wait for the database migrations.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not start in 120 s: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// Every run of `experiment`, read with MLflow's Python client: info, params, metrics,
/// tags and the SHA-256 of each artifact.
fn read_back(bin: &Path, uri: &str, experiment: &str, dir: &Path) -> Vec<Value> {
    let python = bin.with_file_name("python");
    let script = r#"
import hashlib, json, os, sys, tempfile
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1])
exp = c.get_experiment_by_name(sys.argv[2])
out = []
for run in c.search_runs([exp.experiment_id]):
    files = {}
    for a in c.list_artifacts(run.info.run_id):
        d = tempfile.mkdtemp(dir=sys.argv[3])
        p = c.download_artifacts(run.info.run_id, a.path, d)
        files[a.path] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    out.append({"run_id": run.info.run_id, "run_name": run.info.run_name,
                "status": run.info.status, "params": run.data.params,
                "metrics": run.data.metrics, "tags": run.data.tags, "artifacts": files})
print(json.dumps(out))
"#;
    let o = Command::new(python)
        .args(["-c", script, uri, experiment, dir.to_str().unwrap()])
        .output()
        .expect("python runs");
    assert!(o.status.success(), "read-back failed: {}", stderr(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn run_named<'a>(runs: &'a [Value], name: &str) -> &'a Value {
    runs.iter()
        .find(|r| r["run_name"] == name)
        .unwrap_or_else(|| panic!("no run named {name}: {runs:?}"))
}

#[test]
fn eval_drift_and_scan_runs_are_logged_exactly() {
    let Some(bin) = mlflow_bin() else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&bin, dir.path());
    let uri = server.uri.clone();
    let listening = started.elapsed().as_secs_f64();
    let exp = "robust-e2e";

    // drift: alibi-detect's KS on two tables.
    let (a, b) = write_tables(dir.path());
    let drift_json = dir.path().join("drift.json");
    let o = robust(&[
        "drift",
        "--method",
        "alibi-ks",
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--json",
        drift_json.to_str().unwrap(),
        "--mlflow",
        &uri,
        "--mlflow-experiment",
        exp,
        "--mlflow-run-name",
        "drift-1",
        "--mlflow-tag",
        "team=vision",
        "--mlflow-required",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("mlflow: logged run"), "{}", stdout(&o));

    // eval: the demo (robust.toml), small.
    let out = dir.path().join("eval");
    let o = robust(&[
        "eval",
        "--attack",
        "fgsm,pgd",
        "--eps",
        "0,0.1",
        "--limit",
        "50",
        "--quiet",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--mlflow",
        &uri,
        "--mlflow-experiment",
        exp,
        "--mlflow-run-name",
        "eval-1",
        "--mlflow-required",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // scan: the demo data set, no model.
    let scan_json = dir.path().join("scan.json");
    let o = robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--limit",
        "200",
        "--json",
        scan_json.to_str().unwrap(),
        "--mlflow",
        &uri,
        "--mlflow-experiment",
        exp,
        "--mlflow-run-name",
        "scan-1",
        "--mlflow-required",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let ran = started.elapsed().as_secs_f64();
    let runs = read_back(&bin, &uri, exp, dir.path());
    let read = started.elapsed().as_secs_f64();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for r in &runs {
        assert_eq!(r["status"], "FINISHED", "{r}");
    }

    // drift: every p-value and distance, the verdict, the settings, the JSON itself.
    let d = run_named(&runs, "drift-1");
    let local: Value =
        serde_json::from_str(&std::fs::read_to_string(&drift_json).unwrap()).unwrap();
    assert_eq!(d["params"]["method"], "alibi-ks");
    assert_eq!(d["params"]["correction"], "bonferroni");
    assert_eq!(d["params"]["p_val"], "0.05");
    assert_eq!(d["tags"]["team"], "vision");
    assert_eq!(d["tags"]["robust.command"], "drift");
    assert_eq!(d["metrics"]["drift.is_drift"], 1.0);
    assert_eq!(d["metrics"]["drift.threshold"], local["data"]["threshold"]);
    for (j, name) in ["a", "b", "c"].iter().enumerate() {
        let p = local["data"]["p_val"][j].as_f64().unwrap() as f32;
        let logged = d["metrics"][format!("drift.p_val/{name}")]
            .as_f64()
            .unwrap();
        assert_eq!(logged, f64::from(p), "p_val of {name}");
        let dist = local["data"]["distance"][j].as_f64().unwrap() as f32;
        let logged = d["metrics"][format!("drift.distance/{name}")]
            .as_f64()
            .unwrap();
        assert_eq!(logged, f64::from(dist), "distance of {name}");
    }
    assert_eq!(d["artifacts"]["drift.json"], sha256(&drift_json));

    // eval: accuracies per attack and ε, the worst case, model and data digests.
    let e = run_named(&runs, "eval-1");
    let res: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(e["metrics"]["clean_accuracy"], res["clean_accuracy"]);
    let mut points = 0;
    for a in res["attacks"].as_array().unwrap() {
        let label = a["label"].as_str().unwrap();
        for p in a["points"].as_array().unwrap() {
            let eps = (p["eps"].as_f64().unwrap() as f32).to_string();
            let key = format!("robust_accuracy/{label}/eps_{eps}");
            assert_eq!(e["metrics"][&key], p["robust_accuracy"], "{key}");
            points += 1;
        }
        assert_eq!(e["params"][format!("attack.{label}.name")], a["name"]);
    }
    assert_eq!(points, 4);
    for w in res["worst_case"].as_array().unwrap() {
        let key = format!(
            "robust_accuracy/worst_case/eps_{}",
            w["eps"].as_f64().unwrap() as f32
        );
        assert_eq!(e["metrics"][&key], w["robust_accuracy"], "{key}");
    }
    assert_eq!(e["params"]["model.sha256"], res["model"]["sha256"]);
    assert_eq!(
        e["params"]["data.samples_sha256"],
        res["dataset"]["samples_sha256"]
    );
    assert_eq!(e["params"]["seed"], "3");
    assert_eq!(e["params"]["attack.PGD-10 Linf.steps"], "10");
    assert_eq!(e["params"]["device.backend"], res["device"]["backend"]);
    assert_eq!(e["tags"]["robust.gate"], "none");
    assert_eq!(e["tags"]["robust.signature"], "not checked");
    if let Some(c) = res["tool"]["git_commit"].as_str() {
        assert_eq!(e["tags"]["mlflow.source.git.commit"], c);
    }
    assert_eq!(
        e["artifacts"]["results.json"],
        sha256(&out.join("results.json"))
    );
    assert_eq!(
        e["artifacts"]["report.html"],
        sha256(&out.join("report.html"))
    );

    // scan: counts, and its JSON.
    let s = run_named(&runs, "scan-1");
    let sj: Value = serde_json::from_str(&std::fs::read_to_string(&scan_json).unwrap()).unwrap();
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    assert_eq!(
        num(&s["metrics"]["scan.flagged_samples"]),
        num(&sj["flagged_samples"])
    );
    assert_eq!(
        num(&s["metrics"]["scan.samples"]),
        num(&sj["data"]["samples"])
    );
    assert_eq!(num(&sj["data"]["samples"]), 200.0);
    let groups = |k: &str| sj["duplicates"][k].as_array().unwrap().len() as f64;
    assert_eq!(
        num(&s["metrics"]["scan.exact_duplicate_groups"]),
        groups("exact")
    );
    assert_eq!(s["tags"]["robust.command"], "scan");
    assert_eq!(s["artifacts"]["scan.json"], sha256(&scan_json));
    drop(server);
    eprintln!(
        "mlflow end-to-end test: server listening after {listening:.1} s, robust runs done \
         after {ran:.1} s, read back after {read:.1} s, server stopped after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
