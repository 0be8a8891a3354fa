"""``wulff report``: certified accuracy per distribution (upper envelope over sigma, Fig. 2), as a
Table-1-style markdown table and a PNG plot."""
from __future__ import annotations

import argparse
import sys

from wulff.catalog import ADVERSARIES
from wulff.cli.checks import nonnegative_float, output_file
from wulff.errors import UserError


def export(args: argparse.Namespace, warn) -> int:
    """--export cohen: each wulff certification file read as ``NAME.cohen.log`` in Cohen's format."""
    from wulff.certify.analysis import collect_result_files
    from wulff.certify.foreign import export_cohen_logs
    from wulff.certify.summary import read_report_files

    runs, attacks = read_report_files(collect_result_files(args.results), warn)
    for attack in attacks:
        warn(f"{attack.path}: not exported: an attack file (Cohen's format holds certificates)")
    try:
        written = export_cohen_logs(runs, args.export_dir, warn)
    except (FileExistsError, ValueError) as exc:
        raise UserError(f"--export cohen: {exc}") from None
    for path in written:
        print(f"wrote {path}")
    if not written:
        raise UserError("--export cohen: no wulff certification result file to export")
    return 0


def run(args: argparse.Namespace) -> int:
    from wulff.certify.analysis import collect_result_files
    from wulff.certify.summary import read_report_files, report_with_summary

    def warn(line: str) -> None:
        print(f"wulff report: warning: {line}", file=sys.stderr)

    if args.export_dir is not None and args.export is None:
        raise UserError("--export-dir is where --export writes: add --export cohen")
    if args.export:
        return export(args, warn)
    plot = output_file(args.plot, "--plot", example="l1.png") if args.plot else None
    markdown = output_file(args.markdown, "--markdown", example="table.md") if args.markdown else None
    runs, attacks = read_report_files(collect_result_files(args.results), warn)
    table = report_with_summary(runs, args.adversary, args.radii, plot=plot, allow_mixed=args.allow_mixed,
                                title=args.title or f"certified accuracy (%) against {args.adversary}",
                                warn=warn, attacks=attacks,
                                alarm=lambda line: print(f"wulff report: {line}", file=sys.stderr))
    print(table)
    if markdown:
        markdown.write_text(table + "\n", encoding="utf-8")
    if plot:
        print(f"plot: {plot}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="certified-accuracy table and plot from certification result files",
                       description="Groups result files by distribution, takes the upper envelope of "
                       "certified accuracy over their sigmas (the paper's Fig. 2 procedure) and prints a "
                       "Table-1-style markdown table, with n, alpha, the number of inputs and the forward passes "
                       "(noisy samples: total, and mean per input of each file) under it, then per file its clean "
                       "accuracy and average certified radius (ACR), and, for attack files (`wulff attack`), the "
                       "empirical robust accuracy and a SOUNDNESS ALARM for any certificate an attack broke; "
                       "--plot writes certified accuracy vs radius. Only complete test-split files with "
                       "the same n, alpha and inputs are combined: partial, torn, train-split and "
                       "mismatched files are named in a warning and left out (--allow-mixed keeps them), as "
                       "are files that are no wulff result file and rows that hold no valid numbers (named by "
                       "line). Models trained differently (objective, architecture, data: the model identity "
                       "in each header) are separate rows; an attack is held only against certificates of the "
                       "same model, norm and inputs, and the report says which. A certify log of Cohen et al. "
                       "(2019) and an rs4a result folder of Yang et al. (2020) are each a row of their own, "
                       "with what they record (n, alpha, sigma: 'not recorded' where the format lacks them).")
    p.add_argument("results", nargs="+", help="result files or folders (searched for *.tsv and rs4a folders); "
                   "also Cohen et al. certify logs and rs4a result folders (each its own row)")
    p.add_argument("--adversary", default="l1", choices=ADVERSARIES)
    p.add_argument("--radii", type=nonnegative_float, nargs="+", default=None,
                   help="table columns, numbers >= 0 (default: a round grid)")
    p.add_argument("--plot", default=None, help="write a PNG here")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--title", default=None)
    p.add_argument("--allow-mixed", action="store_true",
                   help="tabulate partial, torn, train-split and mismatched files too (still warned about)")
    p.add_argument("--export", choices=("cohen",), default=None,
                   help="instead of a table, write each wulff certification file NAME.tsv as NAME.cohen.log in "
                   "the format of Cohen et al.'s certify.py (idx label predict radius correct time; the l2 "
                   "radius)")
    p.add_argument("--export-dir", default=None, help="with --export: the folder to write to (default: beside "
                   "each file); existing files are never overwritten")
    p.set_defaults(handler=run)
