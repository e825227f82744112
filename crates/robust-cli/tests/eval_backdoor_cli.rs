//! `robust eval --backdoor` end to end: Neural Cleanse as a section of eval's reports, on
//! `models/poisoned-cnn` (a 4×4 patch turns sevens into ones).
//!
//! The section's numbers are checked against an independent path through the CLI: `robust
//! backdoor` run on the same data with the same settings and seed must find the same
//! triggers (norms, indices, flags, attack success), and the masks it writes as .npy must
//! have the norms the section reports. Then `robust report` must re-render the section from
//! results.json alone (byte for byte the page eval wrote), and a results file without the
//! section (as older versions wrote) must still render.
//!
//! Budget, to stay well under a minute on two cores: the first 200 images of
//! `datasets/mnist-demo`, FGSM at one ε, 20 trigger steps per class (all sources; about
//! 4 s per run here) and a small per-source budget (2 screen steps per pair, 1 finalist of
//! 8 steps per target, on a seeded draw of 150 of the 200 samples).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{robust, root, stderr, write_npy};

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn read_npy<T: npyz::Deserialize>(p: &Path) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<T>().unwrap())
}

/// The first `n` demo images and labels as `dir/images.npy` + `dir/labels.npy`.
fn demo_subset(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (_, images) = read_npy::<u8>(&root().join("datasets/mnist-demo/images.npy"));
    let (_, labels) = read_npy::<i64>(&root().join("datasets/mnist-demo/labels.npy"));
    write_npy(
        &dir.join("images.npy"),
        &[n as u64, 28, 28],
        &images[..n * 784],
    );
    write_npy(&dir.join("labels.npy"), &[n as u64], &labels[..n]);
    dir.join("images.npy")
}

const POISONED: &str = "models/poisoned-cnn/model.onnx";

/// `robust eval` on the poisoned model with one cheap attack, no robust.toml (an empty
/// config file, or `config`), and `extra` flags.
fn eval(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "--config",
        config.to_str().unwrap(),
        "--model",
        POISONED,
        "--data",
        data.to_str().unwrap(),
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    robust(&args)
}

