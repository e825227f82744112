"""Tiny ONNX models that trigger robust's indicators of attack failure (one each).

Each is a linear classifier on 28x28 gray images (784 -> 10), trained for a few seconds on
the bundled demo images (datasets/mnist-demo), with one change that breaks gradient attacks
in a known way:

* step.onnx      the input is rounded to 4 levels (Floor) first: every input gradient is
                 exactly zero ("unavailable gradients"; FGSM cannot move, so it also fails
                 with an unbounded epsilon: "unconstrained attack failure");
* softmax.onnx   a Softmax after the logits: the outputs are probabilities (AutoAttack's
                 output-range check);
* sawtooth.onnx  a high-frequency sawtooth of every pixel, frac(1000 x), added to the logits
                 through a fixed random matrix: noise far below any epsilon moves the
                 margin by about its own size ("unstable predictions").

Run from the repository root with the project's Python environment:

    /opt/robust-venv/bin/python models/indicators/make_indicators.py

It is deterministic (seeded); the three files are committed beside this script.
"""

import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


class Linear(torch.nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)
        self.mode = mode
        g = torch.Generator().manual_seed(1)
        self.register_buffer("mix", torch.randn(784, 10, generator=g) * 0.5)

    def forward(self, x):
        if self.mode == "step":
            x = torch.floor(x * 4.0) / 4.0
        z = self.fc(torch.flatten(x, 1))
        if self.mode == "softmax":
            z = torch.softmax(z, dim=1)
        if self.mode == "sawtooth":
            s = x * 1000.0
            s = s - torch.floor(s) - 0.5
            z = z + torch.flatten(s, 1) @ self.mix
        return z


def main():
    torch.manual_seed(0)
    images = np.load(os.path.join(ROOT, "datasets/mnist-demo/images.npy")).astype(np.float32)
    labels = np.load(os.path.join(ROOT, "datasets/mnist-demo/labels.npy")).astype(np.int64)
    x = torch.from_numpy(images).reshape(-1, 1, 28, 28)
    if x.max() > 1.5:
        x = x / 255.0
    y = torch.from_numpy(labels)
    base = Linear("plain")
    opt = torch.optim.Adam(base.fc.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(base(x), y)
        loss.backward()
        opt.step()
    acc = (base(x).argmax(1) == y).float().mean().item()
    print(f"linear base: train accuracy {acc:.3f}")
    for mode in ["step", "softmax", "sawtooth"]:
        m = Linear(mode)
        m.fc.load_state_dict(base.fc.state_dict())
        m.eval()
        path = os.path.join(HERE, f"{mode}.onnx")
        torch.onnx.export(
            m,
            torch.zeros(1, 1, 28, 28),
            path,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        with torch.no_grad():
            acc = (m(x).argmax(1) == y).float().mean().item()
        print(f"{mode}: accuracy {acc:.3f}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
