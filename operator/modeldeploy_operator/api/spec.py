"""The ModelDeployment API (modeldeploy.dev/v1alpha1), as pydantic models.

These models are the one source of truth for the resource: the CRD's OpenAPI schema in
crds/modeldeployment.yaml is generated from them (crd.py), so every description,
default, range and pattern below is what `kubectl explain` shows and what the API server
enforces. Cross-field rules that a schema cannot say are CEL rules, attached with
`cel(...)` next to the field they guard. The spec is here (the rollout's part in
rollout.py; drift, its responses and the capture in drift.py); the status is in
status.py; what they share in base.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError

from modeldeploy_operator.api.base import NAME_PATTERN, ResourceModel, cel, credentials_secret_field
from modeldeploy_operator.api.drift import Capture, Drift, Feedback
from modeldeploy_operator.api.rollout import Rollout

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
MAX_NAME_LENGTH = 50  # leaves room for "-stable"/"-canary" within a 63-character label value

URI_PATTERN = r"^(file:///|/|https?://|s3://[^/]+/|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/).+"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
TEAM_PATTERN = NAME_PATTERN  # a DNS label: also a valid label value, so children can carry it
RUNBOOK_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # no newlines or other control characters
MAX_CONTACT_LENGTH = 128
MAX_RUNBOOK_LENGTH = 512


class ModelSource(ResourceModel):
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
        credentials_secret_field("the fetch step's environment; never given to the serving container."),
    ] = None


class Batching(ResourceModel):
    """Adaptive batching of concurrent requests into one ONNX Runtime call."""

    max_batch_size: Annotated[
        int, Field(default=32, ge=1, le=1024, description="Most rows merged into one call; 1 turns batching off.")
    ] = 32
    max_delay_micros: Annotated[
        int, Field(default=500, ge=0, le=100_000, description="Longest a batch waits to fill, in microseconds.")
    ] = 500


class Serving(ResourceModel):
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


class Resources(ResourceModel):
    """CPU and memory for each serving pod, as in a container's resources."""

    requests: Annotated[
        dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] | None,
        Field(default=None, description="Requests, e.g. {cpu: 500m, memory: 512Mi}; defaults to the operator's."),
    ] = None
    limits: Annotated[
        dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] | None,
        Field(default=None, description="Limits, e.g. {memory: 1Gi}."),
    ] = None


class Owner(ResourceModel):
    """Who owns this model and whom to call: shown in `kubectl get mdep -o wide`, the plugin's
    status, every Event and the webhooks' payloads; the team also labels every child."""

    team: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=TEAM_PATTERN,
            description="The owning team as a DNS label (lowercase letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63), e.g. fraud-ml; copied as the label modeldeploy.dev/team onto "
            "the Deployments, their pods and the Services, so `kubectl get deploy,svc,pods -l "
            "modeldeploy.dev/team=fraud-ml` finds them.",
        ),
    ]
    contact: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=MAX_CONTACT_LENGTH,
            pattern=ONE_LINE_PATTERN,
            description="Whom to call, as one line of free text, e.g. '#fraud-oncall on Slack, fraud-ml@example.com'.",
        ),
    ] = None
    runbook: Annotated[
        str | None,
        Field(
            default=None,
            max_length=MAX_RUNBOOK_LENGTH,
            pattern=RUNBOOK_PATTERN,
            description="The runbook's http:// or https:// URL, without spaces.",
        ),
    ] = None

    def summary(self) -> str:
        """Team and contact in a few words, for Event notes: 'team fraud-ml, contact #fraud-oncall'.
        The runbook is left out: a long URL would crowd out the Event's own message."""
        return f"team {self.team}" + (f", contact {self.contact}" if self.contact else "")


def about(meta: dict[str, Any], owner: Owner | None) -> dict[str, Any]:
    """Which ModelDeployment a webhook body is about, and who owns it: the `modelDeployment`
    object of every payload the operator sends (`owner` only when the spec names one), so a
    receiver can route it to the team."""
    subject: dict[str, Any] = {"namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid")}
    if owner is not None:
        subject["owner"] = owner.model_dump(by_alias=True, exclude_none=True, mode="json")
    return subject


class ModelDeploymentSpec(ResourceModel):
    """A model to serve, and how to roll out its new versions."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.rollout) || !has(self.rollout.analysis) || "
                    "!has(self.rollout.analysis.maxAccuracyDrop) || has(self.feedback)",
                    "rollout.analysis.maxAccuracyDrop judges the canary on labels sent back: it needs spec.feedback "
                    "(e.g. feedback: {})",
                    ".rollout.analysis.maxAccuracyDrop",
                )
            ]
        }
    )

    model: Annotated[ModelSource, Field(description="The model file to serve.")]
    replicas: Annotated[int, Field(default=1, ge=0, le=1000, description="Serving pods of the stable version.")] = 1
    resources: Annotated[Resources, Field(default_factory=Resources, description="CPU and memory per pod.")]
    serving: Annotated[Serving, Field(default_factory=Serving, description="Serving options.")]
    rollout: Annotated[Rollout, Field(default_factory=Rollout, description="Canary rollout of new versions.")]
    drift: Annotated[Drift, Field(default_factory=Drift, description="Data drift detection.")]
    owner: Annotated[
        Owner | None,
        Field(
            default=None,
            description="Who owns this model and whom to call. Changing it never starts a rollout: a new team "
            "relabels the children (the Deployments replace their pods one by one), a new contact or runbook "
            "changes no child.",
        ),
    ] = None
    capture: Annotated[
        Capture | None,
        Field(default=None, description="Production samples for retraining; off unless given."),
    ] = None
    feedback: Annotated[
        Feedback | None,
        Field(
            default=None,
            description="Labels joined to the predictions that made them: live accuracy per version, "
            "status.quality and the QualityDegraded condition; off unless given (docs/feedback.md).",
            json_schema_extra={"x-modeldeploy-off-unless-given": True},
        ),
    ] = None


def spec_problem(error: ValidationError) -> str:
    """The first validation error as 'spec.a.b: message (got value)'."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in ("spec", *first["loc"]))
    return f"{where}: {first['msg']} (got {first.get('input')!r})"


def parse_owner(raw: dict[str, Any] | None) -> Owner | None:
    """spec.owner alone, when it is valid: an invalid spec's Events still say whom to call."""
    try:
        return Owner.model_validate((raw or {}).get("owner")) if (raw or {}).get("owner") else None
    except ValidationError:
        return None


def parse_spec(raw: dict[str, Any] | None) -> tuple[ModelDeploymentSpec | None, str | None]:
    """(spec, None), or (None, what is wrong with it naming the field)."""
    try:
        return ModelDeploymentSpec.model_validate(raw or {}), None
    except ValidationError as error:
        return None, spec_problem(error)
