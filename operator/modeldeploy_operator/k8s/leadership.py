"""Leader election: one operator pod reconciles, the others stand by on a Lease.

More than one operator pod (for a fast failover) must never mean more than one operator
reconciling: two would fight over the same Deployments and status. kopf's own peering only
pauses an operator of lower priority, so replicas of one Deployment (equal priorities)
would all run. Instead, as controller-runtime does, a pod reconciles only while it holds a
coordination.k8s.io Lease: the others stand by (answering /healthz and /metrics) and take
the Lease when the holder has not renewed it for the lease duration, or at once when the
holder releases it on a clean stop. A leader that cannot renew within the renew deadline
exits, and its container restarts as a standby. cli.py wins the Lease (when asked) before
it starts kopf.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from modeldeploy_operator.settings import SettingsError

log = logging.getLogger("modeldeploy.leader")
LEADER = Gauge("modeldeploy_operator_leader", "1 while this operator pod holds the Lease and reconciles, else 0")
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
ELECTION_OPTIONS: dict[str, tuple[str, str]] = {
    # flag: (environment variable, default)
    "--leader-election": ("MODELDEPLOY_LEADER_ELECTION", "false"),
    "--leader-election-id": ("MODELDEPLOY_LEADER_ELECTION_ID", "modeldeploy-operator-leader"),
    "--leader-election-namespace": ("MODELDEPLOY_LEADER_ELECTION_NAMESPACE", ""),
    "--lease-duration": ("MODELDEPLOY_LEASE_DURATION", "15s"),
    "--renew-deadline": ("MODELDEPLOY_RENEW_DEADLINE", "10s"),
    "--retry-period": ("MODELDEPLOY_RETRY_PERIOD", "2s"),
}


@dataclass(frozen=True)
class Election:
    enabled: bool
    lease: str
    namespace: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float


def parse_election(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Election, list[str]]:
    """The leader-election flags (or their environment variables); the rest goes to settings."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag, (variable, default) in ELECTION_OPTIONS.items():
        parser.add_argument(flag, default=env.get(variable, default))
    known, rest = parser.parse_known_args(list(argv))
    values = vars(known)

    def seconds(flag: str) -> float:
        text = str(values[flag.lstrip("-").replace("-", "_")]).strip()
        number = text.removesuffix("s")
        if not number.replace(".", "", 1).isdigit() or float(number) <= 0:
            raise SettingsError(f"{flag} ({ELECTION_OPTIONS[flag][0]}): {text!r} is not a duration like 15s")
        return float(number)

    enabled_text = str(values["leader_election"]).strip().lower()
    if enabled_text not in ("true", "false"):
        raise SettingsError(f"--leader-election (MODELDEPLOY_LEADER_ELECTION): {enabled_text!r} is not true or false")
    lease, renew, retry = seconds("--lease-duration"), seconds("--renew-deadline"), seconds("--retry-period")
    if not retry < renew < lease:
        raise SettingsError(
            f"--retry-period ({retry:g}s) < --renew-deadline ({renew:g}s) < --lease-duration ({lease:g}s) "
            "does not hold; a standby could take the Lease while the leader still works"
        )
    namespace = str(values["leader_election_namespace"])
    if not namespace and os.path.exists(SERVICE_ACCOUNT_NAMESPACE):
        with open(SERVICE_ACCOUNT_NAMESPACE) as file:
            namespace = file.read().strip()
    identity = env.get("MODELDEPLOY_POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    election = Election(
        enabled_text == "true", str(values["leader_election_id"]), namespace, identity, lease, renew, retry
    )
    if election.enabled and not election.namespace:
        raise SettingsError(
            "--leader-election-namespace (MODELDEPLOY_LEADER_ELECTION_NAMESPACE): empty, and not running in a pod; "
            "name the namespace of the Lease"
        )
    return election, rest


def may_take(holder: str, identity: str, unchanged_for: float, lease_duration: float) -> bool:
    """Whether this pod may write itself into the Lease now.

    Expiry is judged by how long this pod has seen the Lease unchanged (its own clock), never
    by comparing the holder's renewTime with our clock, so clock skew between nodes cannot
    make two leaders."""
    return not holder or holder == identity or unchanged_for >= lease_duration


