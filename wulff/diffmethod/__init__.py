"""``wulff.diffmethod`` is :mod:`wulff.radius.diffmethod` (the radius machinery lives in wulff/radius/): the
package and each of its submodules (``wulff.diffmethod.<name>`` is ``wulff.radius.diffmethod.<name>``) are the
same module objects under both paths, the package keeping its public name, so imports and patches of
either path agree."""
import importlib
import pkgutil
import sys

import wulff.radius.diffmethod as _package

for _info in pkgutil.iter_modules(_package.__path__):
    sys.modules[f"{__name__}.{_info.name}"] = importlib.import_module(f"{_package.__name__}.{_info.name}")
_package.__name__ = __name__
sys.modules[__name__] = _package
