"""A trained model as a smoothed classifier ready to certify, from Python as from the command line::

    import wulff
    smoothed = wulff.load("runs/gaussian/checkpoint.pt")           # Smoothed, or DerandomizedSmoothed (DSSN)
    test_set, info = wulff.certify.evaluation_data(smoothed)        # the data it was trained for
    x, label = test_set[0]
    smoothed.certify(x, n0=64, n=10_000, alpha=0.001, batch_size=1000)

``wulff certify`` and ``wulff attack`` call the same two functions. Besides ``wulff train``'s
checkpoints, :func:`read_model` reads models trained elsewhere (:data:`FORMATS`):

* ``cohen`` / ``rs4a`` -- the checkpoints of Cohen et al. (2019) and of Yang et al. (2020), rebuilt by
  :mod:`wulff.train.zoo`;
* ``state-dict`` -- a weights file for the network that the user's own factory builds (``arch``:
  ``"package.module:factory"``, imported only because the user named it, or a callable);
* ``torchscript`` / ``export`` -- a self-contained ``torch.jit.save`` or ``torch.export.save`` archive,
  loaded only when named (loading one runs what it holds: trust it like code).

Every other file is read with ``torch.load(weights_only=True)`` (tensors and plain data: it never runs
code; docs/security.md says what each format can run). These files record no noise: the noise to
smooth with is required (``noise=``).
"""
from __future__ import annotations

import importlib
import io
import json
import math
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from wulff.distributions import Distribution
from wulff.errors import CheckpointError, ParameterError
from wulff.splitting import SplittingNoise
from wulff.train.checkpoint import CHECKPOINT_KEYS, DATASET_SHAPES, check_dataset_fit, load_trained
from wulff.train.data import CIFAR10_INFO, IMAGENET_INFO, DatasetInfo, load_dataset
from wulff.train.zoo import is_cohen_checkpoint, is_rs4a_state, reference_architecture

from .classifier import SmoothedClassifier
from .derandomized import smoothed_classifier

#: the model formats :func:`read_model` reads ("auto": recognized from the file)
FORMATS = ("auto", "wulff", "cohen", "rs4a", "state-dict", "torchscript", "export")
#: the classes of each data set a model from elsewhere may take (its input shape: ``DATASET_SHAPES``)
DATASET_CLASSES = {"digits": 10, "cifar10": CIFAR10_INFO.num_classes, "imagenet": IMAGENET_INFO.num_classes}


@dataclass
class LoadedModel:
    """A network read from a file: ``model`` (eval mode, on its device), ``meta`` (plain data: ``model``
    (the architecture), ``dataset``, ``input_shape``, ``num_classes``, and for a wulff checkpoint its
    training noise and objective; ``format`` for a model from elsewhere), ``noise`` (the noise it was
    trained with when the file records it, else None) and ``source`` (the path)."""

    model: nn.Module
    meta: dict
    noise: Distribution | SplittingNoise | None
    source: str


