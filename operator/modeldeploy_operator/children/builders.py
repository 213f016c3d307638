"""Desired objects: a ModelDeployment's spec and the operator settings in, plain dicts out.

Pure functions, one per kind of object, tested with plain data. What they return is the
whole truth about what the operator wants; the apply step compares it with the cluster and
writes only what differs.

The stable pods also mount the shadow config (an optional ConfigMap, empty or absent unless
a shadow step mirrors to the canary): the server re-reads it, so a shadow starts and stops
without restarting stable pods. The mount is in every stable pod template; it is not part
of what the pods serve (the spec hash), so adding it restarts stable pods once (a rolling
update) and never starts a rollout.

The serving pod: an init container runs `modeldeploy fetch` (verifying the digest) into an
emptyDir; the server reads it from there and answers the protocol over REST (port `http`)
and gRPC (port `grpc`, HTTP/2 without TLS, which the Services mark with `appProtocol`).
Both containers run as a non-root user with a read-only root filesystem, no privilege
escalation, no capabilities and the RuntimeDefault seccomp profile: the Kubernetes
"restricted" pod security standard.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import urllib.parse
from typing import Any

from modeldeploy_serving.draining import POD_DRAIN

from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import Capture
from modeldeploy_operator.api.spec import GROUP, KIND, VERSION, ModelDeploymentSpec
from modeldeploy_operator.settings import Settings

Obj = dict[str, Any]

TRACK_LABEL = f"{GROUP}/track"
NAME_LABEL = f"{GROUP}/deployment"
VERSION_LABEL = "app.kubernetes.io/version"
TEAM_LABEL = f"{GROUP}/team"  # spec.owner.team, on every child, so cluster tools can select by team
OPTIONAL_LABELS = frozenset({TEAM_LABEL})  # set only when the spec says so: absent means remove it
DIGEST_ANNOTATION = f"{GROUP}/sha256"
URI_ANNOTATION = f"{GROUP}/uri"
SERVING_SPEC_ANNOTATION = f"{GROUP}/serving-spec"  # on a Deployment: what its pods serve, as JSON
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
GRACE_SECONDS = 40  # a leaving pod's drain (at most POD_DRAIN.max_seconds) and its last requests
TRAFFIC_GATE = f"{GROUP}/traffic"  # a canary pod's readiness gate: set by the operator to let traffic in
MANAGED_BY = "modeldeploy"
SERVER_PORT = 8080
SERVICE_PORT = 80
GRPC_PORT = 9000  # the container's and the Service's: tritonclient.grpc and KServe's examples use 9000 too
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"  # plain-text HTTP/2, so gateways and meshes proxy it as gRPC
USER_ID = 65532
MODELS_DIR = "/models"
PVC_DIR = "/mnt/model-claim"
FETCH_CONTAINER = "fetch-model"
POD_NAME_ENV = "MODELDEPLOY_POD_NAME"  # as modeldeploy_serving.server reads them
NAMESPACE_ENV = "MODELDEPLOY_NAMESPACE"
SERVER_CONTAINER = "server"
SHADOW_TRACK = "shadow"  # the track label of the shadow config and the canary's shadow Service
SHADOW_DIR = "/etc/modeldeploy/shadow"
SHADOW_FILE = "shadow.json"  # the ConfigMap's key, the file the stable server re-reads
SHADOW_VOLUME = "shadow-config"


SERVING_FIELDS = ("model", "serving", "resources")
"""The parts of a spec that change what the pods serve: changing one starts a rollout.
`owner` is not one: a new team relabels the pods (the Deployment replaces them one by one),
a new contact or runbook changes no child at all."""


def serving_spec(spec: ModelDeploymentSpec) -> Obj:
    """What the pods serve, without defaults (so an operator upgrade that adds a defaulted
    field does not look like a new version)."""
    dumped: Obj = spec.model_dump(by_alias=True, exclude_defaults=True, include=set(SERVING_FIELDS), mode="json")
    return dumped


def spec_hash(spec: ModelDeploymentSpec) -> str:
    text = json.dumps(serving_spec(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


def with_serving(spec: ModelDeploymentSpec, serving: Obj) -> ModelDeploymentSpec:
    """The spec with what the pods serve taken from a Deployment's annotation."""
    base = spec.model_dump(by_alias=True, exclude=set(SERVING_FIELDS), mode="json")
    return ModelDeploymentSpec.model_validate({**base, **serving})


