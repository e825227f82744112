//! Limits checked before memory is reserved for anything a model file declares.
//!
//! A model file is untrusted input: a declared input dimension of 2⁴⁰, or an external data
//! file of 100 GB, must give a one-line error naming the file, not an allocation failure.
//! The defaults admit every real classifier (ImageNet models at 1024×1024, weight files up
//! to 8 GiB); raise them in `robust.toml` (`[model.limits]`) when a model needs more.

use serde::{Deserialize, Serialize};

/// Size limits for loading a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most bytes of a model file, or of one external data file it names.
    pub max_file_bytes: u64,
    /// Most values in one input sample (channels × height × width).
    pub max_input_values: usize,
    /// Most values per sample in the output of one convolution or pooling, whose size
    /// follows from the kernel, stride and padding the file declares (a padding of 65536
    /// asks for terabytes). An ImageNet network at 2048×2048 needs about 2²⁶.
    pub max_activation_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 << 30,
            max_input_values: 3 * 2048 * 2048,
            max_activation_values: 1 << 30,
        }
    }
}
