"""``wulff.selector`` is :mod:`wulff.radius.selector` (the radius machinery lives in wulff/radius/): both
paths name one module object (:func:`wulff.radius.keep_old_path`)."""
from wulff.radius import keep_old_path, selector

keep_old_path(__name__, selector)
