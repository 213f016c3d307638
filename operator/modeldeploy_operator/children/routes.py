"""Exact canary weights on a user's Gateway API HTTPRoute: the one object the operator
edits but does not own.

The user makes the HTTPRoute (its parentRefs, hostnames, matches and filters are theirs)
and points the rules to split at the model's Service `NAME`. The operator rewrites only the
backendRefs of those rules: `NAME-stable` and, during a rollout, `NAME-canary`, with exact
weights; the user's Gateway implementation enforces them. It never creates, deletes or
otherwise changes the route.

Why the whole rules list is sent: in the HTTPRoute schema `spec.rules` is an atomic list,
so a server-side apply of rules with only backendRefs would replace the user's matches and
filters. The patch therefore carries every rule as read from the route, with only the
backendRefs of the model's rules changed, and the route's resourceVersion, so the API
server refuses it (409, retried) if the user changed the route in between. Pure: plain
dicts in and out.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.children.builders import SERVICE_PORT
from modeldeploy_operator.children.labels import deployment_name

Obj = dict[str, Any]

ROUTE_GROUP = "gateway.networking.k8s.io"
ROUTE_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
ROUTE_KIND = "HTTPRoute"


def route_name(spec: ModelDeploymentSpec) -> str | None:
    """The HTTPRoute whose weights the operator sets, if the spec names one."""
    route = spec.rollout.traffic.http_route
    return None if route is None else route.name


def route_name_of(body: Obj) -> str | None:
    """The same, from a ModelDeployment as the watch delivers it (before its spec is parsed)."""
    traffic = (((body.get("spec") or {}).get("rollout") or {}).get("traffic")) or {}
    name = (traffic.get("httpRoute") or {}).get("name")
    return name if isinstance(name, str) and name else None


def _services(name: str) -> set[str]:
    """The Services a rule may name to be split by the operator."""
    return {name, deployment_name(name, "stable"), deployment_name(name, "canary")}


def _is_models(ref: Obj, name: str, namespace: str) -> bool:
    return (
        ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and ref.get("namespace", namespace) == namespace
        and ref.get("name") in _services(name)
    )


def is_models_rule(rule: Obj, name: str, namespace: str) -> bool:
    """A rule the operator splits: it has backends, and every one is a Service of the model."""
    refs = rule.get("backendRefs") or []
    return bool(refs) and all(_is_models(ref, name, namespace) for ref in refs)


def route_problem(name: str, namespace: str, wanted: str, route: Obj | None, watched: bool = True) -> str | None:
    """Why weights cannot be set on the route, or None when they can; `watched` False: the
    operator may not read routes at all."""
    if not watched:
        return (
            f"HTTPRoute {wanted} (spec.rollout.traffic.httpRoute.name) cannot be used: the operator may not list, "
            "watch and patch httproutes.gateway.networking.k8s.io (grant it, as the Helm chart does, and restart it)"
        )
    if route is None:
        return (
            f"HTTPRoute {wanted} (spec.rollout.traffic.httpRoute.name) not found in namespace {namespace}: "
            f"create it with your Gateway's parentRefs and a rule whose backendRefs name Service {name}; "
            "the operator sets its weights but never creates it"
        )
    rules = (route.get("spec") or {}).get("rules") or []
    if not any(is_models_rule(rule, name, namespace) for rule in rules):
        return (
            f"HTTPRoute {wanted} has no rule whose backendRefs name only Service {name} "
            f"(or {deployment_name(name, 'stable')}, {deployment_name(name, 'canary')}): "
            f"point the rules to split at Service {name}, port {SERVICE_PORT}"
        )
    return None


def backend_refs(name: str, canary_weight: int) -> list[Obj]:
    """Stable and, with a weight, canary: as the API server stores them (defaults written out)."""
    refs = [_backend(deployment_name(name, "stable"), 100 - canary_weight)]
    if canary_weight > 0:
        refs.append(_backend(deployment_name(name, "canary"), canary_weight))
    return refs


def _backend(service: str, weight: int) -> Obj:
    return {"group": "", "kind": "Service", "name": service, "port": SERVICE_PORT, "weight": weight}


def build_route_weights(meta: Obj, route: Obj, canary_weight: int) -> Obj:
    """The apply patch that gives the model's rules of `route` these weights.

    Every rule is sent (the list is atomic), the others exactly as read; the route's
    resourceVersion makes the write conditional on nobody having changed it meanwhile.
    """
    name, namespace = meta["name"], meta["namespace"]
    route_meta = route["metadata"]
    rules = [
        {**rule, "backendRefs": backend_refs(name, canary_weight)} if is_models_rule(rule, name, namespace) else rule
        for rule in (route.get("spec") or {}).get("rules") or []
    ]
    return {
        "apiVersion": f"{ROUTE_GROUP}/{ROUTE_VERSION}",
        "kind": ROUTE_KIND,
        "metadata": {
            "name": route_meta["name"],
            "namespace": route_meta.get("namespace", namespace),
            "resourceVersion": route_meta.get("resourceVersion"),
        },
        "spec": {"rules": rules},
    }


def canary_weight_on(route: Obj | None, name: str, namespace: str) -> int | None:
    """The canary's share (whole percent) that the route's model rules give now: the weight
    read back, which is what a step verifies. None when no rule of the route is the model's."""
    if route is None:
        return None
    shares = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        if not is_models_rule(rule, name, namespace):
            continue
        weights = {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}
        total = sum(weights.values())
        canary = weights.get(deployment_name(name, "canary"), 0)
        shares.append(0 if total == 0 else (100 * canary + total // 2) // total)
    return min(shares) if shares else None


def route_patches(meta: Obj, route: Obj | None, canary_weight: int | None) -> list[Obj]:
    """The route's apply patch for a plan's weight: none without a weight to set (no route
    in the spec) or without a usable route (that is reported, never created)."""
    if canary_weight is None or route is None:
        return []
    rules = (route.get("spec") or {}).get("rules") or []
    if not any(is_models_rule(rule, meta["name"], meta["namespace"]) for rule in rules):
        return []
    return [build_route_weights(meta, route, canary_weight)]
