"""Check robust against PyTorch on full-size torchvision classifiers (manual check, not run in CI).

For each architecture (random init, torch.manual_seed(0), eval mode) and each ONNX exporter
(`legacy`: TorchScript exporter, opset 17, dynamic batch; `dynamo`: torch.export based exporter
with its default opset and external-data behaviour, dynamic batch if possible, else fixed batch 2),
it exports the model once to --workdir/ARCH/EXPORTER, and for every input seed in --seeds computes
PyTorch float32 and float64 logits and input gradients of sum(logits * W) for 2 inputs uniform in
[0,1] (numpy seed = the input seed) and W ~ N(0,1) [2,classes] (numpy seed 1), runs

    robust predict --model M.onnx --data input.npy --unlabelled --out logits.npy \
        --grad-weights w.npy --grad-out grad.npy --device cpu --batch-size 2

(per-seed files in --workdir/ARCH/seedS/EXPORTER) and compares robust with PyTorch float64:
    err = max|robust - torch64| / max|torch64|   (logits and input gradient separately);
PyTorch float32 errors are measured the same way. A seed passes strictly when, for both logits
and gradient, err <= max(3 * torch32_err, 1e-4).

Kinks. Random-init nets with ReLU/ReLU6/Hardswish/max-pool have units whose input lies within
float32 rounding of a switch point (ReLU: 0; ReLU6/hardtanh: both bounds; Hardswish/Hardsigmoid:
-3 and 3; max-pool: the top two values of a window). Which of them take the other linear piece
differs between float32 implementations, and each flip changes the input gradient over a patch,
so PyTorch's own f32 gradient error is input-dependent (1e-6 .. 5e-2) and a single-seed gradient
comparison is a coin flip. Per seed, the script therefore runs the model in float64 (and float32)
under a TorchFunctionMode that sees every F.relu / F.relu6 / F.hardtanh / F.leaky_relu /
F.hardswish / F.hardsigmoid / F.max_pool2d call (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.MaxPool2d
modules call these, and so do the functional calls in googlenet / inception_v3; the input is
read before an inplace op runs) and records the kink margin
    min over units of |z - kink| / max|z|   (max-pool: (top1 - top2) / max|z| per window),
minimised over all such calls; exact zeros / exact ties (structural, e.g. max-pool over
post-ReLU zeros) are excluded and counted separately. It also counts the units where PyTorch f32
itself takes another piece than f64 ("torch f32 flips") as direct evidence.

Verdict per (architecture, exporter, device):
    a seed is 'pass' if it passes strictly, 'kink' if only the gradient fails and the kink margin
    at that seed is < --kink-threshold (1e-6), else 'FAIL' (also: logits fail, robust error);
    PASS if no seed is FAIL and at least one seed passes strictly (a kink-free seed that does not
    pass strictly is a FAIL seed); FAIL otherwise.
Logits are continuous across kinks, so a logits failure is never kink-explained.

Writes a Markdown table (--table, default models/full-size-check.md) and a JSON file next to it
(.json: the runs, the criterion and every row with its per-seed details). With --merge, rows
(keyed by architecture, exporter, device) are merged into the existing JSON/table instead of
replacing it (e.g. a --devices wgpu run for a few models after the full CPU run). One model's
failure does not stop the run.

--bisect-resnet50 instead exports sub-networks of torchvision resnet50
(stem + layer1 + layer2[:k] + spatial mean, k = 0..4, legacy exporter) and prints the errors per k.

Run from the repository root, e.g.:
    /opt/robust-venv/bin/python scripts/check_full_size.py --arch resnet18,resnet50 --seeds 0,1,2
    /opt/robust-venv/bin/python scripts/check_full_size.py --arch resnet18,vit_b_16 \
        --exporters legacy --devices wgpu --merge --reuse --keep
    /opt/robust-venv/bin/python scripts/check_full_size.py --bisect-resnet50
    /opt/robust-venv/bin/python scripts/check_full_size.py --arch resnet18 --no-robust
Exports, references and kink statistics are kept in --workdir with --keep / --no-robust and
reused with --reuse (references are checked against the input they were computed for).
Models whose builder zero-initialises a Linear layer (vit_b_16's head) get it re-initialised.
"""
import argparse
import copy
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.overrides import TorchFunctionMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_ARCHS = [
    "alexnet", "vgg11_bn", "resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d",
    "densenet121", "squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v2", "mobilenet_v3_small",
    "mnasnet0_5", "efficientnet_b0", "regnet_y_400mf", "googlenet", "convnext_tiny", "vit_b_16",
    "swin_t", "maxvit_t", "inception_v3",
]
EXPORTERS = ["legacy", "dynamo"]
DEVICES = ["cpu", "wgpu"]
N = 2
KINKS_VERSION = 1


# ---------------------------------------------------------------- models and references
def build_model(arch):
    torch.manual_seed(0)
    kwargs = {"weights": None}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    model = torchvision.models.get_model(arch, **kwargs)
    # Some builders zero-initialise the classifier (vit_b_16's heads.head): logits and input
    # gradients would be identically 0. Re-initialise such Linear layers (seeded) instead.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
    return model.eval()


def input_size(arch):
    return 299 if arch == "inception_v3" else 224


INPUT_SEED = [0]  # --input-seed (bisection)


def make_input(size, seed=None):
    rng = np.random.default_rng(INPUT_SEED[0] if seed is None else seed)
    return rng.uniform(0.0, 1.0, size=(N, 3, size, size)).astype(np.float32)


def input_digest(x_np):
    return hashlib.sha1(np.ascontiguousarray(x_np).tobytes()).hexdigest()[:16]


def make_weights(classes):
    rng = np.random.default_rng(1)
    return rng.standard_normal((N, classes)).astype(np.float32)


