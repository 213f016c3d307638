"""The spec of what watches a model after it is served: drift detection, what a drift episode
triggers (a webhook, a retraining Job), and the production capture that feeds retraining.

Split from spec.py, which includes these models in ModelDeploymentSpec; docs/drift.md and
docs/capture.md explain them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from modeldeploy_operator.api.base import DURATION_PATTERN, NAME_PATTERN, ResourceModel, cel, credentials_secret_field


class SecretKeyRef(ResourceModel):
    """One key of a Secret in the ModelDeployment's namespace."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253, description="The Secret's name.")]
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="The key whose value is used.")]


class DriftWebhook(ResourceModel):
    """Where the drift report is POSTed as JSON, once per drift episode (docs/drift.md)."""

    url: Annotated[
        str, Field(pattern=r"^https?://[^\s/]+.*$", max_length=2048, description="http:// or https:// URL to POST to.")
    ]
    timeout: Annotated[
        str, Field(default="5s", pattern=DURATION_PATTERN, description="How long to wait for each answer.")
    ] = "5s"
    retries: Annotated[
        int,
        Field(
            default=3,
            ge=0,
            le=10,
            description="Attempts after the first when there is no answer, a 5xx, a 408 or a 429; other answers "
            "are final.",
        ),
    ] = 3
    backoff: Annotated[
        str,
        Field(
            default="1s",
            pattern=DURATION_PATTERN,
            description="The wait before the first retry, doubled before each next one.",
        ),
    ] = "1s"
    signing_secret: Annotated[
        SecretKeyRef | None,
        Field(
            default=None,
            description="A Secret key whose value signs the body: the X-Modeldeploy-Signature header carries "
            "sha256=HEX, the HMAC-SHA256 of the raw body.",
        ),
    ] = None


class JobTemplate(ResourceModel):
    """A batch/v1 Job's metadata and spec, as in a CronJob's jobTemplate."""

    metadata: Annotated[
        dict[str, Any] | None,
        Field(
            default=None,
            description="Labels and annotations for the Job (its name is the operator's).",
            json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        ),
    ] = None
    spec: Annotated[
        dict[str, Any],
        Field(
            description="A batch/v1 JobSpec: template.spec.containers is required; restartPolicy defaults to "
            "Never, and the restricted pod security settings are filled in where the template leaves them out.",
            json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        ),
    ]


OUTPUT_PATTERN = r"^(s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"


class Retraining(ResourceModel):
    """A Job started once per drift (or quality) episode, with the report mounted as a file;
    the model it reports comes back as a candidate version (docs/retraining.md)."""

    job_template: Annotated[
        JobTemplate,
        Field(
            description="The Job to create; its containers get MODELDEPLOY_DRIFT_REPORT, the report's path, and "
            "the variables docs/retraining.md lists (the data window, the base model, where to write)."
        ),
    ]
    output: Annotated[
        str | None,
        Field(
            default=None,
            pattern=OUTPUT_PATTERN,
            max_length=2048,
            description="Where the Job writes the candidate model: s3://BUCKET/PREFIX, or pvc://CLAIM/DIR (the "
            "claim is mounted in the Job). Given to the Job as MODELDEPLOY_RETRAINING_OUTPUT.",
        ),
    ] = None
    credentials_secret: Annotated[
        str | None,
        credentials_secret_field(
            "the environment of the candidate's check and, once it is adopted, of the serving pods' fetch step "
            "(spec.model.credentialsSecret is set to it): for an s3:// or http(s):// output the serving pods must "
            "read. Without it spec.model's is kept."
        ),
    ] = None
    adopt: Annotated[
        Literal["Manual", "Auto"],
        Field(
            default="Manual",
            description="Manual: a verified candidate waits in status until `kubectl modeldeploy adopt NAME`. "
            "Auto: the operator sets spec.model to it, which starts the normal rollout (gate, shadow, canary).",
        ),
    ] = "Manual"


