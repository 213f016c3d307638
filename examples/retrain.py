"""The reference retraining script: a candidate model trained on labelled production rows.

A drift or quality episode makes the operator start a retraining Job with its environment
set (docs/retraining.md, "The Job's contract"). In the modeldeploy image this script is
/opt/modeldeploy/examples/retrain.py; the Job's container runs, for the example model:

    python /opt/modeldeploy/examples/retrain.py --original-data /opt/modeldeploy/models/breast-cancer-train.csv

What it does, printing each step to stdout:
1. builds the episode's training set with `modeldeploy dataset`'s code: the captured rows of
   the data window that a label joined;
2. fetches the stable model the episode is about, and reads from its ONNX graph which kind
   of model to train (LinearClassifier: scaled logistic regression; TreeEnsembleClassifier:
   random forest; LinearRegressor: ridge; or --estimator), with the settings of
   examples/train.py;
3. holds out a share of the production rows (seeded), and trains on the rest, plus the
   original training data (--original-data) down-weighted: together its rows weigh a share
   of the production rows' weight, the share (of SHARES) that predicts production rows best
   in a 3-fold cross-validation over the production training rows, or --original-share. So
   the original rows are used as far as they help on production rows: after a change of
   concept they contradict them, and get little or no weight;
4. measures the base model and the candidate on the held-out production rows, embeds the
   candidate's reference profile (the shares of the production rows it was trained on, its
   quality on the held-out rows), checks that its inputs and outputs are the base model's;
5. writes it where MODELDEPLOY_RETRAINING_OUTPUT says, and the result JSON to the
   termination message. On failure: one line saying why, and an exit code (retraining.py):
   2 configuration, 3 too little data, 4 a source cannot be read, 5 the candidate cannot
   be written, 6 its signature differs from the base model's, 1 anything else.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from modeldeploy_cli.captured import SourceError
from modeldeploy_cli.dataset import DatasetOptions, build_dataset
from modeldeploy_cli.retraining import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_ERROR,
    EXIT_SIGNATURE,
    EXIT_UNREADABLE,
    REASONS,
    Job,
    Refusal,
    report,
    result_text,
)
from modeldeploy_serving.fetching import FetchError, fetch
from modeldeploy_serving.profile import Profile, Quality, label_text, measure_quality, profile_output, read_profile
from modeldeploy_serving.profiling import Labelled, build_profile, embed_profile
from modeldeploy_serving.signature import TensorSpec, session_signature
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 7
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}  # as examples/train.py
LABEL_COLUMN = "target"  # of --original-data, as examples/train.py writes NAME-train.csv
#: The estimators, by the ONNX operator each one becomes: how the base model's kind is read.
ESTIMATORS = {
    "logistic-regression": "LinearClassifier",
    "random-forest": "TreeEnsembleClassifier",
    "ridge": "LinearRegressor",
    "random-forest-regressor": "TreeEnsembleRegressor",
}
CLASSIFIERS = ("logistic-regression", "random-forest")
#: What the original rows may weigh together, as shares of the production rows' weight.
SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)
FOLDS = 3

Signature = tuple[list[TensorSpec], list[TensorSpec]]


def say(line: str) -> None:
    print(f"retrain: {line}", flush=True)


@dataclass(frozen=True)
class Base:
    """The stable model the episode is about, as far as retraining it needs."""

    data: bytes
    kind: str  # a key of ESTIMATORS
    input_name: str  # its one input, [batch, features]
    width: int  # features
    classes: list[str] | None  # a classifier's classes, as the profile writes them
    profile: Profile | None
    signature: Signature

    @property
    def classifier(self) -> bool:
        return self.kind in CLASSIFIERS


def load_base(job: Job, args: argparse.Namespace) -> Base:
    """The base model from --base-model, or fetched (and its digest checked) from its URI."""
    if args.base_model is None and job.base_uri.startswith("pvc://"):
        raise Refusal(
            EXIT_CONFIG,
            f"MODELDEPLOY_BASE_MODEL_URI {job.base_uri}: a pvc:// model is not fetched; mount the claim in the Job "
            "and give the file with --base-model PATH",
        )
    with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
        if args.base_model is not None:
            path = args.base_model
            say(f"reading the base model {job.base_version} from {path}")
        else:
            say(f"fetching the base model {job.base_version} from {job.base_uri}")
            try:
                path = fetch(job.base_uri, Path(scratch), job.base_sha256 or None)
            except FetchError as error:
                raise Refusal(EXIT_UNREADABLE, f"the base model: fetch failed ({error.reason}): {error}") from None
        try:
            data = Path(path).read_bytes()
            graph = onnx.load_from_string(data).graph
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as error:  # OSError, or ONNX's and ONNX Runtime's own errors
            raise Refusal(EXIT_UNREADABLE, f"the base model {path}: cannot load it: {error}") from None
    ops = {node.op_type for node in graph.node}
    kind = args.estimator or next((name for name, op in ESTIMATORS.items() if op in ops), None)
    if kind is None:
        raise Refusal(
            EXIT_CONFIG,
            f"the base model's graph has none of {', '.join(sorted(ESTIMATORS.values()))} "
            f"(it has {', '.join(sorted(ops))}): say which estimator to train with --estimator",
        )
    signature = session_signature(session)
    inputs = signature[0]
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[1] < 1:
        raise Refusal(
            EXIT_CONFIG, "the base model must take one input of shape [batch, features], as scikit-learn's do"
        )
    classes = None
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_ints", "classlabels_int64s") and attribute.ints:
                classes = [label_text(c) for c in attribute.ints]
            elif attribute.name == "classlabels_strings" and attribute.strings:
                classes = [c.decode() for c in attribute.strings]
    profile = read_profile(session.get_modelmeta().custom_metadata_map)
    return Base(data, kind, inputs[0].name, inputs[0].shape[1], classes, profile, signature)


@dataclass(frozen=True)
class Rows:
    """Labelled rows: the features in the base model's column order, the labels as text."""

    names: list[str]
    features: np.ndarray
    truth: list[str]


