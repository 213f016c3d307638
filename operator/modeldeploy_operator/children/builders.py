"""Desired objects: a ModelDeployment's spec and the operator settings in, plain dicts out.

Pure functions, one per kind of object, tested with plain data. What they return is the
whole truth about what the operator wants; the apply step compares it with the cluster and
writes only what differs. Here: the Deployments (whose pods pods.py describes), the
Services, the shadow config ConfigMap and the canary's shadow Service, and the whole list
a reconcile applies (build_children). Names and labels are in labels.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.children.labels import (
    MANAGED_BY,
    NAME_LABEL,
    SERVING_SPEC_ANNOTATION,
    SHADOW_TRACK,
    SPEC_HASH_ANNOTATION,
    TRACK_LABEL,
    VERSION_LABEL,
    common_labels,
    deployment_name,
    owner_labels,
    owner_reference,
    selector_labels,
    shadow_name,
)
from modeldeploy_operator.children.pods import GRPC_PORT, SHADOW_FILE, build_pod_template
from modeldeploy_operator.settings import Settings

Obj = dict[str, Any]

SERVICE_PORT = 80
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"  # plain-text HTTP/2, so gateways and meshes proxy it as gRPC

SERVING_FIELDS = ("model", "serving", "resources")
"""The parts of a spec that change what the pods serve: changing one starts a rollout.
`owner` is not one: a new team relabels the pods (the Deployment replaces them one by one),
a new contact or runbook changes no child at all."""


def serving_spec(spec: ModelDeploymentSpec) -> Obj:
    """What the pods serve, without defaults (so an operator upgrade that adds a defaulted
    field does not look like a new version), and with a model path written one way: the
    bare path `/models/m.onnx` as `file:///models/m.onnx`, so switching between the two
    forms of the same file does not start a rollout."""
    dumped: Obj = spec.model_dump(by_alias=True, exclude_defaults=True, include=set(SERVING_FIELDS), mode="json")
    model = dumped.get("model") or {}
    if str(model.get("uri", "")).startswith("/"):
        model["uri"] = "file://" + model["uri"]
    return dumped


def spec_hash(spec: ModelDeploymentSpec) -> str:
    text = json.dumps(serving_spec(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


def with_serving(spec: ModelDeploymentSpec, serving: Obj) -> ModelDeploymentSpec:
    """The spec with what the pods serve taken from a Deployment's annotation."""
    base = spec.model_dump(by_alias=True, exclude=set(SERVING_FIELDS), mode="json")
    return ModelDeploymentSpec.model_validate({**base, **serving})


def build_deployment(
    meta: Obj, spec: ModelDeploymentSpec, settings: Settings, track: str = "stable", replicas: int | None = None
) -> Obj:
    """A track's Deployment; `replicas` overrides the spec's (a canary is sized by its step)."""
    name = meta["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": meta["namespace"],
            "labels": common_labels(name, spec, track),
            "annotations": {
                SERVING_SPEC_ANNOTATION: json.dumps(serving_spec(spec), sort_keys=True, separators=(",", ":")),
                SPEC_HASH_ANNOTATION: spec_hash(spec),
            },
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector_labels(name, track)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "template": build_pod_template(meta, spec, settings, track),
        },
    }


def build_service(meta: Obj, spec: ModelDeploymentSpec, track: str | None = None) -> Obj:
    """The model's Service `NAME`, selecting every track so that ready replica counts split
    the traffic; or, with a track, `NAME-TRACK` selecting only that track's pods, a backend
    for weighted routing (an HTTPRoute's backendRefs). Each has two ports: `http` (80, REST)
    and `grpc` (9000, the protocol's gRPC service). When an HTTPRoute splits the traffic,
    `NAME` selects only stable, so a request that does not go through the route never
    reaches the canary and the route's weights are the canary's whole share."""
    name = meta["name"]
    labels = {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": name,
        **owner_labels(spec),
    }
    selector = {"app.kubernetes.io/instance": name, NAME_LABEL: name}
    if track is not None:
        labels[TRACK_LABEL] = track
        selector[TRACK_LABEL] = track
    elif spec.rollout.traffic.http_route is not None:
        selector[TRACK_LABEL] = "stable"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name if track is None else deployment_name(name, track),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": GRPC_APP_PROTOCOL,
                },
            ],
        },
    }


