//! The forward pass and input gradients against PyTorch (and onnxruntime) on real fixtures
//! made by `models/make_fixtures.py`, on every device this machine has.

mod common;

use common::*;
use robust_models::{Model, ModelSpec};

const FIXTURES: &[&str] = &["mlp", "cnn-bn", "resnet", "zoo"];

/// Logits within 1e-4 of PyTorch and onnxruntime; the input gradient of the summed
/// cross-entropy against PyTorch's float64 gradient, within 1e-4 relative to the largest
/// entry, or within 3x PyTorch's own float32 error where that is larger (the deep random
/// resnet fixture's float32 noise floor is ~5e-4).
fn check_fixture(name: &str, spec: ModelSpec) {
    let dir = model_file(name);
    let (labels, _) = read_npy(&dir.join("labels.npy"));
    let labels: Vec<usize> = labels.into_iter().map(|v| v as usize).collect();
    let (ref_logits, _) = read_npy(&dir.join("logits_torch.npy"));
    let (ort_logits, _) = read_npy(&dir.join("logits_ort.npy"));
    let (ref_grad64, grad_shape) = read_npy(&dir.join("grad_torch64.npy"));
    let (ref_grad32, _) = read_npy(&dir.join("grad_torch.npy"));
    let scale = ref_grad64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let torch32_err = ref_grad32
        .iter()
        .zip(&ref_grad64)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale;
    let tolerance = f64::max(1e-4, 3.0 * torch32_err);
    for (dev_name, device) in devices() {
        let model = Model::load(&spec, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.info().num_classes, 10);
        let x = npy_tensor4(&dir.join("input.npy"), &device);
        assert_eq!(x.dims().to_vec(), grad_shape);
        let logits = host(model.forward(x.clone()).unwrap());
        let d_torch = max_abs_diff(&logits, &ref_logits);
        let d_ort = max_abs_diff(&logits, &ort_logits);
        println!(
            "{name} on {dev_name}: logits max |diff| torch {d_torch:.2e}, onnxruntime {d_ort:.2e}"
        );
        assert!(
            d_torch < 1e-4,
            "{name} on {dev_name}: logits differ from torch by {d_torch}"
        );
        assert!(
            d_ort < 1e-4,
            "{name} on {dev_name}: logits differ from onnxruntime by {d_ort}"
        );

        let ad = device.clone().autodiff();
        let xg = x.autodiff().require_grad();
        let _ = &ad;
        let loss = ce_sum(model.forward(xg.clone()).unwrap(), &labels);
        let grads = loss.backward();
        let g = host(xg.grad(&grads).expect("input gradient"));
        let d_grad = max_abs_diff(&g, &ref_grad64);
        println!("{name} on {dev_name}: gradient max |diff| {d_grad:.2e} (max |grad| {scale:.2e}, relative {:.2e})", d_grad / scale);
        assert!(scale > 0.0);
        assert!(
            d_grad / scale < tolerance,
            "{name} on {dev_name}: input gradient differs by {d_grad} (scale {scale})"
        );
    }
}

#[test]
fn onnx_fixtures_match_pytorch() {
    for name in FIXTURES {
        check_fixture(
            name,
            ModelSpec::new(model_file(&format!("{name}/model.onnx"))),
        );
    }
}

#[test]
fn safetensors_fixtures_match_pytorch() {
    for name in ["mlp", "cnn-bn"] {
        check_fixture(
            name,
            ModelSpec::new(model_file(&format!("{name}/model.safetensors"))),
        );
    }
}

/// The demo model from ONNX and from safetensors + arch.json agree, with the normalization
/// applied inside the graph.
#[test]
fn demo_model_formats_agree_with_normalization() {
    let device = devices()[0].1.clone();
    let mut spec = ModelSpec::new(model_file("mnist-cnn/model.onnx"));
    spec.mean = Some(vec![0.1307]);
    spec.std = Some(vec![0.3081]);
    let onnx = Model::load(&spec, &device).unwrap();
    spec.path = model_file("mnist-cnn/model.safetensors");
    let st = Model::load(&spec, &device).unwrap();
    let x = npy_tensor4(&model_file("mlp/input.npy"), &device);
    let a = host(onnx.forward(x.clone()).unwrap());
    let b: Vec<f64> = host(st.forward(x).unwrap())
        .into_iter()
        .map(f64::from)
        .collect();
    let d = max_abs_diff(&a, &b);
    assert!(d < 1e-4, "formats differ by {d}");
    // These real MNIST digits are classified correctly only when the normalization is applied.
    let (labels, _) = read_npy(&model_file("mlp/labels.npy"));
    let correct = (0..labels.len())
        .filter(|&i| {
            let row = &a[i * 10..(i + 1) * 10];
            let pred = (0..10).max_by(|&p, &q| row[p].total_cmp(&row[q])).unwrap();
            pred == labels[i] as usize
        })
        .count();
    assert!(correct >= 7, "only {correct}/8 correct");
}