/// `robust backdoor` on the same data.
fn backdoor(data: &Path, out: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec![
        "backdoor",
        "--model",
        POISONED,
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = robust(&args);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    (o, read_json(&out.join("backdoor.json")))
}

/// The section's rows equal `robust backdoor`'s, field by field, and its norms are the L1
/// norms of the masks `robust backdoor` wrote.
fn assert_same_triggers(section: &serde_json::Value, bd: &serde_json::Value, masks_npy: &Path) {
    let rows = section["classes"].as_array().unwrap();
    let theirs = bd["classes"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(theirs.len(), 10);
    let (shape, masks) = read_npy::<f32>(masks_npy);
    assert_eq!(shape, vec![10, 28, 28]);
    for (k, (a, b)) in rows.iter().zip(theirs).enumerate() {
        for field in [
            "class",
            "norm",
            "anomaly_index",
            "below_median",
            "flagged",
            "attack_success",
            "attack_samples",
            "steps",
            "final_cost",
        ] {
            assert_eq!(a[field], b[field], "class {k}: {field}");
        }
        assert_eq!(a["reached_threshold"], b["reached_threshold"], "class {k}");
        assert_eq!(a.get("source"), b.get("source"), "class {k}: source");
        let l1: f64 = masks[k * 784..(k + 1) * 784]
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        let norm = a["norm"].as_f64().unwrap();
        assert!(
            (norm - l1).abs() < 1e-3 * l1.max(1.0),
            "class {k}: {norm} vs {l1}"
        );
    }
    assert_eq!(section["flagged"], bd["flagged"]);
    assert_eq!(section["median_norm"], bd["median_norm"]);
    assert_eq!(section["mad"], bd["mad"]);
}

/// The backdoor checks of a results file.
fn backdoor_checks(results: &serde_json::Value) -> Vec<serde_json::Value> {
    results["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "backdoor/neural-cleanse")
        .cloned()
        .collect()
}

#[test]
fn eval_backdoor_matches_robust_backdoor_and_rerenders() {
    let dir = tempfile::tempdir().unwrap();
    let data = demo_subset(&dir.path().join("data"), 200);
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();

    // The independent path first, at the paper's threshold: its indices choose a threshold
    // that flags exactly the class of largest index below the median (class 1, measured),
    // so that eval's warning path is exercised.
    let bd_out = dir.path().join("bd");
    let (_, bd) = backdoor(
        &data,
        &bd_out,
        &["--steps", "20", "--seed", "3", "--samples", "1000"],
    );
    let mut below: Vec<(f64, u64)> = bd["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["below_median"] == true)
        .map(|c| {
            (
                c["anomaly_index"].as_f64().unwrap(),
                c["class"].as_u64().unwrap(),
            )
        })
        .collect();
    below.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(
        below[0].1, 1,
        "class 1 has the most anomalous trigger: {below:?}"
    );
    let threshold = format!("{}", (below[0].0 + below[1].0) / 2.0);
    let bd2_out = dir.path().join("bd2");
    let (bo2, bd2) = backdoor(
        &data,
        &bd2_out,
        &[
            "--steps",
            "20",
            "--seed",
            "3",
            "--anomaly-threshold",
            &threshold,
        ],
    );
    assert_eq!(bd2["flagged"], serde_json::json!([1]));
    assert_eq!(
        bo2.status.code(),
        Some(1),
        "robust backdoor fails on a flag"
    );

    let out = dir.path().join("eval");
    let o = eval(
        &data,
        &empty,
        &out,
        &[
            "--seed",
            "3",
            "--backdoor",
            "--backdoor-steps",
            "20",
            "--backdoor-anomaly-threshold",
            &threshold,
        ],
    );
    // A flagged class is a warning: eval's exit code stays the gate's (none here: 0).
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = read_json(&out.join("results.json"));
    let section = &results["backdoor"];
    assert_eq!(section["scope"], "all-sources");
    assert_eq!(section["samples"], 200);
    assert_eq!(section["seed"], 3);
    assert_eq!(section["settings"]["steps"], 20);
    assert_eq!(section["mask_pixels"], 784);
    assert!(section["duration_s"].as_f64().unwrap() > 0.0);
    assert_same_triggers(section, &bd2, &bd2_out.join("backdoor_masks.npy"));
    assert_eq!(section["flagged"], serde_json::json!([1]));

    // Images: the flagged class and the five smallest, and only those.
    let rows = section["classes"].as_array().unwrap();
    let mut by_norm: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(k, c)| (c["norm"].as_f64().unwrap(), k))
        .collect();
    by_norm.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut want: Vec<usize> = by_norm[..5].iter().map(|&(_, k)| k).collect();
    if !want.contains(&1) {
        want.push(1);
    }
    want.sort_unstable();
    let imaged: Vec<usize> = (0..10)
        .filter(|&k| rows[k].get("images").is_some())
        .collect();
    assert_eq!(imaged, want);
    let mask_png = rows[1]["images"]["mask_png"].as_str().unwrap();
    assert!(mask_png.starts_with("iVBORw0KGgo"), "a PNG");

    // The warning check, and no other backdoor check.
    let checks = backdoor_checks(&results);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["status"], "warn");
    let msg = checks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("1 class flagged as a possible backdoor target (class 1: mask L1"),
        "{msg}"
    );

    // The three renderings.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let verdict: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("backdoor scan (Neural Cleanse): "))
        .collect();
    assert_eq!(verdict.len(), 1, "{stdout}");
    assert!(verdict[0].contains("1 class flagged"), "{}", verdict[0]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Backdoor scan (Neural Cleanse)"));
    assert!(html.contains(&format!("data:image/png;base64,{mask_png}")));
    assert!(html.contains("backdoor?"), "the flagged row's badge");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("### Backdoor scan (Neural Cleanse)"), "{md}");
    assert!(md.contains("⚠️ flagged"), "{md}");
    let norm1 = format!("| 1 | {:.2} |", rows[1]["norm"].as_f64().unwrap());
    assert!(md.contains(&norm1), "{norm1} in {md}");

    // `robust report` re-renders the section from results.json alone: the same page.
    let re = dir.path().join("re");
    let r = robust(&[
        "report",
        out.join("results.json").to_str().unwrap(),
        "--format",
        "html,md",
        "--out",
        re.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(
        std::fs::read_to_string(re.join("report.html")).unwrap(),
        html
    );
    assert_eq!(std::fs::read_to_string(re.join("summary.md")).unwrap(), md);

    // A results file without the section (as older versions wrote) still renders, without
    // a backdoor section.
    let mut old = results.clone();
    old.as_object_mut().unwrap().remove("backdoor");
    old["checks"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "backdoor/neural-cleanse");
    let old_path = dir.path().join("old.json");
    std::fs::write(&old_path, serde_json::to_string_pretty(&old).unwrap()).unwrap();
    let old_out = dir.path().join("old");
    let r = robust(&[
        "report",
        old_path.to_str().unwrap(),
        "--format",
        "html,md",
        "--out",
        old_out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let old_html = std::fs::read_to_string(old_out.join("report.html")).unwrap();
    assert!(old_html.contains("Robustness report"));
    assert!(!old_html.contains("Backdoor scan"));
    assert!(!std::fs::read_to_string(old_out.join("summary.md"))
        .unwrap()
        .contains("Backdoor scan"));
}

/// `[backdoor]` in robust.toml turns the scan on, with its settings: here the per-source
/// scope on a seeded draw of 150 of the 200 samples, which `robust backdoor` with the same
/// settings and `--seed` reproduces. No class is flagged at this budget (measured): the
/// check passes.
#[test]
fn robust_toml_section_runs_the_per_source_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = demo_subset(&dir.path().join("data"), 200);
    let config = dir.path().join("robust.toml");
    std::fs::write(
        &config,
        "[eval]\nseed = 5\n\n[backdoor]\nscope = \"per-source\"\nsteps = 40\n\
         pair_screen_steps = 3\npair_finalists = 1\nsamples = 150\n",
    )
    .unwrap();
    let out = dir.path().join("eval");
    let o = eval(&data, &config, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = read_json(&out.join("results.json"));
    let section = &results["backdoor"];
    assert_eq!(section["scope"], "per-source");
    assert_eq!(section["samples"], 150);
    assert_eq!(section["seed"], 5);
    assert_eq!(section["settings"]["pair_screen_steps"], 3);
    assert_eq!(section["settings"]["pair_finalists"], 1);
    for c in section["classes"].as_array().unwrap() {
        assert!(c["source"].is_u64(), "every class has its source: {c}");
    }

    let bd_out = dir.path().join("bd");
    let (_, bd) = backdoor(
        &data,
        &bd_out,
        &[
            "--scope",
            "per-source",
            "--steps",
            "40",
            "--pair-screen-steps",
            "3",
            "--pair-finalists",
            "1",
            "--samples",
            "150",
            "--seed",
            "5",
        ],
    );
    assert_same_triggers(section, &bd, &bd_out.join("backdoor_masks.npy"));

    let flagged = section["flagged"].as_array().unwrap();
    assert!(
        flagged.is_empty(),
        "measured: no flag at this budget: {section:#}"
    );
    let checks = backdoor_checks(&results);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["status"], "pass");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Backdoor scan (Neural Cleanse)"));
    assert!(
        html.contains("<th>From</th>"),
        "per-source rows name the source"
    );
}

#[test]
fn bad_backdoor_options_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("datasets/mnist-demo/images.npy");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let toml = |name: &str, body: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("[backdoor]\n{body}\n")).unwrap();
        p
    };
    let cases: Vec<(PathBuf, Vec<&str>, String)> = vec![
        (
            empty.clone(),
            vec!["--backdoor", "--backdoor-steps", "0"],
            "--backdoor-steps 0".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor", "--backdoor-scope", "sideways"],
            "--backdoor-scope 'sideways': expected all-sources or per-source".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor", "--backdoor-samples", "0"],
            "--backdoor-samples 0".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor", "--backdoor-anomaly-threshold=-1"],
            "--backdoor-anomaly-threshold -1".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor", "--backdoor-pair-finalists", "2"],
            "--backdoor-pair-finalists: applies to the per-source scope only".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor-steps", "5"],
            "--backdoor-steps: no backdoor scan to apply it to".into(),
        ),
        (
            empty.clone(),
            vec!["--backdoor", "--shard", "0/2"],
            "--backdoor cannot run in a shard".into(),
        ),
        (
            toml("steps0.toml", "steps = 0"),
            vec![],
            "steps0.toml: [backdoor] steps 0".into(),
        ),
        (
            toml("unknown.toml", "stepz = 3"),
            vec![],
            "unknown.toml: invalid configuration".into(),
        ),
        (
            toml("success.toml", "success_threshold = 2.0"),
            vec![],
            "success.toml: [backdoor]: the attack success threshold must lie in (0, 1]".into(),
        ),
        (
            toml("scope.toml", "scope = \"everything\""),
            vec![],
            "scope.toml: [backdoor] scope 'everything'".into(),
        ),
        (
            toml("off.toml", "enabled = false"),
            vec!["--backdoor-samples", "10"],
            "has enabled = false".into(),
        ),
    ];
    for (config, extra, needle) in cases {
        let out = dir.path().join("out");
        let o = eval(&data, &config, &out, &extra);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?} {config:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{extra:?}: {err}"
        );
        assert!(err.contains(&needle), "{extra:?}: {err} lacks {needle}");
        assert!(!out.exists(), "{extra:?} left an output folder");
    }
}
