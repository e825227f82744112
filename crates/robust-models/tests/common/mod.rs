//! Shared helpers for the model tests: fixture paths, npy reading, the device list.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file under `models/`.
pub fn model_file(rel: &str) -> PathBuf {
    root().join("models").join(rel)
}

/// Reads an npy file as f64 values plus its shape (any numeric dtype).
pub fn read_npy(path: &PathBuf) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let npyz::DType::Plain(ty) = dtype else {
        panic!("unexpected npy dtype")
    };
    let data: Vec<f64> = match (ty.type_char(), ty.size_field()) {
        (npyz::TypeChar::Float, 4) => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        (npyz::TypeChar::Float, 8) => npy.into_vec::<f64>().unwrap(),
        (npyz::TypeChar::Int, 8) => npy
            .into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (npyz::TypeChar::Uint, 1) => npy
            .into_vec::<u8>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("unexpected npy type {other:?}"),
    };
    (data, shape)
}

/// An npy file as a rank-4 f32 tensor.
pub fn npy_tensor4(path: &PathBuf, device: &Device) -> Tensor<4> {
    let (data, shape) = read_npy(path);
    let data: Vec<f32> = data.into_iter().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// The devices every numerical test runs on: the CPU, and wgpu when an adapter exists.
/// With `ROBUST_REQUIRE_WGPU=1` (set by CI, which installs lavapipe) a missing wgpu adapter
/// fails the test instead of skipping the device.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut out = vec![(
        "cpu",
        robust_models::select_device(robust_models::DeviceChoice::Cpu)
            .unwrap()
            .device,
    )];
    match robust_models::select_device(robust_models::DeviceChoice::Wgpu) {
        Ok(d) => out.push(("wgpu", d.device)),
        Err(e) => {
            if std::env::var("ROBUST_REQUIRE_WGPU").as_deref() == Ok("1") {
                panic!("wgpu is required by ROBUST_REQUIRE_WGPU=1 but unavailable: {e}");
            }
            eprintln!("note: skipping the wgpu device: {e}");
        }
    }
    out
}

/// Host copy of a tensor.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    robust_models::to_host(t)
}

/// Cross-entropy (summed) of logits against labels, per PyTorch's `reduction='sum'`.
pub fn ce_sum(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [n, k] = logits.dims();
    let mut hot = vec![0f32; n * k];
    for (i, &y) in labels.iter().enumerate() {
        hot[i * k + y] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(hot, [n, k]), &logits.device());
    (burn::tensor::activation::log_softmax(logits, 1) * onehot)
        .sum()
        .neg()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}
