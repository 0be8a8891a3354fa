"""Monte Carlo certification of smoothed classifiers (Cohen et al., 2019) with any certificate the
library derives (Yang et al., 2020, Section 6).

* :class:`SmoothedClassifier` — the interface both smoothed classifiers implement (one voting loop,
  the hooks :func:`certify_dataset` calls; :mod:`wulff.certify.classifier`).
* :class:`Smoothed` — ``predict`` and ``certify`` for one input; radii against l1, l2 and linf from
  one sampling pass, via the best certificate (:mod:`wulff.selector`); ``certify_adaptive`` stops
  as soon as a sequential test valid at every look has decided (:mod:`wulff.certify.adaptive`).
* :class:`DerandomizedSmoothed` — DSSN (Levine & Feizi, 2021): exact l1 certificates for splitting
  noise on quantized inputs from 2 lam Q forward passes (:mod:`wulff.certify.derandomized`);
  :func:`smoothed_classifier` picks it or :class:`Smoothed` from the noise.
* :func:`from_checkpoint` (also ``wulff.load``) — a trained checkpoint as a smoothed classifier ready
  to certify; :func:`evaluation_data` — the data set it was trained for.
* :func:`certify_dataset` — every k-th input of a dataset into a resumable, shardable result file;
  :func:`merge_results` joins shard files.
* :func:`certified_accuracy`, :func:`upper_envelopes`, :func:`markdown_table`, :func:`plot_curves` —
  the analysis of Section 6 (Fig. 2, Table 1).
"""
from .analysis import (
    Curve,
    certified_accuracy,
    markdown_table,
    plot_curves,
    radius_grid,
    upper_envelopes,
)
from .classifier import SmoothedClassifier
from .dataset import certify_dataset, shard_indices
from .derandomized import DerandomizedSmoothed, dssn_certification, smoothed_classifier
from .loading import evaluation_data, from_checkpoint
from .results import Results, ResultWriter, merge_results, read_results, shard_path
from .smoothed import ABSTAIN, Certification, Smoothed
from .stats import clopper_pearson_lower, two_class_test_passes

__all__ = [
    "ABSTAIN", "Certification", "Smoothed", "certify_dataset", "shard_indices", "Results",
    "ResultWriter", "merge_results", "read_results", "shard_path", "Curve", "certified_accuracy",
    "markdown_table", "plot_curves", "radius_grid", "upper_envelopes", "clopper_pearson_lower",
    "two_class_test_passes", "DerandomizedSmoothed", "dssn_certification", "smoothed_classifier",
    "SmoothedClassifier", "evaluation_data", "from_checkpoint",
]
