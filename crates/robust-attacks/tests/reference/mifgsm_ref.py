#!/opt/robust-venv/bin/python
"""Reference MI-FGSM results from torchattacks 3.5.1 on the demo model and all 1000 demo images.

Run by hand from the repository root:

    /opt/robust-venv/bin/python crates/robust-attacks/tests/reference/mifgsm_ref.py

`torchattacks.MIFGSM(eps, alpha=eps/10, steps=10, decay=1.0)` (no random start, so the run is
deterministic) on `Normalize(0.1307, 0.3081) + net` (see autoattack_ref.py), at ε 0.05 and 0.1.
Writes mifgsm_ref.json beside this script: per ε the robust flags ('1': correct when clean and
under attack), in image order.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchattacks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoattack_ref import ROOT, Normalized, build_net, flags, predict  # noqa: E402

torch.set_num_threads(2)
model = Normalized(build_net()).eval()
x = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/images.npy")).float().unsqueeze(1) / 255
y = torch.from_numpy(np.load(ROOT / "datasets/mnist-demo/labels.npy")).long()
clean = predict(model, x) == y
out = {"tool": f"torchattacks {torchattacks.__version__}", "steps": 10, "alpha": "eps/10",
       "decay": 1.0, "eps": {}}
for eps in [0.05, 0.1]:
    adv = torchattacks.MIFGSM(model, eps=eps, alpha=eps / 10, steps=10, decay=1.0)(x, y)
    r = clean & (predict(model, adv) == y)
    out["eps"][f"{eps:g}"] = {"robust": flags(r), "robust_accuracy": r.float().mean().item()}
    print(eps, r.float().mean().item(), flush=True)
(Path(__file__).resolve().parent / "mifgsm_ref.json").write_text(json.dumps(out, indent=1) + "\n")
