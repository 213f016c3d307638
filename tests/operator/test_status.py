"""Status from the Deployment and pods as the API server returns them."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api.reasons import BY_NAME, Reason
from modeldeploy_operator.status.conditions import READY, RECONCILING, STALLED, Wanted
from modeldeploy_operator.status.decide import selector
from modeldeploy_operator.status.observe import Track, observe, pod_failure, serving_template, serving_version

DIGEST_MISMATCH = (
    "fetch failed (digest-mismatch): s3://models/fraud/8/model.onnx: sha256 mismatch: expected 9f2c, got 1b7e"
)


def deployment(
    replicas: int = 2,
    *,
    generation: int = 2,
    observed: int = 2,
    current: int | None = None,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    progressing: tuple[str, str, str] = ("True", "NewReplicaSetAvailable", 'ReplicaSet "fraud-stable-6f7d" has ...'),
) -> dict[str, Any]:
    """A Deployment as `kubectl get -o json` shows it; counts left out when zero, as the API does."""
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {
                "type": "Progressing",
                "status": progressing[0],
                "reason": progressing[1],
                "message": progressing[2],
            },
        ],
    }
    counts = {"replicas": current, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available}
    for key, count in counts.items():
        value = replicas if count is None else count
        if value:
            status[key] = value
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "fraud-stable",
            "namespace": "ml",
            "generation": generation,
            "resourceVersion": "1234",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600},
        "status": status,
    }


def container(name: str, *, ready: bool, restarts: int = 0, state: Any = None, last: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.example/modeldeploy:1.2.3",
        "imageID": "",
        "ready": ready,
        "restartCount": restarts,
        "started": ready,
        "state": state or {"running": {"startedAt": "2026-11-22T05:00:00Z"}},
        "lastState": last or {},
    }


COMPLETED = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "t", "finishedAt": "t"}}


def failed(message: str, code: int = 5) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Error", "message": message + "\n"}}


def pod(
    version: str = "8",
    *,
    ready: bool = True,
    init: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": f"fraud-stable-{version}-x1y2z",
        "namespace": "ml",
        "labels": {
            "app.kubernetes.io/instance": "fraud",
            "app.kubernetes.io/version": version,
            "modeldeploy.dev/deployment": "fraud",
            "modeldeploy.dev/track": "stable",
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-22T05:01:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "initContainerStatuses": [init or container("fetch-model", ready=True, state=COMPLETED)],
            "containerStatuses": [server or container("server", ready=ready)],
        },
    }


def fetch_failing(version: str = "8", message: str = DIGEST_MISMATCH) -> dict[str, Any]:
    """A pod whose fetch step keeps failing: CrashLoopBackOff, the reason in lastState."""
    init = container(
        "fetch-model",
        ready=False,
        restarts=3,
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        last=failed(message),
    )
    server = container("server", ready=False, state={"waiting": {"reason": "PodInitializing"}})
    return pod(version, ready=False, init=init, server=server)


def types(conditions: list[Wanted]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason.name) for c in conditions}


def failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    found: tuple[Reason, str] | None = pod_failure(pods)
    return None if found is None else (found[0].name, found[1])


def message(conditions: list[Wanted], kind: str) -> str:
    return next(c.message for c in conditions if c.type == kind)


def test_no_deployment_yet_is_pending() -> None:
    observed = observe(None, [], "8")
    assert observed.phase == "Pending"
    assert types(observed.conditions) == {READY: ("False", "Creating"), RECONCILING: ("True", "Creating")}


def test_deployment_not_yet_seen_by_its_controller_is_rolling_out() -> None:
    observed = observe(deployment(generation=3, observed=2), [pod(), pod()], "8")
    assert observed.phase == "Progressing"
    assert types(observed.conditions) == {READY: ("False", "RollingOut"), RECONCILING: ("True", "RollingOut")}


def test_pods_starting_is_rolling_out() -> None:
    starting = pod(ready=False, server=container("server", ready=False))
    observed = observe(deployment(current=2, updated=2, ready=0, available=0), [starting, starting], "8")
    assert observed.phase == "Progressing"
    assert message(observed.conditions, READY) == "version 8: 0 of 2 replicas updated and ready"
    assert (observed.replicas, observed.ready_replicas, observed.serving_version) == (2, 0, None)


def test_rolling_out_a_new_version_while_the_old_one_serves() -> None:
    pods = [pod("7"), pod("7"), pod("8", ready=False, server=container("server", ready=False))]
    observed = observe(deployment(current=3, updated=1, ready=2, available=2), pods, "8")
    assert observed.phase == "Progressing"
    assert message(observed.conditions, RECONCILING) == "version 8: 1 of 2 replicas updated and ready"
    assert observed.serving_version == "7"


def test_old_pods_still_terminating_is_rolling_out() -> None:
    observed = observe(deployment(current=3, updated=2, ready=2, available=2), [pod(), pod()], "8")
    assert observed.phase == "Progressing"


def test_ready() -> None:
    observed = observe(deployment(), [pod(), pod()], "8")
    assert observed.phase == "Ready"
    assert observed.conditions == [Wanted(READY, "True", BY_NAME["Serving"], "version 8: 2 of 2 replicas ready")]
    assert (observed.replicas, observed.ready_replicas, observed.serving_version) == (2, 2, "8")


def test_terminating_pods_do_not_count_as_serving() -> None:
    assert serving_version([pod("7", deleting=True), pod("8")]) == "8"
    assert serving_version([pod("7", deleting=True)]) is None


def test_scaled_to_zero_is_ready_without_pods() -> None:
    observed = observe(deployment(replicas=0), [], "8")
    assert observed.phase == "Ready"
    assert types(observed.conditions) == {READY: ("True", "Serving")}
    assert (observed.replicas, observed.ready_replicas, observed.serving_version) == (0, 0, "8")


def test_scaling_down_is_rolling_out_until_the_extra_pods_are_gone() -> None:
    observed = observe(deployment(replicas=1, current=2, updated=2, ready=2, available=2), [pod(), pod()], "8")
    assert observed.phase == "Progressing"


def test_fetch_failure_is_stalled_with_the_fetch_steps_message() -> None:
    observed = observe(deployment(current=1, updated=1, ready=0, available=0), [fetch_failing()], "8")
    assert observed.phase == "Degraded"
    assert types(observed.conditions) == {READY: ("False", "FetchFailed"), STALLED: ("True", "FetchFailed")}
    assert message(observed.conditions, STALLED) == f"version 8: {DIGEST_MISMATCH}"
    assert message(observed.conditions, READY) == f"version 8: {DIGEST_MISMATCH}"


def test_fetch_failure_says_the_old_version_keeps_serving() -> None:
    pods = [pod("7"), pod("7"), fetch_failing("8")]
    observed = observe(deployment(current=3, updated=1, ready=2, available=2), pods, "8")
    assert observed.phase == "Degraded"
    assert message(observed.conditions, READY) == f"version 8: {DIGEST_MISMATCH}; version 7 keeps serving"
    assert "keeps serving" not in message(observed.conditions, STALLED)
    assert observed.serving_version == "7"
    assert observed.ready_replicas == 2


def test_fetch_failure_seen_while_the_step_runs_again() -> None:
    """Between back-offs the step runs; its last failure still says why."""
    init = container("fetch-model", ready=False, restarts=4, last=failed(DIGEST_MISMATCH))
    failing = pod(ready=False, init=init, server=container("server", ready=False, state={"waiting": {}}))
    assert failure([failing]) == ("FetchFailed", DIGEST_MISMATCH)


def test_fetch_failure_on_its_first_run() -> None:
    init = container("fetch-model", ready=False, state=failed("fetch failed (not-found): s3://m/x.onnx: not found", 3))
    assert failure([pod(ready=False, init=init)]) == (
        "FetchFailed",
        "fetch failed (not-found): s3://m/x.onnx: not found",
    )


def test_fetch_failure_without_a_message_gives_the_exit_code() -> None:
    init = container("fetch-model", ready=False, restarts=1, state={"waiting": {}}, last=failed("", 137))
    assert failure([pod(ready=False, init=init)]) == ("FetchFailed", "exit code 137")


def test_only_the_last_line_of_a_long_termination_message() -> None:
    init = container(
        "fetch-model", ready=False, state=failed("Traceback ...\n  File x\nfetch failed (unavailable): HTTP 503")
    )
    assert failure([pod(ready=False, init=init)]) == ("FetchFailed", "fetch failed (unavailable): HTTP 503")


def test_a_fetch_that_failed_once_and_then_succeeded_is_not_a_failure() -> None:
    """The kubelet keeps lastState for the pod's life; a completed retry is healthy."""
    init = container("fetch-model", ready=True, restarts=1, state=COMPLETED, last=failed("fetch failed (unavailable)"))
    healthy = pod(init=init)
    assert failure([healthy]) is None
    assert observe(deployment(replicas=1), [healthy], "8").phase == "Ready"


