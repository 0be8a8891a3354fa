"""Exceptions for mistakes in what the user asked for, and the one reader of numbers given as text.
The command line prints these errors as one line (``wulff <command>: error: ...``, exit status 2)
instead of a traceback."""
from __future__ import annotations

import math


class UserError(ValueError):
    """A bad argument, a wrong or damaged file, a setting that conflicts with earlier results."""


class ParameterError(UserError, TypeError):
    """A bad parameter: of the wrong type, or missing, or unknown to a family. Both a ValueError and a
    TypeError, so either may be caught; the message names the parameter and the valid ones."""


class CheckpointError(UserError):
    """A file that is not a readable wulff checkpoint (never executed: only tensors and plain data load)."""


class NonFiniteError(UserError):
    """A model produced NaN or infinite logits or losses: nothing about it can be certified or saved."""


def parse_number(text, *, what: str = "parameter", error: type[ValueError] = ValueError) -> float:
    """A number given as text: a finite real written in digits ("2", "1.5", "1e-3"), read with
    float(), never evaluated. Anything else raises ``error`` naming ``what``."""
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise error(f"{what} must be a finite number written in digits (e.g. 2 or 1.5); got {text!r}")
    return value
