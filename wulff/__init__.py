"""wulff: certified robustness radii for randomized smoothing with any declared density.

Implements "Randomized Smoothing of All Shapes and Sizes" (Yang et al., ICML 2020). Data flows one
way: distributions -> certificate engines (diffmethod, levelset) -> selector -> certify / train -> cli
(docs/design.md). The entry points, in the sympy.stats style::

    wulff.certified_radius(q, rho, adversary)       # numpy in -> numpy out; torch in -> torch out
    wulff.best_certificate(q, adversary).winner(rho)
    wulff.compare("l1", d=3072, sigma=0.5)            # which noise to smooth with (wulff.advisor)
    wulff.load("runs/checkpoint.pt")                   # a trained model, smoothed, ready to certify

Importing ``wulff`` is light: every public name below is loaded on first use (PEP 562), so
``wulff --help`` never pays for torch or sympy.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute None means the module itself. Explicit on purpose:
#: the functions and the modules are listed alike.
_LAZY: dict[str, tuple[str, str | None]] = {
    "distributions": ("wulff.distributions", None),
    "diffmethod": ("wulff.diffmethod", None),
    "levelset": ("wulff.levelset", None),
    "selector": ("wulff.selector", None),
    "certificate": ("wulff.certificate", None),
    "certified_radius": ("wulff.selector", "certified_radius"),
    "best_certificate": ("wulff.selector", "best_certificate"),
    "compare": ("wulff.advisor", "compare"),
    "load": ("wulff.certify.loading", "from_checkpoint"),
    "advisor": ("wulff.advisor", None),
    "certify": ("wulff.certify", None),
    "train": ("wulff.train", None),
    "catalog": ("wulff.catalog", None),
    "errors": ("wulff.errors", None),
}

__all__ = ["certified_radius", "best_certificate", "compare", "load", "distributions", "diffmethod", "levelset",
           "certify", "train", "__version__"]


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'wulff' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *__all__})
