"""``wulff.levelset`` is :mod:`wulff.radius.levelset` (the radius machinery lives in wulff/radius/):
the package and each submodule (``wulff.levelset.<name>`` is ``wulff.radius.levelset.<name>``) are one
module object under both paths (:func:`wulff.radius.keep_old_path`). ``derive_uniform``, the old
path's name for the uniform-noise theorems (wulff.uniform), is kept for existing code."""
from wulff.radius import keep_old_path, levelset
from wulff.radius.uniform import derive_uniform

levelset.derive_uniform = derive_uniform
keep_old_path(__name__, levelset)
