"""The telemetry contract between the serving pods and the operator.

Every metric name and label the server exports is defined here and nowhere else: the
server imports these names to export them, the operator imports them to query them. A
rename on one side that the other does not see would silently blind canary analysis and
drift detection, so neither side spells a metric name out by hand.

This module is pure: no prometheus-client, no numpy, so the operator can import it
without the serving dependencies. See docs/telemetry.md for the user-facing reference.
"""

from __future__ import annotations

from typing import Final

#: Environment variable that tells a serving pod which track it serves.
TRACK_ENV: Final = "MODELDEPLOY_TRACK"
STABLE: Final = "stable"
CANARY: Final = "canary"
TRACKS: Final = (STABLE, CANARY)

# Labels on every series.
LABEL_MODEL: Final = "model"
LABEL_VERSION: Final = "version"
LABEL_TRACK: Final = "track"
BASE_LABELS: Final = (LABEL_MODEL, LABEL_VERSION, LABEL_TRACK)

# Extra labels, each with a bounded set of values.
LABEL_OUTCOME: Final = "outcome"  # one of OUTCOMES
LABEL_FEATURE: Final = "feature"  # a feature name from the model's profile
LABEL_OUTPUT: Final = "output"  # a model output name
LABEL_CLASS: Final = "class"  # a class label from the model's profile

OUTCOME_OK: Final = "ok"  # 2xx: the model answered
OUTCOME_INVALID: Final = "invalid"  # 4xx: the request was refused before inference
OUTCOME_ERROR: Final = "error"  # 5xx: the server failed
OUTCOMES: Final = (OUTCOME_OK, OUTCOME_INVALID, OUTCOME_ERROR)

LABEL_REASON: Final = "reason"  # one of DROP_REASONS
DROP_ROW_CAP: Final = "row_cap"  # sampled, but past the minute's maxRowsPerMinute
DROP_QUEUE_FULL: Final = "queue_full"  # the queue to the sink was full (the sink is slow or down)
DROP_SINK_ERROR: Final = "sink_error"  # the sink refused or did not answer, after every attempt
DROP_REASONS: Final = (DROP_ROW_CAP, DROP_QUEUE_FULL, DROP_SINK_ERROR)

# Cardinality bounds: a model with more features or classes than this exports only the
# first ones (in profile order); the rest are counted in FEATURES_UNTRACKED.
MAX_FEATURES: Final = 64
MAX_CLASSES: Final = 32

# Metric names. Counters are exported with the conventional _total suffix.
REQUESTS: Final = "modeldeploy_requests"  # counter: outcome
REQUEST_DURATION: Final = "modeldeploy_request_duration_seconds"  # histogram
INFERENCE_DURATION: Final = "modeldeploy_inference_duration_seconds"  # histogram
BATCH_SIZE: Final = "modeldeploy_batch_size"  # histogram of rows per ONNX Runtime call
ROWS: Final = "modeldeploy_rows"  # counter of rows inferred
FEATURE_VALUE: Final = "modeldeploy_feature_value"  # histogram: feature; le = profile edges
FEATURE_MISSING: Final = "modeldeploy_feature_missing"  # counter: feature (NaN / null)
FEATURE_INVALID: Final = "modeldeploy_feature_invalid"  # counter: feature (+-inf)
FEATURES_UNTRACKED: Final = "modeldeploy_features_untracked"  # gauge: features past the cap
PREDICTION_VALUE: Final = "modeldeploy_prediction_value"  # histogram: output, class
PREDICTION_CLASS: Final = "modeldeploy_prediction_class"  # counter: output, class
MODEL_INFO: Final = "modeldeploy_model_info"  # gauge 1: sha256, profile
PROCESS_CPU: Final = "modeldeploy_process_cpu_seconds"  # counter: CPU time of the serving process
CAPTURE_ROWS: Final = "modeldeploy_capture_rows"  # counter: captured rows written to the sink
CAPTURE_DROPPED_ROWS: Final = "modeldeploy_capture_dropped_rows"  # counter: reason (sampled rows not written)

# Fixed label values of the model_info gauge.
LABEL_SHA256: Final = "sha256"
LABEL_PROFILE: Final = "profile"

REQUEST_DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
