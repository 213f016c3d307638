"""`kubectl modeldeploy adopt`, `undo` and `history --version`: what they choose, what they
refuse and why, from plain status dicts (modeldeploy_cli/lineage.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from modeldeploy_cli.lineage import (
    ModelChange,
    Refused,
    adoption,
    last_revision,
    origin_text,
    patch_yaml,
    rollout_seen,
    undo,
    version_record,
)
from modeldeploy_cli.spec_model import _stamp
from modeldeploy_operator.api.lineage import Candidate
from modeldeploy_operator.drift.candidates import adoption_patch
from modeldeploy_operator.rollout.plans import newer

IMAGE = "registry.example.com/modeldeploy@sha256:" + "e" * 64
RETRAINED = {
    "kind": "Retrained",
    "job": "fraud-retrain-2",
    "episode": 2,
    "episodeKind": "drift",
    "baseVersion": "7",
    "dataWindow": {"since": "2026-11-25T09:50:00Z", "until": "2026-11-25T10:01:00Z"},
    "trainedRows": 12000,
}


def entry(revision: int, version: str, outcome: str, sha256: str | None = None, **more: Any) -> dict[str, Any]:
    found = {
        "revision": revision,
        "version": version,
        "outcome": outcome,
        "reason": "Serving" if outcome == "Promoted" else "RolledBack",
        "decidedBy": "analysis",
        "message": f"version {version} {outcome}",
        "uri": f"s3://models/fraud/{version}/model.onnx",
        "specHash": f"hash-{version}",
        "startedAt": f"2026-11-2{revision}T09:00:00Z",
        "finishedAt": f"2026-11-2{revision}T10:00:00Z",
        **more,
    }
    if sha256:
        found["sha256"] = sha256
    return found


def candidate(version: str, until: str = "2026-11-26T10:00:00Z") -> dict[str, Any]:
    return {
        "uri": f"s3://models/fraud/{version}/model.onnx",
        "sha256": version[0] * 64,
        "version": version,
        "metrics": {"accuracy": 0.97, "baselineAccuracy": 0.91},
        "trainedRows": 12000,
        "baseVersion": "8",
        "dataWindow": {"since": "2026-11-26T09:00:00Z", "until": until},
    }


def retraining(outcome: str, adoption: str | None = "Waiting", version: str = "9", **more: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"job": "fraud-retrain-3", "episode": 3, "outcome": outcome, **more}
    if outcome in ("Verifying", "Succeeded"):
        found["candidate"] = candidate(version)
    if outcome == "Succeeded" and adoption:
        found["adoption"] = adoption
    return found


def body(**status: Any) -> dict[str, Any]:
    """fraud: stable serves version 8 (retrained, promoted in rollout 3); 7 and 6 served before."""
    return {
        "metadata": {"name": "fraud", "namespace": "ml", "resourceVersion": "41"},
        "spec": {"model": {"uri": "s3://models/fraud/8/model.onnx", "sha256": "8" * 64, "version": "8"}},
        "status": {
            "stable": {
                "version": "8",
                "uri": "s3://models/fraud/8/model.onnx",
                "sha256": "8" * 64,
                "model": {"uri": "s3://models/fraud/8/model.onnx", "sha256": "8" * 64},
                "origin": RETRAINED,
                "image": IMAGE,
            },
            "history": [
                entry(3, "8", "Promoted", "8" * 64, origin=RETRAINED, image=IMAGE),
                entry(2, "7", "Promoted", "7" * 64, origin={"kind": "Applied"}),
                entry(1, "6", "Promoted"),  # before digests: none given
            ],
            **status,
        },
    }


def refusal_of(decide: Any, *args: Any) -> str:
    with pytest.raises(Refused) as refused:
        decide(*args)
    return str(refused.value)


# --- origin and history --version


@pytest.mark.parametrize(
    ("origin", "text"),
    [
        ({"kind": "Applied"}, "Applied (spec.model set by a user or Git)"),
        (
            RETRAINED,
            "Retrained by fraud-retrain-2, drift episode 2, from version 7, "
            "data 2026-11-25T09:50:00Z..2026-11-25T10:01:00Z, 12000 rows",
        ),
        ({"kind": "Retrained", "job": "fraud-quality-1", "episode": 1, "episodeKind": "quality"}, None),
        (None, "not recorded (an operator before lineage)"),
    ],
)
def test_origin_says_applied_or_retrained_by_which_job_from_what(origin: Any, text: str | None) -> None:
    if text is None:
        assert origin_text(origin) == "Retrained by fraud-quality-1, quality episode 1", "absent parts left out"
    else:
        assert origin_text(origin) == text


def test_a_versions_record_is_its_newest_history_entry_or_stable() -> None:
    history = body()["status"]["history"]
    again = entry(4, "7", "RolledBack", "7" * 64)
    assert version_record(body(), "7") == history[1]
    assert version_record(body(history=[again, *history]), "7") == again, "the newest entry of the version"
    first = body(history=[])
    assert version_record(first, "8") == first["status"]["stable"], "the first version goes straight to stable"
    assert refusal_of(version_record, body(), "5") == (
        "has no version 5 in status.history or status.stable; it has: 8 (stable), 7, 6"
    )


# --- adopt


def test_adopt_sets_the_verified_candidate_as_spec_model_like_adopt_auto() -> None:
    change = adoption(body(drift={"retraining": retraining("Succeeded")}))
    chosen = Candidate(uri="s3://models/fraud/9/model.onnx", sha256="9" * 64, version="9")
    adopted = change.patch["metadata"]["annotations"]["modeldeploy.dev/adopted"]
    job, _, when = adopted.partition(" at ")
    assert job == "fraud-retrain-3" and when.endswith("Z"), "the same mark adopt: Auto leaves"
    assert change.patch == adoption_patch(chosen, job, when)
    assert change.patch["spec"] == {
        "model": {"uri": "s3://models/fraud/9/model.onnx", "sha256": "9" * 64, "version": "9"}
    }
    assert change.described == "candidate version 9 from fraud-retrain-3 (drift episode 3)"
    quality = adoption(body(quality={"retraining": retraining("Succeeded", job="fraud-quality-1", episode=1)}))
    assert quality.described == "candidate version 9 from fraud-quality-1 (quality episode 1)"


@pytest.mark.parametrize(
    ("retrained", "words"),
    [
        (retraining("Pending"), "the drift retraining Job fraud-retrain-3 (episode 3) is Pending: adopt once"),
        (retraining("Running"), "is Running: adopt once its candidate is verified"),
        (
            retraining("Verifying"),
            "the candidate version 9 of the drift retraining Job fraud-retrain-3 is being verified",
        ),
        (
            retraining("Failed", reason="DigestMismatch", message="the candidate's check failed: fetch failed"),
            "the drift retraining Job fraud-retrain-3 failed (DigestMismatch): the candidate's check failed: fetch "
            "failed; nothing to adopt until a later episode's Job succeeds",
        ),
        (
            retraining("NotCreated", reason="RetrainingNotCreated", message="forbidden: exceeded quota"),
            "was not created (RetrainingNotCreated): forbidden: exceeded quota",
        ),
        (retraining("Succeeded", "Adopted"), "is adopted already: spec.model names it"),
        (
            retraining("Succeeded", "Promoted"),
            "the candidate version 9 of the drift retraining Job fraud-retrain-3 was ",
        ),
        (retraining("Succeeded", "RolledBack"), "was rolled back (`kubectl modeldeploy history fraud` says why)"),
    ],
)
def test_adopt_refuses_a_candidate_not_verified_failed_or_taken_already(retrained: Any, words: str) -> None:
    message = refusal_of(adoption, body(drift={"retraining": retrained}))
    assert message.startswith("has no candidate to adopt: the ") and words in message, message


def test_adopt_refuses_without_a_retraining_job_or_while_a_rollout_is_under_way() -> None:
    assert refusal_of(adoption, body()).startswith(
        "has no retraining candidate: nothing in status.drift.retraining or status.quality.retraining"
    )
    waiting = {"drift": {"retraining": retraining("Succeeded")}}
    assert refusal_of(adoption, body(**waiting), "quality").startswith(
        "has no retraining candidate: nothing in status.quality.retraining"
    )
    canary = {"revision": 4, "version": "10", "uri": "s3://models/fraud/10/model.onnx"}
    assert refusal_of(adoption, body(**waiting, canary=canary)) == (
        "has a rollout under way (version 10, rollout 4): the candidate version 9 from fraud-retrain-3 (drift "
        "episode 3) waits until it has ended (`kubectl modeldeploy status fraud --watch`), or abort it first "
        "(`kubectl modeldeploy abort fraud`)"
    )


def test_adopt_refuses_a_candidate_spec_model_names_already_whatever_status_says() -> None:
    waiting = body(drift={"retraining": retraining("Succeeded")})
    waiting["spec"]["model"] = {"uri": "s3://models/fraud/9/model.onnx", "sha256": "9" * 64, "version": "9"}
    assert "is adopted already: spec.model names it" in refusal_of(adoption, waiting)


def test_with_two_candidates_adopt_takes_the_one_trained_on_newer_data_or_the_one_named() -> None:
    drift = retraining("Succeeded", version="9")
    quality = retraining("Succeeded", version="10", job="fraud-quality-1", episode=1)
    quality["candidate"]["dataWindow"]["until"] = "2026-11-27T10:00:00Z"
    both = body(drift={"retraining": drift}, quality={"retraining": quality})
    change = adoption(both)
    assert change.version == "10"
    assert change.note == (
        "drift's candidate version 9 also waits, trained on older data (`--from drift` adopts it instead)"
    )
    assert adoption(both, "drift").version == "9"
    assert adoption(both, "drift").note == "", "the one named is the only one considered"
    undated = copy.deepcopy(both)
    for kind in ("drift", "quality"):
        del undated["status"][kind]["retraining"]["candidate"]["dataWindow"]
    assert "which is newer cannot be told from status: choose with --from drift or --from quality" in refusal_of(
        adoption, undated
    )
    undated["status"]["drift"]["episode"] = {"number": 3, "startedAt": "2026-11-26T08:00:00Z"}
    undated["status"]["quality"]["episode"] = {"number": 1, "startedAt": "2026-11-26T09:00:00Z"}
    assert adoption(undated).version == "10", "without data windows, the later episode"


def test_one_candidate_adopted_the_other_still_waits() -> None:
    drift = retraining("Succeeded", "RolledBack", version="9")
    quality = retraining("Succeeded", version="10", job="fraud-quality-1", episode=1)
    assert adoption(body(drift={"retraining": drift}, quality={"retraining": quality})).version == "10"


# --- undo


def test_undo_goes_back_to_the_version_stable_served_before() -> None:
    change = undo(body())
    assert (change.version, change.uri, change.sha256) == ("7", "s3://models/fraud/7/model.onnx", "7" * 64)
    assert change.patch == {
        "spec": {"model": {"uri": "s3://models/fraud/7/model.onnx", "sha256": "7" * 64, "version": "7"}}
    }
    assert change.described == "version 7, promoted at 2026-11-22T10:00:00Z (rollout 2)"


def test_undo_skips_stables_own_version_and_versions_never_promoted() -> None:
    history = body()["status"]["history"]
    # 8 -> 7 -> 8 again (an undo, then forward): before the current 8, stable served 7.
    again = [entry(5, "8", "Promoted", "8" * 64), entry(4, "9", "RolledBack", "9" * 64), *history]
    assert undo(body(history=again)).version == "7"
    assert undo(body(history=[entry(4, "9", "RolledBack", "9" * 64), *history])).version == "7"


def test_undo_to_a_named_version_takes_its_newest_promoted_entry() -> None:
    history = body()["status"]["history"]
    moved = entry(4, "6", "Promoted", "f" * 64, uri="s3://models/fraud/6b/model.onnx")
    change = undo(body(history=[entry(5, "8", "Promoted", "8" * 64), moved, *history]), "6")
    assert (change.uri, change.sha256) == ("s3://models/fraud/6b/model.onnx", "f" * 64)


def test_undo_to_a_version_without_a_digest_removes_spec_models_sha256() -> None:
    change = undo(body(), "6")
    assert change.sha256 is None
    assert change.patch["spec"]["model"] == {"uri": "s3://models/fraud/6/model.onnx", "sha256": None, "version": "6"}


@pytest.mark.parametrize(
    ("status", "to_version", "message"),
    [
        ({}, "5", "has no version 5 in status.history; it has: 8 (stable), 7, 6"),
        ({}, "8", "serves version 8 on stable now: nothing to undo (it has: 8 (stable), 7, 6)"),
        (
            {"canary": {"revision": 4, "version": "9"}},
            None,
            "has a rollout under way (version 9, rollout 4): `kubectl modeldeploy abort fraud` sends all traffic "
            "back to stable; undo once it has ended",
        ),
        (
            {"history": [entry(1, "8", "Promoted", "8" * 64)]},
            None,
            "has no earlier promoted version than stable's 8 in status.history (newest first: 8 Promoted; the "
            "first version goes straight to stable and is not recorded): set spec.model to the version you want",
        ),
        (
            {"history": [entry(4, "9", "RolledBack", "9" * 64), entry(3, "8", "Promoted", "8" * 64)]},
            "9",
            "never promoted version 9 (9 RolledBack): undo goes back to a version that served all traffic "
            "(none in history); set spec.model to try it again",
        ),
        ({"stable": {}}, None, "shows no stable version yet (status.stable.version): nothing to go back from"),
    ],
)
def test_undo_refuses_naming_the_reason(status: dict[str, Any], to_version: str | None, message: str) -> None:
    assert refusal_of(undo, body(**status), to_version) == message


def test_undo_refuses_what_spec_model_names_already_and_a_spec_the_operator_holds() -> None:
    held = body()
    held["spec"]["model"] = {"uri": "s3://models/fraud/7/model.onnx", "sha256": "7" * 64, "version": "7"}
    assert refusal_of(undo, held).startswith("has spec.model set to version 7 already, and no rollout under way")
    history = body()["status"]["history"]
    tried = entry(4, "7", "RolledBack", "7" * 64, message="errorRate failed: 0.2 (limit 0.01)")
    message = refusal_of(undo, body(history=[tried, *history]))
    assert message.startswith("rolled version 7 back in its last rollout (4: RolledBack: errorRate failed"), message
    assert "`kubectl modeldeploy retry fraud` to try it anyway" in message
    rolled = body(history=[entry(4, "9", "RolledBack", "9" * 64), *history])
    rolled["spec"]["model"] = {"uri": "s3://models/fraud/9/model.onnx", "sha256": "9" * 64, "version": "9"}
    assert refusal_of(undo, rolled, "8").endswith("; spec.model names version 9: set it back to 8 in the manifest")


# --- --dry-run and the wait of --skip-analysis


def test_dry_run_prints_a_spec_model_block_to_commit_and_the_patch() -> None:
    change = undo(body(), "6")
    text = patch_yaml(change, "ml", "fraud", "undo")
    assert yaml.safe_load(text) == change.patch, "comments, then the patch as YAML"
    assert "    version: '6'" in text, "a version stays a string"
    assert "# sha256: null: this version was rolled out without a digest; drop the field" in text
    assert '#   kubectl patch mdep fraud -n ml --type=merge -p \'{"spec": {"model": {' in text
    assert text.startswith("# ml/fraud: undo sets spec.model to version 6, promoted at")


def test_the_wait_sees_the_rollout_of_the_version_set_start_or_end() -> None:
    change = ModelChange("7", "s3://models/fraud/7/model.onnx", "7" * 64, {}, "version 7")
    before = body()
    after = last_revision(before["status"])
    assert after == 3
    patched = copy.deepcopy(before)
    patched["spec"]["model"] = {"uri": change.uri, "sha256": change.sha256, "version": "7"}
    assert rollout_seen(patched, change, after) == ("waiting", "no rollout yet")
    canary = {"revision": 4, "version": "7", "uri": change.uri, "sha256": change.sha256, "message": "starting"}
    started = copy.deepcopy(patched)
    started["status"]["canary"] = canary
    assert rollout_seen(started, change, after) == ("started", "rollout 4 of version 7: starting")
    ended = copy.deepcopy(patched)
    ended["status"]["history"].insert(0, entry(4, "7", "RolledBack", "7" * 64, reason="SignatureMismatch"))
    state, said = rollout_seen(ended, change, after)
    assert state == "ended" and said.startswith("rollout 4 of version 7 ended before a promotion: RolledBack"), said
    assert rollout_seen(before, change, after) == (
        "ended",
        "spec.model was changed again meanwhile: it names version 8 now",
    )


def test_the_promote_full_stamp_is_never_older_than_the_rollout() -> None:
    ahead = {"startedAt": "2999-01-01T00:00:00Z", "handled": "2998-12-31T23:59:59.000000Z"}
    assert _stamp(ahead) == "2999-01-01T00:00:00.000000Z", "the operator's clock is ahead of this one"
    assert newer(_stamp(ahead), ahead["handled"], ahead["startedAt"]), "the operator acts on it"
    behind = {"startedAt": "2001-01-01T00:00:00Z", "handled": ""}
    stamp = _stamp(behind)
    assert stamp > "2001-01-01T00:00:00.000000Z" and stamp.endswith("Z") and len(stamp) == 27
    assert newer(stamp, behind["handled"], behind["startedAt"])