def production_rows(job: Job, base: Base) -> tuple[Rows, int]:
    """The window's labelled rows with every feature, and how many rows were captured in it."""
    say(f"episode {job.episode or '?'} of {job.model_name}: rows captured from {job.since} to {job.until}")
    try:
        dataset = build_dataset(DatasetOptions(job.capture, job.labels, job.window(), labelled_only=True), say)
    except SourceError as error:
        raise Refusal(EXIT_UNREADABLE, str(error)) from None
    except ValueError as error:  # a URI that is no source, such as an http(s) sink
        raise Refusal(EXIT_CONFIG, f"{error}; or give that folder with --capture (and --labels)") from None
    names = [f.name for f in base.profile.features] if base.profile is not None else dataset.features
    missing = [name for name in names if name not in dataset.features]
    if dataset.rows and missing:
        raise Refusal(
            EXIT_DATA, f"the captured rows have no feature {missing[0]!r}, which the base model's profile names"
        )
    if len(names) != base.width:
        raise Refusal(EXIT_DATA, f"the base model takes {base.width} features; the captured rows have {len(names)}")
    values, truth, incomplete = [], [], 0
    for row in dataset.rows:
        cells = [row.features.get(name) for name in names]
        if any(cell is None for cell in cells):
            incomplete += 1
            continue
        try:
            values.append([float(cell) for cell in cells])
            truth.append(label_text(row.truth) if base.classifier else repr(float(row.truth)))
        except (TypeError, ValueError):
            raise Refusal(EXIT_DATA, f"row {row.id}/{row.row}: a feature or its label is not a number") from None
    if incomplete:
        say(f"left out {incomplete} labelled rows with a missing feature value")
    rows = Rows(names, np.array(values, dtype=np.float64).reshape(-1, len(names)), truth)
    say(f"{len(truth)} labelled production rows with every feature ({dataset.counts.samples} captured in the window)")
    return rows, dataset.counts.samples


def check_enough(rows: Rows, base: Base, job: Job, min_rows: int) -> None:
    if len(rows.truth) < min_rows:
        raise Refusal(
            EXIT_DATA,
            f"{len(rows.truth)} labelled rows from {job.since} to {job.until}; at least {min_rows} needed (--min-rows)",
        )
    if not base.classifier:
        return
    classes = sorted(set(rows.truth))
    if len(classes) < 2:
        raise Refusal(
            EXIT_DATA, f"every labelled row has the class {classes[0]}: a classifier needs two classes or more"
        )
    unknown = [c for c in classes if base.classes is not None and c not in base.classes]
    if unknown:
        raise Refusal(
            EXIT_DATA,
            f"labels {', '.join(unknown)} are not classes of the base model ({', '.join(base.classes or [])})",
        )


def read_original(path: Path, names: list[str], classifier: bool) -> Rows:
    """--original-data: a CSV with the model's features by name and the label in `target`."""
    try:
        with path.open(newline="") as handle:
            lines = list(csv.reader(handle))
    except OSError as error:
        raise Refusal(EXIT_UNREADABLE, f"--original-data {path}: cannot read it: {error.strerror}") from None
    header = lines[0] if lines else []
    absent = [name for name in [*names, LABEL_COLUMN] if name not in header]
    if absent:
        raise Refusal(EXIT_DATA, f"--original-data {path}: no column {absent[0]!r}; it needs the features and `target`")
    at = [header.index(name) for name in names]
    label_at = header.index(LABEL_COLUMN)
    try:
        features = np.array([[float(line[i]) for i in at] for line in lines[1:]], dtype=np.float64)
        truth = [label_text(line[label_at]) if classifier else repr(float(line[label_at])) for line in lines[1:]]
    except (ValueError, IndexError) as error:
        raise Refusal(
            EXIT_DATA, f"--original-data {path}: every feature and label must be a number ({error})"
        ) from None
    return Rows(names, features.reshape(-1, len(names)), truth)


