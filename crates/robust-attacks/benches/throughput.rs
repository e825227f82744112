//! Attack throughput: input gradients, PGD steps and a full PGD-10 sweep.
//!
//! Run with `cargo bench --workspace --bench throughput` (add `-- FILTER` to run a subset,
//! e.g. `-- grad/cpu/mnist-cnn`). Groups, each named `GROUP/DEVICE/MODEL/BATCH`:
//!
//! * `grad`: one forward + backward with respect to the input (cross-entropy, what every
//!   gradient attack step costs), for the demo CNN, the MLP and the CIFAR-size ResNet, at
//!   batch sizes 1, 32 and 256.
//! * `pgd-step`: one projected L-inf step (gradient, sign, step, projection, clip) on the
//!   demo CNN.
//! * `pgd10-1000`: PGD-10 (ε 0.1, step 0.25·ε, no random start) over the 1000 demo images
//!   in batches of 500, followed by the judging forward pass: exactly what `robust eval`
//!   does for one (attack, ε) point. Throughput is reported in images per second.
//!
//! Every timed closure reads its result back to the host (`robust_models::to_host`), which
//! synchronises the device before the timer stops.
//!
//! The CPU (burn's flex backend) always runs. The wgpu groups run only with
//! `ROBUST_BENCH_WGPU=1` (on this machine wgpu is Mesa's lavapipe, a slow software device);
//! they use a hardware adapter when wgpu finds one. The defaults (10 samples, short
//! measurement windows) keep a full run to a few minutes on a 2-core machine;
//! `RAYON_NUM_THREADS` sets the CPU thread count.
//!
//! The bench uses mimalloc as its global allocator, as the `robust` binary does, so the
//! figures are those of the shipped program (with glibc's allocator, buffers of a few MB are
//! returned to the kernel and faulted back in on every step; see `benches/RESULTS.md`).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use robust_attacks::{
    attack_at, Attack, AttackCtx, AttackRegistry, AttackSpec, Batch, GradientDescent, Loss, Norm,
};
use robust_models::{select_device, DeviceChoice, Model, ModelSpec};

/// A path relative to the workspace root (benches run in the package directory).
fn root(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The benchmark models: name, spec.
fn models() -> Vec<(&'static str, ModelSpec)> {
    let mut cnn = ModelSpec::new(root("models/mnist-cnn/model.onnx"));
    cnn.mean = Some(vec![0.1307]);
    cnn.std = Some(vec![0.3081]);
    vec![
        ("mnist-cnn", cnn),
        ("mlp", ModelSpec::new(root("models/mlp/model.onnx"))),
        ("resnet", ModelSpec::new(root("models/resnet/model.onnx"))),
    ]
}

/// The devices to benchmark: the CPU always, wgpu when `ROBUST_BENCH_WGPU=1` (chosen once).
fn devices() -> Vec<(&'static str, Device)> {
    static DEVICES: OnceLock<Vec<(&'static str, Device)>> = OnceLock::new();
    DEVICES
        .get_or_init(|| {
            let cpu = select_device(DeviceChoice::Cpu).expect("the CPU device");
            let mut out = vec![("cpu", cpu.device)];
            if std::env::var("ROBUST_BENCH_WGPU").is_ok_and(|v| v == "1") {
                match select_device(DeviceChoice::Wgpu) {
                    Ok(d) => {
                        eprintln!("wgpu benchmarks on {}", d.adapter);
                        out.push(("wgpu", d.device));
                    }
                    Err(e) => eprintln!("ROBUST_BENCH_WGPU=1 but no wgpu device: {e}"),
                }
            }
            out
        })
        .clone()
}

/// The first `n` demo images and labels (cycled when `n` exceeds the data set).
fn demo_data(n: usize) -> (Vec<f32>, Vec<usize>) {
    let spec = robust_data::DataSpec::new(root("datasets/mnist-demo"));
    let data = robust_data::Dataset::open(&spec, [1, 28, 28], [0.0, 1.0], None)
        .expect("the demo data set");
    let all = data.batch(0, data.len()).expect("demo images");
    let per = 28 * 28;
    let mut pixels = Vec::with_capacity(n * per);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let j = i % all.len();
        pixels.extend_from_slice(&all.pixels[j * per..(j + 1) * per]);
        labels.push(all.labels[j]);
    }
    (pixels, labels)
}

/// A batch of `n` inputs for `model`: demo images for MNIST-shaped models, a fixed
/// pseudo-random pattern otherwise.
fn batch_for(model: &Model, n: usize, offset: usize) -> Batch {
    let shape = model.info().input_shape.clone();
    let k = model.info().num_classes;
    let (pixels, labels) = if shape == [1, 28, 28] {
        let (p, l) = demo_data(offset + n);
        (p[offset * 784..].to_vec(), l[offset..].to_vec())
    } else {
        let per: usize = shape.iter().product();
        let pixels = (0..n * per)
            .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0)
            .collect();
        (pixels, (0..n).map(|i| i % k).collect())
    };
    let x = Tensor::<4>::from_data(
        TensorData::new(pixels, [n, shape[0], shape[1], shape[2]]),
        model.device(),
    );
    Batch::new(x, labels, None, (offset..offset + n).collect(), k).expect("a valid batch")
}

