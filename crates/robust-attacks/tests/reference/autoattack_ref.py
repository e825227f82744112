#!/opt/robust-venv/bin/python
"""Reference robust accuracies from pyautoattack 0.2.0 (PyPI) on the demo model and images.

Run by hand from the repository root (not in CI; it takes tens of minutes on two cores):

    /opt/robust-venv/bin/python crates/robust-attacks/tests/reference/autoattack_ref.py \
        [--n 1000] [--eps 0.1,0.2,0.3] [--out crates/robust-attacks/tests/reference/autoattack_ref.json]

Model: `Normalize(0.1307, 0.3081) + net`, the net rebuilt from models/mnist-cnn/model.safetensors
and arch.json (as benches/compare.py does); images: datasets/mnist-demo (first --n). L-inf,
seed 0, torch on the CPU with one thread.

For each ε it runs, with the library's own attack objects and settings (`AutoAttack(...,
version='standard')`: APGD-CE 100 iterations 1 restart, APGD-T 9 target classes 1 restart,
FAB-T 9 target classes, Square 5000 queries p_init 0.8):

* `standard`: the AutoAttack loop of `run_standard_evaluation` (each component on the points
  still robust, in the order apgd-ce, apgd-t, fab-t, square), recording which component broke
  each point; `standard-no-fab` is the same chain with Square run on the points robust after
  APGD-T (so it also covers the points FAB-T broke), i.e. AutoAttack standard without FAB-T;
* `apgd-ce` (= the first component of the chain), and `apgd-t`, `square` and `fab-t` each
  on their own over all clean-correct points.

Per point the JSON stores '1' (robust: correct under the attack) or '0', in image order.
Written after every step, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import pyautoattack  # noqa: E402
from pyautoattack import AutoAttack  # noqa: E402

ROOT = Path(__file__).resolve().parents[4]
MEAN, STD = 0.1307, 0.3081


def build_net() -> nn.Module:
    arch = json.loads((ROOT / "models/mnist-cnn/arch.json").read_text())
    layers = []
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
            raise SystemExit(f"layer type {t!r} not handled")
        layers.append((l.get("name", str(i)), m))
    names = [n for n, _ in layers]
    if len(set(names)) != len(names):
        layers = [(str(i), m) for i, (_, m) in enumerate(layers)]
    net = nn.Sequential()
    for name, m in layers:
        net.add_module(name, m)
    net.load_state_dict(load_file(str(ROOT / "models/mnist-cnn/model.safetensors")))
    return net


class Normalized(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([MEAN]).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([STD]).view(1, 1, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def flags(b: torch.Tensor) -> str:
    return "".join("1" if v else "0" for v in b.tolist())


def predict(model, x, bs=1000):
    with torch.no_grad():
        return torch.cat([model(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])


def run_on(model, attack_fn, x, y, robust: torch.Tensor) -> torch.Tensor:
    """Runs attack_fn on the points flagged robust; returns the new robust flags."""
    out = robust.clone()
    idx = robust.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    adv = attack_fn(x[idx].clone(), y[idx].clone())
    still = predict(model, adv) == y[idx]
    out[idx[~still]] = False
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", default="0.1,0.2,0.3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path,
                    default=ROOT / "crates/robust-attacks/tests/reference/autoattack_ref.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = Normalized(build_net()).eval()
    x = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/images.npy")[: args.n]).float()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.max() > 1.5:
        x = x / 255.0
    y = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/labels.npy")[: args.n]).long()
    clean = predict(model, x) == y

    result = {
        "tool": f"pyautoattack {getattr(pyautoattack, '__version__', '0.2.0')}",
        "torch": torch.__version__,
        "model": "models/mnist-cnn (Normalize(0.1307, 0.3081) + net)",
        "data": "datasets/mnist-demo",
        "n": args.n,
        "norm": "Linf",
        "seed": args.seed,
        "settings": "AutoAttack(version='standard'): apgd 100 iter 1 restart rho 0.75; "
                    "apgd-t 9 targets; fab-t 9 targets; square 5000 queries p_init 0.8",
        "clean": flags(clean),
        "eps": {},
    }
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get("n") == args.n and old.get("seed") == args.seed:
            result["eps"] = old.get("eps", {})

    def save():
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    for eps in [float(e) for e in args.eps.split(",")]:
        key = f"{eps:g}"
        res = result["eps"].setdefault(key, {})
        aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=args.seed,
                        device="cpu")
        aa.verbose = False

        def apgd_ce(xs, ys):
            aa.apgd.loss = "ce"
            aa.apgd.seed = args.seed
            return aa.apgd.perturb(xs, ys)

        def apgd_t(xs, ys):
            aa.apgd_targeted.seed = args.seed
            return aa.apgd_targeted.perturb(xs, ys)

        def fab_t(xs, ys):
            aa.fab.targeted = True
            aa.fab.n_restarts = 1
            aa.fab.seed = args.seed
            return aa.fab.perturb(xs, ys)

        def square(xs, ys):
            aa.square.seed = args.seed
            return aa.square.perturb(xs, ys)

        if "standard" not in res:
            t0 = time.time()
            chain = {}
            r = clean.clone()
            times = {}
            for name, fn in [("apgd-ce", apgd_ce), ("apgd-t", apgd_t), ("fab-t", fab_t)]:
                t1 = time.time()
                r = run_on(model, fn, x, y, r)
                times[name] = time.time() - t1
                chain[name] = r.clone()
                print(f"eps {key} {name}: robust {r.float().mean():.4f} ({times[name]:.0f} s)",
                      flush=True)
            # Square on the points robust after APGD-T: its result restricted to the points
            # still robust after FAB-T is the standard chain's last component.
            t1 = time.time()
            sq = run_on(model, square, x, y, chain["apgd-t"])
            times["square"] = time.time() - t1
            std_final = chain["fab-t"] & sq
            nofab_final = chain["apgd-t"] & sq
            broken_by = []
            for i in range(args.n):
                if not clean[i]:
                    broken_by.append("clean")
                elif not chain["apgd-ce"][i]:
                    broken_by.append("apgd-ce")
                elif not chain["apgd-t"][i]:
                    broken_by.append("apgd-t")
                elif not chain["fab-t"][i]:
                    broken_by.append("fab-t")
                elif not sq[i]:
                    broken_by.append("square")
                else:
                    broken_by.append("")
            res["apgd-ce"] = {"robust": flags(chain["apgd-ce"]),
                              "robust_accuracy": chain["apgd-ce"].float().mean().item()}
            res["standard"] = {
                "robust": flags(std_final),
                "robust_accuracy": std_final.float().mean().item(),
                "after": {k: v.float().mean().item() for k, v in chain.items()}
                | {"square": std_final.float().mean().item()},
                # One entry per point, comma-separated: the component that broke it,
                # "clean" (misclassified when clean) or "" (robust).
                "broken_by": ",".join(broken_by),
                "seconds": times,
            }
            res["standard-no-fab"] = {
                "robust": flags(nofab_final),
                "robust_accuracy": nofab_final.float().mean().item(),
            }
            print(f"eps {key} standard: {std_final.float().mean():.4f}, without FAB-T "
                  f"{nofab_final.float().mean():.4f} ({time.time() - t0:.0f} s)", flush=True)
            save()
        for name, fn in [("apgd-t", apgd_t), ("square", square), ("fab-t", fab_t)]:
            if name in res:
                continue
            t1 = time.time()
            r = run_on(model, fn, x, y, clean.clone())
            res[name] = {"robust": flags(r), "robust_accuracy": r.float().mean().item(),
                         "seconds": time.time() - t1}
            print(f"eps {key} {name}: robust {r.float().mean():.4f} ({time.time() - t1:.0f} s)",
                  flush=True)
            save()


if __name__ == "__main__":
    main()
