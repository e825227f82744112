//! Times candle-core's CPU backend on the project's demo MNIST CNN:
//! Conv2d(1,8,3,p1) -> ReLU -> MaxPool2 -> Conv2d(8,16,3,p1) -> ReLU -> MaxPool2
//! -> Flatten -> Linear(784,32) -> ReLU -> Linear(32,10), NCHW f32.
//! Weights are deterministic pseudo-random values; only timing matters.
//! Gradient values are NOT checked (candle-core's MaxPool2D backward is known to be wrong).

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use std::time::Instant;

const WARMUP: usize = 3;
const ITERS: usize = 20;

/// Small deterministic generator (splitmix64) so runs are reproducible without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 // [0, 1)
    }
    /// Uniform in [-bound, bound).
    fn tensor(&mut self, shape: &[usize], bound: f32, dev: &Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (self.next_f32() * 2.0 - 1.0) * bound).collect();
        Ok(Tensor::from_vec(v, shape, dev)?)
    }
}

struct Cnn {
    c1w: Tensor, // [8,1,3,3]
    c1b: Tensor, // [1,8,1,1]
    c2w: Tensor, // [16,8,3,3]
    c2b: Tensor, // [1,16,1,1]
    l1w: Tensor, // [32,784]
    l1b: Tensor, // [32]
    l2w: Tensor, // [10,32]
    l2b: Tensor, // [10]
}

impl Cnn {
    fn new(rng: &mut Rng, dev: &Device) -> Result<Self> {
        // PyTorch-style default bound 1/sqrt(fan_in).
        let b = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
        Ok(Self {
            c1w: rng.tensor(&[8, 1, 3, 3], b(9), dev)?,
            c1b: rng.tensor(&[1, 8, 1, 1], b(9), dev)?,
            c2w: rng.tensor(&[16, 8, 3, 3], b(72), dev)?,
            c2b: rng.tensor(&[1, 16, 1, 1], b(72), dev)?,
            l1w: rng.tensor(&[32, 784], b(784), dev)?,
            l1b: rng.tensor(&[32], b(784), dev)?,
            l2w: rng.tensor(&[10, 32], b(32), dev)?,
            l2b: rng.tensor(&[10], b(32), dev)?,
        })
    }
    fn conv1(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.conv2d(&self.c1w, 1, 1, 1, 1)?.broadcast_add(&self.c1b)?)
    }
    fn conv2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.conv2d(&self.c2w, 1, 1, 1, 1)?.broadcast_add(&self.c2b)?)
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1(x)?.relu()?.max_pool2d(2)?; // [N,8,14,14]
        let x = self.conv2(&x)?.relu()?.max_pool2d(2)?; // [N,16,7,7]
        let x = x.flatten_from(1)?; // [N,784]
        let x = x.matmul(&self.l1w.t()?)?.broadcast_add(&self.l1b)?.relu()?;
        Ok(x.matmul(&self.l2w.t()?)?.broadcast_add(&self.l2b)?) // [N,10]
    }
}

/// Mean cross-entropy of `logits` [N,10] against one-hot labels [N,10], candle-core ops only.
fn cross_entropy(logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let lse = logits.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()?.broadcast_add(&m)?;
    let log_softmax = logits.broadcast_sub(&lse)?;
    let nll = (log_softmax * onehot)?.sum_all()?.neg()?;
    Ok((nll / logits.dim(0)? as f64)?)
}

fn median_ms<F: FnMut() -> Result<()>>(mut f: F) -> Result<f64> {
    for _ in 0..WARMUP {
        f()?;
    }
    let mut t = Vec::with_capacity(ITERS);
    for _ in 0..ITERS {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(if ITERS % 2 == 1 { t[ITERS / 2] } else { 0.5 * (t[ITERS / 2 - 1] + t[ITERS / 2]) })
}

fn candle_version() -> &'static str {
    // Read the resolved version from this crate's own Cargo.lock at compile time.
    let lock = include_str!("../Cargo.lock");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"candle-core\"" {
            if let Some(v) = lines.next() {
                return v.trim().trim_start_matches("version = ").trim_matches('"');
            }
        }
    }
    "unknown"
}

fn main() -> Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s.parse().context("batch size must be a positive integer")?,
        None => 500,
    };
    let dev = Device::Cpu;
    let mut rng = Rng(0x5EED_2024);
    let model = Cnn::new(&mut rng, &dev)?;
    let x = rng.tensor(&[n, 1, 28, 28], 1.0, &dev)?.affine(0.5, 0.5)?; // in [0,1)
    let x2 = rng.tensor(&[n, 8, 14, 14], 1.0, &dev)?;
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 10).collect();
    let onehot = Tensor::from_vec(labels, n, &dev)?
        .unsqueeze(1)?
        .broadcast_eq(&Tensor::arange(0u32, 10, &dev)?.unsqueeze(0)?)?
        .to_dtype(DType::F32)?;

    println!("candle-core {} (CPU backend)", candle_version());
    println!(
        "threads: {}   avx: {}   batch N = {}   median of {} iters after {} warm-ups",
        candle_core::utils::get_num_threads(),
        candle_core::utils::with_avx(),
        n,
        ITERS,
        WARMUP
    );
    println!("loss for the gradient line: mean cross-entropy (log-softmax from candle-core ops)");

    let t_c1 = median_ms(|| {
        model.conv1(&x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let t_c2 = median_ms(|| {
        model.conv2(&x2)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let t_fwd = median_ms(|| {
        model.forward(&x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let mut grad_len = 0usize;
    let t_grad = median_ms(|| {
        let xv = Var::from_tensor(&x)?;
        let loss = cross_entropy(&model.forward(xv.as_tensor())?, &onehot)?;
        let grads = loss.backward()?;
        let g = grads.get(xv.as_tensor()).context("no input gradient")?;
        let v: Vec<f32> = g.flatten_all()?.to_vec1()?;
        grad_len = v.len();
        Ok(())
    })?;
    anyhow::ensure!(grad_len == n * 28 * 28, "input gradient has {grad_len} values");

    println!();
    println!("{:<40} {:>10}", "step", "ms");
    println!("{:<40} {:>10.3}", format!("conv1 forward [{n},1,28,28]"), t_c1);
    println!("{:<40} {:>10.3}", format!("conv2 forward [{n},8,14,14]"), t_c2);
    println!("{:<40} {:>10.3}", "full forward", t_fwd);
    println!(
        "{:<40} {:>10.3}   ({:.0} images/s)",
        "forward + input gradient (CE loss)",
        t_grad,
        n as f64 / (t_grad / 1e3)
    );
    Ok(())
}
