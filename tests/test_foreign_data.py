"""An ImageNet-style folder read without torchvision (issue 27, item 4): Pillow and numpy, the reference
codebases' test transform (shorter side resized to 256, centre crop 224, [0, 1] scaling) and their class
order (sorted folder names), so ``wulff certify`` runs on ImageNet where torchvision does not load."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from toys import run_cli

import wulff.distributions as D
from wulff.errors import UserError
from wulff.train import load_dataset
from wulff.train.checkpoint import training_meta
from wulff.train.data import IMAGENET_INFO, DatasetInfo
from wulff.train.models import build_model
from wulff.train.trainer import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: (class folder, file name, width, height, format): created out of order, odd sizes, one image
#: smaller than the crop (it is enlarged), one in a sub folder, and a file that is no image
IMAGES = [("n02", "b.JPEG", 300, 260, "JPEG"), ("n02", "a.png", 257, 401, "PNG"),
          ("n01", "z.JPEG", 640, 480, "JPEG"), ("n01", "sub/y.bmp", 100, 50, "BMP"),
          ("n03", "x.PNG", 256, 256, "PNG"), ("n03", "w.jpeg", 480, 640, "JPEG")]


def _stripe_image(width: int, height: int) -> Image.Image:
    """Mid grey with a white vertical band over the middle fifth of the width and a black horizontal
    band over the middle fifth of the height: where they land after resize and crop is predictable."""
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    pixels[:, 2 * width // 5: 3 * width // 5] = 255
    pixels[2 * height // 5: 3 * height // 5, :] = 0
    return Image.fromarray(pixels)


@pytest.fixture
def fake_imagenet(tmp_path):
    """ROOT/val/<class>/... with the images of IMAGES; returns ROOT."""
    for folder, name, width, height, kind in IMAGES:
        path = tmp_path / "val" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _stripe_image(width, height).save(path, format=kind, **({"quality": 95} if kind == "JPEG" else {}))
    (tmp_path / "val" / "n01" / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def no_torchvision(monkeypatch):
    """torchvision made unimportable, as on machines where its wheel does not load."""
    monkeypatch.setitem(sys.modules, "torchvision", None)


def _band_in_crop(side: int, other: int) -> tuple[float, float]:
    """Where the middle fifth of an image side of ``side`` pixels (the other side ``other``) lands in the
    224 crop, from the transform's definition: the shorter side becomes 256 and the longer one
    int(256 long / short), then the crop's offset is round((resized - 224) / 2)."""
    short = min(side, other)
    resized = 256 if side == short else int(256 * side / short)
    offset = round((resized - 224) / 2)
    return (2 * side // 5) * resized / side - offset, (3 * side // 5) * resized / side - offset


def test_imagenet_test_split_reads_without_torchvision_in_sorted_class_order(fake_imagenet, no_torchvision):
    test_set, info = load_dataset("imagenet", "test", str(fake_imagenet))
    assert info == DatasetInfo("imagenet", (3, 224, 224), 3, IMAGENET_INFO.mean, IMAGENET_INFO.std)
    assert len(test_set) == 6
    labels = [int(test_set[i][1]) for i in range(len(test_set))]
    assert labels == [0, 0, 1, 1, 2, 2]  # n01, n01, n02, n02, n03, n03: sorted folder names
    for i in range(len(test_set)):
        x, _ = test_set[i]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("folder, name, width, height", [(f, n, w, h) for f, n, w, h, _ in IMAGES])
def test_imagenet_images_go_through_resize_256_and_centre_crop_224(fake_imagenet, no_torchvision, folder,
                                                                   name, width, height):
    test_set, _ = load_dataset("imagenet", "test", str(fake_imagenet))
    position = [str(p.relative_to(fake_imagenet / "val")) for p, _ in test_set.samples].index(f"{folder}/{name}")
    x, _ = test_set[position]
    white = (x > 0.9).all(dim=0).any(dim=0).numpy()  # columns holding white pixels (the vertical band)
    black = (x < 0.1).all(dim=0).any(dim=1).numpy()  # rows holding black pixels (the horizontal band)
    for found, side, other in ((white, width, height), (black, height, width)):
        first, last = _band_in_crop(side, other)
        band = np.flatnonzero(found)
        assert len(band) and abs(band[0] - first) <= 3 and abs(band[-1] + 1 - last) <= 3, (side, band, first, last)


def test_imagenet_matches_torchvision_transform_when_torchvision_loads(fake_imagenet):
    transforms = pytest.importorskip("torchvision.transforms")  # optional: compares only where it loads
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    test_set, _ = load_dataset("imagenet", "test", str(fake_imagenet))
    for i, (path, _) in enumerate(test_set.samples):
        with Image.open(path) as image:
            assert torch.equal(test_set[i][0], reference(image.convert("RGB")))


def test_imagenet_errors_name_the_problem(tmp_path, no_torchvision, monkeypatch):
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_dataset("imagenet", "test", str(tmp_path))
    (tmp_path / "val" / "n01").mkdir()
    (tmp_path / "val" / "n01" / "broken.JPEG").write_bytes(b"not a jpeg")
    test_set, _ = load_dataset("imagenet", "test", str(tmp_path))
    with pytest.raises(UserError, match=r"broken\.JPEG: not a readable image"):
        test_set[0]
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UserError, match=r"needs Pillow: pip install 'wulff\[imagenet\]'"):
        load_dataset("imagenet", "test", str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(ImportError, match="training on ImageNet needs torchvision"):
        load_dataset("imagenet", "train", str(tmp_path))


def test_wulff_certify_runs_on_an_imagenet_folder_without_torchvision(fake_imagenet, no_torchvision, tmp_path,
                                                                     capsys):
    info = DatasetInfo("imagenet", (3, 224, 224), 3, IMAGENET_INFO.mean, IMAGENET_INFO.std)
    q = D.Gaussian(3 * 224 * 224, sigma=0.25)
    torch.manual_seed(0)
    model = build_model("cnn", info.input_shape, info.num_classes, info.mean, info.std)
    checkpoint = tmp_path / "checkpoint.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "epoch": 0, "meta": training_meta("cnn", info, q)})
    out = tmp_path / "certify.tsv"
    code, stdout, err = run_cli(capsys, "certify", checkpoint, "--out", out, "--data-dir", fake_imagenet,
                                "--skip", "3", "--n0", "1", "--n", "2", "--batch-size", "3", "--no-progress",
                                "--adversaries", "l2")
    assert code == 0, err
    from wulff.certify import read_results

    results = read_results(out)
    assert results.columns["index"].tolist() == [0, 3] and results.columns["label"].tolist() == [0, 1]
