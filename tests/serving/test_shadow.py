"""The pure half of shadow traffic: the config file, and two answers compared on the same inputs."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import Model
from modeldeploy_serving.profile import SCORE_EDGES, OutputProfile, Profile
from modeldeploy_serving.shadow import (
    OTHER,
    OutputPlan,
    ShadowConfig,
    ShadowConfigError,
    ShadowCounts,
    comparison_plan,
    config_text,
    decode_outputs,
    parse_config,
)
from modeldeploy_serving.signature import TensorSpec

LABEL = TensorSpec("label", "INT64", (-1,), "tensor(int64)")
PROBABILITIES = TensorSpec("probabilities", "FP32", (-1, 2), "tensor(float)")
VALUE = TensorSpec("variable", "FP32", (-1, 1), "tensor(float)")


def test_a_config_says_where_how_many_and_which_version() -> None:
    config = parse_config('{"target": "http://fraud-canary.ml:8080/", "fraction": 0.25, "version": "7"}')
    assert config == ShadowConfig("http://fraud-canary.ml:8080", 0.25, "7")
    assert config is not None and (config.host, config.port) == ("fraud-canary.ml", 8080)
    default = parse_config('{"target": "http://10.0.0.7", "version": "7"}')
    assert default is not None and (default.fraction, default.host, default.port) == (1.0, "10.0.0.7", 80)
    ipv6 = parse_config('{"target": "http://[::1]:9000", "version": "7"}')
    assert ipv6 is not None and (ipv6.host, ipv6.port) == ("::1", 9000)


def test_the_operator_writes_what_the_server_reads() -> None:
    text = config_text("http://fraud-canary.ml:8080", 0.5, "7")
    assert parse_config(text) == ShadowConfig("http://fraud-canary.ml:8080", 0.5, "7")
    with pytest.raises(ShadowConfigError, match="fraction must be a number from 0 to 1, got 2"):
        config_text("http://fraud-canary.ml:8080", 2, "7")


@pytest.mark.parametrize("text", ["", "  \n"])
def test_an_empty_config_turns_mirroring_off(text: str) -> None:
    assert parse_config(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "the shadow config is not valid JSON"),
        ("[]", "must be a JSON object with target, fraction, version"),
        ('{"target": "http://c:1", "version": "7", "fracton": 1}', "unknown shadow config field(s) ['fracton']"),
        ('{"version": "7"}', "target must be a URL like http://host:port, got None"),
        ('{"target": "https://c:1", "version": "7"}', "target must be a plain http:// URL"),
        ('{"target": "http://c:1/v2", "version": "7"}', "with no path, got 'http://c:1/v2'"),
        ('{"target": "http://c:0", "version": "7"}', "a port from 1 to 65535"),
        ('{"target": "http://c:\u00b2", "version": "7"}', "a port from 1 to 65535"),  # isdigit(), not int()
        ('{"target": "http://c:1", "version": "7", "fraction": 1.5}', "fraction must be a number from 0 to 1, got 1.5"),
        ('{"target": "http://c:1", "version": "7", "fraction": "1"}', "fraction must be a number from 0 to 1, got '1'"),
        ('{"target": "http://c:1"}', "version must be the shadow's version label (a non-empty string), got None"),
        ('{"target": "http://c:1", "version": 7}', "version must be the shadow's version label"),
    ],
)
def test_a_bad_config_names_the_field_and_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ShadowConfigError) as raised:
        parse_config(text)
    assert message in str(raised.value)


def test_the_plan_follows_the_profile_as_prediction_telemetry_does(cancer_v1: Model, diabetes_v1: Model) -> None:
    label, probabilities = comparison_plan(cancer_v1.profile, cancer_v1.outputs)
    assert (label.name, label.kind, label.labels) == ("label", "labels", ("0", "1"))
    assert (probabilities.kind, probabilities.labels, probabilities.columns) == ("scores", ("0", "1"), (0, 1))
    assert probabilities.edges == t.SHADOW_DELTA_BUCKETS  # probabilities: the edges as they are
    (value,) = comparison_plan(diabetes_v1.profile, diabetes_v1.outputs)
    assert diabetes_v1.profile is not None
    edges = diabetes_v1.profile.outputs[0].edges
    assert 100 < edges[-1] - edges[0] <= 1000  # the reference range of the disease progression score
    assert value.kind == "values"
    assert value.edges == tuple(float(f"{edge * 1000:.6g}") for edge in t.SHADOW_DELTA_BUCKETS)
    assert value.edges[:3] == (0.0, 0.1, 1.0) and value.edges[-1] == 1000.0


def test_without_a_profile_the_plan_follows_the_signature() -> None:
    text = TensorSpec("text", "BYTES", (-1,), "tensor(string)")
    wide = TensorSpec("embedding", "FP32", (-1, 128), "tensor(float)")
    plans = comparison_plan(None, [LABEL, PROBABILITIES, VALUE, text, wide])
    assert [(p.kind, p.labels) for p in plans] == [
        ("labels", ()),
        ("scores", ("0", "1")),
        ("values", ()),
        ("labels", ()),
        ("values", ()),
    ]


def test_labels_agreement_and_confusion_are_counted_row_by_row() -> None:
    counts = ShadowCounts("3", [OutputPlan("label", "labels", labels=("0", "1"))])
    stable = np.array([0, 0, 1, 1, 1, 0], dtype=np.int64)
    shadow = np.array([0, 1, 0, 1, 2, 0], dtype=np.int64)  # 2 is not in the profile
    assert counts.compare({"label": stable}, {"label": shadow})
    counts.flush()
    (labels,) = counts.labels
    assert (labels.compared, labels.agreed) == (6, 3)
    assert sorted(labels.cells()) == [("0", "0", 2), ("0", "1", 1), ("1", "0", 1), ("1", "1", 1), ("1", OTHER, 1)]


def test_a_model_that_swaps_classes_keeps_the_shares_and_is_still_caught() -> None:
    counts = ShadowCounts("3", [OutputPlan("label", "labels", labels=("0", "1"))])
    stable = np.array([0, 1] * 50)
    counts.compare({"label": stable}, {"label": 1 - stable})
    counts.flush()
    (labels,) = counts.labels
    assert np.bincount(stable).tolist() == np.bincount(1 - stable).tolist()  # the same class shares
    assert (labels.compared, labels.agreed) == (100, 0)
    assert sorted(labels.cells()) == [("0", "1", 50), ("1", "0", 50)]


def test_classes_without_a_profile_are_learned_up_to_the_bound() -> None:
    counts = ShadowCounts("3", [OutputPlan("label", "labels")])
    stable = np.array([f"c{i}" for i in range(t.MAX_CLASSES + 5)])
    counts.compare({"label": stable}, {"label": stable.copy()})
    counts.flush()
    (labels,) = counts.labels
    assert labels.agreed == labels.compared == t.MAX_CLASSES + 5
    cells = dict(((s, c), n) for s, c, n in labels.cells())
    assert len(cells) == t.MAX_CLASSES + 1  # the bound, then "other"
    assert cells[(OTHER, OTHER)] == 5


def test_scores_are_compared_as_absolute_differences_on_right_closed_buckets() -> None:
    counts = ShadowCounts("3", comparison_plan(None, [PROBABILITIES]))
    stable = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    shadow = np.array([[0.9, 0.1], [0.45, 0.55], [0.8, 0.2]], dtype=np.float32)
    assert counts.compare({"probabilities": stable}, {"probabilities": shadow})
    counts.flush()
    (deltas,) = counts.deltas
    edges = np.asarray(t.SHADOW_DELTA_BUCKETS)
    expected = np.abs(stable.astype(np.float64) - shadow.astype(np.float64))
    for column in range(2):
        binned = np.bincount(np.searchsorted(edges, expected[:, column], side="left"), minlength=len(edges) + 1)
        assert deltas.counts[column].tolist() == binned.tolist()
        assert deltas.counts[column, 0] == 1  # equal answers land in le="0.0"
    assert deltas.sums.tolist() == pytest.approx(expected.sum(axis=0).tolist())


def test_regression_values_are_binned_on_edges_scaled_to_the_reference_range() -> None:
    profile = Profile(rows=10, features=[], outputs=[OutputProfile("variable", "values", edges=[20.0, 150.0, 340.0])])
    counts = ShadowCounts("2", comparison_plan(profile, [VALUE]))
    stable = np.array([[100.0], [200.0], [300.0]], dtype=np.float32)
    counts.compare({"variable": stable}, {"variable": stable + np.array([[0.0], [7.0], [40.0]], dtype=np.float32)})
    counts.flush()
    (deltas,) = counts.deltas
    edges = deltas.plan.edges
    assert edges[-1] == 1000.0
    le = {edges[i] if i < len(edges) else float("inf"): int(n) for i, n in enumerate(deltas.counts[0]) if n}
    assert le == {0.0: 1, 10.0: 1, 50.0: 1}


def test_answers_that_cannot_be_paired_count_nothing() -> None:
    counts = ShadowCounts("3", comparison_plan(None, [LABEL, PROBABILITIES]))
    stable = {"label": np.array([0, 1]), "probabilities": np.array([[0.5, 0.5], [0.1, 0.9]], dtype=np.float32)}
    assert not counts.compare(stable, {"label": np.array([0, 1])})  # an output missing
    assert not counts.compare(stable, {**stable, "label": np.array([0, 1, 1])})  # another shape
    assert not counts.compare(stable, {**stable, "probabilities": np.array([["a", "b"], ["c", "d"]])})
    counts.flush()
    assert counts.labels[0].compared == 0 and counts.deltas[0].counts.sum() == 0


def test_fp32_outputs_survive_json_exactly_so_identical_models_differ_by_zero() -> None:
    rng = np.random.default_rng(7)
    probabilities = rng.random((50, 2), dtype=np.float32)
    labels = rng.integers(0, 2, 50)
    answer = orjson.dumps(
        {
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [50], "data": labels},
                {"name": "probabilities", "datatype": "FP32", "shape": [50, 2], "data": probabilities.reshape(-1)},
            ]
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    decoded = decode_outputs(orjson.loads(answer), {"label": LABEL, "probabilities": PROBABILITIES})
    counts = ShadowCounts("1", comparison_plan(None, [LABEL, PROBABILITIES]))
    assert counts.compare({"label": labels, "probabilities": probabilities}, decoded)
    counts.flush()
    assert counts.labels[0].agreed == 50
    assert counts.deltas[0].counts[:, 0].tolist() == [50, 50]  # every difference exactly 0
    assert decode_outputs({"outputs": [{"name": "label", "shape": [3], "data": [1, 2]}]}, {"label": LABEL}) == {}
    assert decode_outputs({"error": "no"}, {"label": LABEL}) == {}


def test_binary_outputs_decode_in_order_and_a_wrong_datatype_or_size_is_left_out() -> None:
    labels = np.array([0, 1, 1], dtype=np.int64)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], dtype=np.float32)
    outputs = {"label": LABEL, "probabilities": PROBABILITIES}

    def entry(name: str, datatype: str, shape: list[int], size: int) -> dict[str, object]:
        return {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}

    data = labels.tobytes() + probabilities.tobytes()
    document = {"outputs": [entry("label", "INT64", [3], 24), entry("probabilities", "FP32", [3, 2], 24)]}
    decoded = decode_outputs(document, outputs, data)
    np.testing.assert_array_equal(decoded["label"], labels)
    np.testing.assert_array_equal(decoded["probabilities"], probabilities)
    # Another datatype of the same byte size would read as garbage: left out, the next still read.
    document = {"outputs": [entry("label", "FP64", [3], 24), entry("probabilities", "FP32", [3, 2], 24)]}
    assert set(decode_outputs(document, outputs, data)) == {"probabilities"}
    # Sizes that do not add up (too few bytes, or a shape that does not match them): left out.
    assert decode_outputs(document, outputs, data[:30]) == {}
    document = {"outputs": [entry("label", "INT64", [4], 24)]}
    assert decode_outputs(document, outputs, data) == {}


def test_durations_and_outcomes_count_every_copy_a_call_carried() -> None:
    counts = ShadowCounts("3", [])
    for seconds in (0.0004, 0.003, 9.0):
        counts.observe_duration(seconds)
    counts.observe_duration(0.003, copies=4)  # one call carrying four merged copies
    edges = list(t.REQUEST_DURATION_BUCKETS)
    assert counts.durations[0] == 1 and counts.durations[edges.index(0.005)] == 5 and counts.durations[-1] == 1
    assert counts.duration_sum == pytest.approx(9.0004 + 5 * 0.003)
    counts.count(t.SHADOW_OK, 4)
    counts.count(t.SHADOW_DROPPED)
    assert counts.outcomes == {**dict.fromkeys(t.SHADOW_OUTCOMES, 0), t.SHADOW_OK: 4, t.SHADOW_DROPPED: 1}


def test_profile_score_edges_are_the_probability_scale() -> None:
    profile = Profile(
        rows=1,
        features=[],
        outputs=[
            OutputProfile("probabilities", "scores", column=c, label=f"k{c}", edges=list(SCORE_EDGES)) for c in (0, 1)
        ],
    )
    (plan,) = comparison_plan(profile, [PROBABILITIES])
    assert (plan.labels, plan.edges) == (("k0", "k1"), t.SHADOW_DELTA_BUCKETS)


def test_pairs_are_counted_together_and_the_same_as_one_by_one() -> None:
    rng = np.random.default_rng(11)
    plan = comparison_plan(None, [LABEL, PROBABILITIES])
    together, one_by_one = ShadowCounts("3", plan), ShadowCounts("3", plan)
    pairs = []
    for rows in rng.integers(1, 6, 120).tolist():  # more than FLUSH_ROWS rows: flushes on its own too
        stable = {"label": rng.integers(0, 2, rows), "probabilities": rng.random((rows, 2), dtype=np.float32)}
        shadow = {"label": rng.integers(0, 3, rows), "probabilities": rng.random((rows, 2), dtype=np.float32)}
        pairs.append((stable, shadow))
        assert together.compare(stable, shadow)
    pending_before_read = together.labels[0].compared
    assert 0 < pending_before_read < sum(len(p[0]["label"]) for p in pairs)  # some counted, some waiting
    together.flush()
    for stable, shadow in pairs:
        one_by_one.compare(stable, shadow)
        one_by_one.flush()
    assert together.labels[0].compared == one_by_one.labels[0].compared == sum(len(p[0]["label"]) for p in pairs)
    assert together.labels[0].agreed == one_by_one.labels[0].agreed
    assert sorted(together.labels[0].cells()) == sorted(one_by_one.labels[0].cells())
    assert together.deltas[0].counts.tolist() == one_by_one.deltas[0].counts.tolist()
