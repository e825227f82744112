#!/opt/robust-venv/bin/python
"""Reference results for the minimum-norm attacks and the untargeted FAB, on the demo model.

Run by hand from the repository root (a few minutes on one core):

    /opt/robust-venv/bin/python crates/robust-attacks/tests/reference/minimum_norm_ref.py [--n 300]

Model: `Normalize(0.1307, 0.3081) + net` (see autoattack_ref.py); images: the first --n of
datasets/mnist-demo; torch on the CPU, one thread. Writes minimum_norm_ref.json beside this
script:

* `deepfool-l2`, `deepfool-linf`: Foolbox 3.3.4 `L2DeepFoolAttack` / `LinfDeepFoolAttack`
  (steps 50, candidates 10, overshoot 0.02, loss 'logits': Foolbox's defaults);
* `cw-l2`: Foolbox 3.3.4 `L2CarliniWagnerAttack(binary_search_steps=5, steps=100,
  stepsize=0.05, confidence=0, initial_const=0.01, abort_early=False)` (robust stops each point
  on its own loss where Foolbox stops the batch, so the comparison runs without early stops);

  for each, per image the size of the perturbation the attack returned in its norm when that
  input is misclassified, 0 for an image misclassified when clean, and null (+inf) when the
  attack found nothing;
* `fab`: pyautoattack 0.2.0's untargeted `FABAttack_PT(norm='Linf', n_restarts=1, n_iter=100)`
  at each --fab-eps, per image '1' when it is robust (correct when clean and under attack).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoattack_ref import ROOT, Normalized, build_net, flags, predict  # noqa: E402

import foolbox as fb  # noqa: E402
from pyautoattack.fab_pt import FABAttack_PT  # noqa: E402


def sizes(model, x, y, adv, norm: str) -> list:
    clean = predict(model, x) == y
    fooled = predict(model, adv) != y
    d = (adv - x).reshape(len(x), -1)
    size = d.norm(dim=1) if norm == "l2" else d.abs().max(dim=1)[0]
    out = []
    for i in range(len(x)):
        if not clean[i]:
            out.append(0.0)
        elif fooled[i]:
            out.append(float(size[i]))
        else:
            out.append(None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--fab-eps", default="0.1,0.15")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = Normalized(build_net()).eval()
    x = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/images.npy")[: args.n]).float()
    x = x.unsqueeze(1) / 255.0
    y = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/labels.npy")[: args.n]).long()
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    crit = fb.criteria.Misclassification(y)
    out = {
        "tools": f"foolbox {fb.__version__}, pyautoattack 0.2.0, torch {torch.__version__}",
        "model": "models/mnist-cnn (Normalize(0.1307, 0.3081) + net)",
        "data": "datasets/mnist-demo",
        "n": args.n,
        "clean": flags(predict(model, x) == y),
        "attacks": {},
    }
    cw = dict(binary_search_steps=5, steps=100, stepsize=0.05, confidence=0.0,
              initial_const=0.01, abort_early=False)
    runs = [
        ("deepfool-l2", "l2", fb.attacks.L2DeepFoolAttack(steps=50, candidates=10,
                                                           overshoot=0.02, loss="logits"),
         {"steps": 50, "candidates": 10, "overshoot": 0.02, "loss": "logits"}),
        ("deepfool-linf", "linf", fb.attacks.LinfDeepFoolAttack(steps=50, candidates=10,
                                                                 overshoot=0.02, loss="logits"),
         {"steps": 50, "candidates": 10, "overshoot": 0.02, "loss": "logits"}),
        ("cw-l2", "l2", fb.attacks.L2CarliniWagnerAttack(**cw), cw),
    ]
    for key, norm, attack, settings in runs:
        adv = attack.run(fmodel, x, crit)
        s = sizes(model, x, y, adv, norm)
        out["attacks"][key] = {"norm": norm, "settings": settings, "sizes": s}
        finite = sorted(v if v is not None else float("inf") for v, c in
                        zip(s, out["clean"]) if c == "1")
        print(key, "median", float(np.median(finite)), flush=True)
    fab = {}
    for eps in [float(e) for e in args.fab_eps.split(",")]:
        a = FABAttack_PT(model, norm="Linf", n_restarts=1, n_iter=100, eps=eps, seed=0,
                         targeted=False, device="cpu")
        adv = a.perturb(x.clone(), y.clone())
        r = (predict(model, x) == y) & (predict(model, adv) == y)
        fab[f"{eps:g}"] = {"robust": flags(r), "robust_accuracy": r.float().mean().item()}
        print("fab", eps, r.float().mean().item(), flush=True)
    out["attacks"]["fab"] = {"norm": "linf", "settings": {"n_restarts": 1, "n_iter": 100},
                             "eps": fab}
    path = Path(__file__).resolve().parent / "minimum_norm_ref.json"
    path.write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
