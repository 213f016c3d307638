"""kopf registrations: watch caches (indexes) and the events that trigger a reconcile.

Only wiring here. ModelDeployments and their Deployments, Services and pods are kept in
kopf indexes (in-memory watch caches, filled before any handler runs), so a reconcile reads
nothing from the API server; any change to a ModelDeployment or to one of its objects
queues that ModelDeployment for a reconcile (reconcile.py).

HTTPRoutes (Gateway API) are watched too, for the routes a ModelDeployment names in
`spec.rollout.traffic.httpRoute`: a change to one queues the ModelDeployments that use it.
The watch is optional. kopf watches only resources the API server serves, so without the
Gateway API installed the route index stays empty (and fills once the CRD appears); and the
route handlers are registered only when the operator may list, watch and patch routes
(`watch_http_routes`, called at start), since a forbidden watch would stop kopf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy_operator import metrics
from modeldeploy_operator.api.spec import GROUP, PLURAL, VERSION
from modeldeploy_operator.children.labels import (
    DIGEST_ANNOTATION,
    MANAGED_BY,
    NAME_LABEL,
    SHADOW_TRACK,
    TRACK_LABEL,
    URI_ANNOTATION,
)
from modeldeploy_operator.children.routes import ROUTE_GROUP, ROUTE_PLURAL, ROUTE_VERSION, route_name_of
from modeldeploy_operator.drift.retraining import RETRAINING_FOR_LABEL
from modeldeploy_operator.health import start_health_server
from modeldeploy_operator.k8s.client import Kube
from modeldeploy_operator.queue import Queue
from modeldeploy_operator.reading.judging import Judge
from modeldeploy_operator.reading.querying import PrometheusSource
from modeldeploy_operator.reading.scraping import PodScraper
from modeldeploy_operator.reconcile import reconcile
from modeldeploy_operator.status.observe import Children, Owned
from modeldeploy_operator.writes import Key, LastWrites

OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}
INDEXES = (
    "model_deployments",
    "owned_deployments",
    "owned_services",
    "owned_pods",
    "owned_jobs",
    "retraining_pods",
    "owned_config_maps",
    "route_users",
)
RETRAINING_PODS = {RETRAINING_FOR_LABEL: kopf.PRESENT}
SHADOW_CONFIGS = {**OWNED, TRACK_LABEL: SHADOW_TRACK}  # not the retraining reports: they are never deleted
ROUTE_INDEX = "http_routes"  # only when the route handlers are registered


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.enabled = False  # events are posted on transitions by reconcile.py
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 600
    memo.kube = Kube.connect()
    memo.writes = LastWrites()
    source = PrometheusSource(memo.settings.prometheus_url) if memo.settings.prometheus_url else PodScraper()
    memo.judge = Judge(source)
    memo.indexes = {}
    memo.queue = Queue(lambda key: _reconcile(memo, key))
    memo.health = await start_health_server(memo.settings.health_port)


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    await memo.health.cleanup()


@kopf.index(GROUP, VERSION, PLURAL)
def model_deployments(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", name): _slim(body)}


@kopf.index(GROUP, VERSION, PLURAL)
def route_users(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, str] | None:
    """Which ModelDeployments use an HTTPRoute, by (namespace, route name)."""
    route = route_name_of(dict(body))
    return None if route is None else {(namespace or "", route): name}


def http_routes(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", name): _slim(body)}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def owned_deployments(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", labels.get(NAME_LABEL, "")): _slim(body)}


@kopf.index("v1", "services", labels=OWNED)
def owned_services(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", labels.get("app.kubernetes.io/instance", "")): _slim(body)}


@kopf.index("v1", "pods", labels=OWNED)
def owned_pods(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", labels.get(NAME_LABEL, "")): _slim_pod(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def owned_jobs(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """Retraining Jobs (spec.drift.retraining), for their outcome in status.drift.retraining:
    like a pod's, their name, labels and status are all a reconcile reads."""
    return {(namespace or "", labels.get(NAME_LABEL, "")): _slim_pod(body)}


