"""Durations as the resource writes them (500ms, 30s, 15m, 1h30m, 168h), read the same way by
the server's flags, the command line and the operator.

Pure, standard library only: a `modeldeploy[serving]` install (no pydantic) reads them too.
"""

from __future__ import annotations

import math
import re

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WHOLE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
EXAMPLES = "30s, 15m, 1h30m or 168h (a week)"


def seconds_in(text: str) -> float:
    """Seconds in a duration of number-and-unit parts (ms, s, m, h), e.g. 1h30m; ValueError otherwise."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like {EXAMPLES}")
    return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))


def parse_seconds(text: str) -> float:
    """A duration longer than 0: number-and-unit parts (30s, 1h30m, 2.5h) or a bare number of
    seconds (90, 0.5); a ValueError says what is accepted."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = seconds_in(text)
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration like {EXAMPLES}")
    if not seconds > 0:
        raise ValueError(f"{text!r}: a duration must be longer than 0")
    return seconds
