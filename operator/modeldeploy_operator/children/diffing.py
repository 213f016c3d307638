"""Semantic diff: does the cluster's object already say everything we want it to say?

Only the fields the operator sets are compared; whatever the API server or other
controllers add (defaults, status, their own annotations) is ignored. Quantities compare by
value, so a spec's "0.5" CPU equals the "500m" the API server returns and an idle reconcile
writes nothing. The one exception to "only what we set": a label the operator sets only
sometimes (the team label, from spec.owner) differs when the object has it and we no
longer want it, so taking an owner out of the spec removes the label (server-side apply
drops a field its manager stops sending).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from modeldeploy_operator.children.labels import OPTIONAL_LABELS

_SUFFIXES = {
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def quantity(text: str) -> Decimal | None:
    number = text.rstrip("mkKMGTi")
    suffix = text[len(number) :]
    if suffix not in _SUFFIXES:
        return None
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation:
        return None


def _same_scalar(desired: Any, actual: Any, path: tuple[str, ...]) -> bool:
    if desired == actual:
        return True
    if "resources" in path and isinstance(desired, str) and isinstance(actual, str):
        left, right = quantity(desired), quantity(actual)
        return left is not None and left == right
    return False


def differs(desired: Any, actual: Any, path: tuple[str, ...] = ()) -> bool:
    """True when some field of desired is missing from actual or has another value."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return True
        if path and path[-1] == "labels" and any(k in actual and k not in desired for k in OPTIONAL_LABELS):
            return True
        return any(differs(value, actual.get(key), (*path, key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return True
        return any(differs(d, a, path) for d, a in zip(desired, actual, strict=True))
    return not _same_scalar(desired, actual, path)
