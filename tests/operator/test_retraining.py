"""The response to drift, pure: episodes, what is due, the report, its signature, the Job."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from modeldeploy_operator.api.drift import JobTemplate
from modeldeploy_operator.api.spec import Owner
from modeldeploy_operator.api.status import DriftEpisode, DriftStatus, RetrainingStatus
from modeldeploy_operator.drift import retraining

META = {"namespace": "ml", "name": "fraud", "uid": "3f0c1f9e-0000-4000-8000-000000000001"}


def evaluation(verdict: str, **extra: Any) -> DriftStatus:
    return DriftStatus.model_validate(
        {"verdict": verdict, "method": "psi", "window": "10m", "evaluatedAt": "2026-11-25T21:00:00Z", **extra}
    )


def run_verdicts(verdicts: list[str]) -> tuple[list[bool], DriftStatus | None]:
    """Feed verdicts one evaluation at a time, as the reconcile does; which ones opened an episode."""
    status: DriftStatus | None = None
    opened = []
    for i, verdict in enumerate(verdicts):
        status, now_opened = retraining.carry(status, evaluation(verdict), f"t{i}")
        opened.append(now_opened)
    return opened, status


def test_an_episode_opens_once_and_inconclusive_neither_opens_nor_ends_it() -> None:
    opened, status = run_verdicts(["NoDrift", "Drifted", "Drifted", "Inconclusive", "Drifted"])
    assert opened == [False, True, False, False, False]
    assert status is not None and status.episode == DriftEpisode(number=1, started_at="t1")


def test_no_drift_ends_the_episode_and_the_next_drift_opens_number_two() -> None:
    opened, status = run_verdicts(["Drifted", "NoDrift", "NoDrift", "Inconclusive", "Drifted", "Drifted"])
    assert opened == [True, False, False, False, True, False]
    assert status is not None and status.episode == DriftEpisode(number=2, started_at="t4")
    _, ended = run_verdicts(["Drifted", "NoDrift", "Inconclusive"])
    assert ended is not None and ended.episode == DriftEpisode(number=1, started_at="t0", ended_at="t1")


def test_a_first_inconclusive_or_no_drift_opens_nothing() -> None:
    assert run_verdicts(["Inconclusive", "NoDrift"]) == ([False, False], evaluation("NoDrift"))


def test_carry_keeps_the_retraining_job_and_asking_again_changes_nothing() -> None:
    job = RetrainingStatus(job="fraud-retrain-1", episode=1, outcome="Running")
    before = evaluation("Drifted", episode={"number": 1, "startedAt": "t0"}, retraining=job.model_dump(by_alias=True))
    after, opened = retraining.carry(before, evaluation("Drifted"), "t9")
    assert not opened and after.retraining == job and after.episode == before.episode
    again, opened = retraining.carry(before, before, "t9")  # no evaluation due: the previous status again
    assert (again, opened) == (before, False)


def test_a_job_is_due_once_per_open_episode() -> None:
    episode = {"number": 3, "startedAt": "t0"}
    assert retraining.retraining_due(None) is None
    assert retraining.retraining_due(evaluation("NoDrift")) is None
    due = retraining.retraining_due(evaluation("Drifted", episode=episode))
    assert due is not None and due.number == 3
    older = {"job": "fraud-retrain-2", "episode": 2, "outcome": "Succeeded"}
    assert retraining.retraining_due(evaluation("Drifted", episode=episode, retraining=older)) is not None
    this = {"job": "fraud-retrain-3", "episode": 3, "outcome": "Pending"}
    assert retraining.retraining_due(evaluation("Drifted", episode=episode, retraining=this)) is None
    refused = {"job": "fraud-retrain-3", "episode": 3, "outcome": "NotCreated", "message": "quota"}
    assert retraining.retraining_due(evaluation("Drifted", episode=episode, retraining=refused)) is None
    closed = {"number": 3, "startedAt": "t0", "endedAt": "t5"}
    assert retraining.retraining_due(evaluation("Inconclusive", episode=closed)) is None


def test_the_report_has_status_drift_the_deployment_and_every_feature() -> None:
    drift = evaluation(
        "Drifted",
        score=0.9,
        threshold=0.2,
        samples=400,
        features=[{"name": "b", "score": 0.9, "drifted": True}],
        prediction={"score": 0.1, "drifted": False},
        episode={"number": 1, "startedAt": "t0"},
        retraining={"job": "fraud-retrain-1", "episode": 1, "outcome": "Pending"},
    )
    every = [{"name": "b", "score": 0.9, "drifted": True}, {"name": "a", "score": 0.0, "drifted": False}]
    report = retraining.report(META, "7", drift, every)
    assert report == {
        "kind": "DriftReport",
        "modelDeployment": META,
        "version": "7",
        "verdict": "Drifted",
        "method": "psi",
        "score": 0.9,
        "threshold": 0.2,
        "samples": 400,
        "window": "10m",
        "evaluatedAt": "2026-11-25T21:00:00Z",
        "message": "",
        "features": every,
        "allFeatures": True,
        "prediction": {"score": 0.1, "drifted": False},
        "episode": {"number": 1, "startedAt": "t0"},
    }
    assert retraining.report(META, "7", drift, None)["features"] == [{"name": "b", "score": 0.9, "drifted": True}]
    assert json.loads(retraining.encode(report)) == report
    owner = Owner(team="fraud-ml", contact="#fraud-oncall")
    owned = retraining.report(META, "7", drift, every, owner)["modelDeployment"]
    assert owned == {**META, "owner": {"team": "fraud-ml", "contact": "#fraud-oncall"}}, "as in every webhook body"


def test_the_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = retraining.encode({"verdict": "Drifted"})
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    sent = retraining.headers(body, META, 4, b"k")
    assert sent[retraining.SIGNATURE_HEADER] == f"sha256={expected}"
    assert sent[retraining.DELIVERY_HEADER] == f"{META['uid']}-4"
    assert retraining.verify(body, b"k", sent[retraining.SIGNATURE_HEADER])
    assert not retraining.verify(body + b" ", b"k", sent[retraining.SIGNATURE_HEADER])
    assert retraining.SIGNATURE_HEADER not in retraining.headers(body, META, 4, None)


def test_retries_wait_backoff_then_double_it_and_only_some_answers_are_retried() -> None:
    assert retraining.retry_delays(3, 1.0) == [1.0, 2.0, 4.0]
    assert retraining.retry_delays(0, 1.0) == []
    assert [retraining.worth_retry(s) for s in (None, 500, 503, 408, 429, 400, 401, 404, 302)] == [
        *[True] * 5,
        *[False] * 4,
    ]


TEMPLATE = JobTemplate.model_validate(
    {
        "metadata": {"labels": {"team": "risk"}, "annotations": {"owner": "ml-platform"}},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"labels": {"app": "retrain"}},
                "spec": {
                    "containers": [
                        {
                            "name": "retrain",
                            "image": "registry.example.com/retrain:3",
                            "env": [
                                {"name": "MODELDEPLOY_DRIFT_REPORT", "value": "theirs"},
                                {"name": "X", "value": "1"},
                            ],
                            "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": True},
                        }
                    ],
                },
            },
        },
    }
)


def told(episode: int = 2, capture: str | None = None, output: str | None = None) -> retraining.Told:
    return retraining.Told(
        episode=episode,
        kind="drift",
        base_version="7",
        base_uri="s3://models/fraud/7/model.onnx",
        base_sha256=None,
        capture_uri=capture,
        since="2026-12-08T00:00:00Z",
        until="2026-12-08T01:00:00Z",
        output=output,
    )


def test_the_job_mounts_the_report_and_is_restricted_where_the_template_is_silent() -> None:
    job = retraining.build_retraining_job(META, TEMPLATE, told())
    assert job["metadata"]["name"] == "fraud-retrain-2" and job["metadata"]["namespace"] == "ml"
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", META["uid"], True)
    assert job["metadata"]["labels"] == {
        "team": "risk",
        "app.kubernetes.io/managed-by": "modeldeploy",
        "app.kubernetes.io/instance": "fraud",
        "app.kubernetes.io/component": "retraining",
        "modeldeploy.dev/deployment": "fraud",
        "modeldeploy.dev/drift-episode": "2",
    }
    assert job["metadata"]["annotations"] == {"owner": "ml-platform"}
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == {
        "app": "retrain",
        "app.kubernetes.io/component": "retraining",
        "modeldeploy.dev/retraining-for": "fraud",
        "modeldeploy.dev/drift-episode": "2",
    }, "the operator sees the pods (their result), and the model's Service does not select them"
    assert "modeldeploy.dev/deployment" not in pod["metadata"]["labels"]
    assert "app.kubernetes.io/instance" not in pod["metadata"]["labels"]
    assert job["spec"]["backoffLimit"] == 1
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["volumes"] == [{"name": "modeldeploy-drift-report", "configMap": {"name": "fraud-retrain-2"}}]
    (container,) = spec["containers"]
    assert container["env"] == [
        {"name": "X", "value": "1"},
        {"name": "MODELDEPLOY_DRIFT_REPORT", "value": "/etc/modeldeploy/drift/report.json"},
        {"name": "MODELDEPLOY_DRIFT_EPISODE", "value": "2"},
        {"name": "MODELDEPLOY_MODEL_NAME", "value": "fraud"},
        {"name": "MODELDEPLOY_DATA_SINCE", "value": "2026-12-08T00:00:00Z"},
        {"name": "MODELDEPLOY_DATA_UNTIL", "value": "2026-12-08T01:00:00Z"},
        {"name": "MODELDEPLOY_BASE_VERSION", "value": "7"},
        {"name": "MODELDEPLOY_BASE_MODEL_URI", "value": "s3://models/fraud/7/model.onnx"},
        {"name": "MODELDEPLOY_BASE_MODEL_SHA256", "value": ""},
        {"name": "MODELDEPLOY_CANDIDATE_VERSION", "value": "7-retrain-2"},
    ]
    assert container["volumeMounts"] == [
        {"name": "modeldeploy-drift-report", "mountPath": "/etc/modeldeploy/drift", "readOnly": True}
    ]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": True,  # the template's word wins
        "capabilities": {"drop": ["ALL"]},
        "runAsUser": 1000,
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", "a crash's log tail is the reason"
    assert TEMPLATE.spec["template"]["spec"].get("volumes") is None, "the template is not changed"


def test_the_template_keeps_its_restart_policy_and_pod_security_and_gets_the_capture_uri() -> None:
    template = JobTemplate.model_validate(
        {
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "initContainers": [{"name": "get", "image": "busybox"}],
                        "containers": [{"name": "train", "image": "trainer", "terminationMessagePolicy": "File"}],
                    }
                }
            }
        }
    )
    job = retraining.build_retraining_job(META, template, told(1, capture="s3://samples/fraud/"))
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "OnFailure"
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in spec["initContainers"] + spec["containers"]:
        assert {"name": "MODELDEPLOY_CAPTURE_URI", "value": "s3://samples/fraud/"} in container["env"]
        assert {"name": "MODELDEPLOY_LABELS_URI", "value": "s3://samples/fraud/"} in container["env"]
        assert container["volumeMounts"][0]["mountPath"] == "/etc/modeldeploy/drift"
    assert spec["containers"][0]["terminationMessagePolicy"] == "File", "the template's word wins"


@pytest.mark.parametrize(
    ("output", "claim", "directory"),
    [
        ("pvc://models/retrained", "models", "/var/run/modeldeploy/output/retrained"),
        ("pvc://models", "models", "/var/run/modeldeploy/output"),
        ("s3://models/retrained", None, None),
    ],
)
def test_the_output_is_told_and_a_claim_is_mounted(output: str, claim: str | None, directory: str | None) -> None:
    job = retraining.build_retraining_job(META, TEMPLATE, told(output=output))
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MODELDEPLOY_RETRAINING_OUTPUT"] == output
    assert env.get("MODELDEPLOY_OUTPUT_DIR") == directory
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ([claim] if claim else [])
    mounted = [m["mountPath"] for m in container["volumeMounts"]]
    assert ("/var/run/modeldeploy/output" in mounted) == (claim is not None)


def test_the_config_map_holds_the_report() -> None:
    body = retraining.encode({"verdict": "Drifted"})
    config_map = retraining.build_report_config_map(META, 2, body)
    assert config_map["metadata"]["name"] == "fraud-retrain-2"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == META["uid"]
    assert config_map["data"] == {"report.json": '{"verdict":"Drifted"}'}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ({}, ("Pending", "")),
        ({"active": 1}, ("Running", "")),
        ({"conditions": [{"type": "Complete", "status": "True", "reason": "Done"}]}, ("Succeeded", "Done")),
        (
            {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]},
            ("Failed", "BackoffLimitExceeded"),
        ),
        ({"active": 1, "conditions": [{"type": "Failed", "status": "False"}]}, ("Running", "")),
    ],
)
def test_job_outcome(status: dict[str, Any], outcome: tuple[str, str]) -> None:
    assert retraining.job_outcome({"status": status}) == outcome


@pytest.mark.parametrize(
    ("sink", "uri"),
    [
        ("s3://samples", "s3://samples/fraud/7/"),
        ("s3://samples/prod/risk/", "s3://samples/prod/risk/fraud/7/"),
        ("https://collector.example.com/rows", "https://collector.example.com/rows"),
    ],
)
def test_the_capture_uri_is_where_the_version_that_drifted_is_sampled(sink: str, uri: str) -> None:
    assert retraining.capture_uri(sink, "fraud", "7") == uri


def test_the_capture_uri_is_a_prefix_of_the_keys_the_server_writes() -> None:
    from modeldeploy_serving.sampling import Sink, object_key

    sink = "s3://samples/prod/"
    key = object_key(Sink.parse(sink).prefix, _Source("fraud", "7"), 1_800_000_000.0, "fraud-stable-1", 1)  # type: ignore[arg-type]
    assert f"s3://samples/{key}".startswith(retraining.capture_uri(sink, "fraud", "7"))


class _Source:
    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
