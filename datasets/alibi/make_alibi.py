"""Reference drift verdicts from alibi-detect 0.13 (used only as a test oracle).

Makes datasets/alibi/cases.json (paths relative to the repository root). Each case holds its
input data and what alibi-detect returned for it:

  ks_*           KSDrift(x_ref, p_val, correction).predict(x): is_drift, p_val (per feature,
                 float32), distance (float32), threshold (a number, or alibi's vector of FDR
                 rank thresholds when nothing is below them). Data are float32 (as alibi is
                 usually fed) and, in one case, integer pixel values with many ties.
  mmd_*          MMDDriftTorch(x_ref, p_val, n_permutations) (PyTorch backend, CPU, float64
                 data rounded to 6 decimals): sigma (median heuristic on x_ref; alibi keeps
                 it in a float32 parameter), distance (MMD^2, computed in float64 with that
                 sigma), p_val and distance_threshold of the permutation test
                 (torch.manual_seed(0)).
  uncertainty_*  ClassifierUncertaintyDrift(x_ref, model=identity, preds_type='logits',
                 uncertainty_type='entropy'): the inputs *are* the logits; is_drift, p_val,
                 distance, threshold.
  bbsd_*         KSDrift on scipy.special.softmax(logits): black-box shift detection.

alibi-detect is under the Business Source License: it is called here as an oracle, nothing
of it is copied into robust. Its package __init__ imports TensorFlow (and transformers),
which clash with other packages in this venv, so the detector modules are imported
directly, without the package __init__ files.

Requirements: numpy, scipy, torch, alibi-detect==0.13.0. Run from the repository root:
    /opt/robust-venv/bin/python datasets/alibi/make_alibi.py
Deterministic (numpy default_rng(2026), torch.manual_seed(0)).
"""
import importlib.util
import json
import os
import sys
import types

import numpy as np
import scipy.special
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def import_alibi():
    root = os.path.dirname(importlib.util.find_spec("alibi_detect").origin)
    for name in ["alibi_detect", "alibi_detect.cd", "alibi_detect.cd.pytorch"]:
        m = types.ModuleType(name)
        m.__path__ = [os.path.join(root, *name.split(".")[1:])]
        sys.modules[name] = m
    from alibi_detect.cd.ks import KSDrift
    from alibi_detect.cd.pytorch.mmd import MMDDriftTorch
    from alibi_detect.cd.model_uncertainty import ClassifierUncertaintyDrift
    from importlib.metadata import version
    return KSDrift, MMDDriftTorch, ClassifierUncertaintyDrift, version("alibi-detect")


KSDrift, MMDDriftTorch, ClassifierUncertaintyDrift, ALIBI_VERSION = import_alibi()


def floats(a):
    """Numbers for JSON; float32 values as their shortest float32 decimal (the test parses
    them as f64 and rounds to f32, which gives back the value exactly)."""
    a = np.asarray(a)
    if a.dtype == np.float32:
        return [float(np.format_float_scientific(v, unique=True)) for v in a.ravel()]
    return [float(v) for v in a.ravel()]


def table(a):
    a = np.asarray(a)
    return {"rows": int(a.shape[0]), "cols": int(a.shape[1]), "dtype": str(a.dtype),
            "values": floats(a)}


MASK = (1 << 64) - 1


def splitmix(spec):
    """A [n, 1] float64 column offset + scale * u, u uniform in [0, 1) from SplitMix64 (the
    Rust test makes the same values from the same spec)."""
    state = spec["seed"] & MASK
    out = []
    for _ in range(spec["n"]):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out.append(spec["offset"] + spec["scale"] * ((z >> 11) / 9007199254740992.0))
    return np.asarray(out, dtype=np.float64)[:, None]


def ks_case(name, x_ref, x, p_val, correction):
    cd = KSDrift(x_ref, p_val=p_val, correction=correction)
    out = cd.predict(x)["data"]
    thr = out["threshold"]
    return {
        "name": name, "kind": "ks", "p_val_level": p_val, "correction": correction,
        "reference": table(x_ref), "current": table(x),
        "expected": {
            "is_drift": int(out["is_drift"]),
            "p_val": floats(out["p_val"]),
            "distance": floats(out["distance"]),
            "threshold": floats(thr) if np.ndim(thr) > 0 else float(thr),
        },
    }


def mmd_case(name, x_ref, x, p_val, n_perm):
    torch.manual_seed(0)
    cd = MMDDriftTorch(x_ref, p_val=p_val, n_permutations=n_perm, device="cpu")
    sigma = float(cd.kernel.sigma.detach().cpu().numpy().ravel()[0])
    out = cd.predict(x)["data"]
    return {
        "name": name, "kind": "mmd", "p_val_level": p_val, "n_permutations": n_perm,
        "reference": table(x_ref), "current": table(x),
        "expected": {
            "is_drift": int(out["is_drift"]), "p_val": float(out["p_val"]),
            "distance": float(out["distance"]),
            "distance_threshold": float(out["distance_threshold"]), "sigma": sigma,
        },
    }


