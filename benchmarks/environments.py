"""What the benchmark needs besides the project venv, installed once under a cache folder.

The peers never go into the project venv: MLServer 1.7.1 pins its own stack (FastAPI,
pydantic, uvloop below 0.22, which it needs to start its workers) and gets a venv of its own;
so does the KServe Python model server (`kserve`, with its FastAPI, grpcio and protobuf).
The bare endpoint must run on exactly the interpreter and packages our server runs on, so it
uses the project venv plus one folder holding Starlette, put on PYTHONPATH.
ONNX Runtime, scikit-learn and numpy in the MLServer venv are pinned to the project venv's
versions: the same model runtime for every server, and a joblib file that loads as trained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

CACHE = Path(os.environ.get("MODELDEPLOY_BENCH_CACHE", Path.home() / ".cache" / "modeldeploy" / "bench"))
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
KSERVE = ["kserve==0.21.0"]  # the version tests/serving/test_clients.py proves the SDK with
STARLETTE = "starlette==0.46.2"  # the version MLServer 1.7.1's FastAPI runs on
EVIDENTLY = ["evidently==0.7.23", "pandas<3"]  # 0.7.23 does not import with pandas 3
NANNYML = ["nannyml==0.13.1", "pandas<3", "statsmodels"]  # NannyML imports statsmodels without requiring it
SAME_AS_PROJECT = ["onnxruntime", "scikit-learn", "numpy"]


def project_versions() -> dict[str, str]:
    names = ["onnxruntime", "numpy", "scikit-learn", "uvicorn", "uvloop", "httptools", "orjson", "prometheus-client"]
    return {name: metadata.version(name) for name in names}


def _stamped(folder: Path, requirements: list[str]) -> bool:
    stamp = folder / ".bench-requirements"
    return stamp.is_file() and json.loads(stamp.read_text()) == requirements


def _stamp(folder: Path, requirements: list[str]) -> None:
    (folder / ".bench-requirements").write_text(json.dumps(requirements))


def _pip(python: str | Path, args: list[str]) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True)


def _venv(folder: Path, requirements: list[str]) -> Path:
    """`folder` as a venv with exactly `requirements`, made once and again only when they change.
    The project venv's own interpreter makes it: the same Python version for every server."""
    if _stamped(folder, requirements):
        return folder
    print(f"creating {folder} with {' '.join(requirements)} (once; a few minutes)", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, symlinks=True).create(folder)
    _pip(folder / "bin" / "python", requirements)
    _stamp(folder, requirements)
    return folder


def mlserver_venv() -> Path:
    """The MLServer venv's folder, created (or re-created if its pins changed) on first use."""
    folder = CACHE / "mlserver-venv"
    versions = project_versions()
    requirements = MLSERVER + [f"{name}=={versions[name]}" for name in SAME_AS_PROJECT]
    return _venv(folder, requirements)


def kserve_venv() -> Path:
    """The KServe model server's venv, created (or re-created if its pins changed) on first use."""
    folder = CACHE / "kserve-venv"
    versions = project_versions()
    requirements = KSERVE + [f"{name}=={versions[name]}" for name in ("onnxruntime", "numpy")]
    return _venv(folder, requirements)


def peer_venv(name: str, requirements: list[str]) -> Path:
    """A venv of its own for a drift peer (evidently, nannyml), created (or re-created if its
    pins changed) on first use, with scikit-learn and numpy pinned to the project venv's: the
    concept-drift benchmark's peers train the very same models as our side."""
    folder = CACHE / f"{name}-venv"
    versions = project_versions()
    requirements = requirements + [f"{n}=={versions[n]}" for n in ("scikit-learn", "numpy")]
    return _venv(folder, requirements)


def starlette_path() -> Path:
    """A folder with Starlette (and its few dependencies) for the bare endpoint's PYTHONPATH."""
    folder = CACHE / "starlette-lib"
    requirements = [STARLETTE]
    if _stamped(folder, requirements):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # Only what the project venv lacks: anything it has must come from the venv itself.
    _pip(sys.executable, ["--target", str(folder), "--no-deps", STARLETTE])
    for name in ("anyio", "idna", "sniffio", "typing_extensions"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            _pip(sys.executable, ["--target", str(folder), "--no-deps", name])
    _stamp(folder, requirements)
    return folder


def ensure_wrk() -> str:
    return _ensure_tool("wrk", "wrk")


def ensure_h2load() -> str:
    """h2load (Debian's nghttp2-client): the gRPC load, one HTTP/2 stream per connection."""
    return _ensure_tool("h2load", "nghttp2-client")


def _ensure_tool(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    print(f"installing {tool} from Debian's packages ({package})", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "-q", package], check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    found = shutil.which(tool)
    if not found:
        raise SystemExit(f"{tool} is not on PATH after apt-get install {package}; install it and run again")
    return found
