"""`kubectl modeldeploy`: what it prints from a status, and its usage errors."""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Any

import pytest
from modeldeploy_cli.lineage import Refused
from modeldeploy_cli.plugin import refusal, render_history, render_status

BODY = {
    "metadata": {"name": "fraud", "namespace": "ml", "annotations": {"modeldeploy.dev/paused": "true"}},
    "spec": {
        "rollout": {"steps": [10, 50]},
        "owner": {"team": "fraud-ml", "contact": "#fraud-oncall", "runbook": "https://wiki.example.com/fraud"},
    },
    "status": {
        "phase": "Progressing",
        "conditions": [{"type": "Ready", "status": "False", "reason": "CanaryPaused", "message": "step 1 of 2"}],
        "stable": {"version": "7", "replicas": 2, "readyReplicas": 2, "uri": "s3://m/7/model.onnx"},
        "canary": {
            "version": "8",
            "revision": 3,
            "step": 0,
            "requestedWeight": 10,
            "actualWeight": 33,
            "message": "step 1 of 2: 10% requested, 33% achieved",
            "analysis": [
                {"check": "errorRate", "result": "Successful", "value": 0.0, "limit": 0.01, "samples": 120},
                {"check": "predictionShift", "result": "Inconclusive", "samples": 12, "message": "too few"},
            ],
        },
        "drift": {
            "verdict": "Drifted",
            "method": "psi",
            "score": 0.93,
            "threshold": 0.2,
            "samples": 400,
            "window": "10m",
            "evaluatedAt": "2026-11-25T10:01:00Z",
            "message": "drifted: mean area",
            "features": [{"name": "mean area", "score": 0.93, "drifted": True}],
            "episode": {"number": 2, "startedAt": "2026-11-25T10:01:00Z"},
            "retraining": {"job": "fraud-retrain-2", "episode": 2, "outcome": "Running", "message": ""},
        },
        "history": [
            {
                "revision": 2,
                "version": "6",
                "outcome": "RolledBack",
                "decidedBy": "analysis",
                "reason": "RolledBack",
                "message": "predictionShift failed: PSI 2.1",
                "finishedAt": "2026-11-25T10:00:00Z",
                "startedAt": "2026-11-25T09:55:00Z",
                "uri": "s3://m/6/model.onnx",
                "analysis": [{"check": "predictionShift", "result": "Failed", "value": 2.1, "limit": 0.2}],
            }
        ],
    },
}


def test_status_shows_steps_weights_checks_and_history() -> None:
    text = render_status(BODY)
    assert "canary  version 8 (rollout 3), step 1 of 2 [10, 50]: weight 10% requested, 33% achieved" in text
    assert "errorRate" in text and "(limit 0.01), 120 samples" in text
    assert "predictionShift Inconclusive" in text
    assert "paused: steps wait until `kubectl modeldeploy resume`" in text
    assert "2: version 6 RolledBack by analysis" in text
    assert "drift   Drifted by psi over 10m, score 0.93 (threshold 0.2), 400 rows" in text
    assert "mean area" in text
    assert "episode 2 since 2026-11-25T10:01:00Z, still open" in text
    assert "retraining Job fraud-retrain-2 (episode 2): Running" in text


def test_status_says_who_owns_the_model() -> None:
    lines = render_status(BODY).splitlines()
    assert lines[2] == "  owner   team fraud-ml, contact #fraud-oncall, runbook https://wiki.example.com/fraud"
    without = render_status({**BODY, "spec": {"rollout": {"steps": [10, 50]}}})
    assert "owner" not in without, "no owner line for a spec without one"


def test_history_keeps_the_evidence() -> None:
    text = render_history(BODY)
    assert "predictionShift failed: PSI 2.1" in text
    assert "predictionShift Failed       2.1 (limit 0.2)" in text


SHADOW_CANARY = {
    "version": "8",
    "revision": 4,
    "step": 0,
    "requestedWeight": 0,
    "actualWeight": 0,
    "shadow": True,
    "message": "shadow step: mirroring; judged in 20s",
    "analysis": [
        {"check": "errorRate", "result": "Successful", "value": 0.0, "limit": 0.01, "samples": 240},
        {"check": "agreement", "result": "Failed", "value": 0.0625, "limit": 0.9, "samples": 240},
        {"check": "outputDelta", "result": "Successful", "value": 0.48, "samples": 240, "message": "reported only"},
    ],
}