def estimator(kind: str, seed: int) -> Any:
    """The same estimators, with the same settings, as examples/train.py's versions."""
    if kind == "logistic-regression":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    if kind == "random-forest":
        return RandomForestClassifier(n_estimators=50, max_depth=8, random_state=seed)
    if kind == "random-forest-regressor":
        return RandomForestRegressor(n_estimators=50, max_depth=8, random_state=seed)
    return Ridge(alpha=0.5)


def targets(truth: list[str], classifier: bool) -> np.ndarray:
    """Labels as the estimator takes them: integers where every class is one (so the ONNX
    label output is INT64, as the base model's), else text; values as numbers."""
    if not classifier:
        return np.array([float(t) for t in truth], dtype=np.float64)
    try:
        return np.array([int(t) for t in truth], dtype=np.int64)
    except ValueError:
        return np.array(truth, dtype=str)


def fit(base: Base, training: Rows, original: Rows | None, share: float, seed: int) -> Any:
    """Fit on the production rows (weight 1 each) and the original rows, which together
    weigh `share` of the production rows."""
    features, truth = training.features, list(training.truth)
    weights = np.ones(len(truth))
    if original is not None and share > 0:
        features = np.vstack([features, original.features])
        truth += original.truth
        weights = np.concatenate(
            [weights, np.full(len(original.truth), share * len(training.truth) / len(original.truth))]
        )
    model = estimator(base.kind, seed)
    if base.kind == "logistic-regression":
        weighted = {"standardscaler__sample_weight": weights, "logisticregression__sample_weight": weights}
        model.fit(features, targets(truth, base.classifier), **weighted)
    else:
        model.fit(features, targets(truth, base.classifier), sample_weight=weights)
    return model


def score(base: Base, model: Any, rows: Rows) -> float:
    """Higher is better: accuracy, or the negative mean absolute error."""
    predicted, expected = model.predict(rows.features), targets(rows.truth, base.classifier)
    return float(np.mean(predicted == expected)) if base.classifier else -float(np.mean(np.abs(predicted - expected)))


def choose_share(base: Base, training: Rows, original: Rows, seed: int) -> float:
    """The share of SHARES whose models predict held-back production rows best, over FOLDS
    folds of the production training rows; the smaller share on a tie."""
    stratified = base.classifier and np.unique(training.truth, return_counts=True)[1].min() >= FOLDS
    splitter = StratifiedKFold if stratified else KFold
    folds = list(splitter(FOLDS, shuffle=True, random_state=seed).split(training.features, training.truth))
    scores = {}
    for share in SHARES:
        fits = [(fit(base, _part(training, fit_at), original, share, seed), check_at) for fit_at, check_at in folds]
        scores[share] = float(np.mean([score(base, model, _part(training, at)) for model, at in fits]))
    best = max(SHARES, key=lambda share: (round(scores[share], 9), -share))
    shown = ", ".join(f"{share:g}: {abs(value):.4g}" for share, value in scores.items())
    say(f"original rows' share chosen by {FOLDS}-fold validation on production rows: {best:g} ({shown})")
    return best


def _part(rows: Rows, at: np.ndarray) -> Rows:
    return Rows(rows.names, rows.features[at], [rows.truth[i] for i in at])


def quality(model: bytes, rows: Rows) -> Quality:
    """Accuracy (or mean absolute error) on labelled rows, by the profile's own rules."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    answers = session.run(None, {session.get_inputs()[0].name: rows.features.astype(np.float32)})
    named = {meta.name: np.asarray(answer) for meta, answer in zip(session.get_outputs(), answers, strict=True)}
    outputs = [profile for name, answer in named.items() for profile in profile_output(name, answer)]
    return measure_quality(outputs, named, rows.truth)


def signature_differences(base: Signature, candidate: Signature) -> list[str]:
    """As the rollout's signature check: names, datatypes, shapes (-1 matches any size)."""
    found = []
    for side, mine, theirs in (("inputs", candidate[0], base[0]), ("outputs", candidate[1], base[1])):
        a, b = {t.name: t for t in mine}, {t.name: t for t in theirs}
        found += [f"{side}.{n}: missing (the base model has it)" for n in sorted(set(b) - set(a))]
        found += [f"{side}.{n}: not in the base model" for n in sorted(set(a) - set(b))]
        for n in sorted(set(a) & set(b)):
            shapes = zip(a[n].shape, b[n].shape, strict=False)
            same = len(a[n].shape) == len(b[n].shape) and all(-1 in (p, q) or p == q for p, q in shapes)
            if a[n].datatype != b[n].datatype or not same:
                found.append(f"{side}.{n}: {a[n].datatype} {list(a[n].shape)}, base {b[n].datatype} {list(b[n].shape)}")
    return found


