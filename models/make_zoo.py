"""Build the miniature model-zoo fixtures: models/zoo-tv/<arch>/ and models/zoo-timm/<arch>/.

Each fixture is a MINIATURE version of a real image-classification architecture, built
with the real torchvision / timm classes (real blocks, real forward code) but tiny widths,
depths and image sizes, random weights and 10 classes. Where a class hard-codes large
widths, the smallest possible patch is applied (listed under "patches" in meta.json).

For each fixture ARCH it writes <folder>/ARCH/:
  legacy.onnx        TorchScript exporter: torch.onnx.export(dynamo=False, opset_version=17),
                     dynamic batch (dynamic_axes), input `input`, output `logits`
  dynamo.onnx        torch.export-based exporter (dynamo=True, default options, opset chosen by
     + .onnx.data    the exporter), dynamic batch via torch.export.Dim("batch", min=1, max=1024);
                     falls back to a fixed batch of 2 if that fails (recorded in meta.json).
                     Saved as the exporter saves to a path: its default external_data=True puts
                     the weights in dynamo.onnx.data. Per-node metadata_props (stack traces etc.,
                     ~70% of the bytes, no semantics) are stripped, except in resnet18/dynamo.onnx
                     (and dynamo_external.onnx, re-saved from it).
  (resnet18 only)
  dynamo_external.onnx + .data
                     dynamo.onnx re-saved by onnx.save_model(save_as_external_data=True,
                     size_threshold=1024): the onnx-python external-data layout
  dynamo_fixed.onnx  dynamo export with a FIXED batch of 2 (no dynamic_shapes)
     + .onnx.data
  input.npy          float32 [2,C,H,W], uniform in [0,1] (numpy default_rng(0))
  w.npy              float32 [2,10], standard normal (numpy default_rng(1))
  logits32.npy       float32 [2,10] PyTorch eval-mode output
  logits64.npy       float64 [2,10] same with model.double() on the float64 input
  grad32.npy         float32 [2,C,H,W] d/d input of sum(logits * w), float32 PyTorch
  grad64.npy         float64 [2,C,H,W] same in float64
  meta.json          arch, source, class, kwargs, patches, input_shape, per-export
                     {ok, opset, ops, bytes, files, dynamic_batch, error}, torch32 errors,
                     onnxruntime errors (batch 2 vs logits64, and batch 1 / 3 for dynamic files)
All .npy files are little-endian (numpy.save).

Weights: seeded default init (all-zero Linear weights, e.g. ViT's head, re-drawn N(0,1/fan_in)),
then every BatchNorm/LayerNorm/GroupNorm gets a random affine
(weight U[0.5,1.5), bias N(0,0.1)), layer-scale parameters get U[0.5,1.5) (the 1e-6 default
would hide the residual branch), attention bias tables get N(0,0.5), and BatchNorm running
statistics are set by forward passes in train mode on random data (cumulative average),
so no normalization layer is an identity. Finally the classifier is rescaled so the logits
on input.npy have std 1 ("head_scale" in meta.json).

It also writes models/zoo-ops.md: ONNX op types per file, their union, the op types the Rust
interpreter does not support yet, the attributes / input conventions in use, the Einsum
equations, and Reshapes with a hard-coded export batch.

inception_v3 is not built: torchvision's Inception3 needs >= 75x75 inputs and hard-codes the
widths of all its InceptionB/C/D/E blocks, so a miniature would be a rewrite, not a patch.

Requirements: see models/requirements.txt (torch, torchvision, timm, numpy, onnx, onnxruntime,
onnxscript). Run from the repository root:
    /opt/robust-venv/bin/python models/make_zoo.py [ARCH ...]
Deterministic (torch.manual_seed(0) before each model, single thread, CPU).
"""
import copy
import io
import json
import os
import shutil
import sys
import traceback
from unittest import mock
import warnings
from collections import defaultdict
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import torch
import torch.nn as nn

import onnx
import onnxruntime as ort
import timm
import torchvision
from torchvision.models import (
    AlexNet, DenseNet, GoogLeNet, MaxVit, MNASNet, MobileNetV2, MobileNetV3, RegNet, ShuffleNetV2,
    SqueezeNet, SwinTransformer, VGG, VisionTransformer)
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
from torchvision.models.googlenet import BasicConv2d, Inception
from torchvision.models.mobilenetv3 import InvertedResidualConfig
from torchvision.models.regnet import BlockParams
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.squeezenet import Fire
from torchvision.models.vgg import make_layers
from torchvision.ops.misc import Conv2dNormActivation
from timm.models.byobnet import ByobNet, ByoModelCfg
from timm.models.efficientformer import Attention as EfficientFormerAttention
from timm.models.mobilevit import _inverted_residual_block, _mobilevit_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10
BATCH = 2
OPSET_LEGACY = 17
# op types the Rust interpreter (crates/robust-models) supports, for the zoo-ops.md gap list
SUPPORTED_OPS = set(
    "Conv Gemm MatMul MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization Softmax "
    "LogSoftmax Relu LeakyRelu PRelu Sigmoid Tanh Gelu Erf Exp Log Sqrt Neg Abs Reciprocal Pow Add Sub "
    "Mul Div Clip ReduceMean ReduceSum ReduceMax Identity Dropout Flatten Reshape Transpose Concat "
    "Shape Gather Unsqueeze Squeeze Slice Pad Cast ConstantOfShape Expand Constant "
    # added for these fixtures:
    "LayerNormalization Einsum HardSigmoid HardSwish Softplus Floor Ceil Sign Min Max Sum Mean Mod "
    "Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Not Where Split Range Tile "
    "ScatterND".split())


