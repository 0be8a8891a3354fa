"""Argument checks shared by the subcommands: argparse types that name the valid range, and output
locations verified before any work starts (so a typo never costs a training run)."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from wulff.errors import UserError


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}; "
                                         f"got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1); got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (>= 0); got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in the open interval (0, 1)."""
    value = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in the open interval (0, 1); got {text!r}")
    return value


def _writable_folder(folder: Path, argument: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{argument}: {folder} is a file, not a folder") from None
    except OSError as exc:
        raise UserError(f"{argument}: cannot create the folder {folder} ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{argument}: the folder {folder} is not writable")


def output_folder(path: str | os.PathLike, argument: str, *, holds: str) -> Path:
    """``path`` as a writable folder (created if missing); ``holds`` says what will be written in it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{argument}: {folder} is a file; give a folder (it will hold {holds})")
    _writable_folder(folder, argument)
    return folder


def output_file(path: str | os.PathLike, argument: str, *, example: str) -> Path:
    """``path`` as a file that can be written (its folder is created if missing)."""
    target = Path(path)
    if str(path) == "" or target.is_dir():
        raise UserError(f"{argument}: {str(path) or 'an empty name'} is a folder; give a file name, "
                        f"e.g. {target / example}")
    _writable_folder(target.parent, argument)
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"{argument}: {target} is not writable")
    return target
