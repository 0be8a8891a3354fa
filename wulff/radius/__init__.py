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
