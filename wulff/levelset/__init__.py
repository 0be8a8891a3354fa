"""The level set method (Section 4.1, Appendix T): exact Neyman-Pearson radius tables for densities
with spherical level sets against the l2 adversary (Theorem T.1, Algorithms 1 and 2).

:func:`derive` raises NotImplementedError for pairs it does not handle (the best-certificate selector
asks every provider about every adversary). The certificates of uniform noise are geometric, not a
level-set method: they live in :mod:`wulff.uniform` (``derive_uniform`` stays importable from here
for existing code).
"""
from ..uniform import derive_uniform
from .spherical import LevelSetCertificate, certified_tail, derive, spherical_form, table_for

__all__ = ["derive", "derive_uniform", "certified_tail", "LevelSetCertificate", "spherical_form", "table_for"]