def shadow_target(meta: Obj, settings: Settings) -> str:
    """Where the stable pods send their copies: the canary's shadow Service."""
    return f"http://{shadow_name(meta['name'])}.{meta['namespace']}.svc.{settings.cluster_domain}:{SERVICE_PORT}"


def build_shadow_config_map(meta: Obj, spec: ModelDeploymentSpec, config: str) -> Obj:
    """The shadow config the stable pods re-read (modeldeploy_serving.shadow.config_text);
    empty: mirroring off. Kept while spec.rollout.shadow is set, emptied between shadows."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _shadow_metadata(meta, spec),
        "data": {SHADOW_FILE: config},
    }


def _shadow_metadata(meta: Obj, spec: ModelDeploymentSpec) -> Obj:
    """`NAME-shadow`, owned by the resource: the shadow ConfigMap's and Service's metadata."""
    name = meta["name"]
    labels = {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": name,
        NAME_LABEL: name,
        TRACK_LABEL: SHADOW_TRACK,
        **owner_labels(spec),
    }
    return {
        "name": shadow_name(name),
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(meta)],
    }


def build_shadow_service(meta: Obj, spec: ModelDeploymentSpec) -> Obj:
    """`NAME-shadow`: the canary pods for the stable pods' copies during the shadow step.

    The canary pods are not Ready then (their readiness gate stays closed, so the model's
    Service and any HTTPRoute backend leave them out); this Service publishes them anyway
    (publishNotReadyAddresses), and only the stable pods' mirroring is told its name. It
    selects this version's pods only: publishing not-ready pods also publishes terminating
    ones, and a canary rolled back just before could still be answering in its grace period."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _shadow_metadata(meta, spec),
        "spec": {
            "type": "ClusterIP",
            "selector": {**selector_labels(meta["name"], "canary"), VERSION_LABEL: spec.model.version},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_children(
    meta: Obj,
    spec: ModelDeploymentSpec,
    settings: Settings,
    stable: ModelDeploymentSpec | None = None,
    canary_replicas: int = 0,
    shadow_config: str = "",
) -> list[Obj]:
    """Every object a ModelDeployment wants, in the order they are applied.

    `stable` is what the stable Deployment keeps serving during a rollout (default: the
    spec); with `canary_replicas`, a canary Deployment of the spec. The Service comes first,
    so pods have a name as soon as they are ready; per-track Services only when an
    HTTPRoute splits traffic by weight between them. With spec.rollout.shadow, the shadow
    config ConfigMap (`shadow_config`, empty while nothing is mirrored) and, while the stable
    pods mirror to the canary, the canary's shadow Service.
    """
    wanted = [build_service(meta, spec)]
    if spec.rollout.traffic.http_route is not None:
        wanted.append(build_service(meta, spec, "stable"))
        if canary_replicas:
            wanted.append(build_service(meta, spec, "canary"))
    # The stable track keeps what it serves, but its size and owner always follow the spec.
    stable_spec = spec if stable is None else stable.model_copy(update={"replicas": spec.replicas, "owner": spec.owner})
    wanted.append(build_deployment(meta, stable_spec, settings, "stable"))
    if canary_replicas:
        wanted.append(build_deployment(meta, spec, settings, "canary", canary_replicas))
    if spec.rollout.shadow is not None or shadow_config:
        wanted.insert(0, build_shadow_config_map(meta, spec, shadow_config))
        if shadow_config and canary_replicas:
            wanted.insert(1, build_shadow_service(meta, spec))
    return wanted


def inference_url(name: str, namespace: str, settings: Settings) -> str:
    return f"http://{name}.{namespace}.svc.{settings.cluster_domain}/v2/models/{name}/infer"
