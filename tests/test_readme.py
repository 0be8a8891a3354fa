"""Every ```python block of the README runs as written, and what it documents matches what runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.splitlines()[0][:40])
def test_readme_block_runs(block, monkeypatch, tmp_path):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
    exec(compile(block, str(README), "exec"), {})


def test_documented_cert_method_is_what_derive_returns(monkeypatch, tmp_path):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
    block = next(b for b in BLOCKS if "cert.method" in b)
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    method = scope["cert"].method
    documented = [m.replace("R", r"[0-9.e+-]+") for m in re.findall(r'`"([^"`]+)"`', TEXT)]
    assert any(re.fullmatch(pattern.replace("(", r"\(").replace(")", r"\)").replace("...", ".*"), method)
               for pattern in documented), method
