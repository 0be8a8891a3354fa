"""Models trained elsewhere (issue 27, items 1-3): the checkpoints of Cohen et al. (2019,
locuslab/smoothing) and Yang et al. (2020, tonyduan/rs4a), a network of the user's own factory with a
weights file, TorchScript and torch.export archives -- certified and attacked by ``wulff certify`` /
``wulff attack``, each mismatch refused in one line.

The reference layouts are written here from reading their code (key names, shapes, forward passes), with
random weights, independently of wulff.train.zoo: a file saved in that layout must load with strict keys,
and the smoothed predictions must equal those of a direct functional forward pass of the same tensors.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import shlex
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from toys import fake_cifar10, run_cli

import wulff
import wulff.distributions as D
from wulff.certify import Smoothed, certify_dataset, read_results

pytestmark = pytest.mark.usefixtures("one_torch_thread", "private_cache")

# their datasets.py: the normalization statistics of CIFAR-10 and ImageNet
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SAMPLING = ["--n0", "8", "--n", "24", "--batch-size", "16", "--no-progress"]


# -- the reference layouts, random weights ---------------------------------------------------------------
class Weights:
    """An ordered state_dict built entry by entry with random values (batch norms with random statistics,
    so that a misplaced normalization changes the logits)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _uniform(self, shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def conv(self, key: str, cout: int, cin: int, k: int) -> None:
        self.entries[key + ".weight"] = torch.randn(cout, cin, k, k, generator=self.generator) * math.sqrt(
            1.0 / (k * k * cin))

    def bn(self, key: str, c: int) -> None:
        self.entries[key + ".weight"] = self._uniform(c, 0.6, 1.0)
        self.entries[key + ".bias"] = self._uniform(c, -0.1, 0.1)
        self.entries[key + ".running_mean"] = self._uniform(c, -0.1, 0.1)
        self.entries[key + ".running_var"] = self._uniform(c, 0.8, 1.5)
        self.entries[key + ".num_batches_tracked"] = torch.tensor(100)

    def linear(self, key: str, cout: int, cin: int) -> None:
        self.entries[key + ".weight"] = torch.randn(cout, cin, generator=self.generator) / math.sqrt(cin)
        self.entries[key + ".bias"] = self._uniform(cout, -0.5, 0.5)

    def tensor(self, key: str, value: torch.Tensor) -> None:
        self.entries[key] = value


def cifar_resnet(w: Weights, p: str, depth: int, *, projection: bool, head: str, classes: int = 10) -> None:
    """bearpaw's CIFAR ResNet (Cohen et al.: 1x1 `downsample` shortcuts, head `fc`) or the classic one of
    rs4a (option A: parameter-free shortcuts, head `linear`): conv1, bn1, layer1..3 of (depth - 2) / 6
    blocks of conv1, bn1, conv2, bn2."""
    blocks, cin = (depth - 2) // 6, 16
    w.conv(p + "conv1", 16, 3, 3)
    w.bn(p + "bn1", 16)
    for stage, width in ((1, 16), (2, 32), (3, 64)):
        for i in range(blocks):
            q = f"{p}layer{stage}.{i}."
            w.conv(q + "conv1", width, cin if i == 0 else width, 3)
            w.bn(q + "bn1", width)
            w.conv(q + "conv2", width, width, 3)
            w.bn(q + "bn2", width)
            if i == 0 and stage > 1 and projection:
                w.conv(q + "downsample.0", width, cin, 1)
                w.bn(q + "downsample.1", width)
        cin = width
    w.linear(p + head, classes, 64)


def wide_resnet(w: Weights, p: str, classes: int = 10) -> None:
    """rs4a's WideResNet(depth=40, widen_factor=2): conv1, block1..3.layer.0..5 of bn1, conv1, bn2, conv2
    (+ convShortcut where the width changes), bn1, fc."""
    w.conv(p + "conv1", 16, 3, 3)
    cin = 16
    for b, width in ((1, 32), (2, 64), (3, 128)):
        for i in range(6):
            q = f"{p}block{b}.layer.{i}."
            c = cin if i == 0 else width
            w.bn(q + "bn1", c)
            w.conv(q + "conv1", width, c, 3)
            w.bn(q + "bn2", width)
            w.conv(q + "conv2", width, width, 3)
            if c != width:
                w.conv(q + "convShortcut", width, c, 1)
        cin = width
    w.bn(p + "bn1", 128)
    w.linear(p + "fc", classes, 128)


def resnet50(w: Weights, p: str, classes: int = 1000) -> None:
    """torchvision's resnet50: conv1, bn1, layer1..4 of 3, 4, 6, 3 bottlenecks (conv1..3, bn1..3, the first
    with downsample.0 / .1), fc."""
    w.conv(p + "conv1", 64, 3, 7)
    w.bn(p + "bn1", 64)
    cin = 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for i in range(blocks):
            q = f"{p}layer{stage}.{i}."
            w.conv(q + "conv1", width, cin, 1)
            w.bn(q + "bn1", width)
            w.conv(q + "conv2", width, width, 3)
            w.bn(q + "bn2", width)
            w.conv(q + "conv3", 4 * width, width, 1)
            w.bn(q + "bn3", 4 * width)
            if i == 0:
                w.conv(q + "downsample.0", 4 * width, cin, 1)
                w.bn(q + "downsample.1", 4 * width)
            cin = 4 * width
    w.linear(p + "fc", classes, 2048)


def rs4a_norm(w: Weights, mean, std) -> None:
    w.tensor("norm.module.mu", torch.tensor(mean).reshape(3, 1, 1))
    w.tensor("norm.module.log_sig", torch.log(torch.tensor(std)).reshape(3, 1, 1))


# -- their forward passes, written with torch.nn.functional on the same tensors -------------------------------
def _bn(x, w, key):
    return F.batch_norm(x, w[key + ".running_mean"], w[key + ".running_var"], w[key + ".weight"], w[key + ".bias"],
                        False, 0.0, 1e-5)


def _conv(x, w, key, stride=1, padding=1):
    return F.conv2d(x, w[key + ".weight"], stride=stride, padding=padding)


def cifar_resnet_forward(w, p, x, depth, *, projection, head):
    out = F.relu(_bn(_conv(x, w, p + "conv1"), w, p + "bn1"))
    for stage, width in ((1, 16), (2, 32), (3, 64)):
        for i in range((depth - 2) // 6):
            q, stride = f"{p}layer{stage}.{i}.", 2 if i == 0 and stage > 1 else 1
            h = F.relu(_bn(_conv(out, w, q + "conv1", stride), w, q + "bn1"))
            h = _bn(_conv(h, w, q + "conv2"), w, q + "bn2")
            if stride == 1:
                shortcut = out
            elif projection:
                shortcut = _bn(_conv(out, w, q + "downsample.0", stride, 0), w, q + "downsample.1")
            else:
                shortcut = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, width // 4, width // 4))
            out = F.relu(h + shortcut)
    return F.linear(F.avg_pool2d(out, 8).flatten(1), w[p + head + ".weight"], w[p + head + ".bias"])


def wide_resnet_forward(w, p, x):
    out, cin = _conv(x, w, p + "conv1"), 16
    for b, width in ((1, 32), (2, 64), (3, 128)):
        for i in range(6):
            q, stride = f"{p}block{b}.layer.{i}.", (1 if b == 1 else 2) if i == 0 else 1
            act = F.relu(_bn(out, w, q + "bn1"))
            h = _conv(F.relu(_bn(_conv(act, w, q + "conv1", stride), w, q + "bn2")), w, q + "conv2")
            widens = (cin if i == 0 else width) != width
            out = h + (_conv(act, w, q + "convShortcut", stride, 0) if widens else out)
        cin = width
    out = F.avg_pool2d(F.relu(_bn(out, w, p + "bn1")), 8).flatten(1)
    return F.linear(out, w[p + "fc.weight"], w[p + "fc.bias"])


def resnet50_forward(w, p, x):
    out = F.max_pool2d(F.relu(_bn(_conv(x, w, p + "conv1", 2, 3), w, p + "bn1")), 3, 2, 1)
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for i in range(blocks):
            q, stride = f"{p}layer{stage}.{i}.", 2 if i == 0 and stage > 1 else 1
            h = F.relu(_bn(_conv(out, w, q + "conv1", 1, 0), w, q + "bn1"))
            h = F.relu(_bn(_conv(h, w, q + "conv2", stride), w, q + "bn2"))
            h = _bn(_conv(h, w, q + "conv3", 1, 0), w, q + "bn3")
            shortcut = _bn(_conv(out, w, q + "downsample.0", stride, 0), w, q + "downsample.1") if i == 0 else out
            out = F.relu(h + shortcut)
    return F.linear(F.adaptive_avg_pool2d(out, 1).flatten(1), w[p + "fc.weight"], w[p + "fc.bias"])


def normalized(x, mean, std):
    return (x - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1)


class Functional(torch.nn.Module):
    """A forward function of the state_dict as a module (what the smoothed reference is built on)."""

    def __init__(self, forward):
        super().__init__()
        self.function = forward

    def forward(self, x):
        return self.function(x)


def cohen_checkpoint(path: Path, arch: str, weights: Weights, **save) -> Path:
    optimizer = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": list(range(3))}]}
    torch.save({"epoch": 90, "arch": arch, "state_dict": weights.entries, "optimizer": optimizer}, path, **save)
    return path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return fake_cifar10(tmp_path_factory.mktemp("data"), per_batch=3).parent


@pytest.fixture(scope="module")
def cohen110(tmp_path_factory):
    w = Weights(110)
    cifar_resnet(w, "1.", 110, projection=True, head="fc")
    path = cohen_checkpoint(tmp_path_factory.mktemp("cohen") / "checkpoint.pth.tar", "cifar_resnet110", w)
    forward = lambda x: cifar_resnet_forward(w.entries, "1.", normalized(x, CIFAR_MEAN, CIFAR_STD), 110,  # noqa: E731
                                             projection=True, head="fc")
    return path, w.entries, forward


def header(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0].split(" ", 2)[2])


def rows(results) -> list[tuple]:
    """(index, prediction, rho_lower) of each row of a result file."""
    columns = results.columns
    return list(zip(*(columns[k].tolist() for k in ("index", "prediction", "rho_lower"))))


def reference_rows(forward, dataset_items, out: Path, sigma: float, d: int = 3072, classes: int = 10,
                   **sampling) -> list:
    """The certify rows of the functional reference model at the same seed (as `wulff certify` runs)."""
    smoothed = Smoothed(Functional(forward), D.Gaussian(d, sigma=sigma), classes)
    return rows(certify_dataset(smoothed, dataset_items, out, progress=False, **sampling))


def _cifar_items(cifar: Path, count: int):
    from wulff.train.data import load_dataset

    test_set, _ = load_dataset("cifar10", "test", str(cifar))
    return [test_set[i] for i in range(count)]


def assert_same_certificates(out: Path, forward, cifar: Path, tmp_path: Path, sigma: float = 0.25) -> None:
    certified = rows(read_results(out))
    expected = reference_rows(forward, _cifar_items(cifar, len(certified)), tmp_path / "reference.tsv", sigma,
                              n0=8, n=24, alpha=0.001, batch_size=16, adversaries=("l2",))
    assert certified == expected


# -- 1. the reference checkpoints -------------------------------------------------------------------------
def test_cohen_cifar_resnet110_is_certified_with_the_command_line_noise(cohen110, cifar, tmp_path, capsys):
    path, weights, forward = cohen110
    assert len(weights) == 668 and {"1.conv1.weight", "1.layer2.0.downsample.0.weight",
                                    "1.layer3.17.bn2.num_batches_tracked", "1.fc.bias"} <= set(weights)
    out = tmp_path / "c.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--noise", "Gaussian", "--sigma", "0.25", "--data-dir", cifar,
                           "--out", out, "--max-inputs", 2, "--adversaries", "l2", *SAMPLING)
    assert code == 0, err
    meta = header(out)
    assert meta["sigma"] == 0.25 and meta["distribution"] == "Gaussian"
    assert meta["model"] == "cohen:cifar_resnet110"
    assert meta["model_identity"]["noise"] == {"name": "Gaussian", "params": {}, "sigma": 0.25}
    assert meta["model_identity"]["format"] == "cohen" and meta["model_identity"]["training_data"] == "cifar10"
    assert_same_certificates(out, forward, cifar, tmp_path)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loaded = wulff.load(path, noise=D.Gaussian(3072, sigma=0.25))
    torch.testing.assert_close(loaded.model(x), forward(x), rtol=1e-4, atol=1e-4)


