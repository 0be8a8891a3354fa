"""wulff: certified robustness radii for randomized smoothing with any declared density.

Implements "Randomized Smoothing of All Shapes and Sizes" (Yang et al., ICML 2020). Data flows one
way: distributions -> diffmethod / levelset (certificates) -> best_certificate -> certify / train.
"""
from . import best_certificate, distributions

__version__ = "0.1.0"
__all__ = ["distributions", "best_certificate", "__version__"]
