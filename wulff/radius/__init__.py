"""The radius machinery: everything between a distribution and a certified radius, in one folder.

Layers inside, from the bottom up (tests/test_layers.py checks them):

* :mod:`.numeric`: rounding toward zero, checks of rho, device constants, locators;
* :mod:`.kernel`: the :class:`~.kernel.RadiusKernel` contract and the kernels two engines share;
* :mod:`.certificate`: :class:`~.certificate.Certificate` (a kernel plus its declared metadata:
  validation, scale, conversion and rounding once, numpy and torch alike) and the pointwise maximum;
* the engines, none importing another: :mod:`.diffmethod` (Appendix G), :mod:`.levelset`
  (Theorem T.1) and :mod:`.uniform` (Theorems N.3, N.6, S.1);
* :mod:`.selector`: the best certificate of every engine, ``wulff.certified_radius``.

``wulff.certificate``, ``wulff.selector``, ``wulff.uniform``, ``wulff.diffmethod`` and
``wulff.levelset`` name the same modules as before.
"""


def keep_old_path(old: str, module) -> None:
    """Make the old module path ``old`` (e.g. ``wulff.selector``) name ``module`` itself, and for a
    package each of its submodules too: one module object under both paths, keeping its public name,
    so imports and patches through either path agree (never a second copy of a module)."""
    import importlib
    import pkgutil
    import sys

    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        sys.modules[f"{old}.{info.name}"] = importlib.import_module(f"{module.__name__}.{info.name}")
    module.__name__ = old
    sys.modules[old] = module