class Drift(ResourceModel):
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
        Literal["psi", "jensen-shannon", "chi-square"],
        Field(
            default="psi",
            description="psi (population stability index), jensen-shannon (distance) or chi-square (a test per "
            "feature, Bonferroni-corrected): how live counts are compared with the reference profile.",
        ),
    ] = "psi"
    threshold: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            description="A feature drifts when its score passes this; default per method: psi 0.2, jensen-shannon "
            "0.16, chi-square 0.01 (a p-value). Small windows are held to a higher, sample-size-aware floor.",
        ),
    ] = None
    feature_share: Annotated[
        float,
        Field(
            default=0.3,
            gt=0,
            le=1,
            description="The deployment is Drifted when more than this share of its features drift (or its "
            "predictions, or a feature arrives empty).",
        ),
    ] = 0.3
    window: Annotated[
        str, Field(default="10m", pattern=DURATION_PATTERN, description="How much recent traffic is compared.")
    ] = "10m"
    interval: Annotated[
        str, Field(default="1m", pattern=DURATION_PATTERN, description="How often drift is evaluated.")
    ] = "1m"
    min_samples: Annotated[
        int, Field(default=200, ge=1, description="Rows needed in the window before drift is judged.")
    ] = 200
    webhook: Annotated[
        DriftWebhook | None,
        Field(default=None, description="A webhook told once per drift episode, with the drift report."),
    ] = None
    retraining: Annotated[
        Retraining | None,
        Field(default=None, description="A retraining Job created once per drift episode."),
    ] = None


class Feedback(ResourceModel):
    """Live quality from labels sent back by answer id (docs/feedback.md): each serving pod
    records its predictions in the operator's feedback store, labels posted to
    `/v2/models/NAME/feedback` join them, and every spec.drift.interval the stable version's
    live accuracy (or mean absolute error) over the window is judged against the profile's."""

    window: Annotated[
        str,
        Field(
            default="1h",
            pattern=DURATION_PATTERN,
            description="How long after its answer a label still joins its prediction (predictions are kept "
            "this long), and how much recent labelling the live quality covers, e.g. 1h, 168h for a week.",
        ),
    ] = "1h"
    min_labels: Annotated[
        int,
        Field(
            default=200,
            ge=1,
            description="Labels joined in the window before quality is judged; fewer is Inconclusive. A canary "
            "judged on labels (spec.rollout.analysis.maxAccuracyDrop) needs this many per track.",
        ),
    ] = 200
    max_accuracy_drop: Annotated[
        float,
        Field(
            default=0.05,
            gt=0,
            lt=1,
            description="Classifiers: Degraded when the live accuracy is below the profile's reference accuracy by "
            "more than this (absolute: 0.05 is 5 points) and the labels show it beyond chance (a one-sided test "
            "at 1% that counts the reference's own rows too).",
        ),
    ] = 0.05
    max_error_increase: Annotated[
        float,
        Field(
            default=0.2,
            gt=0,
            le=100,
            description="Regression: Degraded when the live mean absolute error is above the profile's reference "
            "error by more than this share of it (0.2: 20% higher) and the labels show it beyond chance.",
        ),
    ] = 0.2


SINK_PATTERN = r"^(s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/.*)?|https?://[^\s/]+.*)$"


class Capture(ResourceModel):
    """Production samples for retraining: a share of requests and their predictions, written in
    batches to object storage or an HTTP endpoint, off the request path."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.credentialsSecret) || self.sink.startsWith('s3://')",
                    "credentialsSecret is only used with an s3:// sink",
                    ".credentialsSecret",
                ),
                cel(
                    "duration(self.flushInterval) > duration('0s')",
                    "flushInterval must be more than 0s, e.g. 30s",
                    ".flushInterval",
                ),
            ]
        }
    )

    sink: Annotated[
        str,
        Field(
            pattern=SINK_PATTERN,
            max_length=2048,
            description="Where samples go: s3://BUCKET/PREFIX (JSON-lines objects under "
            "PREFIX/MODEL/VERSION/YYYY/MM/DD/) or an http(s):// URL (JSON lines POSTed with CloudEvents headers).",
        ),
    ]
    sample_rate: Annotated[
        float,
        Field(default=0.1, gt=0, le=1, description="Share of answered requests whose rows are captured, e.g. 0.1."),
    ] = 0.1
    max_rows_per_minute: Annotated[
        int,
        Field(
            default=600,
            ge=1,
            le=1_000_000,
            description="Most rows each serving pod captures per minute; rows past it are counted as dropped "
            "(reason row_cap).",
        ),
    ] = 600
    batch_size: Annotated[
        int,
        Field(default=500, ge=1, le=100_000, description="Rows per object or POST, at most."),
    ] = 500
    flush_interval: Annotated[
        str,
        Field(
            default="30s",
            pattern=DURATION_PATTERN,
            description="Longest a captured row waits before its batch is written, e.g. 30s, 5m.",
        ),
    ] = "30s"
    credentials_secret: Annotated[
        str | None,
        credentials_secret_field(
            "the serving container's environment, for an s3:// sink; without it the AWS SDK's usual chain applies."
        ),
    ] = None
