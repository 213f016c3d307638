"""What capture keeps and how it names it: sampling, the minute's cap, rows, keys, headers."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from modeldeploy_serving.profile import FeatureProfile, Profile
from modeldeploy_serving.sampling import (
    EVENT_TYPE,
    Answered,
    CaptureOptions,
    RowSampler,
    RowSource,
    Sink,
    capture_rows,
    event_headers,
    feature_names,
    iso_time,
    object_key,
)

SOURCE = RowSource("fraud", "7", "canary")
NOON = 1_764_072_000.0  # 2025-11-25T12:00:00Z


def draws(*values: float) -> itertools.cycle[float]:
    return itertools.cycle(values)


def test_a_request_is_sampled_when_the_draw_falls_below_the_rate() -> None:
    sequence = draws(0.05, 0.5, 0.099, 0.1)
    sampler = RowSampler(0.1, 1000, lambda: next(sequence))
    assert [sampler.take(3, 0.0) for _ in range(4)] == [(3, 0), (0, 0), (3, 0), (0, 0)]


def test_a_rate_of_one_takes_every_request() -> None:
    sampler = RowSampler(1.0, 10_000, lambda: 0.999999)
    assert sum(sampler.take(1, 0.0)[0] for _ in range(1000)) == 1000


def test_the_rate_holds_over_many_draws() -> None:
    rng = np.random.default_rng(7)
    sampler = RowSampler(0.2, 10**6, lambda: float(rng.random()))
    taken = sum(sampler.take(1, 0.0)[0] for _ in range(20_000))
    assert 3_700 < taken < 4_300  # 4,000 expected; 5 standard deviations either side


def test_the_cap_cuts_a_minute_short_and_counts_what_it_cut() -> None:
    sampler = RowSampler(1.0, 10, lambda: 0.0)
    assert sampler.take(4, 60.0) == (4, 0)
    assert sampler.take(4, 90.0) == (4, 0)
    assert sampler.take(4, 119.9) == (2, 2)  # only 2 rows of room left in this minute
    assert sampler.take(4, 119.9) == (0, 4)
    assert sampler.take(4, 120.0) == (4, 0)  # a new minute


def test_one_request_larger_than_the_cap_keeps_the_cap() -> None:
    assert RowSampler(1.0, 5, lambda: 0.0).take(100, 0.0) == (5, 95)


def test_rows_that_are_not_sampled_do_not_use_the_cap() -> None:
    sequence = draws(0.9, 0.0)
    sampler = RowSampler(0.5, 3, lambda: next(sequence))
    assert [sampler.take(3, 0.0) for _ in range(4)] == [(0, 0), (3, 0), (0, 0), (0, 3)]


@pytest.mark.parametrize(
    ("uri", "kind", "bucket", "prefix"),
    [
        ("s3://samples/fraud/prod", "s3", "samples", "fraud/prod"),
        ("s3://samples", "s3", "samples", ""),
        ("s3://samples/", "s3", "samples", ""),
        ("https://collector.ml.svc/v1/capture", "http", "", ""),
        ("http://10.0.0.7:8080", "http", "", ""),
    ],
)
def test_sinks(uri: str, kind: str, bucket: str, prefix: str) -> None:
    assert Sink.parse(uri) == Sink(uri, kind, bucket, prefix)  # type: ignore[arg-type]


@pytest.mark.parametrize("uri", ["gs://bucket/x", "s3://", "https://", "/tmp/capture", "kafka://broker/topic"])
def test_other_sinks_are_refused_naming_the_flag_and_what_is_accepted(uri: str) -> None:
    with pytest.raises(ValueError, match=r"--capture-sink .*: expected s3://BUCKET/PREFIX or an http\(s\):// URL"):
        Sink.parse(uri)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sample_rate": 0.0}, "--capture-sample-rate 0.0: expected a share above 0, up to 1"),
        ({"sample_rate": 1.5}, "--capture-sample-rate 1.5"),
        ({"max_rows_per_minute": 0}, "--capture-max-rows-per-minute 0: expected 1 or more"),
        ({"batch_rows": 0}, "--capture-batch-rows 0"),
        ({"flush_seconds": 0.0}, "--capture-flush-interval-seconds 0.0"),
    ],
)
def test_bad_options_name_the_flag(change: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaptureOptions("s3://samples", **change)  # type: ignore[arg-type]


def profile_of(names: list[str]) -> Profile:
    features = [FeatureProfile(name, "input", column, [0.0], [0.5, 0.5]) for column, name in enumerate(names)]
    return Profile(rows=10, features=features, outputs=[])


def test_a_row_names_each_feature_as_the_profile_does() -> None:
    inputs = {"input": np.array([[1.5, np.nan, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)}
    outputs = {"label": np.array([1, 0], dtype=np.int64), "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]])}
    names = feature_names(profile_of(["age", "income", "score"]))
    rows = capture_rows(SOURCE, Answered("r1", NOON + 0.25, inputs, outputs, 2), names)
    assert rows == [
        {
            "timestamp": "2025-11-25T12:00:00.250Z",
            "model": "fraud",
            "version": "7",
            "track": "canary",
            "id": "r1",
            "row": 0,
            "inputs": {"age": 1.5, "income": rows[0]["inputs"]["income"], "score": 3.0},
            "outputs": {"label": 1, "probabilities": [0.25, 0.75]},
        },
        {
            "timestamp": "2025-11-25T12:00:00.250Z",
            "model": "fraud",
            "version": "7",
            "track": "canary",
            "id": "r1",
            "row": 1,
            "inputs": {"age": 4.0, "income": 5.0, "score": 6.0},
            "outputs": {"label": 0, "probabilities": [0.5, 0.5]},
        },
    ]
    assert np.isnan(rows[0]["inputs"]["income"])  # written as null by the JSON encoder


def test_only_the_rows_counted_are_kept() -> None:
    inputs = {"input": np.arange(12, dtype=np.float32).reshape(4, 3)}
    rows = capture_rows(SOURCE, Answered("r1", NOON, inputs, {"y": np.arange(4)}, 2), {})
    assert [row["outputs"]["y"] for row in rows] == [0, 1]


def test_without_a_profile_an_input_keeps_its_tensor_name_and_its_row() -> None:
    inputs = {"input": np.array([[1.0, 2.0]], dtype=np.float32), "flag": np.array([True])}
    rows = capture_rows(SOURCE, Answered("r1", NOON, inputs, {"y": np.array([0.5])}, 1), {})
    assert rows[0]["inputs"] == {"input": [1.0, 2.0], "flag": True}


def test_columns_the_profile_does_not_name_are_written_by_position() -> None:
    names = feature_names(profile_of(["age"]))
    rows = capture_rows(SOURCE, Answered("r1", NOON, {"input": np.array([[30.0, 7.0]])}, {}, 1), names)
    assert rows[0]["inputs"] == {"age": 30.0, "input[1]": 7.0}


def test_text_inputs_and_outputs_are_written_as_text() -> None:
    inputs = {"text": np.array([b"caf\xc3\xa9", b"\xff"], dtype=object)}
    outputs = {"label": np.array(["spam", "ham"], dtype=object)}
    rows = capture_rows(SOURCE, Answered("r1", NOON, inputs, outputs, 2), {})
    assert [(r["inputs"]["text"], r["outputs"]["label"]) for r in rows] == [("café", "spam"), ("\ufffd", "ham")]


def test_object_keys_sort_by_time_under_a_day() -> None:
    first = object_key("samples/prod/", SOURCE, NOON + 0.001, "fraud-stable-abc", 1)
    later = object_key("samples/prod/", SOURCE, NOON + 61, "fraud-stable-abc", 2)
    assert first == "samples/prod/fraud/7/2025/11/25/20251125T120000.001Z-fraud-stable-abc-000001.jsonl"
    assert later > first
    assert object_key("", SOURCE, NOON, "p", 3) == "fraud/7/2025/11/25/20251125T120000.000Z-p-000003.jsonl"


def test_event_headers_are_cloudevents_named_as_kserve_names_them() -> None:
    headers = event_headers("0b8e", SOURCE, NOON, "ml", "fraud-canary-xyz")
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "0b8e",
        "ce-type": EVENT_TYPE,
        "ce-source": "/api/v1/namespaces/ml/pods/fraud-canary-xyz",
        "ce-time": "2025-11-25T12:00:00.000Z",
        "ce-inferenceservicename": "fraud",
        "ce-namespace": "ml",
        "ce-component": "predictor",
        "ce-endpoint": "canary",
        "content-type": "application/x-ndjson",
    }


def test_times_are_utc_with_milliseconds() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(NOON + 0.9999) == "2025-11-25T12:00:00.999Z"


def test_a_json_line_writes_fp32_as_sent_and_missing_values_as_null() -> None:
    inputs = {"input": np.array([[14.02, np.nan, 0.0796]], dtype=np.float32)}
    rows = capture_rows(SOURCE, Answered("r1", NOON, inputs, {"y": np.array([0.5], dtype=np.float32)}, 1), {})
    line = orjson.dumps(rows[0], option=orjson.OPT_SERIALIZE_NUMPY)
    assert b'"inputs":{"input":[14.02,null,0.0796]},"outputs":{"y":0.5}' in line
