"""The level set method (Section 4.1, Appendix T): exact Neyman-Pearson radius tables for densities
with spherical level sets against the l2 adversary (Theorem T.1, Algorithms 1 and 2).

:func:`derive` raises NotImplementedError for pairs it does not handle (the best-certificate selector
asks every provider about every adversary). The certificates of uniform noise are geometric, not a
level-set method: they live in :mod:`wulff.radius.uniform` (``wulff.levelset.derive_uniform``, the
old path, stays importable for existing code; no engine imports another).
"""
from .spherical import LevelSetCertificate, certified_tail, derive, spherical_form, table_for

__all__ = ["derive", "certified_tail", "LevelSetCertificate", "spherical_form", "table_for"]
