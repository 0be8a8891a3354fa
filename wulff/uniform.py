"""``wulff.uniform`` is :mod:`wulff.radius.uniform` (the radius machinery lives in wulff/radius/): both
paths name one module object (:func:`wulff.radius.keep_old_path`)."""
from wulff.radius import keep_old_path, uniform

keep_old_path(__name__, uniform)
