"""The `modeldeploy` command: serve, fetch, profile, drift, load, dataset, and operator (with the [operator] extra).

Arguments are parsed here; the work is imported lazily from the package that does it, so
`modeldeploy fetch` in an init container does not load ONNX Runtime or kopf.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from modeldeploy_serving import __version__


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 up to (not including) 1, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share above 0, up to 1, got {text}")
    return value


def _sink(text: str) -> str:
    from modeldeploy_serving.sampling import Sink

    try:
        Sink.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).split(": ", 1)[1]) from None
    return text


def _store(text: str) -> str:
    from modeldeploy_serving.feedback import check_store_url

    try:
        return check_store_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _window(text: str) -> float:
    from modeldeploy_serving.durations import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_feedback_flags(serve: argparse.ArgumentParser) -> None:
    feedback = serve.add_argument_group(
        "feedback: labels sent back by answer id (docs/feedback.md; off unless --feedback-store is given)"
    )
    feedback.add_argument(
        "--feedback-store",
        type=_store,
        help="redis://[USER:PASSWORD@]HOST:PORT/DB (or rediss://): where predictions wait for their labels; "
        "credentials also from MODELDEPLOY_FEEDBACK_STORE_USERNAME and _PASSWORD",
    )
    feedback.add_argument(
        "--feedback-window",
        type=_window,
        default=3600.0,
        help="how long a prediction waits for its label, e.g. 30m, 24h or 168h (default 1h)",
    )
    feedback.add_argument(
        "--feedback-prefix", help="the deployment's part of every key in the store (default: the model's name)"
    )
    feedback.add_argument(
        "--feedback-queue-rows",
        type=_positive,
        default=100_000,
        help="predictions waiting to be written to the store; more are dropped and counted (default 100000)",
    )


def _add_shadow_flags(serve: argparse.ArgumentParser) -> None:
    """Mirroring to a shadow (docs/serving.md, Shadow traffic): off unless --shadow-config is given."""
    serve.add_argument(
        "--shadow-config",
        type=Path,
        help="a JSON file {target, fraction, version}: mirror answered requests to that shadow (re-read on change)",
    )
    serve.add_argument(
        "--shadow-queue-size", type=_positive, default=256, help="copies waiting to be mirrored; more are dropped"
    )
    serve.add_argument(
        "--shadow-timeout-seconds", type=_positive_seconds, default=1.0, help="longest the shadow may take per copy"
    )
    serve.add_argument(
        "--shadow-connections", type=_positive, default=8, help="copies in flight to the shadow at once (default 8)"
    )
    serve.add_argument(
        "--shadow-merge-wait-ms",
        type=_non_negative_float,
        default=5.0,
        help="after a copy, how long to wait for more to send in the same call (default 5; 0 sends what waits)",
    )


def _add_limit_flags(serve: argparse.ArgumentParser) -> None:
    limits = serve.add_argument_group("limits (docs/serving.md, Limits): one client cannot hold up the others")
    limits.add_argument(
        "--max-request-bytes", type=_positive, default=16 * 1024 * 1024, help="one body (default 16 MiB); more gets 413"
    )
    limits.add_argument(
        "--max-inflight-bytes",
        type=_positive,
        default=64 * 1024 * 1024,
        help="bytes of request bodies held at once (default 64 MiB); more gets 503",
    )
    limits.add_argument(
        "--max-header-bytes", type=_positive, default=64 * 1024, help="request line and headers; more gets 431"
    )
    limits.add_argument(
        "--header-timeout-seconds", type=_positive_seconds, default=10.0, help="longest a request head may take (408)"
    )
    limits.add_argument(
        "--idle-timeout-seconds", type=_positive_seconds, default=5.0, help="close connections idle this long"
    )
    limits.add_argument(
        "--body-timeout-seconds",
        type=_positive_seconds,
        default=30.0,
        help="longest a request body may take after its head (408)",
    )
    limits.add_argument(
        "--max-connections", type=_positive, default=512, help="open connections; past it, 503 and close (default 512)"
    )
    limits.add_argument(
        "--large-body-bytes", type=_positive, default=1024 * 1024, help="JSON bodies this large parse off the loop"
    )


def _add_drain_flags(serve: argparse.ArgumentParser) -> None:
    drain = serve.add_argument_group(
        "draining on SIGTERM (docs/serving.md#shutdown): keep answering until no new connection arrives"
    )
    drain.add_argument(
        "--drain-min-seconds", type=_non_negative_float, default=0.0, help="drain at least this long (default 0)"
    )
    drain.add_argument(
        "--drain-quiet-seconds",
        type=_non_negative_float,
        default=0.0,
        help="then until no new connection for this long (default 0)",
    )
    drain.add_argument(
        "--drain-max-seconds", type=_non_negative_float, default=30.0, help="drain at most this long (default 30)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy", description="Deploy and serve ONNX models.")
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve an ONNX model over the Open Inference Protocol v2")
    serve.add_argument("--model", required=True, help="a path, file://, http(s):// or s3:// URI")
    serve.add_argument("--sha256", help="verify the model against this digest before serving it")
    serve.add_argument("--name", help="the model name in URLs (default: the file name without .onnx)")
    serve.add_argument("--version", dest="model_version", default="1", help="the model version label (default 1)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--grpc-port", type=int, help="also serve the protocol's gRPC service on this port (default: off)"
    )
    serve.add_argument("--threads", type=_positive, default=1, help="ONNX Runtime threads (default 1)")
    serve.add_argument(
        "--max-batch-size", type=_positive, default=32, help="rows per merged call (1 turns batching off)"
    )
    serve.add_argument("--max-batch-delay-us", type=_non_negative, default=500, help="longest wait for a batch to fill")
    serve.add_argument("--no-telemetry", action="store_true", help="count nothing (for measuring telemetry's cost)")
    _add_limit_flags(serve)
    _add_drain_flags(serve)
    _add_shadow_flags(serve)
    _add_feedback_flags(serve)

    capture = serve.add_argument_group("production capture (docs/capture.md; off unless --capture-sink is given)")
    capture.add_argument(
        "--capture-sink", type=_sink, help="s3://BUCKET/PREFIX or an http(s):// URL that takes JSON lines"
    )
    capture.add_argument(
        "--capture-sample-rate", type=_rate, default=0.1, help="share of answered requests captured (default 0.1)"
    )
    capture.add_argument(
        "--capture-max-rows-per-minute", type=_positive, default=600, help="most rows captured a minute (default 600)"
    )
    capture.add_argument("--capture-batch-rows", type=_positive, default=500, help="rows per write (default 500)")
    capture.add_argument(
        "--capture-flush-interval-seconds",
        type=_positive_seconds,
        default=30.0,
        help="longest a row waits to be written (default 30)",
    )
    capture.add_argument(
        "--capture-queue-rows", type=_positive, default=10_000, help="rows waiting for the sink; more are dropped"
    )

    fetch = commands.add_parser("fetch", help="download a model and verify its sha256 (the init step)")
    fetch.add_argument("uri", help="a path, file://, http(s):// or s3:// URI")
    fetch.add_argument("--dest", type=Path, required=True, help="folder to put the model in")
    fetch.add_argument("--sha256", help="expected digest, 64 hex characters")
    fetch.add_argument("--attempts", type=_positive, default=5, help="tries for transient failures (default 5)")
    fetch.add_argument(
        "--max-bytes", type=_positive, default=2 * 1024**3, help="refuse a model larger than this (default 2 GiB)"
    )
    fetch.add_argument(
        "--timeout-seconds",
        type=_positive_seconds,
        default=600.0,
        help="give up when the whole fetch, retries included, takes longer (default 600)",
    )

    _add_profile(commands)

    drift = commands.add_parser(
        "drift",
        help="check a CSV batch for drift against the model's reference profile",
        description="Exit code: 0 no drift, 1 drifted, 2 inconclusive (too few rows) or bad input.",
    )
    drift.add_argument("--model", type=Path, required=True, help="an ONNX model with an embedded profile")
    drift.add_argument("--data", type=Path, required=True, help="CSV with a header row naming the profile's features")
    drift.add_argument(
        "--method", choices=["psi", "js", "chi2"], default="psi", help="the statistic (default psi, as spec.drift)"
    )
    drift.add_argument("--min-samples", type=_positive, default=200, help="fewer rows are inconclusive (default 200)")
    drift.add_argument("--threshold", type=_positive_float, help="as spec.drift.threshold (default: the method's)")
    drift.add_argument("--feature-share", type=_share, default=0.3, help="as spec.drift.featureShare (default 0.3)")
    drift.add_argument("--json", action="store_true", help="print the report as JSON (status.drift's shape)")

    _add_load(commands)
    _add_dataset(commands)
    commands.add_parser("operator", help="run the operator (needs the [operator] extra)", add_help=False)
    return parser


def _add_profile(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    profile = commands.add_parser(
        "profile",
        help="embed a reference profile of DATA into the model",
        description=(
            "Embed a reference profile of DATA into the model: bin edges and shares per feature and output, "
            "and how many rows they come from. Drift is judged against it, and the reference is a sample too: "
            "the fewer its rows, the larger the shift a feature needs before it is flagged, however many rows "
            "a window has. Profile at least 200 rows at the default 10 bins (more for thousands of features), "
            "ideally rows the model was not trained on; a smaller reference gets a warning with the rows this "
            "model needs (docs/profile.md#reference-size)."
        ),
    )
    profile.add_argument("--model", type=Path, required=True)
    profile.add_argument(
        "--data", type=Path, required=True, help="reference data: CSV with a header, or .npy (200 rows or more)"
    )
    profile.add_argument("--out", type=Path, required=True, help="where to write the profiled model")
    profile.add_argument("--bins", type=_positive, default=10, help="quantile bins per feature (default 10)")
    profile.add_argument(
        "--label-column",
        help="a CSV column of true labels (classifiers) or values (regression): the model's accuracy or mean "
        "absolute error on those rows is stored as its reference quality (docs/profile.md); not a feature",
    )
    profile.add_argument(
        "--labelled-data",
        type=Path,
        help="measure that quality on this CSV (the model's inputs and --label-column) instead of --data: "
        "rows the model was not trained on give an honest baseline",
    )


def _duration(text: str) -> float:
    from modeldeploy_serving.durations import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_load(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load",
        help="send rows of a CSV to a model, each request on a new connection (so a canary gets traffic)",
        description="A canary is judged on its own traffic: with none, its checks stay Inconclusive. "
        "This sends rows of DATA to URL's model, a new connection per request so kube-proxy spreads them "
        "over every pod, stable and canary, and prints which versions answered. "
        "Exit code: 0 every request answered, 1 some failed, 2 bad input. "
        "In the cluster: kubectl run load --rm -i --restart=Never --image=IMAGE -- load http://breast-cancer "
        "--model breast-cancer --data /opt/modeldeploy/models/breast-cancer-reference.csv --duration 10m",
    )
    load.add_argument("url", help="the model server, e.g. http://breast-cancer (the Service) or localhost:8080")
    load.add_argument("--model", required=True, help="the model's name, as in /v2/models/NAME")
    load.add_argument(
        "--data",
        type=Path,
        required=True,
        help="CSV: a header row, then rows of the model's input columns (the image has "
        "/opt/modeldeploy/models/MODEL-reference.csv for each example model)",
    )
    load.add_argument("--rate", type=_positive_float, default=20.0, help="requests per second (default 20)")
    load.add_argument("--rows-per-request", type=_positive, default=4, help="rows in each request (default 4)")
    load.add_argument("--workers", type=_positive, default=2, help="requests in flight at once, at most (default 2)")
    load.add_argument("--duration", type=_duration, help="how long, e.g. 90s or 10m (default: until Ctrl-C)")


def _moment(text: str) -> Any:
    from modeldeploy_cli.dataset import parse_moment

    try:
        return parse_moment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _table(text: str) -> Path:
    path = Path(text)
    if path.suffix not in (".csv", ".parquet"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a file name ending in .csv or .parquet")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: no folder {str(path.parent)!r} to write it in")
    return path


def _add_dataset(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dataset = commands.add_parser(
        "dataset",
        help="join captured requests with their labels into a training table (CSV or Parquet)",
        description="One row per captured request row in [--since, --until): who answered and when, its "
        "features in the profile's order, the predictions, and the label (truth) that joined it on id and row, "
        "empty where none did. Progress and the counts (rows read, labelled, unlabelled, skipped and why) go "
        "to stderr. Exit code: 0 written, 1 a source cannot be listed or read, 2 bad arguments. "
        "See docs/retraining.md.",
    )
    dataset.add_argument(
        "--capture",
        required=True,
        metavar="URI",
        help="where the samples are: s3://BUCKET/PREFIX (every object under it), a local folder or file:///FOLDER "
        "(every *.jsonl, *.ndjson and their .gz under it); for an http(s) sink, the folder its collector writes",
    )
    dataset.add_argument("--labels", metavar="URI", help="where the labels are, in the same forms (default: --capture)")
    dataset.add_argument(
        "--since",
        type=_moment,
        required=True,
        metavar="T",
        help="first time included: RFC 3339 (2026-12-08T01:02:03Z) or a duration back from now (24h, 90m)",
    )
    dataset.add_argument(
        "--until", type=_moment, default="now", metavar="T", help="time excluded, in the same forms (default now)"
    )
    dataset.add_argument(
        "--labels-until",
        type=_moment,
        metavar="T",
        help="labels that arrived before this time count, however long after their request (default --until)",
    )
    dataset.add_argument(
        "--out", type=_table, required=True, metavar="FILE", help="the table to write: NAME.csv or NAME.parquet"
    )
    dataset.add_argument("--labelled-only", action="store_true", help="leave out rows no label joined")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:  # kopf configures its own logging
        try:
            from modeldeploy_operator.cli import main as operator_main
        except ImportError as error:
            print(
                f"modeldeploy operator: not installed ({error}); pip install 'modeldeploy[operator]'", file=sys.stderr
            )
            return 2
        result: int = operator_main(argv[1:])
        return result
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "fetch":
        return _fetch(args)
    if args.command == "drift":
        return _drift(args)
    if args.command == "load":
        return _load(args)
    if args.command == "dataset":
        return _dataset(args)
    return _profile(args)


def _serve(args: argparse.Namespace) -> int:
    from modeldeploy_serving import telemetry as t
    from modeldeploy_serving.connections import ConnectionLimits
    from modeldeploy_serving.draining import DrainOptions
    from modeldeploy_serving.feedback import FeedbackOptions
    from modeldeploy_serving.fetching import FetchError
    from modeldeploy_serving.model import ModelLoadError
    from modeldeploy_serving.sampling import CaptureOptions
    from modeldeploy_serving.server import ServeOptions, serve

    token = os.environ.get(t.SHADOW_TOKEN_ENV, "")
    if not all("!" <= c <= "~" for c in token):  # it goes into a header as it is
        print(f"modeldeploy serve: {t.SHADOW_TOKEN_ENV} must be printable ASCII without spaces", file=sys.stderr)
        return 2
    if args.max_inflight_bytes < args.max_request_bytes:
        print(
            f"modeldeploy serve: --max-inflight-bytes {args.max_inflight_bytes} is below --max-request-bytes "
            f"{args.max_request_bytes}, so a body of the largest size could never be read; raise it",
            file=sys.stderr,
        )
        return 2
    capture = None
    if args.capture_sink:
        capture = CaptureOptions(
            sink=args.capture_sink,
            sample_rate=args.capture_sample_rate,
            max_rows_per_minute=args.capture_max_rows_per_minute,
            batch_rows=args.capture_batch_rows,
            flush_seconds=args.capture_flush_interval_seconds,
            queue_rows=args.capture_queue_rows,
        )
    feedback = None
    if args.feedback_store:
        feedback = FeedbackOptions(
            store=args.feedback_store,
            window_seconds=args.feedback_window,
            prefix=args.feedback_prefix or "",
            queue_rows=args.feedback_queue_rows,
        )
    options = ServeOptions(
        model=args.model,
        name=args.name,
        version=args.model_version,
        sha256=args.sha256,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_batch_delay_us=args.max_batch_delay_us,
        max_request_bytes=args.max_request_bytes,
        max_inflight_bytes=args.max_inflight_bytes,
        telemetry=not args.no_telemetry,
        connections=ConnectionLimits(
            max_head_bytes=args.max_header_bytes,
            head_timeout_seconds=args.header_timeout_seconds,
            idle_timeout_seconds=args.idle_timeout_seconds,
            body_timeout_seconds=args.body_timeout_seconds,
            max_connections=args.max_connections,
        ),
        large_body_bytes=args.large_body_bytes,
        drain=DrainOptions(args.drain_min_seconds, args.drain_quiet_seconds, args.drain_max_seconds),
        grpc_port=args.grpc_port,
        capture=capture,
        shadow_config=args.shadow_config,
        shadow_queue_size=args.shadow_queue_size,
        shadow_timeout_seconds=args.shadow_timeout_seconds,
        shadow_connections=args.shadow_connections,
        shadow_merge_wait_seconds=args.shadow_merge_wait_ms / 1000,
        shadow_token=token,
        feedback=feedback,
    )
    try:
        serve(options)
    except (FetchError, ModelLoadError) as error:
        print(f"modeldeploy serve: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from modeldeploy_serving.fetching import FetchError, FetchLimits, Retry, fetch, write_termination_message

    limits = FetchLimits(max_bytes=args.max_bytes, timeout_seconds=args.timeout_seconds)
    try:
        path = fetch(args.uri, args.dest, args.sha256, Retry(attempts=args.attempts), limits)
    except FetchError as error:
        line = f"fetch failed ({error.reason}): {error}"
        print(line, file=sys.stderr)
        write_termination_message(line)
        return error.exit_code
    print(path)
    return 0


def _drift(args: argparse.Namespace) -> int:
    from modeldeploy_operator.drift.assessment import DriftSettings

    from modeldeploy_cli.drift import METHOD_NAMES, run_drift

    settings = DriftSettings(
        method=METHOD_NAMES[args.method],
        threshold=args.threshold,
        feature_share=args.feature_share,
        min_samples=args.min_samples,
    )
    return run_drift(args.model, args.data, settings, args.json)


def _load(args: argparse.Namespace) -> int:
    from modeldeploy_cli.load import LoadOptions
    from modeldeploy_cli.load import main as load_main

    options = LoadOptions(
        args.url, args.model, args.data, args.rows_per_request, args.rate, args.workers, args.duration
    )
    return load_main(options)


def _dataset(args: argparse.Namespace) -> int:
    import datetime

    from modeldeploy_cli.captured import open_source
    from modeldeploy_cli.dataset import DatasetOptions, Window, parquet_missing, resolve, run

    def say(line: str) -> None:
        print(f"modeldeploy dataset: {line}", file=sys.stderr, flush=True)

    now = datetime.datetime.now(datetime.UTC)
    until = resolve(args.until, now)
    try:
        for flag, uri in (("--capture", args.capture), ("--labels", args.labels)):
            if uri is not None:
                open_source(uri, flag)
        labels_until = resolve(args.labels_until, now) if args.labels_until else until
        window = Window(resolve(args.since, now), until, labels_until)
    except ValueError as error:
        say(f"error: {error}")
        return 2
    missing = parquet_missing() if args.out.suffix == ".parquet" else None
    if missing:
        say(f"error: --out {args.out}: {missing}")
        return 2
    return run(DatasetOptions(args.capture, args.labels, window, args.labelled_only), args.out, say)


def _profile(args: argparse.Namespace) -> int:
    from modeldeploy_serving.profile import ProfileError
    from modeldeploy_serving.profiling import Labels, profile_model

    from modeldeploy_cli.drift import small_reference_warning

    if args.labelled_data is not None and args.label_column is None:
        print(
            "modeldeploy profile: --labelled-data needs --label-column (which column holds the labels)", file=sys.stderr
        )
        return 2
    labels = Labels(args.label_column, args.labelled_data) if args.label_column else None
    try:
        profile = profile_model(args.model, args.data, args.out, args.bins, labels)
    except (ProfileError, OSError) as error:
        print(f"modeldeploy profile: {error}", file=sys.stderr)
        return 2
    line = (
        f"{args.out}: {len(profile.features)} features and {len(profile.outputs)} outputs "
        f"profiled from {profile.rows} rows"
    )
    if profile.quality is not None:
        quality = profile.quality
        line += f"; {quality.metric} {quality.value:g} on {quality.rows} labelled rows ({quality.output})"
    print(line)
    warning = small_reference_warning(profile)
    if warning:
        print(f"modeldeploy profile: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
