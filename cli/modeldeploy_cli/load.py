"""`modeldeploy load`: steady traffic of real rows to a model, so a canary gets judged.

A canary step is judged on the requests it answered: with no traffic every check stays
Inconclusive and the rollout is rolled back at its progress deadline. This sends rows of a
CSV (the reference data shipped beside each example model in the image, or your own) to a
model's Service, a few rows per request, each request on a new connection: kube-proxy picks
a pod per connection, so a client that keeps one connection open (curl in a loop through
`kubectl port-forward`, which pins one pod) never reaches the canary, and this one does.

Every few seconds it prints what it sent and which model versions answered; at the end, a
summary. Exit code: 0 every request answered 200, 1 some failed, 2 bad input (the data,
the model's signature, a URL that never answered).
"""

from __future__ import annotations

import csv
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

PROGRESS_SECONDS = 10.0
TIMEOUT_SECONDS = 10.0


class LoadError(Exception):
    """Bad input: the message names what and what is accepted."""


@dataclass(frozen=True)
class LoadOptions:
    url: str  # the server's base URL, e.g. http://breast-cancer (a Service, from inside the cluster)
    model: str
    data: Path
    rows_per_request: int = 4
    rate: float = 20.0  # requests per second, over all workers
    workers: int = 2
    duration: float | None = None  # seconds; None: until interrupted
    progress_seconds: float = PROGRESS_SECONDS
    first_answer: float = 30.0  # seconds to wait for the server to answer at all (a new Service's rules)


@dataclass
class Tally:
    """What the load saw, shared by its workers."""

    answered: Counter[str] = field(default_factory=Counter)  # 200s by model_version
    failed: Counter[str] = field(default_factory=Counter)  # by HTTP status or error
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, version: str | None, failure: str | None) -> None:
        with self.lock:
            if failure is not None:
                self.failed[failure] += 1
            elif version is not None:
                self.answered[version] += 1

    def line(self, seconds: float) -> str:
        with self.lock:
            answered, failed = sum(self.answered.values()), sum(self.failed.values())
            versions = ", ".join(f"version {v}: {n}" for v, n in sorted(self.answered.items()))
            why = ", ".join(f"{reason}: {n}" for reason, n in self.failed.most_common(3))
        sent = answered + failed
        rate = sent / seconds if seconds > 0 else 0.0
        return (
            f"{seconds:.0f}s: {sent} requests ({rate:.1f}/s), {answered} answered"
            + (f" ({versions})" if versions else "")
            + f", {failed} failed"
            + (f" ({why})" if why else "")
        )


