"""``wulff.levelset`` is :mod:`wulff.radius.levelset` (the radius machinery lives in wulff/radius/): the
package and each of its submodules (``wulff.levelset.<name>`` is ``wulff.radius.levelset.<name>``) are the
same module objects under both paths, the package keeping its public name, so imports and patches of
either path agree."""
import importlib
import pkgutil
import sys

import wulff.radius.levelset as _package
from wulff.radius.uniform import derive_uniform  # the old path's name, kept for existing code

for _info in pkgutil.iter_modules(_package.__path__):
    sys.modules[f"{__name__}.{_info.name}"] = importlib.import_module(f"{_package.__name__}.{_info.name}")
_package.__name__ = __name__
_package.derive_uniform = derive_uniform
sys.modules[__name__] = _package
