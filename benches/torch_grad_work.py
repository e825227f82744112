#!/opt/robust-venv/bin/python
"""What one torchattacks PGD step costs PyTorch: does it compute the weight gradients?

    /opt/robust-venv/bin/python benches/torch_grad_work.py [--arch resnet18,resnet50] [--reps 5]

torchattacks' PGD takes each step's gradient with
`torch.autograd.grad(cost, adv_images)` (torchattacks/attacks/pgd.py). PyTorch's engine then
runs only the backward nodes on the path to `adv_images`, and each convolution's backward
computes the input gradient alone: the weight gradients of the model's parameters (which
still have requires_grad=True) are never formed. This script measures that directly, on
the same models and sizes as benches/compare_arch.py (torchvision ResNets with a 10-class
head, random inputs, cross-entropy, 2 threads), with medians over --reps, alternating:

* `forward`: the model under `torch.no_grad()`;
* `input only`: forward with autograd, then `torch.autograd.grad(loss, [x])` (torchattacks);
* `input + weights`: the same, asking also for every parameter's gradient (training).

and the rate of each in GFLOP/s against the nominal count (forward multiply-adds × 2 FLOPs,
×2 for a pass with an input gradient, ×3 with the weight gradients too), and that rate as
a fraction of the machine's peak (--peak-gflops; 442 GFLOP/s for two Zen 5 cores with
AVX-512). If `input only` costs about two forwards and `input + weights` about three, the
attack step does no weight-gradient work, and a tool that also skips it has no FLOP
advantage over torchattacks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torchvision  # noqa: E402

from flops import forward_macs  # noqa: E402

SIZES = {"resnet18": (32, 256), "resnet50": (224, 32)}




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet18,resnet50")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-gflops", type=float, default=442.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| arch | images | forward s | input only s (torchattacks) | input + weights s | "
          "input only / forward | input + weights / input only | input only GFLOP/s (% of peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch in args.arch.split(","):
        size, n = SIZES[arch]
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=10).eval()
        x = torch.rand(n, 3, size, size)
        y = torch.randint(0, 10, (n,))
        params = list(model.parameters())
        assert all(p.requires_grad for p in params)

        def forward():
            with torch.no_grad():
                model(x)

        def grad(with_weights: bool):
            xa = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xa), y)
            torch.autograd.grad(loss, [xa] + (params if with_weights else []))

        runs = {"forward": forward, "input": lambda: grad(False), "weights": lambda: grad(True)}
        for f in runs.values():  # warm-up: oneDNN primitive creation, allocator
            f()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.reps):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        gflop = 2 * 2 * forward_macs(model, (3, size, size)) * n / 1e9
        rate = gflop / med["input"]
        print(f"| {arch} {size}x{size} | {n} | {med['forward']:.3f} | {med['input']:.3f} | "
              f"{med['weights']:.3f} | {med['input'] / med['forward']:.2f} | "
              f"{med['weights'] / med['input']:.2f} | {rate:.0f} ({100 * rate / args.peak_gflops:.0f}%) |")


if __name__ == "__main__":
    main()