def _endpoint(url: str) -> tuple[str, str, int, str]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"URL {url!r}: expected http(s)://HOST[:PORT][/PATH], e.g. http://breast-cancer")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def _call(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a connection of its own."""
    scheme, host, port, prefix = _endpoint(url)
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=TIMEOUT_SECONDS)
    try:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        connection.request(method, prefix + path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def signature(url: str, model: str, wait: float = 0.0) -> tuple[str, str, int]:
    """(input name, datatype, columns) of the model's one input, from GET /v2/models/NAME,
    asked again for up to `wait` seconds while the connection is refused or fails: a
    Service that was just created is refused until kube-proxy has written its rules."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status, body = _call(url, "GET", f"/v2/models/{urllib.parse.quote(model)}")
            break
        except OSError as error:
            if time.monotonic() >= deadline:
                raise LoadError(f"{url}: no answer to GET /v2/models/{model}: {error}") from None
            time.sleep(0.5)
    if status != 200:
        raise LoadError(f"{url}: GET /v2/models/{model} answered {status}: {body[:200].decode(errors='replace')}")
    inputs = json.loads(body).get("inputs") or []
    if len(inputs) != 1 or len(inputs[0].get("shape") or []) != 2:
        shapes = [(i.get("name"), i.get("shape")) for i in inputs]
        raise LoadError(f"model {model}: load sends one 2-D input of rows; the model takes {shapes}")
    tensor = inputs[0]
    if tensor.get("datatype") not in ("FP16", "FP32", "FP64"):
        raise LoadError(f"model {model}: input {tensor['name']} is {tensor.get('datatype')}; load sends numbers")
    return str(tensor["name"]), str(tensor["datatype"]), int(tensor["shape"][1])


def read_rows(path: Path, columns: int) -> list[list[float]]:
    """The CSV's rows (a header row first, then numbers; an empty cell is a missing value)."""
    try:
        with path.open(newline="") as handle:
            lines = list(csv.reader(handle))
    except OSError as error:
        raise LoadError(f"--data {path}: {error}") from None
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        if len(line) != columns:
            raise LoadError(f"--data {path}: line {number} has {len(line)} columns; the model's input takes {columns}")
        try:
            rows.append([float(cell) if cell.strip() else math.nan for cell in line])
        except ValueError:
            bad = next(cell for cell in line if cell.strip() and not _is_number(cell))
            raise LoadError(
                f"--data {path}: line {number}: {bad!r} is not a number (empty is a missing value)"
            ) from None
    if not rows:
        raise LoadError(f"--data {path}: no rows (expected a header row, then rows of numbers)")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bodies(name: str, datatype: str, rows: list[list[float]], per_request: int) -> Iterator[bytes]:
    """Requests of `per_request` rows each, going round the data in order, forever."""
    start = 0
    while True:
        batch = [rows[(start + n) % len(rows)] for n in range(per_request)]
        start = (start + per_request) % len(rows)
        data = [None if math.isnan(value) else value for row in batch for value in row]
        tensor = {"name": name, "shape": [per_request, len(batch[0])], "datatype": datatype, "data": data}
        yield json.dumps({"inputs": [tensor]}).encode()


def _send(url: str, path: str, body: bytes) -> tuple[str | None, str | None]:
    """(the answering model version, None) or (None, why it failed)."""
    try:
        status, answer = _call(url, "POST", path, body)
    except OSError as error:
        return None, type(error).__name__
    if status != 200:
        return None, f"HTTP {status}"
    return str(json.loads(answer).get("model_version")), None


def run(options: LoadOptions, out: TextIO = sys.stdout, stop: threading.Event | None = None) -> Tally:
    """Send the load until the duration is over or `stop` is set; print progress to `out`."""
    name, datatype, columns = signature(options.url, options.model, options.first_answer)
    rows = read_rows(options.data, columns)
    path = f"/v2/models/{urllib.parse.quote(options.model)}/infer"
    stop = stop or threading.Event()
    tally, feed, feed_lock = Tally(), bodies(name, datatype, rows, options.rows_per_request), threading.Lock()
    started = time.monotonic()
    ends = started + options.duration if options.duration is not None else math.inf
    interval = options.workers / options.rate  # each worker's pace

    def work(offset: float) -> None:
        due = started + offset
        while not stop.is_set() and due < ends:
            stop.wait(max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
            with feed_lock:
                body = next(feed)
            tally.add(*_send(options.url, path, body))
            due = max(due + interval, time.monotonic() - interval)  # no burst to catch up after a stall

    print(
        f"sending {options.rate:g} requests/s of {options.rows_per_request} rows from {options.data} "
        f"({len(rows)} rows) to {options.url}{path}, each on a new connection"
        + (f", for {options.duration:g}s" if options.duration is not None else ", until stopped (Ctrl-C)"),
        file=out,
        flush=True,
    )
    workers = [
        threading.Thread(target=work, args=(n * interval / options.workers,), daemon=True)
        for n in range(options.workers)
    ]
    for worker in workers:
        worker.start()
    _report(workers, tally, started, options.progress_seconds, out)
    stop.set()
    for worker in workers:
        worker.join(TIMEOUT_SECONDS + 1)
    print(f"done: {tally.line(time.monotonic() - started)}", file=out, flush=True)
    return tally


def _report(workers: list[threading.Thread], tally: Tally, started: float, every: float, out: TextIO) -> None:
    """A progress line every `every` seconds until the workers are done (or Ctrl-C)."""
    next_line = started + every
    try:
        while any(worker.is_alive() for worker in workers):
            time.sleep(min(0.2, max(0.0, next_line - time.monotonic())))
            if time.monotonic() >= next_line:
                print(tally.line(time.monotonic() - started), file=out, flush=True)
                next_line += every
    except KeyboardInterrupt:
        print("stopping", file=out, flush=True)


def main(options: LoadOptions) -> int:
    try:
        tally = run(options)
    except LoadError as error:
        print(f"modeldeploy load: {error}", file=sys.stderr)
        return 2
    return 1 if sum(tally.failed.values()) else 0
