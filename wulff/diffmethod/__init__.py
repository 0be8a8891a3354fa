"""``wulff.diffmethod`` is :mod:`wulff.radius.diffmethod` (the radius machinery lives in wulff/radius/):
the package and each submodule (``wulff.diffmethod.<name>`` is ``wulff.radius.diffmethod.<name>``) are
one module object under both paths (:func:`wulff.radius.keep_old_path`)."""
from wulff.radius import diffmethod, keep_old_path

keep_old_path(__name__, diffmethod)
