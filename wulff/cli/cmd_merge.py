"""``wulff merge``: join the shard files of one certification run into one result file."""
from __future__ import annotations

import argparse
from pathlib import Path

from wulff.cli.checks import output_file
from wulff.locking import removed_on_failure


def run(args: argparse.Namespace) -> int:
    from wulff.certify import merge_results

    with removed_on_failure(Path(str(args.out)).parent):  # a refused merge leaves no folder behind
        out = output_file(args.out, "out", example="certify.tsv")
        merged = merge_results(args.shards, out, allow_partial=args.allow_partial)  # under out's lock
    print(f"merged {len(args.shards)} files into {out}: {len(merged)} rows")
    return 0


def register(sub) -> None:
    p = sub.add_parser("merge", help="join certification shard files (from --shard / torchrun) into one",
                       description="Joins the shard files of one run (same model weights, noise and "
                       "settings; a difference is named) into one result file sorted by input.")
    p.add_argument("out", help="merged result file")
    p.add_argument("shards", nargs="+", help="shard files, e.g. results.shard-*-of-4.tsv")
    p.add_argument("--allow-partial", action="store_true", help="merge even if some inputs are missing")
    p.set_defaults(handler=run)
