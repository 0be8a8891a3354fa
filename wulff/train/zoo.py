"""The smoothed classifiers of the two reference codebases, rebuilt in wulff's own code (no torchvision,
nothing read from their files but tensors) so that their published weights load with ``strict=True``:

* Cohen, Rosenfeld and Kolter (2019), locuslab/smoothing: a checkpoint ``{"epoch", "arch",
  "state_dict", "optimizer"}`` whose ``arch`` is ``cifar_resnet20``, ``cifar_resnet110`` (CIFAR-10) or
  ``resnet50`` (ImageNet); the model is ``Sequential(normalization, network)``, the normalization
  holding no tensors (keys ``1.*``) and the ImageNet network wrapped in ``DataParallel``
  (keys ``1.module.*``). Their CIFAR ResNets use 1x1 convolution shortcuts (``downsample``) and a
  head named ``fc``.
* Yang et al. (2020), tonyduan/rs4a, the paper this project implements: ``model_ckpt.torch`` is the
  ``state_dict`` of a wrapper with ``norm`` (per-channel ``mu`` and ``log_sig``) and ``model``, both
  under ``DataParallel`` (keys ``norm.module.*``, ``model.module.*``); the model is the classic
  CIFAR ResNet-110 (zero-padding shortcuts, head ``linear``), ResNet-50 (ImageNet) or a
  Wide ResNet of depth 40 and widen factor 2 (pre-activation blocks).

Both add the noise before normalizing (the normalization is the model's first layer), as wulff does;
inputs are images in [0, 1]. :func:`reference_model` recognizes a layout from the file's keys.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the normalization statistics both codebases use (their datasets.py), per channel
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
STATS = {"cifar10": CIFAR10_STATS, "imagenet": IMAGENET_STATS}
#: the formats this module reads
FORMATS = ("cohen", "rs4a")


# -- layers ------------------------------------------------------------------------------------------
class Parallel(nn.Module):
    """A module under ``torch.nn.DataParallel``'s key layout (``module.*``), run as is."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class FixedNormalize(nn.Module):
    """(x - mean) / std per channel, with the statistics fixed by the format (Cohen et al.'s layer keeps
    them outside its state_dict: buffers that are not saved)."""

    def __init__(self, mean, std):
        super().__init__()
        for name, value in (("mean", mean), ("std", std)):
            tensor = torch.tensor(value, dtype=torch.float32).reshape(1, -1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LogScaleNormalize(nn.Module):
    """(x - mu) / exp(log_sig), with ``mu`` and ``log_sig`` of shape (channels, 1, 1) saved with the
    weights (rs4a's layer; they are not trained)."""

    def __init__(self, mean, std):
        super().__init__()
        shape = (len(mean), 1, 1)
        self.mu = nn.Parameter(torch.tensor(mean, dtype=torch.float32).reshape(shape), requires_grad=False)
        self.log_sig = nn.Parameter(torch.log(torch.tensor(std, dtype=torch.float32)).reshape(shape),
                                    requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mu) / torch.exp(self.log_sig)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    """The 1x1 convolution shortcut with its batch norm (keys ``0.weight``, ``1.*``)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


# -- CIFAR ResNets (He et al., 2016, Section 4.2: 6n + 2 layers of 16, 32, 64 channels) ----------------
class CifarBlock(nn.Module):
    """Post-activation basic block: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x). Where the shape
    changes the shortcut is a 1x1 convolution (``downsample``, Cohen et al.) or, with
    ``projection=False``, the input subsampled by 2 and zero-padded with channels (option A of He et al.,
    rs4a's classic ResNet; no weights)."""

    def __init__(self, cin: int, cout: int, stride: int, projection: bool):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        reshapes = stride != 1 or cin != cout
        self.downsample = _projection(cin, cout, stride) if reshapes and projection else None
        self.pad = (cout - cin) // 2 if reshapes and not projection else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self.pad is not None:
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv 3x3 (16) -> three stages of ``(depth - 2) / 6`` blocks (16, 32, 64 channels; stride 2 at the
    second and third) -> global average pool -> linear head named ``head`` ("fc" for Cohen et al.,
    "linear" for rs4a's classic ResNet)."""

    def __init__(self, depth: int, num_classes: int = 10, *, projection: bool = True, head: str = "fc"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6 n + 2 (20, 110, ...); got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = _conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            layers = [CifarBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, projection)
                      for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
            cin = cout
        self.head_name = head
        setattr(self, head, nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return getattr(self, self.head_name)(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# -- Wide ResNet (Zagoruyko and Komodakis, 2016): pre-activation blocks ---------------------------------
class WideBlock(nn.Module):
    """relu(bn1 x) -> conv1 -> relu(bn2) -> conv2, plus x (same shape) or ``convShortcut`` of the
    activated input (where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.convShortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (x if self.convShortcut is None else self.convShortcut(activated))


class WideStage(nn.Module):
    """Blocks kept under ``layer`` (the key layout ``blockK.layer.i.*``)."""

    def __init__(self, blocks: int, cin: int, cout: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen: conv 3x3 (16) -> three stages of ``(depth - 4) / 6`` blocks of 16 w, 32 w, 64 w
    channels -> relu(bn1) -> global average pool -> ``fc``."""

    def __init__(self, depth: int = 40, widen: int = 2, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6 n + 4 (16, 28, 40, ...); got {depth}")
        blocks, widths = (depth - 4) // 6, (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = _conv3x3(3, widths[0])
        self.block1 = WideStage(blocks, widths[0], widths[1], 1)
        self.block2 = WideStage(blocks, widths[1], widths[2], 2)
        self.block3 = WideStage(blocks, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1), 1))


# -- ResNet-50 for ImageNet (He et al., 2016, Table 1), torchvision's key layout ----------------------
class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, the block's stride) -> 1x1 (4 width), each with batch norm, plus the
    input or its ``downsample`` projection; relu after the sum."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """conv 7x7/2 (64) -> max pool 3x3/2 -> stages of 3, 4, 6, 3 bottlenecks (widths 64 .. 512) ->
    global average pool -> ``fc``."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for stage, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)),
                                                        start=1):
            layers = [Bottleneck(cin if i == 0 else 4 * width, width, stride if i == 0 else 1)
                      for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
            cin = 4 * width
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# -- the two codebases' wrappers ----------------------------------------------------------------------
class Rs4aClassifier(nn.Module):
    """rs4a's ``Forecaster``: ``model(norm(x))``, both under ``DataParallel``'s key layout."""

    def __init__(self, network: nn.Module, mean, std):
        super().__init__()
        self.norm = Parallel(LogScaleNormalize(mean, std))
        self.model = Parallel(network)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.norm(x))


def cohen_classifier(network: nn.Module, dataset: str, parallel: bool) -> nn.Sequential:
    """Cohen et al.'s ``Sequential(NormalizeLayer(dataset), network)``; ``parallel``: the network under
    ``DataParallel`` (their ImageNet model)."""
    mean, std = STATS[dataset]
    return nn.Sequential(FixedNormalize(mean, std), Parallel(network) if parallel else network)


@dataclass(frozen=True)
class Architecture:
    """One reference model: its ``format`` and ``name``, the ``dataset`` it takes and how to build it
    (random weights) for ``num_classes``."""

    format: str
    name: str
    dataset: str
    build: Callable[[int], nn.Module]

    @property
    def label(self) -> str:
        """``format:name``, e.g. ``cohen:cifar_resnet110`` (the architecture a result header records)."""
        return f"{self.format}:{self.name}"


def _rs4a(network: Callable[[int], nn.Module], dataset: str) -> Callable[[int], nn.Module]:
    return lambda classes: Rs4aClassifier(network(classes), *STATS[dataset])


#: Cohen et al.'s architectures by their checkpoints' ``arch``
COHEN = {
    "cifar_resnet20": Architecture("cohen", "cifar_resnet20", "cifar10",
                                   lambda c: cohen_classifier(CifarResNet(20, c), "cifar10", False)),
    "cifar_resnet110": Architecture("cohen", "cifar_resnet110", "cifar10",
                                    lambda c: cohen_classifier(CifarResNet(110, c), "cifar10", False)),
    "resnet50": Architecture("cohen", "resnet50", "imagenet",
                             lambda c: cohen_classifier(ResNet50(c), "imagenet", True)),
}
#: rs4a's architectures, each with the key of its head (which tells them apart in a state_dict)
RS4A = {
    "model.module.linear.weight": Architecture(
        "rs4a", "classic_resnet110", "cifar10",
        _rs4a(lambda c: CifarResNet(110, c, projection=False, head="linear"), "cifar10")),
    "model.module.layer4.0.conv1.weight": Architecture(
        "rs4a", "resnet50", "imagenet", _rs4a(ResNet50, "imagenet")),
    "model.module.block1.layer.0.conv1.weight": Architecture(
        "rs4a", "wide_resnet40_2", "cifar10", _rs4a(lambda c: WideResNet(40, 2, c), "cifar10")),
}


def is_cohen_checkpoint(state) -> bool:
    """A dict with Cohen et al.'s ``arch`` (a string) and ``state_dict`` entries."""
    return isinstance(state, Mapping) and isinstance(state.get("arch"), str) and "state_dict" in state


def is_rs4a_state(state) -> bool:
    """A state_dict with rs4a's normalization keys."""
    return isinstance(state, Mapping) and "norm.module.mu" in state and "norm.module.log_sig" in state


def reference_architecture(state: Mapping, fmt: str) -> tuple[Architecture, Mapping]:
    """(architecture, its weights) of a file read as plain data in the layout ``fmt`` ("cohen" or
    "rs4a"); a ValueError naming what the file lacks otherwise."""
    if fmt == "cohen":
        if not is_cohen_checkpoint(state):
            raise ValueError("is not a Cohen et al. checkpoint (a dict with 'arch' and 'state_dict')")
        if state["arch"] not in COHEN:
            raise ValueError(f"has arch {state['arch'][:40]!r}; Cohen et al.'s are {', '.join(COHEN)}")
        return COHEN[state["arch"]], state["state_dict"]
    if fmt == "rs4a":
        if not is_rs4a_state(state):
            raise ValueError("is not an rs4a model_ckpt.torch (a state_dict with norm.module.mu and "
                             "norm.module.log_sig)")
        for head, architecture in RS4A.items():
            if head in state:
                return architecture, state
        raise ValueError(f"is an rs4a state_dict of none of its CIFAR-10 / ImageNet models (one of the keys "
                         f"{', '.join(RS4A)})")
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