class Elector:
    """Reads and writes the one Lease; every write carries the resourceVersion it read."""

    def __init__(self, api: CoordinationV1Api, election: Election) -> None:
        self.api: Any = api  # called with plain dicts: the client's models would reformat renewTime
        self.election = election
        self.seen: tuple[str, str] = ("", "")  # (holder, renewTime) last read
        self.seen_at = time.monotonic()
        self.renewed_at = time.monotonic()  # of our last successful write
        self.timeout = max(1.0, election.renew_deadline / 2)  # no call may hang past the deadline

    def _read(self) -> dict[str, Any]:
        response = self.api.read_namespaced_lease(
            self.election.lease, self.election.namespace, _preload_content=False, _request_timeout=self.timeout
        )
        lease: dict[str, Any] = json.loads(response.data)
        return lease

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease; False when another pod holds it or the API cannot be reached."""
        try:
            return self._try_acquire_or_renew()
        except Exception as error:  # a timeout or a refused connection is a missed renewal, never a crash
            log.warning("Lease %s/%s: %s", self.election.namespace, self.election.lease, error)
            return False

    def _try_acquire_or_renew(self) -> bool:
        e = self.election
        try:
            lease = self._read()
        except ApiException as error:
            if error.status != 404:
                log.warning("reading Lease %s/%s: %s %s", e.namespace, e.lease, error.status, error.reason)
                return False
            lease = {"metadata": {"name": e.lease, "namespace": e.namespace}, "spec": {}}
        spec = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity") or ""
        now = time.monotonic()
        if (holder, spec.get("renewTime") or "") != self.seen:
            self.seen, self.seen_at = (holder, spec.get("renewTime") or ""), now
        duration = float(spec.get("leaseDurationSeconds") or e.lease_duration)  # the holder's word, as client-go
        if not may_take(holder, e.identity, now - self.seen_at, duration):
            return False
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if holder != e.identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec.update(holderIdentity=e.identity, leaseDurationSeconds=int(e.lease_duration), renewTime=stamp)
        try:
            if "resourceVersion" in lease["metadata"]:
                self.api.replace_namespaced_lease(e.lease, e.namespace, lease, _request_timeout=self.timeout)
            else:
                self.api.create_namespaced_lease(e.namespace, lease, _request_timeout=self.timeout)
        except ApiException as error:  # 409: another pod wrote first; try again next period
            log.info("writing Lease %s/%s: %s %s", e.namespace, e.lease, error.status, error.reason)
            return False
        if holder != e.identity:
            log.info("%s took Lease %s/%s from %r", e.identity, e.namespace, e.lease, holder or None)
        self.seen, self.seen_at, self.renewed_at = (e.identity, spec["renewTime"]), now, time.monotonic()
        return True

    def release(self) -> None:
        """On a clean stop: free the Lease so a standby takes over at its next try."""
        try:
            lease = self._read()
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.election.identity:
                spec.update(holderIdentity="", leaseDurationSeconds=1)
                lease["spec"] = spec
                self.api.replace_namespaced_lease(
                    self.election.lease, self.election.namespace, lease, _request_timeout=self.timeout
                )
                log.info("%s released the Lease", self.election.identity)
        except Exception as error:  # the Lease then runs out on its own
            log.warning("releasing the Lease: %s", error)


class _StandbyHealth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            body, kind = generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        elif self.path.startswith("/healthz"):
            body, kind = b'{"ok": true, "leader": false}', "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def become_leader(elector: Elector, health_port: int) -> None:
    """Stand by, answering /healthz and /metrics, until this pod holds the Lease."""
    server = ThreadingHTTPServer(("0.0.0.0", health_port), _StandbyHealth)  # noqa: S104
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    log.info(
        "%s stands by for Lease %s/%s", elector.election.identity, elector.election.namespace, elector.election.lease
    )
    try:
        while not elector.try_acquire_or_renew():
            time.sleep(elector.election.retry_period)
    finally:
        server.shutdown()
        server.server_close()  # the port is free for kopf's health server


def keep_renewing(elector: Elector, stopping: threading.Event) -> None:
    """Renew every retry period; stop at once when another pod holds the Lease."""
    identity = elector.election.identity
    while not stopping.wait(elector.election.retry_period):
        if not elector.try_acquire_or_renew() and elector.seen[0] not in ("", identity):
            _exit(f"Lease {elector.election.lease} is held by {elector.seen[0]}")


def watch_deadline(elector: Elector, stopping: threading.Event) -> None:
    """Exit once the last renewal is older than the renew deadline, even while a call hangs:
    a standby takes over only after the longer lease duration, so two never work at once."""
    while not stopping.wait(0.25):
        late = time.monotonic() - elector.renewed_at
        if late > elector.election.renew_deadline:
            _exit(f"Lease {elector.election.lease} not renewed for {late:.1f}s")


def _exit(reason: str) -> None:
    log.error("lost the lead: %s; exiting to restart as a standby", reason)
    logging.shutdown()
    os._exit(1)  # a leader that may no longer lead must not write another object


def connect() -> ApiClient:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return ApiClient()
