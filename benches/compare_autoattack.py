#!/opt/robust-venv/bin/python
"""robust vs pyautoattack 0.2.0: AutoAttack standard on the demo CNN at eps 0.1, side by side.

Run by hand (not in CI), from anywhere:

    /opt/robust-venv/bin/python benches/compare_autoattack.py [--reps 1] [--n 1000] [--robust PATH]

Needs pyautoattack 0.2.0 (`pip install pyautoattack==0.2.0` into /opt/robust-venv), torch,
safetensors, numpy, and a release build of robust (binary in $CARGO_TARGET_DIR/release/robust,
default /var/tmp/robust-target).

What it measures, alternating the two tools for --reps repetitions:

* pyautoattack: `AutoAttack(model, norm='Linf', eps=0.1, version='standard', seed=0)` and
  `run_standard_evaluation(x, y, batch_size=500)` on `Normalize(0.1307, 0.3081) + net` (the
  net rebuilt from models/mnist-cnn/model.safetensors and arch.json), the first --n demo
  images; `torch.set_num_threads(2)`, `OMP_WAIT_POLICY=PASSIVE`. Timed around the call.
  By default the chain runs component by component (APGD-CE, APGD-T, FAB-T, Square, each
  on the points still robust, which is what run_standard_evaluation does) to time each
  component; `--no-split` times one run_standard_evaluation call instead.
* robust: `robust eval --attack autoattack --eps 0.1 --device cpu --quiet --out TMP`, from
  the repository root (robust.toml's model, data, normalization and batch size 500 apply);
  timed end to end (process start to exit) and by results.json's `duration_s`.

Prints both robust accuracies (after each component) and the time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "crates/robust-attacks/tests/reference"))
from autoattack_ref import Normalized, build_net, predict, run_on  # noqa: E402
from pyautoattack import AutoAttack  # noqa: E402

EPS = 0.1


def run_reference(model, x, y, split: bool) -> dict:
    aa = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
    aa.verbose = False
    if not split:
        t0 = time.perf_counter()
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=500)
        total = time.perf_counter() - t0
        return {"seconds": total, "robust": (y_adv == y).float().mean().item()}

    def apgd_ce(xs, ys):
        aa.apgd.loss = "ce"
        aa.apgd.seed = 0
        return aa.apgd.perturb(xs, ys)

    def apgd_t(xs, ys):
        aa.apgd_targeted.seed = 0
        return aa.apgd_targeted.perturb(xs, ys)

    def fab_t(xs, ys):
        aa.fab.targeted = True
        aa.fab.n_restarts = 1
        aa.fab.seed = 0
        return aa.fab.perturb(xs, ys)

    def square(xs, ys):
        aa.square.seed = 0
        return aa.square.perturb(xs, ys)

    t0 = time.perf_counter()
    r = predict(model, x) == y
    out = {"after": {}, "times": {}}
    for name, fn in [("apgd-ce", apgd_ce), ("apgd-t", apgd_t), ("fab-t", fab_t),
                     ("square", square)]:
        t1 = time.perf_counter()
        r = run_on(model, fn, x, y, r)
        out["times"][name] = time.perf_counter() - t1
        out["after"][name] = r.float().mean().item()
    out["seconds"] = time.perf_counter() - t0
    out["robust"] = r.float().mean().item()
    return out


def run_robust(binary: Path, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="robust-aa-") as out:
        cmd = [str(binary), "eval", "--attack", "autoattack", "--eps", str(EPS), "--device",
               "cpu", "--quiet", "--out", out]
        if n != 1000:
            cmd += ["--limit", str(n)]
        env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"robust failed ({p.returncode}): {p.stderr}")
        res = json.loads((Path(out) / "results.json").read_text())
    a = res["attacks"][0]
    comps = a["params"].get("components_by_eps", [{}])[0].get("components", [])
    return {
        "seconds": wall,
        "duration_s": res.get("duration_s"),
        "robust": a["points"][0]["robust_accuracy"],
        "after": {c["component"]: c["robust_accuracy_after"] for c in comps},
        "label": a["label"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--no-split", action="store_true",
                    help="time pyautoattack's run_standard_evaluation in one call")
    ap.add_argument("--robust", type=Path, default=Path(
        os.environ.get("CARGO_TARGET_DIR", "/var/tmp/robust-target")) / "release/robust")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = Normalized(build_net()).eval()
    x = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/images.npy")[: args.n]).float()
    x = (x / 255.0 if x.max() > 1.5 else x).unsqueeze(1)
    y = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/labels.npy")[: args.n]).long()
    for rep in range(args.reps):
        ref = run_reference(model, x, y, split=not args.no_split)
        rob = run_robust(args.robust, args.n)
        print(json.dumps({"rep": rep, "pyautoattack": ref, "robust": rob}, indent=1), flush=True)
        print(f"rep {rep}: pyautoattack {ref['seconds']:.1f} s, robust {rob['seconds']:.1f} s "
              f"end to end: {ref['seconds'] / rob['seconds']:.2f}x; robust accuracy "
              f"{rob['robust']:.4f} vs {ref['robust']:.4f}", flush=True)

if __name__ == "__main__":
    main()
