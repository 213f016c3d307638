"""The ModelDeployment API (modeldeploy.dev/v1alpha1), as pydantic models.

These models are the one source of truth for the resource: the CRD's OpenAPI schema in
crds/modeldeployment.yaml is generated from them (crd.py), so every description,
default, range and pattern below is what `kubectl explain` shows and what the API server
enforces. Cross-field rules that a schema cannot say are CEL rules, attached with
`cel(...)` next to the field they guard. The spec is here (drift, its responses and the
capture in drift.py); the status is in status.py; what they share in base.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from modeldeploy_operator.api.base import DURATION_PATTERN, NAME_PATTERN, ResourceModel, cel
from modeldeploy_operator.api.drift import Capture, Drift

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
        Field(
            default=None,
            pattern=NAME_PATTERN,
            max_length=253,
            description="A Secret in the same namespace whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL_S3) become the fetch step's environment; never "
            "given to the serving container.",
        ),
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


class Analysis(ResourceModel):
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
    max_cost_increase: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            description="Highest canary-over-stable ratio of CPU seconds per 1,000 predictions, e.g. 1.5; "
            "without it the cost is reported but never fails a step.",
        ),
    ] = None
    min_agreement: Annotated[
        float,
        Field(
            default=0.9,
            ge=0,
            le=1,
            description="Shadow step: lowest share of mirrored rows on which the canary predicts the same label "
            "as stable (models with a label output).",
        ),
    ] = 0.9
    max_output_delta_p95: Annotated[
        float | None,
        Field(
            default=None,
            ge=0,
            description="Shadow step: highest 95th percentile of |stable - canary| per mirrored row, for scores "
            "and regression outputs, in the output's units; without it the difference is reported but never "
            "fails the shadow step.",
        ),
    ] = None
    dry_run: Annotated[
        bool,
        Field(
            default=False,
            description="Compute, show and record every check, but never roll back on one (steps still wait "
            "while a check is Inconclusive).",
        ),
    ] = False


class HTTPRouteRef(ResourceModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253, description="The HTTPRoute's name.")]


class Traffic(ResourceModel):
    """How traffic is split; without httpRoute, weights come from replica counts."""

    http_route: Annotated[
        HTTPRouteRef | None,
        Field(default=None, description="A Gateway API HTTPRoute in the same namespace whose backend weights are set."),
    ] = None


class Webhook(ResourceModel):
    """A URL the rollout calls with a JSON body: a gate before the canary's first live request,
    or a notification when a rollout ends."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63, description="A name for messages and Events.")]
    url: Annotated[
        str, Field(pattern=r"^https?://[^\s/]+.*$", max_length=2048, description="http:// or https:// URL to POST to.")
    ]
    type: Annotated[
        Literal["preRollout", "promoted", "rolledBack"],
        Field(
            description="preRollout: called before the canary takes live traffic; a non-2xx answer (or none) holds "
            "the rollout, which tries again until progressDeadline. promoted, rolledBack: told when a rollout ends "
            "(rolledBack also on an abort)."
        ),
    ]
    timeout: Annotated[
        str, Field(default="5s", pattern=DURATION_PATTERN, description="How long to wait for an answer.")
    ] = "5s"


class Shadow(ResourceModel):
    """A shadow step before the first live step: the canary answers a copy of live requests,
    compared with stable's answers on the same inputs, and takes no live traffic."""

    fraction: Annotated[
        float,
        Field(default=1.0, gt=0, le=1, description="Share of stable's answered requests mirrored to the canary."),
    ] = 1.0
    duration: Annotated[
        str | None,
        Field(
            default=None,
            pattern=DURATION_PATTERN,
            description="How long the canary is mirrored to before the shadow step is judged; default "
            "spec.rollout.interval.",
        ),
    ] = None
    min_requests: Annotated[
        int | None,
        Field(
            default=None,
            ge=1,
            description="Mirrored requests needed before the shadow step is judged; default "
            "spec.rollout.analysis.minRequests.",
        ),
    ] = None


class Rollout(ResourceModel):
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
    progress_deadline: Annotated[
        str,
        Field(
            default="10m",
            pattern=DURATION_PATTERN,
            description="Longest a canary may start, or stay Inconclusive at a step, before it is rolled back "
            "(reason ProgressDeadlineExceeded).",
        ),
    ] = "10m"
    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=10,
        description="Webhooks: a preRollout gate, and notifications when a rollout is promoted or rolled back.",
    )
    shadow: Annotated[
        Shadow | None,
        Field(
            default=None,
            description="A shadow step before the first live step (`shadow: {}` for the defaults); off unless given. "
            "Do not mirror a model with side effects: every mirrored request is answered twice.",
            json_schema_extra={"x-modeldeploy-off-unless-given": True},
        ),
    ] = None
    manual_promotion: Annotated[
        bool,
        Field(
            default=False,
            description="After the last step passes, wait for `kubectl modeldeploy promote NAME` instead of "
            "promoting on its own.",
        ),
    ] = False


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
