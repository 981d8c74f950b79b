"""ARCH-1..4 of Chowanda (2021), "Separable convolutional neural networks for facial
expressions recognition", J. Big Data 8:132, as PyTorch modules.

The paper's layer tables are lost; this reconstruction matches its parameter arithmetic
(Keras counting: batch norm = 2 trainable + 2 non-trainable values per channel):

========  ===========  =========  ==========================================
arch      trainable    total      paper prints
========  ===========  =========  ==========================================
arch1     292,863      293,951    292,862 / 293,951 (its total implies 292,863)
arch2     1,141,375    1,142,463  1,141,375 / 1,142,463
arch3     304,719      305,807    305,807 / 306,831 (no natural variant fits)
arch4     1,153,231    1,154,319  1,154,319 / 1,155,343 (likewise)
========  ===========  =========  ==========================================

In PyTorch the trainable count is ``sum(p.numel() for p in model.parameters())``; the
batch-norm running statistics are the non-trainable rest. Models return logits; softmax
is applied by the loss in training and by `Classifier` for inference and export.
"""

import torch
from torch import nn

ARCHS = ("arch1", "arch2", "arch3", "arch4")
#: converted, not trainable: `build_model` rebuilds them from checkpoints (distillation teachers)
TEACHER_ARCHS = ("faceapi_expression",)


def conv_bn_relu(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SeparableConv2d(nn.Sequential):
    """Keras SeparableConv2D: depthwise 3x3 then pointwise 1x1, no bias."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False))


class ResidualBlock(nn.Module):
    """Two 3x3 (separable or plain) convs + max-pool, added to a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        conv = SeparableConv2d if separable else (lambda i, o: nn.Conv2d(i, o, 3, padding=1, bias=False))
        self.branch = nn.Sequential(
            conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            conv(cout, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cin, 1, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class FERNet(nn.Module):
    """The shared trunk (48x48 -> 3x3x128) with a global-average-pool or dense head."""

    def __init__(self, n_classes: int = 7, in_channels: int = 1, separable: bool = True,
                 dense_head: bool = False, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, 8), *conv_bn_relu(8, 8), nn.MaxPool2d(2),          # 24x24
            *conv_bn_relu(8, 16), *conv_bn_relu(16, 16),
            ResidualBlock(16, 32, separable),                                              # 12x12
            *conv_bn_relu(32, 64, bias=True), *conv_bn_relu(64, 64, bias=True), nn.MaxPool2d(2),   # 6x6
            *conv_bn_relu(64, 128, bias=True), *conv_bn_relu(128, 128, bias=True), nn.MaxPool2d(2),  # 3x3
        )
        if dense_head:
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(128 * 3 * 3, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(512, n_classes),
            )
        else:
            self.head = nn.Sequential(
                nn.Dropout(dropout), nn.Conv2d(128, n_classes, 3, padding=1),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Classifier(nn.Module):
    """A model followed by softmax: what inference and ONNX export run."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), dim=1)


def build_model(name: str, n_classes: int = 7, in_channels: int = 1, dropout: float = 0.5) -> nn.Module:
    """Build ARCH-1..4 by name ("arch1".."arch4"), or a teacher of TEACHER_ARCHS."""
    if name == "faceapi_expression":
        from .faceapi import FaceExpressionNet

        return FaceExpressionNet(n_classes, in_channels)
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(ARCHS)}")
    separable = key in ("arch1", "arch2")
    dense_head = key in ("arch2", "arch4")
    return FERNet(n_classes, in_channels, separable=separable, dense_head=dense_head, dropout=dropout)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) in Keras' sense: total adds batch-norm running mean and variance."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, trainable + stats


def count_macs(model: nn.Module, input_size: int = 48, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass of one image (convolutions and linear layers).

    Leaves the model in eval mode."""
    macs = []

    def conv(mod, _, out):
        macs.append(out[0].numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1])

    def linear(mod, _, out):
        macs.append(mod.in_features * mod.out_features)

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    return sum(macs)
