//! Times input gradients of a model on the CPU: `cargo run --release --example grad_time --
//! MODEL.onnx BATCH REPS` (random inputs in [0, 1] of the model's input shape). Prints the
//! median seconds per forward + input-gradient pass and images per second, the first pass's
//! time (which includes preparing the weights) and the median of forward passes alone.
//!
//! It runs under the `robust` binary's allocator and options (mimalloc, see
//! `src/alloc.rs`), so that the figures are those of `robust eval`: under glibc's allocator
//! a ResNet-50 gradient spent a sixth of its CPU time in the kernel, faulting in pages of
//! freshly mapped activation buffers.

#[path = "../src/alloc.rs"]
mod alloc;

use burn::tensor::{Distribution, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alloc::configure();
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: grad_time MODEL.onnx [BATCH] [REPS]")?;
    let batch: usize = args.get(2).map_or(Ok(32), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)?.device;
    let model = robust_models::load(path, &device)?;
    let s = model.info().input_shape.clone();
    let ad = device.clone().autodiff();
    let x = Tensor::<4>::random(
        [batch, s[0], s[1], s[2]],
        Distribution::Uniform(0.0, 1.0),
        &ad,
    );
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = std::time::Instant::now();
        let xg = x.clone().detach().require_grad();
        let loss = model.forward(xg.clone())?.sum();
        let g = xg.grad(&loss.backward()).ok_or("no gradient")?;
        let _ = robust_models::to_host(g);
        times.push(t.elapsed().as_secs_f64());
    }
    let first = times[0];
    let mut fwd = Vec::new();
    for _ in 0..reps {
        let t = std::time::Instant::now();
        let _ = robust_models::to_host(model.forward(x.clone().detach())?);
        fwd.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    fwd.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "{path}: batch {batch}: median {med:.3} s per gradient, {:.1} images/s; first {first:.3} s \
         (with the weights' preparation); forward only: median {:.3} s",
        batch as f64 / med,
        fwd[fwd.len() / 2]
    );
    Ok(())
}