def retrain(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    """The candidate, written; its result for the operator."""
    base = load_base(job, args)
    rows, _ = production_rows(job, base)
    check_enough(rows, base, job, args.min_rows)
    counts = np.unique(rows.truth, return_counts=True)[1]
    stratify = rows.truth if base.classifier and counts.min() >= 2 else None
    x_train, x_held, t_train, t_held = train_test_split(
        rows.features, rows.truth, test_size=args.holdout, random_state=args.seed, stratify=stratify
    )
    training, held_out = Rows(rows.names, x_train, list(t_train)), Rows(rows.names, x_held, list(t_held))
    original, share = None, 0.0
    if args.original_data is not None and args.original_share != 0:
        original = read_original(args.original_data, rows.names, base.classifier)
        share = (
            choose_share(base, training, original, args.seed) if args.original_share is None else args.original_share
        )
    if original is not None and share > 0:
        say(f"adding {len(original.truth)} original rows, weighing {share:g} of the production rows together")
    say(f"training {base.kind} on {len(training.truth)} production rows")
    fitted = fit(base, training, original, share, args.seed)
    model = convert_sklearn(
        fitted,
        name=f"{job.model_name}-v{job.candidate_version}",
        initial_types=[(base.input_name, FloatTensorType([None, base.width]))],
        options={id(fitted): {"zipmap": False}} if base.classifier else None,
        target_opset=TARGET_OPSET,
    )
    say(f"profiling the candidate on its {len(training.truth)} production rows, its quality on {len(t_held)} held out")
    profile = build_profile(model, training.features, rows.names, labelled=Labelled(held_out.features, held_out.truth))
    data = embed_profile(model, profile).SerializeToString()
    candidate = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    differences = signature_differences(base.signature, session_signature(candidate))
    if differences:
        raise Refusal(
            EXIT_SIGNATURE, "the candidate's inputs or outputs differ from the base model's: " + "; ".join(differences)
        )
    old, new = quality(base.data, held_out), profile.quality
    assert new is not None  # measured: build_profile was given the labelled rows
    say(f"on {new.rows} held-out production rows, {new.metric}: base {old.value:.4g}, candidate {new.value:.4g}")
    say(f"writing {job.output.uri} ({len(data)} bytes)")
    job.output.write(data)
    metrics = {  # numbers only: the operator shows them as they are
        new.metric: new.value,  # accuracy, or meanAbsoluteError for a regression
        "base" + new.metric[0].upper() + new.metric[1:]: old.value,
        "heldOutRows": new.rows,
        "originalRows": len(original.truth) if original is not None and share > 0 else 0,
        "originalShare": share,
    }
    return job.result(hashlib.sha256(data).hexdigest(), metrics, len(training.truth))


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--original-data", type=Path, help="the original training rows: a CSV of the features and `target`"
    )
    parser.add_argument(
        "--original-share",
        type=float,
        help="what the original rows weigh together, as a share of the production rows (0: none); "
        "default: the share that predicts production rows best in cross-validation",
    )
    parser.add_argument("--min-rows", type=int, default=100, help="refuse fewer labelled production rows (default 100)")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of production rows held out (default 0.25)")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), help="train this instead of the base model's kind")
    parser.add_argument("--seed", type=int, default=SEED, help=f"of the split and the estimator (default {SEED})")
    parser.add_argument(
        "--capture", help="read captured rows here, not at MODELDEPLOY_CAPTURE_URI (a collector's folder)"
    )
    parser.add_argument("--labels", help="read labels here, not at MODELDEPLOY_LABELS_URI")
    parser.add_argument("--base-model", type=Path, help="the base model's file, not fetched (a pvc:// one, mounted)")
    args = parser.parse_args(argv)
    if not 0 < args.holdout < 1 or (args.original_share or 0) < 0 or args.min_rows < 4:
        parser.error("--holdout must be between 0 and 1, --original-share 0 or more, --min-rows 4 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    env = dict(os.environ)
    try:
        text = result_text(retrain(Job.from_env(env, args.capture, args.labels), args))
    except Refusal as refusal:
        line, code = refusal.line(), refusal.code
    except Exception as error:  # whatever else, said in one line for `kubectl describe`
        line, code = Refusal(EXIT_ERROR, f"{type(error).__name__}: {error}").line(), EXIT_ERROR
    else:
        print(text, flush=True)
        report(text, env)
        return 0
    print(line, file=sys.stderr, flush=True)
    report(line, env)
    assert code in REASONS
    return code


if __name__ == "__main__":
    sys.exit(main())
