"""The retraining Job's side of its contract with the operator: what it is told, where its
candidate goes, and how it reports.

A drift or quality episode makes the operator start a Job with its environment set
(docs/retraining.md, "The Job's contract"): the episode's data window, where the captured
rows and their labels are, the stable model it is about, the version label and the place
for the candidate. The Job writes the candidate there and its result, as JSON, to its
termination message, where the operator reads it (and checks the sha256 against the file
before adopting it); or one line saying why not, with an exit code that says which kind of
failure it was. examples/retrain.py is the reference script built on this; a script of
your own can use it too, or follow docs/retraining.md in any language.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modeldeploy_serving import s3

from modeldeploy_cli.dataset import Window

PREFIX: Final = "MODELDEPLOY_"
RESULT_FILE_ENV: Final = "MODELDEPLOY_RESULT_FILE"
DEFAULT_RESULT_FILE: Final = "/dev/termination-log"
RESULT_LIMIT: Final = 4096  # bytes of a termination message Kubernetes keeps
S3_FILE: Final = "model.onnx"

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DATA, EXIT_UNREADABLE, EXIT_UNWRITABLE, EXIT_SIGNATURE = 0, 1, 2, 3, 4, 5, 6
#: The word in a failure's line, by exit code: `retrain failed (too-little-data): ...`.
REASONS: Final = {
    EXIT_ERROR: "error",
    EXIT_CONFIG: "configuration",
    EXIT_DATA: "too-little-data",
    EXIT_UNREADABLE: "unreadable",
    EXIT_UNWRITABLE: "unwritable",
    EXIT_SIGNATURE: "signature",
}


class Refusal(Exception):
    """Why no candidate is written, and the exit code that says which kind of reason."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    def line(self) -> str:
        """The termination message: one line, `retrain failed (REASON): what and why`."""
        return " ".join(f"retrain failed ({REASONS[self.code]}): {self}".split())


@dataclass(frozen=True)
class Output:
    """Where the candidate goes: an S3 key, or a file in a mounted claim's folder (or a local one)."""

    uri: str  # what the result reports
    bucket: str = ""  # s3
    key: str = ""
    path: Path | None = None  # pvc:// (the folder MODELDEPLOY_OUTPUT_DIR) or file://

    @classmethod
    def of(cls, output: str, output_dir: str, model: str, version: str) -> Output:
        """s3://BUCKET/PREFIX -> PREFIX/MODEL/VERSION/model.onnx; pvc://CLAIM/DIR -> the file
        MODEL-VERSION.onnx in MODELDEPLOY_OUTPUT_DIR (the claim's DIR, mounted), reported as
        pvc://CLAIM/DIR/MODEL-VERSION.onnx; file:///DIR (by hand) likewise in DIR."""
        parsed = urllib.parse.urlparse(output)
        if parsed.scheme == "s3" and parsed.netloc:
            key = "/".join(part for part in (parsed.path.strip("/"), model, version, S3_FILE) if part)
            return cls(f"s3://{parsed.netloc}/{key}", bucket=parsed.netloc, key=key)
        name = f"{model}-{version}.onnx"
        if parsed.scheme == "pvc" and parsed.netloc:
            if not output_dir:
                raise Refusal(
                    EXIT_CONFIG,
                    f"MODELDEPLOY_RETRAINING_OUTPUT {output}: MODELDEPLOY_OUTPUT_DIR is not set "
                    "(the folder where the operator mounts the claim's DIR)",
                )
            return cls(output.rstrip("/") + "/" + name, path=Path(output_dir) / name)
        if parsed.scheme == "file":
            return cls(output.rstrip("/") + "/" + name, path=Path(urllib.parse.unquote(parsed.path)) / name)
        raise Refusal(
            EXIT_CONFIG,
            f"MODELDEPLOY_RETRAINING_OUTPUT {output!r}: expected s3://BUCKET/PREFIX or pvc://CLAIM/DIR "
            "(or, by hand, file:///DIR)",
        )

    def write(self, data: bytes) -> None:
        """The whole file or nothing: a temporary file renamed into place, or one PUT."""
        if self.path is None:
            try:
                s3.put_object(s3.writer(), s3.S3Location(self.bucket, self.key), data, "application/octet-stream")
            except (s3.S3Error, ConnectionError) as error:
                raise Refusal(EXIT_UNWRITABLE, f"{self.uri}: cannot write it: {error}") from None
            return
        temporary = ""
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except OSError as error:
            raise Refusal(EXIT_UNWRITABLE, f"{self.path}: cannot write it: {error.strerror or error}") from None
        finally:
            if temporary and os.path.exists(temporary):
                os.unlink(temporary)