def test_a_reference_checkpoint_needs_the_noise_in_one_line(cohen110, cifar, tmp_path, capsys):
    path, _, _ = cohen110
    code, _, err = run_cli(capsys, "certify", path, "--data-dir", cifar, "--out", tmp_path / "c.tsv", *SAMPLING)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "noise is required for a cohen model" in err and "records no noise (--noise Gaussian --sigma" in err
    with pytest.raises(ValueError, match="noise is required for a cohen model"):
        wulff.load(path)
    assert not (tmp_path / "c.tsv").exists()


def test_cohen_cifar_resnet20_in_the_legacy_format_is_certified_and_attacked(cifar, tmp_path, capsys):
    w = Weights(20)
    cifar_resnet(w, "1.", 20, projection=True, head="fc")
    assert len(w.entries) == 128
    path = cohen_checkpoint(tmp_path / "resnet20.pth.tar", "cifar_resnet20", w,
                            _use_new_zipfile_serialization=False)  # the format of torch < 1.6, as they saved it
    forward = lambda x: cifar_resnet_forward(w.entries, "1.", normalized(x, CIFAR_MEAN, CIFAR_STD), 20,  # noqa: E731
                                             projection=True, head="fc")
    out = tmp_path / "c.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--sigma", "0.25", "--data-dir", cifar, "--out", out,
                           "--adversaries", "l2", *SAMPLING)
    assert code == 0, err
    assert_same_certificates(out, forward, cifar, tmp_path)
    attack = tmp_path / "a.tsv"
    code, stdout, err = run_cli(capsys, "attack", path, "--format", "cohen", "--noise", "gaussian", "--sigma",
                                0.25, "--data-dir", cifar, "--out", attack, "--eps", 0.5, "--steps", 2,
                                "--samples", 2, "--n", 16, "--batch-size", 8, "--max-inputs", 2, "--no-progress")
    assert code == 0, err
    meta = header(attack)
    assert len(attack.read_text().splitlines()) == 2 + 2  # header, columns, two inputs
    assert meta["model_identity"]["architecture"] == "cohen:cifar_resnet20"
    assert meta["sigma"] == 0.25 and "empirical robust accuracy" in stdout


