"""Numbers read from results, journals and JSON files: one coercion for the whole study layer and above.

Metrics reach ntune as Python floats, ints, numpy or torch scalars, numeric strings (``"inf"``) or
nothing at all; every reader turns them into a float with :func:`as_float` (NaN when there is none).
:func:`json_number` is the inverse for ``study.json``, whose values must compare equal after a round trip.
"""

from __future__ import annotations

import math
from typing import Any


def as_float(value: Any) -> float:
    """``float(value)``; NaN when ``value`` has no float value (None, a non-numeric string, an object)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def json_number(value: Any) -> float | str | None:
    """A JSON-safe number: None for a missing or NaN value, ``"inf"`` for an infinite one, else the float."""
    x = as_float(value)
    if math.isnan(x):
        return None
    return "inf" if math.isinf(x) else x
