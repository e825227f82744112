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

/// At ImageNet size (3×224×224) the input gradient of a smooth network with the operators
/// ResNets use at large planes (a 7×7 stride-2 stem, stride-2 3×3 and 1×1 convolutions,
/// global average pooling) is the same on every device: a gradient right at 32×32 was once
/// wrong at 224×224 on the GPU path. tanh instead of ReLU leaves no kinks, so the devices
/// must agree to float32 rounding (1e-4 of the largest entry).
#[test]
fn imagenet_size_gradients_agree_across_devices() {
    let layers = [
        ("c0", 3, 8, 7, 2, 3),
        ("c1", 8, 16, 3, 2, 1),
        ("c2", 16, 24, 3, 1, 1),
        ("c3", 24, 32, 1, 2, 0),
    ];
    let mut arch = Vec::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut seed = 1u64;
    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    for (name, cin, cout, k, s, p) in layers {
        arch.push(format!(
            r#"{{"type": "conv2d", "name": "{name}", "in": {cin}, "out": {cout}, "kernel": {k}, "stride": {s}, "padding": {p}}}, {{"type": "tanh"}}"#
        ));
        let fan_in = (cin * k * k) as f32;
        tensors.push((
            format!("{name}.weight"),
            vec![cout, cin, k, k],
            random(cout * cin * k * k, 1.5 / fan_in.sqrt()),
        ));
        tensors.push((format!("{name}.bias"), vec![cout], random(cout, 0.1)));
    }
    arch.push(r#"{"type": "global_avgpool"}, {"type": "flatten"}, {"type": "linear", "name": "fc", "in": 32, "out": 10}"#.into());
    tensors.push(("fc.weight".into(), vec![10, 32], random(320, 0.5)));
    tensors.push(("fc.bias".into(), vec![10], random(10, 0.1)));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("arch.json"),
        format!(
            r#"{{"input_shape": [3, 224, 224], "layers": [{}]}}"#,
            arch.join(", ")
        ),
    )
    .unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let weights = tmp.path().join("model.safetensors");
    std::fs::write(&weights, safetensors::serialize(views, None).unwrap()).unwrap();

    let x_host = random(2 * 3 * 224 * 224, 0.5)
        .into_iter()
        .map(|v| v + 0.5)
        .collect::<Vec<f32>>();
    let w_host = random(20, 1.0);
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    for (dev, device) in devices() {
        let model = Model::load(&ModelSpec::new(&weights), &device).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(x_host.clone(), [2, 3, 224, 224]), &device);
        let r = Reference {
            logits64: vec![],
            grad64: vec![],
            logit_tol: 0.0,
            grad_tol: 0.0,
            w: w_host.clone(),
            classes: 10,
        };
        let (_, g) = run(&model, x, &r);
        assert!(g.iter().any(|v| *v != 0.0), "{dev}: zero gradient");
        results.push((dev, g));
    }
    for (dev, g) in &results[1..] {
        let e = rel_err(g, &results[0].1);
        println!("224x224 gradient, {dev} against cpu: {e:.2e}");
        assert!(
            e < 1e-4,
            "{dev}: the 224x224 gradient differs from the CPU's by {e}"
        );
    }
    // The CPU gradient against central finite differences (the network is smooth).
    let device = devices()[0].1.clone();
    let model = Model::load(&ModelSpec::new(&weights), &device).unwrap();
    let loss = |v: &[f32]| -> f64 {
        let x = Tensor::<4>::from_data(TensorData::new(v.to_vec(), [2, 3, 224, 224]), &device);
        let l = host(model.forward(x).unwrap());
        l.iter().zip(&w_host).map(|(a, b)| f64::from(a * b)).sum()
    };
    let g = &results[0].1;
    let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
    for idx in [1234usize, 50_000, 77_777, 150_527, 200_001, 299_999] {
        let h = 1e-2f32;
        let (mut plus, mut minus) = (x_host.clone(), x_host.clone());
        plus[idx] += h;
        minus[idx] -= h;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(h));
        assert!(
            (fd - g[idx]).abs() <= 2e-2 * gmax,
            "pixel {idx}: finite difference {fd}, gradient {}",
            g[idx]
        );
    }
}
