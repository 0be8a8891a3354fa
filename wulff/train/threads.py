"""The CPU thread count that is fastest for a model (the default of ``wulff train`` and ``certify``).

Rule: on a CPU device, a model that costs fewer than :data:`SMALL_MODEL_MACS` multiply-accumulates
per input (every MLP and CNN on digits, an MLP on CIFAR-10) runs fastest on **one** thread: its
per-batch work is too small to amortize thread synchronization. Larger models (ResNet-18 on
CIFAR-10: 556 M per input) use torch's default, one thread per physical core. On a GPU the count
is left alone. Measured on 2 cores, one forward pass of 1000 inputs: digits MLP 5 ms on 1 thread vs
73 ms on 2; digits CNN 85 vs 248 ms; CIFAR-10 MLP 54 vs 115 ms. ``--threads N`` overrides the rule.
"""
from __future__ import annotations

import torch

#: models below this many multiply-accumulates per input run on one CPU thread
SMALL_MODEL_MACS = 10_000_000


def macs_per_input(model: torch.nn.Module, input_shape) -> int:
    """Multiply-accumulates of the Linear and Conv2d layers for one input of ``input_shape`` (one
    forward pass on a zero input, on the model's device)."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *tuple(input_shape), device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def default_threads(model: torch.nn.Module, input_shape, device: torch.device | str = "cpu") -> int | None:
    """1 for a small model on CPU (see the module's rule), else None (leave torch's default)."""
    if torch.device(device).type != "cpu":
        return None
    return 1 if macs_per_input(model, input_shape) < SMALL_MODEL_MACS else None


def apply_threads(threads: int | None, model: torch.nn.Module, input_shape,
                  device: torch.device | str = "cpu") -> int:
    """Set torch's CPU thread count: ``threads`` if given, else :func:`default_threads`. Returns it."""
    chosen = threads or default_threads(model, input_shape, device)
    if chosen:
        torch.set_num_threads(int(chosen))
    return torch.get_num_threads()
