"""`kubectl modeldeploy adopt` and `undo`: set spec.model to a retraining candidate or to an
earlier version, and with `undo --skip-analysis` have the rollout that follows promoted at once.

lineage.py decides what to set (or refuses); this module reads, patches and waits. The
patch carries the resourceVersion the decision was made on, so a change made meanwhile (a
user, Git, the operator writing status) is refused by the API server with 409; the decision
is then made again on a fresh read, at most ATTEMPTS times.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modeldeploy_cli.lineage import ModelChange, Obj, Refused, last_revision, patch_yaml, rollout_seen
from modeldeploy_cli.resources import ANNOTATIONS, annotate, get, now, patch_model

ATTEMPTS = 3
POLL = 2.0  # seconds between reads while waiting for the rollout
HEARTBEAT = 15.0  # seconds between "still waiting" lines when nothing changes


@dataclass(frozen=True)
class Request:
    """One adopt or undo as the command line gave it; `decide` is lineage.adoption or lineage.undo."""

    command: Literal["adopt", "undo"]
    namespace: str
    name: str
    decide: Callable[[Obj], ModelChange]
    dry_run: bool = False
    skip_analysis: bool = False
    timeout: float = 300.0


def change_model(client: Any, request: Request) -> int:
    """Patch spec.model as decided (or print the patch, with --dry-run); exit code 0 or 1."""
    import kubernetes

    where = f"{request.namespace}/{request.name}"
    for attempt in range(1, ATTEMPTS + 1):
        body = get(client, request.namespace, request.name)
        change = request.decide(body)
        if request.dry_run:
            _print_dry_run(request, change)
            return 0
        try:
            patch_model(client, request.namespace, request.name, change.patch, body["metadata"]["resourceVersion"])
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
            if attempt == ATTEMPTS:
                raise Refused(f"changed {ATTEMPTS} times while {request.command} ran: run it again") from error
            continue
        break
    print(f"{where}: spec.model set to {change.described}")
    if change.note:
        print(f"{where}: {change.note}")
    if not request.skip_analysis:
        print(f"{where}: its rollout starts now, judged like any other: kubectl modeldeploy status {request.name} -w")
        return 0
    return _promote_when_started(client, request, change, last_revision(body.get("status") or {}), body)


def _print_dry_run(request: Request, change: ModelChange) -> None:
    command = request.command + (" --skip-analysis" if request.skip_analysis else "")
    print(patch_yaml(change, request.namespace, request.name, command))
    if change.note:
        print(f"# {change.note}")
    if request.skip_analysis:
        print(
            f"# --skip-analysis: once `kubectl modeldeploy status {request.name}` shows its rollout, "
            f"`kubectl modeldeploy promote {request.name} --full`"
        )


def _promote_when_started(client: Any, request: Request, change: ModelChange, after: int, body: Obj) -> int:
    """Wait for the operator to start the rollout of the version set, then set promote-full
    (as `kubectl modeldeploy promote NAME --full` does): the operator promotes once the canary
    is up and passed its gates (docs/rollouts.md)."""
    where, name = f"{request.namespace}/{request.name}", request.name
    started, shown, heard = time.monotonic(), "", 0.0
    print(
        f"{where}: waiting up to {request.timeout:g}s for the operator to start the rollout of version "
        f"{change.version}",
        flush=True,
    )
    while True:
        body = get(client, request.namespace, name)
        state, said = rollout_seen(body, change, after)
        waited = time.monotonic() - started
        if state == "started":
            canary = (body.get("status") or {}).get("canary") or {}
            annotate(client, request.namespace, name, {ANNOTATIONS["promote-full"]: _stamp(canary)})
            print(f"{where}: {said}")
            print(
                f"{where}: promote --full requested: version {change.version} is promoted as soon as its canary "
                f"pods are up and pass the signature gate{_shadow_note(body)}; "
                f"kubectl modeldeploy status {name} --watch"
            )
            return 0
        if state == "ended":
            print(f"kubectl modeldeploy undo: {where}: {said}; nothing was promoted", file=sys.stderr)
            return 1
        if said != shown or waited - heard >= HEARTBEAT:
            print(f"  {waited:.0f}s: {said}", flush=True)
            shown, heard = said, waited
        if waited >= request.timeout:
            print(
                f"kubectl modeldeploy undo: {where}: spec.model names version {change.version} now, but no rollout of "
                f"it showed in status.canary within {request.timeout:g}s (is the operator running?); it is rolled "
                f"out and judged as usual once it starts, and `kubectl modeldeploy promote {name} --full` then "
                "promotes it",
                file=sys.stderr,
            )
            return 1
        time.sleep(POLL)


def _stamp(canary: Obj) -> str:
    """Now, but never before the rollout's start: a command older than the rollout does not act
    on it, and this machine's clock may be behind the operator's."""
    started = str(canary.get("startedAt") or "")
    at_start = started.replace("Z", ".000000Z") if started.endswith("Z") and "." not in started else ""
    return max(now(), at_start)


def _shadow_note(body: Obj) -> str:
    if not ((body.get("spec") or {}).get("rollout") or {}).get("shadow"):
        return ""
    return (
        ", after the shadow step (spec.rollout.shadow: it is judged first; "
        f"`kubectl modeldeploy promote {body['metadata']['name']}` passes it)"
    )
