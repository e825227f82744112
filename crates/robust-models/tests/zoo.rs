//! Miniature torchvision and timm architectures (the real classes with tiny widths, made by
//! `models/make_zoo.py`), exported by both PyTorch exporters, against PyTorch in float64:
//! logits and the input gradient of `sum(logits * W)`, on every device this machine has.
//!
//! The tolerance is PyTorch float32's own error against float64, times 3, or 1e-4 relative
//! to the largest entry where that is larger: robust must be as close to the exact answer
//! as PyTorch itself is.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use common::*;
use robust_models::{Model, ModelSpec};

/// Every fixture folder: `models/zoo-tv/*` and `models/zoo-timm/*`.
fn fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for family in ["zoo-tv", "zoo-timm"] {
        let Ok(rd) = std::fs::read_dir(model_file(family)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().join("input.npy").is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The `.onnx` files of a fixture (legacy, dynamo and variants).
fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale.max(f64::MIN_POSITIVE)
}

struct Reference {
    logits64: Vec<f64>,
    grad64: Vec<f64>,
    logit_tol: f64,
    grad_tol: f64,
    w: Vec<f32>,
    classes: usize,
}

fn reference(dir: &Path) -> Reference {
    let p = |f: &str| dir.join(f);
    let (logits32, lshape) = read_npy(&p("logits32.npy"));
    let (logits64, _) = read_npy(&p("logits64.npy"));
    let (grad32, _) = read_npy(&p("grad32.npy"));
    let (grad64, _) = read_npy(&p("grad64.npy"));
    let (w, _) = read_npy(&p("w.npy"));
    Reference {
        logit_tol: f64::max(1e-4, 3.0 * rel_err(&logits32, &logits64)),
        grad_tol: f64::max(1e-4, 3.0 * rel_err(&grad32, &grad64)),
        logits64,
        grad64,
        w: w.into_iter().map(|v| v as f32).collect(),
        classes: lshape[1],
    }
}

/// Logits and the input gradient of `sum(logits * W)`.
fn run(model: &Model, x: Tensor<4>, r: &Reference) -> (Vec<f64>, Vec<f64>) {
    let n = x.dims()[0];
    let ad = x.device().autodiff();
    let xg = x.autodiff().require_grad();
    let logits = model.forward(xg.clone()).unwrap();
    let w = Tensor::<2>::from_data(TensorData::new(r.w.clone(), [n, r.classes]), &ad);
    let grads = (logits.clone() * w).sum().backward();
    let g = host(xg.grad(&grads).expect("input gradient"));
    (
        host(logits.detach()).into_iter().map(f64::from).collect(),
        g.into_iter().map(f64::from).collect(),
    )
}

#[test]
fn miniature_architectures_match_float64_pytorch() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 20,
        "expected the miniature zoo under models/zoo-*, found {}",
        fixtures.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for (dev, device) in devices() {
        for dir in &fixtures {
            let r = reference(dir);
            let x = npy_tensor4(&dir.join("input.npy"), &device);
            for file in onnx_files(dir) {
                let name = format!(
                    "{}/{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    file.file_name().unwrap().to_string_lossy()
                );
                let model = match Model::load(&ModelSpec::new(&file), &device) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(format!("{dev} {name}: does not load: {e}"));
                        continue;
                    }
                };
                let (logits, grad) = run(&model, x.clone(), &r);
                let (le, ge) = (rel_err(&logits, &r.logits64), rel_err(&grad, &r.grad64));
                let ok = le <= r.logit_tol && ge <= r.grad_tol;
                println!(
                    "{dev:4} {name:40} logits {le:.1e} (tol {:.1e})  grad {ge:.1e} (tol {:.1e}) {}",
                    r.logit_tol,
                    r.grad_tol,
                    if ok { "ok" } else { "FAIL" }
                );
                if !ok {
                    failures.push(format!(
                        "{dev} {name}: logits {le:.2e} (tol {:.2e}), gradient {ge:.2e} (tol {:.2e})",
                        r.logit_tol, r.grad_tol
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A dynamo export without a dynamic batch (`resnet18/dynamo_fixed.onnx`, batch 2 baked
/// into a Reshape) is made batch-independent at load, says so, and gives every sample the
/// same logits at batch sizes 1 and 3 as the float64 reference.
#[test]
fn a_fixed_batch_export_runs_at_any_batch_size() {
    let dir = model_file("zoo-tv/resnet18");
    let r = reference(&dir);
    let device = devices()[0].1.clone();
    let model = Model::load(&ModelSpec::new(dir.join("dynamo_fixed.onnx")), &device).unwrap();
    let notes = model.info().notes.join("; ");
    assert!(notes.contains("fixes the batch size at 2"), "{notes}");
    let x = npy_tensor4(&dir.join("input.npy"), &device);
    let k = r.classes;
    for rows in [vec![1usize], vec![0, 1, 0]] {
        let idx = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(
                rows.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &device,
        );
        let logits = host(model.forward(x.clone().select(0, idx)).unwrap());
        for (j, &i) in rows.iter().enumerate() {
            let got: Vec<f64> = logits[j * k..(j + 1) * k]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let e = rel_err(&got, &r.logits64[i * k..(i + 1) * k]);
            assert!(e <= r.logit_tol, "batch {}: sample {i}: {e}", rows.len());
        }
    }
}

/// External data files are read only from the model's own folder.
#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let dir = model_file("zoo-tv/resnet18");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("dynamo_external.onnx")).unwrap();
    let model = tmp.path().join("m.onnx");
    std::fs::write(&model, &bytes).unwrap();
    // The data file is not beside the copy: a clear error naming the file.
    let e = Model::load(&ModelSpec::new(&model), &devices()[0].1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.onnx") && e.contains("external data"), "{e}");
    // A location that climbs out of the folder is refused before any file is opened.
    let needle = b"dynamo_external.onnx.data";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the location string");
    let mut evil = bytes.clone();
    evil[pos..pos + needle.len()].copy_from_slice(b"../../../../../etc/passwd");
    std::fs::write(&model, &evil).unwrap();
    let e = Model::load(&ModelSpec::new(&model), &devices()[0].1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain relative path"), "{e}");
}