# ================================================================ torchvision miniatures
class SlimResNet(ResNet):
    """torchvision ResNet with the stem and every stage width divided by `div`.

    Only the widths change: ResNet.__init__ / _make_layer build the real BasicBlock /
    Bottleneck stages (stride-2 first block, 1x1 projection shortcut, groups,
    width_per_group). The stem conv, its BN and the fc are rebuilt at the slim width.
    """

    def __init__(self, block, layers, div, num_classes=NUM_CLASSES, **kwargs):
        object.__setattr__(self, "_div", div)
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        w = 64 // div
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = self._norm_layer(w)
        self.fc = nn.Linear(512 // div * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:                  # layer1: its input is the (slim) stem
            self.inplanes = 64 // self._div
        return super()._make_layer(block, planes // self._div, blocks, stride, dilate)


def tv_alexnet():
    m = AlexNet(num_classes=NUM_CLASSES)
    # same layer sequence as AlexNet.features (11x11/4, 5x5, 3x 3x3, 3 max-pools), tiny widths
    c = [4, 8, 8, 8, 8]
    m.features = nn.Sequential(
        nn.Conv2d(3, c[0], kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c[0], c[1], kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c[1], c[2], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))
    m.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    m.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(c[4], 32), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(inplace=True), nn.Linear(32, NUM_CLASSES))
    return m, {"num_classes": NUM_CLASSES}, [
        f"features rebuilt with the AlexNet layer sequence at widths {c}",
        "avgpool AdaptiveAvgPool2d((6,6)) -> ((1,1)): at 63x63 the feature map is 1x1 and the legacy "
        "exporter rejects adaptive pooling whose output size does not divide the input size",
        "classifier hidden width 4096 -> 32"]


def tv_vgg11_bn():
    cfg = [2, "M", 4, "M", 8, 8, "M", 16, 16, "M", 16, 16, "M"]   # vgg11 cfg "A" / 32
    m = VGG(make_layers(cfg, batch_norm=True), num_classes=NUM_CLASSES, init_weights=True)
    m.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    m.classifier = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(32, NUM_CLASSES))
    return m, {"features": f"make_layers({cfg}, batch_norm=True)", "num_classes": NUM_CLASSES,
               "init_weights": True}, [
        "avgpool AdaptiveAvgPool2d((7,7)) -> ((1,1)) (1x1 feature map at 32x32)",
        "classifier 512*7*7 -> 4096 -> 4096 -> 10 replaced by 16 -> 32 -> 32 -> 10"]


def tv_resnet(block, layers, div, **kw):
    def build():
        m = SlimResNet(block, layers, div, **kw)
        return m, dict(block=block.__name__, layers=layers, div=div, **kw), [
            f"SlimResNet subclass: stem/stage widths 64,128,256,512 divided by {div}"]
    return build


def tv_densenet121():
    kw = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
              num_classes=NUM_CLASSES)
    return DenseNet(**kw), kw, []


def tv_squeezenet1_1():
    m = SqueezeNet(version="1_1", num_classes=NUM_CLASSES)
    # SqueezeNet 1.1 feature layout (conv3x3/2, 3 ceil-mode max-pools, 8 Fire modules), widths / 8
    m.features = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(8, 2, 4, 4), Fire(8, 2, 4, 4),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(8, 4, 8, 8), Fire(16, 4, 8, 8),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(16, 6, 12, 12), Fire(24, 6, 12, 12), Fire(24, 8, 16, 16), Fire(32, 8, 16, 16))
    m.classifier[1] = nn.Conv2d(32, NUM_CLASSES, kernel_size=1)
    return m, {"version": "1_1", "num_classes": NUM_CLASSES}, [
        "features rebuilt with the SqueezeNet 1.1 layout (Fire modules, ceil-mode pools), widths / 8",
        "final_conv 512->10 becomes 32->10 with default init (torchvision's N(0,0.01) + ReLU "
        "gives near-zero logits)"]


def tv_shufflenet_v2():
    kw = dict(stages_repeats=[1, 2, 1], stages_out_channels=[8, 16, 32, 64, 64],
              num_classes=NUM_CLASSES)
    return ShuffleNetV2(**kw), kw, []


def tv_mobilenet_v2():
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 1, 2], [6, 64, 1, 2]]
    m = MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25, inverted_residual_setting=setting)
    last_in = m.features[-1][0].in_channels
    m.features[-1] = Conv2dNormActivation(last_in, 32, kernel_size=1, norm_layer=nn.BatchNorm2d,
                                          activation_layer=nn.ReLU6)
    m.classifier[1] = nn.Linear(32, NUM_CLASSES)
    m.last_channel = 32
    return m, {"num_classes": NUM_CLASSES, "width_mult": 0.25,
               "inverted_residual_setting": setting}, [
        "last 1x1 conv 1280 -> 32 channels (MobileNetV2 hard-codes 1280), classifier 32 -> 10"]


def tv_mobilenet_v3_small():
    bneck = lambda *a: InvertedResidualConfig(*a, width_mult=0.25)   # noqa: E731
    # first blocks of mobilenet_v3_small: (in, k, expanded, out, use_se, act, stride, dilation)
    raw = [(16, 3, 16, 16, True, "RE", 2, 1), (16, 3, 72, 24, False, "RE", 2, 1),
           (24, 5, 96, 40, True, "HS", 2, 1), (40, 5, 120, 48, True, "HS", 1, 1)]
    m = MobileNetV3([bneck(*r) for r in raw], last_channel=32, num_classes=NUM_CLASSES)
    return m, {"inverted_residual_setting": [list(r) for r in raw], "width_mult": 0.25,
               "last_channel": 32, "num_classes": NUM_CLASSES}, [
        "inverted_residual_setting: 4 of the 11 mobilenet_v3_small blocks (SE+ReLU, ReLU, SE+HardSwish x2)"]


