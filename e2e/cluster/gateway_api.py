"""The Gateway API CRDs (HTTPRoute and its kin), taken from their Go module, cached.

The Gateway API ships its CRDs inside the `sigs.k8s.io/gateway-api` Go module
(config/crd/standard), so the Go module proxy that builds the cluster's binaries also
gives the CRDs, with the module's checksum verified by the Go toolchain. They are copied
into the same cache as the binaries, keyed by version, so a warm call reads only files.
Installing them is the tests' business (a fixture applies them with server-side apply).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from e2e.cluster import binaries, settings

MODULE = "sigs.k8s.io/gateway-api"
STAMP = ".complete"
CHANNEL_DIR = Path("config") / "crd" / "standard"


def cache_folder(version: str = settings.GATEWAY_API_VERSION) -> Path:
    return settings.cache_dir() / "gateway-api" / version


def standard_crds(version: str = settings.GATEWAY_API_VERSION) -> list[Path]:
    """The standard channel's CRD files (HTTPRoute, Gateway, GatewayClass, ...), downloaded once.

    Only CustomResourceDefinitions: the release's ValidatingAdmissionPolicy (which guards
    CRD upgrades cluster-wide) is left out, since the cluster is shared with other tests.
    """
    target = cache_folder(version)
    if not (target / STAMP).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / STAMP).exists():
                _download(version, target)
    return sorted(target.glob("*.yaml"))


def _download(version: str, target: Path) -> None:
    env = {**binaries.go_env(), "GOFLAGS": ""}  # outside any module: no -mod flag
    with tempfile.TemporaryDirectory() as empty:  # `go mod download` must not see a go.mod
        result = subprocess.run(
            [binaries.go_binary(), "mod", "download", "-json", f"{MODULE}@{version}"],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    if result.returncode != 0 or info.get("Error") or not info.get("Dir"):
        why = info.get("Error") or result.stderr.strip() or f"exit code {result.returncode}"
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {why}")
    source = Path(info["Dir"]) / CHANNEL_DIR
    files = sorted(source.glob("gateway.networking.k8s.io_*.yaml"))
    crds = [path for path in files if "kind: CustomResourceDefinition" in path.read_text()]
    if not any(path.name.endswith("_httproutes.yaml") for path in crds):
        raise RuntimeError(f"{MODULE}@{version} has no HTTPRoute CRD under {CHANNEL_DIR}")
    staging = target.with_name(f"{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in crds:
        shutil.copyfile(path, staging / path.name)
    (staging / STAMP).write_text(f"{MODULE}@{version} {info.get('Sum', '')}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def main() -> None:
    """`python -m e2e.cluster.gateway_api`: fetch (or find) the CRDs, print their paths."""
    for path in standard_crds():
        print(path)


if __name__ == "__main__":
    main()
