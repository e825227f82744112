//! What the attack test files share: the repository root, the CPU device, the demo model
//! and data, and attacks built from specs.

#![allow(dead_code)] // each test file uses its own subset

use burn::tensor::{Tensor, TensorData};
use robust_attacks::{Attack, AttackRegistry, AttackSpec, Batch};
use robust_data::{DataSpec, Dataset};
use robust_models::{select_device, DeviceChoice, Model, ModelSpec};

pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn cpu() -> burn::tensor::Device {
    select_device(DeviceChoice::Cpu).unwrap().device
}

/// The bundled demo CNN with its MNIST normalization.
pub fn demo_model(device: &burn::tensor::Device) -> Model {
    let mut spec = ModelSpec::new(root().join("models/mnist-cnn/model.onnx"));
    spec.mean = Some(vec![0.1307]);
    spec.std = Some(vec![0.3081]);
    Model::load(&spec, device).expect("demo model loads")
}

/// The demo images (the first `limit` of them, if given).
pub fn demo_data(limit: Option<usize>) -> Dataset {
    Dataset::open(
        &DataSpec::new(root().join("datasets/mnist-demo/images.npy")),
        [1, 28, 28],
        [0.0, 1.0],
        limit,
    )
    .expect("demo data opens")
}

/// Demo images `start..start + n` as a batch on the model's device.
pub fn demo_batch(model: &Model, start: usize, n: usize) -> Batch {
    let b = demo_data(None).batch(start, n).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(b.pixels, [n, 1, 28, 28]), model.device());
    Batch::new(x, b.labels, None, b.indices, 10).unwrap()
}

pub fn build(spec: AttackSpec) -> Box<dyn Attack> {
    AttackRegistry::builtin().build(&spec).unwrap()
}
