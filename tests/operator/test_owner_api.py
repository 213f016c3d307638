"""Who owns a model (spec.owner), against the local cluster's real API server.

The API server refuses a bad owner naming the field, the value and what is accepted, before
the operator sees it; a good one labels every child with the team, shows in `kubectl get
mdep -o wide` and in the Events' notes; and changing it relabels the children without
starting a canary.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import OperatorLauncher, wait_for
from tests.operator.test_operator_api import URI, current, get, manifest, refused

TEAM_LABEL = "modeldeploy.dev/team"
OWNER = {"team": "fraud-ml", "contact": "#fraud-oncall on Slack", "runbook": "https://wiki.example.com/fraud"}


TEAM_RULE = "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ({"team": "Fraud ML"}, ['spec.owner.team: Invalid value: "Fraud ML"', TEAM_RULE]),
        ({"team": "fraud-"}, ['spec.owner.team: Invalid value: "fraud-"', TEAM_RULE]),
        ({"team": "t" * 64}, ["spec.owner.team: Too long: may not be more than 63"]),
        ({"contact": "#fraud-oncall"}, ["spec.owner.team: Required value"]),
        (
            {"team": "fraud-ml", "contact": "call\nme"},
            ['spec.owner.contact: Invalid value: "call\\nme"', "should match"],
        ),
        ({"team": "fraud-ml", "contact": "c" * 129}, ["spec.owner.contact: Too long: may not be more than 128"]),
        (
            {"team": "fraud-ml", "runbook": "wiki/fraud"},
            ['spec.owner.runbook: Invalid value: "wiki/fraud"', "^https?://"],
        ),
        ({"team": "fraud-ml", "runbook": "https://w.example/a b"}, ['Invalid value: "https://w.example/a b"']),
        ({"team": "fraud-ml", "pager": "123"}, ['unknown field "spec.owner.pager"']),
    ],
)
def test_a_bad_owner_is_refused_naming_the_field_and_the_value(
    crd_installed: Cluster, namespace: str, owner: dict[str, Any], expected: list[str]
) -> None:
    message = refused(crd_installed, namespace, manifest("bad", owner=owner))
    for words in expected:
        assert words in message, message


def labels(obj: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


def test_the_team_labels_every_child_and_shows_in_wide_output_and_events(
    operators: OperatorLauncher, namespace: str
) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud", owner=OWNER))
    current(kube, namespace, "fraud")

    deployment = wait_for("the stable Deployment", lambda: get(kube, namespace, "deployment", "fraud-stable"))
    service = get(kube, namespace, "service", "fraud")
    assert labels(deployment)[TEAM_LABEL] == "fraud-ml"
    assert labels(deployment["spec"]["template"])[TEAM_LABEL] == "fraud-ml"
    assert labels(service)[TEAM_LABEL] == "fraud-ml"
    assert TEAM_LABEL not in deployment["spec"]["selector"]["matchLabels"], "a selector cannot change later"
    selected = kube.kubectl("-n", namespace, "get", "deploy,svc", "-l", f"{TEAM_LABEL}=fraud-ml", "-o", "name")
    assert sorted(selected.split()) == ["deployment.apps/fraud-stable", "service/fraud"]

    header, row = kube.kubectl("-n", namespace, "get", "mdep", "fraud", "-o", "wide").splitlines()
    assert header.split()[-2:] == ["TEAM", "CONTACT"], header
    team, contact = header.index("TEAM"), header.index("CONTACT")
    assert (row[team:contact].strip(), row[contact:].strip()) == ("fraud-ml", "#fraud-oncall on Slack"), row
    assert "TEAM" not in kube.kubectl("-n", namespace, "get", "mdep", "fraud"), "only with -o wide"

    def notes() -> list[str] | None:
        events = get(kube, namespace, "events.events.k8s.io")["items"]
        found = [e.get("note", "") for e in events if e["regarding"]["name"] == "fraud"]
        return found or None

    (note, *_) = wait_for("an Event on the ModelDeployment", notes)
    assert note.endswith("(owner: team fraud-ml, contact #fraud-oncall on Slack)"), note


def test_changing_the_owner_relabels_without_a_rollout(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud", owner=OWNER))
    current(kube, namespace, "fraud")
    before = wait_for("the stable Deployment", lambda: get(kube, namespace, "deployment", "fraud-stable"))

    patch = {"spec": {"owner": {"team": "risk", "contact": "#risk-oncall"}}}
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--type=merge", "-p", json.dumps(patch))
    after = wait_for(
        "the team label to change",
        lambda: (
            (d := get(kube, namespace, "deployment", "fraud-stable"))["spec"]["template"]["metadata"]["labels"][
                TEAM_LABEL
            ]
            == "risk"
            and d
        ),
    )
    assert labels(after)[TEAM_LABEL] == "risk"
    assert labels(get(kube, namespace, "service", "fraud"))[TEAM_LABEL] == "risk"
    status = current(kube, namespace, "fraud")["status"]
    assert "canary" not in status and not status.get("history"), status
    deployments = get(kube, namespace, "deployments")["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["fraud-stable"], "no canary for a new owner"
    hash_key = "modeldeploy.dev/spec-hash"
    assert after["metadata"]["annotations"][hash_key] == before["metadata"]["annotations"][hash_key]
    assert after["spec"]["template"]["spec"]["containers"] == before["spec"]["template"]["spec"]["containers"]

    # Taking the owner out takes the label off: the children say no team rather than an old one.
    patch_out = [{"op": "remove", "path": "/spec/owner"}]
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--type=json", "-p", json.dumps(patch_out))
    wait_for(
        "the team label to go",
        lambda: (
            TEAM_LABEL not in labels(get(kube, namespace, "deployment", "fraud-stable"))
            and TEAM_LABEL not in labels(get(kube, namespace, "service", "fraud"))
        ),
    )
    assert URI in json.dumps(get(kube, namespace, "deployment", "fraud-stable")["spec"]["template"])
    assert "canary" not in current(kube, namespace, "fraud")["status"]
