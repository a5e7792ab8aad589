"""What the framework callbacks (:mod:`cairn.keras`, :mod:`cairn.transformers`,
:mod:`cairn.lightning`) share: turning a framework's logged values into cairn metrics."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

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