def tv_mnasnet():
    # MNASNet derives its stage widths from alpha via _get_depths; even alpha=0.1 gives
    # [8,8,8,8,8,16,24,32] + a 1280-wide head, so the widths are patched to 8/16 channels.
    depths = [8, 8, 8, 8, 8, 8, 16, 16]
    with mock.patch("torchvision.models.mnasnet._get_depths", lambda alpha: list(depths)):
        m = MNASNet(alpha=0.1, num_classes=NUM_CLASSES)
    keep = [2, 2, 1, 1, 1, 1]                # first blocks kept of each _stack (layers[8..13])
    for i, k in zip(range(8, 14), keep):
        m.layers[i] = nn.Sequential(*list(m.layers[i])[:k])
    m.layers[14] = nn.Conv2d(depths[-1], 32, 1, padding=0, stride=1, bias=False)
    m.layers[15] = nn.BatchNorm2d(32, momentum=m.layers[15].momentum)
    m.classifier[1] = nn.Linear(32, NUM_CLASSES)
    return m, {"alpha": 0.1, "num_classes": NUM_CLASSES}, [
        f"torchvision.models.mnasnet._get_depths patched to return {depths} during construction",
        f"the six _stacks truncated to their first {keep} blocks (the 2-block ones keep a residual block)",
        "final 1x1 conv 1280 -> 32 channels, classifier 32 -> 10"]


def tv_efficientnet_b0():
    setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    m = EfficientNet(setting[:4], dropout=0.2, num_classes=NUM_CLASSES)
    return m, {"conf": "_efficientnet_conf('efficientnet_b0', width_mult=0.25, depth_mult=0.25)[:4]",
               "dropout": 0.2, "num_classes": NUM_CLASSES}, [
        "first 4 of the 7 MBConv stages (SiLU, squeeze-excite, stride 2 at stages 2-4)"]


def tv_regnet_y():
    bp = dict(depth=3, w_0=8, w_a=4.0, w_m=2.0, group_width=8, se_ratio=0.25)
    m = RegNet(BlockParams.from_init_params(**bp), num_classes=NUM_CLASSES, stem_width=8)
    return m, {"block_params": f"BlockParams.from_init_params(**{bp})", "stem_width": 8,
               "num_classes": NUM_CLASSES}, []


def tv_googlenet():
    m = GoogLeNet(num_classes=NUM_CLASSES, aux_logits=False, transform_input=False, init_weights=True)
    s = lambda c: max(2, c // 32)   # noqa: E731
    m.conv1 = BasicConv2d(3, s(64), kernel_size=7, stride=2, padding=3)
    m.conv2 = BasicConv2d(s(64), s(64), kernel_size=1)
    m.conv3 = BasicConv2d(s(64), s(192), kernel_size=3, padding=1)
    cin = s(192)
    for name, spec in [("inception3a", (64, 96, 128, 16, 32, 32)), ("inception3b", (128, 128, 192, 32, 96, 64)),
                       ("inception4a", (192, 96, 208, 16, 48, 64)), ("inception4b", (160, 112, 224, 24, 64, 64)),
                       ("inception4c", (128, 128, 256, 24, 64, 64)), ("inception4d", (112, 144, 288, 32, 64, 64)),
                       ("inception4e", (256, 160, 320, 32, 128, 128)), ("inception5a", (256, 160, 320, 32, 128, 128)),
                       ("inception5b", (384, 192, 384, 48, 128, 128))]:
        sp = [s(c) for c in spec]
        setattr(m, name, Inception(cin, *sp))
        cin = sp[0] + sp[2] + sp[4] + sp[5]
    m.fc = nn.Linear(cin, NUM_CLASSES)
    return m, {"num_classes": NUM_CLASSES, "aux_logits": False, "transform_input": False,
               "init_weights": True}, [
        "conv1-3 and all 9 Inception blocks rebuilt with every width c -> max(2, c // 32) "
        "(patched modules use default init)"]


def tv_convnext():
    cfg = [(8, 16, 1), (16, 24, 1), (24, None, 1)]
    m = ConvNeXt([CNBlockConfig(*c) for c in cfg], stochastic_depth_prob=0.0, layer_scale=1e-6,
                 num_classes=NUM_CLASSES)
    return m, {"block_setting": [f"CNBlockConfig{c}" for c in cfg], "layer_scale": 1e-6,
               "num_classes": NUM_CLASSES}, []


def tv_vit():
    kw = dict(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
              num_classes=NUM_CLASSES)
    return VisionTransformer(**kw), kw, []


def tv_swin():
    kw = dict(patch_size=[4, 4], embed_dim=8, depths=[2, 1], num_heads=[1, 2], window_size=[4, 4],
              stochastic_depth_prob=0.0, num_classes=NUM_CLASSES)
    return SwinTransformer(**kw), kw, [
        "depths [2,1] (not [1,1]): the second block of stage 1 is the shifted-window one "
        "(roll + attention mask); stage 2 (4x4 tokens) equals the window, so it never shifts"]


def tv_maxvit():
    kw = dict(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16],
              block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0, num_classes=NUM_CLASSES)
    return MaxVit(**kw), kw, []


