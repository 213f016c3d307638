"""The telemetry contract: every name the server exports comes from telemetry.py, and back."""

from __future__ import annotations

import numpy as np
from modeldeploy_serving import telemetry as t
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.harness import InProcessServer, infer_body

NAMES = {value for name, value in vars(t).items() if name.isupper() and str(value).startswith("modeldeploy_")}
EXTRA_LABELS = {t.LABEL_OUTCOME, t.LABEL_FEATURE, t.LABEL_OUTPUT, t.LABEL_CLASS, "le", t.LABEL_SHA256, t.LABEL_PROFILE}


def test_names_are_distinct_and_prefixed() -> None:
    assert len(NAMES) == 13
    assert all(not name.endswith("_total") for name in NAMES)  # the exporter adds it to counters
    assert t.TRACKS == (t.STABLE, t.CANARY) == ("stable", "canary")
    assert t.TRACK_ENV == "MODELDEPLOY_TRACK"


def test_the_metrics_page_exports_exactly_the_contracts_names(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    cancer_server.infer(infer_body(cancer_rows[:3]))
    # prometheus-client adds a <name>_created timestamp next to each counter and histogram.
    families = [f for f in text_string_to_metric_families(cancer_server.metrics()) if not f.name.endswith("_created")]
    assert {family.name for family in families} == NAMES
    for family in families:
        for sample in family.samples:
            assert set(t.BASE_LABELS) <= set(sample.labels), sample
            assert set(sample.labels) - set(t.BASE_LABELS) <= EXTRA_LABELS, sample
    outcomes = {s.labels[t.LABEL_OUTCOME] for f in families if f.name == t.REQUESTS for s in f.samples}
    assert outcomes == set(t.OUTCOMES)
