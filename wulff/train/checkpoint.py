"""Checkpoints: tensors plus plain data only, read with ``torch.load(weights_only=True)`` so that a
file can never run code; and the rebuilding of a trained smoothed model (network, noise, dataset facts)."""
from __future__ import annotations

import math
import numbers
import os
import pickle
from pathlib import Path

import torch

from wulff.distributions import Distribution
from wulff.errors import CheckpointError
from wulff.splitting import SplittingNoise

from .data import DatasetInfo
from .models import build_model
from .spec import distribution_from_spec, distribution_spec

#: the entries every checkpoint written by :func:`wulff.train.train_smoothed` holds
CHECKPOINT_KEYS = ("model", "meta", "epoch")


def plain(value):
    """``value`` as plain data (dict with str keys, list, str, bool, int, float, None), the only kinds a
    checkpoint's meta may hold; numbers of other types (numpy, sympy) become int or float."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"checkpoint meta must be plain data; got {type(value).__name__} {value!r}") from None
    return int(as_float) if as_float.is_integer() and not math.isinf(as_float) else as_float


def training_meta(model_name: str, info: DatasetInfo, q: Distribution | SplittingNoise, **extra) -> dict:
    """What a checkpoint records so that :func:`load_trained` can rebuild everything (plain data)."""
    return plain({"model": model_name, "dataset": info.name, "input_shape": list(info.input_shape),
                  "num_classes": info.num_classes, "mean": list(info.mean), "std": list(info.std),
                  "distribution": distribution_spec(q), "sigma": _sigma(q), **extra})


def _sigma(q: Distribution) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(q.sigma)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """The state dict saved by :func:`wulff.train.train_smoothed`, loaded with ``weights_only=True``
    (tensors and plain data only: nothing in the file is ever executed).

    Raises FileNotFoundError for a missing file and :class:`~wulff.errors.CheckpointError` for
    anything that is not a wulff checkpoint (a folder, an empty, truncated or foreign file, a pickle
    of arbitrary objects)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (`wulff train` writes "
                              f"{path / 'checkpoint.pt'})")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (train one with `wulff train`)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a wulff checkpoint: it holds objects other than tensors and "
                              "plain data, which wulff refuses to load (nothing in it was run)") from None
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail inside torch's unpickler in many ways
        reason = (str(exc).strip().splitlines() or ["the file is empty"])[0][:120]
        raise CheckpointError(f"{path} is not a wulff checkpoint (empty, truncated or another format: "
                              f"{reason})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a wulff checkpoint (it lacks {', '.join(missing)}); "
                              "write one with `wulff train`")
    return state


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu"
                 ) -> tuple[torch.nn.Module, Distribution | SplittingNoise, dict]:
    """(model in eval mode on ``device``, the noise it was trained with, the checkpoint's meta); the
    noise is a :class:`~wulff.splitting.SplittingNoise` for a model trained with DSSN."""
    state = read_checkpoint(path, device)
    meta = state.get("meta") or {}
    for key in ("model", "input_shape", "num_classes", "distribution"):
        if key not in meta:
            raise CheckpointError(f"{path} lacks {key!r} in its meta; it was not written by wulff train")
    model = build_model(meta["model"], meta["input_shape"], meta["num_classes"], meta.get("mean"), meta.get("std"))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit a {meta['model']} model ({first})") from None
    model.to(device).eval()
    return model, distribution_from_spec(meta["distribution"]), meta
