"""The project explains itself: docs/design.md maps every package and module, and no file cites the
private working note the design grew from (its name is built below so that this file does not)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
FORBIDDEN = "DESIGN" + ".md"  # case matters: docs/design.md is the public map
SCANNED = ("wulff", "tests", "examples", "benchmarks", "docs", "README.md")


def _text_files():
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            paths = [top]
        else:
            paths = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # a binary file cites nothing
                continue


def test_no_file_cites_the_private_note():
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path, text in _text_files()
                 for n, line in enumerate(text.splitlines(), 1) if FORBIDDEN in line]
    assert not offenders, f"cite the paper or docs/design.md instead: {offenders}"


def test_design_doc_exists():
    assert DESIGN.is_file()


SUBPACKAGES = sorted(p.name for p in (ROOT / "wulff").iterdir() if (p / "__init__.py").is_file())


def test_the_subpackages_are_the_documented_ones():
    assert {"distributions", "diffmethod", "levelset", "certify", "train", "cli"} <= set(SUBPACKAGES)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_design_doc_names_every_subpackage(package):
    assert f"wulff/{package}/" in DESIGN.read_text(encoding="utf-8")


MODULES = sorted(p.relative_to(ROOT / "wulff").as_posix() for p in (ROOT / "wulff").rglob("*.py")
                 if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts)


@pytest.mark.parametrize("module", MODULES)
def test_design_doc_names_every_module(module):
    text = DESIGN.read_text(encoding="utf-8")
    name = Path(module).name
    if module.startswith("cli/cmd_"):  # the subcommands are named through the pattern cmd_<name>.py
        assert "cmd_<name>.py" in text and name[len("cmd_"):-len(".py")] in text, module
    else:
        assert f"{name}`" in text, module