# ================================================================ timm miniatures
def timm_model(name, **kw):
    def build():
        kwa = dict(pretrained=False, num_classes=NUM_CLASSES, **kw)
        return timm.create_model(name, **kwa), dict(model_name=name, **kwa), []
    return build


def timm_mobilevit_xxs():
    cfg = ByoModelCfg(
        blocks=(_inverted_residual_block(d=1, c=8, s=1, br=2.0),
                _inverted_residual_block(d=2, c=8, s=2, br=2.0),
                _mobilevit_block(d=1, c=16, s=2, transformer_dim=16, transformer_depth=1,
                                 patch_size=2, br=2.0)),
        stem_chs=8, stem_type="3x3", stem_pool="", downsample="", act_layer="silu", num_features=32)
    m = ByobNet(cfg, num_classes=NUM_CLASSES)
    return m, {"cfg": "ByoModelCfg like mobilevit_xxs: IR(c8,s1) IR(d2,c8,s2) "
                      "MobileViT(c16,s2,dim16,depth1,patch2), stem 8, silu, num_features 32",
               "num_classes": NUM_CLASSES}, ["ByobNet built directly from a small mobilevit_xxs-style cfg"]


def timm_efficientformer():
    kw = dict(pretrained=False, num_classes=NUM_CLASSES, depths=(2,), embed_dims=(16,), num_vit=1)
    m = timm.create_model("efficientformer_l1", **kw)
    blk = m.stages[0].blocks[-1]            # MetaBlock1d
    blk.token_mixer = EfficientFormerAttention(16, key_dim=4, num_heads=2, attn_ratio=2, resolution=7)
    return m, dict(model_name="efficientformer_l1", **kw), [
        "one stage: stem (/4) + Meta4D (pooling) + Flat + Meta1D; 28x28 input so the attention sees "
        "the 7x7 grid its bias table is built for (the resolution is fixed at 7)",
        "Meta1D attention rebuilt as Attention(16, key_dim=4, num_heads=2, attn_ratio=2, resolution=7) "
        "(defaults key_dim=32, num_heads=8 are not exposed by create_model)"]


