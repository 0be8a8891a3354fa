"""examples/compare_noises.py runs as documented and writes its CSV and plot."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compare_noises_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WULFF_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "compare_noises.py"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rho 0.6: smooth with UniformCube" in done.stdout  # the cube wins hard inputs against l1
    assert "rho 0.99: smooth with Laplace" in done.stdout
    header = (tmp_path / "compare_l1.csv").read_text().splitlines()[0]
    assert header == "family,parameters,adversary,d,sigma,rho,radius,method"
    assert (tmp_path / "compare_l1.png").read_bytes()[:4] == b"\x89PNG"
