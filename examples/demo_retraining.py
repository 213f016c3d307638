"""What the demo's last chapter (examples/demo.py) needs: a change of concept, retrained away.

Every label now says the other class, a change only labels show. The live accuracy drops, a
quality episode opens, and its Job runs the image's examples/retrain.py on the labelled
production rows the serving pods captured to S3; the operator checks the candidate's digest,
adopts it (adopt: Auto) and rolls it out as a canary judged on the labels; promoted, its live
accuracy is back near its reference, and status says where it came from (docs/retraining.md).

S3 is moto's server, started on this machine as a process of its own (the pods reach it at
the node's address) so it outlives the demo: the serving pods fetch the retrained model from
it whenever they start. `make demo-down` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from e2e.manifests import retrain_container

Obj = dict[str, Any]
S3_STATE = "demo-s3.json"  # in the cluster's run directory: the server's pid and port
BUCKET = "demo"
KEYS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo-secret", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (the pods reach it at the node's address)
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def start_s3(run_dir: Path) -> int:
    """moto's S3 server on every address, in a process of its own; its port. One already
    started by an earlier demo is used again."""
    state = run_dir / S3_STATE
    if state.exists():
        known = json.loads(state.read_text())
        if _alive(known["pid"]):
            return int(known["port"])
    port = _free_port()
    log = (run_dir / "demo-s3.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", str(port)],  # noqa: S104
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # not stopped with the demo: the pods keep fetching from it
    )
    state.write_text(json.dumps({"pid": process.pid, "port": port}))
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, **_boto_keys())
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return port
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"the demo's S3 server did not start; see {run_dir / 'demo-s3.log'}") from None
            time.sleep(0.5)


def stop_s3(run_dir: Path) -> None:
    state = run_dir / S3_STATE
    if not state.exists():
        return
    pid = json.loads(state.read_text())["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    state.unlink()


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
        "region_name": KEYS["AWS_REGION"],
    }


def retraining_patch(image: str) -> Obj:
    """What the chapter adds to the ModelDeployment: capture to S3, a short feedback window
    (the labels of the old concept age out in 2 minutes), the reference retraining Job with
    adopt: Auto, and a canary judged on labels (a retrained model is meant to predict
    differently, so the prediction-shift limit is lifted and accuracy decides)."""
    retrain = retrain_container(image, "demo-s3")
    return {
        "spec": {
            "capture": {
                "sink": f"s3://{BUCKET}/capture",
                "sampleRate": 1,
                "maxRowsPerMinute": 20000,
                "flushInterval": "2s",
                "credentialsSecret": "demo-s3",
            },
            "feedback": {"window": "2m", "minLabels": 100},
            "drift": {
                "retraining": {
                    "adopt": "Auto",
                    "output": f"s3://{BUCKET}/retrained",
                    "credentialsSecret": "demo-s3",
                    "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [retrain]}}}},
                }
            },
            "rollout": {"analysis": {"maxPredictionShift": 100, "maxAccuracyDrop": 0.05, "minRequests": 50}},
        }
    }


def drift_calm(status: Obj) -> bool:
    """The drift episode has ended (a retraining Job added now would be its)."""
    drift = status.get("drift") or {}
    episode = drift.get("episode") or {}
    return drift.get("verdict") == "NoDrift" and (not episode or bool(episode.get("endedAt")))


def retraining_of(status: Obj) -> Obj:
    """status.quality.retraining: the quality episode's Job and its candidate."""
    found: Obj = (status.get("quality") or {}).get("retraining") or {}
    return found


def adopted(wanted: str) -> Callable[[Obj], bool]:
    """Whether the candidate's adoption is `wanted`; a failed retraining or a rolled-back
    candidate ends the demo with what status says."""

    def check(status: Obj) -> bool:
        retraining = retraining_of(status)
        if retraining.get("outcome") == "Failed" or retraining.get("adoption") == "RolledBack":
            raise SystemExit(f"the retraining went wrong: {json.dumps(retraining)}; see docs/retraining.md")
        return retraining.get("adoption") == wanted

    return check