def forward_backward(model, x, w):
    """Logits and d/dx sum(model(x) * w) in the dtype of x."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * w.to(out.dtype)).sum().backward()
    return out.detach().numpy(), x.grad.detach().numpy()


def reference(model, x_np, w_np):
    """PyTorch float32 and float64 (deep copy, .double()) logits and input gradients."""
    x = torch.from_numpy(x_np)
    w = torch.from_numpy(w_np)
    l32, g32 = forward_backward(model, x, w)
    model64 = copy.deepcopy(model).double()
    l64, g64 = forward_backward(model64, x.double(), w.double())
    del model64
    return {"logits32": l32, "grad32": g32, "logits64": l64, "grad64": g64}


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        raise ValueError(f"shape {list(a.shape)} != reference shape {list(ref.shape)}")
    scale = np.max(np.abs(ref))
    if scale == 0:
        scale = 1.0
    return float(np.max(np.abs(a - ref)) / scale)


def criterion(err, torch32_err):
    return err <= max(3.0 * torch32_err, 1e-4)


# ---------------------------------------------------------------- kinks
def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _bind(names, defaults, args, kwargs):
    vals = dict(defaults)
    vals.update(zip(names, args))
    vals.update({k: v for k, v in kwargs.items() if k in names})
    return vals


def kink_spec(func, args, kwargs):
    """(kind, input tensor, params) if `func` is piecewise linear with kinks, else None."""
    if func in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_):
        return "relu", args[0], {"kinks": (0.0,)}
    if func is F.relu6:
        return "relu6", args[0], {"kinks": (0.0, 6.0)}
    if func is F.hardtanh:
        v = _bind(["input", "min_val", "max_val"], {"min_val": -1.0, "max_val": 1.0}, args,
                  kwargs)
        kind = "relu6" if (v["min_val"], v["max_val"]) == (0.0, 6.0) else "hardtanh"
        return kind, v["input"], {"kinks": (float(v["min_val"]), float(v["max_val"]))}
    if func is F.leaky_relu:
        return "leaky_relu", args[0], {"kinks": (0.0,)}
    if func is F.hardswish:
        return "hardswish", args[0], {"kinks": (-3.0, 3.0)}
    if func is F.hardsigmoid:
        return "hardsigmoid", args[0], {"kinks": (-3.0, 3.0)}
    if func in (F.max_pool2d, F._max_pool2d, F.max_pool2d_with_indices):
        v = _bind(["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"],
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}, args, kwargs)
        if v["input"].dim() != 4:
            return None
        ks = _pair(v["kernel_size"])
        st = ks if v["stride"] in (None, [], ()) else _pair(v["stride"])
        return "maxpool", v["input"], {"kernel_size": ks, "stride": st,
                                       "padding": _pair(v["padding"]),
                                       "dilation": _pair(v["dilation"]),
                                       "ceil_mode": bool(v["ceil_mode"])}
    return None


class KinkRecorder(TorchFunctionMode):
    """Records the input of every piecewise-linear call (before an inplace op runs)."""

    def __init__(self, on_call):
        super().__init__()
        self.on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        spec = kink_spec(func, args, kwargs)
        if spec is not None and isinstance(spec[1], torch.Tensor):
            self.on_call(spec[0], spec[1].detach(), spec[2])
        return func(*args, **kwargs)


def _pool_windows(z, p):
    """Max-pool windows of z [N,C,H,W] as [N*C, window, positions], padded with -inf."""
    n, c, h, w = z.shape
    zz = z.reshape(n * c, 1, h, w)
    pads, sizes = [], []
    for length, k, s, pd, d in zip((h, w), p["kernel_size"], p["stride"], p["padding"],
                                   p["dilation"]):
        eff = d * (k - 1) + 1
        num = length + 2 * pd - eff
        out = (-(-num // s) if p["ceil_mode"] else num // s) + 1
        if p["ceil_mode"] and (out - 1) * s >= length + pd:
            out -= 1
        right = (out - 1) * s + eff - length - pd
        pads.append((pd, right))
        sizes.append(out)
    (pt, pb), (pl, pr) = pads
    if pb < 0:
        zz, pb = zz[:, :, :h + pb], 0
    if pr < 0:
        zz, pr = zz[:, :, :, :w + pr], 0
    zz = F.pad(zz, (pl, pr, pt, pb), value=float("-inf"))
    cols = F.unfold(zz, p["kernel_size"], dilation=p["dilation"], stride=p["stride"])
    return cols, sizes


RISK_FACTOR = 10.0


def kink_stats(kind, z64, z32, p):
    """Kink margin (relative, exact zeros/ties excluded), exact count, f32 flips, f32 deviation
    (max|z32 - z64| / max|z64|) and 'at risk' units: distance to the kink (max-pool: gap) within
    RISK_FACTOR times the f32 deviation of this call (x2 for a gap)."""
    scale = float(z64.abs().max()) or 1.0
    dev_abs = float((z32.double() - z64).abs().max())
    dev = dev_abs / scale
    if kind == "maxpool":
        args = (p["kernel_size"], p["stride"], p["padding"], p["dilation"], p["ceil_mode"])
        m64, i64 = F.max_pool2d(z64, *args, return_indices=True)
        _, i32 = F.max_pool2d(z32, *args, return_indices=True)
        flips = int((i64 != i32).sum())
        window = p["kernel_size"][0] * p["kernel_size"][1]
        if window < 2:
            return {"margin": None, "exact": 0, "flips": flips, "dev": dev, "units": 0,
                    "at_risk": 0}
        cols, sizes = _pool_windows(z64, p)
        if cols.shape[-1] != i64.shape[-1] * i64.shape[-2]:
            return {"margin": None, "exact": None, "flips": flips, "dev": dev,
                    "units": int(i64.numel()), "note": f"window count {cols.shape[-1]} != "
                                                       f"{list(i64.shape[-2:])}"}
        top = cols.topk(2, dim=1).values
        if not torch.equal(top[:, 0].reshape(m64.shape), m64):  # the windows are max_pool2d's
            return {"margin": None, "exact": None, "flips": flips, "dev": dev,
                    "units": int(i64.numel()), "note": "windows do not reproduce max_pool2d"}
        gap = top[:, 0] - top[:, 1]
        exact = int((gap == 0).sum())
        ok = torch.isfinite(gap) & (gap > 0)
        margin = float(gap[ok].min()) / scale if bool(ok.any()) else None
        at_risk = int((ok & (gap <= 2 * RISK_FACTOR * dev_abs)).sum())
        return {"margin": margin, "exact": exact, "flips": flips, "dev": dev,
                "units": int(i64.numel()), "at_risk": at_risk}
    kinks = p["kinks"]
    dist = torch.stack([(z64 - k).abs() for k in kinks]).amin(dim=0)
    exact = int((dist == 0).sum())
    pos = dist[dist > 0]
    margin = float(pos.min()) / scale if pos.numel() else None
    at_risk = int((pos <= RISK_FACTOR * dev_abs).sum())
    piece64 = sum((z64 > k).to(torch.int8) for k in kinks)
    piece32 = sum((z32 > k).to(torch.int8) for k in kinks)
    flips = int((piece64 != piece32).sum())
    return {"margin": margin, "exact": exact, "flips": flips, "dev": dev, "units": int(z64.numel()),
            "at_risk": at_risk}


def kink_analysis(model, x_np):
    """Forward passes in float32 and float64 under KinkRecorder; per-call and global stats."""
    calls32 = []

    def rec32(kind, z, p):
        calls32.append((kind, z.clone(), p))

    with torch.no_grad(), KinkRecorder(rec32):
        model(torch.from_numpy(x_np))
    model64 = copy.deepcopy(model).double()
    per_call = []

    def rec64(kind, z, p):
        i = len(per_call)
        if i >= len(calls32) or calls32[i][0] != kind or calls32[i][1].shape != z.shape:
            per_call.append({"op": f"{kind}#{i}", "error": "call sequence differs from f32"})
            return
        st = kink_stats(kind, z, calls32[i][1], p)
        calls32[i] = None  # free the f32 copy
        per_call.append(dict(op=f"{kind}#{i}", **st))

    with torch.no_grad(), KinkRecorder(rec64):
        model64(torch.from_numpy(x_np).double())
    del model64
    counts = {}
    for c in per_call:
        kind = c["op"].split("#")[0]
        counts[kind] = counts.get(kind, 0) + 1
    with_margin = [c for c in per_call if c.get("margin") is not None]
    worst = min(with_margin, key=lambda c: c["margin"]) if with_margin else None
    return {
        "version": KINKS_VERSION,
        "input_digest": input_digest(x_np),
        "ops": counts,
        "min_margin": worst["margin"] if worst else None,
        "min_margin_op": worst["op"] if worst else None,
        "torch32_flips": sum(c.get("flips") or 0 for c in per_call),
        "at_risk": sum(c.get("at_risk") or 0 for c in per_call),
        "risk_factor": RISK_FACTOR,
        "exact": sum(c.get("exact") or 0 for c in per_call),
        "units": sum(c.get("units") or 0 for c in per_call),
        "max_torch32_dev": max((c.get("dev", 0.0) for c in per_call), default=None),
        "errors": [c for c in per_call if "error" in c or "note" in c],
        "per_call": per_call,
    }


# ---------------------------------------------------------------- export
def export_legacy(model, x, path):
    torch.onnx.export(
        model, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return "dynamic batch"


def export_dynamo(model, x, path):
    """Default dynamo exporter; dynamic batch, else fixed batch. Returns a note."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: batch},))
        return "dynamic batch"
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"    dynamic-batch dynamo export failed ({first[:200]}); retrying with fixed batch",
              flush=True)
        for p in (path, path + ".data"):
            if os.path.exists(p):
                os.remove(p)
        torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"],
                          output_names=["logits"])
        return "fixed batch"


