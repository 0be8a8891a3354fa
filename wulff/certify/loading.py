"""A trained model as a smoothed classifier ready to certify, from Python as from the command line::

    import wulff
    smoothed = wulff.load("runs/gaussian/checkpoint.pt")           # Smoothed, or DerandomizedSmoothed (DSSN)
    test_set, info = wulff.certify.evaluation_data(smoothed)        # the data it was trained for
    x, label = test_set[0]
    smoothed.certify(x, n0=64, n=10_000, alpha=0.001, batch_size=1000)

``wulff certify`` and ``wulff attack`` call the same two functions. A checkpoint is read with
``weights_only=True`` (tensors and plain data: it never runs code).
"""
from __future__ import annotations

import math
import os

import torch

from wulff.distributions import Distribution
from wulff.splitting import SplittingNoise
from wulff.train.checkpoint import check_dataset_fit, load_trained
from wulff.train.data import DatasetInfo, load_dataset

from .classifier import SmoothedClassifier
from .derandomized import smoothed_classifier


def from_checkpoint(path: str | os.PathLike, device: torch.device | str | None = None, *,
                    noise: Distribution | SplittingNoise | None = None, autocast: torch.dtype | None = None,
                    channels_last: bool = False, seed: int | None = None) -> SmoothedClassifier:
    """The smoothed classifier of the checkpoint ``path`` (written by ``wulff train``): its model in eval
    mode on ``device`` (default: the CPU), smoothed by the noise it was trained with, or by ``noise``
    when given (a :class:`~wulff.distributions.Distribution` or DSSN
    :class:`~wulff.splitting.SplittingNoise` with d = the model's input features). The result is a
    :class:`~wulff.certify.Smoothed` (Monte Carlo), or a :class:`~wulff.certify.DerandomizedSmoothed`
    for DSSN noise; its ``meta`` is the checkpoint's training metadata and ``source`` the path.

    ``autocast`` (``torch.bfloat16`` or ``torch.float16``) and ``channels_last`` (the model is moved to
    that memory format too) set up the forward passes; ``seed`` seeds a Monte Carlo classifier's noise.
    A missing, damaged or foreign checkpoint is a :class:`~wulff.errors.CheckpointError` naming it.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    model, trained_noise, meta = load_trained(path, device)
    if noise is not None:
        _check_noise_fits(noise, meta["input_shape"])
    if channels_last:
        model.to(memory_format=torch.channels_last)
    options = {"device": device, "autocast": autocast, "channels_last": channels_last, "seed": seed}
    smoothed = smoothed_classifier(model, trained_noise if noise is None else noise, meta["num_classes"],
                                   **options)
    smoothed.meta = meta
    smoothed.source = os.fspath(path)
    return smoothed


def evaluation_data(smoothed: SmoothedClassifier, split: str = "test",
                    data_dir: str | os.PathLike | None = None) -> tuple[object, DatasetInfo]:
    """(dataset, info): the ``split`` ("train" or "test") of the data set the classifier's checkpoint
    was trained on (``smoothed.meta["dataset"]``; cifar10 and imagenet from the local ``data_dir``),
    checked to fit the model (input shape and number of classes)."""
    if not isinstance(smoothed, SmoothedClassifier) or "dataset" not in smoothed.meta:
        raise ValueError("smoothed must come from wulff.load / wulff.certify.from_checkpoint (its meta names "
                         "the data set it was trained on)")
    dataset, info = load_dataset(smoothed.meta["dataset"], split, data_dir)
    check_dataset_fit(smoothed.meta, info, smoothed.source)
    return dataset, info


def _check_noise_fits(noise, input_shape) -> None:
    """``noise`` is a wulff noise over the model's input features (a TypeError or ValueError otherwise)."""
    if not isinstance(noise, (Distribution, SplittingNoise)):
        raise TypeError(f"noise must be a wulff.distributions.Distribution or a wulff.splitting.SplittingNoise "
                        f"(or None: the checkpoint's own); got {type(noise).__name__}")
    features = math.prod(input_shape)
    if noise.d != features:
        raise ValueError(f"noise must have d = {features}, the model's input features (input_shape "
                         f"{list(input_shape)}); got d = {noise.d}")
