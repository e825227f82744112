//! The flags that describe a model, shared by `eval`, `drift` and `scan`.

use std::path::PathBuf;

use robust_models::ModelSpec;

use crate::exit::bad_input;

/// Model file, architecture, input shape, bounds and normalization.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelFlags {
    /// Model file: .onnx, or .safetensors with --arch.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Architecture file for a .safetensors model (JSON or TOML).
    #[arg(long, value_name = "FILE")]
    pub arch: Option<PathBuf>,
    /// Input shape C,H,W when the model file does not declare it (a safetensors model, or
    /// an ONNX graph with symbolic sizes); without a model (drift, scan), the image size
    /// to bring the data set's files to.
    #[arg(long, value_delimiter = ',', value_name = "C,H,W")]
    pub input_shape: Option<Vec<usize>>,
    /// Valid input range in pixel space, LO,HI (default 0,1).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LO,HI",
        allow_hyphen_values = true
    )]
    pub bounds: Option<Vec<f32>>,
    /// Per-channel mean the model expects, applied inside the graph.
    #[arg(long, value_delimiter = ',', value_name = "M,...")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std the model expects, applied inside the graph.
    #[arg(long, value_delimiter = ',', value_name = "S,...")]
    pub std: Option<Vec<f32>>,
}

impl ModelFlags {
    /// Checks the flags that need no file.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(s) = &self.input_shape {
            if s.len() != 3 || s.contains(&0) {
                return Err(bad_input(format!(
                    "--input-shape {s:?} is not C,H,W with every size at least 1"
                )));
            }
        }
        if let Some(b) = &self.bounds {
            if b.len() != 2 || b[0].partial_cmp(&b[1]) != Some(std::cmp::Ordering::Less) {
                return Err(bad_input("--bounds takes two values LO,HI with LO < HI"));
            }
        }
        Ok(())
    }

    /// Lays the flags over a spec (from `robust.toml`, or a bare path).
    pub fn apply(&self, spec: &mut ModelSpec) {
        if let Some(a) = &self.arch {
            spec.arch = Some(a.clone());
        }
        if let Some(s) = &self.input_shape {
            spec.input_shape = Some(s.clone());
        }
        if let Some(b) = &self.bounds {
            spec.bounds = [b[0], b[1]];
        }
        if self.mean.is_some() || self.std.is_some() {
            spec.mean = self.mean.clone();
            spec.std = self.std.clone();
        }
    }

    /// The spec for `--model`, if given.
    pub fn spec(&self) -> Option<ModelSpec> {
        self.model.as_ref().map(|p| {
            let mut spec = ModelSpec::new(p);
            self.apply(&mut spec);
            spec
        })
    }
}
