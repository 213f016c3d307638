"""The reference profile's pure parts: edges, right-closed bins, the versioned JSON format."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from modeldeploy_serving.profile import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    SCORE_EDGES,
    FeatureProfile,
    OutputProfile,
    Profile,
    ProfileError,
    bin_index,
    label_scores,
    profile_features,
    profile_output,
    proportions,
    quantile_edges,
)

VALUES = arrays(
    np.float64,
    st.integers(min_value=1, max_value=200),
    elements=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.sampled_from([0.0, 1.0, 2.5]),
)


@given(values=VALUES, bins=st.integers(min_value=1, max_value=20))
def test_quantile_edges_increase_and_enclose_the_reference_range(values: np.ndarray, bins: int) -> None:
    edges = np.asarray(quantile_edges(values, bins))
    assert np.all(np.diff(edges) > 0)
    assert edges[0] < values.min()
    assert edges[-1] == values.max()
    assert len(edges) <= bins + 1
    shares = proportions(values, list(edges))
    assert len(shares) == len(edges) + 1
    assert shares[0] == 0.0  # nothing below the reference range
    assert shares[-1] == 0.0  # nothing above it
    assert sum(shares) == pytest.approx(1.0)


@given(values=VALUES, edges=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12, unique=True))
def test_bins_are_right_closed_like_prometheus_le(values: np.ndarray, edges: list[float]) -> None:
    ordered = np.sort(np.asarray(edges))
    np.testing.assert_array_equal(bin_index(values, ordered), np.digitize(values, ordered, right=True))


def test_a_discrete_feature_gets_one_bin_per_value() -> None:
    values = np.array([0.0, 1.0, 1.0, 2.0] * 25)
    edges = quantile_edges(values, 10)
    assert edges[0] < 0.0 and edges[1:] == [0.0, 1.0, 2.0]
    assert proportions(values, edges) == [0.0, 0.25, 0.5, 0.25, 0.0]


def test_a_binary_feature_keeps_its_two_shares_apart() -> None:
    values = np.array([0.0] * 80 + [1.0] * 20)
    shares = proportions(values, quantile_edges(values, 10))
    assert shares[0] == shares[-1] == 0.0
    assert [share for share in shares if share] == [0.8, 0.2]


def test_a_constant_feature_is_inside_the_reference_range() -> None:
    values = np.full(50, 3.5)
    edges = quantile_edges(values, 10)
    assert edges[1:] == [3.5]
    assert proportions(values, edges) == [0.0, 1.0, 0.0]


def test_a_continuous_feature_gets_the_requested_bins() -> None:
    values = np.linspace(-5.0, 5.0, 1001)
    edges = quantile_edges(values, 10)
    assert len(edges) == 11
    assert proportions(values, edges)[1:-1] == pytest.approx([0.1] * 10, abs=0.002)


def test_nan_and_inf_are_left_out_of_the_shares() -> None:
    values = np.array([1.0, 2.0, np.nan, np.inf, 3.0, 4.0])
    edges = quantile_edges(values, 2)
    assert edges[1:] == [2.5, 4.0]
    assert proportions(values, edges) == [0.0, 0.5, 0.5, 0.0]


def test_a_feature_with_missing_reference_values_records_its_finite_rows() -> None:
    columns = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 7.0], [4.0, np.inf], [5.0, 9.0]])
    complete, gappy = profile_features(columns, ["complete", "gappy"], [("input", 0), ("input", 1)], bins=2)
    assert complete.rows is None  # every row had a value: the profile's rows say it
    assert gappy.rows == 3
    assert gappy.proportions == [0.0, 2 / 3, 1 / 3, 0.0]  # shares of the finite rows


def test_no_finite_values_cannot_be_binned() -> None:
    with pytest.raises(ProfileError, match="no finite reference values to bin"):
        quantile_edges(np.array([np.nan, np.inf]))


def test_outputs_are_profiled_by_kind() -> None:
    labels = profile_output("label", np.array([1, 0, 1, 1], dtype=np.int64))
    assert labels == [OutputProfile(name="label", kind="classes", classes=["0", "1"], proportions=[0.25, 0.75])]
    scores = profile_output("probabilities", np.array([[0.95, 0.05], [0.3, 0.7], [0.0, 1.0], [0.25, 0.75]]))
    assert [(s.kind, s.column, s.edges) for s in scores] == [("scores", 0, list(SCORE_EDGES))] * 1 + [
        ("scores", 1, list(SCORE_EDGES))
    ]
    assert scores[1].proportions == [0.0, 1 / 4, 0, 0, 0, 0, 0, 1 / 4, 1 / 4, 0, 0, 1 / 4]  # 1.0: "certain"
    values = profile_output("variable", np.arange(10.0).reshape(-1, 1))
    assert values[0].kind == "values" and values[0].edges[-1] == 9.0
    named = label_scores(
        profile_output("label", np.array(["cat", "dog"])) + profile_output("p", np.array([[0.1, 0.9], [0.8, 0.2]]))
    )
    assert [o.label for o in named if o.kind == "scores"] == ["cat", "dog"]


def test_probabilities_a_few_ulps_outside_zero_and_one_are_still_scores() -> None:
    summed = np.array([[-1.1920929e-07, 1.0000001], [0.5, 0.5]], dtype=np.float32)  # a forest's float32 votes
    assert [o.edges for o in profile_output("probabilities", summed)] == [list(SCORE_EDGES)] * 2
    edges = np.asarray(SCORE_EDGES)
    zero, one = bin_index(np.array([-1.1920929e-07, 0.0, 1e-6]), edges), bin_index(np.array([1.0, 1.0000001]), edges)
    assert zero.tolist() == [0, 0, 0] and one.tolist() == [11, 11], "a certain answer's bin must not hang on an ulp"
    not_probabilities = np.array([[-3.0, 4.0], [0.5, 0.5]])
    assert [o.edges[0] for o in profile_output("margins", not_probabilities)] != [0.0, 0.0]


def sample_profile() -> Profile:
    return Profile(
        rows=4,
        features=[FeatureProfile("age", "input", 0, [0.5, 1.0, 2.0], [0.0, 0.5, 0.25, 0.25])],
        outputs=[OutputProfile(name="label", kind="classes", classes=["0", "1"], proportions=[0.5, 0.5])],
    )


def test_json_round_trip_and_the_documented_envelope() -> None:
    profile = sample_profile()
    text = profile.to_json()
    document = json.loads(text)
    assert document["format"] == PROFILE_FORMAT == "modeldeploy.dev/profile"
    assert document["version"] == PROFILE_VERSION == 1
    assert Profile.from_json(text) == profile


def test_a_features_rows_are_written_only_where_they_differ() -> None:
    """A reference without missing values profiles to the bytes it did before the field existed."""
    plain = sample_profile()
    assert "rows" not in json.loads(plain.to_json())["features"][0]
    gappy = Profile(
        rows=plain.rows,
        features=[FeatureProfile("age", "input", 0, [0.5, 1.0, 2.0], [0.0, 0.5, 0.25, 0.25], rows=3)],
        outputs=plain.outputs,
    )
    assert json.loads(gappy.to_json())["features"][0]["rows"] == 3
    assert Profile.from_json(gappy.to_json()) == gappy


def test_from_json_refuses_another_version() -> None:
    document = json.loads(sample_profile().to_json())
    document["version"] = 2
    with pytest.raises(ProfileError) as error:
        Profile.from_json(json.dumps(document))
    assert str(error.value) == (
        "profile version 2 is not supported; this build reads version 1: rebuild it with `modeldeploy profile`"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "the profile's format is not 'modeldeploy.dev/profile'"),
        (lambda d: d.pop("rows"), "the profile is missing or has a malformed field: 'rows'"),
        (lambda d: d["features"][0].update(edges=[1.0, 0.5, 2.0]), "age: edges must be finite and strictly increasing"),
        (lambda d: d["features"][0].update(proportions=[1.0]), "age: 1 proportions, expected 4"),
        (lambda d: d["outputs"][0].update(proportions=[1.0]), "label: 1 proportions, expected 2"),
        (lambda d: d["features"][0].update(colour="red"), "unexpected keyword argument 'colour'"),
        (lambda d: d["features"][0].update(rows=5), "age: rows 5, expected from 1 up to the profile's rows (4)"),
        (lambda d: d["features"][0].update(rows=0), "age: rows 0, expected from 1 up to the profile's rows (4)"),
    ],
)
def test_from_json_refuses_a_malformed_profile(change: object, message: str) -> None:
    document = json.loads(sample_profile().to_json())
    change(document)  # type: ignore[operator]
    with pytest.raises(ProfileError, match=re.escape(message)):
        Profile.from_json(json.dumps(document))


def test_from_json_refuses_text_that_is_not_json() -> None:
    with pytest.raises(ProfileError, match="the profile is not valid JSON"):
        Profile.from_json("{version: 1")
