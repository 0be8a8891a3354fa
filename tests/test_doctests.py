"""The Examples in the docstrings of the entry points run (issue 26, section 4): ``wulff.certified_radius``,
``wulff.best_certificate``, ``wulff.compare`` and every family constructor. Each must have examples, and
their outputs are the real values (rounded where floats are shown), never hidden behind an ellipsis, so a
changed radius or scale fails here."""
from __future__ import annotations

import doctest
import importlib

import pytest

from wulff import catalog

#: dotted names of the entry points whose docstrings carry examples (module path, attribute)
ENTRY_POINTS: tuple[tuple[str, str], ...] = (
    ("wulff.selector", "certified_radius"),
    ("wulff.selector", "best_certificate"),
    ("wulff.advisor", "compare"),
    ("wulff.distributions.structures", "IID"),
    ("wulff.distributions.structures", "Radial"),
    ("wulff.distributions.structures", "Uniform"),
    *(("wulff.distributions.families", name) for name in catalog.FAMILY_NAMES),
)


def _doctests(module_name: str, attribute: str) -> list[doctest.DocTest]:
    """The examples of one object's own docstring (not its methods'), run in its module's namespace."""
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=True)
    return finder.find(getattr(module, attribute), f"{module_name}.{attribute}", module=module,
                       globs=vars(module))


@pytest.mark.parametrize("module_name,attribute", ENTRY_POINTS, ids=[f"{m}.{a}" for m, a in ENTRY_POINTS])
def test_entry_point_examples_run(module_name, attribute, monkeypatch, tmp_path):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
    tests = _doctests(module_name, attribute)
    examples = [example for test in tests for example in test.examples]
    assert examples, f"{module_name}.{attribute} has no Examples in its docstring"
    assert not any(example.options.get(doctest.ELLIPSIS) for example in examples), "no ELLIPSIS directive"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
