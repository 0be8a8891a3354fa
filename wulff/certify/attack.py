"""Projected gradient ascent (PGD) on the soft smoothed classifier (Salman et al., 2019, Section 3):

    G(x)_c = E_delta softmax(f(x + delta))_c,   estimated by the mean over m noise draws,

maximizing -log G(x')_y over ||x' - x||_p <= eps for p in {1, 2, inf} (l1 with the sparse step of
the reference code of Yang et al., 2020; the projections of Duchi et al., 2008 for l1).

The attack only shows that a radius is *not* larger than some value: it finds perturbations, it
certifies nothing. Its use beside certification is an empirical robust accuracy and a soundness
alarm (:mod:`wulff.certify.attack_dataset`). Training needs the same ascent (SmoothAdv), so the code
lives one layer down, in :mod:`wulff.smoothing`; this module is its name on the certification side.
"""
from __future__ import annotations

from wulff.smoothing import (
    ascent_direction,
    draw_noise,
    full_precision,
    noisy_logits,
    pgd_smoothed,
    project,
    soft_log_probs,
)

__all__ = ["ascent_direction", "draw_noise", "full_precision", "noisy_logits", "pgd_smoothed", "project",
           "soft_log_probs"]