def from_checkpoint(path: str | os.PathLike, device: torch.device | str | None = None, *,
                    noise: Distribution | SplittingNoise | Callable[[int], object] | None = None,
                    autocast: torch.dtype | None = None, channels_last: bool = False, seed: int | None = None,
                    format: str = "auto",
                    arch: str | Callable[[], nn.Module] | None = None,
                    dataset: str | None = None) -> SmoothedClassifier:
    """The smoothed classifier of the model file ``path``: its model in eval mode on ``device``
    (default: the CPU), smoothed by the noise it was trained with, or by ``noise`` when given (a
    :class:`~wulff.distributions.Distribution` or DSSN :class:`~wulff.splitting.SplittingNoise` with
    d = the model's input features; or a callable that takes d and returns one, or None). The result
    is a :class:`~wulff.certify.Smoothed` (Monte Carlo), or a
    :class:`~wulff.certify.DerandomizedSmoothed` for DSSN noise; its ``meta`` is the file's
    metadata (:class:`LoadedModel`; a wulff checkpoint's training metadata) and ``source`` the path.

    ``format``, ``arch`` and ``dataset`` read models trained elsewhere (:func:`read_model`); their files
    record no noise, so ``noise`` is then required.
    ``autocast`` (``torch.bfloat16`` or ``torch.float16``) and ``channels_last`` (the model is moved to
    that memory format too) set up the forward passes; ``seed`` seeds a Monte Carlo classifier's noise.
    A missing, damaged or foreign checkpoint is a :class:`~wulff.errors.CheckpointError` naming it.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    loaded = read_model(path, device, format=format, arch=arch, dataset=dataset)
    if callable(noise) and not isinstance(noise, (Distribution, SplittingNoise)):
        noise = noise(math.prod(loaded.meta["input_shape"]))
    return smoothed_from_model(loaded, noise, device=device, autocast=autocast, channels_last=channels_last,
                               seed=seed)


def smoothed_from_model(loaded: LoadedModel, noise: Distribution | SplittingNoise | None = None, *,
                        device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                        channels_last: bool = False, seed: int | None = None) -> SmoothedClassifier:
    """The smoothed classifier of a :class:`LoadedModel` on ``device`` (default: where its weights are):
    smoothed by ``noise``, or by the one it was trained with (:func:`from_checkpoint`)."""
    if noise is None and loaded.noise is None:
        features = math.prod(loaded.meta["input_shape"])
        raise ValueError(f"noise is required for a {loaded.meta['format']} model: {loaded.source} records no "
                         "noise (--noise Gaussian --sigma 0.25 on the command line; in Python e.g. "
                         f"noise=wulff.distributions.Gaussian({features}, sigma=0.25))")
    if noise is not None:
        _check_noise_fits(noise, loaded.meta["input_shape"])
    model = loaded.model
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = torch.device(device) if device is not None else _device_of(model)
    smoothed = smoothed_classifier(model, loaded.noise if noise is None else noise, loaded.meta["num_classes"],
                                   device=device, autocast=autocast, channels_last=channels_last, seed=seed)
    smoothed.meta = loaded.meta
    smoothed.source = loaded.source
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


def _device_of(model: nn.Module) -> torch.device:
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))


# -- reading a model file -----------------------------------------------------------------------------
def read_model(path: str | os.PathLike, device: torch.device | str | None = None, *, format: str = "auto",
               arch: str | Callable[[], nn.Module] | None = None, dataset: str | None = None) -> LoadedModel:
    """The network in the file ``path`` on ``device`` (default: the CPU), in eval mode.

    ``format`` (:data:`FORMATS`; "auto" recognizes it from the file, but never loads an archive) is:
    "wulff" (``wulff train``'s checkpoint); "cohen" (Cohen et al.'s ``{epoch, arch, state_dict,
    optimizer}``); "rs4a" (Yang et al.'s ``model_ckpt.torch``); "state-dict" (weights for ``arch``, a
    zero-argument factory of the network: a callable, or ``"package.module:factory"``, whose module is
    imported -- running its code -- by the caller's choice); "torchscript" or "export" (self-contained
    archives, which run what they hold when loaded: only these two names load them).
    ``dataset`` (digits, cifar10, imagenet) is the data the model takes: required for "state-dict",
    "torchscript" and "export", implied by the others (given, it must agree).

    Every weight must fit (strict loading) and a model from elsewhere must map a batch of the data set's
    input shape to one logit per class: a mismatch is a :class:`~wulff.errors.CheckpointError` naming the
    first differing key or shape.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    path = Path(path)
    fmt = _check_format(format, arch)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model file (`wulff train` writes "
                              f"{path / 'checkpoint.pt'})")
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    fmt, state = _recognize(path, fmt, device)
    if fmt == "wulff":
        return _wulff_model(path, device, dataset)
    dataset = _check_dataset(dataset, fmt)
    if fmt in ("cohen", "rs4a"):
        model, label, dataset = _reference_model(path, state, fmt, dataset)
    elif fmt == "state-dict":
        model, label = _factory_model(path, state, arch, dataset), _factory_label(arch)
    else:
        model, label = (_torchscript_model if fmt == "torchscript" else _exported_model)(path, device), fmt
    model.to(device).eval()
    meta = _foreign_meta(label, dataset, fmt)
    check_forward(model, meta, path)
    return LoadedModel(model, meta, None, os.fspath(path))