@dataclass(frozen=True)
class Job:
    """What the operator tells a retraining Job, from its environment."""

    model_name: str  # MODELDEPLOY_MODEL_NAME
    capture: str  # MODELDEPLOY_CAPTURE_URI
    labels: str  # MODELDEPLOY_LABELS_URI (the capture's when unset)
    since: str  # MODELDEPLOY_DATA_SINCE, RFC 3339
    until: str  # MODELDEPLOY_DATA_UNTIL
    base_version: str  # MODELDEPLOY_BASE_VERSION
    base_uri: str  # MODELDEPLOY_BASE_MODEL_URI
    base_sha256: str  # MODELDEPLOY_BASE_MODEL_SHA256 (may be empty)
    candidate_version: str  # MODELDEPLOY_CANDIDATE_VERSION
    output: Output  # MODELDEPLOY_RETRAINING_OUTPUT (and MODELDEPLOY_OUTPUT_DIR for pvc://)
    episode: str = ""  # MODELDEPLOY_DRIFT_EPISODE
    report: str = ""  # MODELDEPLOY_DRIFT_REPORT: the episode's report (JSON)

    @classmethod
    def from_env(cls, env: dict[str, str], capture: str | None = None, labels: str | None = None) -> Job:
        """The Job from its variables; capture and labels (flags) stand in for theirs (a capture
        given alone stands in for the labels too, while they are the capture's). Raises
        Refusal (configuration) naming a variable that is missing or invalid."""

        def need(name: str) -> str:
            value = env.get(PREFIX + name, "")
            if not value:
                raise Refusal(
                    EXIT_CONFIG,
                    f"{PREFIX}{name} is not set: the operator sets it in a retraining Job's containers "
                    "(docs/retraining.md, The Job's contract); set it to run this by hand",
                )
            return value

        captured = capture or need("CAPTURE_URI")
        labelled = env.get(PREFIX + "LABELS_URI", "")
        if labels is None and (not labelled or labelled == env.get(PREFIX + "CAPTURE_URI")):
            labels = captured  # the labels are where the captured rows are, wherever that was moved
        name, version = need("MODEL_NAME"), need("CANDIDATE_VERSION")
        job = cls(
            model_name=name,
            capture=captured,
            labels=labels or labelled,
            since=need("DATA_SINCE"),
            until=need("DATA_UNTIL"),
            base_version=need("BASE_VERSION"),
            base_uri=need("BASE_MODEL_URI"),
            base_sha256=env.get(PREFIX + "BASE_MODEL_SHA256", ""),
            candidate_version=version,
            output=Output.of(need("RETRAINING_OUTPUT"), env.get(PREFIX + "OUTPUT_DIR", ""), name, version),
            episode=env.get(PREFIX + "DRIFT_EPISODE", ""),
            report=env.get(PREFIX + "DRIFT_REPORT", ""),
        )
        job.window()  # refused now, before any work, when the times are not times
        return job

    def window(self) -> Window:
        """The episode's data window: captured rows in [since, until), their labels up to until."""
        moments = []
        for name, text in (("DATA_SINCE", self.since), ("DATA_UNTIL", self.until)):
            try:
                moment: datetime.datetime | None = datetime.datetime.fromisoformat(text)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise Refusal(
                    EXIT_CONFIG, f"{PREFIX}{name} {text!r}: expected an RFC 3339 time like 2026-12-08T01:02:03Z"
                )
            moments.append(moment)
        if not moments[0] < moments[1]:
            raise Refusal(EXIT_CONFIG, f"{PREFIX}DATA_SINCE {self.since} is not before {PREFIX}DATA_UNTIL {self.until}")
        return Window(moments[0], moments[1], moments[1])

    def result(self, sha256: str, metrics: dict[str, Any], trained_rows: int) -> dict[str, Any]:
        """The result the operator reads (docs/retraining.md): where, what, how good, from what."""
        return {
            "uri": self.output.uri,
            "sha256": sha256,
            "version": self.candidate_version,
            "metrics": metrics,
            "trainedRows": trained_rows,
            "baseVersion": self.base_version,
            "dataWindow": {"since": self.since, "until": self.until},
        }


#: The metrics a result keeps when long URIs would take it past RESULT_LIMIT.
ESSENTIAL_METRICS: Final = ("accuracy", "baseAccuracy", "meanAbsoluteError", "baseMeanAbsoluteError", "heldOutRows")


def result_text(result: dict[str, Any]) -> str:
    """Compact JSON within RESULT_LIMIT: when long URIs make it longer, only the
    ESSENTIAL_METRICS stay; past that, a Refusal (a cut-off document could not be read).
    Metrics are numbers (the operator takes a name -> number map); ValueError otherwise."""
    wrong = [k for k, v in result["metrics"].items() if isinstance(v, bool) or not isinstance(v, int | float)]
    if wrong:
        raise ValueError(f"metrics must be numbers; {', '.join(wrong)} is not")
    text = json.dumps(result, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT:
        result = {**result, "metrics": {k: v for k, v in result["metrics"].items() if k in ESSENTIAL_METRICS}}
        text = json.dumps(result, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT:
        raise Refusal(EXIT_CONFIG, f"the result is {len(text.encode())} bytes, more than a termination message keeps")
    return text


def report(text: str, env: dict[str, str]) -> None:
    """The result (JSON) or the reason (one line), at most RESULT_LIMIT bytes, where the
    operator reads it: the termination message (MODELDEPLOY_RESULT_FILE names another file).
    Outside a pod, with neither, it is only printed."""
    configured = env.get(RESULT_FILE_ENV)
    path = Path(configured or DEFAULT_RESULT_FILE)
    if configured is None and not path.exists():
        print(
            f"no {path} (not in a pod), and {RESULT_FILE_ENV} is not set: the result is only printed", file=sys.stderr
        )
        return
    try:
        path.write_bytes(text.encode()[:RESULT_LIMIT].decode(errors="ignore").encode())
    except OSError as error:
        print(f"cannot write the result to {path}: {error.strerror or error}", file=sys.stderr)