def test_status_shows_the_shadow_step_with_agreement_and_deltas() -> None:
    spec = {"rollout": {"steps": [10, 50], "shadow": {"fraction": 0.5}}}
    body = {**BODY, "spec": spec, "status": {**BODY["status"], "canary": SHADOW_CANARY}}
    text = render_status(body)
    assert (
        "canary  version 8 (rollout 4), shadow step before step 1 of 2 [10, 50]: no live traffic (weight 0%), "
        "stable mirrors 50% of its requests to it"
    ) in text
    assert "shadow  agreement with stable 6.25% on 240 rows, p95 |stable - canary| 0.48 on 240 rows" in text
    assert "agreement       Failed       0.0625 (limit 0.9), 240 samples" in text
    assert "weight 0% requested" not in text


def test_status_shows_live_quality_and_its_episode() -> None:
    quality = {
        "verdict": "Degraded",
        "metric": "accuracy",
        "accuracy": 0.7104,
        "labels": 412,
        "reference": 0.979,
        "version": "7",
        "window": "1h",
        "evaluatedAt": "2026-11-25T10:00:00Z",
        "message": "10.8 points lower",
        "episode": {"number": 1, "startedAt": "2026-11-25T10:00:00Z"},
        "retraining": {"job": "fraud-quality-1", "episode": 1, "outcome": "Running"},
    }
    text = render_status({**BODY, "status": {**BODY["status"], "quality": quality}})
    assert (
        "quality Degraded: accuracy 0.710 (reference 0.979) on 412 labels of version 7 over 1h, "
        "at 2026-11-25T10:00:00Z: 10.8 points lower"
    ) in text
    assert "retraining Job fraud-quality-1 (episode 1): Running" in text
    assert "quality" not in render_status(BODY)


def test_history_marks_a_rollout_decided_in_the_shadow_step() -> None:
    entry = {**BODY["status"]["history"][0], "shadow": True, "message": "shadow step: agreement failed"}
    text = render_history({**BODY, "status": {"history": [entry]}})
    assert "version 6 RolledBack by analysis in the shadow step at 2026-11-25T10:00:00Z" in text


IMAGE = "registry.example.com/modeldeploy@sha256:" + "e" * 64
RETRAINED = {
    "kind": "Retrained",
    "job": "fraud-retrain-1",
    "episode": 1,
    "episodeKind": "drift",
    "baseVersion": "6",
    "dataWindow": {"since": "2026-11-24T09:50:00Z", "until": "2026-11-24T10:01:00Z"},
    "trainedRows": 12000,
}
LINEAGE: dict[str, Any] = {
    "metadata": {"name": "fraud", "namespace": "ml"},
    "status": {
        "stable": {
            "version": "7",
            "uri": "s3://m/7/model.onnx",
            "model": {"uri": "s3://m/7/model.onnx", "sha256": "7" * 64},
            "origin": RETRAINED,
            "image": IMAGE,
        },
        "history": [
            {**BODY["status"]["history"][0], "origin": {"kind": "Applied"}},
            {
                "revision": 1,
                "version": "7",
                "outcome": "Promoted",
                "decidedBy": "analysis",
                "reason": "Serving",
                "message": "version 7 promoted",
                "startedAt": "2026-11-24T11:00:00Z",
                "finishedAt": "2026-11-24T11:10:00Z",
                "uri": "s3://m/7/model.onnx",
                "origin": RETRAINED,
                "image": IMAGE,
            },
        ],
    },
}