def fake_imagenet(root: Path) -> Path:
    """ROOT/val with ImageNet's 1000 class folders (sorted names), one image in the fourth."""
    from PIL import Image

    for number in range(1000):
        (root / "val" / f"n{number:08d}").mkdir(parents=True)
    pixels = (torch.rand(300, 260, 3, generator=torch.Generator().manual_seed(4)) * 255).to(torch.uint8)
    Image.fromarray(pixels.numpy()).save(root / "val" / "n00000003" / "a.JPEG", quality=95)
    return root


def test_cohen_imagenet_resnet50_under_data_parallel_is_certified(tmp_path, capsys):
    w = Weights(50)
    resnet50(w, "1.module.", 1000)
    assert len(w.entries) == 320 and "1.module.layer4.2.bn3.running_var" in w.entries
    path = cohen_checkpoint(tmp_path / "checkpoint.pth.tar", "resnet50", w)
    forward = lambda x: resnet50_forward(w.entries, "1.module.", normalized(x, IMAGENET_MEAN, IMAGENET_STD))  # noqa: E731
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    smoothed = wulff.load(path, noise=D.Gaussian(3 * 224 * 224, sigma=0.5))
    assert smoothed.meta["dataset"] == "imagenet" and smoothed.num_classes == 1000
    torch.testing.assert_close(smoothed.model(x), forward(x), rtol=1e-4, atol=1e-4)
    root, out = fake_imagenet(tmp_path / "imagenet"), tmp_path / "c.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--noise", "Gaussian", "--sigma", "0.5", "--data-dir", root,
                           "--out", out, "--n0", 2, "--n", 6, "--alpha", 0.01, "--batch-size", 4, "--adversaries",
                           "l2", "--no-progress")
    assert code == 0, err
    from wulff.train.data import load_dataset

    items = [load_dataset("imagenet", "test", str(root))[0][0]]
    assert items[0][1] == 3 and header(out)["model"] == "cohen:resnet50"
    assert rows(read_results(out)) == reference_rows(forward, items, tmp_path / "r.tsv", 0.5, 3 * 224 * 224, 1000,
                                                     n0=2, n=6, alpha=0.01, batch_size=4, adversaries=("l2",))


