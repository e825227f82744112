"""Nominal FLOP counts shared by the PyTorch comparison scripts in this folder."""

from __future__ import annotations

import torch


def forward_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one input of `shape` (Conv2d and Linear layers,
    padding taps included), counted with forward hooks."""
    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        if isinstance(m, torch.nn.Conv2d):
            macs += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    return macs
