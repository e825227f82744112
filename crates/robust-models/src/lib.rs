//! Model loading for robust: a user's classifier file, run at run time as a differentiable
//! graph on the CPU or a GPU.
//!
//! # Design
//!
//! A model file is read when the program runs, never compiled in: an `.onnx` graph is parsed
//! from its protobuf, and a `.safetensors` state dict is combined with a small architecture
//! description ([`arch`]). Both become the same [`graph::Graph`] (ONNX's node list, constants
//! folded out), which an interpreter runs with burn tensor operations. Because every step is a
//! burn op, burn's autodiff differentiates the whole graph: an attack asks for
//! d(loss)/d(input) by running [`Model::forward`] on an autodiff tensor.
//!
//! Operators live in a registry ([`supported_ops`]) keyed by ONNX operator type; adding one
//! touches one file. Every node is checked against it when a model loads, so an unsupported
//! operator is a clear error that names the operator and the nodes, before anything runs.
//!
//! Input preprocessing (per-channel mean and std) is the first operation of the graph, so
//! attacks work in pixel space, inside the bounds the user declared.
//!
//! The device is chosen once ([`select_device`]): burn's `flex` CPU backend, or wgpu.
//!
//! # Example
//!
//! ```no_run
//! use burn::tensor::Tensor;
//! let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)?.device;
//! let model = robust_models::load("models/mnist-cnn/model.onnx", &device)?;
//! let x = Tensor::<4>::zeros([8, 1, 28, 28], &device.clone().autodiff()).require_grad();
//! let logits = model.forward(x.clone())?;
//! let grads = logits.sum().backward();
//! let dx = x.grad(&grads).expect("the input is tracked");
//! assert_eq!(dx.dims(), [8, 1, 28, 28]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod arch;
mod device;
mod error;
pub mod graph;
mod kernels;
pub mod limits;
pub use kernels::simd;
mod model;
mod onnx;
mod ops;
pub mod value;

pub use device::{
    select_device, wgpu_adapters, AdapterSummary, BackendKind, ComputeDevice, DeviceChoice,
};
pub use error::{ModelError, OpError, Result};
pub use model::{Model, ModelFormat, ModelInfo, ModelSpec};
pub use ops::supported_ops;

/// The burn version this crate is built against (recorded in reports).
pub const BURN_VERSION: &str = "0.22.1";

/// Loads a model with default settings (bounds `[0, 1]`, no normalization, shapes from the
/// file; for `.safetensors`, `arch.json` beside the weights).
pub fn load(path: impl Into<std::path::PathBuf>, device: &burn::tensor::Device) -> Result<Model> {
    Model::load(&ModelSpec::new(path), device)
}

/// Copies a tensor's values to the host as `f32` (a device synchronisation point).
pub fn to_host<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensor data converts to f32")
}
