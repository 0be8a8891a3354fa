"""``wulff report``: certified accuracy per distribution (upper envelope over sigma, Fig. 2), as a
Table-1-style markdown table and a PNG plot."""
from __future__ import annotations

import argparse
from pathlib import Path

from wulff.certify import read_results
from wulff.certify.analysis import collect_result_files, report


def run(args: argparse.Namespace) -> int:
    runs = [read_results(p) for p in collect_result_files(args.results)]
    table = report(runs, args.adversary, args.radii, plot=args.plot,
                   title=args.title or f"certified accuracy (%) against {args.adversary}")
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="certified-accuracy table and plot from certification result files",
                       description="Groups result files by distribution, takes the upper envelope of "
                       "certified accuracy over their sigmas (the paper's Fig. 2 procedure) and prints a "
                       "Table-1-style markdown table; --plot writes certified accuracy vs radius.")
    p.add_argument("results", nargs="+", help="result files or folders (searched for *.tsv)")
    p.add_argument("--adversary", default="l1", choices=("l1", "l2", "linf"))
    p.add_argument("--radii", type=float, nargs="+", default=None, help="table columns (default: a round grid)")
    p.add_argument("--plot", default=None, help="write a PNG here")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--title", default=None)
    p.set_defaults(handler=run)
