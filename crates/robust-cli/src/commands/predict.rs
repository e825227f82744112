//! `robust predict`: the logits (and optionally an input gradient) robust computes for a data
//! set, as `.npy` files, so a user can check them against their own framework before
//! trusting an attack.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::{Tensor, TensorData};
use npyz::WriterBuilder;
use robust_data::{DataSpec, Dataset};
use robust_models::{select_device, DeviceChoice, Model};

use crate::exit::bad_input;
use crate::model_flags::ModelFlags;

/// Flags of `robust predict`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 written; 2 bad input (files, shapes, flags); 1 internal failure.

Examples:
  robust predict --model net.onnx --data images.npy --out logits.npy
  robust predict --model net.onnx --data images.npy --unlabelled --out logits.npy \\
                 --grad-weights w.npy --grad-out grad.npy   # d/dx sum(logits * w)"
)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelFlags,
    /// The inputs: any data set `eval` reads (a .npy file of images, a folder, a CSV, IDX).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Read a .npy file of images that has no labels.npy beside it.
    #[arg(long)]
    pub unlabelled: bool,
    /// Where to write the logits: float32 `[N, classes]` .npy.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Where to write the predicted class of each sample: int64 `[N]` .npy (optional).
    #[arg(long, value_name = "FILE")]
    pub pred: Option<PathBuf>,
    /// Weights W (`[N, classes]` float32 .npy): also compute the input gradient of
    /// sum(logits * W), written to --grad-out.
    #[arg(long, value_name = "FILE", requires = "grad_out")]
    pub grad_weights: Option<PathBuf>,
    /// Where to write the input gradient: float32 `[N, C, H, W]` .npy.
    #[arg(long, value_name = "FILE", requires = "grad_weights")]
    pub grad_out: Option<PathBuf>,
    /// Compute device: auto, cpu or wgpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Reads a float32 `.npy` file as (shape, values).
fn read_f32_npy(path: &Path) -> anyhow::Result<(Vec<u64>, Vec<f32>)> {
    let bytes = std::fs::read(path)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| bad_input(format!("{}: not a .npy file: {e}", path.display())))?;
    let shape = npy.shape().to_vec();
    let data = npy
        .into_vec::<f32>()
        .map_err(|e| bad_input(format!("{}: expected float32 values: {e}", path.display())))?;
    Ok((shape, data))
}

/// Encodes a `.npy` file in memory.
fn npy_bytes<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    shape: &[u64],
    data: &[T],
) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

/// Refuses outputs that name an input or each other, before anything is computed.
fn check_outputs(args: &PredictArgs) -> anyhow::Result<()> {
    let mut inputs: Vec<&Path> = vec![args.data.as_path()];
    inputs.extend(args.model.model.as_deref());
    inputs.extend(args.model.arch.as_deref());
    inputs.extend(args.grad_weights.as_deref());
    let outputs: Vec<&Path> = std::iter::once(args.out.as_path())
        .chain(args.pred.as_deref())
        .chain(args.grad_out.as_deref())
        .collect();
    crate::commands::refuse_overlap(&inputs, &outputs)
}

/// Runs `robust predict`.
pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    args.model.validate()?;
    if args.batch_size == 0 {
        return Err(bad_input("--batch-size must be at least 1"));
    }
    check_outputs(args)?;
    let spec = args
        .model
        .spec()
        .ok_or_else(|| bad_input("predict needs --model FILE"))?;
    let choice: DeviceChoice = args.device.parse().map_err(bad_input)?;
    let device = select_device(choice).map_err(bad_input)?;
    let model = Model::load(&spec, &device.device).map_err(bad_input)?;
    let info = model.info().clone();
    for note in &info.notes {
        eprintln!("note: {}: {note}", info.path.display());
    }
    let shape = <[usize; 3]>::try_from(info.input_shape.clone())
        .map_err(|_| bad_input("model input shape is not [C, H, W]"))?;
    let mut data_spec = DataSpec::new(&args.data);
    data_spec.unlabelled = args.unlabelled;
    let dataset = Dataset::open(&data_spec, shape, info.bounds, args.limit).map_err(bad_input)?;
    let n = dataset.len();
    if n == 0 {
        return Err(bad_input(format!(
            "{}: no samples to predict",
            args.data.display()
        )));
    }
    let k = info.num_classes;
    let weights = match &args.grad_weights {
        Some(p) => {
            let (wshape, w) = read_f32_npy(p)?;
            if wshape != [n as u64, k as u64] {
                return Err(bad_input(format!(
                    "{}: shape {wshape:?}, expected [{n}, {k}] (samples, classes)",
                    p.display()
                )));
            }
            Some(w)
        }
        None => None,
    };
    let per: usize = shape.iter().product();
    let mut logits = Vec::with_capacity(n * k);
    let mut grads = Vec::with_capacity(if weights.is_some() { n * per } else { 0 });
    let mut correct = 0usize;
    let labelled = !args.unlabelled;
    for b in dataset.batches(args.batch_size) {
        let b = b.map_err(bad_input)?;
        let m = b.labels.len();
        let data = TensorData::new(b.pixels, [m, shape[0], shape[1], shape[2]]);
        let (l, g) = match &weights {
            None => {
                let x = Tensor::<4>::from_data(data, model.device());
                (model.forward(x)?, None)
            }
            Some(w) => {
                let ad = model.device().clone().autodiff();
                let x = Tensor::<4>::from_data(data, &ad).require_grad();
                let out = model.forward(x.clone())?;
                let start = b.indices[0] * k;
                let wt = Tensor::<2>::from_data(
                    TensorData::new(w[start..start + m * k].to_vec(), [m, k]),
                    &ad,
                );
                let grads = (out.clone() * wt).sum().backward();
                let dx = x.grad(&grads).context("the input gradient is missing")?;
                (out.detach(), Some(robust_models::to_host(dx)))
            }
        };
        let l = robust_models::to_host(l);
        for (r, &label) in b.labels.iter().enumerate() {
            let row = &l[r * k..(r + 1) * k];
            if row.iter().any(|v| !v.is_finite()) {
                return Err(anyhow::anyhow!(
                    "{}: the model gave non-finite logits for sample {}",
                    info.path.display(),
                    b.indices[r]
                ));
            }
            correct += usize::from(argmax(row) == label);
        }
        logits.extend(l);
        grads.extend(g.unwrap_or_default());
    }
    let preds: Vec<i64> = logits.chunks(k).map(|r| argmax(r) as i64).collect();
    let mut files: Vec<(PathBuf, Vec<u8>)> =
        vec![(args.out.clone(), npy_bytes(&[n as u64, k as u64], &logits)?)];
    if let Some(p) = &args.pred {
        files.push((p.clone(), npy_bytes(&[n as u64], &preds)?));
    }
    if let Some(p) = &args.grad_out {
        let s: Vec<u64> = std::iter::once(n as u64)
            .chain(shape.iter().map(|&d| d as u64))
            .collect();
        files.push((p.clone(), npy_bytes(&s, &grads)?));
    }
    crate::commands::write_all_or_nothing(&files)?;
    let acc = if labelled {
        format!(
            ", accuracy {:.2}% against the labels",
            100.0 * correct as f64 / n as f64
        )
    } else {
        String::new()
    };
    println!(
        "predicted {n} samples with {} ({k} classes, {}){acc}; logits in {}",
        info.path.display(),
        device.backend.name(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The index of the largest value (the first on ties).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