@pytest.fixture(scope="module")
def rs4a_resnet110(tmp_path_factory):
    w = Weights(1101)
    rs4a_norm(w, CIFAR_MEAN, CIFAR_STD)
    cifar_resnet(w, "model.module.", 110, projection=False, head="linear")
    path = tmp_path_factory.mktemp("rs4a") / "model_ckpt.torch"
    torch.save(w.entries, path)
    return path, w.entries


def test_rs4a_classic_resnet110_is_recognized_and_certified(rs4a_resnet110, cifar, tmp_path, capsys):
    path, weights = rs4a_resnet110
    assert len(weights) == 658 and list(weights)[:3] == ["norm.module.mu", "norm.module.log_sig",
                                                         "model.module.conv1.weight"]
    assert not any("shortcut" in k or "downsample" in k for k in weights)

    def forward(x):
        x = (x - weights["norm.module.mu"]) / torch.exp(weights["norm.module.log_sig"])
        return cifar_resnet_forward(weights, "model.module.", x, 110, projection=False, head="linear")

    out = tmp_path / "r.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--noise", "Gaussian", "--sigma", "0.5", "--data-dir", cifar,
                           "--out", out, "--max-inputs", 2, "--adversaries", "l2", *SAMPLING)
    assert code == 0, err
    assert header(out)["model"] == "rs4a:classic_resnet110" and header(out)["sigma"] == 0.5
    assert_same_certificates(out, forward, cifar, tmp_path, sigma=0.5)


