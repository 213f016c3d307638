"""A retraining Job's result, its candidate's check, adoption and lineage: drift/candidates.py
and children/checks.py with the Job and pod bodies the watch caches hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_operator.api.lineage import Candidate, DataWindow
from modeldeploy_operator.api.spec import ModelSource
from modeldeploy_operator.api.status import DriftStatus, HistoryEntry, QualityStatus, RetrainingStatus
from modeldeploy_operator.children.checks import JobLabels, build_check_job
from modeldeploy_operator.drift import candidates
from modeldeploy_operator.drift.candidates import follow

Obj = dict[str, Any]
NOW = 1_800_000_000.0
DIGEST = "a" * 64
RESULT = {
    "uri": "s3://models/fraud/7-quality-1/model.onnx",
    "sha256": DIGEST,
    "version": "7-quality-1",
    "metrics": {"newAccuracy": 0.95, "oldAccuracy": 0.41, "heldOut": 120},
    "trainedRows": 480,
    "baseVersion": "7",
    "dataWindow": {"since": "2026-12-08T00:00:00Z", "until": "2026-12-08T01:00:00Z"},
}


def job(name: str, condition: str | None = None, message: str = "", completed: str = "2027-01-15T08:00:00Z") -> Obj:
    status: Obj = {"active": 1}
    if condition is not None:
        status = {"conditions": [{"type": condition, "status": "True", "message": message}]}
        status["completionTime"] = completed
    return {"metadata": {"name": name}, "status": status}


def pod(job_name: str, exit_code: int, message: str) -> Obj:
    ended = {"terminated": {"exitCode": exit_code, "message": message}}
    return {
        "metadata": {"name": f"{job_name}-x1", "labels": {"batch.kubernetes.io/job-name": job_name}},
        "status": {"containerStatuses": [{"name": "train", "state": ended}]},
    }


def pending(outcome: str = "Pending", **more: Any) -> RetrainingStatus:
    return RetrainingStatus(job="fraud-quality-1", episode=1, outcome=outcome, **more)  # type: ignore[arg-type]


def test_a_running_job_is_followed_then_its_result_is_read_and_checked() -> None:
    assert follow(pending(), [job("fraud-quality-1")], [], NOW).retraining == pending("Running")
    done = job("fraud-quality-1", "Complete", completed="2027-01-15T08:00:00Z")
    result = pod("fraud-quality-1", 0, json.dumps(RESULT))
    followed = follow(pending("Running"), [done], [result], NOW)
    assert followed.check_due, "a reported model is checked before anything else"
    verifying = followed.retraining
    assert verifying is not None and verifying.outcome == "Verifying"
    assert verifying.candidate == Candidate.model_validate(RESULT)
    assert verifying.candidate.data_window == DataWindow(since="2026-12-08T00:00:00Z", until="2026-12-08T01:00:00Z")
    assert follow(verifying, [done], [result], NOW).check_due, "no check Job seen yet: still due"
    check = job("fraud-quality-1-verify", "Complete")
    succeeded = follow(verifying, [done, check], [result], NOW).retraining
    assert succeeded is not None and succeeded.outcome == "Succeeded" and succeeded.candidate == verifying.candidate
    assert follow(succeeded, [], [], NOW).retraining == succeeded, "a decided outcome stays"


@pytest.mark.parametrize(
    ("message", "reason", "said"),
    [
        ("", "ResultMissing", "wrote no result"),
        ("trained 480 rows", "ResultInvalid", "not JSON"),
        ("[1, 2]", "ResultInvalid", "not a JSON object"),
        (json.dumps({**RESULT, "sha256": "abc"}), "ResultInvalid", "sha256"),
        (json.dumps({k: v for k, v in RESULT.items() if k != "uri"}), "ResultInvalid", "uri"),
        (json.dumps({**RESULT, "uri": "ftp://x/m.onnx"}), "ResultInvalid", "uri"),
        (json.dumps({**RESULT, "version": "no spaces allowed"}), "ResultInvalid", "version"),
        (json.dumps({**RESULT, "metrics": {"accuracy": "high"}}), "ResultInvalid", "metrics"),
    ],
)
def test_a_missing_or_invalid_result_fails_with_its_reason(message: str, reason: str, said: str) -> None:
    done = job("fraud-quality-1", "Complete")
    followed = follow(pending("Running"), [done], [pod("fraud-quality-1", 0, message)], NOW)
    failed = followed.retraining
    assert failed is not None and (failed.outcome, failed.reason) == ("Failed", reason)
    assert said in failed.message and not followed.check_due and failed.candidate is None


def test_a_complete_job_whose_pod_is_not_seen_waits_then_fails_as_missing() -> None:
    done = job("fraud-quality-1", "Complete", completed="2027-01-15T08:00:00Z")
    completed = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    waiting = follow(pending("Running"), [done], [], completed + 5).retraining
    assert waiting is not None and waiting.outcome == "Running", "the pod's update may still be on its way"
    gone = follow(pending("Running"), [done], [], completed + 120).retraining
    assert gone is not None and (gone.outcome, gone.reason) == ("Failed", "ResultMissing")


def test_a_failed_job_says_why_from_its_pod() -> None:
    failed_job = job("fraud-quality-1", "Failed", "BackoffLimitExceeded")
    why = "too few labelled rows: 12, at least 100 needed (--min-rows)"
    failed = follow(pending("Running"), [failed_job], [pod("fraud-quality-1", 3, why)], NOW).retraining
    assert failed is not None and (failed.outcome, failed.reason, failed.message) == ("Failed", "JobFailed", why)
    bare = follow(pending("Running"), [failed_job], [], NOW).retraining
    assert bare is not None and bare.message == "BackoffLimitExceeded"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "fetch failed (digest-mismatch): s3://models/x.onnx: sha256 mismatch: expected aaaa, got bbbb",
            "DigestMismatch",
        ),
        ("fetch failed (not-found): s3://models/x.onnx: not found (HTTP 404, NoSuchKey)", "CandidateUnreadable"),
    ],
)
def test_a_failed_check_fails_the_candidate(line: str, reason: str) -> None:
    verifying = pending("Verifying", candidate=Candidate.model_validate(RESULT))
    check = job("fraud-quality-1-verify", "Failed", "BackoffLimitExceeded")
    failed = follow(verifying, [check], [pod("fraud-quality-1-verify", 5, line)], NOW).retraining
    assert failed is not None and (failed.outcome, failed.reason) == ("Failed", reason)
    assert line in failed.message


def test_the_check_job_fetches_the_candidate_as_a_serving_pod_would() -> None:
    meta = {"name": "fraud", "namespace": "ml", "uid": "u-1"}
    model = ModelSource(uri="s3://models/fraud/7/model.onnx", version="7", credentials_secret="s3-reader")
    labels = JobLabels({"modeldeploy.dev/deployment": "fraud"}, {"modeldeploy.dev/retraining-for": "fraud"})
    candidate = Candidate.model_validate(RESULT)
    credentials = candidates.check_credentials(candidate, model, None)
    check = build_check_job(meta, "fraud-quality-1-verify", candidate, credentials, "img:1", labels)
    assert check["metadata"]["name"] == "fraud-quality-1-verify"
    assert check["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod_spec = check["spec"]["template"]["spec"]
    (fetch,) = pod_spec["containers"]
    assert fetch["args"][:2] == ["fetch", RESULT["uri"]]
    assert fetch["args"][-2:] == ["--sha256", DIGEST]
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3-reader"}}], "the serving pods' own credentials"
    assert fetch["securityContext"]["runAsNonRoot"] and fetch["securityContext"]["allowPrivilegeEscalation"] is False
    assert check["spec"]["template"]["metadata"]["labels"] == {"modeldeploy.dev/retraining-for": "fraud"}
    assert pod_spec["restartPolicy"] == "Never" and pod_spec["automountServiceAccountToken"] is False


def entry(outcome: str, uri: str, sha256: str | None) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {
            "revision": 2,
            "version": "7-quality-1",
            "uri": uri,
            "sha256": sha256,
            "specHash": "h",
            "outcome": outcome,
            "reason": "Serving",
            "decidedBy": "analysis",
            "startedAt": "2027-01-15T08:00:00Z",
            "finishedAt": "2027-01-15T08:10:00Z",
        }
    )


def test_adoption_follows_the_candidate_through_its_rollout() -> None:
    candidate = Candidate.model_validate(RESULT)
    ready = pending("Succeeded", candidate=candidate)
    stable = ModelSource(uri="s3://models/fraud/7/model.onnx", version="7")
    adopted = ModelSource(uri=candidate.uri, sha256=candidate.sha256, version=candidate.version)
    assert candidates.adoption(ready, stable, []) == "Waiting"
    assert candidates.adoption(ready, adopted, []) == "Adopted"
    assert candidates.adoption(ready, adopted, [entry("Promoted", candidate.uri, DIGEST)]) == "Promoted"
    assert candidates.adoption(ready, adopted, [entry("RolledBack", candidate.uri, DIGEST)]) == "RolledBack"
    assert candidates.adoption(ready, stable, [entry("Promoted", candidate.uri, "b" * 64)]) == "Waiting"
    assert candidates.adoption(pending("Verifying", candidate=candidate), stable, []) is None


def test_auto_adopts_a_waiting_candidate_once_and_never_during_a_rollout() -> None:
    candidate = Candidate.model_validate(RESULT)
    waiting = pending("Succeeded", candidate=candidate, adoption="Waiting")
    assert candidates.adopt_now(waiting, True, None) == candidate
    assert candidates.adopt_now(waiting, False, None) is None, "Manual: it waits for kubectl modeldeploy adopt"
    canary = object()
    assert candidates.adopt_now(waiting, True, canary) is None  # type: ignore[arg-type]
    again = waiting.model_copy(update={"adopted_at": "2027-01-15T08:00:00Z"})
    assert candidates.adopt_now(again, True, None) is None, "a candidate is adopted at most once"
    assert candidates.adoption(again, ModelSource(uri="s3://m/x.onnx", version="7"), []) == "RolledBack"
    patch = candidates.adoption_patch(candidate, "fraud-quality-1", "2027-01-15T08:00:00Z")
    with_secret = candidates.adoption_patch(candidate, "fraud-quality-1", "2027-01-15T08:00:00Z", "s3-reader")
    assert with_secret["spec"]["model"]["credentialsSecret"] == "s3-reader", "spec.drift.retraining's, for s3://"
    on_file = Candidate.model_validate({**RESULT, "uri": "file:///opt/models/m.onnx"})
    dropped = candidates.adoption_patch(on_file, "fraud-quality-1", "2027-01-15T08:00:00Z", "s3-reader", "base")
    assert dropped["spec"]["model"]["credentialsSecret"] is None, "removed: spec.model refuses one for file://"
    kept = candidates.adoption_patch(on_file, "fraud-quality-1", "2027-01-15T08:00:00Z", "s3-reader", None)
    assert "credentialsSecret" not in kept["spec"]["model"], "nothing to remove"
    model = ModelSource(uri="s3://models/fraud/7/model.onnx", version="7", credentials_secret="base")
    assert candidates.check_credentials(candidate, model, "s3-reader") == "s3-reader"
    assert candidates.check_credentials(candidate, model, None) == "base"
    assert candidates.check_credentials(on_file, model, "s3-reader") is None
    assert patch == {
        "metadata": {"annotations": {"modeldeploy.dev/adopted": "fraud-quality-1 at 2027-01-15T08:00:00Z"}},
        "spec": {"model": {"uri": candidate.uri, "sha256": DIGEST, "version": "7-quality-1"}},
    }


def test_the_adoption_annotation_keeps_the_adoption_even_when_the_status_that_said_so_is_lost() -> None:
    """The adoption patch and the status that records it are two writes: a reconcile can read
    the new spec with the status from before (the watch event of the patch); the annotation
    came with the spec."""
    candidate = Candidate.model_validate(RESULT)
    quality = QualityStatus.model_validate(
        {
            "verdict": "Degraded",
            "window": "1h",
            "evaluatedAt": "2027-01-15T08:00:00Z",
            "retraining": pending("Succeeded", candidate=candidate, adoption="Waiting").model_dump(
                by_alias=True, exclude_none=True
            ),
        }
    )
    annotations = {"modeldeploy.dev/adopted": "fraud-quality-1 at 2027-01-15T08:00:00Z"}
    adopted = ModelSource(uri=candidate.uri, sha256=candidate.sha256, version=candidate.version)
    seen = candidates.with_adoption(quality, adopted, [], annotations).retraining
    assert seen is not None and (seen.adoption, seen.adopted_at) == ("Adopted", "2027-01-15T08:00:00Z")
    assert candidates.adopt_now(seen, True, None) is None
    rolled = [entry("RolledBack", candidate.uri, DIGEST)]
    back = candidates.with_adoption(quality, ModelSource(uri="s3://m/7.onnx", version="7"), rolled, annotations)
    assert back.retraining is not None and back.retraining.adoption == "RolledBack"
    other = {"modeldeploy.dev/adopted": "fraud-retrain-4 at 2027-01-15T08:00:00Z"}
    fresh = candidates.with_adoption(quality, ModelSource(uri="s3://m/7.onnx", version="7"), [], other).retraining
    assert fresh is not None and (fresh.adoption, fresh.adopted_at) == ("Waiting", None)


def test_the_origin_of_a_model_is_the_episode_whose_job_reported_it() -> None:
    candidate = Candidate.model_validate(RESULT)
    quality = QualityStatus.model_validate(
        {
            "verdict": "Degraded",
            "window": "1h",
            "evaluatedAt": "2027-01-15T08:00:00Z",
            "retraining": pending("Succeeded", candidate=candidate).model_dump(by_alias=True, exclude_none=True),
        }
    )
    drift = DriftStatus(verdict="NoDrift", method="psi", window="10m", evaluated_at="2027-01-15T08:00:00Z")
    adopted = ModelSource(uri=candidate.uri, sha256=candidate.sha256, version=candidate.version)
    origin = candidates.origin_of(adopted, drift, quality)
    assert origin.model_dump(by_alias=True, exclude_none=True) == {
        "kind": "Retrained",
        "job": "fraud-quality-1",
        "episode": 1,
        "episodeKind": "quality",
        "baseVersion": "7",
        "dataWindow": RESULT["dataWindow"],
        "trainedRows": 480,
    }
    other = ModelSource(uri=candidate.uri, sha256="b" * 64, version="8")
    assert candidates.origin_of(other, drift, quality).kind == "Applied", "the same file with another digest is not it"
    assert candidates.origin_of(adopted, None, None).kind == "Applied"


def test_a_promoted_entry_recorded_without_its_image_takes_the_image_stable_runs() -> None:
    from modeldeploy_operator.api.lineage import ModelRef
    from modeldeploy_operator.api.status import TrackStatus
    from modeldeploy_operator.status.decide import _promoted_image

    model = ModelRef(uri=RESULT["uri"], sha256=DIGEST)
    promoted = entry("Promoted", RESULT["uri"], DIGEST).model_copy(update={"model": model})
    stable = TrackStatus(version="7-quality-1", model=model, image="sha256:" + "1" * 64)
    (filled,) = _promoted_image([promoted], stable)
    assert filled.image == stable.image
    other = stable.model_copy(update={"model": ModelRef(uri="s3://m/7.onnx")})
    assert _promoted_image([promoted], other) == [promoted], "another version's pods: left unknown"
    rolled = promoted.model_copy(update={"outcome": "RolledBack"})
    assert _promoted_image([rolled], stable) == [rolled], "a rolled-back version never ran on stable"
