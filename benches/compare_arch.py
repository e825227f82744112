#!/opt/robust-venv/bin/python
"""robust vs torchattacks: PGD-10 throughput on real torchvision ResNets, side by side.

Run by hand (not in CI), from anywhere:

    /opt/robust-venv/bin/python benches/compare_arch.py [--arch resnet18,resnet50] [--reps 3]

For each architecture (torchvision class, random init with torch.manual_seed(0), 10-class head,
eval mode): resnet18 at 32x32 with 256 images, resnet50 at 224x224 with 32 images (the sizes
of issue 11). Both tools attack the same images (uniform random, numpy seed 0, labels random)
with PGD L-inf, eps 8/255, alpha eps/4, 10 steps, no random start:

* torchattacks 3.5.1 `PGD(model, eps, alpha, steps=10, random_start=False)`, all images in one
  batch, `torch.set_num_threads(--threads)`, `OMP_WAIT_POLICY=PASSIVE`; timed around the attack
  call.
* robust: `robust eval --model M.onnx --data images.npy --attack pgd ... --device cpu --quiet
  --no-probes` (torchattacks runs no failure-indicator checks either; robust's probes cost
  about 1,000 forward passes and one unbounded attack on 32 samples)
  (legacy ONNX export, opset 17, dynamic batch), timed end to end (process start to exit:
  model loading, the clean pass and the attack); peak RSS from `/usr/bin/time -v`.

The two alternate run by run (torchattacks PGD-10, robust PGD-10, torchattacks PGD-20,
robust PGD-20) for --reps repetitions; medians are reported, with the ratio
robust/torchattacks in images per second, end to end and for the marginal cost of 10 more
steps (PGD-20 minus PGD-10 with each tool, which leaves out robust's fixed costs), and the fraction of the machine's peak FLOP rate
robust reaches: each PGD step is a forward pass and an input gradient (about twice the
forward multiply-adds, counted with hooks on Conv2d/Linear, as a direct convolution does
them: robust's Winograd path for stride-1 3x3 convolutions does 2.3-4x fewer, so this is an
effective rate, which can pass 100% on the marginal steps), against --peak-gflops
(--peak-gflops; by default 442 GFLOP/s, two Zen 5 cores with AVX-512 at ~3.45 GHz, or 221
with --isa avx2, which caps both tools below AVX-512 as on a CPU without it).
Robust accuracies must agree within 2 / n.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# --isa avx2 caps both tools below AVX-512 (as on a CPU without it): PyTorch's ATen and
# oneDNN through their documented environment variables, which must be set before torch is
# imported; robust through ROBUST_SIMD (its kernels' dispatch cap).
ISA = "avx2" if "--isa=avx2" in sys.argv or ("--isa" in sys.argv and sys.argv[sys.argv.index("--isa") + 1:][:1] == ["avx2"]) else "native"
if ISA == "avx2":
    os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchattacks  # noqa: E402
import torchvision  # noqa: E402

from flops import forward_macs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"resnet18": (32, 256), "resnet50": (224, 32)}
EPS = 8 / 255




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet18,resnet50")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: cap both tools below AVX-512 (a CPU without it)")
    # Peak of this machine kind: 2 cores of AMD Zen 5 (EPYC, family 26) at about 3.45 GHz
    # (measured with a chain of dependent adds), 2 FMA pipes each: 16-lane (AVX-512) FMAs
    # give 2 x 2 x 16 x 2 x 3.45 = 442 GFLOP/s, 8-lane (AVX2) ones half that. On another
    # CPU, measure it with benches/peak_fma.c (per core; the Intel Xeon VMs of this kind:
    # about 2 x 142 = 284 with AVX-512, 2 x 67 = 134 with AVX2).
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="default: 442 (AVX-512) or 221 (--isa avx2)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/robust-target"))
    ap.add_argument("--robust", type=Path, default=target / "release" / "robust")
    args = ap.parse_args()
    if args.peak_gflops is None:
        args.peak_gflops = 221.0 if args.isa == "avx2" else 442.0
    robust_env = dict(os.environ, **({"ROBUST_SIMD": "avx2"} if args.isa == "avx2" else {}))
    torch.set_num_threads(args.threads)
    print(f"isa {args.isa}: torch cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"peak {args.peak_gflops:.0f} GFLOP/s")
    rows = []
    for arch in args.arch.split(","):
        size, n = SIZES[arch]
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=10).eval()
        rng = np.random.default_rng(0)
        x = rng.random((n, 3, size, size), dtype=np.float32)
        y = rng.integers(0, 10, n).astype(np.int64)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.onnx.export(model, torch.from_numpy(x[:2]), tmp / "m.onnx", dynamo=False,
                              opset_version=17, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
            np.save(tmp / "images.npy", x)
            np.save(tmp / "labels.npy", y)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            t_torch, t_robust, rss, acc_t, acc_r = [], [], [], None, None
            # Marginal cost of 10 more steps (PGD-20 minus PGD-10, both tools), which leaves
            # out robust's fixed costs (process start, model loading, weight arrangement,
            # the clean pass, the failure-indicator probes, reports).
            t_torch20, t_robust20 = [], []

            def robust_run(steps):
                # Untimed: bring the binary and the model file back into the page cache
                # (PyTorch's run before can evict them, which made the first timed run
                # up to a second slower than the next).
                subprocess.run([str(args.robust), "predict", "--model", str(tmp / "m.onnx"), "--data",
                                str(tmp / "images.npy"), "--limit", "2", "--device", "cpu", "--out",
                                str(tmp / "warm.npy")], capture_output=True, cwd=tmp, env=robust_env)
                cmd = ["/usr/bin/time", "-v", str(args.robust), "eval", "--model", str(tmp / "m.onnx"),
                       "--data", str(tmp / "images.npy"), "--attack", "pgd", "--eps", repr(EPS),
                       "--steps", str(steps), "--rel-step-size", "0.25", "--random-start", "false",
                       "--device", "cpu", "--quiet", "--no-probes", "--out", str(tmp / "out"),
                       "--batch-size", str(n)]
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=robust_env)
                t = time.perf_counter() - t0
                if p.returncode != 0:
                    raise SystemExit(f"robust failed: {p.stderr[-500:]}")
                kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
                user = float(re.search(r"User time \(seconds\): ([0-9.]+)", p.stderr).group(1))
                system = float(re.search(r"System time \(seconds\): ([0-9.]+)", p.stderr).group(1))
                print(f"  robust PGD-{steps}: {t:.2f} s ({user:.2f} s user, {system:.2f} s system), "
                      f"{kib / 1024:.0f} MiB", file=sys.stderr, flush=True)
                res = json.loads((tmp / "out" / "results.json").read_text())
                return t, kib, res["attacks"][0]["points"][0]["robust_accuracy"]

            # Untimed: PyTorch's first attack call on a model carries its own start-up
            # (oneDNN primitive creation, allocator growth: 20 s or more on ResNet-50),
            # which would otherwise land in the first repetition's PGD-10 and, through
            # the medians, shrink its marginal cost and inflate its end-to-end one.
            torchattacks.PGD(model, eps=EPS, alpha=EPS / 4, steps=1, random_start=False)(xt, yt)
            # Each run follows one of the other tool (torch 10, robust 10, torch 20, robust
            # 20): a robust run right after PyTorch's pays several times the system time for
            # its first page touches (0.5-0.8 s against 0.1-0.2 s on ResNet-18 here, where
            # PyTorch's process fragments memory for the kernel's huge pages), so robust's
            # PGD-20 right after its PGD-10 shrank robust's marginal cost and left the
            # penalty in its end-to-end time only.
            for _ in range(args.reps):
                for steps, times, robust_times in ((10, t_torch, t_robust), (20, t_torch20, t_robust20)):
                    atk = torchattacks.PGD(model, eps=EPS, alpha=EPS / 4, steps=steps, random_start=False)
                    t0 = time.perf_counter()
                    adv = atk(xt, yt)
                    times.append(time.perf_counter() - t0)
                    print(f"  torchattacks PGD-{steps}: {times[-1]:.2f} s", file=sys.stderr, flush=True)
                    if steps == 10:
                        with torch.no_grad():
                            clean = model(xt).argmax(1) == yt
                            acc_t = float(((model(adv).argmax(1) == yt) & clean).float().mean())
                    t, kib, acc = robust_run(steps)
                    robust_times.append(t)
                    if steps == 10:
                        rss.append(kib)
                        acc_r = acc
        tt, tr = statistics.median(t_torch), statistics.median(t_robust)
        mt = statistics.median(t_torch20) - tt
        mr = statistics.median(t_robust20) - tr
        flops = 4 * forward_macs(model, (3, size, size)) * n * 11  # 10 steps + the clean pass
        step_flops = 4 * forward_macs(model, (3, size, size)) * n * 10
        row = dict(arch=arch, size=size, n=n, torch_s=tt, robust_s=tr, torch_ips=n / tt, robust_ips=n / tr,
                   ratio=tt / tr, robust_peak_fraction=flops / tr / 1e9 / args.peak_gflops,
                   torch_10_more_steps_s=mt, robust_10_more_steps_s=mr, marginal_ratio=mt / mr,
                   robust_marginal_peak_fraction=step_flops / mr / 1e9 / args.peak_gflops,
                   robust_rss_mib=statistics.median(rss) / 1024, acc_torch=acc_t, acc_robust=acc_r)
        rows.append(row)
        print(json.dumps(row))
        if abs(acc_t - acc_r) > 2 / n + 1e-9:
            print(f"warning: robust accuracies differ: torchattacks {acc_t} robust {acc_r}")
    print("\n| arch | images | torchattacks img/s | robust img/s (end to end) | ratio | "
          "10 more steps: torchattacks s / robust s | ratio | robust % of peak (end to end / marginal) "
          "| robust peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} {r['size']}x{r['size']} | {r['n']} | {r['torch_ips']:.1f} | {r['robust_ips']:.1f} | "
              f"{r['ratio']:.2f}x | {r['torch_10_more_steps_s']:.2f} / {r['robust_10_more_steps_s']:.2f} | "
              f"{r['marginal_ratio']:.2f}x | {100 * r['robust_peak_fraction']:.0f}% / "
              f"{100 * r['robust_marginal_peak_fraction']:.0f}% | {r['robust_rss_mib']:.0f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
