"""What the cluster did during a rollout, second by second, to set beside the requests that failed.

A request that fails while a version changes says little on its own. This watcher records,
from the moment it starts, each serving pod's life (created, Ready, terminating, gone, with
its IP and track), each change of the model Service's EndpointSlices (which addresses are
ready, serving or terminating) and every time kube-proxy rewrote the node's rules (from its
own metrics). `Timeline.explain(load)` interleaves them with the load generator's failures,
so a failure message says which pod refused what, when, and what kube-proxy knew then.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from e2e.cluster.pytest_plugin import Cluster
    from e2e.load import Load

SYNC_METRIC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"


@dataclass(frozen=True)
class Moment:
    at: float  # wall-clock seconds
    what: str


def clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


class Timeline:
    """Pods, EndpointSlices and kube-proxy syncs of one namespace, recorded in threads."""

    def __init__(self, kube: Cluster, namespace: str, service: str = "cancer") -> None:
        self.kube = kube
        self.namespace = namespace
        self.service = service
        self.moments: list[Moment] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pods: dict[str, str] = {}  # pod -> the last state recorded
        self._slices: dict[str, str] = {}  # slice -> the last endpoints recorded
        self._threads = [
            threading.Thread(target=self._watch, args=(kind,), daemon=True) for kind in ("pods", "endpointslices")
        ]
        self._threads.append(threading.Thread(target=self._proxy_syncs, daemon=True))

    def __enter__(self) -> Timeline:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def note(self, what: str) -> None:
        with self._lock:
            self.moments.append(Moment(time.time(), what))

    def _watch(self, kind: str) -> None:
        from kubernetes import client, watch

        with self.kube.api_client() as api:
            while not self._stop.is_set():
                if kind == "pods":
                    lister = client.CoreV1Api(api).list_namespaced_pod
                else:
                    lister = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice
                try:
                    for event in watch.Watch().stream(lister, self.namespace, timeout_seconds=2, _request_timeout=10):
                        obj = api.sanitize_for_serialization(event["object"])
                        if kind == "pods":
                            self._pod(event["type"], obj)
                        else:
                            self._slice(event["type"], obj)
                        if self._stop.is_set():
                            return
                except Exception as error:
                    self.note(f"(the {kind} watch broke: {type(error).__name__}: {error}; watching again)")
                    time.sleep(0.5)

    def _pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        name = meta["name"]
        ready = next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready"), "False")
        state = "gone" if kind == "DELETED" else "terminating" if meta.get("deletionTimestamp") else f"Ready={ready}"
        if self._pods.get(name) == state:
            return
        self._pods[name] = state
        track = (meta.get("labels") or {}).get("modeldeploy.dev/track", "?")
        self.note(f"pod {name} ({track}, {status.get('podIP') or 'no IP'}): {state}")

    def _slice(self, kind: str, endpoint_slice: dict[str, Any]) -> None:
        name = endpoint_slice["metadata"]["name"]
        service = (endpoint_slice["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if service != self.service:
            return
        shown = []
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            flags = [flag for flag in ("ready", "serving", "terminating") if conditions.get(flag)]
            target = (endpoint.get("targetRef") or {}).get("name", "?")
            shown.append(f"{','.join(endpoint.get('addresses') or [])} {target} [{' '.join(flags) or 'not ready'}]")
        text = "gone" if kind == "DELETED" else "; ".join(sorted(shown)) or "no endpoints"
        if self._slices.get(name) == text:
            return
        self._slices[name] = text
        self.note(f"EndpointSlice {name}: {text}")

    def _proxy_syncs(self) -> None:
        """kube-proxy's last rule sync, read from its metrics every 0.2 s."""
        try:
            config = json.loads((Path(self.kube.run_dir) / "kube-proxy-config.json").read_text())
            url = f"http://{config['metricsBindAddress']}/metrics"
        except (OSError, ValueError, KeyError) as error:
            self.note(f"(kube-proxy's metrics cannot be found: {error})")
            return
        last = 0.0
        while not self._stop.wait(0.2):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    page = response.read().decode()
            except OSError:
                continue
            for line in page.splitlines():
                if line.startswith(SYNC_METRIC + " ") or line.startswith(SYNC_METRIC + '{ip_family="IPv4"'):
                    synced = float(line.rsplit(" ", 1)[1])
                    if synced != last:
                        last = synced
                        self.note(f"kube-proxy rewrote the rules (at {clock(synced)})")

    def explain(self, load: Load, since: float | None = None) -> str:
        """Each failed request beside what the cluster did, in time order; from 15 s before
        the first failure (or `since`) to 5 s after the last."""
        failures = load.failures_seen()
        with self._lock:
            moments = list(self.moments)
        if failures:
            start = min(f.at for f in failures) - 15 if since is None else since
            end = max(f.at for f in failures) + 5
            moments = [m for m in moments if start <= m.at <= end]
        lines = [Moment(f.at, f"REQUEST FAILED {f.describe()}") for f in failures] + moments
        lines.sort(key=lambda moment: moment.at)
        return "\n".join(f"  {clock(moment.at)} {moment.what}" for moment in lines)


def assert_no_failed_requests(load: Load, timeline: Timeline, during: str) -> None:
    """Every request got a 200; otherwise each failure beside what the cluster did then."""
    failures = load.failures_seen()
    assert not failures, (
        f"{len(failures)} of {load.served()} requests failed during {during} ({dict(load.answers)}); "
        f"each, beside the pods, EndpointSlices and kube-proxy syncs around it:\n{timeline.explain(load)}"
    )
