"""One switch for every progress bar in the process.

Every bar wulff draws (training epochs, certification and attack inputs, level-set tables built on
first use by any command) is made by :func:`tqdm` here, which is ``tqdm.auto.tqdm`` with the bar
disabled while :func:`enabled` is False. The command line sets the switch once, from
``--no-progress``, before any work starts (:func:`set_enabled`); a library caller may set it too.
A bar also stays off when its caller asks for that (``disable=True``).
"""
from __future__ import annotations

from tqdm.auto import tqdm as _tqdm

_ENABLED = True


def set_enabled(on: bool) -> None:
    """Turn every progress bar of this process on or off (``wulff ... --no-progress`` turns them off)."""
    global _ENABLED
    _ENABLED = bool(on)


def enabled() -> bool:
    """Whether progress bars are drawn in this process (True unless :func:`set_enabled` turned them off)."""
    return _ENABLED


def tqdm(*args, disable: bool | None = False, **kwargs) -> _tqdm:
    """``tqdm.auto.tqdm(*args, **kwargs)``, disabled when the process-wide switch is off."""
    return _tqdm(*args, disable=True if not _ENABLED else disable, **kwargs)


__all__ = ["enabled", "set_enabled", "tqdm"]
