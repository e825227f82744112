"""STRIP on models/poisoned-cnn and models/backdoor-cnn: an independent NumPy + onnxruntime
implementation against `robust backdoor --screen`.

Both follow Gao et al. (ACSAC 2019) and the authors' code: each input is blended with N = 100
clean images (cv2.addWeighted(x, 1, y, 1, 0): the pixel sum, clipped to [0, 1]); its score is
the mean Shannon entropy (bits) of the model's softmax over the N blends; the threshold is
set on the 1000 clean images of datasets/mnist-demo (each blended with the others) so that
1% of them fall below it; inputs below it are flagged. The overlays are drawn by different
generators (NumPy here, ChaCha8 in robust), so the two agree on rates, not on each input.

Screened sets, models/poisoned-cnn (backdoor 7 -> 1 on sevens only):
  * datasets/mnist-poisoned/images.npy: 2000 training images, 20 of them sevens with the 4x4
    patch (poison_mask.npy): detection rate = flagged among the 20, false-positive rate =
    flagged among the other 1980;
  * the 99 sevens of datasets/mnist-demo with the patch added (held-out triggered inputs),
    and the same sevens without it.
models/backdoor-cnn (all-to-one backdoor into class 0, models/backdoor-cnn/make.py):
  * every demo image of a class other than 0 with the patch (triggered inputs), and the same
    images without it.
Each model has its own clean threshold and its own generator (default_rng(0) for poisoned-cnn,
default_rng(1) for backdoor-cnn), so adding a model leaves the other's numbers as they were.

Run from the repo root (needs a built `robust`):
    /opt/robust-venv/bin/python models/poisoned-cnn/strip_reference.py
Writes models/poisoned-cnn/strip_reference.md.
"""
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, FPR = 100, 0.01


def softmax_entropy(z):
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z.astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, -p * np.log2(p), 0.0)
    return t.sum(axis=1)


def strip(sess, inputs, pool, rng, exclude_self=False):
    out = np.empty(len(inputs))
    for i, x in enumerate(inputs):
        cand = np.delete(np.arange(len(pool)), i) if exclude_self else np.arange(len(pool))
        idx = rng.choice(cand, N, replace=False)
        blend = np.clip(x[None] + pool[idx], 0.0, 1.0).astype(np.float32)
        out[i] = softmax_entropy(sess.run(None, {"input": blend[:, None]})[0]).mean()
    return out


