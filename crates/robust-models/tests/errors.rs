//! Every bad model input gives one clear error line naming the file, never a panic.

mod common;

use std::path::Path;

use common::*;
use onnx_ir::{Message, ModelProto};
use robust_models::{Model, ModelError, ModelSpec};

fn cpu() -> burn::tensor::Device {
    robust_models::select_device(robust_models::DeviceChoice::Cpu)
        .unwrap()
        .device
}

fn load_err(spec: &ModelSpec) -> ModelError {
    match Model::load(spec, &cpu()) {
        Ok(_) => panic!("{} loaded but should not", spec.path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            e
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn missing_file() {
    let e = load_err(&ModelSpec::new("/nonexistent/model.onnx"));
    assert!(matches!(e, ModelError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/model.onnx"), "{e}");
}

#[test]
fn random_truncated_and_empty_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(model_file("mlp/model.onnx")).unwrap();
    let mut noise = Vec::new();
    let mut state = 12345u64;
    for _ in 0..4096 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        noise.push((state >> 33) as u8);
    }
    for (name, bytes) in [
        ("random.onnx", noise),
        ("truncated.onnx", good[..good.len() / 2].to_vec()),
        ("empty.onnx", Vec::new()),
    ] {
        let p = write(dir.path(), name, &bytes);
        let e = load_err(&ModelSpec::new(&p));
        assert!(matches!(e, ModelError::Invalid { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn unsupported_operators_are_named_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut model =
        ModelProto::parse_from_bytes(&std::fs::read(model_file("mlp/model.onnx")).unwrap())
            .unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.node[1].op_type = "FancyOp".into();
    graph.node[1].name = "fancy_layer".into();
    graph.node[3].op_type = "LSTM".into();
    graph.node[3].name = "rnn".into();
    let p = write(
        dir.path(),
        "unsupported.onnx",
        &model.write_to_bytes().unwrap(),
    );
    let e = load_err(&ModelSpec::new(&p));
    let msg = e.to_string();
    assert!(matches!(e, ModelError::UnsupportedOps { .. }), "{e:?}");
    assert!(msg.contains("FancyOp (node 'fancy_layer')"), "{msg}");
    assert!(msg.contains("LSTM (node 'rnn')"), "{msg}");
}

#[test]
fn unknown_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "model.pt", b"not a model");
    assert!(matches!(
        load_err(&ModelSpec::new(&p)),
        ModelError::UnknownFormat { .. }
    ));
}

/// Rewrites the MLP's safetensors with one key removed.
#[test]
fn safetensors_missing_key_and_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(model_file("mlp/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(k, _)| k != "3.bias")
        .collect();
    let out = safetensors::serialize(kept, None).unwrap();
    let p = write(dir.path(), "model.safetensors", &out);
    std::fs::copy(model_file("mlp/arch.json"), dir.path().join("arch.json")).unwrap();
    let e = load_err(&ModelSpec::new(&p));
    assert!(matches!(e, ModelError::WeightMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("missing keys: 3.bias"), "{e}");

    // An architecture that disagrees with the weights' shapes.
    let arch = std::fs::read_to_string(model_file("mlp/arch.json"))
        .unwrap()
        .replace("\"out\": 64", "\"out\": 65");
    let arch_path = write(dir.path(), "wrong.arch.json", arch.as_bytes());
    let mut spec = ModelSpec::new(model_file("mlp/model.safetensors"));
    spec.arch = Some(arch_path);
    let e = load_err(&spec);
    let msg = e.to_string();
    assert!(
        msg.contains("shape mismatches: 1.weight is [64, 784], expected [65, 784]"),
        "{msg}"
    );
}

/// A padding of 65536 in an architecture file (found by `tests/fuzz_loaders.rs`) made the
/// probe's convolution ask for a terabyte, and the allocation aborted the process. The
/// output size is now checked against `[model.limits] max_activation_values` first.
#[test]
fn a_huge_padding_is_refused_before_it_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_file("cnn-bn/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let arch = std::fs::read_to_string(model_file("cnn-bn/arch.json")).unwrap();
    assert!(arch.contains("\"padding\": 1,"));
    for (field, value) in [("padding", "65536"), ("padding", "4294967296")] {
        let bad = arch.replacen(
            &format!("\"{field}\": 1,"),
            &format!("\"{field}\": {value},"),
            1,
        );
        write(dir.path(), "arch.json", bad.as_bytes());
        let e = load_err(&ModelSpec::new(dir.path().join("model.safetensors")));
        let msg = e.to_string();
        assert!(
            msg.contains("model.safetensors") && msg.contains("max_activation_values"),
            "{msg}"
        );
    }
    // A pooling window wider than its padded input was a backend panic ("index out of
    // bounds") caught at load; it is now refused by name.
    let i = arch.find("\"type\": \"maxpool2d\"").unwrap();
    let kernel = "\"kernel\": 2";
    let k = i + arch[i..].find(kernel).unwrap();
    let bad = format!(
        "{}\"kernel\": 4294967295{}",
        &arch[..k],
        &arch[k + kernel.len()..]
    );
    write(dir.path(), "arch.json", bad.as_bytes());
    let msg = load_err(&ModelSpec::new(dir.path().join("model.safetensors"))).to_string();
    assert!(
        msg.contains("MaxPool") && msg.contains("more than the 28 of the padded input"),
        "{msg}"
    );
    // Raising the limit is possible (here to a size the probe cannot allocate either, so
    // only check that the limit is the one that moved).
    let mut spec = ModelSpec::new(dir.path().join("model.safetensors"));
    write(dir.path(), "arch.json", arch.as_bytes());
    spec.limits.max_activation_values = 8 * 28 * 28 - 1;
    let msg = load_err(&spec).to_string();
    assert!(msg.contains("8×28×28 values per sample"), "{msg}");
}

#[test]
fn malformed_architecture_and_missing_arch() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.arch.json",
        b"{\"input_shape\": [1, 28, 28], \"layers\": [{\"type\": \"conv9d\"}]}",
    );
    let mut spec = ModelSpec::new(model_file("mlp/model.safetensors"));
    spec.arch = Some(p);
    let e = load_err(&spec);
    assert!(
        e.to_string().contains("invalid architecture description"),
        "{e}"
    );

    let lone = dir.path().join("lone.safetensors");
    std::fs::copy(model_file("mlp/model.safetensors"), &lone).unwrap();
    let e = load_err(&ModelSpec::new(&lone));
    assert!(e.to_string().contains("architecture"), "{e}");
}

#[test]
fn bad_preprocessing_and_inputs() {
    let mut spec = ModelSpec::new(model_file("mlp/model.onnx"));
    spec.mean = Some(vec![0.1, 0.2]);
    spec.std = Some(vec![0.3, 0.3]);
    assert!(load_err(&spec)
        .to_string()
        .contains("mean has 2 values but the input has 1 channels"));
    spec.mean = Some(vec![0.1]);
    spec.std = Some(vec![0.0]);
    assert!(load_err(&spec).to_string().contains("must be positive"));
    let mut spec = ModelSpec::new(model_file("mlp/model.onnx"));
    spec.input_shape = Some(vec![3, 28, 28]);
    assert!(load_err(&spec)
        .to_string()
        .contains("differs from the model's declared"));

    let model = robust_models::load(model_file("mlp/model.onnx"), &cpu()).unwrap();
    let x = burn::tensor::Tensor::<4>::zeros([2, 3, 28, 28], &cpu());
    let e = model.forward(x).unwrap_err();
    assert!(matches!(e, ModelError::Input(_)), "{e:?}");
}