def export(exporter, model, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            return export_legacy(model, x, path)
        if exporter == "dynamo":
            return export_dynamo(model, x, path)
    raise ValueError(f"unknown exporter {exporter!r}")


def onnx_opset_and_size(path):
    """(opset, total size in MB of the .onnx and its external data files)."""
    try:
        import onnx
        m = onnx.load(path, load_external_data=False)
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:  # noqa: BLE001
        opset = None
    d = os.path.dirname(path)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if f.startswith(os.path.basename(path)))
    return opset, size / 1e6


def ort_logits(path, x_np):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x_np})[0]


# ---------------------------------------------------------------- robust
def run_robust(robust, model_path, workdir, device, timeout):
    """Run `robust predict`; returns dict(ok, error, seconds, logits, grad)."""
    out = os.path.join(workdir, f"logits_{device}.npy")
    grad = os.path.join(workdir, f"grad_{device}.npy")
    for p in (out, grad):
        if os.path.exists(p):
            os.remove(p)
    cmd = [robust, "predict", "--model", model_path, "--data", os.path.join(workdir, "input.npy"),
           "--unlabelled", "--out", out, "--grad-weights", os.path.join(workdir, "w.npy"),
           "--grad-out", grad, "--device", device, "--batch-size", str(N)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {timeout}s",
                "seconds": time.perf_counter() - t0}
    secs = time.perf_counter() - t0
    with open(os.path.join(workdir, f"robust_{device}.log"), "w") as f:
        f.write(" ".join(cmd) + "\n--- stdout\n" + p.stdout + "\n--- stderr\n" + p.stderr)
    if p.returncode != 0:
        lines = [ln.strip() for ln in (p.stderr + "\n" + p.stdout).splitlines() if ln.strip()]
        # prefer an "error" line over log noise
        err = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        err = err.replace(f"{model_path}: ", "")  # the path is the same in every row
        return {"ok": False, "error": f"exit {p.returncode}: {err}", "seconds": secs}
    try:
        return {"ok": True, "error": None, "seconds": secs, "logits": np.load(out),
                "grad": np.load(grad)}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": f"outputs unreadable: {e}", "seconds": secs}


