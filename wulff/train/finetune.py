"""Fine-tuning: start training from the weights of another checkpoint (``wulff train --init``), as the
reference code of Yang et al. (2020) fine-tunes pre-trained models.

The checkpoint is read with ``weights_only=True`` (:func:`read_checkpoint`: nothing in it runs). Its
weights must fit the model being trained, parameter for parameter, except the head (the last linear
layer): a head with another number of classes keeps the new model's fresh initialisation, said in one
line. The first layer's normalization statistics (:class:`Normalize`) stay those of the data being
trained on.
"""
from __future__ import annotations

import os

from torch import nn

from wulff.errors import CheckpointError

from .checkpoint import read_checkpoint
from .models import Normalize


def head_names(model: nn.Module) -> set[str]:
    """The state-dict names of the model's last linear layer (its classification head)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        return set()
    return {f"{last}.{key}" for key, _ in model.get_submodule(last).named_parameters(recurse=False)}


def normalization_names(model: nn.Module) -> set[str]:
    return {f"{name}.{key}" for name, module in model.named_modules() if isinstance(module, Normalize)
            for key, _ in module.named_buffers(recurse=False)}


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike, *, log=print) -> list[str]:
    """Load the weights of checkpoint ``path`` into ``model`` (in place); returns the names kept from
    the model's own initialisation (a head whose number of classes differs). Weights that do not fit
    otherwise are a :class:`~wulff.errors.CheckpointError` naming them."""
    weights = read_checkpoint(path)["model"]
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"--init {path}: its weights do not fit this model (missing: "
                              f"{', '.join(missing[:4]) or 'none'}; unexpected: "
                              f"{', '.join(unexpected[:4]) or 'none'}); give the same --model as the checkpoint "
                              "was trained with")
    mismatched = sorted(k for k in own if tuple(own[k].shape) != tuple(weights[k].shape))
    keep = normalization_names(model)
    head = head_names(model)
    if set(mismatched) - head - keep:
        bad = sorted(set(mismatched) - head - keep)[0]
        raise CheckpointError(f"--init {path}: {bad} has shape {tuple(weights[bad].shape)} there but "
                              f"{tuple(own[bad].shape)} here; only the head may differ (in its number of classes)")
    fresh = set(mismatched) & head
    model.load_state_dict({k: own[k] if k in fresh or k in keep else weights[k] for k in own})
    if fresh:
        old = weights[sorted(fresh)[0]].shape[0]
        new = own[sorted(fresh)[0]].shape[0]
        log(f"--init {path}: the head ({', '.join(sorted(fresh))}) has {old} classes there and {new} here: "
            "re-initialised; the other weights are loaded")
    return sorted(fresh)

