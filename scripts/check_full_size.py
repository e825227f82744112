"""Check robust against PyTorch on full-size torchvision classifiers (manual check, not run in CI).

For each architecture (random init, torch.manual_seed(0), eval mode) and each ONNX exporter
(`legacy`: TorchScript exporter, opset 17, dynamic batch; `dynamo`: torch.export based exporter
with its default opset and external-data behaviour, dynamic batch if possible, else fixed batch 2),
it exports the model to --workdir, computes PyTorch float32 and float64 logits and input gradients
of sum(logits * W) for 2 inputs uniform in [0,1] (numpy seed 0, --input-seed) and
W ~ N(0,1) [2,classes] (numpy seed 1), runs

    robust predict --model M.onnx --data input.npy --unlabelled --out logits.npy \
        --grad-weights w.npy --grad-out grad.npy --device cpu --batch-size 2

and compares robust with PyTorch float64:
    err = max|robust - torch64| / max|torch64|   (logits and input gradient separately),
PyTorch float32 errors are measured the same way, and a row passes when, for both logits and
gradient, err <= max(3 * torch32_err, 1e-4).

Caveat: random-init nets with ReLU/ReLU6/max have pre-activations within float32 rounding of 0;
which of them flip sign differs between float32 implementations, and each flip changes the input
gradient over a patch (its receptive field). So PyTorch's own f32 gradient error is input-dependent
(1e-6 .. 5e-2 for resnet50, vgg11_bn, googlenet, ...) and a large robust gradient error with a
localized error pattern is not by itself a bug: rerun with a few --input-seed values, and look at
'grad err vs torch f32' (JSON: *_vs_f32) and the saved grad_cpu.npy / grad_torch64.npy.

Writes a Markdown table (--table, default models/full-size-check.md) and the same rows as JSON
next to it (.json). One model's failure does not stop the run.

--bisect-resnet50 instead exports sub-networks of torchvision resnet50
(stem + layer1 + layer2[:k] + spatial mean, k = 0..4, legacy exporter) and prints the errors per k.

Run from the repository root, e.g.:
    /opt/robust-venv/bin/python scripts/check_full_size.py --arch resnet18,resnet50
    /opt/robust-venv/bin/python scripts/check_full_size.py --bisect-resnet50
    /opt/robust-venv/bin/python scripts/check_full_size.py --arch resnet18 --no-robust
Exports and references are kept in --workdir with --keep / --no-robust and reused with --reuse.
Models whose builder zero-initialises a Linear layer (vit_b_16's head) get it re-initialised.
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np
import torch
import torch.nn as nn
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_ARCHS = [
    "alexnet", "vgg11_bn", "resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d",
    "densenet121", "squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v2", "mobilenet_v3_small",
    "mnasnet0_5", "efficientnet_b0", "regnet_y_400mf", "googlenet", "convnext_tiny", "vit_b_16",
    "swin_t", "maxvit_t", "inception_v3",
]
EXPORTERS = ["legacy", "dynamo"]
N = 2


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


INPUT_SEED = [0]  # --input-seed


def make_input(size):
    rng = np.random.default_rng(INPUT_SEED[0])
    return rng.uniform(0.0, 1.0, size=(N, 3, size, size)).astype(np.float32)


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


# ---------------------------------------------------------------- table
def fmt_err(v):
    return "-" if v is None else f"{v:.1e}"


def md_cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_table(rows, with_device):
    head = ["architecture", "exporter"] + (["device"] if with_device else []) + [
        "loads", "logits err", "grad err", "torch f32 grad err", "pass", "robust seconds",
        "grad err vs torch f32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        p = r.get("pass")
        cells = [r["arch"], r["exporter"]] + ([r.get("device", "")] if with_device else []) + [
            md_cell(r.get("loads", "-"))[:200], fmt_err(r.get("logits_err")),
            fmt_err(r.get("grad_err")), fmt_err(r.get("torch32_grad_err")),
            "-" if p is None else ("yes" if p else "**no**"),
            "-" if r.get("robust_seconds") is None else f"{r['robust_seconds']:.1f}",
            fmt_err(r.get("grad_err_vs_f32"))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows, args, with_device, header):
    table = render_table(rows, with_device)
    if args.table:
        path = args.table if os.path.isabs(args.table) else os.path.join(ROOT, args.table)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(header + "\n" + table)
        with open(os.path.splitext(path)[0] + ".json", "w") as f:
            json.dump(rows, f, indent=1)
    return table


# ---------------------------------------------------------------- main check
def export_step(exporter, model, x_np, w_np, ref, base, edir, args):
    """Export into a fresh edir with the inputs and references; returns (row fields, None) or
    (None, failure message)."""
    if os.path.isdir(edir):
        shutil.rmtree(edir)
    os.makedirs(edir)
    np.save(os.path.join(edir, "input.npy"), x_np)
    np.save(os.path.join(edir, "w.npy"), w_np)
    np.save(os.path.join(edir, "logits_torch64.npy"), ref["logits64"])
    np.save(os.path.join(edir, "grad_torch64.npy"), ref["grad64"])
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


def check_arch(arch, args, devices):
    rows = []
    size = input_size(arch)
    x_np = make_input(size)
    adir = os.path.join(args.workdir, arch + (f"-seed{args.input_seed}" if args.input_seed else ""))
    os.makedirs(adir, exist_ok=True)
    t0 = time.perf_counter()
    model = build_model(arch)
    ref_path = os.path.join(adir, "reference.npz")
    if args.reuse and os.path.exists(ref_path):
        ref = dict(np.load(ref_path))
        w_np = make_weights(ref["logits64"].shape[1])
    else:
        ref = reference(model, x_np, make_weights(1000))
        w_np = make_weights(ref["logits64"].shape[1])
        if w_np.shape[1] != 1000:
            ref = reference(model, x_np, w_np)
        np.savez(ref_path, **ref)
    classes = ref["logits64"].shape[1]
    base = {
        "arch": arch, "input": [N, 3, size, size], "classes": classes,
        "torch32_logits_err": rel_err(ref["logits32"], ref["logits64"]),
        "torch32_grad_err": rel_err(ref["grad32"], ref["grad64"]),
        "torch_seconds": time.perf_counter() - t0,
    }
    print(f"  torch: f32 logits err {base['torch32_logits_err']:.1e}, "
          f"f32 grad err {base['torch32_grad_err']:.1e} ({base['torch_seconds']:.1f}s)", flush=True)
    for exporter in args.exporters:
        edir = os.path.join(adir, exporter)
        mpath = os.path.join(edir, "model.onnx")
        meta_path = os.path.join(edir, "export.json")
        if args.reuse and os.path.exists(mpath) and os.path.exists(meta_path):
            with open(meta_path) as f:
                erow = dict(base, exporter=exporter, model=mpath, **json.load(f))
            print(f"  {exporter}: reusing {mpath}", flush=True)
        else:
            erow, failure = export_step(exporter, model, x_np, w_np, ref, base, edir, args)
            if erow is None:
                for dev in devices:
                    rows.append(dict(base, exporter=exporter, device=dev, loads=failure,
                                     **{"pass": None if args.no_robust else False}))
                continue
        if args.no_robust:
            rows.append(dict(erow, device="-", loads="(not run)"))
            continue
        for dev in devices:
            row = dict(erow, device=dev)
            res = run_robust(args.robust, mpath, edir, dev, args.timeout)
            if res["ok"]:
                compare(row, res, ref)
            else:
                row.update(loads=res["error"], robust_seconds=res["seconds"], **{"pass": False})
            print(f"  {exporter}/{dev}: loads={row['loads'][:200]} logits err "
                  f"{fmt_err(row.get('logits_err'))} grad err {fmt_err(row.get('grad_err'))} "
                  f"pass={row.get('pass')} ({row['robust_seconds']:.1f}s)", flush=True)
            rows.append(row)
        if not args.keep:
            for f in os.listdir(edir):
                if f.startswith("model.onnx"):
                    os.remove(os.path.join(edir, f))
    return rows


def main_check(args):
    devices = ["cpu"] + (["wgpu"] if args.wgpu else [])
    rows = []
    header = (f"# robust vs PyTorch on full-size torchvision models\n\n"
              f"torch {torch.__version__}, torchvision {torchvision.__version__}; random init "
              f"(seed 0), eval mode, {N} inputs uniform [0,1] (numpy seed {args.input_seed}), "
              f"W ~ N(0,1).\n"
              f"err = max|x - torch64| / max|torch64|; pass: logits and grad err <= "
              f"max(3 * torch f32 err, 1e-4).\n"
              f"Large torch f32 grad errors (resnet50, vgg11_bn, googlenet) come from ReLU/max "
              f"pre-activations within rounding of 0 that flip between f32 and f64, not rounding; "
              f"'grad err vs torch f32' compares robust with PyTorch f32 directly.\n")
    t_start = time.perf_counter()
    for arch in args.arch:
        print(f"== {arch}", flush=True)
        try:
            rows += check_arch(arch, args, devices)
        except Exception as e:  # noqa: BLE001
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(f"  failed: {first}", flush=True)
            traceback.print_exc(limit=5)
            for exporter in args.exporters:
                rows.append({"arch": arch, "exporter": exporter,
                             "loads": f"script error: {first[:200]}",
                             "pass": False})
        write_outputs(rows, args, len(devices) > 1, header)
    table = write_outputs(rows, args, len(devices) > 1, header)
    print("\n" + table)
    ran = [r for r in rows if r.get("pass") is not None]
    passed = [r for r in ran if r["pass"]]
    failed = [f"{r['arch']}/{r['exporter']}/{r.get('device', '-')}" for r in ran if not r["pass"]]
    print(f"summary: {len(passed)}/{len(ran)} passed in {time.perf_counter() - t_start:.0f}s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                    help="comma-separated torchvision architectures (default: all 20)")
    ap.add_argument("--exporters", default=",".join(EXPORTERS), help="legacy,dynamo")
    ap.add_argument("--robust", default="./target/release/robust", help="robust binary")
    ap.add_argument("--workdir", default="/var/tmp/robust-fullsize")
    ap.add_argument("--table", default="models/full-size-check.md",
                    help="Markdown output (JSON written next to it); '' to skip")
    ap.add_argument("--wgpu", action="store_true", help="also run robust with --device wgpu")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per robust call")
    ap.add_argument("--no-robust", action="store_true",
                    help="only export and compute the PyTorch references")
    ap.add_argument("--no-ort", dest="ort", action="store_false",
                    help="skip the onnxruntime cross-check of exported logits (JSON only)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the exported .onnx files (default: delete after robust ran)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse references and exports already in --workdir (from an earlier "
                         "--keep or --no-robust run) instead of recomputing them")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--input-seed", type=int, default=0,
                    help="numpy seed of the inputs (default 0). ReLU/max kinks make the f32 "
                         "gradient error of some models depend on the input: try a few seeds")
    ap.add_argument("--bisect-resnet50", action="store_true")
    args = ap.parse_args()
    args.arch = [a.strip() for a in args.arch.split(",") if a.strip()]
    args.exporters = [e.strip() for e in args.exporters.split(",") if e.strip()]
    for e in args.exporters:
        if e not in EXPORTERS:
            ap.error(f"unknown exporter {e!r} (choose from {EXPORTERS})")
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