def compare(row, res, ref):
    """Fill row's error/pass fields from robust's outputs `res` and the references."""
    row["loads"] = "yes"
    row["robust_seconds"] = res["seconds"]
    try:
        row["logits_err"] = rel_err(res["logits"], ref["logits64"])
        row["grad_err"] = rel_err(res["grad"], ref["grad64"])
        # vs PyTorch float32: separates rounding from ReLU/max "kink" flips (a pre-activation
        # within rounding of 0 changes the gradient discontinuously, in PyTorch f32 as well)
        row["logits_err_vs_f32"] = rel_err(res["logits"], ref["logits32"])
        row["grad_err_vs_f32"] = rel_err(res["grad"], ref["grad32"])
    except ValueError as e:
        row["note"] = (row.get("note", "") + f"; output shape mismatch: {e}").lstrip("; ")
        row["pass"] = False
        return
    row["pass"] = bool(criterion(row["logits_err"], row["torch32_logits_err"])
                       and criterion(row["grad_err"], row["torch32_grad_err"]))


# ---------------------------------------------------------------- per-seed references and kinks
def seed_dir(args, arch, seed):
    return os.path.join(args.workdir, arch, f"seed{seed}")


def get_reference(model, arch, seed, x_np, args):
    """PyTorch f32/f64 references for input x_np (cached per seed, checked against the input)."""
    sdir = seed_dir(args, arch, seed)
    os.makedirs(sdir, exist_ok=True)
    path = os.path.join(sdir, "reference.npz")
    if args.reuse:
        if os.path.exists(path):
            ref = dict(np.load(path))
            if "input" in ref and np.array_equal(ref["input"], x_np):
                return ref, "cached"
        # layout of earlier versions of this script: ARCH[-seedS]/reference.npz, the input in
        # ARCH[-seedS]/EXPORTER/input.npy
        old = os.path.join(args.workdir, arch if seed == 0 else f"{arch}-seed{seed}")
        if os.path.exists(os.path.join(old, "reference.npz")):
            for e in EXPORTERS:
                inp = os.path.join(old, e, "input.npy")
                if os.path.exists(inp) and np.array_equal(np.load(inp), x_np):
                    ref = dict(np.load(os.path.join(old, "reference.npz")))
                    ref["input"] = x_np
                    np.savez(path, **ref)
                    return ref, "cached (earlier layout)"
    ref = reference(model, x_np, make_weights(1000))
    w_np = make_weights(ref["logits64"].shape[1])
    if w_np.shape[1] != 1000:
        ref = reference(model, x_np, w_np)
    ref["input"] = x_np
    np.savez(path, **ref)
    return ref, "computed"


def get_kinks(model, arch, seed, x_np, args):
    sdir = seed_dir(args, arch, seed)
    os.makedirs(sdir, exist_ok=True)
    path = os.path.join(sdir, "kinks.json")
    if args.reuse and os.path.exists(path):
        with open(path) as f:
            k = json.load(f)
        if k.get("version") == KINKS_VERSION and k.get("input_digest") == input_digest(x_np):
            return k, "cached"
    k = kink_analysis(model, x_np)
    with open(path, "w") as f:
        json.dump(k, f, indent=1)
    return k, "computed"


def kink_summary(k):
    """The kink fields copied into the rows (without the per-call list)."""
    return {key: k.get(key) for key in ("min_margin", "min_margin_op", "torch32_flips", "at_risk",
                                        "risk_factor", "exact", "units", "max_torch32_dev",
                                        "ops")}


# ---------------------------------------------------------------- per-seed comparison, verdict
def error_patch(grad, grad64, rel=1e-4):
    """Where robust's gradient differs from float64 by more than rel * max|grad64|: a kink flip
    changes the gradient over the receptive field of the flipped unit in one image, a bug is
    usually spread over every image. Returns pixels, images and bounding box (h x w) per image."""
    diff = np.abs(np.asarray(grad, np.float64) - grad64) / (np.abs(grad64).max() or 1.0)
    mask = (diff > rel).any(axis=1)  # [N, H, W]
    out = {"rel": rel, "pixels": int(mask.sum()), "of": int(mask.size), "images": 0, "bbox": []}
    for n in range(mask.shape[0]):
        hw = np.argwhere(mask[n])
        if len(hw):
            out["images"] += 1
            out["bbox"].append([int(hw[:, 0].max() - hw[:, 0].min() + 1),
                                int(hw[:, 1].max() - hw[:, 1].min() + 1)])
    return out


def fmt_patch(p):
    if not p:
        return "-"
    if not p["pixels"]:
        return "0"
    return (f"{p['pixels']}px/{p['images']}img "
            + ",".join(f"{h}x{w}" for h, w in p["bbox"]))


