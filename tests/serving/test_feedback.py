"""What a label is and what it is compared with: feedback bodies checked, targets, keys, outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.durations import parse_seconds
from modeldeploy_serving.feedback import (
    MAX_LABELS,
    FeedbackError,
    FeedbackOptions,
    FeedbackTarget,
    Label,
    Prediction,
    candidates,
    check_store_url,
    feedback_target,
    labelled_key,
    outcomes,
    parse_feedback,
    predicted,
    prediction_key,
    redacted,
    summary,
)
from modeldeploy_serving.model import Model
from modeldeploy_serving.profile import OutputProfile, Profile, Quality
from modeldeploy_serving.sampling import RowSource, label_row
from modeldeploy_serving.signature import TensorSpec

LABEL = TensorSpec("label", "INT64", (-1,), "tensor(int64)")
PROBABILITIES = TensorSpec("probabilities", "FP32", (-1, 2), "tensor(float)")
VALUE = TensorSpec("variable", "FP32", (-1, 1), "tensor(float)")
CLASSES = FeedbackTarget("label", "labels", classes=("0", "1"))
VALUES = FeedbackTarget("variable", "values", edges=(0.0, 1.0))


def test_a_classifier_is_judged_on_its_label_output_with_the_profiles_classes(cancer_v1: Model) -> None:
    target = feedback_target(cancer_v1.profile, cancer_v1.outputs)
    assert target == FeedbackTarget("label", "labels", classes=("0", "1"))


def test_a_regression_is_judged_on_its_value_with_error_edges_scaled_to_its_range(diabetes_v1: Model) -> None:
    target = feedback_target(diabetes_v1.profile, diabetes_v1.outputs)
    assert target is not None and (target.output, target.kind) == ("variable", "values")
    assert target.edges[0] == 0.0 and target.edges[-1] == 1000.0  # reference predictions span about 300


def test_without_a_profile_the_signature_decides_and_probabilities_alone_are_no_target() -> None:
    assert feedback_target(None, [PROBABILITIES, LABEL]) == FeedbackTarget("label", "labels")
    assert feedback_target(None, [PROBABILITIES, VALUE]) == FeedbackTarget(
        "variable", "values", edges=t.SHADOW_DELTA_BUCKETS
    )
    assert feedback_target(None, [PROBABILITIES]) is None


def test_the_output_the_reference_quality_was_measured_on_comes_first() -> None:
    profile = Profile(
        rows=10,
        features=[],
        outputs=[OutputProfile("variable", "values", edges=[0.0, 1.0], proportions=[0.0, 1.0, 0.0])],
        quality=Quality("meanAbsoluteError", "variable", 0.1, 10),
    )
    target = feedback_target(profile, [LABEL, VALUE])
    assert target is not None and target.output == "variable"


def test_items_are_read_with_row_defaulting_to_0_and_labels_as_the_profile_writes_classes() -> None:
    body = {"feedback": [{"id": "a", "truth": 1}, {"id": "a", "row": 2, "truth": "1.0"}, {"id": "b", "truth": 0.0}]}
    assert parse_feedback(body, CLASSES) == [Label("a", 0, "1", 1), Label("a", 2, "1", "1.0"), Label("b", 0, "0", 0.0)]
    assert parse_feedback({"feedback": [{"id": "a", "truth": 151}]}, VALUES) == [Label("a", 0, 151.0, 151)]
    assert parse_feedback({"feedback": []}, CLASSES) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], 'the body must be a JSON object {"feedback": [{"id": ..., "row": ..., "truth": ...}, ...]}, got []'),
        ({"labels": []}, "the body must be a JSON object"),
        ({"feedback": [], "model": "x"}, "the body has a field 'model' the server does not know; it takes 'feedback'"),
        ({"feedback": {"id": "a"}}, "'feedback' must be a list of items, got {'id': 'a'}"),
        ({"feedback": ["a"]}, "feedback[0] must be an object"),
        (
            {"feedback": [{"id": "a", "truth": 1}, {"id": "b", "rows": 1, "truth": 1}]},
            "feedback[1] has a field 'rows' the server does not know; an item takes id, row (optional, default 0)",
        ),
        ({"feedback": [{"truth": 1}]}, "feedback[0].id is missing; expected the id of the answer it labels"),
        ({"feedback": [{"id": "", "truth": 1}]}, "feedback[0].id is ''; expected"),
        ({"feedback": [{"id": 7, "truth": 1}]}, "feedback[0].id is 7; expected"),
        ({"feedback": [{"id": "a", "row": -1, "truth": 1}]}, "feedback[0].row is -1; expected the row's index"),
        ({"feedback": [{"id": "a", "row": 1.0, "truth": 1}]}, "feedback[0].row is 1.0; expected"),
        ({"feedback": [{"id": "a", "row": True, "truth": 1}]}, "feedback[0].row is True; expected"),
        (
            {"feedback": [{"id": "a"}]},
            "feedback[0].truth is missing; this model takes a label, as a string or a number",
        ),
        ({"feedback": [{"id": "a", "truth": None}]}, "feedback[0].truth is null; this model takes a label"),
        ({"feedback": [{"id": "a", "truth": True}]}, "feedback[0].truth is True; this model takes a label"),
        ({"feedback": [{"id": "a", "truth": [1]}]}, "feedback[0].truth is [1]; this model takes a label"),
        ({"feedback": [{"id": "a", "truth": float("nan")}]}, "feedback[0].truth is nan; this model takes a label"),
    ],
)
def test_a_bad_body_names_the_item_the_field_the_value_and_what_is_accepted(body: Any, message: str) -> None:
    with pytest.raises(FeedbackError) as raised:
        parse_feedback(body, CLASSES)
    assert str(raised.value).startswith(message)


def test_a_regression_takes_numbers_only() -> None:
    with pytest.raises(FeedbackError, match=r"feedback\[0\]\.truth is '151'; this model takes a number"):
        parse_feedback({"feedback": [{"id": "a", "truth": "151"}]}, VALUES)
    with pytest.raises(FeedbackError, match=r"truth is inf; this model takes a number"):
        parse_feedback({"feedback": [{"id": "a", "truth": float("inf")}]}, VALUES)


def test_a_call_takes_at_most_ten_thousand_items() -> None:
    items = [{"id": str(i), "truth": 1} for i in range(MAX_LABELS)]
    assert len(parse_feedback({"feedback": items}, CLASSES)) == MAX_LABELS
    with pytest.raises(FeedbackError, match="'feedback' holds 10001 items; a call takes at most 10000"):
        parse_feedback({"feedback": [*items, {"id": "x", "truth": 1}]}, CLASSES)


def test_keys_are_scoped_by_prefix_then_id_then_row() -> None:
    assert prediction_key("ml/fraud", "req-42") == "modeldeploy:ml/fraud:prediction:req-42"
    assert labelled_key("ml/fraud", "req-42", 3) == "modeldeploy:ml/fraud:labelled:req-42:3"


def test_labels_come_to_matched_duplicate_or_unmatched() -> None:
    labels = [Label("a", 0, "1", 1), Label("a", 1, "0", 0), Label("a", 2, "0", 0), Label("b", 0, "1", 1)]
    stored = {"a": Prediction("2", "canary", 100.0, [1, 1])}
    joined = candidates(labels, stored)
    assert joined == [0, 1]  # row 2 of a and all of b have no prediction
    results = outcomes(labels, stored, joined, [True, False])
    assert [o.result for o in results] == [t.RESULT_MATCHED, t.RESULT_DUPLICATE, t.RESULT_UNMATCHED, t.RESULT_UNMATCHED]
    assert results[0].prediction == stored["a"] and results[3].prediction is None
    assert summary(results) == {"accepted": 4, "matched": 1, "unmatched": 2, "duplicates": 1}


def test_predictions_compare_as_labels_or_values() -> None:
    stored = Prediction("1", "stable", 0.0, [1, "b", 2.5])
    assert [predicted(stored, row, CLASSES) for row in range(3)] == ["1", "b", "2.5"]
    assert predicted(stored, 2, VALUES) == 2.5


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "redis://redis.ml.svc", "rediss://user:pw@redis:6380/2", "unix:///run/r.sock"]
)
def test_store_urls(url: str) -> None:
    assert check_store_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://redis:6379", "expected redis://HOST:PORT/DB"),
        ("redis:6379", "expected redis://HOST:PORT/DB"),
        ("redis://:6379/0", "no host"),
        ("redis://u:secret@redis:6379/zero", "'redis://u:***@redis:6379/zero': the database is 'zero'"),
    ],
)
def test_other_store_urls_are_refused_without_showing_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")) as raised:
        check_store_url(url)
    assert "secret" not in str(raised.value)


def test_passwords_are_redacted_and_kept_out_of_the_options_repr() -> None:
    assert redacted("redis://default:s3cret@redis:6379/0") == "redis://default:***@redis:6379/0"
    assert redacted("redis://redis:6379/0") == "redis://redis:6379/0"
    assert "s3cret" not in repr(FeedbackOptions("redis://redis:6379/0", password="s3cret"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_seconds": 0}, "--feedback-window 0"),
        ({"queue_rows": 0}, "--feedback-queue-rows"),
        ({"prefix": "a b"}, "--feedback-prefix 'a b'"),
    ],
)
def test_bad_options_name_the_flag(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeedbackOptions("redis://redis:6379/0", **change)


def test_a_label_row_for_the_capture_sink() -> None:
    row = label_row(RowSource("fraud", "7", "stable"), 1_764_072_000.0, "req-42", 1, "1.0", False)
    assert row == {
        "timestamp": "2025-11-25T12:00:00.000Z",
        "model": "fraud",
        "version": "7",
        "track": "stable",
        "id": "req-42",
        "row": 1,
        "truth": "1.0",
        "matched": False,
    }


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h30m", 5400), ("168h", 604800), ("2.5h", 9000), ("90", 90)]
)
def test_windows_are_written_as_spec_durations(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["2d", "1 h", "", "0s", "-5", "h", "inf", "nan"])
def test_other_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration like 30s, 15m, 1h30m or 168h|longer than 0"):
        parse_seconds(text)