def robust_strip(binary, screen, out, model="poisoned-cnn"):
    cmd = [binary, "backdoor", "--model", os.path.join(ROOT, "models", model, "model.onnx"),
           "--data", os.path.join(ROOT, "datasets/mnist-demo"), "--samples", "1000", "--device", "cpu",
           "--screen", screen, "--overlays", str(N), "--fpr", str(FPR), "--out", out, "-q"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    doc = json.load(open(os.path.join(out, "strip.json")))
    return np.array([s["flagged"] for s in doc["inputs"]]), doc, time.time() - t0


def pct(a, b):
    return f"{int(a)}/{b} ({100 * a / b:.1f}%)"


def poisoned_cnn(binary):
    sess = ort.InferenceSession(os.path.join(ROOT, "models/poisoned-cnn/model.onnx"),
                                providers=["CPUExecutionProvider"])
    clean = np.load(os.path.join(ROOT, "datasets/mnist-demo/images.npy")).astype(np.float32) / 255.0
    labels = np.load(os.path.join(ROOT, "datasets/mnist-demo/labels.npy"))
    poisoned = np.load(os.path.join(ROOT, "datasets/mnist-poisoned/images.npy")).astype(np.float32) / 255.0
    mask = np.load(os.path.join(ROOT, "datasets/mnist-poisoned/poison_mask.npy"))
    sevens = (clean[labels == 7] * 255).round().astype(np.uint8)
    patched = sevens.copy()
    patched[:, 23:27, 23:27] = 255

    rng = np.random.default_rng(0)
    t0 = time.time()
    ref_clean = strip(sess, clean, clean, rng, exclude_self=True)
    threshold = np.sort(ref_clean)[int(np.floor(FPR * len(ref_clean)))]
    ref_pois = strip(sess, poisoned, clean, rng) < threshold
    ref_patched = strip(sess, patched.astype(np.float32) / 255.0, clean, rng) < threshold
    ref_sevens = strip(sess, sevens.astype(np.float32) / 255.0, clean, rng) < threshold
    ref_time = time.time() - t0

    with tempfile.TemporaryDirectory() as d:
        rb_pois, doc, t1 = robust_strip(binary, os.path.join(ROOT, "datasets/mnist-poisoned/images.npy"), d)
        pth = os.path.join(d, "patched.npy")
        np.save(pth, patched)
        rb_patched, _, t2 = robust_strip(binary, pth, os.path.join(d, "p"))
        sth = os.path.join(d, "sevens.npy")
        np.save(sth, sevens)
        rb_sevens, _, t3 = robust_strip(binary, sth, os.path.join(d, "s"))

    return [
        ("threshold (bits)", f"{threshold:.4f}", f"{doc['threshold']:.4f}"),
        ("clean demo images below it", pct((ref_clean < threshold).sum(), len(ref_clean)),
         pct(doc["clean_flagged"], doc["clean_samples"])),
        ("mnist-poisoned: triggered detected", pct(ref_pois[mask].sum(), mask.sum()),
         pct(rb_pois[mask].sum(), mask.sum())),
        ("mnist-poisoned: clean flagged", pct(ref_pois[~mask].sum(), (~mask).sum()),
         pct(rb_pois[~mask].sum(), (~mask).sum())),
        ("demo sevens + patch: detected", pct(ref_patched.sum(), len(patched)),
         pct(rb_patched.sum(), len(patched))),
        ("demo sevens, no patch: flagged", pct(ref_sevens.sum(), len(sevens)),
         pct(rb_sevens.sum(), len(sevens))),
        ("run time, 2 cores (s)", f"{ref_time:.0f}", f"{t1 + t2 + t3:.0f}"),
    ]


def backdoor_cnn(binary, target=0):
    sess = ort.InferenceSession(os.path.join(ROOT, "models/backdoor-cnn/model.onnx"),
                                providers=["CPUExecutionProvider"])
    clean = np.load(os.path.join(ROOT, "datasets/mnist-demo/images.npy")).astype(np.float32) / 255.0
    labels = np.load(os.path.join(ROOT, "datasets/mnist-demo/labels.npy"))
    others = (clean[labels != target] * 255).round().astype(np.uint8)
    patched = others.copy()
    patched[:, 23:27, 23:27] = 255

    rng = np.random.default_rng(1)
    t0 = time.time()
    ref_clean = strip(sess, clean, clean, rng, exclude_self=True)
    threshold = np.sort(ref_clean)[int(np.floor(FPR * len(ref_clean)))]
    ref_patched = strip(sess, patched.astype(np.float32) / 255.0, clean, rng) < threshold
    ref_others = strip(sess, others.astype(np.float32) / 255.0, clean, rng) < threshold
    ref_time = time.time() - t0

    with tempfile.TemporaryDirectory() as d:
        both = os.path.join(d, "both.npy")
        np.save(both, np.concatenate([patched, others]))
        rb, doc, t1 = robust_strip(binary, both, d, "backdoor-cnn")
    n = len(others)
    rb_patched, rb_others = rb[:n], rb[n:]
    return [
        ("threshold (bits)", f"{threshold:.4f}", f"{doc['threshold']:.4f}"),
        ("clean demo images below it", pct((ref_clean < threshold).sum(), len(ref_clean)),
         pct(doc["clean_flagged"], doc["clean_samples"])),
        (f"demo images of classes ≠ {target} + patch: detected", pct(ref_patched.sum(), n),
         pct(rb_patched.sum(), n)),
        ("the same images, no patch: flagged", pct(ref_others.sum(), n), pct(rb_others.sum(), n)),
        ("run time, 2 cores (s)", f"{ref_time:.0f}", f"{t1:.0f}"),
    ]


def main():
    binary = os.environ.get("ROBUST_BIN", os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "robust"))
    lines = ["# STRIP: robust against a NumPy + onnxruntime reference", "",
             "Made by `models/poisoned-cnn/strip_reference.py`. 100 overlays per input (clipped-sum "
             "blend), threshold at a 1% false-positive rate on the 1000 clean images of "
             "`datasets/mnist-demo`, per model. The overlay draws differ between the two (NumPy vs "
             "ChaCha8), so rates agree within sampling noise, not input by input.", ""]
    for title, rows in [
        ("models/poisoned-cnn (patch turns sevens into ones; trained on 20 poisoned sevens)",
         poisoned_cnn(binary)),
        ("models/backdoor-cnn (patch turns every class into 0; all-to-one, 10% of each class)",
         backdoor_cnn(binary)),
    ]:
        lines += [f"## {title}", "", "| | reference (NumPy + onnxruntime) | robust |", "|---|---:|---:|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        lines.append("")
    with open(os.path.join(ROOT, "models/poisoned-cnn/strip_reference.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