def compare_seed(res, ref, kinks, args):
    """Per-seed entry from robust's outputs `res` (or failure), the references and kink stats."""
    s = {
        "torch32_logits_err": rel_err(ref["logits32"], ref["logits64"]),
        "torch32_grad_err": rel_err(ref["grad32"], ref["grad64"]),
        "kink_margin": kinks.get("min_margin"),
        "kink_margin_op": kinks.get("min_margin_op"),
        "torch32_flips": kinks.get("torch32_flips"),
        "at_risk": kinks.get("at_risk"),
        "robust_seconds": res.get("seconds"),
    }
    margin = s["kink_margin"]
    s["kinky"] = margin is not None and margin < args.kink_threshold
    if not res["ok"]:
        s.update(loads=res["error"], status="FAIL", reason=res["error"][:200])
        return s
    s["loads"] = "yes"
    try:
        s["logits_err"] = rel_err(res["logits"], ref["logits64"])
        s["grad_err"] = rel_err(res["grad"], ref["grad64"])
        s["logits_err_vs_f32"] = rel_err(res["logits"], ref["logits32"])
        s["grad_err_vs_f32"] = rel_err(res["grad"], ref["grad32"])
        s["grad_err_patch"] = error_patch(res["grad"], ref["grad64"])
    except ValueError as e:
        s.update(status="FAIL", reason=f"output shape mismatch: {e}")
        return s
    logits_ok = criterion(s["logits_err"], s["torch32_logits_err"])
    grad_ok = criterion(s["grad_err"], s["torch32_grad_err"])
    s["strict_pass"] = bool(logits_ok and grad_ok)
    if logits_ok and grad_ok:
        s["status"] = "pass"
    elif logits_ok and s["kinky"]:
        s["status"] = "kink"
        s["reason"] = (f"grad err {s['grad_err']:.1e} > max(3 * {s['torch32_grad_err']:.1e}, 1e-4)"
                       f" with kink margin {margin:.1e} < {args.kink_threshold:g}")
    else:
        s["status"] = "FAIL"
        what = []
        if not logits_ok:
            what.append(f"logits err {s['logits_err']:.1e} > "
                        f"max(3 * {s['torch32_logits_err']:.1e}, 1e-4)")
        if not grad_ok:
            what.append(f"grad err {s['grad_err']:.1e} > "
                        f"max(3 * {s['torch32_grad_err']:.1e}, 1e-4)"
                        + ("" if margin is None else f", kink margin {margin:.1e}"))
        s["reason"] = "; ".join(what)
    return s


def verdict(row):
    """PASS / FAIL for a row from its per-seed statuses (see the module docstring)."""
    seeds = row["seeds"]
    fails = [s for s in seeds if s.get("status") == "FAIL"]
    kinks = [s for s in seeds if s.get("status") == "kink"]
    strict = [s for s in seeds if s.get("status") == "pass"]
    if fails:
        row["verdict"] = "FAIL"
        row["verdict_note"] = "; ".join(f"seed {s['seed']}: {s.get('reason', '')}" for s in fails)
    elif not strict:
        row["verdict"] = "FAIL"
        row["verdict_note"] = "no seed passes strictly (all kink-explained)"
    else:
        row["verdict"] = "PASS"
        row["verdict_note"] = ("kink-explained at seed " + ", ".join(str(s["seed"]) for s in kinks)
                               if kinks else "")
    row["pass"] = row["verdict"] == "PASS"


# ---------------------------------------------------------------- table
def fmt_err(v):
    return "-" if v is None else f"{v:.1e}"


def fmt_margin(v):
    return "none" if v is None else f"{v:.0e}"


def md_cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def per_seed(row, key, fmt=fmt_err):
    seeds = row.get("seeds") or []
    return " / ".join(fmt(s.get(key)) for s in seeds) if seeds else "-"


def fmt_verdict(row):
    v = row.get("verdict")
    if v is None:
        return "-"
    note = row.get("verdict_note") or ""
    if v == "PASS":
        return "PASS" + (f" ({note})" if note else "")
    return "**FAIL**" + (f" ({note})" if note else "")


TABLE_HEAD = ["architecture", "exporter", "device", "loads", "logits err (max over seeds)",
              "grad err per seed", "torch f32 grad err per seed", "grad err vs torch f32 per seed",
              "min kink margin per seed", "torch f32 flips per seed",
              "grad err > 1e-4 patch per seed", "verdict",
              "robust seconds (first seed)"]


def render_table(rows):
    lines = ["| " + " | ".join(TABLE_HEAD) + " |", "|" + "|".join("---" for _ in TABLE_HEAD) + "|"]
    for r in rows:
        seeds = r.get("seeds") or []
        loads = next((s["loads"] for s in seeds if s.get("loads", "yes") != "yes"),
                     r.get("loads", "yes" if seeds else "-"))
        lerrs = [s["logits_err"] for s in seeds if s.get("logits_err") is not None]
        secs = seeds[0].get("robust_seconds") if seeds else None
        cells = [r["arch"], r["exporter"], r.get("device", "-"), md_cell(loads)[:200],
                 fmt_err(max(lerrs) if lerrs else None), per_seed(r, "grad_err"),
                 per_seed(r, "torch32_grad_err"), per_seed(r, "grad_err_vs_f32"),
                 per_seed(r, "kink_margin", fmt_margin),
                 per_seed(r, "torch32_flips", lambda v: "-" if v is None else str(v)),
                 per_seed(r, "grad_err_patch", fmt_patch),
                 md_cell(fmt_verdict(r)), "-" if secs is None else f"{secs:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info():
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.lower().startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} threads, torch {torch.get_num_threads()} threads"


def binary_info(path):
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()[:12]
        when = datetime.datetime.fromtimestamp(st.st_mtime).astimezone().strftime("%Y-%m-%d %H:%M")
        return f"{path} (sha1 {digest}, modified {when})"
    except OSError:
        return path


def command_line():
    nice = os.nice(0)
    exe = sys.executable if os.path.isabs(sys.executable) else "python"
    cmd = " ".join(shlex.quote(a) for a in [exe] + sys.argv)
    return (f"nice -n {nice} " if nice else "") + cmd


