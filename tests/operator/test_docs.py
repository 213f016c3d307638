"""docs/modeldeployment.md: generated from api/spec.py, and true to the code it describes."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator.api import crd, docs, reasons
from modeldeploy_operator.api.spec import MAX_NAME_LENGTH, ModelDeploymentSpec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "modeldeployment.md"
SOURCE = ROOT / "operator" / "modeldeploy_operator"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text()


def test_committed_doc_is_the_generated_one(text: str) -> None:
    assert text == docs.render(), (
        "docs/modeldeployment.md is not what api/spec.py and api/docs.py generate; regenerate it: "
        "python -m modeldeploy_operator.api.docs > docs/modeldeployment.md"
    )


def paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{prefix}.{name}"
        yield from paths(prop, f"{prefix}.{name}")


def test_every_spec_field_has_a_row(text: str) -> None:
    for path in paths(crd.spec_schema(), "spec"):
        assert f"| `{path}` |" in text


def test_every_status_field_has_a_row_and_a_description(text: str) -> None:
    schema = crd.status_schema()
    for path in paths(schema, "status"):
        if not path.startswith("status.conditions."):
            assert f"| `{path}` |" in text


def described_paths(schema: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{prefix}.{name}", prop.get("description", "")
        yield from described_paths(prop.get("items", prop), f"{prefix}.{name}")


def test_every_status_field_says_what_it_means() -> None:
    missing = [path for path, description in described_paths(crd.status_schema(), "status") if not description]
    assert missing == []


def test_every_reason_is_listed_once_and_documented(text: str) -> None:
    declared = [value for value in vars(reasons).values() if isinstance(value, reasons.Reason)]
    assert sorted(r.name for r in declared) == sorted(r.name for r in reasons.ALL), "a Reason missing from ALL"
    assert len({r.name for r in reasons.ALL}) == len(reasons.ALL)
    for reason in reasons.ALL:
        assert f"| `{reason.name}` | `{reason.ready}` |" in text
        assert reason.doc.strip()


def test_no_condition_reason_is_spelled_out_by_hand() -> None:
    """Conditions take a Reason object (mypy checks); a bare reason string would slip past the
    docs, so no module outside reasons.py may spell out a documented reason's name."""
    # Also spelled elsewhere: the Deployment's own ProgressDeadlineExceeded, and the history
    # outcomes RolledBack and Aborted (status.history[].outcome, a field of its own).
    # The drift verdicts Drifted and NoDrift are also status.drift.verdict values.
    outcomes = {"ProgressDeadlineExceeded", "RolledBack", "Aborted", "Drifted", "NoDrift"}
    names = {r.name for r in reasons.ALL} - outcomes
    for module in SOURCE.rglob("*.py"):
        if module == SOURCE / "api" / "reasons.py":
            continue
        tree = ast.parse(module.read_text())
        spelled = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in names}
        assert spelled == set(), (
            f"{module.relative_to(SOURCE)} spells out {spelled}; use modeldeploy_operator.api.reasons"
        )


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