def owner_reference(meta: Obj) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(name: str, track: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name, NAME_LABEL: name, TRACK_LABEL: track}


def owner_labels(spec: ModelDeploymentSpec) -> dict[str, str]:
    """The team label, when the spec names an owner (the API validates it as a label value)."""
    return {TEAM_LABEL: spec.owner.team} if spec.owner is not None else {}


def common_labels(name: str, spec: ModelDeploymentSpec, track: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        VERSION_LABEL: spec.model.version,
        **selector_labels(name, track),
        **owner_labels(spec),
    }


def deployment_name(name: str, track: str) -> str:
    return f"{name}-{track}"


def model_file(uri: str) -> str:
    """The file name the fetch step writes: the last path segment of the URI."""
    return posixpath.basename(urllib.parse.urlparse(uri).path.rstrip("/")) or "model.onnx"


def _restricted_container() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _fetch_source(uri: str) -> tuple[str, list[Obj], list[Obj]]:
    """(what the fetch step reads, extra volumes, extra mounts); a pvc is mounted read-only."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "pvc":
        return uri, [], []
    volume = {"name": "model-claim", "persistentVolumeClaim": {"claimName": parsed.netloc, "readOnly": True}}
    mount = {"name": "model-claim", "mountPath": PVC_DIR, "readOnly": True}
    return f"{PVC_DIR}/{parsed.path.lstrip('/')}", [volume], [mount]


def build_pod_template(name: str, spec: ModelDeploymentSpec, settings: Settings, track: str) -> Obj:
    """The serving pod; a canary pod also has a readiness gate, so it takes no live traffic
    until the operator opens it (after the signature check)."""
    model = spec.model
    source, volumes, mounts = _fetch_source(model.uri)
    fetch_args = ["fetch", source, "--dest", MODELS_DIR]
    if model.sha256:
        fetch_args += ["--sha256", model.sha256]
    fetch: Obj = {
        "name": FETCH_CONTAINER,
        "image": spec.serving.image or settings.serving_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": fetch_args,
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, *mounts],
        "securityContext": _restricted_container(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    if model.credentials_secret:
        fetch["envFrom"] = [{"secretRef": {"name": model.credentials_secret}}]
    ready_path = f"/v2/models/{name}/ready"
    batching = spec.serving.batching
    server: Obj = {
        "name": SERVER_CONTAINER,
        "image": spec.serving.image or settings.serving_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "serve",
            "--model",
            f"{MODELS_DIR}/{model_file(source)}",
            "--name",
            name,
            "--version",
            model.version,
            "--port",
            str(SERVER_PORT),
            "--grpc-port",
            str(GRPC_PORT),
            "--threads",
            str(spec.serving.threads),
            "--max-batch-size",
            str(batching.max_batch_size),
            "--max-batch-delay-us",
            str(batching.max_delay_micros),
            # A leaving pod keeps answering until kube-proxy stops sending it connections
            # (draining.py); the grace period below leaves room for the longest drain.
            "--drain-min-seconds",
            f"{POD_DRAIN.min_seconds:g}",
            "--drain-quiet-seconds",
            f"{POD_DRAIN.quiet_seconds:g}",
            "--drain-max-seconds",
            f"{POD_DRAIN.max_seconds:g}",
        ],
        "env": [{"name": "MODELDEPLOY_TRACK", "value": track}],
        "ports": [
            {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe(ready_path, period=2, failures=150),
        "readinessProbe": _probe(ready_path, period=5, failures=2),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "resources": {
            "requests": spec.resources.requests or settings.default_requests,
            "limits": spec.resources.limits or settings.default_limits,
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir, the pod's own)
        ],
        "securityContext": _restricted_container(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.capture is not None:
        _add_capture(server, spec.capture)
    volumes = list(volumes)
    if track == "stable":
        # Every stable pod reads the shadow config from an optional ConfigMap: starting or
        # stopping a shadow step rewrites the ConfigMap, never the pod template.
        server["args"] += ["--shadow-config", f"{SHADOW_DIR}/{SHADOW_FILE}"]
        server["volumeMounts"].append({"name": SHADOW_VOLUME, "mountPath": SHADOW_DIR, "readOnly": True})
        volumes.append({"name": SHADOW_VOLUME, "configMap": {"name": shadow_name(name), "optional": True}})
    pod_spec: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [fetch],
        "containers": [server],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            *volumes,
        ],
        "terminationGracePeriodSeconds": GRACE_SECONDS,
    }
    if track == "canary":
        pod_spec["readinessGates"] = [{"conditionType": TRAFFIC_GATE}]
    return {
        "metadata": {
            "labels": common_labels(name, spec, track),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(SERVER_PORT),
                "prometheus.io/path": "/metrics",
                DIGEST_ANNOTATION: model.sha256 or "",
                URI_ANNOTATION: model.uri,
            },
        },
        "spec": pod_spec,
    }


def capture_args(capture: Capture) -> list[str]:
    """The server's flags for spec.capture (docs/capture.md)."""
    return [
        "--capture-sink",
        capture.sink,
        "--capture-sample-rate",
        repr(capture.sample_rate),
        "--capture-max-rows-per-minute",
        str(capture.max_rows_per_minute),
        "--capture-batch-rows",
        str(capture.batch_size),
        "--capture-flush-interval-seconds",
        repr(parse_duration(capture.flush_interval)),
    ]