def test_history_shows_what_stable_serves_and_where_each_version_came_from() -> None:
    lines = render_history(LINEAGE).splitlines()
    assert lines[:3] == [
        "stable serves version 7, s3://m/7/model.onnx",
        "  origin  Retrained by fraud-retrain-1, drift episode 1, from version 6, "
        "data 2026-11-24T09:50:00Z..2026-11-24T10:01:00Z, 12000 rows",
        f"  image   {IMAGE}",
    ]
    rolled_back = lines.index(
        "2: version 6 RolledBack by analysis at 2026-11-25T10:00:00Z: RolledBack: predictionShift failed: PSI 2.1"
    )
    assert lines[rolled_back + 2 : rolled_back + 4] == [
        "  origin  Applied (spec.model set by a user or Git)",
        "  image   not recorded",
    ], "no image: its canary pods were never seen"
    promoted = lines.index("1: version 7 Promoted by analysis at 2026-11-24T11:10:00Z: Serving: version 7 promoted")
    assert lines[promoted + 2].startswith("  origin  Retrained by fraud-retrain-1") and IMAGE in lines[promoted + 3]
    assert "origin  not recorded (an operator before lineage)" in render_history(BODY)


def test_history_of_one_version_and_as_json() -> None:
    import json

    text = render_history(LINEAGE, "6")
    assert text.startswith("2: version 6 RolledBack") and "version 7" not in text
    assert json.loads(render_history(LINEAGE, "7", as_json=True)) == LINEAGE["status"]["history"][1]
    first = {**LINEAGE, "status": {**LINEAGE["status"], "history": []}}
    assert json.loads(render_history(first, "7", as_json=True)) == LINEAGE["status"]["stable"]
    assert render_history(first, "7").endswith("fraud: no finished rollouts of version 7 yet")
    assert json.loads(render_history(LINEAGE, as_json=True)) == LINEAGE["status"]["history"]
    with pytest.raises(Refused, match=r"has no version 5 in status.history or status.stable; it has: 7 \(stable\), 6"):
        render_history(LINEAGE, "5", as_json=True)


