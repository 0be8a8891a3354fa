"""Noise-augmented training of base classifiers for randomized smoothing (Appendix D).

* :func:`train_smoothed` with :class:`TrainConfig` — loss -log f(x + delta)_y, SGD momentum 0.9,
  cosine learning rate, weight decay 1e-4, checkpoint per epoch and resume, DDP under torchrun.
* :func:`build_model` — "mlp", "cnn", "resnet18" (32x32), each after a Normalize layer.
* :func:`load_dataset` — "digits" (embedded), "cifar10" and "imagenet" from local folders.
* :func:`load_trained` — rebuild (model, q, meta) from a checkpoint; :func:`read_checkpoint` reads one
  with ``weights_only=True`` (tensors and plain data only: a checkpoint never runs code).

Every name is loaded on first use (PEP 562): importing ``wulff.train`` does not import torch.
"""
from __future__ import annotations

import importlib

#: public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "load_trained": ("wulff.train.checkpoint", "load_trained"),
    "read_checkpoint": ("wulff.train.checkpoint", "read_checkpoint"),
    "training_meta": ("wulff.train.checkpoint", "training_meta"),
    "DATASETS": ("wulff.train.data", "DATASETS"),
    "DatasetInfo": ("wulff.train.data", "DatasetInfo"),
    "load_dataset": ("wulff.train.data", "load_dataset"),
    "DistEnv": ("wulff.train.distributed", "DistEnv"),
    "setup": ("wulff.train.distributed", "setup"),
    "teardown": ("wulff.train.distributed", "teardown"),
    "MLP": ("wulff.train.models", "MLP"),
    "MODELS": ("wulff.train.models", "MODELS"),
    "Normalize": ("wulff.train.models", "Normalize"),
    "ResNet18": ("wulff.train.models", "ResNet18"),
    "SmallCNN": ("wulff.train.models", "SmallCNN"),
    "build_model": ("wulff.train.models", "build_model"),
    "distribution_from_spec": ("wulff.train.spec", "distribution_from_spec"),
    "distribution_spec": ("wulff.train.spec", "distribution_spec"),
    "named_distribution": ("wulff.train.spec", "named_distribution"),
    "named_noise": ("wulff.train.spec", "named_noise"),
    "TrainConfig": ("wulff.train.trainer", "TrainConfig"),
    "cosine_lr": ("wulff.train.trainer", "cosine_lr"),
    "noisy_loss": ("wulff.train.trainer", "noisy_loss"),
    "save_checkpoint": ("wulff.train.trainer", "save_checkpoint"),
    "train_smoothed": ("wulff.train.trainer", "train_smoothed"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'wulff.train' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