def render_header(doc):
    runs = doc["runs"]
    lines = ["# robust vs PyTorch on full-size torchvision models", "",
             f"torch {torch.__version__}, torchvision {torchvision.__version__}; random init "
             f"(seed 0), eval mode, {N} inputs uniform [0,1] (numpy seed = input seed), "
             f"W ~ N(0,1) (numpy seed 1); robust gets the gradient of sum(logits * W).", "",
             "**Criterion.** err = max\\|x - torch f64\\| / max\\|torch f64\\| (logits and input "
             "gradient separately). A seed *passes strictly* when both errors are <= "
             "max(3 * PyTorch-f32 err, 1e-4). ReLU / ReLU6 / Hardswish / max-pool nets have units "
             "within float32 rounding of a switch point; float32 implementations (PyTorch f32 "
             "included) flip different ones, which changes the input gradient over a patch, so the "
             "gradient comparison at one seed is a coin flip there. For each seed the script "
             "records, in PyTorch float64, the *kink margin*: the smallest |z - kink| / max|z| over "
             "the inputs z of every relu / relu6 / hardtanh / hardswish / hardsigmoid / max_pool2d "
             "call (max-pool: smallest top1 - top2 gap of a window; exact zeros/ties excluded); "
             "'torch f32 flips' counts units where PyTorch f32 takes another piece than f64; "
             "'patch' gives the input pixels where robust's gradient is off by > 1e-4 * "
             "max|grad f64| (pixels / images / bounding box per image): a kink flip shows as a "
             "patch (the flipped unit's receptive field) in one image. A seed "
             "whose gradient (not logits) fails with kink margin < "
             f"{doc['kink_threshold']:g} is *kink-explained*. **Verdict PASS**: no seed fails "
             "without kink explanation and at least one seed passes strictly; otherwise FAIL. "
             "'none' = the model has no kinks (smooth activations only). Caveat: with millions of "
             "units, the smallest margin of any ReLU-type net is typically 1e-7 .. 1e-11 at every "
             "seed, so the margin separates kinky from smooth nets rather than seeds; in a kinky "
             "net a bug shows as no seed passing strictly, or as an error patch that is not "
             "localized (kink flips: one receptive field per flip).", ""]
    for run in runs:
        lines += [f"- `{run['command']}`", f"  ({run['date']}; {run['machine']}; "
                  f"{run['seconds']:.0f} s; robust {run['robust']})"]
    return "\n".join(lines) + "\n"


def json_safe(v):
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_outputs(rows, args, run):
    """Writes the table and JSON; with --merge, rows replace those with the same key in the
    existing JSON and the run is appended to its runs."""
    if not args.table:
        return render_table(rows)
    path = args.table if os.path.isabs(args.table) else os.path.join(ROOT, args.table)
    jpath = os.path.splitext(path)[0] + ".json"
    doc = {"kink_threshold": args.kink_threshold, "runs": [run], "rows": list(rows)}
    if args.merge and os.path.exists(jpath):
        with open(jpath) as f:
            old = json.load(f)
        if isinstance(old, dict) and "rows" in old:
            key = lambda r: (r.get("arch"), r.get("exporter"), r.get("device"))  # noqa: E731
            merged = list(old["rows"])
            for r in rows:
                idx = [i for i, o in enumerate(merged) if key(o) == key(r)]
                if idx:
                    merged[idx[0]] = r
                    continue
                same = [i for i, o in enumerate(merged)
                        if (o.get("arch"), o.get("exporter")) == (r["arch"], r["exporter"])]
                merged.insert(same[-1] + 1 if same else len(merged), r)
            runs = [x for x in old.get("runs", []) if x.get("command") != run["command"]]
            doc = {"kink_threshold": args.kink_threshold, "runs": runs + [run], "rows": merged}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = render_table(doc["rows"])
    with open(path, "w") as f:
        f.write(render_header(doc) + "\n" + table)
    with open(jpath, "w") as f:
        json.dump(json_safe(doc), f, indent=1)
    return table


# ---------------------------------------------------------------- main check
def export_step(exporter, model, x_np, ref, base, edir, args):
    """Export into a fresh edir; returns (row fields, None) or (None, failure message)."""
    if os.path.isdir(edir):
        shutil.rmtree(edir)
    os.makedirs(edir)
    mpath = os.path.join(edir, "model.onnx")
    meta = {}
    t1 = time.perf_counter()
    try:
        meta["note"] = export(exporter, model, torch.from_numpy(x_np), mpath)
        meta["opset"], meta["onnx_mb"] = onnx_opset_and_size(mpath)
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"  {exporter}: export failed: {first}", flush=True)
        traceback.print_exc(limit=3)
        return None, f"export failed: {first[:200]}"
    meta["export_seconds"] = time.perf_counter() - t1
    if args.ort:
        try:
            meta["ort_logits_err"] = rel_err(ort_logits(mpath, x_np), ref["logits64"])
        except Exception as e:  # noqa: BLE001
            meta["ort_logits_err"] = None
            meta["ort_error"] = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    print(f"  {exporter}: exported ({meta['note']}, opset {meta['opset']}, "
          f"{meta['onnx_mb']:.0f} MB, {meta['export_seconds']:.1f}s)"
          + (f", ort logits err {fmt_err(meta.get('ort_logits_err'))}" if args.ort else ""),
          flush=True)
    with open(os.path.join(edir, "export.json"), "w") as f:
        json.dump(meta, f)
    return dict(base, exporter=exporter, model=mpath, **meta), None


def prepare_run_dir(rdir, x_np, w_np, ref):
    os.makedirs(rdir, exist_ok=True)
    np.save(os.path.join(rdir, "input.npy"), x_np)
    np.save(os.path.join(rdir, "w.npy"), w_np)
    np.save(os.path.join(rdir, "logits_torch64.npy"), ref["logits64"])
    np.save(os.path.join(rdir, "grad_torch64.npy"), ref["grad64"])
    np.save(os.path.join(rdir, "grad_torch32.npy"), ref["grad32"])