def uncertainty_case(name, logits_ref, logits, p_val):
    cd = ClassifierUncertaintyDrift(logits_ref, model=lambda z: z, p_val=p_val,
                                    preds_type="logits", uncertainty_type="entropy")
    out = cd.predict(logits)["data"]
    return {
        "name": name, "kind": "uncertainty", "p_val_level": p_val, "correction": "bonferroni",
        "reference": table(logits_ref), "current": table(logits),
        "expected": {
            "is_drift": int(out["is_drift"]), "p_val": floats(out["p_val"]),
            "distance": floats(out["distance"]), "threshold": float(out["threshold"]),
        },
    }


def bbsd_case(name, logits_ref, logits, p_val):
    case = ks_case(name, scipy.special.softmax(logits_ref, axis=-1),
                   scipy.special.softmax(logits, axis=-1), p_val, "bonferroni")
    case["kind"] = "bbsd"
    case["reference"], case["current"] = table(logits_ref), table(logits)
    return case


def main():
    rng = np.random.default_rng(2026)
    cases = []

    # Tabular, float32: two of six features shifted a little, one a lot.
    ref = rng.normal(size=(200, 6)).astype(np.float32)
    cur = rng.normal(size=(150, 6)).astype(np.float32)
    cur[:, 1] += 0.25
    cur[:, 4] *= 1.6
    cur[:, 5] += 1.0
    cases.append(ks_case("ks_bonferroni_shift", ref, cur, 0.05, "bonferroni"))
    cases.append(ks_case("ks_fdr_shift", ref, cur, 0.05, "fdr"))
    # No shift: Bonferroni keeps one threshold, FDR returns its vector of rank thresholds.
    cur0 = rng.normal(size=(180, 6)).astype(np.float32)
    cases.append(ks_case("ks_bonferroni_none", ref, cur0, 0.05, "bonferroni"))
    cases.append(ks_case("ks_fdr_none", ref, cur0, 0.05, "fdr"))
    # A weak shift close to the corrected threshold, at a stricter level.
    cur1 = rng.normal(size=(300, 4)).astype(np.float32) + np.float32(0.18)
    ref1 = rng.normal(size=(320, 4)).astype(np.float32)
    cases.append(ks_case("ks_fdr_weak", ref1, cur1, 0.1, "fdr"))
    cases.append(ks_case("ks_bonferroni_weak", ref1, cur1, 0.1, "bonferroni"))
    # Pixel-like integer values (many ties), 8 features.
    refp = rng.integers(0, 8, size=(120, 8)).astype(np.float32)
    curp = np.clip(rng.integers(0, 8, size=(100, 8)) + (rng.random((100, 8)) < 0.3), 0, 7)
    cases.append(ks_case("ks_ties_pixels", refp, curp.astype(np.float32), 0.05, "bonferroni"))
    # Up to 10 000 samples SciPy's default is the exact distribution; alibi is asymptotic.
    # Data from a generator spec (kept out of the JSON), uniform with a small offset.
    spec_ref = {"seed": 11, "n": 6000, "scale": 1.0, "offset": 0.0}
    spec_cur = {"seed": 12, "n": 5000, "scale": 1.0, "offset": 0.02}
    case = ks_case("ks_large", splitmix(spec_ref), splitmix(spec_cur), 0.05, "bonferroni")
    case["reference"] = {"rows": 6000, "cols": 1, "splitmix": spec_ref}
    case["current"] = {"rows": 5000, "cols": 1, "splitmix": spec_cur}
    cases.append(case)

    # MMD: float64, 3-D and 10-D, no shift, a borderline shift and a clear one.
    for name, n, m, d, shift, n_perm in [
        ("mmd_none", 120, 100, 3, 0.0, 2000),
        ("mmd_borderline", 100, 90, 10, 0.3, 2000),
        ("mmd_clear", 80, 70, 5, 0.8, 500),
    ]:
        x_ref = np.round(rng.normal(size=(n, d)), 6)
        x = np.round(rng.normal(size=(m, d)) + shift * np.linspace(1.0, 0.0, d), 6)
        cases.append(mmd_case(name, x_ref, x, 0.05, n_perm))

    # Model outputs: 10-class logits; the current set is less confident.
    lref = rng.normal(size=(150, 10)) * 2.0
    lref[np.arange(150), rng.integers(0, 10, 150)] += 4.0
    lcur = rng.normal(size=(130, 10)) * 2.0
    lcur[np.arange(130), rng.integers(0, 10, 130)] += 2.5
    lref, lcur = np.round(lref, 6), np.round(lcur, 6)
    cases.append(uncertainty_case("uncertainty_less_confident", lref, lcur, 0.05))
    cases.append(bbsd_case("bbsd_less_confident", lref, lcur, 0.05))

    doc = {"generator": "datasets/alibi/make_alibi.py", "alibi_detect": ALIBI_VERSION,
           "numpy": np.__version__, "scipy": scipy.__version__, "torch": torch.__version__,
           "cases": cases}
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
