"""The operator's own Prometheus metrics, served at /metrics beside /healthz."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("modeldeploy_operator_reconciles", "Reconciles by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "modeldeploy_operator_reconcile_duration_seconds",
    "Time of one reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter("modeldeploy_operator_api_writes", "Writes sent to the Kubernetes API.", ["kind"])
MODEL_DEPLOYMENTS = Gauge("modeldeploy_operator_model_deployments", "ModelDeployments watched.")
WAKE_UPS = Counter(
    "modeldeploy_operator_wake_ups", "Reconciles started by a timed wake-up (a step's interval, a resync)."
)
DRIFT_SCORE = Gauge(
    "modeldeploy_drift_score",
    'Latest drift score per ModelDeployment (feature "") and for its 5 most drifted features.',
    ["namespace", "name", "feature"],
)

_DRIFT_LABELS: dict[tuple[str, str], list[str]] = {}  # per ModelDeployment: the features it last exported


def record_drift(key: tuple[str, str], drift: Any) -> None:
    """Export the deployment's drift score and its top features' (status.drift's), dropping
    features that left the top since the last evaluation, so the series stay bounded."""
    namespace, name = key
    for feature in _DRIFT_LABELS.pop(key, []):
        DRIFT_SCORE.remove(namespace, name, feature)
    features = [""] if drift.score is not None else []
    if drift.score is not None:
        DRIFT_SCORE.labels(namespace, name, "").set(drift.score)
    for feature in drift.features:
        DRIFT_SCORE.labels(namespace, name, feature.name).set(feature.score)
        features.append(feature.name)
    _DRIFT_LABELS[key] = features
