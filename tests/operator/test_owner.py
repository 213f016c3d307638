"""Who owns a model (spec.owner), with plain data: validation, the team label on every
child, an owner change that relabels without a rollout, and the owner in Event notes."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator import reconcile as reconcile_module
from modeldeploy_operator.api.spec import ModelDeploymentSpec, Owner, about, parse_owner, parse_spec
from modeldeploy_operator.children.builders import (
    build_children,
    build_deployment,
    build_service,
    serving_spec,
    spec_hash,
)
from modeldeploy_operator.children.diffing import differs
from modeldeploy_operator.children.labels import NAME_LABEL, TEAM_LABEL, TRACK_LABEL
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status.conditions import MAX_NOTE_BYTES, event_note

from tests.operator.test_reconcile import NOW, PASS, Cluster, FakeJudge, FakeKube, canary_let_in, converged, run, step
from tests.operator.test_reconcile import spec as reconcile_spec

META = {"name": "fraud", "namespace": "ml", "uid": "3f0c1f9e-0000-4000-8000-000000000001"}
SETTINGS = Settings(serving_image="registry.example/modeldeploy:1.2.3")
MODEL = {"uri": "s3://models/fraud/7/model.onnx", "version": "7"}
OWNER = {"team": "fraud-ml", "contact": "#fraud-oncall", "runbook": "https://wiki.example.com/fraud"}


def spec(**extra: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": MODEL, **extra})


# Validation: the field, the bad value and what is accepted -------------------------------


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ({"team": "Fraud ML"}, "spec.owner.team: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' "),
        ({"team": "fraud-"}, "(got 'fraud-')"),
        ({"team": "t" * 64}, "spec.owner.team: String should have at most 63 characters"),
        ({"contact": "#fraud-oncall"}, "spec.owner.team: Field required"),
        ({"team": "fraud-ml", "contact": ""}, "spec.owner.contact: String should have at least 1 character"),
        ({"team": "fraud-ml", "contact": "call\nme"}, "spec.owner.contact: String should match pattern"),
        ({"team": "fraud-ml", "contact": "c" * 129}, "spec.owner.contact: String should have at most 128 characters"),
        ({"team": "fraud-ml", "runbook": "wiki/fraud"}, "spec.owner.runbook: String should match pattern '^https?://"),
        ({"team": "fraud-ml", "runbook": "https://wiki.example.com/a b"}, "(got 'https://wiki.example.com/a b')"),
        ({"team": "fraud-ml", "runbook": "https://" + "w" * 505}, "spec.owner.runbook: String should have at most 512"),
        ({"team": "fraud-ml", "pager": "123"}, "spec.owner.pager: Extra inputs are not permitted"),
    ],
)
def test_a_bad_owner_is_named_with_its_value(owner: dict[str, Any], expected: str) -> None:
    parsed, problem = parse_spec({"model": MODEL, "owner": owner})
    assert parsed is None and problem is not None
    assert expected in problem, problem


@pytest.mark.parametrize(
    "owner",
    [
        {"team": "fraud-ml"},
        {"team": "7", "contact": "Jürgen Weiß, +49 30 1234567 (pager)"},
        {"team": "t" * 63, "contact": "c" * 128, "runbook": "http://wiki:8080/runbooks/fraud?tab=rollback#drift"},
    ],
)
def test_a_good_owner_is_taken(owner: dict[str, Any]) -> None:
    parsed, problem = parse_spec({"model": MODEL, "owner": owner})
    assert problem is None and parsed is not None and parsed.owner is not None
    assert parsed.owner.team == owner["team"]


def test_the_owner_alone_is_read_from_an_invalid_spec() -> None:
    """An invalid spec's Events still say whom to call, when the owner itself is valid."""
    assert parse_owner({"replicas": -1, "owner": OWNER}) == Owner.model_validate(OWNER)
    assert parse_owner({"owner": {"team": "Bad Team"}}) is None
    assert parse_owner({"replicas": 1}) is None
    assert parse_owner(None) is None


# The team label on every child, never in a selector ---------------------------------------


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_the_team_labels_the_deployment_and_its_pods(track: str) -> None:
    deployment = build_deployment(META, spec(owner=OWNER), SETTINGS, track)
    assert deployment["metadata"]["labels"][TEAM_LABEL] == "fraud-ml"
    assert deployment["spec"]["template"]["metadata"]["labels"][TEAM_LABEL] == "fraud-ml"
    assert TEAM_LABEL not in deployment["spec"]["selector"]["matchLabels"], "a Deployment's selector is immutable"


