"""``wulff.certificate`` is :mod:`wulff.radius.certificate` (the radius machinery lives in wulff/radius/): both
paths name one module object, which keeps its public name, so imports and patches of either agree."""
import sys

from wulff.radius import certificate as _module

_module.__name__ = __name__
sys.modules[__name__] = _module
