"""The serving pod: a ModelDeployment's spec and the operator settings in, a pod template out.

An init container runs `modeldeploy fetch` (verifying the digest) into an emptyDir whose
size is bounded (the fetch step stops at MODEL_MAX_BYTES, the kubelet evicts past the
volume's sizeLimit: a model that never ends cannot fill the node's disk); the
server reads it from there and answers the protocol over REST (port `http`) and gRPC (port
`grpc`, HTTP/2 without TLS, which the Services mark with `appProtocol`). Both containers
run as a non-root user with a read-only root filesystem, no privilege escalation, no
capabilities and the RuntimeDefault seccomp profile: the Kubernetes "restricted" pod
security standard.

The stable pods also mount the shadow config (an optional ConfigMap, empty or absent unless
a shadow step mirrors to the canary): the server re-reads it, so a shadow starts and stops
without restarting stable pods. The mount is in every stable pod template; it is not part
of what the pods serve (the spec hash), so adding it restarts stable pods once (a rolling
update) and never starts a rollout. Both tracks get the resource's shadow token
(shadow_token): stable sends it with each copy, and the canary counts a request as a copy
only when it carries it, so a client cannot hide its requests from the canary's telemetry.

Pure, like builders.py, whose Deployments carry this template.
"""

from __future__ import annotations

import hashlib
import posixpath
import urllib.parse
from typing import Any

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.draining import POD_DRAIN

from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import Capture, Feedback
from modeldeploy_operator.api.spec import ModelDeploymentSpec, ModelSource
from modeldeploy_operator.children.labels import (
    DIGEST_ANNOTATION,
    TRAFFIC_GATE,
    URI_ANNOTATION,
    common_labels,
    shadow_name,
)
from modeldeploy_operator.settings import Settings

Obj = dict[str, Any]

GRACE_SECONDS = 40  # a leaving pod's drain (at most POD_DRAIN.max_seconds) and its last requests
SERVER_PORT = 8080
GRPC_PORT = 9000  # the container's and the Service's: tritonclient.grpc and KServe's examples use 9000 too
USER_ID = 65532
MODELS_DIR = "/models"
MODEL_MAX_BYTES = 2 * 1024**3  # the fetch step's --max-bytes: protobuf's limit, no ONNX file is larger
MODEL_VOLUME_LIMIT = f"{MODEL_MAX_BYTES // 2**20 + 256}Mi"  # the model emptyDir: the largest model, and room
PVC_DIR = "/mnt/model-claim"
FETCH_CONTAINER = "fetch-model"
POD_NAME_ENV = "MODELDEPLOY_POD_NAME"  # as modeldeploy_serving.server reads them
NAMESPACE_ENV = "MODELDEPLOY_NAMESPACE"
STORE_USERNAME_ENV = "MODELDEPLOY_FEEDBACK_STORE_USERNAME"
STORE_PASSWORD_ENV = "MODELDEPLOY_FEEDBACK_STORE_PASSWORD"  # noqa: S105 (the variable's name)
SERVER_CONTAINER = "server"
SHADOW_DIR = "/etc/modeldeploy/shadow"
SHADOW_FILE = "shadow.json"  # the ConfigMap's key, the file the stable server re-reads
SHADOW_VOLUME = "shadow-config"


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


def shadow_token(meta: Obj) -> str:
    """The value of the shadow header that marks a copy mirrored between this resource's pods.

    Derived from the resource's uid, which the API server makes at random: every pod of
    either track (and every operator replica) computes the same token, and a client of the
    model, who cannot read the cluster's objects, cannot know it. Whoever can read the
    namespace's pods can; they can read the model's telemetry anyway.
    """
    return hashlib.blake2b(f"modeldeploy shadow token\0{meta['uid']}".encode(), digest_size=16).hexdigest()


def fetch_step(model: ModelSource, image: str, pull_policy: str) -> tuple[Obj, list[Obj]]:
    """The init container that fetches the model into the `models` volume, verifying its
    digest, and the volumes it needs besides that one (a pvc, mounted read-only). The
    retraining candidate's check (drift/candidates.py) runs the same step."""
    source, volumes, mounts = _fetch_source(model.uri)
    fetch_args = ["fetch", source, "--dest", MODELS_DIR, "--max-bytes", str(MODEL_MAX_BYTES)]
    if model.sha256:
        fetch_args += ["--sha256", model.sha256]
    fetch: Obj = {
        "name": FETCH_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": fetch_args,
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, *mounts],
        "securityContext": _restricted_container(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    if model.credentials_secret:
        fetch["envFrom"] = [{"secretRef": {"name": model.credentials_secret}}]
    return fetch, volumes


def build_pod_template(meta: Obj, spec: ModelDeploymentSpec, settings: Settings, track: str) -> Obj:
    """The serving pod; a canary pod also has a readiness gate, so it takes no live traffic
    until the operator opens it (after the signature check)."""
    name = meta["name"]
    model = spec.model
    source = _fetch_source(model.uri)[0]
    fetch, volumes = fetch_step(model, spec.serving.image or settings.serving_image, settings.image_pull_policy)
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
        "env": [
            {"name": t.TRACK_ENV, "value": track},
            {"name": t.SHADOW_TOKEN_ENV, "value": shadow_token(meta)},
        ],
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
    if spec.feedback is not None and settings.feedback_store:
        _add_feedback(server, meta, spec.feedback, settings.feedback_store)
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
            {"name": "models", "emptyDir": {"sizeLimit": MODEL_VOLUME_LIMIT}},
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


def feedback_prefix(meta: Obj) -> str:
    """The deployment's part of every key in the shared feedback store: NAMESPACE/NAME, which
    no other ModelDeployment has (neither part can hold a '/')."""
    return f"{meta['namespace']}/{meta['name']}"


def _add_feedback(server: Obj, meta: Obj, feedback: Feedback, store: str) -> None:
    """The store (its URL without credentials), the window and the key prefix on the server's
    command line; the credentials, when the URL has them, as the variables the server reads."""
    parts = urllib.parse.urlsplit(store)
    host = parts.netloc.rpartition("@")[2]
    server["args"] += [
        "--feedback-store",
        urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)),
        "--feedback-window",
        f"{parse_duration(feedback.window):g}",
        "--feedback-prefix",
        feedback_prefix(meta),
    ]
    if parts.username:
        server["env"].append({"name": STORE_USERNAME_ENV, "value": urllib.parse.unquote(parts.username)})
    if parts.password:
        server["env"].append({"name": STORE_PASSWORD_ENV, "value": urllib.parse.unquote(parts.password)})


def _probe(path: str, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }
