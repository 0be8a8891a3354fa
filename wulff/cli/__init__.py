"""The ``wulff`` command line. Each subcommand lives in a module ``wulff/cli/cmd_<name>.py`` that
defines ``register(subparsers)``; this entry point discovers them.

A user's mistake (a bad argument, a missing, damaged or foreign file, a setting that conflicts with
earlier results) is reported as one line on stderr, ``wulff <command>: error: ...``, with exit status
2; Ctrl-C prints ``wulff <command>: interrupted; rerun the same command to resume`` and exits with 130.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from wulff import progress
from wulff.errors import UserError

#: exceptions that describe what the user asked for, not a bug: printed as one line
USER_ERRORS = (UserError, ValueError, OSError, NotImplementedError, ImportError)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``wulff <command>: error: argument --x: ...`` (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="wulff", description="Certified radii for randomized smoothing with any declared density.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an OSError as "reason: file")."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    was_drawing = progress.enabled()
    progress.set_enabled(not getattr(args, "no_progress", False))  # one switch for every bar of the command
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"wulff {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"wulff {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        progress.set_enabled(was_drawing)


if __name__ == "__main__":
    sys.exit(main())