/// Forward + backward with respect to the input, per model and batch size.
fn bench_grad(c: &mut Criterion) {
    for (dev_name, device) in devices() {
        for (model_name, spec) in models() {
            let model = Model::load(&spec, &device).expect("model loads");
            let mut group = c.benchmark_group(format!("grad/{dev_name}/{model_name}"));
            for n in [1usize, 32, 256] {
                let batch = batch_for(&model, n, 0);
                // A context's first gradient also gathers statistics; criterion's warm-up
                // takes it (set-up stays cheap, so a filtered-out benchmark costs little).
                let mut ctx = AttackCtx::new(&model, 0);
                group.throughput(Throughput::Elements(n as u64));
                group.bench_function(BenchmarkId::from_parameter(n), |b| {
                    b.iter(|| {
                        let g = ctx
                            .gradient(black_box(&batch.x), &batch, Loss::CrossEntropy)
                            .expect("gradient");
                        robust_models::to_host(g)
                    })
                });
            }
            group.finish();
        }
    }
}

/// One PGD step (gradient, sign, step, projection, clip) on the demo CNN.
fn bench_pgd_step(c: &mut Criterion) {
    let (_, cnn) = models().remove(0);
    let step = GradientDescent::pgd(Norm::Linf, 1)
        .with_random_start(false)
        .with_step(robust_attacks::StepSize::Relative(0.25));
    for (dev_name, device) in devices() {
        let model = Model::load(&cnn, &device).expect("model loads");
        let mut group = c.benchmark_group(format!("pgd-step/{dev_name}/mnist-cnn"));
        for n in [1usize, 32, 256] {
            let batch = batch_for(&model, n, 0);
            let mut ctx = AttackCtx::new(&model, 0);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    robust_models::to_host(step.run(&mut ctx, black_box(&batch), 0.1).unwrap())
                })
            });
        }
        group.finish();
    }
}

/// PGD-10 over the 1000 demo images, as `robust eval --attack pgd --eps 0.1 --steps 10
/// --rel-step-size 0.25 --random-start false --batch-size 500` runs it (the judging forward
/// pass included).
fn bench_pgd10(c: &mut Criterion) {
    let (_, cnn) = models().remove(0);
    let spec = AttackSpec {
        steps: Some(10),
        rel_step_size: Some(0.25),
        random_start: Some(false),
        ..AttackSpec::named("pgd")
    };
    let pgd = AttackRegistry::builtin().build(&spec).expect("pgd");
    let batch_size = 500;
    for (dev_name, device) in devices() {
        let model = Model::load(&cnn, &device).expect("model loads");
        let batches: Vec<Batch> = (0..1000)
            .step_by(batch_size)
            .map(|start| batch_for(&model, batch_size, start))
            .collect();
        let mut group = c.benchmark_group(format!("pgd10-1000/{dev_name}/mnist-cnn"));
        group.throughput(Throughput::Elements(1000));
        group.measurement_time(Duration::from_secs(20));
        group.bench_function(BenchmarkId::from_parameter(batch_size), |b| {
            b.iter(|| {
                let mut robust = 0usize;
                for batch in &batches {
                    let out =
                        attack_at(&model, pgd.as_ref(), black_box(batch), 0.1, 0).expect("pgd");
                    robust += out
                        .pred
                        .iter()
                        .zip(&batch.labels)
                        .filter(|(p, y)| p == y)
                        .count();
                }
                robust
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_grad, bench_pgd_step, bench_pgd10
}
criterion_main!(benches);
