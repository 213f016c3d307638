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
# Requests that carried SHADOW_HEADER with the deployment's token: a copy of another server's
# live request. Counted here (outcome), never in REQUESTS, so a canary's REQUESTS count only
# live requests.
MIRRORED_REQUESTS: Final = "modeldeploy_mirrored_requests"  # counter: outcome

# Feedback (docs/feedback.md): labels sent back by answer id and joined to the predictions
# recorded in the feedback store. Exported only by a server started with --feedback-store.
# The quality series are labelled with the version and track of the prediction a label
# joined (any pod's, stable or canary, including pods already gone), not of the server
# that received the label; an unmatched label has no prediction and carries the server's.
FEEDBACK: Final = "modeldeploy_feedback"  # counter: result, one of FEEDBACK_RESULTS
FEEDBACK_CORRECT: Final = "modeldeploy_feedback_correct"  # counter: output; matched labels equal to the prediction
FEEDBACK_CONFUSION: Final = "modeldeploy_feedback_confusion"  # counter: output, truth, predicted
FEEDBACK_ABSOLUTE_ERROR: Final = "modeldeploy_feedback_absolute_error"  # histogram: output; |truth - prediction|
FEEDBACK_DELAY: Final = "modeldeploy_feedback_delay_seconds"  # histogram: from the prediction to its label
FEEDBACK_REQUESTS: Final = "modeldeploy_feedback_requests"  # counter: outcome (calls of the feedback endpoint)
FEEDBACK_PREDICTIONS: Final = "modeldeploy_feedback_predictions"  # counter: predictions written to the store
FEEDBACK_PREDICTIONS_DROPPED: Final = "modeldeploy_feedback_predictions_dropped"  # counter: reason
LABEL_RESULT: Final = "result"
LABEL_TRUTH: Final = "truth"
LABEL_PREDICTED: Final = "predicted"
RESULT_MATCHED: Final = "matched"  # the first label for a prediction still in the store
RESULT_UNMATCHED: Final = "unmatched"  # no such prediction: unknown id or row, or past the window
RESULT_DUPLICATE: Final = "duplicate"  # the prediction was labelled before; counted once
FEEDBACK_RESULTS: Final = (RESULT_MATCHED, RESULT_UNMATCHED, RESULT_DUPLICATE)
DROP_STORE_ERROR: Final = "store_error"  # the store refused the write or did not answer in time
FEEDBACK_DROP_REASONS: Final = (DROP_QUEUE_FULL, DROP_STORE_ERROR)
OTHER_VERSION: Final = "other"  # versions past MAX_FEEDBACK_VERSIONS count under this one
MAX_FEEDBACK_VERSIONS: Final = 16  # (version, track) pairs with series of their own, per server

# Shadow traffic, exported by the server that mirrors (stable), labelled BASE_LABELS and
# LABEL_SHADOW_VERSION (the version that answered the copies).
SHADOW_HEADER: Final = "x-modeldeploy-shadow"  # on every mirrored request; its value is the shadow token
#: Environment variable with the token that stable and canary pods of one deployment share:
#: the value of SHADOW_HEADER that marks a genuine copy (a client cannot know it).
SHADOW_TOKEN_ENV: Final = "MODELDEPLOY_SHADOW_TOKEN"  # noqa: S105 (the variable's name, not its value)
LABEL_SHADOW_VERSION: Final = "shadow_version"
LABEL_STABLE_CLASS: Final = "stable_class"
LABEL_CANARY_CLASS: Final = "canary_class"
SHADOW_FRACTION: Final = "modeldeploy_shadow_fraction"  # gauge: the share of requests mirrored now
SHADOW_REQUESTS: Final = "modeldeploy_shadow_requests"  # counter: outcome, one of SHADOW_OUTCOMES
SHADOW_DURATION: Final = "modeldeploy_shadow_duration_seconds"  # histogram: the shadow's answer time
SHADOW_LABELS_COMPARED: Final = "modeldeploy_shadow_labels_compared"  # counter: output; rows
SHADOW_LABELS_AGREED: Final = "modeldeploy_shadow_labels_agreed"  # counter: output; rows
SHADOW_CONFUSION: Final = "modeldeploy_shadow_confusion"  # counter: output, stable_class, canary_class
SHADOW_OUTPUT_DELTA: Final = "modeldeploy_shadow_output_delta"  # histogram: output, class; |stable - shadow|

SHADOW_OK: Final = "ok"  # the shadow answered 2xx and the answers were compared
SHADOW_INVALID: Final = "invalid"  # the shadow refused the copy (4xx)
SHADOW_ERROR: Final = "error"  # the shadow failed (5xx)
SHADOW_TIMEOUT: Final = "timeout"  # no whole answer within the mirroring timeout
SHADOW_UNREACHABLE: Final = "unreachable"  # no connection, or the connection broke
SHADOW_INCOMPARABLE: Final = "incomparable"  # 2xx, but outputs missing or of another shape
SHADOW_DROPPED: Final = "dropped"  # never sent: the mirroring queue was full
SHADOW_OUTCOMES: Final = (
    SHADOW_OK,
    SHADOW_INVALID,
    SHADOW_ERROR,
    SHADOW_TIMEOUT,
    SHADOW_UNREACHABLE,
    SHADOW_INCOMPARABLE,
    SHADOW_DROPPED,
)

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
# Seconds from a prediction to its label: a click comes in seconds, a chargeback in days.
FEEDBACK_DELAY_BUCKETS: Final = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
    259200.0,
    604800.0,
)

# Edges of SHADOW_OUTPUT_DELTA for scores (probabilities, in [0, 1]); exactly equal answers
# fall in the first bucket (le="0.0"). A regression output's edges are these times the power
# of ten at or above its reference range (the profile's last edge minus its first), so a
# model predicting values around 100 gets edges 0, 0.1, ... 1000 (see docs/telemetry.md).
SHADOW_DELTA_BUCKETS: Final = (
    0.0,
    0.0001,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
)