def _check_format(fmt, arch) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if arch is not None and fmt not in ("auto", "state-dict"):
        raise ValueError(f"arch builds the network of a state-dict file; format {fmt} takes no arch "
                         "(drop it, or use format state-dict)")
    if fmt == "state-dict" and arch is None:
        raise ValueError("format state-dict needs arch: the factory of the network, e.g. "
                         "--arch mypackage.models:build (your own Python code)")
    return "state-dict" if arch is not None else fmt


def _recognize(path: Path, fmt: str, device: torch.device) -> tuple[str, object]:
    """(format, the file's contents read as plain data, or None for archives and wulff checkpoints)."""
    archive = _archive_kind(path)
    if fmt == "auto" and archive:
        raise CheckpointError(f"{path} is a {archive} archive: loading it runs what it holds (docs/security.md), "
                              f"which wulff does only when asked; if you trust its source, add --format {archive}")
    if fmt in ("torchscript", "export"):
        if archive != fmt:
            raise CheckpointError(f"{path} is not a {fmt} archive (it is {archive or 'no archive'}); see --format")
        return archive, None
    if archive:
        raise CheckpointError(f"{path} is a {archive} archive, not a {fmt} file (read it with --format {archive})")
    if fmt == "wulff":
        return fmt, None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        if fmt == "auto":
            return "wulff", None  # wulff's reader words the refusal
        raise CheckpointError(f"{path} holds objects other than tensors and plain data, which wulff refuses to "
                              "load (nothing in it was run)") from None
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail inside torch's unpickler in many ways
        if fmt == "auto":
            return "wulff", None
        raise CheckpointError(f"{path} is not a {fmt} file ({_first_line(exc)})") from None
    return (_layout(state, path) if fmt == "auto" else fmt), state


def _archive_kind(path: Path) -> str | None:
    """"torchscript" or "export" for a zip archive written by torch.jit.save / torch.export.save (told
    apart by their members, never by running them), else None."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    tails = {name.split("/", 1)[-1] for name in names}
    if "archive_format" in tails or "models/model.json" in tails:
        return "export"
    if "constants.pkl" in tails and any(tail.startswith("code/") for tail in tails):
        return "torchscript"
    return None


def _layout(state, path: Path) -> str:
    """The format of a file read as plain data, from its keys."""
    if isinstance(state, Mapping) and all(k in state for k in CHECKPOINT_KEYS):
        return "wulff"
    if is_cohen_checkpoint(state):
        return "cohen"
    if is_rs4a_state(state):
        return "rs4a"
    if isinstance(state, Mapping) and _weights_in(state) is not None:
        raise CheckpointError(f"{path} is not a wulff checkpoint but a bare state_dict of an unknown network: "
                              "name the network with --arch package.module:factory (your own code)")
    return "wulff"  # wulff's reader words the refusal


def _wulff_model(path: Path, device: torch.device, dataset: str | None) -> LoadedModel:
    model, noise, meta = load_trained(path, device)
    if dataset is not None and dataset != meta.get("dataset"):
        raise CheckpointError(f"{path} was trained on {meta.get('dataset')}; --dataset {dataset} does not fit it "
                              "(drop --dataset)")
    return LoadedModel(model, meta, noise, os.fspath(path))


def _check_dataset(dataset: str | None, fmt: str) -> str | None:
    if dataset is not None and dataset not in DATASET_CLASSES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_CLASSES)}; got {dataset!r}")
    if dataset is None and fmt in ("state-dict", "torchscript", "export"):
        raise ValueError(f"a {fmt} model needs --dataset ({', '.join(DATASET_CLASSES)}): the data it takes")
    return dataset


def _reference_model(path: Path, state, fmt: str, dataset: str | None) -> tuple[nn.Module, str, str]:
    """(model with the file's weights, its label, its data set) of a Cohen et al. or rs4a file."""
    try:
        architecture, weights = reference_architecture(state, fmt)
    except ValueError as exc:
        raise CheckpointError(f"{path} {exc}") from None
    if dataset is not None and dataset != architecture.dataset:
        raise CheckpointError(f"{path} is a {architecture.label}, a model of {architecture.dataset}; --dataset "
                              f"{dataset} does not fit it (drop --dataset)")
    model = architecture.build(DATASET_CLASSES[architecture.dataset])
    load_weights(model, weights, path, architecture.label)
    return model, architecture.label, architecture.dataset


def _foreign_meta(label: str, dataset: str, fmt: str) -> dict:
    """The meta of a model from elsewhere, in the shape of a wulff checkpoint's (plain data); its training
    is not recorded."""
    return {"model": label, "dataset": dataset, "input_shape": list(DATASET_SHAPES[dataset]),
            "num_classes": DATASET_CLASSES[dataset], "format": fmt,
            "objective": {"name": "not recorded", "params": {}}}


# -- weights and shapes --------------------------------------------------------------------------------
def _weights_in(state) -> Mapping | None:
    """The state_dict in a file read as plain data: the file itself when it maps names to tensors, else
    its ``state_dict`` or ``model`` entry when that does (the usual ways of saving one)."""
    for candidate in (state, *(state.get(k) for k in ("state_dict", "model") if isinstance(state, Mapping))):
        if isinstance(candidate, Mapping) and candidate and all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in candidate.items()):
            return candidate
    return None


