"""Base classifiers, written here (torchvision is not needed): an MLP, a small CNN and the CIFAR
variant of ResNet-18 (He et al., 2016; 3x3 stem, no max-pool, for 32x32 inputs).

Every model built by :func:`build_model` starts with a :class:`Normalize` layer, so that smoothing
noise is added in the raw input space, before normalization (Cohen et al., 2019).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from wulff.catalog import MODELS


class Normalize(nn.Module):
    """(x - mean) / std per channel; the first layer of every model, after the noise."""

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if (std <= 0).any():
            raise ValueError(f"std must be positive; got {std.flatten().tolist()}")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """Fully connected ReLU network (the paper's ablation uses hidden sizes 2048 and 512)."""

    def __init__(self, in_features: int, num_classes: int, hidden=(512, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Two conv blocks, global average pooling, a linear head; any image size."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(*_conv_bn(in_channels, width), *_conv_bn(width, width),
                                      *_conv_bn(width, 2 * width, stride=2), *_conv_bn(2 * width, 2 * width),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (CIFAR-10): stages of 64, 128, 256, 512 channels, two blocks each."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, 64))
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(x))))


def torchvision_model(name: str, num_classes: int) -> nn.Module:
    """An untrained torchvision architecture (e.g. "resnet50", the paper's ImageNet model)."""
    try:
        from torchvision import models
    except ImportError as exc:
        raise ImportError(f"model torchvision:{name} needs torchvision (pip install torchvision)") from exc
    if not hasattr(models, name):
        raise ValueError(f"torchvision.models has no architecture {name!r}")
    return getattr(models, name)(weights=None, num_classes=num_classes)


def build_model(name: str, input_shape, num_classes: int, mean=None, std=None) -> nn.Sequential:
    """Normalize (when mean/std are given) followed by the named network: "mlp", "cnn", "resnet18"
    (32x32 inputs) or "torchvision:<architecture>" (needs torchvision)."""
    key = str(name).lower().replace("-", "").replace("_", "")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width); got {input_shape}")
    channels = input_shape[0]
    if key == "mlp":
        net = MLP(math.prod(input_shape), num_classes)
    elif key == "cnn":
        net = SmallCNN(channels, num_classes)
    elif key == "resnet18":
        net = ResNet18(channels, num_classes)
    elif key.startswith("torchvision:"):
        net = torchvision_model(str(name).split(":", 1)[1], num_classes)
    else:
        raise ValueError(f"model must be one of {', '.join(MODELS)} or torchvision:<name> (e.g. "
                         f"torchvision:resnet50 for ImageNet); got {name!r}")
    layers = [] if mean is None else [Normalize(mean, std)]
    return nn.Sequential(*layers, net)
