"""What every part of the ModelDeployment API is built from: the base model, CEL rules, durations.

spec.py (the spec), drift.py (drift, its responses, production capture) and
status.py (the status) all build on these; the operator's decisions parse durations
with parse_duration, so a duration means the same in the schema and in the code.
"""

from __future__ import annotations

import re
from typing import Any

from modeldeploy_serving.durations import seconds_in
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def parse_duration(text: str) -> float:
    """Seconds in a duration like 90s, 5m, 1h30m or 500ms (DURATION_PATTERN: whole numbers, as
    the schema allows); ValueError otherwise. The sum is the server's (durations.seconds_in)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h30m or 500ms")
    return seconds_in(text)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """A CEL validation rule for the CRD schema (x-kubernetes-validations)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ResourceModel(BaseModel):
    """The base of the resource's models: camelCase in YAML, unknown fields refused, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def credentials_secret_field(whose: str) -> Any:  # a FieldInfo; pydantic types Field(default=None) as None
    """spec's optional Secret of S3 credentials; `whose` ends the sentence: which container
    gets the keys as its environment, and what happens without it."""
    return Field(
        default=None,
        pattern=NAME_PATTERN,
        max_length=253,
        description="A Secret in the same namespace whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        f"AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL_S3) become {whose}",
    )
