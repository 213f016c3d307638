"""The seams through which the operator reads what the serving pods saw.

Canary analysis and drift detection both need counts from the pods: the reconcile asks a
TelemetrySource for the cumulative counters of a deployment's pods when a judgement is due,
and windows.py turns two such reads into per-track windows. Two sources fill the seam,
both in reading/: scraping.py (each pod's /metrics, the default) and querying.py (a
Prometheus server's query API, when the operator is given its URL). A ProfileSource gives a
version's reference profile by its digest. Typing only: no I/O here, so pure code and tests
can name the seams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from modeldeploy_operator.telemetry.counters import Pod, Reading

if TYPE_CHECKING:
    from modeldeploy_serving.profile import Profile


class TelemetrySource(Protocol):
    """Reads the cumulative counters of a set of serving pods, one read per judgement."""

    async def available(self) -> bool:
        """Whether the source answers at all (a Prometheus server that is down does not)."""
        ...

    async def read(self, pods: Sequence[Pod]) -> Reading:
        """Every pod's counters now; a pod that cannot be read is in Reading.errors, never raised."""
        ...


class ProfileSource(Protocol):
    """A version's reference profile (bin edges and reference shares), by the model's sha256."""

    async def profile(self, sha256: str, pod: Pod) -> Profile | None:
        """The profile of the model with this digest (asked of a pod serving it); None without one."""
        ...
