"""The telemetry contract: every name the server exports comes from telemetry.py, and back."""

from __future__ import annotations

import numpy as np
import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.feedback import FeedbackOptions
from modeldeploy_serving.model import Model
from modeldeploy_serving.sampling import CaptureOptions
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.harness import InProcessServer, in_process, infer_body
from tests.serving.redis_server import RedisServer


def exported(server: InProcessServer) -> list[Metric]:
    """The families on the server's /metrics page, without prometheus-client's <name>_created
    timestamps next to each counter and histogram."""
    return [f for f in text_string_to_metric_families(server.metrics()) if not f.name.endswith("_created")]


NAMES = {value for name, value in vars(t).items() if name.isupper() and str(value).startswith("modeldeploy_")}
SHADOW_NAMES = {name for name in NAMES if name.startswith("modeldeploy_shadow_")}  # only while mirroring
EXTRA_LABELS = {t.LABEL_OUTCOME, t.LABEL_FEATURE, t.LABEL_OUTPUT, t.LABEL_CLASS, "le", t.LABEL_SHA256, t.LABEL_PROFILE}
CAPTURE_NAMES = {t.CAPTURE_ROWS, t.CAPTURE_DROPPED_ROWS}  # exported only by a pod that captures
FEEDBACK_NAMES = {name for name in NAMES if name.startswith("modeldeploy_feedback")}  # only with a feedback store


def test_names_are_distinct_and_prefixed() -> None:
    assert len(NAMES) == 31
    assert len(SHADOW_NAMES) == 7
    assert len(FEEDBACK_NAMES) == 8
    assert all(not name.endswith("_total") for name in NAMES)  # the exporter adds it to counters
    assert t.TRACKS == (t.STABLE, t.CANARY) == ("stable", "canary")
    assert t.TRACK_ENV == "MODELDEPLOY_TRACK"


def test_the_metrics_page_exports_exactly_the_contracts_names(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    cancer_server.infer(infer_body(cancer_rows[:3]))
    families = exported(cancer_server)
    assert {family.name for family in families} == NAMES - CAPTURE_NAMES - SHADOW_NAMES - FEEDBACK_NAMES
    for family in families:
        for sample in family.samples:
            assert set(t.BASE_LABELS) <= set(sample.labels), sample
            assert set(sample.labels) - set(t.BASE_LABELS) <= EXTRA_LABELS, sample
    outcomes = {s.labels[t.LABEL_OUTCOME] for f in families if f.name == t.REQUESTS for s in f.samples}
    assert outcomes == set(t.OUTCOMES)


def test_a_capturing_server_exports_every_name_of_the_contract_but_shadow_ones(cancer_v1: Model) -> None:
    capture = CaptureOptions("http://127.0.0.1:9/never-written", sample_rate=1e-12)
    with in_process(ServingApp(cancer_v1, AppOptions(capture=capture))) as server:
        families = exported(server)
    assert {family.name for family in families} == NAMES - SHADOW_NAMES - FEEDBACK_NAMES  # shadow: test_mirroring.py
    for family in families:
        for sample in family.samples:
            assert set(sample.labels) - set(t.BASE_LABELS) <= EXTRA_LABELS | {t.LABEL_REASON}, sample
    reasons = {s.labels[t.LABEL_REASON] for f in families if f.name == t.CAPTURE_DROPPED_ROWS for s in f.samples}
    assert reasons == set(t.DROP_REASONS)


@pytest.mark.parametrize(
    ("model", "other_kinds_names"),
    [
        ("cancer_v1", {t.FEEDBACK_ABSOLUTE_ERROR}),  # a classifier: correct and confusion counts
        ("diabetes_v1", {t.FEEDBACK_CORRECT, t.FEEDBACK_CONFUSION}),  # a regression: the error histogram
    ],
)
def test_a_server_with_a_feedback_store_exports_the_feedback_names(
    model: str, other_kinds_names: set[str], redis_store: RedisServer, request: pytest.FixtureRequest
) -> None:
    served: Model = request.getfixturevalue(model)
    options = FeedbackOptions(redis_store.url, prefix=f"telemetry-{model}")
    with in_process(ServingApp(served, AppOptions(feedback=options))) as server:
        answer = server.infer(infer_body(np.zeros((1, served.inputs[0].shape[1]), dtype=np.float32), id="t-1"))
        truth = answer.json()["outputs"][0]["data"][0]
        labels = {"feedback": [{"id": "t-1", "truth": truth}, {"id": "t-1", "truth": truth}, {"id": "no", "truth": 1}]}
        assert server.post(f"/v2/models/{served.name}/feedback", json=labels).status_code == 200
        families = exported(server)
    expected = FEEDBACK_NAMES - other_kinds_names
    assert {family.name for family in families} & FEEDBACK_NAMES == expected
    feedback_labels = {t.LABEL_RESULT, t.LABEL_TRUTH, t.LABEL_PREDICTED, t.LABEL_REASON}
    for family in families:
        for sample in family.samples:
            assert set(t.BASE_LABELS) <= set(sample.labels), sample
            assert set(sample.labels) - set(t.BASE_LABELS) <= EXTRA_LABELS | feedback_labels, sample
    results = {s.labels[t.LABEL_RESULT]: s.value for f in families if f.name == t.FEEDBACK for s in f.samples}
    assert results == {t.RESULT_MATCHED: 1, t.RESULT_DUPLICATE: 1, t.RESULT_UNMATCHED: 1}