@pytest.mark.parametrize("track", [None, "stable", "canary"])
def test_the_team_labels_every_service(track: str | None) -> None:
    service = build_service(META, spec(owner=OWNER), track)
    assert service["metadata"]["labels"][TEAM_LABEL] == "fraud-ml"
    assert TEAM_LABEL not in service["spec"]["selector"], "pods of any team behind the model's Service"


def test_no_owner_no_team_label() -> None:
    for child in build_children(META, spec(rollout={"traffic": {"httpRoute": {"name": "fraud"}}}), SETTINGS):
        assert TEAM_LABEL not in child["metadata"]["labels"]
        assert TEAM_LABEL not in ((child["spec"].get("template") or {}).get("metadata") or {}).get("labels", {})


def test_during_a_rollout_both_tracks_carry_the_current_team() -> None:
    """Stable keeps serving what it serves (its old model), but its owner is the spec's."""
    old = spec(owner={"team": "fraud-ml"})
    new = spec(model={**MODEL, "version": "8", "uri": "s3://models/fraud/8/model.onnx"}, owner={"team": "risk"})
    children = build_children(META, new, SETTINGS, stable=old, canary_replicas=1)
    deployments = {c["metadata"]["labels"][TRACK_LABEL]: c for c in children if c["kind"] == "Deployment"}
    assert deployments["stable"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "7"
    for deployment in deployments.values():
        assert deployment["spec"]["template"]["metadata"]["labels"][TEAM_LABEL] == "risk"


# An owner change is not a new version ----------------------------------------------------


def test_the_owner_is_not_part_of_what_the_pods_serve() -> None:
    plain, owned, other = spec(), spec(owner=OWNER), spec(owner={"team": "risk", "contact": "#risk"})
    assert "owner" not in serving_spec(owned)
    assert spec_hash(plain) == spec_hash(owned) == spec_hash(other), "a rollout starts only on a new spec hash"


def test_an_owner_change_relabels_without_starting_a_rollout() -> None:
    cluster, kube, memory = converged()
    hash_before = cluster.deployments["stable"]["metadata"]["annotations"]["modeldeploy.dev/spec-hash"]
    containers_before = cluster.deployments["stable"]["spec"]["template"]["spec"]["containers"]

    cluster.edit_spec(owner={"team": "risk", "contact": "#risk-oncall"})
    run(cluster, kube, memory)
    applied = [f"{obj['kind']} {obj['metadata']['name']}" for obj in kube.applied]
    assert applied == ["Service fraud", "Deployment fraud-stable"], "relabelled, and nothing else"
    cluster.take(kube)
    stable = cluster.deployments["stable"]
    assert stable["spec"]["template"]["metadata"]["labels"][TEAM_LABEL] == "risk"
    assert stable["metadata"]["annotations"]["modeldeploy.dev/spec-hash"] == hash_before
    assert stable["spec"]["template"]["spec"]["containers"] == containers_before
    assert cluster.canary is None and "canary" not in cluster.body["status"]
    assert not cluster.body["status"].get("history"), "no rollout started, none finished"


def test_a_new_team_during_a_rollout_relabels_both_tracks_and_the_rollout_carries_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    judge = FakeJudge([[PASS], [PASS]])
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"}, rollout={"steps": [25, 50]})
    step(cluster, kube, memory, judge)
    cluster.pods_ready("canary")
    step(cluster, kube, memory, judge)
    step(cluster, kube, memory, judge)
    rollout = cluster.body["status"]["canary"]
    assert (rollout["step"], judge.asked) == (0, ["signature 2 1", "begin 3"])

    cluster.edit_spec(owner={"team": "risk"})
    step(cluster, kube, memory, judge, seconds=10)
    for track, deployment in cluster.deployments.items():
        assert deployment["spec"]["template"]["metadata"]["labels"][TEAM_LABEL] == "risk", track
    stable_labels = cluster.deployments["stable"]["spec"]["template"]["metadata"]["labels"]
    assert stable_labels["app.kubernetes.io/version"] == "7", "stable still serves its version"
    status = cluster.body["status"]
    assert (status["canary"]["revision"], status["canary"]["specHash"]) == (rollout["revision"], rollout["specHash"])
    assert not status.get("history"), "the rollout was neither aborted nor replaced"

    cluster.pods_ready("canary")  # the relabelled canary pod, held out until the operator lets it in
    cluster.pods_ready("stable")
    step(cluster, kube, memory, judge)
    assert canary_let_in(cluster) == [True], "the new canary pod takes traffic without a new signature check"
    step(cluster, kube, memory, judge, seconds=60)
    assert judge.asked == ["signature 2 1", "begin 3", "verdict"]
    assert cluster.body["status"]["canary"]["step"] == 1, "the step was judged and the rollout moved on"


def test_taking_the_owner_out_takes_the_label_off() -> None:
    cluster, kube, memory = Cluster(reconcile_spec(owner=OWNER)), FakeKube(), None
    run(cluster, kube)
    cluster.take(kube)
    assert cluster.services["fraud"]["metadata"]["labels"][TEAM_LABEL] == "fraud-ml"
    cluster.body["spec"] = reconcile_spec()
    run(cluster, kube, memory)
    assert {obj["metadata"]["name"] for obj in kube.applied} == {"fraud", "fraud-stable"}
    cluster.take(kube)
    assert TEAM_LABEL not in cluster.services["fraud"]["metadata"]["labels"]
    assert TEAM_LABEL not in cluster.deployments["stable"]["spec"]["template"]["metadata"]["labels"]


def test_a_leftover_team_label_differs_but_other_extra_labels_do_not() -> None:
    wanted = {"metadata": {"labels": {NAME_LABEL: "fraud"}}}
    assert differs(wanted, {"metadata": {"labels": {NAME_LABEL: "fraud", TEAM_LABEL: "fraud-ml"}}})
    assert not differs(wanted, {"metadata": {"labels": {NAME_LABEL: "fraud", "pod-template-hash": "5d8f"}}})
    owned = {"metadata": {"labels": {NAME_LABEL: "fraud", TEAM_LABEL: "fraud-ml"}}}
    assert not differs(owned, {"metadata": {"labels": {NAME_LABEL: "fraud", TEAM_LABEL: "fraud-ml"}}})
    assert differs(owned, {"metadata": {"labels": {NAME_LABEL: "fraud", TEAM_LABEL: "risk"}}})


# Whom to call, in every Event ------------------------------------------------------------


def test_every_event_says_whom_to_call() -> None:
    cluster, kube = Cluster(reconcile_spec(owner=OWNER)), FakeKube()
    run(cluster, kube)
    assert kube.events == [
        ("Normal", "Creating", "creating the serving Deployment (owner: team fraud-ml, contact #fraud-oncall)")
    ]


def test_an_invalid_specs_event_still_says_whom_to_call() -> None:
    cluster, kube = Cluster(reconcile_spec(replicas=-1, owner={"team": "fraud-ml"})), FakeKube()
    run(cluster, kube)
    ((kind, reason, note),) = kube.events
    assert (kind, reason) == ("Warning", "InvalidSpec")
    assert note.startswith("spec.replicas: ") and note.endswith(" (owner: team fraud-ml)"), note


def test_an_event_note_without_an_owner_is_the_message() -> None:
    assert event_note("version 7: 2 of 2 replicas ready", None) == "version 7: 2 of 2 replicas ready"


def test_a_long_message_is_shortened_and_the_owner_kept_within_the_api_limit() -> None:
    owner = Owner.model_validate({"team": "t" * 63, "contact": "ü" * 128})
    note = event_note("x" * 2000, owner)
    assert len(note.encode()) <= MAX_NOTE_BYTES
    assert note.endswith(f"… (owner: team {'t' * 63}, contact {'ü' * 128})")
    assert len(event_note("é" * 2000, None).encode()) <= MAX_NOTE_BYTES


# Whom to call, in every webhook body ---------------------------------------------------


def test_every_webhook_body_names_the_owner_when_there_is_one() -> None:
    """The one helper every payload's `modelDeployment` object comes from (rollout notices,
    the preRollout gate, and a drift report built with it)."""
    assert about(META, Owner.model_validate(OWNER)) == {
        "namespace": "ml",
        "name": "fraud",
        "uid": META["uid"],
        "owner": {"team": "fraud-ml", "contact": "#fraud-oncall", "runbook": "https://wiki.example.com/fraud"},
    }
    assert about(META, Owner(team="risk")) == {
        "namespace": "ml",
        "name": "fraud",
        "uid": META["uid"],
        "owner": {"team": "risk"},
    }
    assert about(META, None) == {"namespace": "ml", "name": "fraud", "uid": META["uid"]}
