"""Start-up cost of the command line against the heavy packages it no longer imports up front.

    python benchmarks/cli_startup.py [--repeat 5]

Times, in fresh subprocesses, ``python -m wulff --help`` and ``python -c "import torch, sympy"``
(best of REPEAT each) and prints their ratio. Target (issue 11): ratio <= 0.35, i.e. ``wulff --help``
costs at most a third of merely importing torch and sympy.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_time(argv: list[str], repeat: int) -> float:
    """The shortest wall time, in seconds, of ``repeat`` runs of ``argv`` (each must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command; the best counts (default 5)")
    args = parser.parse_args()
    cli = best_time([sys.executable, "-m", "wulff", "--help"], args.repeat)
    heavy = best_time([sys.executable, "-c", "import torch, sympy"], args.repeat)
    bare = best_time([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -m wulff --help           {cli * 1e3:8.1f} ms (best of {args.repeat})")
    print(f"python -c 'import torch, sympy'  {heavy * 1e3:8.1f} ms (best of {args.repeat})")
    print(f"python -c pass                   {bare * 1e3:8.1f} ms (interpreter start, in both)")
    print(f"ratio {cli / heavy:.3f} (target <= 0.35)")


if __name__ == "__main__":
    main()
