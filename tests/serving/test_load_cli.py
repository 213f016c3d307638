"""`modeldeploy load` against a real `modeldeploy serve`: rows of the reference CSV, a new
connection per request, progress lines, and the documented exit codes."""

from __future__ import annotations

import io
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_cli.load import LoadError, LoadOptions, bodies, read_rows, run
from modeldeploy_serving.durations import parse_seconds

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY, ServeProcess, free_port, value


@pytest.fixture(scope="module")
def served(example_models: ExampleModels) -> Iterator[ServeProcess]:
    server = ServeProcess("--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer")
    server.wait_ready()
    yield server
    server.close()


def test_it_sends_the_csvs_rows_on_new_connections_and_reports_the_versions(
    served: ServeProcess, example_models: ExampleModels
) -> None:
    import httpx

    before = httpx.get(f"{served.url}/metrics").text
    out = io.StringIO()
    options = LoadOptions(
        served.url,
        "breast-cancer",
        example_models.reference_csv("breast-cancer"),
        rows_per_request=3,
        rate=40.0,
        duration=1.5,
        progress_seconds=0.5,
    )
    tally = run(options, out)
    after = httpx.get(f"{served.url}/metrics").text
    answered = tally.answered["1"]
    assert tally.failed == {} and answered >= 30, (tally, out.getvalue())
    requests = value(after, "modeldeploy_requests_total", outcome="ok") - value(
        before, "modeldeploy_requests_total", outcome="ok"
    )
    assert requests == answered, "every request the load counted, the server counted"
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sending 40 requests/s of 3 rows from ") and "each on a new connection" in lines[0]
    assert any(line.endswith("failed") and "(version 1: " in line for line in lines[1:-1]), lines
    assert lines[-1].startswith("done: ") and f"{answered} answered (version 1: {answered}), 0 failed" in lines[-1]


def test_rows_go_round_the_data_in_order_with_missing_values_as_null(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n3,\n5,6\n")
    rows = read_rows(data, 2)
    feed = bodies("input", "FP32", rows, 2)
    first, second = next(feed), next(feed)
    assert (
        first == b'{"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, null]}]}'
    )
    assert b'"data": [5.0, 6.0, 1.0, 2.0]' in second


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,c\n1,2,3\n", "line 2 has 3 columns; the model's input takes 2"),
        ("a,b\n", "no rows (expected a header row, then rows of numbers)"),
        ("a,b\n1,2\n1,x\n", "line 3: 'x' is not a number (empty is a missing value)"),
    ],
)
def test_bad_data_is_named_with_what_is_accepted(tmp_path: Path, text: str, message: str) -> None:
    data = tmp_path / "rows.csv"
    data.write_text(text)
    with pytest.raises(LoadError, match=re.escape(message)):
        read_rows(data, 2)


def test_durations_read_as_spec_fields_write_them() -> None:
    assert [parse_seconds(t) for t in ("30", "30s", "5m", "1h", "0.5s")] == [30, 30, 300, 3600, 0.5]
    with pytest.raises(ValueError, match="must be longer than 0"):
        parse_seconds("0s")


def test_the_command_exits_0_when_all_answered_and_2_for_an_unknown_model(
    served: ServeProcess, example_models: ExampleModels
) -> None:
    csv = str(example_models.reference_csv("breast-cancer"))
    ok = subprocess.run(
        [MODELDEPLOY, "load", served.url, "--model", "breast-cancer", "--data", csv, "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("done: ") and ", 0 failed" in ok.stdout
    unknown = subprocess.run(
        [MODELDEPLOY, "load", served.url, "--model", "nope", "--data", csv, "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(f"modeldeploy load: {served.url}: GET /v2/models/nope answered 404"), (
        unknown.stderr
    )


def test_failed_requests_are_counted_by_reason_and_exit_1(example_models: ExampleModels) -> None:
    """The server goes away mid-load: what follows is refused, counted, and the exit code says so."""
    server = ServeProcess("--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer")
    server.wait_ready()
    out = io.StringIO()
    options = LoadOptions(
        server.url,
        "breast-cancer",
        example_models.reference_csv("breast-cancer"),
        rate=20.0,
        duration=3.0,
        progress_seconds=10.0,
    )
    stopper = threading.Timer(1.0, server.close)
    stopper.start()
    try:
        tally = run(options, out)
    finally:
        stopper.cancel()
        server.close()
    assert tally.answered["1"] > 0 and tally.failed["ConnectionRefusedError"] > 0, (tally, out.getvalue())
    assert "ConnectionRefusedError: " in out.getvalue().splitlines()[-1]


def test_a_url_that_does_not_answer_is_bad_input() -> None:
    with pytest.raises(LoadError, match=r"http://127.0.0.1:\d+: no answer to GET /v2/models/m: "):
        url = f"http://127.0.0.1:{free_port()}"
        run(LoadOptions(url, "m", Path("unused.csv"), duration=1.0, first_answer=1.0), io.StringIO())


def test_it_waits_for_a_server_that_is_not_answering_yet(example_models: ExampleModels) -> None:
    """A new Service refuses until kube-proxy writes its rules; here, a server still loading."""
    server = ServeProcess("--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer")
    try:  # no wait_ready: the load is started while the server is still starting
        options = LoadOptions(
            server.url, "breast-cancer", example_models.reference_csv("breast-cancer"), duration=1.0, first_answer=60
        )
        tally = run(options, io.StringIO())
    finally:
        server.close()
    assert tally.failed == {} and tally.answered["1"] > 0, tally
