#!/opt/robust-venv/bin/python
"""robust vs torchattacks: PGD-10 throughput on the demo CNN, side by side, in one run.

Run by hand (not in CI), from anywhere:

    /opt/robust-venv/bin/python benches/compare.py [--reps 3] [--robust PATH]

Needs torch, torchattacks 3.5.1, safetensors and numpy (all in /opt/robust-venv), a release
build of robust (`cargo build --release --workspace`, binary in
$CARGO_TARGET_DIR/release/robust, default /var/tmp/robust-target) and GNU time
(`/usr/bin/time`, Debian package `time`) for peak memory.

What it measures, alternating the two tools for --reps repetitions:

* torchattacks: `PGD(eps=0.1, alpha=0.025, steps=10, random_start=False)` on
  `Normalize(0.1307, 0.3081) + net`, the net rebuilt from models/mnist-cnn/model.safetensors
  and arch.json; the 1000 demo images in one batch (as models/mnist-cnn/attack_ref.json was
  made); `torch.set_num_threads(2)` and `OMP_WAIT_POLICY=PASSIVE`. Timed around the attack
  call only (the model and data are already in memory).
* robust: `robust eval --attack pgd --eps 0.1 --steps 10 --rel-step-size 0.25
  --random-start false --quiet --out TMP`, from the repository root (so robust.toml's model,
  data, normalization and batch size apply). Timed end to end (process start to exit) and by
  the binary itself (results.json's `duration_s`: device selection, model and data loading,
  the sweep and its checks; report rendering excluded). Nothing is subtracted.

Both must agree on the robust accuracy within 0.005. Then the full demo sweep
(`robust eval --quiet`: FGSM + PGD-10 at 7 ε, 1000 images) is timed and its peak resident
memory read from `/usr/bin/time -v`.

Extra options: --robust-args adds flags to the PGD runs (e.g. "--batch-size 1000");
--robust-env NAME=VALUE sets environment for the robust runs only (e.g. GLIBC_TUNABLES);
--torch-batch sets torchattacks' batch size (default 1000, one batch).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# libgomp reads this when torch loads: set it before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchattacks  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EPS, ALPHA, STEPS = 0.1, 0.025, 10
MEAN, STD = 0.1307, 0.3081
PGD_ARGS = [
    "eval", "--attack", "pgd", "--eps", str(EPS), "--steps", str(STEPS),
    "--rel-step-size", "0.25", "--random-start", "false", "--quiet",
]


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor([mean]).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([std]).view(1, 1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_net(arch_path: Path, weights_path: Path) -> nn.Module:
    """nn.Sequential from arch.json; layer names index the state dict (`0.weight`, ...)."""
    arch = json.loads(arch_path.read_text())
    layers: list[tuple[str, nn.Module]] = []
    for i, l in enumerate(arch["layers"]):
        t = l["type"]
        if t == "conv2d":
            m = nn.Conv2d(l["in"], l["out"], l["kernel"], stride=l.get("stride", 1),
                          padding=l.get("padding", 0), bias=l.get("bias", True))
        elif t == "linear":
            m = nn.Linear(l["in"], l["out"], bias=l.get("bias", True))
        elif t == "relu":
            m = nn.ReLU()
        elif t == "maxpool2d":
            m = nn.MaxPool2d(l["kernel"], stride=l.get("stride", l["kernel"]))
        elif t == "flatten":
            m = nn.Flatten()
        else:
            raise SystemExit(f"compare.py: layer type {t!r} not handled")
        layers.append((l.get("name", str(i)), m))
    names = [n for n, _ in layers]
    if len(set(names)) != len(names):  # unnamed layers: positional names like torch's
        layers = [(str(i), m) for i, (_, m) in enumerate(layers)]
    net = nn.Sequential()
    for name, m in layers:
        net.add_module(name, m)
    net.load_state_dict(load_file(str(weights_path)))
    return net


def time_v(output: str) -> tuple[float | None, int | None, int | None]:
    """(wall seconds, max RSS in KiB, minor page faults) from GNU time -v output."""
    wall = rss = faults = None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", output)
    if m:
        parts = [float(p) for p in m.group(1).split(":")]
        wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", output)
    if m:
        rss = int(m.group(1))
    m = re.search(r"Minor \(reclaiming a frame\) page faults: (\d+)", output)
    if m:
        faults = int(m.group(1))
    return wall, rss, faults


def run_robust(binary: Path, args: list[str], use_time: bool, extra_env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="robust-compare-") as out:
        cmd = [str(binary), *args, "--out", out]
        if use_time:
            cmd = ["/usr/bin/time", "-v", *cmd]
        env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
        env.update(extra_env)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"robust failed ({p.returncode}): {shlex.join(cmd)}\n{p.stderr}")
        res = json.loads((Path(out) / "results.json").read_text())
    _, rss, faults = time_v(p.stderr) if use_time else (None, None, None)
    return {"wall": wall, "duration": res["duration_s"], "rss_kib": rss, "faults": faults,
            "results": res}


def mem_note(r: dict) -> str:
    if not r["rss_kib"]:
        return ""
    return f", peak RSS {r['rss_kib'] / 1024:.0f} MiB, {r['faults'] // 1000}k page faults"


def robust_pgd_accuracy(res: dict) -> float:
    for a in res["attacks"]:
        if a["name"] == "pgd":
            for pt in a["points"]:
                if abs(pt["eps"] - EPS) < 1e-6:
                    return pt["robust_accuracy"]
    raise SystemExit("robust's results.json has no PGD point at eps 0.1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-batch", type=int, default=1000)
    target = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/robust-target"))
    ap.add_argument("--robust", type=Path, default=target / "release" / "robust")
    ap.add_argument("--robust-args", default="", help="extra flags for the PGD runs")
    ap.add_argument("--robust-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for the robust runs only (repeatable), e.g. GLIBC_TUNABLES=...")
    ap.add_argument("--sweep-reps", type=int, default=2)
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()
    if not args.robust.is_file():
        raise SystemExit(f"{args.robust} not found: cargo build --release --workspace first")
    use_time = Path("/usr/bin/time").is_file()
    if not use_time:
        print("note: /usr/bin/time missing (apt-get install time): no peak RSS", file=sys.stderr)

    torch.set_num_threads(args.threads)
    net = build_net(ROOT / "models/mnist-cnn/arch.json", ROOT / "models/mnist-cnn/model.safetensors")
    model = nn.Sequential(Normalize(MEAN, STD), net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images = np.load(ROOT / "datasets/mnist-demo/images.npy")
    labels = np.load(ROOT / "datasets/mnist-demo/labels.npy")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    n = len(y)
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
    atk = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)

    def torch_pgd() -> tuple[float, float]:
        t0 = time.perf_counter()
        advs = [atk(x[i:i + args.torch_batch], y[i:i + args.torch_batch])
                for i in range(0, n, args.torch_batch)]
        dt = time.perf_counter() - t0
        with torch.no_grad():
            adv_ok = model(torch.cat(advs)).argmax(1) == y
        return dt, float((clean_ok & adv_ok).float().mean())

    extra = shlex.split(args.robust_args)
    renv = dict(kv.split("=", 1) for kv in args.robust_env)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {uptime}")
    print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), torchattacks "
          f"{torchattacks.__version__}; robust {args.robust} {shlex.join(extra)}"
          + (f" env {' '.join(args.robust_env)}" if args.robust_env else ""))
    print(f"# {n} images; PGD-10 Linf eps {EPS} alpha {ALPHA}, no random start")

    torch_pgd()  # warm-up: first-call allocations, thread pool start
    t_times, r_wall, r_dur, accs = [], [], [], set()
    for rep in range(args.reps):
        dt, t_acc = torch_pgd()
        r = run_robust(args.robust, PGD_ARGS + extra, use_time, renv)
        r_acc = robust_pgd_accuracy(r["results"])
        t_times.append(dt)
        r_wall.append(r["wall"])
        r_dur.append(r["duration"])
        accs.add((round(t_acc, 4), round(r_acc, 4)))
        print(f"rep {rep}: torchattacks {dt:7.3f} s ({n / dt:7.1f} img/s) acc {t_acc:.4f} | "
              f"robust wall {r['wall']:6.3f} s, in-process {r['duration']:6.3f} s "
              f"({n / r['wall']:7.1f} / {n / r['duration']:7.1f} img/s) acc {r_acc:.4f}"
              + mem_note(r))
        if abs(t_acc - r_acc) > 0.005:
            print(f"MISMATCH: robust accuracy differs by {abs(t_acc - r_acc):.4f} > 0.005")
            return 1

    tm, rw, rd = (statistics.median(v) for v in (t_times, r_wall, r_dur))
    print()
    print("| tool | median s | images/s | ratio robust/torchattacks |")
    print("|---|---:|---:|---:|")
    print(f"| torchattacks PGD-10 (in-process) | {tm:.3f} | {n / tm:.0f} | 1.00 |")
    print(f"| robust eval, end to end | {rw:.3f} | {n / rw:.0f} | {tm / rw:.2f} |")
    print(f"| robust eval, in-process duration_s | {rd:.3f} | {n / rd:.0f} | {tm / rd:.2f} |")
    print(f"robust accuracy (torchattacks, robust): {sorted(accs)}")

    if not args.skip_sweep:
        print()
        print("# full demo sweep: robust eval --quiet (FGSM + PGD-10, 7 eps, 1000 images)")
        walls, durs, rsss = [], [], []
        for rep in range(args.sweep_reps):
            r = run_robust(args.robust, ["eval", "--quiet"], use_time, renv)
            walls.append(r["wall"])
            durs.append(r["duration"])
            if r["rss_kib"]:
                rsss.append(r["rss_kib"])
            print(f"sweep rep {rep}: wall {r['wall']:.2f} s, in-process {r['duration']:.2f} s"
                  + mem_note(r))
        print(f"full sweep: median wall {statistics.median(walls):.2f} s, in-process "
              f"{statistics.median(durs):.2f} s"
              + (f", peak RSS {max(rsss) / 1024:.0f} MiB" if rsss else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
