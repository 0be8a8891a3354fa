"""Exceptions for mistakes in what the user asked for. The command line prints them as one line
(``wulff <command>: error: ...``, exit status 2) instead of a traceback."""
from __future__ import annotations


class UserError(ValueError):
    """A bad argument, a wrong or damaged file, a setting that conflicts with earlier results."""


class ParameterError(UserError, TypeError):
    """A bad parameter: of the wrong type, or missing, or unknown to a family. Both a ValueError and a
    TypeError, so either may be caught; the message names the parameter and the valid ones."""


class CheckpointError(UserError):
    """A file that is not a readable wulff checkpoint (never executed: only tensors and plain data load)."""


class NonFiniteError(UserError):
    """A model produced NaN or infinite logits or losses: nothing about it can be certified or saved."""
