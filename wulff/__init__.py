"""wulff: certified robustness radii for randomized smoothing with any declared density.

Implements "Randomized Smoothing of All Shapes and Sizes" (Yang et al., ICML 2020). Data flows one
way: distributions -> diffmethod / levelset (certificates) -> best_certificate -> certify / train.
``wulff.certify`` and ``wulff.train`` (torch models) are imported on demand.
"""
from . import best_certificate, diffmethod, distributions, levelset

__version__ = "0.1.0"
__all__ = ["distributions", "diffmethod", "levelset", "best_certificate", "__version__"]
