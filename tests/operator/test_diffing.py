"""The semantic diff: only the fields we set count, quantities compare by value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from modeldeploy_operator.children.diffing import differs, quantity


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("0.5", "500m"),
        ("1Gi", "1024Mi"),
        ("1", "1000m"),
        ("1k", "1000"),
        ("2Mi", "2097152"),
        ("1.5Gi", "1536Mi"),
        ("100.5Mi", "102912Ki"),  # the API server writes binary quantities in Ki when Mi is not whole
    ],
)
def test_equal_quantities_do_not_differ(left: str, right: str) -> None:
    desired = {"resources": {"requests": {"cpu": left}}}
    assert not differs(desired, {"resources": {"requests": {"cpu": right}}})
    assert not differs({"resources": {"requests": {"cpu": right}}}, {"resources": {"requests": {"cpu": left}}})


@pytest.mark.parametrize(("left", "right"), [("500m", "501m"), ("1Gi", "1G"), ("1", "1Ki")])
def test_different_quantities_differ(left: str, right: str) -> None:
    assert differs({"resources": {"limits": {"memory": left}}}, {"resources": {"limits": {"memory": right}}})


def test_quantities_compare_by_value_only_under_resources() -> None:
    assert differs({"metadata": {"labels": {"version": "0.5"}}}, {"metadata": {"labels": {"version": "500m"}}})


@pytest.mark.parametrize(
    ("text", "value"), [("500m", Decimal("0.5")), ("1Ki", Decimal(1024)), ("3", Decimal(3)), ("2Ti", Decimal(2**41))]
)
def test_quantity(text: str, value: Decimal) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Xi", "1.2.3", "1K"])
def test_not_a_quantity(text: str) -> None:
    assert quantity(text) is None


def test_extra_fields_in_actual_are_ignored() -> None:
    desired = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server", "image": "a"}]}}}}
    actual = {
        "metadata": {"resourceVersion": "42", "managedFields": [{}]},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "server", "image": "a", "terminationMessagePath": "/x"}]}},
        },
        "status": {"readyReplicas": 2},
    }
    assert not differs(desired, actual)


@pytest.mark.parametrize(
    "actual",
    [
        {"spec": {"ports": [{"port": 80}]}},
        {"spec": {"ports": [{"port": 80}, {"port": 8080}, {"port": 9090}]}},
        {"spec": {"ports": []}},
        {"spec": {"ports": None}},
        {"spec": {}},
    ],
)
def test_list_length_changes_are_detected(actual: dict[str, Any]) -> None:
    assert differs({"spec": {"ports": [{"port": 80}, {"port": 8080}]}}, actual)


@pytest.mark.parametrize(
    ("desired", "actual"),
    [
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {}),
        ({"a": {"b": 1}}, {"a": "x"}),
        ({"a": [1, 2]}, {"a": [2, 1]}),
        ({"a": False}, {"a": None}),
        ({"a": ""}, {}),
    ],
)
def test_changed_or_missing_values_differ(desired: dict[str, Any], actual: dict[str, Any]) -> None:
    assert differs(desired, actual)


def test_equal_objects_do_not_differ() -> None:
    obj = {"a": [{"b": 1}, {"c": [1, 2]}], "d": None, "e": {"f": "g"}}
    assert not differs(obj, obj)
