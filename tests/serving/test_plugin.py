"""`kubectl modeldeploy`: what it prints from a status, and its usage errors."""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Any

import pytest
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
