"""Where a model version came from: its file, its origin (applied by a user, or retrained
by an episode's Job), and what a retraining Job proposed. Shown on status.stable, on each
status.history entry and on status.drift.retraining / status.quality.retraining
(docs/retraining.md).

Pure: pydantic only; status.py includes these models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modeldeploy_operator.api.base import ResourceModel


class ModelRef(ResourceModel):
    """A model file and its digest."""

    uri: Annotated[str, Field(description="The model file.")]
    sha256: Annotated[str | None, Field(description="Its digest, when one is given.")] = None


class DataWindow(ResourceModel):
    """The production rows a retraining Job was given: captured from `since` until `until`."""

    since: Annotated[str, Field(description="The window's start (RFC 3339).")]
    until: Annotated[str, Field(description="Its end (RFC 3339).")]


class Origin(ResourceModel):
    """Applied: a user (or Git) set spec.model to this version. Retrained: an episode's
    retraining Job trained it from the base version on the data window's rows."""

    kind: Annotated[Literal["Applied", "Retrained"], Field(description="Applied or Retrained.")]
    job: Annotated[str | None, Field(description="Retrained: the Job that trained it.")] = None
    episode: Annotated[int | None, Field(description="Retrained: the episode the Job was created for.")] = None
    episode_kind: Annotated[
        Literal["drift", "quality"] | None,
        Field(description="Retrained: a drift episode (status.drift) or a quality episode (status.quality)."),
    ] = None
    base_version: Annotated[str | None, Field(description="Retrained: the version it was retrained from.")] = None
    data_window: Annotated[DataWindow | None, Field(description="Retrained: the production rows it was given.")] = None
    trained_rows: Annotated[int | None, Field(description="Retrained: the rows it was trained on.")] = None


APPLIED = Origin(kind="Applied")


class Candidate(ResourceModel):
    """The model a retraining Job reported in its termination message (docs/retraining.md)."""

    uri: Annotated[str, Field(description="Where the Job wrote the model.")]
    sha256: Annotated[str, Field(description="Its digest, as the Job reported it and the operator verified it.")]
    version: Annotated[str, Field(description="The version label it is adopted with.")]
    metrics: dict[str, float] = Field(
        default_factory=dict, description="What the Job measured, e.g. the old and new model's held-out accuracy."
    )
    trained_rows: Annotated[int | None, Field(description="Rows it was trained on.")] = None
    base_version: Annotated[str | None, Field(description="The version it was retrained from.")] = None
    data_window: Annotated[DataWindow | None, Field(description="The production rows the Job was given.")] = None