# name -> (folder, source, builder, input_shape)
SPECS = {
    "alexnet": ("zoo-tv", "torchvision", tv_alexnet, (3, 63, 63)),
    "vgg11_bn": ("zoo-tv", "torchvision", tv_vgg11_bn, (3, 32, 32)),
    "resnet18": ("zoo-tv", "torchvision", tv_resnet(BasicBlock, [2, 2, 2, 2], 32), (3, 32, 32)),
    "resnet50": ("zoo-tv", "torchvision", tv_resnet(Bottleneck, [1, 2, 1, 1], 32), (3, 32, 32)),
    "resnext50": ("zoo-tv", "torchvision",
                  tv_resnet(Bottleneck, [1, 1, 1, 1], 32, groups=4, width_per_group=32), (3, 32, 32)),
    "wide_resnet": ("zoo-tv", "torchvision",
                    tv_resnet(Bottleneck, [1, 1, 1, 1], 32, width_per_group=96), (3, 32, 32)),
    "densenet121": ("zoo-tv", "torchvision", tv_densenet121, (3, 32, 32)),
    "squeezenet1_1": ("zoo-tv", "torchvision", tv_squeezenet1_1, (3, 32, 32)),
    "shufflenet_v2": ("zoo-tv", "torchvision", tv_shufflenet_v2, (3, 32, 32)),
    "mobilenet_v2": ("zoo-tv", "torchvision", tv_mobilenet_v2, (3, 32, 32)),
    "mobilenet_v3_small": ("zoo-tv", "torchvision", tv_mobilenet_v3_small, (3, 32, 32)),
    "mnasnet": ("zoo-tv", "torchvision", tv_mnasnet, (3, 32, 32)),
    "efficientnet_b0": ("zoo-tv", "torchvision", tv_efficientnet_b0, (3, 32, 32)),
    "regnet_y": ("zoo-tv", "torchvision", tv_regnet_y, (3, 32, 32)),
    "googlenet": ("zoo-tv", "torchvision", tv_googlenet, (3, 32, 32)),
    "convnext": ("zoo-tv", "torchvision", tv_convnext, (3, 32, 32)),
    "vit": ("zoo-tv", "torchvision", tv_vit, (3, 32, 32)),
    "swin": ("zoo-tv", "torchvision", tv_swin, (3, 32, 32)),
    "maxvit": ("zoo-tv", "torchvision", tv_maxvit, (3, 32, 32)),
    "deit_tiny": ("zoo-timm", "timm", timm_model(
        "deit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
        mlp_ratio=2.0), (3, 32, 32)),
    "convnext_atto": ("zoo-timm", "timm", timm_model(
        "convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)), (3, 32, 32)),
    "mobilevit_xxs": ("zoo-timm", "timm", timm_mobilevit_xxs, (3, 32, 32)),
    "efficientformer": ("zoo-timm", "timm", timm_efficientformer, (3, 28, 28)),
    "levit": ("zoo-timm", "timm", timm_model(
        "levit_128s", img_size=32, embed_dim=(16, 24), key_dim=4, num_heads=(2, 3), depth=(1, 1)),
        (3, 32, 32)),
}
SKIPPED = {"inception_v3": "Inception3 needs >= 75x75 input and hard-codes the widths inside "
                           "InceptionB/C/D/E; a miniature would be a rewrite, not a patch"}


# ================================================================ weights
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
LAYER_SCALE_NAMES = ("layer_scale", "gamma", "gamma1", "gamma2")
BIAS_TABLE_NAMES = ("attention_biases", "relative_position_bias_table")


@torch.no_grad()
def randomize(model, shape, gen):
    """Random norm affines / layer scales / bias tables, then BN running stats from data."""
    for m in model.modules():
        if isinstance(m, NORMS) and getattr(m, "weight", None) is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    for m in model.modules():
        if isinstance(m, nn.Linear) and not m.weight.any():     # zero-initialized heads (ViT)
            m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in LAYER_SCALE_NAMES:
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        elif leaf in BIAS_TABLE_NAMES:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                 # cumulative average over the warm-up batches
        model.train()
        for _ in range(4):
            model(torch.rand((16,) + tuple(shape), generator=gen))
        for m, mom in zip(bns, saved):
            m.momentum = mom
    model.eval()


@torch.no_grad()
def calibrate_head(model, x):
    """Scale the classifier layer(s) (every Linear with NUM_CLASSES outputs, two for the distilled
    timm models; else the last Conv2d) so the logits on x have std 1: some random-init heads give std ~1e-3."""
    std = float(model(x).std())
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    if not heads:                            # SqueezeNet: 1x1 conv classifier (+ ReLU, avg-pool)
        heads = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1:]
    assert heads and std > 0, (len(heads), std)
    for m in heads:
        m.weight.mul_(1.0 / std)
        if m.bias is not None:
            m.bias.mul_(1.0 / std)
    clear_caches(model)
    return 1.0 / std


def clear_caches(model):
    """timm LeViT / EfficientFormer cache the gathered attention biases in eval mode; a cached
    non-leaf tensor breaks deepcopy and would be baked into a torch.export graph."""
    for m in model.modules():
        if getattr(m, "attention_bias_cache", None):
            m.attention_bias_cache = {}


# ================================================================ ONNX helpers
def file_bytes(path):
    """Size of an .onnx file plus the external-data files it references."""
    files = [path]
    m = onnx.load(path, load_external_data=False)
    locs = set()
    for t in all_initializers(m):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    locs.add(e.value)
    files += [os.path.join(os.path.dirname(path), l) for l in sorted(locs)]
    return sum(os.path.getsize(f) for f in files), [os.path.basename(f) for f in files]


def all_initializers(m):
    out = list(m.graph.initializer)
    for n in iter_nodes(m):
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                out.append(a.t)
    return out


def iter_nodes(m):
    """All nodes: main graph, subgraphs (If/Loop/Scan) and model-local functions."""
    def walk(g):
        for n in g.node:
            yield n
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        yield from walk(sg)
    yield from walk(m.graph)
    for f in m.functions:
        for n in f.node:
            yield n


def op_name(n):
    return n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"


def default_opset(m):
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return None


def ort_logits(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def quiet(fn, *a, **kw):
    """Run an exporter with its stdout/stderr chatter captured (returned on failure)."""
    buf = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(buf), redirect_stderr(buf):
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def export_legacy(model, x, path):
    quiet(torch.onnx.export, model, x, path, dynamo=False, opset_version=OPSET_LEGACY,
          input_names=["input"], output_names=["logits"],
          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return {"dynamic_batch": True}


def export_dynamo(model, x, path, dynamic=True, keep_metadata=False):
    """torch.onnx.export(dynamo=True) with default options, saved as the exporter saves to a path
    (external_data=True: weights in PATH.data). Unless keep_metadata, the per-node
    metadata_props (stack traces, FX node text, class hierarchy: ~70% of the file) are dropped
    first; they carry no semantics."""
    kw = dict(dynamo=True, input_names=["input"], output_names=["logits"], verbose=False)
    info = {}
    prog = None
    if dynamic:
        try:
            prog = quiet(torch.onnx.export, model, (x,), None,
                         dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), **kw)
            info["dynamic_batch"] = True
        except Exception as e:       # noqa: BLE001 - recorded in meta.json, then fixed batch
            info["dynamic_error"] = f"{type(e).__name__}: {str(e).strip()[:800]}"
    if prog is None:
        prog = quiet(torch.onnx.export, model, (x,), None, **kw)
        info["dynamic_batch"] = False
    if not keep_metadata:
        for node in prog.model.graph.all_nodes():
            node.metadata_props.clear()
        for f in prog.model.functions.values():
            for node in f:
                node.metadata_props.clear()
    info["node_metadata_props"] = "kept" if keep_metadata else "stripped"
    prog.save(path, external_data=True)
    return info


def resave_external(src, dst):
    m = onnx.load(src)
    loc = os.path.basename(dst) + ".data"
    if os.path.exists(os.path.join(os.path.dirname(dst), loc)):
        os.remove(os.path.join(os.path.dirname(dst), loc))
    # size_threshold 1024 (onnx's default): with 0, the small int64 shape/axes initializers go
    # external too and onnxruntime refuses to load the file (its shape inference cannot read them)
    onnx.save_model(m, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=loc, size_threshold=1024)
    os.chmod(os.path.join(os.path.dirname(dst), loc), 0o644)     # onnx creates it 0600
    return {"dynamic_batch": True, "note": "dynamo.onnx re-saved by onnx.save_model("
            "save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=1024)"}


# ================================================================ one fixture
def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def build_fixture(name):
    folder, source, builder, shape = SPECS[name]
    d = os.path.join(ROOT, "models", folder, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)

    torch.manual_seed(0)
    model, kwargs, patches = builder()
    randomize(model, shape, torch.Generator().manual_seed(0))
    n_params = sum(p.numel() for p in model.parameters())

    x = np.random.default_rng(0).uniform(0, 1, size=(BATCH,) + tuple(shape)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((BATCH, NUM_CLASSES)).astype(np.float32)
    head_scale = calibrate_head(model, torch.from_numpy(x))

    # PyTorch float32 / float64 logits and input gradients of sum(logits * w)
    xg = torch.from_numpy(x).requires_grad_(True)
    out32 = model(xg)
    (out32 * torch.from_numpy(w)).sum().backward()
    logits32, grad32 = out32.detach().numpy(), xg.grad.numpy()
    clear_caches(model)
    m64 = copy.deepcopy(model).double().eval()
    xg64 = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    out64 = m64(xg64)
    (out64 * torch.from_numpy(w.astype(np.float64))).sum().backward()
    logits64, grad64 = out64.detach().numpy(), xg64.grad.numpy()
    assert logits32.shape == (BATCH, NUM_CLASSES), logits32.shape

    for fn, arr in [("input", x), ("w", w), ("logits32", logits32.astype("<f4")),
                    ("logits64", logits64.astype("<f8")), ("grad32", grad32.astype("<f4")),
                    ("grad64", grad64.astype("<f8"))]:
        np.save(os.path.join(d, fn + ".npy"), arr)

    clear_caches(model)
    xt = torch.from_numpy(x)
    jobs = [("legacy", lambda p: export_legacy(model, xt, p)),
            ("dynamo", lambda p: export_dynamo(model, xt, p, keep_metadata=name == "resnet18"))]
    if name == "resnet18":
        jobs += [("dynamo_external", lambda p: resave_external(os.path.join(d, "dynamo.onnx"), p)),
                 ("dynamo_fixed", lambda p: export_dynamo(model, xt, p, dynamic=False))]

    exports, ort_err = {}, {}
    for key, fn in jobs:
        path = os.path.join(d, key + ".onnx")
        try:
            info = fn(path)
        except Exception as e:       # noqa: BLE001 - recorded in meta.json, file skipped
            exports[key] = {"ok": False, "error": f"{type(e).__name__}: {str(e).strip()[:1500]}"}
            print(f"[{name}] {key} export FAILED: {exports[key]['error'][:300]}", flush=True)
            continue
        m = onnx.load(path)
        onnx.checker.check_model(path if any(t.data_location == onnx.TensorProto.EXTERNAL
                                             for t in m.graph.initializer) else m)
        nbytes, files = file_bytes(path)
        exports[key] = dict(ok=True, opset=default_opset(m),
                            ops=sorted({op_name(n) for n in iter_nodes(m)}),
                            bytes=nbytes, files=files, **info)
        try:
            y = ort_logits(path, x)
            ort_err[key] = float(np.abs(y - logits64).max())
            if info.get("dynamic_batch"):
                idx = [0, 1, 0]
                e1 = np.abs(ort_logits(path, x[:1]) - logits64[:1]).max()
                e3 = np.abs(ort_logits(path, x[idx]) - logits64[idx]).max()
                exports[key]["ort_batch1_3_err"] = [float(e1), float(e3)]
        except Exception as e:       # noqa: BLE001
            ort_err[key] = f"{type(e).__name__}: {str(e).strip()[:800]}"

    scale = float(np.abs(logits64).max())
    notes = []
    for k, v in ort_err.items():
        if isinstance(v, str):
            notes.append(f"{k}: onnxruntime failed")
        elif v > 1e-5 * max(1.0, scale):
            notes.append(f"{k}: onnxruntime differs from logits64 by {v:.2e} (> 1e-5 * max(1, |logits|))")
        b = exports[k].get("ort_batch1_3_err")
        if b and max(b) > 1e-5 * max(1.0, scale):
            notes.append(f"{k}: batch 1/3 onnxruntime error {b}")
    cls = type(model)
    cls_name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "__main__":        # SlimResNet, defined here
        base = cls.__mro__[1]
        cls_name = f"make_zoo.{cls.__qualname__} (subclass of {base.__module__}.{base.__qualname__})"
    meta = {
        "arch": name, "source": source, "class": cls_name,
        "kwargs": kwargs, "patches": patches, "input_shape": list(shape), "num_params": n_params,
        "head_scale": head_scale,
        "exports": exports,
        "torch32_grad_err": rel_err(grad32, grad64), "torch32_logit_err": rel_err(logits32, logits64),
        "logits64_absmax": scale, "grad64_absmax": float(np.abs(grad64).max()),
        "ort_logit_err": ort_err, "notes": notes,
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "timm": timm.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    print(f"[{name}] params {n_params}  logits std {logits64.std():.3f}  "
          f"grad32 rel err {meta['torch32_grad_err']:.1e}  ort {ort_err}  "
          + "  ".join(f"{k}:{v['bytes'] // 1024}K" if v["ok"] else f"{k}:FAILED" for k, v in exports.items())
          + (f"  NOTES {notes}" if notes else ""), flush=True)
    return d


# ================================================================ zoo-ops.md
def const_values(m):
    """name -> numpy value of initializers and Constant-node outputs (small tensors only)."""
    vals = {}
    for t in m.graph.initializer:
        if np.prod(t.dims) <= 64:
            vals[t.name] = onnx.numpy_helper.to_array(t)
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = onnx.numpy_helper.to_array(a.t)
                elif a.name == "value_ints":
                    vals[n.output[0]] = np.array(a.ints)
                elif a.name == "value_int":
                    vals[n.output[0]] = np.array(a.i)
    return vals


def attr_str(a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        return f"tensor<{onnx.helper.tensor_dtype_to_np_dtype(v.data_type)}{list(v.dims)}>"
    if isinstance(v, bytes):
        return repr(v.decode())
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(x.decode() if isinstance(x, bytes) else f"{x:g}" if isinstance(x, float)
                              else str(x) for x in v) + "]"
    return str(v)


INTERPRETER_NOTES = [
    "No custom domains, no functions, no subgraphs (If/Loop): every node is in the default "
    "ONNX domain of the main graph.",
    "ReduceMean: legacy (opset 17) gives `axes` as an attribute; dynamo (opset 18+) always gives "
    "it as constant int64 input 1 (noop_with_empty_axes=0). keepdims 0 and 1 both occur.",
    "Split: dynamo uses either the opset-18 `num_outputs` attribute with a single input "
    "(MaxViT, ShuffleNetV2; equal chunks, the last one smaller if not divisible) or a constant "
    "`split` sizes input (LeViT, EfficientFormer); legacy always uses the `split` input.",
    "Reshape: every dynamo Reshape has allowzero=1 (a 0 in the shape is a literal 0-sized dim, "
    "not 'copy the input dim'); legacy uses allowzero=0. Shapes are constant initializers or "
    "computed at run time (Shape -> Gather/Slice -> Concat).",
    "Shape: dynamo uses the opset-15 `start` / `end` attributes (e.g. start=0, end=1 to read the "
    "batch size).",
    "LayerNormalization (opset 17): axis=-1, epsilon 1e-5 or 1e-6, stash_type=1, always with "
    "scale and bias inputs; only output 0 is used.",
    "Gelu (opset 20) with approximate='none' in the dynamo files; the legacy files spell GELU as "
    "x * 0.5 * (1 + Erf(x / sqrt(2))).",
    "Einsum equations contain spaces and UPPER-CASE labels (torchvision MaxViT: "
    "'B G H I D, B G H J D -> B G H I J'); strip whitespace and accept A-Z as labels.",
    "HardSigmoid alpha=1/6 (0.166667), beta=0.5; HardSwish has no attributes "
    "(x * relu6(x + 3) / 6).",
    "Pad (Swin only), mode 'constant': dynamo passes (data, constant pads); legacy passes "
    "(data, run-time pads, '') -- an empty input name marks an omitted optional input "
    "(constant_value -> 0).",
    "Clip: min / max are constant inputs (ReLU6 -> Clip(0, 6)).",
    "Gemm: transB=1, alpha=beta=1; C is sometimes absent (2 inputs).",
    "MaxPool ceil_mode=1 (SqueezeNet, GoogLeNet). AveragePool 3x3 stride 1 pads [1,1,1,1] with "
    "count_include_pad=0 (EfficientFormer token mixer) and =1 (MaxViT); 2x2 (DenseNet).",
    "The legacy exporter routes shared / re-used initializers through Identity nodes (Conv bias, "
    "BatchNormalization stats, Constant-like inputs), so a constant input is not always an "
    "initializer.",
    "Integer / boolean tensors: the run-time shape arithmetic (Shape, Gather, Concat, Slice, "
    "Range, Mod, Equal, Where, ConstantOfShape, Expand, Cast) is int64; Equal/Not give bool. "
    "Cast to 1=float, 7=int64, 9=bool. Mod has fmod=0 (int64 modulo). Range(start, limit, "
    "delta) on int64 scalars (Swin, ConvNeXt dynamo). Equal/Not/Where/ScatterND also run on "
    "float32 data in Swin (ScatterND with int64 indices).",
    "ScatterND (Swin's attention-mask construction, from `mask[h0:h1, w0:w1] = id`), "
    "reduction='none'; indices and updates may be run-time values.",
    "Equal/Where/Not in ViT / DeiT legacy files come from the exporter's handling of dynamic "
    "shapes (Where(Equal(shape, -1), ...)) and in Swin from the attention mask "
    "(masked_fill(mask != 0, -100)).",
    "Transpose permutations up to rank 6 (Swin / MaxViT window partition).",
    "BatchNormalization: Conv+BN is folded by both exporters (eval mode), so it only remains "
    "where no Conv precedes it (DenseNet pre-activation, MaxViT, LeViT BatchNorm1d after "
    "Linear). training_mode=0; momentum is irrelevant for inference.",
]


def write_ops_md(dirs):
    files = []                                           # (label, path)
    for d in dirs:
        label = os.path.relpath(d, os.path.join(ROOT, "models"))
        for f in sorted(os.listdir(d)):
            if f.endswith(".onnx"):
                files.append((f"{label}/{f}", os.path.join(d, f)))
    per_file, users = {}, defaultdict(set)
    attrs = defaultdict(lambda: defaultdict(set))       # op -> attr -> values
    arity = defaultdict(lambda: defaultdict(int))       # op -> input pattern -> count
    einsum, reshape_batch, opsets = defaultdict(set), {}, {}
    for label, path in files:
        m = onnx.load(path)
        vals = const_values(m)
        init_names = {t.name for t in m.graph.initializer}
        opsets[label] = default_opset(m)
        ops = sorted({op_name(n) for n in iter_nodes(m)})
        per_file[label] = ops
        model = label.rsplit("/", 1)[0]
        for o in ops:
            users[o].add(model)
        hard = []
        for n in iter_nodes(m):
            o = op_name(n)
            for a in n.attribute:
                if o == "Constant":
                    attrs[o][a.name].add(attr_str(a).split("<")[0] if a.type == onnx.AttributeProto.TENSOR
                                         else a.name)
                elif a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    attrs[o][a.name].add(attr_str(a))
            pat = ",".join("-" if not i else ("const" if (i in vals or i in init_names) else "dyn")
                           for i in n.input)
            arity[o][f"{pat} -> {len(n.output)} out"] += 1
            if n.op_type == "Einsum":
                for a in n.attribute:
                    if a.name == "equation":
                        einsum[a.s.decode()].add(model)
            if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] in vals:
                s = vals[n.input[1]].reshape(-1).tolist()
                if len(s) > 1 and s[0] == BATCH:
                    hard.append(s)
        reshape_batch[label] = hard

    union = sorted(users)
    missing = [o for o in union if o not in SUPPORTED_OPS]
    L = ["# Op types used by the miniature zoo fixtures (models/zoo-tv, models/zoo-timm)", "",
         "Generated by `models/make_zoo.py` (do not edit by hand). Op names are `domain:op` when "
         "the domain is not the default ONNX one. `legacy.onnx` = TorchScript exporter, opset 17; "
         "`dynamo*.onnx` = torch.export-based exporter, opset " +
         ", ".join(sorted({str(v) for k, v in opsets.items() if "/dynamo" in k})) + ".", "",
         "## Op types NOT supported by the Rust interpreter yet", "",
         "| op | used by |", "|---|---|"]
    for o in missing:
        files_using = sorted({lab for lab, ops in per_file.items() if o in ops})
        L.append(f"| {o} | " + ", ".join(f"`{f}`" for f in files_using) + " |")
    if not missing:
        L.append("| (none) | |")
    L += ["", "## Union of op types (" + str(len(union)) + ")", "",
          " ".join(f"`{o}`" for o in union), "",
          "## Einsum equations", ""]
    for eq, ms in sorted(einsum.items()):
        L.append(f"- `{eq}` ({', '.join(sorted(ms))})")
    if not einsum:
        L.append("- (none)")
    L += ["", "## Reshape with a hard-coded export batch",
          "", f"Reshape nodes whose constant shape input starts with the export batch {BATCH} "
          "(instead of -1 / 0 / a computed value). Such a file only runs at batch "
          f"{BATCH}; `ort_batch1_3_err` in meta.json shows whether onnxruntime runs it at batch 1 and 3.", ""]
    any_hard = False
    for label, hard in reshape_batch.items():
        if hard:
            any_hard = True
            uniq = sorted({str(h) for h in hard})
            model_dir, f = label.rsplit("/", 1)
            meta = json.load(open(os.path.join(ROOT, "models", model_dir, "meta.json")))
            ex = meta["exports"][f[:-len(".onnx")]]
            status = ("fixed-batch export" if not ex.get("dynamic_batch") else
                      f"dynamic-batch export; onnxruntime max error at batch 1 / 3: "
                      f"{ex.get('ort_batch1_3_err')} (so not a batch dimension)")
            L.append(f"- `{label}`: {len(hard)} Reshape(s), shapes {', '.join(uniq[:6])}"
                     + (" ..." if len(uniq) > 6 else "") + f"; {status}")
    if not any_hard:
        L.append("- none")
    L += ["", "## Notes for an interpreter (opset 17 legacy / opset " +
          ", ".join(sorted({str(v) for k, v in opsets.items() if "/dynamo" in k})) + " dynamo)", ""]
    L += ["- " + t for t in INTERPRETER_NOTES]
    L += ["", "## Attributes and input conventions per op type", "",
          "For each op: attribute values seen, and the input patterns (`const` = initializer or "
          "Constant output, `dyn` = computed at run time, `-` = omitted optional input) with "
          "counts. In opset >= 18, ReduceMean/ReduceSum/ReduceMax/ReduceL2 etc. take `axes` as "
          "input 1 (ReduceSum since 13); Split takes `split` as input 1 or a `num_outputs` "
          "attribute; Pad takes pads/constant_value/axes as inputs; Resize takes roi/scales/sizes "
          "as inputs.", ""]
    for o in union:
        L.append(f"### {o}")
        for a, vs in sorted(attrs[o].items()):
            vs = sorted(vs)
            L.append(f"- attr `{a}`: " + ", ".join(f"`{v}`" for v in vs[:12])
                     + (f" ... ({len(vs)} distinct)" if len(vs) > 12 else ""))
        pats = sorted(arity[o].items(), key=lambda kv: -kv[1])
        L.append("- inputs: " + "; ".join(f"`{p}` x{c}" for p, c in pats[:8])
                 + (" ..." if len(pats) > 8 else ""))
        L.append("")
    L += ["## Op types per file", "", "| file | opset | ops |", "|---|---|---|"]
    for label, ops in per_file.items():
        L.append(f"| `{label}` | {opsets[label]} | {' '.join(ops)} |")
    L.append("")
    with open(os.path.join(ROOT, "models", "zoo-ops.md"), "w") as f:
        f.write("\n".join(L))
    return missing, einsum


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(SPECS)
    for name in names:
        try:
            build_fixture(name)
        except Exception:           # noqa: BLE001 - keep going; the traceback is printed
            print(f"[{name}] FIXTURE FAILED\n{traceback.format_exc()}", flush=True)
    for name, why in SKIPPED.items():
        print(f"[{name}] skipped: {why}")
    dirs = [os.path.join(ROOT, "models", f, n) for n, (f, *_r) in SPECS.items()
            if os.path.exists(os.path.join(ROOT, "models", f, n, "meta.json"))]
    missing, einsum = write_ops_md(dirs)
    print("ops not supported by the interpreter:", " ".join(missing))
    print("einsum equations:", sorted(einsum))


if __name__ == "__main__":
    main()
