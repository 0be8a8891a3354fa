"""Rebuild a trained smoothed model (network, noise distribution, dataset facts) from its checkpoint."""
from __future__ import annotations

import os

import torch

from wulff.distributions import Distribution

from .data import DatasetInfo
from .models import build_model
from .spec import distribution_from_spec, distribution_spec


def training_meta(model_name: str, info: DatasetInfo, q: Distribution, **extra) -> dict:
    """What a checkpoint records so that :func:`load_trained` can rebuild everything."""
    return {"model": model_name, "dataset": info.name, "input_shape": list(info.input_shape),
            "num_classes": info.num_classes, "mean": list(info.mean), "std": list(info.std),
            "distribution": distribution_spec(q), "sigma": _sigma(q), **extra}


def _sigma(q: Distribution) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(q.sigma)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu"
                 ) -> tuple[torch.nn.Module, Distribution, dict]:
    """(model in eval mode on ``device``, the noise it was trained with, the checkpoint's meta)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path} (train one with `wulff train`)")
    state = torch.load(path, map_location=device, weights_only=False)
    meta = state.get("meta") or {}
    for key in ("model", "input_shape", "num_classes", "distribution"):
        if key not in meta:
            raise ValueError(f"{path} lacks {key!r} in its meta; it was not written by wulff train")
    model = build_model(meta["model"], meta["input_shape"], meta["num_classes"], meta.get("mean"), meta.get("std"))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, distribution_from_spec(meta["distribution"]), meta