/// Central finite differences of the summed cross-entropy against the autodiff gradient
/// on the MLP (smooth almost everywhere), at 40 pixels chosen by a fixed pattern.
#[test]
fn finite_difference_gradient_check() {
    let device = devices()[0].1.clone();
    let model = robust_models::load(model_file("mlp/model.onnx"), &device).unwrap();
    let dir = model_file("mlp");
    let (x_host, shape) = read_npy(&dir.join("input.npy"));
    let (labels, _) = read_npy(&dir.join("labels.npy"));
    let labels: Vec<usize> = labels.into_iter().map(|v| v as usize).collect();
    let x_host: Vec<f32> = x_host.into_iter().map(|v| v as f32).collect();
    let to_t = |v: &Vec<f32>| {
        burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(v.clone(), shape.clone()),
            &device,
        )
    };
    let loss_at =
        |v: &Vec<f32>| -> f64 { host(ce_sum(model.forward(to_t(v)).unwrap(), &labels))[0] as f64 };
    let xg = to_t(&x_host).autodiff().require_grad();
    let grads = ce_sum(model.forward(xg.clone()).unwrap(), &labels).backward();
    let g = host(xg.grad(&grads).unwrap());
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    for k in 0..40 {
        let idx = (k * 2_654_435_761usize) % x_host.len();
        let mut plus = x_host.clone();
        plus[idx] += h;
        let mut minus = x_host.clone();
        minus[idx] -= h;
        let fd = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h as f64);
        let err = (fd - g[idx] as f64).abs() / (1e-2 + fd.abs().max((g[idx] as f64).abs()));
        worst = worst.max(err);
    }
    println!("finite differences: worst relative error {worst:.2e}");
    assert!(worst < 2e-2, "finite differences disagree: {worst}");
}

/// A dynamic batch axis: the same model runs on batches of 1, 8 and 33.
#[test]
fn dynamic_batch() {
    let device = devices()[0].1.clone();
    let model = robust_models::load(model_file("resnet/model.onnx"), &device).unwrap();
    for n in [1usize, 8, 33] {
        let x = burn::tensor::Tensor::<4>::zeros([n, 3, 32, 32], &device);
        assert_eq!(model.forward(x).unwrap().dims(), [n, 10]);
    }
}

/// The activation sizes measured at load equal the demo CNN's architecture, worked out by
/// hand (float32, per sample): the normalized input 1×28×28; conv1 with its ReLU fused
/// (one value) 8×28×28; pool 8×14×14; conv2 with its ReLU 16×14×14; pool 16×7×7; the
/// flattened 784; dense 32 and its ReLU; the 10 logits. The largest is conv1's output.
#[test]
fn activation_sizes_match_the_demo_architecture() {
    let device = devices()[0].1.clone();
    let model = robust_models::load(model_file("mnist-cnn/model.onnx"), &device).unwrap();
    let info = model.info();
    assert_eq!(info.largest_activation_bytes_per_sample, 8 * 28 * 28 * 4);
    let floats = 784 + 8 * 28 * 28 + 8 * 14 * 14 + 16 * 14 * 14 + 16 * 7 * 7 + 784;
    let floats = floats + 2 * 32 + 10;
    assert_eq!(
        info.activation_bytes_per_sample,
        floats * 4,
        "ops: {:?}",
        info.ops
    );
}

/// A convolution output folded with its BatchNormalization (and that with its Relu) at load
/// is not available by name any more: asking for it says so and names the value that now
/// exists in its place, which works.
#[test]
fn folded_values_are_reported_by_name() {
    let device = devices()[0].1.clone();
    let model = robust_models::load(model_file("cnn-bn/model.onnx"), &device).unwrap();
    let x = burn::tensor::Tensor::<4>::zeros([2, 1, 28, 28], &device);
    let err = model
        .forward_values(x.clone(), &["/0/Conv_output_0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("folded") && err.contains("/2/Relu_output_0"),
        "{err}"
    );
    let v = model.forward_values(x, &["/2/Relu_output_0"]).unwrap();
    assert_eq!(v[0].shape[..2], [2, 8]);
}
