"""wulff: certified robustness radii for randomized smoothing with any declared density.

Implements "Randomized Smoothing of All Shapes and Sizes" (Yang et al., ICML 2020). Data flows one
way: distributions -> diffmethod / levelset (certificates) -> best_certificate -> certify / train.

Importing ``wulff`` is light: every public name below is loaded on first use (PEP 562), so
``wulff --help`` never pays for torch or sympy.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute None means the module itself. Explicit on purpose:
#: a name that is also a submodule (best_certificate) must resolve to what this table says.
_LAZY: dict[str, tuple[str, str | None]] = {
    "distributions": ("wulff.distributions", None),
    "diffmethod": ("wulff.diffmethod", None),
    "levelset": ("wulff.levelset", None),
    "best_certificate": ("wulff.best_certificate", None),
    "certify": ("wulff.certify", None),
    "train": ("wulff.train", None),
    "catalog": ("wulff.catalog", None),
    "errors": ("wulff.errors", None),
}

__all__ = ["distributions", "diffmethod", "levelset", "best_certificate", "__version__"]


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
