"""A light front door: ``wulff --help`` and ``import wulff`` load no heavy package."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sympy", "scipy", "mpmath")


def imported_modules(*args: str) -> set[str]:
    """The top-level packages a fresh ``python -X importtime ARGS`` imports (run from the repository)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "wulff" in names
    return names


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["derive", "--help"], ["certify", "--help"],
                                  ["demo", "--help"], ["distributions", "--help"], ["report", "--help"]])
def test_help_imports_nothing_heavy(argv):
    names = imported_modules("-m", "wulff", *argv)
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_import_wulff_and_wulff_train_import_no_torch():
    names = imported_modules("-c", "import wulff, wulff.train, wulff.catalog, wulff.cli")
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_lazy_attributes_resolve_and_are_listed():
    import wulff
    import wulff.train

    for name in ("distributions", "diffmethod", "levelset", "selector", "certify", "train", "catalog"):
        assert name in dir(wulff)
        assert getattr(wulff, name).__name__ == f"wulff.{name}"
    assert set(wulff.__all__) <= set(dir(wulff))
    assert callable(wulff.best_certificate) and callable(wulff.certified_radius)  # functions, not modules
    assert wulff.distributions.Laplace(3, lam=1.0).name == "Laplace"
    for name in wulff.train.__all__:
        assert name in dir(wulff.train)
        assert getattr(wulff.train, name) is not None
    from wulff.train import DATASETS, MODELS, named_distribution

    assert DATASETS == ("digits", "cifar10", "imagenet") and "mlp" in MODELS
    assert named_distribution("gaussian", 3, sigma=1.0).name == "Gaussian"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        wulff.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        wulff.train.nothing  # noqa: B018


def test_python_m_wulff_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "wulff", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0 and "derive" in done.stdout and "train" in done.stdout


def test_catalog_matches_the_heavy_modules():
    import wulff.certificate
    from wulff.catalog import ADVERSARIES, FAMILY_NAMES
    from wulff.distributions import NamedFamily, registry

    assert ADVERSARIES == wulff.certificate.ADVERSARIES
    assert registry.family_names() == FAMILY_NAMES
    assert all(issubclass(registry.family(n), NamedFamily) for n in FAMILY_NAMES)
