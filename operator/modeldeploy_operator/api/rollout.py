"""spec.rollout: how a new model version goes out, as pydantic models.

The canary steps and their interval, the checks each step must pass (Analysis), how the
traffic is split (replica counts, or an HTTPRoute's weights), the shadow step before the
first live step, and the webhooks a rollout calls. ModelDeploymentSpec (spec.py) includes
them; docs/rollouts.md explains them to users, and the rollout package acts on them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modeldeploy_operator.api.base import DURATION_PATTERN, NAME_PATTERN, ResourceModel, cel

# Every check status can show (status.canary.analysis[].check). Those judged over a step's
# window are in rollout/analysis.py's check tables, each with its limit's field below.
CheckName = Literal[
    "signature",
    "webhook",
    "errorRate",
    "latencyP99",
    "latencyP50Ratio",
    "predictionShift",
    "cost",
    "agreement",
    "outputDelta",
    "accuracy",
]


class Analysis(ResourceModel):
    """The checks a canary must pass at every step. Too little traffic is Inconclusive, never a pass."""

    max_error_rate: Annotated[
        float, Field(default=0.01, ge=0, le=1, description="Highest share of canary requests answered 5xx.")
    ] = 0.01
    max_latency_p99_ms: Annotated[
        float, Field(default=500, gt=0, description="Highest p99 canary request latency in milliseconds.")
    ] = 500
    max_latency_p50_ratio: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            description="Highest canary-over-stable ratio of p50 request latency, e.g. 2; without it the ratio "
            "is reported but never fails a step.",
        ),
    ] = None
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
    max_accuracy_drop: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            lt=1,
            description="Highest drop of the canary's live accuracy below stable's over the same interval, from "
            "labels sent back (spec.feedback), e.g. 0.05 for 5 points; a drop beyond it and beyond chance rolls "
            "back. Each version needs spec.feedback.minLabels labels in the interval, else the step waits. "
            "Without it the accuracies are reported but never fail a step.",
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