def load_weights(model: nn.Module, weights, path, what: str) -> None:
    """``weights`` into ``model`` with ``strict=True``, after naming the first mismatch in one line: a
    key the model has and the file lacks, a key the file has and the model lacks, or a tensor whose shape
    differs (e.g. a head for another number of classes)."""
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: its weights must be a dict of named tensors (a state_dict) for a {what}")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    for keys, how in ((missing, "lacks the key {} of a {what}"), (unexpected, "has the key {}, which a {what} "
                                                                             "does not")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise CheckpointError(f"{path} {how.format(keys[0], what=what)}{more}: the weights do not fit")
    for key, tensor in own.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: {key} has shape {list(weights[key].shape)} in the file but a {what} "
                                  f"needs {list(tensor.shape)}")
    model.load_state_dict(weights, strict=True)


def check_forward(model: nn.Module, meta: dict, path) -> None:
    """A batch of 2 zero inputs of the data set's shape gives logits of shape (2, num_classes); a model
    that fails on it, or answers another shape, is a one-line CheckpointError naming both shapes."""
    shape, classes = [2, *meta["input_shape"]], meta["num_classes"]
    try:
        with torch.inference_mode():
            logits = model(torch.zeros(shape, device=_device_of(model)))
    except Exception as exc:  # noqa: BLE001 - a network fails on a wrong shape in as many ways as it has layers
        raise CheckpointError(f"{path}: the model does not take {meta['dataset']} inputs of shape {shape} "
                              f"({_first_line(exc)})") from None
    got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if got != [2, classes]:
        raise CheckpointError(f"{path}: the model maps inputs of shape {shape} to {got}; {meta['dataset']} "
                              f"needs logits of shape [2, {classes}] (one per class)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


# -- the user's own network ------------------------------------------------------------------------------
def import_factory(spec: str) -> Callable[[], nn.Module]:
    """The callable that ``"package.module:factory"`` names (``factory`` may be dotted: ``Class.build``),
    importing that module -- the user's own code, run because the user named it."""
    module_name, sep, attribute = str(spec).partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--arch must look like package.module:factory; got {spec!r}")
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may fail in any way; one line says how
        raise ImportError(f"--arch {spec}: cannot import {module_name} ({type(exc).__name__}: "
                          f"{_first_line(exc)})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--arch {spec}: {module_name} has no {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise ParameterError(f"--arch {spec}: {attribute} is not callable (it must build the network)")
    return target


def _factory_label(arch) -> str:
    return str(arch) if isinstance(arch, str) else f"{getattr(arch, '__module__', '?')}:" \
                                                   f"{getattr(arch, '__qualname__', type(arch).__name__)}"


def _factory_model(path: Path, state, arch, dataset: str) -> nn.Module:
    factory = import_factory(arch) if isinstance(arch, str) else arch
    if not callable(factory):
        raise ParameterError(f"arch must be 'package.module:factory' or a callable; got {type(arch).__name__}")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory may fail in any way; one line says how
        raise ValueError(f"arch {_factory_label(arch)}: building the network failed ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ParameterError(f"arch {_factory_label(arch)} built a {type(model).__name__}, not a torch.nn.Module")
    weights = _weights_in(state)
    if weights is None:
        raise CheckpointError(f"{path} holds no state_dict (a dict of named tensors, or one under 'state_dict' "
                              "or 'model')")
    load_weights(model, weights, path, _factory_label(arch))
    return model


# -- self-contained archives -------------------------------------------------------------------------------
def _torchscript_model(path: Path, device: torch.device) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails inside torch in many ways
        raise CheckpointError(f"{path} is not a readable TorchScript archive ({_first_line(exc)})") from None


class ExportedModel(nn.Module):
    """The module of a ``torch.export`` program (exported in eval mode, as this runs it), callable on any
    batch size: a program exported for batches of exactly ``batch`` inputs gets chunks of that size, the
    last one padded with copies of its first input (their outputs dropped). Switching train / eval mode
    does not reach the program (it is fixed at export)."""

    def __init__(self, program: nn.Module, batch: int | None):
        super().__init__()
        self.program = program
        self.batch = batch

    def train(self, mode: bool = True) -> ExportedModel:
        self.training = bool(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or len(x) == self.batch:
            return self.program(x)
        outputs = []
        for chunk in torch.split(x, self.batch):
            rows = len(chunk)
            if rows < self.batch:
                chunk = torch.cat([chunk, chunk[:1].expand(self.batch - rows, *chunk.shape[1:])])
            outputs.append(self.program(chunk)[:rows])
        return torch.cat(outputs)


def check_export_archive(path: Path) -> None:
    """Refuse a torch.export archive that torch would unpickle without restriction (weights or constants
    stored as pickles, custom or opaque objects, sample inputs that are not tensors and plain data) or
    that carries compiled code (AOTInductor): a CheckpointError naming the member. A defence in depth, not
    a sandbox: the archive is still trusted like code (docs/security.md)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            tail = name.split("/", 1)[-1]
            if tail.endswith(("weights_config.json", "constants_config.json")):
                for key, entry in _json_config(archive, name).items():
                    stored = str(entry.get("path_name", "")) if isinstance(entry, Mapping) else ""
                    if not isinstance(entry, Mapping) or entry.get("use_pickle") is not False or \
                            not stored.startswith(("weight_", "tensor_")):
                        raise CheckpointError(f"{path}: its entry {key!r} is stored as a pickled object, which "
                                              "torch.export would unpickle without restriction; wulff refuses it")
            elif tail.startswith("data/sample_inputs/"):
                try:
                    with warnings.catch_warnings():  # torch's notes on the refused bytes: the error says it
                        warnings.simplefilter("ignore")
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:  # noqa: BLE001 - torch would fall back to an unrestricted unpickler here
                    raise CheckpointError(f"{path}: its member {name} is not tensors and plain data (torch.export "
                                          "would unpickle it without restriction); wulff refuses it") from None
            elif tail.startswith("data/aotinductor/") or tail.endswith((".so", ".dll", ".dylib")):
                raise CheckpointError(f"{path}: its member {name} is compiled code; wulff refuses it")


def _json_config(archive: zipfile.ZipFile, name: str) -> dict:
    try:
        config = json.loads(archive.read(name)).get("config", {})
    except (ValueError, AttributeError):
        config = None
    return config if isinstance(config, dict) else {name: None}


def _exported_model(path: Path, device: torch.device) -> nn.Module:
    check_export_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails inside torch in many ways
        raise CheckpointError(f"{path} is not a readable torch.export archive ({_first_line(exc)})") from None
    names = program.graph_signature.user_inputs
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in names]
    if len(inputs) != 1:
        raise CheckpointError(f"{path}: the exported program takes {len(inputs)} inputs; wulff feeds it one "
                              "batch of images")
    batch = inputs[0].meta["val"].shape[0]
    return ExportedModel(program.module().to(device), batch if isinstance(batch, int) else None)