def test_rs4a_wide_resnet_40_2_is_certified(cifar, tmp_path, capsys):
    w = Weights(402)
    rs4a_norm(w, CIFAR_MEAN, CIFAR_STD)
    wide_resnet(w, "model.module.")
    assert len(w.entries) == 229 and "model.module.block2.layer.0.convShortcut.weight" in w.entries
    path = tmp_path / "model_ckpt.torch"
    torch.save(w.entries, path)

    def forward(x):
        x = (x - w.entries["norm.module.mu"]) / torch.exp(w.entries["norm.module.log_sig"])
        return wide_resnet_forward(w.entries, "model.module.", x)

    out = tmp_path / "w.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--format", "rs4a", "--sigma", "0.25", "--data-dir", cifar,
                           "--dataset", "cifar10", "--out", out, "--max-inputs", 2, "--adversaries", "l2",
                           *SAMPLING)
    assert code == 0, err
    assert header(out)["model"] == "rs4a:wide_resnet40_2"
    assert_same_certificates(out, forward, cifar, tmp_path)


def test_rs4a_imagenet_resnet50_loads(tmp_path):
    w = Weights(501)
    rs4a_norm(w, IMAGENET_MEAN, IMAGENET_STD)
    resnet50(w, "model.module.", 1000)
    torch.save(w.entries, tmp_path / "model_ckpt.torch")
    smoothed = wulff.load(tmp_path / "model_ckpt.torch", noise=D.Laplace(3 * 224 * 224, sigma=0.5))
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    expected = resnet50_forward(w.entries, "model.module.", normalized(x, IMAGENET_MEAN, IMAGENET_STD))
    assert smoothed.meta["model"] == "rs4a:resnet50" and isinstance(smoothed.q, D.Laplace)
    torch.testing.assert_close(smoothed.model(x), expected, rtol=1e-4, atol=1e-4)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_reference_checkpoint_is_read_as_plain_data_only(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth.tar"
    torch.save({"epoch": 1, "arch": "cifar_resnet20", "state_dict": {}, "optimizer": Payload(marker)}, path)
    pickle.loads(pickle.dumps(Payload(tmp_path / "premise"))).close()  # the premise: plain pickle runs it
    assert (tmp_path / "premise").exists()
    for fmt in ("auto", "cohen"):
        code, _, err = run_cli(capsys, "certify", path, "--format", fmt, "--sigma", "0.25", "--out",
                               tmp_path / "c.tsv", *SAMPLING)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "nothing in it was run" in err, err
    assert not marker.exists()


# -- 2. the user's own network, TorchScript and torch.export ------------------------------------------------
FACTORY = '''
import torch


def build():
    """A small CIFAR network of the user's own, normalizing inside."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(16, 10))
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mynets.models:build"
    for name in ("mynets", "mynets.models"):
        sys.modules.pop(name, None)


def _user_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    scope: dict = {}
    exec(compile(FACTORY, "factory", "exec"), scope)  # the test's own text, as a reference construction
    return scope["build"]().eval()


def test_a_state_dict_of_the_users_own_network(user_package, cifar, tmp_path, capsys):
    net = _user_network()
    weights = tmp_path / "weights.pt"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, weights)
    code, _, err = run_cli(capsys, "certify", weights, "--data-dir", cifar, "--out", tmp_path / "x.tsv",
                           "--sigma", "0.25", *SAMPLING)
    assert code == 2 and "--arch package.module:factory" in err and "mynets" not in sys.modules, err
    out = tmp_path / "u.tsv"
    code, _, err = run_cli(capsys, "certify", weights, "--arch", user_package, "--dataset", "cifar10", "--sigma",
                           "0.25", "--data-dir", cifar, "--out", out, "--adversaries", "l2", *SAMPLING)
    assert code == 0, err
    assert header(out)["model"] == user_package and header(out)["model_identity"]["format"] == "state-dict"
    assert_same_certificates(out, net, cifar, tmp_path)


ARCHIVE = ["--dataset", "cifar10", "--sigma", "0.25", "--adversaries", "l2", *SAMPLING]


@pytest.mark.parametrize("arch, needle", [
    ("mynets.models", "--arch must look like package.module:factory; got 'mynets.models'"),
    ("mynets.absent:build", "--arch mynets.absent:build: cannot import mynets.absent (ModuleNotFoundError"),
    ("mynets.broken:build", "--arch mynets.broken:build: cannot import mynets.broken (ZeroDivisionError"),
    ("mynets.models:nothing", "--arch mynets.models:nothing: mynets.models has no nothing"),
    ("mynets.models:torch", "--arch mynets.models:torch: torch is not callable"),
    ("mynets.models:failing", "arch mynets.models:failing: building the network failed (RuntimeError: no"),
    ("mynets.models:not_a_module", "arch mynets.models:not_a_module built a int, not a torch.nn.Module"),
])
def test_a_bad_arch_is_one_line(arch, needle, user_package, tmp_path, capsys):
    (tmp_path / "mynets" / "broken.py").write_text("1 / 0\n")
    with open(tmp_path / "mynets" / "models.py", "a") as fh:
        fh.write("\n\ndef failing():\n    raise RuntimeError('no')\n\n\ndef not_a_module():\n    return 3\n")
    weights = tmp_path / "weights.pt"
    torch.save(_user_network().state_dict(), weights)
    code, _, err = run_cli(capsys, "certify", weights, "--arch", arch, "--dataset", "cifar10", "--sigma", "0.25",
                           "--out", tmp_path / "c.tsv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_a_torchscript_archive_needs_no_python_code(cifar, tmp_path, capsys):
    net = _user_network(1)
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), path)
    out = tmp_path / "t.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--format", "torchscript", "--noise", "Gaussian",
                           "--data-dir", cifar, "--out", out, *ARCHIVE)
    assert code == 0, err
    assert header(out)["model_identity"]["format"] == "torchscript"
    assert_same_certificates(out, net, cifar, tmp_path)


def test_an_exported_program_of_a_fixed_batch_runs_on_any_batch(cifar, tmp_path, capsys):
    net = _user_network(2)
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(5, 3, 32, 32),)), path)  # batch fixed at 5
    out = tmp_path / "e.tsv"
    code, _, err = run_cli(capsys, "certify", path, "--format", "export", "--data-dir", cifar, "--out", out,
                           *ARCHIVE)
    assert code == 0, err
    assert header(out)["model"] == "export"
    assert_same_certificates(out, net, cifar, tmp_path)


def test_an_archive_is_loaded_only_when_its_format_is_named(cifar, tmp_path, capsys, monkeypatch):
    net = _user_network(4)
    torch.jit.save(torch.jit.script(net), tmp_path / "net.ts")
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),)), tmp_path / "net.pt2")
    loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: loads.append(a))
    for name, kind in (("net.ts", "torchscript"), ("net.pt2", "export")):
        code, _, err = run_cli(capsys, "certify", tmp_path / name, "--data-dir", cifar, "--out",
                               tmp_path / "a.tsv", *ARCHIVE)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"is a {kind} archive: loading it runs what it holds" in err and f"add --format {kind}" in err
    assert loads == [] and not (tmp_path / "a.tsv").exists()


def test_an_exported_archive_that_torch_would_unpickle_freely_is_refused(cifar, tmp_path, capsys):
    import zipfile

    net = _user_network(5)
    good = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),)), good)
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = next(name for name in members if name.endswith("model_weights_config.json"))
    weights = json.loads(members[config])
    first = next(iter(weights["config"]))
    weights["config"][first]["use_pickle"] = True
    samples = next(name for name in members if "/data/sample_inputs/" in name)
    for label, changed, needle in (("pickled", {config: json.dumps(weights).encode()}, f"its entry '{first}' is "
                                    "stored as a pickled object"),
                                   ("samples", {samples: pickle.dumps(Payload(tmp_path / "ran"))},
                                    "data/sample_inputs/model.pt is not tensors and plain data")):
        bad = tmp_path / f"{label}.pt2"
        with zipfile.ZipFile(bad, "w") as archive:
            for name, data in {**members, **changed}.items():
                archive.writestr(name, data)
        code, _, err = run_cli(capsys, "certify", bad, "--format", "export", "--data-dir", cifar, "--out",
                               tmp_path / "b.tsv", *ARCHIVE)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "ran").exists()


# -- 3. mismatches, one line each, naming the first differing key or shape ------------------------------------
@pytest.mark.parametrize("change, needle", [
    (lambda w: w.pop("1.layer1.0.bn1.running_var"), "lacks the key 1.layer1.0.bn1.running_var of a "
                                                     "cohen:cifar_resnet20"),
    (lambda w: w.update({"1.extra.weight": torch.zeros(1)}), "has the key 1.extra.weight, which a "
                                                             "cohen:cifar_resnet20 does not"),
    (lambda w: w.update({"1.fc.weight": torch.zeros(100, 64), "1.fc.bias": torch.zeros(100)}),
     "1.fc.weight has shape [100, 64] in the file but a cohen:cifar_resnet20 needs [10, 64]"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_key(change, needle, cifar, tmp_path, capsys):
    w = Weights(0)
    cifar_resnet(w, "1.", 20, projection=True, head="fc")
    change(w.entries)
    path = cohen_checkpoint(tmp_path / "bad.pth.tar", "cifar_resnet20", w)
    code, _, err = run_cli(capsys, "certify", path, "--sigma", "0.25", "--data-dir", cifar, "--out",
                           tmp_path / "c.tsv", *SAMPLING)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_an_archive_that_does_not_fit_the_data_is_refused_naming_the_shapes(cifar, tmp_path, capsys):
    gray = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    gray(torch.zeros(1, 1, 32, 32))
    torch.jit.save(torch.jit.script(gray.eval()), tmp_path / "gray.ts")
    hundred = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 100)).eval()
    torch.jit.save(torch.jit.script(hundred), tmp_path / "hundred.ts")
    for name, needle in (("gray.ts", "does not take cifar10 inputs of shape [2, 3, 32, 32]"),
                         ("hundred.ts", "maps inputs of shape [2, 3, 32, 32] to [2, 100]; cifar10 needs logits "
                                        "of shape [2, 10]")):
        code, _, err = run_cli(capsys, "certify", tmp_path / name, "--format", "torchscript", "--data-dir", cifar,
                               "--out", tmp_path / "c.tsv", *ARCHIVE)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    code, _, err = run_cli(capsys, "certify", tmp_path / "hundred.ts", "--format", "torchscript", "--sigma",
                           "0.25", "--out", tmp_path / "c.tsv")
    assert code == 2 and "a torchscript model needs --dataset" in err, err


def test_a_reference_checkpoint_of_another_data_set_is_refused(cohen110, capsys, tmp_path):
    path, _, _ = cohen110
    code, _, err = run_cli(capsys, "certify", path, "--dataset", "imagenet", "--sigma", "0.25", "--out",
                           tmp_path / "c.tsv")
    assert code == 2 and "a model of cifar10; --dataset imagenet does not fit it" in err, err


# -- the noise of a wulff checkpoint, replaced: the header records it ------------------------------------------
@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed, training_meta

    train_set, info = load_dataset("digits", "train")
    q = D.Gaussian(64, sigma=0.25)
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    path = tmp_path_factory.mktemp("own") / "checkpoint.pt"
    train_smoothed(model, q, torch.utils.data.Subset(train_set, range(64)), TrainConfig(epochs=1, batch_size=64),
                   checkpoint=path, meta=training_meta("mlp", info, q), progress=False)
    return path


def test_a_wulff_checkpoint_certified_with_another_noise_records_that_noise(digits_checkpoint, tmp_path, capsys):
    own, other = tmp_path / "own.tsv", tmp_path / "other.tsv"
    for out, noise in ((own, []), (other, ["--noise", "Laplace", "--sigma", "0.5"])):
        code, _, err = run_cli(capsys, "certify", digits_checkpoint, *noise, "--out", out, "--max-inputs", 1,
                               "--adversaries", "l1", *SAMPLING)
        assert code == 0, err
    assert header(own)["sigma"] == 0.25 and "noise" not in header(own)["model_identity"]
    assert header(other)["sigma"] == 0.5 and header(other)["distribution"] == "Laplace"
    assert header(other)["model_identity"]["noise"] == {"name": "Laplace", "params": {}, "sigma": 0.5}
    smoothed = wulff.load(digits_checkpoint, noise=D.Laplace(64, sigma=0.5))
    from wulff.certify.dataset import evaluation_meta

    assert evaluation_meta(smoothed.meta, "test", noise=smoothed.q)["sigma"] == 0.5
    assert smoothed.meta["sigma"] == 0.25  # the checkpoint's training metadata stays as it was


# -- the README's commands on the tiny fakes ---------------------------------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_model_commands() -> list[str]:
    """The `wulff certify` / `wulff attack` lines of the README's "Models from elsewhere" (section "Certify a
    model trained elsewhere")."""
    text = README.read_text(encoding="utf-8")
    section = re.split(r"\n#{2,3} ", text.split("### Models from elsewhere", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if re.match(r"\s*wulff (certify|attack) ", line)]


def test_the_readme_commands_run_on_tiny_fakes(cifar, user_package, tmp_path, monkeypatch, capsys):
    commands = readme_model_commands()
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    Path("cifar10").symlink_to(cifar)
    Path("models/cifar10/resnet110/noise_0.25").mkdir(parents=True)
    w = Weights(7)
    cifar_resnet(w, "1.", 110, projection=True, head="fc")
    cohen_checkpoint(Path("models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar"), "cifar_resnet110", w)
    w = Weights(8)
    rs4a_norm(w, CIFAR_MEAN, CIFAR_STD)
    wide_resnet(w, "model.module.")
    Path("rs4a/cifar_laplace_0.5").mkdir(parents=True)
    torch.save(w.entries, "rs4a/cifar_laplace_0.5/model_ckpt.torch")
    net = _user_network(3)
    torch.save(net.state_dict(), "weights.pt")
    torch.jit.save(torch.jit.script(net), "model.ts")
    for command in commands:
        argv = shlex.split(command)[1:] + ["--max-inputs", "1", "--batch-size", "8", "--no-progress"]
        budget = {"certify": ["--n0", "4", "--n", "8"], "attack": ["--n", "8", "--samples", "2", "--steps", "1"]}
        argv += budget[argv[0]]
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, (command, err)
