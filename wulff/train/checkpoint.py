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

from .data import CIFAR10_INFO, IMAGENET_INFO, DatasetInfo
from .models import build_model
from .spec import distribution_from_spec, distribution_spec

#: the entries every checkpoint written by :func:`wulff.train.train_smoothed` holds
CHECKPOINT_KEYS = ("model", "meta", "epoch")
#: the input shape of each dataset (digits: scikit-learn's 8x8 images, built in :func:`.data.load_digits`)
DATASET_SHAPES = {"digits": (1, 8, 8), "cifar10": CIFAR10_INFO.input_shape, "imagenet": IMAGENET_INFO.input_shape}
#: the most classes a checkpoint may declare (a head of this size is a few hundred MB at most)
MAX_CLASSES = 100_000


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
    check_state(state, path)
    return state


# -- validation of every field, before anything is built from it -------------------------------------
def _refuse(path, field: str, rule: str, value) -> CheckpointError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CheckpointError(f"{path}: the checkpoint's {field} must be {rule}; got {shown} (a damaged or "
                           "hand-edited checkpoint: retrain it with `wulff train`)")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(path, field: str, value, low: int, high: float = math.inf) -> None:
    if not (_is_int(value) and low <= value <= high):
        rule = f"an integer >= {low}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise _refuse(path, field, rule, value)


def _check_numbers(path, field: str, value, length: int, *, positive: bool) -> None:
    ok = isinstance(value, list) and len(value) == length and all(
        _is_real(v) and math.isfinite(v) and (v > 0 or not positive) for v in value)
    if not ok:
        rule = f"a list of {length} finite number{'s' if length != 1 else ''}" + (" > 0" if positive else "")
        raise _refuse(path, field, rule, value)


def check_meta(meta, path) -> None:
    """Every field of a checkpoint's meta that is present has the type and range :func:`training_meta`
    writes (model and dataset names, the dataset's input shape, 2 .. :data:`MAX_CLASSES` classes, one
    finite mean and one positive std per channel, sigma > 0, the objective's spec); a field that does not
    is a :class:`~wulff.errors.CheckpointError` naming it and the valid range."""
    if not isinstance(meta, dict):
        raise _refuse(path, "meta", "a dict of plain data", meta)
    if "model" in meta and not (isinstance(meta["model"], str) and meta["model"].strip()):
        raise _refuse(path, "meta model", "a model name (e.g. mlp)", meta["model"])
    if "dataset" in meta and meta["dataset"] not in DATASET_SHAPES:
        raise _refuse(path, "meta dataset", f"one of {', '.join(DATASET_SHAPES)}", meta["dataset"])
    shape = meta.get("input_shape")
    if "input_shape" in meta:
        expected = DATASET_SHAPES.get(meta.get("dataset"))
        if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v >= 1 for v in shape)) or \
                (expected is not None and tuple(shape) != tuple(expected)):
            rule = f"the dataset's [{', '.join(map(str, expected))}]" if expected is not None \
                else "3 positive integers [channels, height, width]"
            raise _refuse(path, "meta input_shape", rule, shape)
    if "num_classes" in meta:
        _check_int(path, "meta num_classes", meta["num_classes"], 2, MAX_CLASSES)
    channels = shape[0] if "input_shape" in meta else 1
    for key in ("mean", "std"):
        if key in meta and meta[key] is not None:
            _check_numbers(path, f"meta {key}", meta[key], channels, positive=key == "std")
    sigma = meta.get("sigma")
    if "sigma" in meta and not (_is_real(sigma) and sigma > 0):  # inf: heavy tails (lam then sets the scale)
        raise _refuse(path, "meta sigma", "a number > 0", sigma)
    if "distribution" in meta and not isinstance(meta["distribution"], dict):
        raise _refuse(path, "meta distribution", "a distribution spec (a dict)", meta["distribution"])
    if "objective" in meta:
        _check_objective(meta["objective"], path)


def _check_objective(spec, path) -> None:
    from .objectives import build_objective

    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("params", {}), dict)):
        raise _refuse(path, "meta objective", "{name, params} of an objective", spec)
    try:
        build_objective(spec["name"], spec.get("params"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's meta objective is invalid ({exc})") from None


def check_state(state: dict, path) -> None:
    """Every entry of a checkpoint read by :func:`read_checkpoint`: the weights (a dict of tensors), the
    epoch (an integer >= 0), the meta (:func:`check_meta`), and when present the history (a list of
    records), the config (a dict; its epochs an integer >= 1) and the optimizer state (a dict)."""
    weights = state["model"]
    if not (isinstance(weights, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in weights.items())):
        raise _refuse(path, "model", "a dict of named tensors (the weights)", type(weights).__name__)
    _check_int(path, "epoch", state["epoch"], 0)
    check_meta(state["meta"], path)
    if "history" in state and not (isinstance(state["history"], list)
                                   and all(isinstance(h, dict) for h in state["history"])):
        raise _refuse(path, "history", "a list of per-epoch records", state["history"])
    for key in ("config", "optimizer"):
        if key in state and not isinstance(state[key], dict):
            raise _refuse(path, key, "a dict", type(state[key]).__name__)
    if "epochs" in (state.get("config") or {}):
        _check_int(path, "config epochs", state["config"]["epochs"], 1)


def check_dataset_fit(meta: dict, info: DatasetInfo, path) -> None:
    """The checkpoint's model fits the data it is evaluated on: the same input shape and number of classes
    (a :class:`~wulff.errors.CheckpointError` naming the field otherwise)."""
    for field, own, data in (("input_shape", list(meta.get("input_shape", [])), list(info.input_shape)),
                             ("num_classes", meta.get("num_classes"), info.num_classes)):
        if own != data:
            raise CheckpointError(f"{path}: the checkpoint's meta {field} is {own} but {info.name} has {data}; "
                                  "the model cannot be evaluated on it")


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu"
                 ) -> tuple[torch.nn.Module, Distribution | SplittingNoise, dict]:
    """(model in eval mode on ``device``, the noise it was trained with, the checkpoint's meta); the
    noise is a :class:`~wulff.splitting.SplittingNoise` for a model trained with DSSN."""
    state = read_checkpoint(path, device)
    meta = state.get("meta") or {}
    for key in ("model", "input_shape", "num_classes", "distribution"):
        if key not in meta:
            raise CheckpointError(f"{path} lacks {key!r} in its meta; it was not written by wulff train")
    q = _noise(meta, path)
    model = build_model(meta["model"], meta["input_shape"], meta["num_classes"], meta.get("mean"), meta.get("std"))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit a {meta['model']} model ({first})") from None
    model.to(device).eval()
    return model, q, meta


def _noise(meta: dict, path) -> Distribution | SplittingNoise:
    """The noise of the meta's distribution spec, whose dimension must be that of the input shape."""
    try:
        q = distribution_from_spec(meta["distribution"])
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"{path}: the checkpoint's meta distribution is invalid ({reason})") from None
    d = math.prod(meta["input_shape"])
    if q.d != d:
        raise CheckpointError(f"{path}: the checkpoint's meta distribution has d = {q.d} but its input_shape "
                              f"{meta['input_shape']} has {d} features")
    return q
