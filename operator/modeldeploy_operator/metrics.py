"""The operator's own Prometheus metrics, served at /metrics beside /healthz."""

from __future__ import annotations

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
