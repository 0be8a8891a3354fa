"""Which noise to smooth with, in Python: every noise at matched sigma against one adversary.

    python examples/compare_noises.py [output-folder]

The same as `wulff compare --adversary l1 --d 3072 --sigma 0.5 --n 100000`, for a few noises: the
certified radius at each rho (the best certificate, with the method that won), the winner per rho,
the paper's reasoning with these numbers, and the CSV and plot.
"""
from __future__ import annotations

import sys
from pathlib import Path

import wulff

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
folder.mkdir(parents=True, exist_ok=True)
comparison = wulff.compare("l1", d=3072, sigma=0.5, families=["UniformCube", "Laplace", "Gaussian"],
                           psi=["abs(t)**3"], rho=[0.6, 0.9, 0.99], n=100_000, alpha=0.001)
print(comparison.table())
print()
print(comparison.story())
for rho, winner in zip(comparison.rho, comparison.winners()):
    print(f"rho {rho:.6g}: smooth with {winner}")
print(comparison.write_csv(folder / "compare_l1.csv"))
print(comparison.plot(folder / "compare_l1.png"))
