"""Datasets, all local (nothing is ever downloaded). Inputs are in [0, 1]; normalization belongs to
the model (:class:`wulff.train.models.Normalize`) so that noise is added before it.

* ``digits``   scikit-learn's 8x8 handwritten digits (shipped with scikit-learn): 1797 images,
  a fixed stratified split of 1347 train / 450 test. The embedded default.
* ``cifar10``  CIFAR-10 from a local folder in its python-pickle layout (``data_batch_1..5``,
  ``test_batch``), as unpacked from ``cifar-10-python.tar.gz``. The batches are pickles, so they are
  read by :class:`RestrictedUnpickler`, which builds numpy arrays, lists, dicts, bytes, str and
  numbers and refuses anything else (a planted batch cannot run code).
* ``imagenet`` an ImageFolder layout ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``.
  The test split is read with Pillow and numpy through the reference codebases' test transform
  (:func:`imagenet_test_transform`), so certification needs no torchvision; training needs it.
"""
from __future__ import annotations

import io
import os
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


#: file endings of images in an ImageNet folder (torchvision's ImageFolder list), compared in lower case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: the reference codebases' test transform: the shorter side resized to this, then a centre crop of
#: :attr:`IMAGENET_INFO` ``input_shape`` (Cohen et al. 2019 and Yang et al. 2020, their ``datasets.py``)
IMAGENET_RESIZE = 256
IMAGENET_HINT = "put ImageNet there as ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG"


def image_folder_samples(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, (image path, class number) pairs) of an ImageFolder layout ``folder/<class>/...``:
    classes numbered in sorted order of their folder names, images in sorted order below each (sub
    folders included), as torchvision's ImageFolder does, so class numbers match models trained there."""
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {folder}: {IMAGENET_HINT}")
    samples = []
    for number, name in enumerate(classes):
        for root, _, files in sorted(os.walk(folder / name, followlinks=True)):
            samples += [(Path(root) / f, number) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not samples:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) below {folder}: {IMAGENET_HINT}")
    return classes, samples


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading ImageNet images needs Pillow: pip install 'wulff[imagenet]' (or pip install "
                        "Pillow)") from None
    return Image


def resize_shorter_side(image, size: int):
    """``image`` (PIL) with its shorter side ``size`` and the aspect ratio kept (the longer side
    truncated, as torchvision's ``Resize(size)`` computes it), bilinear as torchvision's default for
    PIL images; an image already that size is returned as it is."""
    width, height = image.size
    short, long = sorted((width, height))
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    if new_size == (width, height):
        return image
    return image.resize(new_size, _pillow().BILINEAR)


def center_crop(image, size: int):
    """The central ``size`` x ``size`` square of ``image`` (PIL), offsets rounded as torchvision's
    ``CenterCrop`` rounds them (Python's ``round``)."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"center_crop needs an image of at least {size} x {size}; got {width} x {height}")
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def imagenet_test_transform(image) -> torch.Tensor:
    """The reference codebases' ImageNet test transform, with Pillow and numpy: RGB, shorter side
    resized to 256 (bilinear), centre crop 224, pixels scaled to [0, 1], shape (3, 224, 224)."""
    image = center_crop(resize_shorter_side(image.convert("RGB"), IMAGENET_RESIZE), IMAGENET_INFO.input_shape[1])
    pixels = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float().div_(255.0)


class ImageFolderTestSet(Dataset):
    """The images of an ImageFolder layout (:func:`image_folder_samples`) through
    :func:`imagenet_test_transform`, read one at a time with Pillow (no torchvision). An image that
    cannot be decoded is a :class:`~wulff.errors.UserError` naming its file."""

    def __init__(self, folder: str | Path):
        _pillow()
        self.folder = Path(folder)
        self.classes, self.samples = image_folder_samples(self.folder)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image_module = _pillow()
        try:
            with image_module.open(path) as image:
                return imagenet_test_transform(image), label
        except (OSError, ValueError, image_module.DecompressionBombError) as exc:
            raise UserError(f"{path}: not a readable image ({exc})") from None


def _imagenet_info(num_classes: int) -> DatasetInfo:
    return IMAGENET_INFO if num_classes == 1000 else DatasetInfo(
        "imagenet", IMAGENET_INFO.input_shape, num_classes, IMAGENET_INFO.mean, IMAGENET_INFO.std)


def load_imagenet(split: str = "train", root: str | None = None):
    """ImageNet from ``root/train`` and ``root/val`` class folders. The test split (``val``) is read
    with Pillow and numpy (:class:`ImageFolderTestSet`: the reference codebases' resize 256, centre crop
    224), so certification needs no torchvision; training uses torchvision's random crops and flips."""
    if root is None:
        raise FileNotFoundError(f"ImageNet needs --data-dir: {IMAGENET_HINT}")
    folder = Path(root) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"no ImageNet folder {folder}: {IMAGENET_HINT}")
    if split != "train":
        dataset = ImageFolderTestSet(folder)
        return dataset, _imagenet_info(len(dataset.classes))
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise ImportError("training on ImageNet needs torchvision for its random crops (pip install "
                          "torchvision); certifying reads ROOT/val without it") from exc
    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor()])
    dataset = datasets.ImageFolder(str(folder), transform=tf)
    return dataset, _imagenet_info(len(dataset.classes))
