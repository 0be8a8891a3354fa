"""Noise-augmented training of base classifiers for randomized smoothing (Appendix D).

* :func:`train_smoothed` with :class:`TrainConfig` — loss -log f(x + delta)_y, SGD momentum 0.9,
  cosine learning rate, weight decay 1e-4, checkpoint per epoch and resume, DDP under torchrun.
* :func:`build_model` — "mlp", "cnn", "resnet18" (32x32), each after a Normalize layer.
* :func:`load_dataset` — "digits" (embedded), "cifar10" and "imagenet" from local folders.
* :func:`load_trained` — rebuild (model, q, meta) from a checkpoint; :func:`read_checkpoint` reads one
  with ``weights_only=True`` (tensors and plain data only: a checkpoint never runs code).
"""
from .checkpoint import load_trained, read_checkpoint, training_meta
from .data import DATASETS, DatasetInfo, load_dataset
from .distributed import DistEnv, setup, teardown
from .models import MLP, MODELS, Normalize, ResNet18, SmallCNN, build_model
from .spec import distribution_from_spec, distribution_spec, named_distribution, parse_params
from .trainer import TrainConfig, cosine_lr, noisy_loss, save_checkpoint, train_smoothed

__all__ = [
    "load_trained", "read_checkpoint", "training_meta", "cosine_lr", "DATASETS", "DatasetInfo", "load_dataset",
    "DistEnv", "setup",
    "teardown", "MLP", "MODELS", "Normalize", "ResNet18", "SmallCNN", "build_model", "distribution_from_spec",
    "distribution_spec", "named_distribution", "parse_params", "TrainConfig", "noisy_loss", "save_checkpoint",
    "train_smoothed",
]
