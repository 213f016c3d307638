"""The chart's values: the schema accepts the defaults, refuses bad values by path, and the
values reference in the chart's README and docs/chart.md is what the schema says.

Helm validates values against values.schema.json itself (e2e/test_chart.py runs helm);
here the same schema runs in Python's jsonschema, so a schema mistake fails in seconds.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_reference", ROOT / "charts" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def errors(values: dict[str, Any]) -> list[tuple[str, str]]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [(error.json_path, error.message) for error in validator.iter_errors(values)]


def with_value(path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(DEFAULTS)
    *parents, last = path.split(".")
    node = values
    for part in parents:
        node = node[part]
    node[last] = value
    return values


def test_the_schema_is_valid_and_the_defaults_pass_it() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert errors(DEFAULTS) == []


def test_every_value_has_a_description_and_a_type() -> None:
    module = reference()
    for key, kind, _, text in module.rows(SCHEMA, DEFAULTS):
        assert text.strip() and kind.strip(), key


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("logFormat", "xml", "$.logFormat"),
        ("image.pullPolicy", "Sometimes", "$.image.pullPolicy"),
        ("replicas", -1, "$.replicas"),
        ("replicas", "2", "$.replicas"),
        ("healthPort", 80, "$.healthPort"),
        ("watchNamespaces", ["Bad_Namespace"], "$.watchNamespaces[0]"),
        ("defaultServingRequests", "cpu=lots", "$.defaultServingRequests"),
        ("prometheusUrl", "prometheus:9090", "$.prometheusUrl"),
        ("imagePullSecrets", ["regcred"], "$.imagePullSecrets[0]"),
        ("metrics.serviceMonitor.interval", "30 seconds", "$.metrics.serviceMonitor.interval"),
        ("pdb.minAvailable", 0, "$.pdb.minAvailable"),
        ("leaderElection.leaseDurationSeconds", 1, "$.leaderElection.leaseDurationSeconds"),
        ("replica", 2, "$"),  # a typo'd key is refused, never silently ignored
        ("metrics.serviceMonitor.enable", True, "$.metrics.serviceMonitor"),
        ("feedback.store.maxMemory", "256Mi", "$.feedback.store.maxMemory"),  # Redis's units, not Kubernetes'
        ("feedback.store.url", "redis-host:6379", "$.feedback.store.url"),
        ("feedback.store.url", "redis://redis:6379/cache", "$.feedback.store.url"),  # the operator wants a number
        ("feedback.store.existingSecret", "Team_Redis", "$.feedback.store.existingSecret"),
        ("feedback.store.persistence.size", "1 GB", "$.feedback.store.persistence.size"),
        ("feedback.store.persistence.enable", True, "$.feedback.store.persistence"),
    ],
)
def test_bad_values_are_refused_at_their_path(path: str, value: Any, where: str) -> None:
    found = errors(with_value(path, value))
    assert [w for w, _ in found] == [where], found


@pytest.mark.parametrize("document", ["charts/modeldeploy/README.md", "docs/chart.md"])
def test_the_values_reference_is_generated_from_the_schema(document: str) -> None:
    module = reference()
    text = (ROOT / document).read_text()
    assert module.render(text) == text, f"{document} is out of date; run python charts/reference.py"
    for key, *_ in module.rows(SCHEMA, DEFAULTS):
        assert f"| `{key}` |" in text
