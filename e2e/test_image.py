"""The project image works on its own, before any Kubernetes: unpacked with umoci and run
with runc as its non-root user, it answers --help, fetches a model and serves it, and
runs the feedback store's redis-server.

This is the same archive the local cluster imports into containerd (images.project_image),
so a failure here points at the image rather than at the cluster. The server runs in the
host's network namespace (the network namespace is removed from the runtime config), so
the test reaches it on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import images, rootfs

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[1]
RUNTIME_TOOLS = {"runc": "runc", "umoci": "umoci"}
IMAGE_CONFIG = "image-config.json"
"""The runtime config umoci derived from the image; each run writes config.json from it."""


@pytest.fixture(scope="module")
def image() -> tuple[str, Path]:
    return images.project_image(REPO)


@pytest.fixture(scope="module")
def bundle(image: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image unpacked into an OCI runtime bundle (rootfs/ and config.json)."""
    rootfs.ensure_host_tools(RUNTIME_TOOLS)
    reference, archive = image
    work = tmp_path_factory.mktemp("image")
    layout, bundle = work / "layout", work / "bundle"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(archive)], check=True)
    tag = reference.rpartition(":")[2]
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=True, capture_output=True)
    (bundle / IMAGE_CONFIG).write_text((bundle / "config.json").read_text())
    return bundle


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example models, readable by the image's non-root user."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, str(REPO / "examples/train.py"), "--out", str(out)], check=True, capture_output=True
    )
    out.chmod(0o755)
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def container(bundle: Path, args: Sequence[str], models: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """runc runs `args` in the image as its own user, in the host network namespace,
    with `models` mounted read-only at /models; always deleted afterwards."""
    config: dict[str, Any] = json.loads((bundle / IMAGE_CONFIG).read_text())
    config["process"]["args"] = list(args)
    config["process"]["terminal"] = False
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
    if models is not None:
        config["mounts"].append(
            {"destination": "/models", "type": "bind", "source": str(models), "options": ["rbind", "ro"]}
        )
    (bundle / "config.json").write_text(json.dumps(config))
    state = bundle.parent / "runc-state"
    name = f"modeldeploy-image-test-{uuid.uuid4().hex[:8]}"
    runc = ["runc", "--root", str(state)]
    process = subprocess.Popen(
        [*runc, "run", "--bundle", str(bundle), name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            subprocess.run([*runc, "kill", name, "KILL"], capture_output=True)
            process.wait(timeout=30)
        subprocess.run([*runc, "delete", "--force", name], capture_output=True)


def run(bundle: Path, args: Sequence[str], models: Path | None = None) -> str:
    with container(bundle, args, models) as process:
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, f"{' '.join(args)} exited {process.returncode}:\n{output}"
    return output


def test_the_image_runs_as_its_non_root_user(bundle: Path) -> None:
    config = json.loads((bundle / IMAGE_CONFIG).read_text())
    assert config["process"]["user"]["uid"] == rootfs.USER_ID
    assert run(bundle, ["id", "-u"]).strip() == str(rootfs.USER_ID)


def test_both_subcommands_are_there(bundle: Path) -> None:
    config = json.loads((bundle / IMAGE_CONFIG).read_text())
    assert config["process"]["args"][0] == "modeldeploy", "the entrypoint is the modeldeploy command"
    help_text = run(bundle, ["modeldeploy", "--help"])
    assert "serve" in help_text
    assert "fetch" in help_text


def test_the_retraining_script_and_what_it_needs_are_there(bundle: Path) -> None:
    """examples/retrain.py at /opt/modeldeploy/examples, with the [retrain] extra (scikit-learn,
    skl2onnx) it imports, as a retraining Job's container runs it (docs/retraining.md)."""
    assert "--original-data" in run(bundle, ["python", f"{images.EXAMPLES_DIR}/retrain.py", "--help"])
    assert "--labelled-only" in run(bundle, ["modeldeploy", "dataset", "--help"])


def test_fetch_verifies_a_model_as_the_non_root_user(bundle: Path, models: Path) -> None:
    entry = json.loads((models / "models.json").read_text())[0]
    script = (
        f"modeldeploy fetch file:///models/{entry['file']} --dest /tmp/fetched --sha256 {entry['sha256']} "
        f"&& sha256sum /tmp/fetched/{entry['file']}"
    )
    assert entry["sha256"] in run(bundle, ["sh", "-c", script], models)


def test_the_feedback_store_runs_as_the_non_root_user(bundle: Path) -> None:
    """Debian's redis-server and redis-cli, as the chart runs them (feedback.store.install)."""
    port = _free_port()
    script = (
        f"redis-server --port {port} --bind 127.0.0.1 --dir /tmp --save '' --requirepass pw --daemonize yes"
        f" && sleep 0.5 && REDISCLI_AUTH=pw redis-cli -p {port} ping && redis-cli -p {port} ping"
        f" && REDISCLI_AUTH=pw redis-cli -p {port} shutdown nosave"
    )
    assert run(bundle, ["sh", "-c", script]).split() == ["PONG", "NOAUTH", "Authentication", "required."]


def test_no_compiler_in_the_image(bundle: Path) -> None:
    assert run(bundle, ["sh", "-c", "command -v gcc cc c++ make || true"]).strip() == ""


def test_the_image_serves_a_prediction(bundle: Path, models: Path) -> None:
    port = _free_port()
    args = [
        "modeldeploy",
        "serve",
        "--model",
        "/models/breast-cancer-v1.onnx",
        "--name",
        "breast-cancer",
        "--version",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    with container(bundle, args, models) as process:
        _wait_ready(f"{base}/v2/health/ready", process)
        body = (models / "breast-cancer-request.json").read_bytes()
        request = urllib.request.Request(
            f"{base}/v2/models/breast-cancer/infer", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        subprocess.run(
            ["runc", "--root", str(bundle.parent / "runc-state"), "kill", _container_name(process), "TERM"], check=True
        )
        output, _ = process.communicate(timeout=30)
    assert answer["model_name"] == "breast-cancer"
    assert answer["outputs"], answer
    assert all(len(output_["data"]) > 0 for output_ in answer["outputs"])
    assert 'model="breast-cancer"' in metrics
    assert process.returncode == 0, f"serve did not stop cleanly on SIGTERM:\n{output}"


def _container_name(process: subprocess.Popen[str]) -> str:
    return str(process.args[-1])  # type: ignore[index]


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"modeldeploy serve exited {process.returncode} before it was ready:\n{output}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    pytest.fail(f"{url} not ready after {timeout:.0f}s")