@kopf.index("v1", "pods", labels=RETRAINING_PODS)
def retraining_pods(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """The retraining Jobs' pods and their candidates' checks: their termination message is
    the Job's result (drift/candidates.py). Not the serving pods' labels: the Service selects those."""
    return {(namespace or "", labels.get(RETRAINING_FOR_LABEL, "")): _slim_pod(body)}


@kopf.index("v1", "configmaps", labels=SHADOW_CONFIGS)
def owned_config_maps(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """The shadow config each ModelDeployment with spec.rollout.shadow keeps (children/builders.py)."""
    return {(namespace or "", labels.get(NAME_LABEL, "")): _slim(body)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_deployment_changed(type: str, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    metrics.MODEL_DEPLOYMENTS.set(len(kwargs["model_deployments"]))
    if type == "DELETED":
        memo.writes.forget((namespace or "", name))
        memo.queue.forget((namespace or "", name))
        memo.judge.forget((namespace or "", name))
        memo.judge.forget_drift((namespace or "", name))
        return
    memo.queue.trigger((namespace or "", name))


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    memo.queue.trigger((namespace or "", labels.get(NAME_LABEL, "")))


@kopf.on.event("v1", "services", labels=OWNED)
async def service_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    memo.queue.trigger((namespace or "", labels.get("app.kubernetes.io/instance", "")))


@kopf.on.event("v1", "pods", labels=OWNED)
async def pod_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    memo.queue.trigger((namespace or "", labels.get(NAME_LABEL, "")))


@kopf.on.event("v1", "pods", labels=RETRAINING_PODS)
async def retraining_pod_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    memo.queue.trigger((namespace or "", labels.get(RETRAINING_FOR_LABEL, "")))


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    memo.queue.trigger((namespace or "", labels.get(NAME_LABEL, "")))


async def route_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    _keep_indexes(memo, kwargs)
    for user in _all(kwargs["route_users"], (namespace or "", name)):
        memo.queue.trigger((namespace or "", user))


def watch_http_routes() -> None:
    """Register the HTTPRoute watch cache and its trigger (see the module docstring)."""
    kopf.index(ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL, id=ROUTE_INDEX)(http_routes)
    kopf.on.event(ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL, id="route_changed")(route_changed)


def _slim(body: kopf.Body) -> dict[str, Any]:
    """What a reconcile reads of an object, without managedFields.

    managedFields is often the largest part of an object and no decision reads it; with a
    thousand ModelDeployments, keeping it would be most of the operator's memory.
    """
    metadata = {key: value for key, value in body.get("metadata", {}).items() if key != "managedFields"}
    return {**dict(body), "metadata": metadata}


def _slim_pod(body: kopf.Body) -> dict[str, Any]:
    """What a reconcile reads of a pod: its labels, the model annotations (which model file
    it serves: status/observe.py's serving_template compares them with the pod template's),
    whether it is going away, its IP and status; not its spec, which the pod template
    already says."""
    meta = body.get("metadata", {})
    slim = {
        key: meta[key] for key in ("name", "namespace", "labels", "deletionTimestamp", "resourceVersion") if key in meta
    }
    annotations = meta.get("annotations") or {}
    model = {key: annotations[key] for key in (URI_ANNOTATION, DIGEST_ANNOTATION) if key in annotations}
    if model:
        slim["annotations"] = model
    return {"metadata": slim, "status": dict(body.get("status", {}))}


def _keep_indexes(memo: Any, kwargs: dict[str, Any]) -> None:
    """Keep the index views where the queue finds them.

    kopf gives each object a shallow copy of the operator's memo, so the dict made at
    start-up is shared and is filled in place, never replaced.
    """
    if not memo.indexes:
        memo.indexes.update({name: kwargs[name] for name in (*INDEXES, ROUTE_INDEX) if name in kwargs})


def _all(index: kopf.Index[Key, Any], key: Key) -> list[Any]:
    store = index.get(key)
    return list(store) if store is not None else []


async def _reconcile(memo: Any, key: Key) -> float | None:
    indexes = memo.indexes
    body = next(iter(_all(indexes["model_deployments"], key)), None)
    if body is None:
        return None  # deleted meanwhile, or an object whose owner is gone
    route = route_name_of(body)
    routes = indexes.get(ROUTE_INDEX)
    owned = Owned(
        deployments=_all(indexes["owned_deployments"], key),
        services=_all(indexes["owned_services"], key),
        pods=_all(indexes["owned_pods"], key),
        jobs=_all(indexes["owned_jobs"], key),
        job_pods=_all(indexes["retraining_pods"], key),
        config_maps=_all(indexes["owned_config_maps"], key),
    )
    children = Children.group(
        owned,
        next(iter(_all(routes, (key[0], route))), None) if route and routes is not None else None,
        routes_watched=routes is not None,
    )
    return await reconcile(body, children, memo.settings, memo.kube, memo.writes, memo.judge)
