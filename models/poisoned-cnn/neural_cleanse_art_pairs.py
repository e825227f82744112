"""Source-restricted Neural Cleanse: ART 1.20 against `robust backdoor --scope per-source`.

The pair check of the per-source scope. ART has no per-source mode, but its Neural Cleanse
run on the clean images of one source class only gives, for every target, the smallest
trigger that moves that source's images: the row `source -> *` of robust's pair table.
Source 7 is the poisoned model's backdoor source (its patch turns sevens into ones).

Both tools get the same images (the sevens of datasets/mnist-demo, x = uint8/255) and the
settings of neural_cleanse_art.py (whose Keras rebuild and two fixes to ART's reset() are
reused). robust runs every pair in full (`--pair-finalists 9`, no screen) on all 1000 demo
images, so its pair 7 -> t sees the same sevens. Target 7 is left out of the comparison:
ART optimises on the target's own images too, and those are the sevens here.

Run from the repo root (about 2 min per model for ART on 2 cores):
    /opt/robust-venv/bin/python models/poisoned-cnn/neural_cleanse_art_pairs.py [--source 7]
Writes models/poisoned-cnn/neural_cleanse_art_pairs.json and prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neural_cleanse_art as base  # noqa: E402

import numpy as np  # noqa: E402


def robust_pairs(name, source, steps, seed, binary):
    cfg = base.MODELS[name]
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "backdoor", "--model", os.path.join(base.ROOT, "models", name, "model.onnx"),
               "--data", os.path.join(base.ROOT, "datasets", "mnist-demo"), "--device", "cpu",
               "--samples", "1000", "--steps", str(steps), "--seed", str(seed),
               "--scope", "per-source", "--pair-finalists", "9", "--out", out, "-q"]
        if cfg["mean"] is not None:
            cmd += ["--mean", str(cfg["mean"]), "--std", str(cfg["std"])]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.time() - t0
        assert r.returncode in (0, 1), r.stderr
        doc = json.load(open(os.path.join(out, "backdoor.json")))
    row = {p["target"]: p["norm"] for p in doc["pairs"] if p["source"] == source}
    return [row.get(t) for t in range(10)], seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--robust", default=os.environ.get(
        "ROBUST_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(base.ROOT, "target")),
                                   "release", "robust")))
    args = ap.parse_args()
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    images = np.load(os.path.join(base.ROOT, "datasets", "mnist-demo", "images.npy"))
    y = np.load(os.path.join(base.ROOT, "datasets", "mnist-demo", "labels.npy")).astype(int)
    keep = y == args.source
    x = (images[keep].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    ys = y[keep]
    res = {"source": args.source, "images": int(keep.sum()), "steps": args.steps,
           "settings": base.SETTINGS, "models": {}}
    for name in base.MODELS:
        a_norms, _, a_masks, a_sec = base.run_art(name, x, ys, args.steps, args.seed)
        r_norms, r_sec = robust_pairs(name, args.source, args.steps, args.seed, args.robust)
        targets = [t for t in range(10) if t != args.source]
        a = [a_norms[t] for t in targets]
        r = [r_norms[t] for t in targets]
        entry = {"targets": targets, "art": a, "robust": r, "art_seconds": a_sec,
                 "robust_seconds_all_90_pairs": r_sec,
                 "smallest_target": {"art": targets[int(np.argmin(a))],
                                     "robust": targets[int(np.argmin(r))]},
                 "spearman_rank_correlation": base.spearman(a, r)}
        if name == "poisoned-cnn":
            entry["target1_mask_share_in_patch_art"] = base.patch_share(a_masks[1][0])
        res["models"][name] = entry
        print(name, json.dumps(entry), flush=True)
    with open(os.path.join(base.ROOT, "models", "poisoned-cnn", "neural_cleanse_art_pairs.json"), "w") as f:
        json.dump(res, f, indent=1)
    for name, e in res["models"].items():
        print(f"\n{name}: source {args.source} -> target, mask L1 norm\n")
        print("| target | ART | robust |\n|---:|---:|---:|")
        for t, a, r in zip(e["targets"], e["art"], e["robust"]):
            print(f"| {t} | {a:.2f} | {r:.2f} |")
        print(f"\nsmallest: ART {e['smallest_target']['art']}, robust {e['smallest_target']['robust']}; "
              f"Spearman {e['spearman_rank_correlation']:.3f}")


if __name__ == "__main__":
    main()