def check_arch(arch, args, devices):
    rows = []
    size = input_size(arch)
    adir = os.path.join(args.workdir, arch)
    os.makedirs(adir, exist_ok=True)
    t0 = time.perf_counter()
    model = build_model(arch)
    per_seed_data = []
    for seed in args.seeds:
        x_np = make_input(size, seed)
        ref, how = get_reference(model, arch, seed, x_np, args)
        kinks, khow = get_kinks(model, arch, seed, x_np, args)
        w_np = make_weights(ref["logits64"].shape[1])
        per_seed_data.append((seed, x_np, w_np, ref, kinks))
        print(f"  seed {seed}: torch f32 logits err "
              f"{rel_err(ref['logits32'], ref['logits64']):.1e}, f32 grad err "
              f"{rel_err(ref['grad32'], ref['grad64']):.1e} (reference {how}); kink margin "
              f"{fmt_margin(kinks['min_margin'])} at {kinks['min_margin_op']}, torch f32 flips "
              f"{kinks['torch32_flips']}, ops {kinks['ops']} (kinks {khow})", flush=True)
    first_seed, x0, w0, ref0, _ = per_seed_data[0]
    base = {
        "arch": arch, "input": [N, 3, size, size], "classes": int(ref0["logits64"].shape[1]),
        "seeds_run": list(args.seeds), "torch_seconds": time.perf_counter() - t0,
        "kinks": {str(seed): kink_summary(k) for seed, _, _, _, k in per_seed_data},
    }
    for exporter in args.exporters:
        edir = os.path.join(adir, exporter)
        mpath = os.path.join(edir, "model.onnx")
        meta_path = os.path.join(edir, "export.json")
        if args.reuse and os.path.exists(mpath) and os.path.exists(meta_path):
            with open(meta_path) as f:
                erow = dict(base, exporter=exporter, model=mpath, **json.load(f))
            print(f"  {exporter}: reusing {mpath}", flush=True)
        else:
            erow, failure = export_step(exporter, model, x0, ref0, base, edir, args)
            if erow is None:
                for dev in devices:
                    rows.append(dict(base, exporter=exporter, device=dev, loads=failure,
                                     verdict=None if args.no_robust else "FAIL",
                                     verdict_note=failure,
                                     **{"pass": None if args.no_robust else False}))
                continue
        if args.no_robust:
            rows.append(dict(erow, device="-", loads="(not run)"))
            continue
        for dev in devices:
            row = dict(erow, device=dev, seeds=[])
            for seed, x_np, w_np, ref, kinks in per_seed_data:
                rdir = os.path.join(seed_dir(args, arch, seed), exporter)
                prepare_run_dir(rdir, x_np, w_np, ref)
                res = run_robust(args.robust, mpath, rdir, dev, args.timeout)
                s = dict(seed=seed, **compare_seed(res, ref, kinks, args))
                row["seeds"].append(s)
                print(f"  {exporter}/{dev}/seed {seed}: loads={s['loads'][:200]} logits err "
                      f"{fmt_err(s.get('logits_err'))} grad err {fmt_err(s.get('grad_err'))} "
                      f"(torch f32 {fmt_err(s['torch32_grad_err'])}, vs f32 "
                      f"{fmt_err(s.get('grad_err_vs_f32'))}) -> {s['status']} "
                      f"({s['robust_seconds']:.1f}s)", flush=True)
            verdict(row)
            print(f"  {exporter}/{dev}: {row['verdict']} {row['verdict_note']}", flush=True)
            rows.append(row)
        if not args.keep:
            for f in os.listdir(edir):
                if f.startswith("model.onnx"):
                    os.remove(os.path.join(edir, f))
    return rows


def main_check(args):
    devices = args.devices
    rows = []
    t_start = time.perf_counter()
    run = {"command": command_line(), "machine": machine_info(),
           "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
           "robust": binary_info(args.robust), "archs": args.arch, "exporters": args.exporters,
           "devices": devices, "seeds": args.seeds, "seconds": 0.0}
    for arch in args.arch:
        print(f"== {arch}", flush=True)
        try:
            rows += check_arch(arch, args, devices)
        except Exception as e:  # noqa: BLE001
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(f"  failed: {first}", flush=True)
            traceback.print_exc(limit=5)
            for exporter in args.exporters:
                for dev in devices:
                    rows.append({"arch": arch, "exporter": exporter, "device": dev,
                                 "loads": f"script error: {first[:200]}", "verdict": "FAIL",
                                 "verdict_note": f"script error: {first[:200]}", "pass": False})
        run["seconds"] = time.perf_counter() - t_start
        write_outputs(rows, args, run)
    run["seconds"] = time.perf_counter() - t_start
    table = write_outputs(rows, args, run)
    print("\n" + table)
    ran = [r for r in rows if r.get("verdict") is not None]
    passed = [r for r in ran if r["verdict"] == "PASS"]
    kinky = [r for r in passed if r.get("verdict_note")]
    failed = [r for r in ran if r["verdict"] != "PASS"]
    key = lambda r: f"{r['arch']}/{r['exporter']}/{r.get('device', '-')}"  # noqa: E731
    print(f"summary: {len(passed)}/{len(ran)} PASS ({len(kinky)} of them kink-explained at some "
          f"seed: {', '.join(key(r) for r in kinky) or '-'}) in {run['seconds']:.0f}s")
    for r in failed:
        print(f"  FAIL {key(r)}: {r.get('verdict_note', '')}")
    if args.table:
        print(f"wrote {args.table} and {os.path.splitext(args.table)[0]}.json")
    return 0 if not failed else 1


# ---------------------------------------------------------------- resnet50 bisection
class Prefix(nn.Module):
    def __init__(self, net, k):
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1 = net.layer1
        self.layer2 = net.layer2[:k]

    def forward(self, x):
        return self.layer2(self.layer1(self.stem(x))).mean(dim=(2, 3))