CANDIDATE = {
    "uri": "s3://m/8/model.onnx",
    "sha256": "8" * 64,
    "version": "8",
    "metrics": {"accuracy": 0.9712, "baselineAccuracy": 0.91},
}


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            {"outcome": "Succeeded", "candidate": CANDIDATE, "adoption": "Waiting", "message": "its sha256 matches"},
            [
                "  retraining Job fraud-retrain-2 (episode 2): Succeeded: its sha256 matches",
                "    candidate version 8, s3://m/8/model.onnx",
                "    metrics accuracy 0.9712, baselineAccuracy 0.91; waiting: `kubectl modeldeploy adopt fraud` sets "
                "it as spec.model",
            ],
        ),
        (
            {"outcome": "Verifying", "candidate": {**CANDIDATE, "metrics": {}}},
            [
                "  retraining Job fraud-retrain-2 (episode 2): Verifying",
                "    candidate version 8, s3://m/8/model.onnx",
                "    metrics none reported; being verified (its file fetched, its sha256 compared)",
            ],
        ),
        (
            {
                "outcome": "Succeeded",
                "candidate": CANDIDATE,
                "adoption": "Adopted",
                "adoptedAt": "2026-11-25T10:05:00Z",
            },
            [
                "  retraining Job fraud-retrain-2 (episode 2): Succeeded",
                "    candidate version 8, s3://m/8/model.onnx",
                "    metrics accuracy 0.9712, baselineAccuracy 0.91; adopted: spec.model names it; its rollout "
                "decides (set by the operator at 2026-11-25T10:05:00Z)",
            ],
        ),
        (
            {"outcome": "Succeeded", "candidate": CANDIDATE, "adoption": "RolledBack"},
            [
                "  retraining Job fraud-retrain-2 (episode 2): Succeeded",
                "    candidate version 8, s3://m/8/model.onnx",
                "    metrics accuracy 0.9712, baselineAccuracy 0.91; rolled back (`kubectl modeldeploy history "
                "fraud`): not adopted again",
            ],
        ),
        (
            {"outcome": "Failed", "reason": "JobFailed", "message": "OOMKilled"},
            ["  retraining Job fraud-retrain-2 (episode 2): Failed (JobFailed): OOMKilled"],
        ),
    ],
)
def test_status_shows_the_retraining_candidate_and_its_adoption(job: dict[str, Any], expected: list[str]) -> None:
    drift = {**BODY["status"]["drift"], "retraining": {"job": "fraud-retrain-2", "episode": 2, **job}}
    lines = render_status({**BODY, "status": {**BODY["status"], "drift": drift}}).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  retraining Job"))
    assert lines[first : first + len(expected)] == expected
    assert not lines[first + len(expected)].startswith("    "), "nothing more about the candidate"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["adopt", "fraud", "--dry-run"], {"source": None, "dry_run": True}),
        (["adopt", "fraud", "--from", "quality", "-n", "ml"], {"source": "quality", "namespace": "ml"}),
        (["undo", "fraud"], {"to_version": None, "skip_analysis": False, "timeout": 300.0, "dry_run": False}),
        (["undo", "fraud", "--to-version", "6", "--skip-analysis", "--timeout", "90s"], {"timeout": 90.0}),
        (["history", "fraud", "--version", "7", "-o", "json"], {"version": "7", "output": "json"}),
    ],
)
def test_adopt_undo_and_history_flags(argv: list[str], expected: dict[str, Any]) -> None:
    from modeldeploy_cli.plugin import _parser

    args = vars(_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected and args["name"] == "fraud"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["undo", "fraud", "--timeout", "soon"], "argument --timeout: 'soon' is not a duration such as 90s"),
        (["adopt", "fraud", "--from", "labels"], "argument --from: invalid choice: 'labels'"),
        (["history", "fraud", "-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
    ],
)
def test_bad_flags_of_adopt_undo_and_history_exit_2(argv: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_cli.plugin", *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and words in result.stderr, result.stderr


def test_usage_errors_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_cli.plugin", "promote"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "the following arguments are required: name" in result.stderr


def test_commands_that_would_do_nothing_are_refused() -> None:
    rolling = BODY
    settled: dict[str, Any] = {**BODY, "status": {**BODY["status"], "canary": None}}
    promoted = {**settled, "status": {**settled["status"], "history": [{"outcome": "Promoted"}]}}
    assert [refusal(c, rolling) for c in ("promote", "abort", "pause", "resume")] == [None] * 4
    assert refusal("retry", rolling) == "has a rollout under way: nothing to retry"
    assert refusal("promote", settled) == refusal("abort", settled) == "has no rollout under way"
    assert refusal("retry", settled) is None, "the last rollout was rolled back"
    assert refusal("retry", promoted) == "has no rolled back or aborted rollout to retry"
    assert refusal("retry", {"metadata": {"name": "new"}}) == "has no rolled back or aborted rollout to retry"


@pytest.mark.parametrize(
    ("argv", "namespace"),
    [
        (["status", "fraud", "-n", "ml"], "ml"),  # as kubectl takes it
        (["-n", "ml", "status", "fraud"], "ml"),
        (["status", "fraud", "--namespace", "ml", "--watch"], "ml"),
        (["-n", "other", "abort", "fraud", "-n", "ml"], "ml"),  # the later one wins, as in kubectl
        (["history", "fraud"], None),  # the kubeconfig context's
    ],
)
def test_the_namespace_flag_goes_before_or_after_the_command(argv: list[str], namespace: str | None) -> None:
    from modeldeploy_cli.plugin import _parser

    args = _parser().parse_args(argv)
    assert (args.namespace, args.name) == (namespace, "fraud")


def test_the_countdown_is_counted_when_printed_not_when_status_was_written() -> None:
    canary = {
        **BODY["status"]["canary"],
        "stepStartedAt": "2026-11-25T10:00:00Z",
        "message": "step 1 of 2: 33% achieved; judged in 55s",
    }
    body = {**BODY, "spec": {"rollout": {"steps": [10, 50], "interval": "1m"}}, "status": {"canary": canary}}
    started = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC).timestamp()
    assert "judged in 55s" in render_status(body, now=started + 5)
    assert "judged in 13s" in render_status(body, now=started + 47)
    assert "judged in 0s" in render_status(body, now=started + 75), "overdue: being judged"
    shadow = {**canary, "shadow": True, "message": "shadow step: mirroring; judged in 20s"}
    spec = {"rollout": {"steps": [10], "interval": "1m", "shadow": {"duration": "30s"}}}
    body = {**BODY, "spec": spec, "status": {"canary": shadow}}
    assert "shadow step: mirroring; judged in 18s" in render_status(body, now=started + 12)
    unstarted = {**canary, "stepStartedAt": None, "message": "step 1 of 2: waiting for 1 canary pod(s)"}
    assert "waiting for 1 canary pod(s)" in render_status({**body, "status": {"canary": unstarted}}, now=started)
