"""Datasets, all local (nothing is ever downloaded). Inputs are in [0, 1]; normalization belongs to
the model (:class:`wulff.train.models.Normalize`) so that noise is added before it.

* ``digits``   scikit-learn's 8x8 handwritten digits (shipped with scikit-learn): 1797 images,
  a fixed stratified split of 1347 train / 450 test. The embedded default.
* ``cifar10``  CIFAR-10 from a local folder in its python-pickle layout (``data_batch_1..5``,
  ``test_batch``), as unpacked from ``cifar-10-python.tar.gz``. The batches are pickles, so they are
  read by :class:`RestrictedUnpickler`, which builds numpy arrays, lists, dicts, bytes, str and
  numbers and refuses anything else (a planted batch cannot run code).
* ``imagenet`` an ImageFolder layout ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``
  (needs torchvision).
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from wulff.catalog import DATASETS
from wulff.errors import UserError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a noise distribution need to know about a dataset."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def d(self) -> int:
        c, h, w = self.input_shape
        return c * h * w


def load_dataset(name: str, split: str = "train", root: str | None = None) -> tuple[Dataset, DatasetInfo]:
    """(dataset of (x, label) pairs, info) for ``name`` in DATASETS and ``split`` in ("train", "test")."""
    key = str(name).lower().replace("-", "")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if key == "digits":
        return load_digits(split)
    if key == "cifar10":
        return load_cifar10(split, root)
    if key == "imagenet":
        return load_imagenet(split, root)
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")


def load_digits(split: str = "train") -> tuple[TensorDataset, DatasetInfo]:
    """scikit-learn's digits, pixels scaled from 0..16 to [0, 1], shape (1, 8, 8)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=450, random_state=0, stratify=y)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    info = DatasetInfo("digits", (1, 8, 8), 10, (float(x_train.mean()),), (float(x_train.std()),))
    return TensorDataset(torch.from_numpy(x[:, None]), torch.from_numpy(y)), info


CIFAR10_INFO = DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def _cifar_folder(root: str | None) -> Path:
    hint = ("put the CIFAR-10 python version there: unpack cifar-10-python.tar.gz so that the folder "
            "holds data_batch_1 ... data_batch_5 and test_batch (or their parent cifar-10-batches-py/)")
    if root is None:
        raise FileNotFoundError(f"CIFAR-10 needs --data-dir: {hint}")
    base = Path(root)
    for folder in (base, base / "cifar-10-batches-py"):
        if (folder / "test_batch").is_file():
            return folder
    raise FileNotFoundError(f"no CIFAR-10 batches found in {base}: {hint}")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call (as ``_codecs.encode``) to rebuild bytes."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "latin"):
        raise pickle.UnpicklingError("refused to load _codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals a pickled numpy array refers to, under every module path numpy has used, plus
    the latin-1 bytes constructor of protocol 2."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    scalar = np.float64(1.0).__reduce__()[0]    # numpy(._)core.multiarray.scalar
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (protocol 5)
    allowed: dict[tuple[str, str], object] = {("_codecs", "encode"): _latin1_bytes}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "ndarray")] = np.ndarray
        allowed[(module, "dtype")] = np.dtype
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, bytes, str and numbers only: every other global (a
    function, a class) is refused before it is looked up, so a pickle cannot call anything else."""

    ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays, lists, dicts, "
                                         "bytes, str and numbers are allowed")
        return found


def restricted_load(path: str | Path, *, encoding: str = "bytes"):
    """The object pickled in ``path``, read by :class:`RestrictedUnpickler` (UserError when refused)."""
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({exc or 'truncated'})") from None


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path} is not a CIFAR-10 python batch (expected a dict with data and labels)")
    try:
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed CIFAR-10 batch ({exc})") from None
    if len(x) != len(y):
        raise UserError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def load_cifar10(split: str = "train", root: str | None = None) -> tuple[TensorDataset, CIFAR10_INFO]:
    """CIFAR-10 from the python-pickle batches in ``root``; uint8 pixels scaled to [0, 1]."""
    folder = _cifar_folder(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {path} is missing (expected data_batch_1..5 and test_batch)")
        x, y = _cifar_batch(path)
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    return TensorDataset(x, torch.from_numpy(np.concatenate(ys))), CIFAR10_INFO


IMAGENET_INFO = DatasetInfo("imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def load_imagenet(split: str = "train", root: str | None = None):
    """ImageNet from ``root/train`` and ``root/val`` class folders (torchvision's ImageFolder)."""
    hint = "put ImageNet there as ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG"
    if root is None:
        raise FileNotFoundError(f"ImageNet needs --data-dir: {hint}")
    folder = Path(root) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"no ImageNet folder {folder}: {hint}")
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise ImportError("ImageNet loading needs torchvision (pip install torchvision)") from exc
    if split == "train":
        tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor()])
    else:
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    dataset = datasets.ImageFolder(str(folder), transform=tf)
    info = IMAGENET_INFO if len(dataset.classes) == 1000 else DatasetInfo(
        "imagenet", IMAGENET_INFO.input_shape, len(dataset.classes), IMAGENET_INFO.mean, IMAGENET_INFO.std)
    return dataset, info
