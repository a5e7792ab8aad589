"""What the framework callbacks (:mod:`cairn.keras`, :mod:`cairn.transformers`,
:mod:`cairn.lightning`) share: turning a framework's logged values into cairn metrics."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any, Mapping

import cairn

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def metrics(logged: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite numbers among ``logged`` whose names cairn accepts (letters, digits, ``.``,
    ``_``, ``-``), as floats. Anything else (text, lists, NaN, a name with ``/``) is left out
    rather than failing the training run; a 0-d array or tensor counts as its number."""
    out: dict[str, float] = {}
    for name, value in (logged or {}).items():
        if not isinstance(name, str) or not _NAME.match(name) or isinstance(value, bool):
            continue
        if hasattr(value, "item") and callable(value.item):
            try:
                value = value.item()
            except Exception:  # an array of more than one number
                continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[name] = number
    return out


_warned = False


def record(
    path: str,
    *,
    step: int,
    parent: str | None,
    logged: Mapping[str, Any] | None,
    lock: str | os.PathLike[str] | None,
    all_ranks: bool,
) -> cairn.Checkpoint | None:
    """:func:`cairn.checkpoint` for a callback. Outside ``cairn lock`` or a git repository (and
    with no ``lock`` given) the training goes on: the file is saved but not recorded, and a warning says so once.
    Every other error (a missing file, a lock from a newer cairn) is raised."""
    global _warned
    try:
        return cairn.checkpoint(
            path,
            step=step,
            parent=parent,
            metrics=metrics(logged),
            lock=lock,
            all_ranks=all_ranks,
        )
    except (cairn.NoRunError, cairn.NotARepositoryError) as e:
        if lock is not None:
            raise
        if not _warned:
            _warned = True
            warnings.warn(
                f"cairn: checkpoints are saved but not recorded: {e} ({e.hint})",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
