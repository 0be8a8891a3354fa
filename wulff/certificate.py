"""``wulff.certificate`` is :mod:`wulff.radius.certificate` (the radius machinery lives in wulff/radius/): both
paths name one module object (:func:`wulff.radius.keep_old_path`)."""
from wulff.radius import certificate, keep_old_path

keep_old_path(__name__, certificate)