def main_bisect(args):
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).eval()
    x_np = make_input(224)
    rows = []
    for k in range(0, 5):
        print(f"== resnet50 stem+layer1+layer2[:{k}]", flush=True)
        model = Prefix(net, k).eval()
        edir = os.path.join(args.workdir, "bisect-resnet50"
                            + (f"-seed{args.input_seed}" if args.input_seed else ""), f"k{k}")
        os.makedirs(edir, exist_ok=True)
        with torch.no_grad():
            channels = model(torch.from_numpy(x_np)).shape[1]
        w_np = make_weights(channels)
        ref = reference(model, x_np, w_np)
        row = {"arch": f"layer2[:{k}]", "exporter": "legacy", "channels": channels,
               "torch32_logits_err": rel_err(ref["logits32"], ref["logits64"]),
               "torch32_grad_err": rel_err(ref["grad32"], ref["grad64"])}
        np.save(os.path.join(edir, "input.npy"), x_np)
        np.save(os.path.join(edir, "w.npy"), w_np)
        np.save(os.path.join(edir, "logits_torch64.npy"), ref["logits64"])
        np.save(os.path.join(edir, "grad_torch64.npy"), ref["grad64"])
        mpath = os.path.join(edir, "model.onnx")
        try:
            export("legacy", model, torch.from_numpy(x_np), mpath)
        except Exception as e:  # noqa: BLE001
            row.update(loads=f"export failed: {str(e).splitlines()[0][:200]}", **{"pass": False})
            rows.append(row)
            continue
        if args.no_robust:
            row["loads"] = "(not run)"
        else:
            res = run_robust(args.robust, mpath, edir, "cpu", args.timeout)
            if res["ok"]:
                compare(row, res, ref)
            else:
                row.update(loads=res["error"], robust_seconds=res["seconds"], **{"pass": False})
        print(f"  channels {channels}: logits err {fmt_err(row.get('logits_err'))} grad err "
              f"{fmt_err(row.get('grad_err'))} "
              f"torch f32 grad err {fmt_err(row['torch32_grad_err'])} "
              f"{row.get('loads')}", flush=True)
        rows.append(row)
    head = ("| k | channels | loads | logits err | grad err | torch f32 logits err | "
            "torch f32 grad err | grad err vs torch f32 | pass |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for k, r in enumerate(rows):
        p = r.get("pass")
        lines.append(f"| {k} | {r['channels']} | {md_cell(r.get('loads', '-'))[:120]} | "
                     f"{fmt_err(r.get('logits_err'))} | {fmt_err(r.get('grad_err'))} | "
                     f"{fmt_err(r['torch32_logits_err'])} | {fmt_err(r['torch32_grad_err'])} | "
                     f"{fmt_err(r.get('grad_err_vs_f32'))} | "
                     f"{'-' if p is None else ('yes' if p else '**no**')} |")
    print("\nresnet50 bisection: stem + layer1 + layer2[:k] + spatial mean\n" + "\n".join(lines))
    with open(os.path.join(os.path.dirname(edir), "bisect.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0


def parse_list(text, cast=str):
    return [cast(a.strip()) for a in text.split(",") if a.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                    help="comma-separated torchvision architectures (default: all 20)")
    ap.add_argument("--exporters", default=",".join(EXPORTERS), help="legacy,dynamo")
    ap.add_argument("--robust", default="./target/release/robust", help="robust binary")
    ap.add_argument("--workdir", default="/var/tmp/robust-fullsize")
    ap.add_argument("--table", default="models/full-size-check.md",
                    help="Markdown output (JSON written next to it); '' to skip")
    ap.add_argument("--merge", action="store_true",
                    help="merge the rows into the existing table/JSON (same architecture, "
                         "exporter and device replaced) instead of overwriting it")
    ap.add_argument("--devices", default=None, help="comma-separated robust devices (cpu,wgpu; "
                                                    "default cpu)")
    ap.add_argument("--wgpu", action="store_true",
                    help="also run robust with --device wgpu (same as --devices cpu,wgpu)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per robust call")
    ap.add_argument("--no-robust", action="store_true",
                    help="only export and compute the PyTorch references and kink statistics")
    ap.add_argument("--no-ort", dest="ort", action="store_false",
                    help="skip the onnxruntime cross-check of exported logits (JSON only)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the exported .onnx files (default: delete after robust ran)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse exports, references and kink statistics already in --workdir "
                         "(from an earlier --keep or --no-robust run) instead of recomputing them")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated numpy seeds of the inputs (default 0). ReLU/max kinks "
                         "make the f32 gradient error of some models depend on the input")
    ap.add_argument("--input-seed", type=int, default=0,
                    help="input seed of --bisect-resnet50 (and --seeds default)")
    ap.add_argument("--kink-threshold", type=float, default=1e-6,
                    help="a seed whose gradient check fails is kink-explained when its kink "
                         "margin is below this (default 1e-6)")
    ap.add_argument("--bisect-resnet50", action="store_true")
    args = ap.parse_args()
    args.arch = parse_list(args.arch)
    args.exporters = parse_list(args.exporters)
    for e in args.exporters:
        if e not in EXPORTERS:
            ap.error(f"unknown exporter {e!r} (choose from {EXPORTERS})")
    if args.devices is None:
        args.devices = ["cpu", "wgpu"] if args.wgpu else ["cpu"]
    else:
        args.devices = parse_list(args.devices)
        if args.wgpu and "wgpu" not in args.devices:
            args.devices.append("wgpu")
    for d in args.devices:
        if d not in DEVICES:
            ap.error(f"unknown device {d!r} (choose from {DEVICES})")
    try:
        args.seeds = parse_list(args.seeds, int) if args.seeds else [args.input_seed]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        ap.error("--seeds must list distinct seeds")
    INPUT_SEED[0] = args.input_seed
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_robust:
        args.robust = os.path.abspath(args.robust)
        if not os.access(args.robust, os.X_OK):
            ap.error(f"robust binary not found or not executable: {args.robust} "
                     f"(build it with scripts/setup.sh, or pass --no-robust)")
    os.makedirs(args.workdir, exist_ok=True)
    if args.bisect_resnet50:
        return main_bisect(args)
    return main_check(args)


if __name__ == "__main__":
    sys.exit(main())