def test_a_server_that_restarted_once_and_is_ready_again_is_not_crashing() -> None:
    server = container("server", ready=True, restarts=1, last={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    assert failure([pod(server=server)]) is None


def test_a_crashing_server() -> None:
    server = container(
        "server",
        ready=False,
        restarts=5,
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
        last=failed("modeldeploy serve: the model has no outputs", 1),
    )
    observed = observe(deployment(replicas=1, ready=0, available=0), [pod(ready=False, server=server)], "8")
    assert types(observed.conditions) == {READY: ("False", "ServerCrashing"), STALLED: ("True", "ServerCrashing")}
    assert (
        message(observed.conditions, STALLED)
        == "version 8: the server exited: modeldeploy serve: the model has no outputs"
    )


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
@pytest.mark.parametrize("which", ["init", "server"])
def test_image_pull_failure(reason: str, which: str) -> None:
    waiting = {"waiting": {"reason": reason, "message": 'Back-off pulling image "registry.example/nope:1"'}}
    if which == "init":
        stuck = pod(ready=False, init=container("fetch-model", ready=False, state=waiting))
    else:
        stuck = pod(ready=False, server=container("server", ready=False, state=waiting))
    observed = observe(deployment(replicas=1, ready=0, available=0), [stuck], "8")
    assert observed.phase == "Degraded"
    assert types(observed.conditions) == {READY: ("False", "ImagePullFailed"), STALLED: ("True", "ImagePullFailed")}
    assert 'Back-off pulling image "registry.example/nope:1"' in message(observed.conditions, STALLED)


def test_progress_deadline_exceeded() -> None:
    stuck = deployment(
        current=3,
        updated=1,
        ready=2,
        available=2,
        progressing=("False", "ProgressDeadlineExceeded", 'ReplicaSet "fraud-stable-7c9" has timed out progressing.'),
    )
    pending = pod("8", ready=False, server=container("server", ready=False))
    observed = observe(stuck, [pod("7"), pod("7"), pending], "8")
    assert observed.phase == "Degraded"
    assert types(observed.conditions) == {
        READY: ("False", "ProgressDeadlineExceeded"),
        STALLED: ("True", "ProgressDeadlineExceeded"),
    }
    assert message(observed.conditions, READY) == (
        'version 8: ReplicaSet "fraud-stable-7c9" has timed out progressing.; version 7 keeps serving'
    )


def test_selector_is_the_stable_pods() -> None:
    assert (
        selector("fraud")
        == "app.kubernetes.io/instance=fraud,modeldeploy.dev/deployment=fraud,modeldeploy.dev/track=stable"
    )


def model_meta(version: str, uri: str, digest: str) -> dict[str, Any]:
    return {
        "labels": {"modeldeploy.dev/version": version},
        "annotations": {"modeldeploy.dev/uri": uri, "modeldeploy.dev/sha256": digest},
    }


def test_drift_reads_only_the_pods_that_serve_the_stable_template() -> None:
    """Mid rolling update (after a promotion), the old ReplicaSet's pods serve another model:
    mixing them into the window would judge one model's predictions by another's profile."""
    new, old = model_meta("2", "file:///m/v2.onnx", "b" * 64), model_meta("1", "file:///m/v1.onnx", "a" * 64)
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.0.0.1"}
    pods = [
        {"metadata": {"name": "new-ready", **new}, "status": ready},
        {"metadata": {"name": "old-ready", **old}, "status": ready},
        {"metadata": {"name": "new-starting", **new}, "status": {"conditions": []}},
    ]
    track = Track(deployment={"spec": {"template": {"metadata": new}}}, pods=pods)
    assert [p["metadata"]["name"] for p in serving_template(track)] == ["new-ready"]
