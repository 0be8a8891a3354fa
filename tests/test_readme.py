"""The README's self-contained Python examples run as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
SELF_CONTAINED = [b for b in BLOCKS if "model" not in b]  # the certify snippet needs the user's model


def test_readme_has_examples():
    assert len(SELF_CONTAINED) >= 2


@pytest.mark.parametrize("block", SELF_CONTAINED, ids=lambda b: b.splitlines()[0][:40])
def test_readme_block_runs(block):
    exec(compile(block, str(README), "exec"), {})
