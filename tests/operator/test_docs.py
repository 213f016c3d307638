"""docs/modeldeployment.md: generated from api.py, and true to the code it describes."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator import crd, docs
from modeldeploy_operator.api import MAX_NAME_LENGTH, ModelDeploymentSpec
from modeldeploy_operator.conditions import DRIFT_DETECTED, READY, RECONCILING, STALLED
from modeldeploy_operator.status import IMAGE_FAILURES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "modeldeployment.md"
SOURCE = ROOT / "operator" / "modeldeploy_operator"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text()


def test_committed_doc_is_the_generated_one(text: str) -> None:
    assert text == docs.render(), (
        "docs/modeldeployment.md is not what api.py and docs.py generate; regenerate it: "
        "python -m modeldeploy_operator.docs > docs/modeldeployment.md"
    )


def paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{prefix}.{name}"
        yield from paths(prop, f"{prefix}.{name}")


def test_every_spec_field_has_a_row(text: str) -> None:
    for path in paths(crd.spec_schema(), "spec"):
        assert f"| `{path}` |" in text


def test_every_status_field_is_described() -> None:
    described = {path for path, _ in docs.STATUS_FIELDS}
    assert set(paths(crd.STATUS_SCHEMA, "status")) - {"status.conditions"} - described == set()
    assert described <= set(paths(crd.STATUS_SCHEMA, "status"))


def reasons_in_code() -> set[str]:
    """Capitalised words in the modules that decide conditions, minus what is not a reason."""
    words: set[str] = set()
    for module in ("status.py", "reconcile.py"):
        tree = ast.parse((SOURCE / module).read_text())
        words |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"[A-Z][A-Za-z]+", node.value)
        }
    not_reasons = {"Pending", "Progressing", "Ready", "Degraded", "True", "False", "Unknown", "Normal", "Warning"}
    return words - not_reasons - set(IMAGE_FAILURES) - {READY, RECONCILING, STALLED, DRIFT_DETECTED}


def test_every_reason_the_code_gives_is_documented() -> None:
    documented = {reason for reason, *_ in docs.REASONS}
    assert documented == reasons_in_code()
    assert documented == {
        "Creating",
        "RollingOut",
        "Serving",
        "FetchFailed",
        "ImagePullFailed",
        "ServerCrashing",
        "ProgressDeadlineExceeded",
        "InvalidSpec",
        "ApplyFailed",
    }


def test_the_example_is_a_valid_model_deployment(text: str) -> None:
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    example = yaml.safe_load(block.group(1))
    assert example["kind"] == "ModelDeployment"
    assert len(example["metadata"]["name"]) <= MAX_NAME_LENGTH
    ModelDeploymentSpec.model_validate(example["spec"])


def test_printer_columns_are_all_listed(text: str) -> None:
    for column in crd.PRINTER_COLUMNS:
        assert f"| {column['name']} | `{column['jsonPath']}` |" in text


@pytest.mark.parametrize(
    "command",
    [
        "kubectl wait --for=condition=Ready mdep/NAME",
        "kubectl scale mdep/NAME --replicas 3",
        "kubectl explain modeldeployment.spec.rollout",
    ],
)
def test_commands(text: str, command: str) -> None:
    assert command in text


def test_links_point_at_existing_docs(text: str) -> None:
    for target in re.findall(r"\]\(([^)#]+\.md)\)", text):
        assert (DOC.parent / target).exists(), target