def _add_capture(server: Obj, capture: Capture) -> None:
    """Capture's flags on the server container, the pod's name and namespace for the objects'
    keys and the events' source, and the sink's credentials as environment variables (as the
    fetch step gets the model's)."""
    server["args"] += capture_args(capture)
    server["env"] += [
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if capture.credentials_secret:
        server["envFrom"] = [{"secretRef": {"name": capture.credentials_secret}}]


def _probe(path: str, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


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
            "template": build_pod_template(name, spec, settings, track),
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


def shadow_name(name: str) -> str:
    """The shadow config ConfigMap's name, and the canary's shadow Service's."""
    return f"{name}-{SHADOW_TRACK}"


def shadow_target(meta: Obj, settings: Settings) -> str:
    """Where the stable pods send their copies: the canary's shadow Service."""
    return f"http://{shadow_name(meta['name'])}.{meta['namespace']}.svc.{settings.cluster_domain}:{SERVICE_PORT}"


def build_shadow_config_map(meta: Obj, spec: ModelDeploymentSpec, config: str) -> Obj:
    """The shadow config the stable pods re-read (modeldeploy_serving.shadow.config_text);
    empty: mirroring off. Kept while spec.rollout.shadow is set, emptied between shadows."""
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": shadow_name(name),
            "namespace": meta["namespace"],
            "labels": _shadow_labels(name, spec),
            "ownerReferences": [owner_reference(meta)],
        },
        "data": {SHADOW_FILE: config},
    }


def _shadow_labels(name: str, spec: ModelDeploymentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": name,
        NAME_LABEL: name,
        TRACK_LABEL: SHADOW_TRACK,
        **owner_labels(spec),
    }


def build_shadow_service(meta: Obj, spec: ModelDeploymentSpec) -> Obj:
    """`NAME-shadow`: the canary pods for the stable pods' copies during the shadow step.

    The canary pods are not Ready then (their readiness gate stays closed, so the model's
    Service and any HTTPRoute backend leave them out); this Service publishes them anyway
    (publishNotReadyAddresses), and only the stable pods' mirroring is told its name. It
    selects this version's pods only: publishing not-ready pods also publishes terminating
    ones, and a canary rolled back just before could still be answering in its grace period."""
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": shadow_name(name),
            "namespace": meta["namespace"],
            "labels": _shadow_labels(name, spec),
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {**selector_labels(name, "canary"), VERSION_LABEL: spec.model.version},
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
