"""The ModelDeployment API (modeldeploy.dev/v1alpha1), as pydantic models.

These models are the one source of truth for the resource: the CRD's OpenAPI schema in
crds/modeldeployment.yaml is generated from them (crd.py), so every description,
default, range and pattern below is what `kubectl explain` shows and what the API server
enforces. Cross-field rules that a schema cannot say are CEL rules, attached with
`cel(...)` next to the field they guard.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
MAX_NAME_LENGTH = 50  # leaves room for "-stable"/"-canary" within a 63-character label value

URI_PATTERN = r"^(file:///|/|https?://|s3://[^/]+/|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/).+"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """A CEL validation rule for the CRD schema (x-kubernetes-validations)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSource(_Model):
    """Where the model file is and how to check it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.credentialsSecret) || self.uri.startsWith('s3://') || self.uri.startsWith('http')",
                    "credentialsSecret is only used with s3:// and http(s):// URIs",
                    ".credentialsSecret",
                )
            ]
        }
    )

    uri: Annotated[
        str,
        Field(
            pattern=URI_PATTERN,
            max_length=2048,
            description="The ONNX model: file:///path or /path (already on the node image), http(s)://..., "
            "s3://BUCKET/KEY, or pvc://CLAIM/PATH (the claim is mounted read-only).",
        ),
    ]
    sha256: Annotated[
        str | None,
        Field(
            default=None,
            pattern=SHA256_PATTERN,
            description="The model file's sha256 as 64 lowercase hex characters; the pod refuses to serve a file "
            "that does not match.",
        ),
    ] = None
    version: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
            description="A label for this model version, shown in status, URLs and metrics; change it with the uri "
            "to roll out a new version.",
        ),
    ]
    credentials_secret: Annotated[
        str | None,
        Field(
            default=None,
            pattern=NAME_PATTERN,
            max_length=253,
            description="A Secret in the same namespace whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL_S3) become the fetch step's environment; never "
            "given to the serving container.",
        ),
    ] = None


class Batching(_Model):
    """Adaptive batching of concurrent requests into one ONNX Runtime call."""

    max_batch_size: Annotated[
        int, Field(default=32, ge=1, le=1024, description="Most rows merged into one call; 1 turns batching off.")
    ] = 32
    max_delay_micros: Annotated[
        int, Field(default=500, ge=0, le=100_000, description="Longest a batch waits to fill, in microseconds.")
    ] = 500


class Serving(_Model):
    """How each serving pod runs the model."""

    threads: Annotated[int, Field(default=1, ge=1, le=64, description="ONNX Runtime threads per pod.")] = 1
    batching: Annotated[Batching, Field(default_factory=Batching, description="Request batching.")]
    image: Annotated[
        str | None,
        Field(
            default=None,
            max_length=512,
            description="Serving image; defaults to the operator's --serving-image.",
        ),
    ] = None


class Resources(_Model):
    """CPU and memory for each serving pod, as in a container's resources."""

    requests: Annotated[
        dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] | None,
        Field(default=None, description="Requests, e.g. {cpu: 500m, memory: 512Mi}; defaults to the operator's."),
    ] = None
    limits: Annotated[
        dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] | None,
        Field(default=None, description="Limits, e.g. {memory: 1Gi}."),
    ] = None


class Analysis(_Model):
    """The checks a canary must pass at every step. Too little traffic is Inconclusive, never a pass."""

    max_error_rate: Annotated[
        float, Field(default=0.01, ge=0, le=1, description="Highest share of canary requests answered 5xx.")
    ] = 0.01
    max_latency_p99_ms: Annotated[
        float, Field(default=500, gt=0, description="Highest p99 canary request latency in milliseconds.")
    ] = 500
    max_prediction_shift: Annotated[
        float,
        Field(default=0.2, ge=0, description="Highest shift (PSI) between canary and stable prediction distributions."),
    ] = 0.2
    min_requests: Annotated[
        int, Field(default=50, ge=1, description="Canary requests needed in an interval before it is judged.")
    ] = 50


class HTTPRouteRef(_Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253, description="The HTTPRoute's name.")]


class Traffic(_Model):
    """How traffic is split; without httpRoute, weights come from replica counts."""

    http_route: Annotated[
        HTTPRouteRef | None,
        Field(default=None, description="A Gateway API HTTPRoute in the same namespace whose backend weights are set."),
    ] = None


class Rollout(_Model):
    """How a new model version goes out: canary steps, judged on live telemetry."""

    steps: Annotated[
        list[Annotated[int, Field(ge=1, le=99)]],
        Field(
            default_factory=lambda: [10, 25, 50],
            min_length=1,
            max_length=20,
            description="Canary traffic percentages, increasing; after the last step the canary is promoted to 100.",
            json_schema_extra={
                "x-kubernetes-list-type": "set",
                "x-kubernetes-validations": [cel("self.isSorted()", "steps must increase, e.g. [10, 25, 50]")],
            },
        ),
    ]
    interval: Annotated[
        str,
        Field(
            default="60s", pattern=DURATION_PATTERN, description="Time at each step before it is judged, e.g. 60s, 5m."
        ),
    ] = "60s"
    analysis: Annotated[Analysis, Field(default_factory=Analysis, description="The checks at each step.")]
    traffic: Annotated[Traffic, Field(default_factory=Traffic, description="How traffic is split.")]


class Drift(_Model):
    """Data drift detection on the features the model receives, against its reference profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("duration(self.window) >= duration(self.interval)", "window must be at least interval", ".window")
            ]
        }
    )

    enabled: Annotated[bool, Field(default=True, description="Watch for drift.")] = True
    method: Annotated[
        Literal["psi", "jensen-shannon"],
        Field(default="psi", description="Distance between live and reference feature distributions."),
    ] = "psi"
    threshold: Annotated[
        float,
        Field(
            default=0.2, gt=0, description="A feature drifts when its distance exceeds this (PSI: 0.2 is significant)."
        ),
    ] = 0.2
    window: Annotated[
        str, Field(default="10m", pattern=DURATION_PATTERN, description="How much recent traffic is compared.")
    ] = "10m"
    interval: Annotated[
        str, Field(default="1m", pattern=DURATION_PATTERN, description="How often drift is evaluated.")
    ] = "1m"
    min_samples: Annotated[
        int, Field(default=200, ge=1, description="Rows needed in the window before drift is judged.")
    ] = 200


class ModelDeploymentSpec(_Model):
    """A model to serve, and how to roll out its new versions."""

    model: Annotated[ModelSource, Field(description="The model file to serve.")]
    replicas: Annotated[int, Field(default=1, ge=0, le=1000, description="Serving pods of the stable version.")] = 1
    resources: Annotated[Resources, Field(default_factory=Resources, description="CPU and memory per pod.")]
    serving: Annotated[Serving, Field(default_factory=Serving, description="Serving options.")]
    rollout: Annotated[Rollout, Field(default_factory=Rollout, description="Canary rollout of new versions.")]
    drift: Annotated[Drift, Field(default_factory=Drift, description="Data drift detection.")]


# Status -------------------------------------------------------------------------------


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class TrackStatus(_Model):
    version: str | None = None
    revision: int | None = None
    uri: str | None = None
    sha256: str | None = None
    replicas: int = 0
    ready_replicas: int = 0


class ModelDeploymentStatus(_Model):
    """What the operator observed; written only by the operator."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = None
    phase: Literal["Pending", "Progressing", "Ready", "Degraded"] | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    url: str | None = None
    stable: TrackStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)
