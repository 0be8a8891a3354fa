"""The level set method (Section 4.1, Appendix T) and the geometric certificates of uniform noise.

* :func:`derive`: exact Neyman-Pearson radius tables for densities with spherical level sets against
  the l2 adversary (Theorem T.1, Algorithms 1 and 2);
* :func:`derive_uniform`: the uniform cube against l1 (Theorem N.3) and linf (Theorem N.6), the
  uniform l2 ball against l2 (Theorem S.1).

Both raise NotImplementedError for pairs they do not handle (the best-certificate selector asks every
provider about every adversary).
"""
from .spherical import LevelSetCertificate, certified_tail, derive, spherical_form, table_for
from .uniform import derive_uniform

__all__ = ["derive", "derive_uniform", "certified_tail", "LevelSetCertificate", "spherical_form", "table_for"]
