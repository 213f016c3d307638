"""Builds the Kubernetes, etcd, CoreDNS, pause and helm binaries from Go modules, once.

Kubernetes publishes no binaries we can download here, and `go install` refuses
k8s.io/kubernetes, so the components are compiled from the wrapper module in ./go
(see its go.mod). A cold build takes many minutes on two cores, so the result goes to a
cache outside the repository, keyed by a hash of everything that affects it (module
files, sources, versions, flags, Go version); a warm call only checks a stamp file.

All Kubernetes components are one multi-call binary (`k8s`), reached through
symlinks named after each component. Separate binaries: pause, hello (a tiny HTTP
server for the cluster's own proof tests), and helm and coredns, each from its own
module because they pin other k8s.io versions.

kstatus (the GitOps tests' window on sigs.k8s.io/cli-utils) is built the same way from its
own module, but cached under its own key: a change to it must not rebuild Kubernetes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from e2e.cluster import settings

STAMP = ".complete"
KSTATUS_MODULE = settings.GO_MODULE_DIR / "kstatus"
COLD_BUILD = "26 minutes"
"""Measured: `time python -m e2e.cluster.binaries`, empty caches, 2 cores: 25 min 55 s (e2e/README.md)."""
BUILD_DATE = "2026-01-01T00:00:00Z"
"""Fixed, so that a rebuild of the same inputs gives the same binary and cache key."""


def go_binary() -> str:
    """The Go toolchain to build with; the machine's own, never a downloaded one."""
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError(
            "No Go toolchain found on PATH or at /usr/local/go/bin/go; "
            "install Go 1.24 or newer to build the local cluster's binaries."
        )
    return found


def go_env() -> dict[str, str]:
    """The environment for every go command: local toolchain only, module mode."""
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0")
    return env


def version_ldflags() -> str:
    """-X flags so that `kubectl version` and the components report the real version."""
    major, minor = settings.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": settings.KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def helm_ldflags() -> str:
    """As helm's Makefile: its version, and the Kubernetes version its checks assume."""
    major, minor = settings.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={settings.HELM_VERSION}"]
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {package}.k8sVersionMajor={major}", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def cache_key() -> str:
    """A hash of every input of the build; a change to any of them means a new build."""
    digest = hashlib.sha256()
    go_version = subprocess.run(
        [go_binary(), "version"], capture_output=True, text=True, check=True, env=go_env()
    ).stdout
    for part in (settings.KUBERNETES_VERSION, settings.HELM_VERSION, go_version):
        digest.update(part.encode())
    digest.update(version_ldflags().encode() + helm_ldflags().encode())
    for path in sorted(settings.GO_MODULE_DIR.rglob("*")):
        if path.is_relative_to(KSTATUS_MODULE):
            continue  # cached on its own (ensure_kstatus)
        if path.is_file() and path.suffix in (".go", ".mod", ".sum"):
            digest.update(str(path.relative_to(settings.GO_MODULE_DIR)).encode())
            digest.update(path.read_bytes())
    return f"{settings.KUBERNETES_VERSION}-{digest.hexdigest()[:12]}"


def bin_dir() -> Path:
    """The cached bin folder for the current inputs (it may not be built yet)."""
    return settings.cache_dir() / "k8s" / cache_key() / "bin"


def ensure_binaries(log: Callable[[str], None] = print) -> Path:
    """Return the bin folder, building it first when the cache has no complete copy."""
    target = bin_dir()
    if (target / STAMP).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second launcher waits for the first build
        if (target / STAMP).exists():
            return target
        staging = target.parent / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        started = time.monotonic()
        log(f"building Kubernetes {settings.KUBERNETES_VERSION} binaries into {target}")
        log(f"(a cold build took {COLD_BUILD} on two cores: Kubernetes is compiled from source, since no binaries")
        log(" can be downloaded here; the result is cached, and later runs only check a stamp file)")
        _build(staging, log)
        for name in settings.COMPONENTS:
            (staging / name).symlink_to("k8s")
        (staging / STAMP).write_text(f"built in {time.monotonic() - started:.0f}s\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        log(f"binaries built in {time.monotonic() - started:.0f}s")
        _prune(keep=target.parent)
    return target


def _prune(keep: Path, count: int = 2) -> None:
    """Remove all but the `count` newest builds (each is a few hundred MB)."""
    builds = [p for p in keep.parent.iterdir() if p.is_dir() and (p / "bin" / STAMP).exists()]
    builds.sort(key=lambda p: (p / "bin" / STAMP).stat().st_mtime, reverse=True)
    for old in builds[count:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _build(out: Path, log: Callable[[str], None]) -> None:
    module = settings.GO_MODULE_DIR
    steps = [
        ("k8s", module, ["./cmd/k8s"], version_ldflags()),
        ("pause", module, ["./cmd/pause"], "-s -w"),
        ("hello", module, ["./cmd/hello"], "-s -w"),
        ("coredns", module / "coredns", ["."], "-s -w"),
        ("helm", module / "helm", ["helm.sh/helm/v3/cmd/helm"], helm_ldflags()),
    ]
    for number, (name, cwd, packages, ldflags) in enumerate(steps, 1):
        started = time.monotonic()
        log(f"  [{number}/{len(steps)}] {name}: downloading its modules and listing its packages ...")
        total = _package_count(cwd, packages)
        command = ["nice", go_binary(), "build", "-v", "-trimpath", "-tags", "notest"]
        command += ["-ldflags", ldflags, "-o", str(out / name), *packages]
        _go_build(name, cwd, command, total, log)
        log(f"  [{number}/{len(steps)}] {name}: built in {_minutes(time.monotonic() - started)}")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _package_count(cwd: Path, packages: list[str]) -> int:
    """How many packages a build compiles (it downloads the modules on a cold cache)."""
    result = subprocess.run(
        [go_binary(), "list", "-deps", "-tags", "notest", *packages],
        cwd=cwd,
        env=go_env(),
        capture_output=True,
        text=True,
    )
    return len(result.stdout.splitlines()) if result.returncode == 0 else 0


def _go_build(name: str, cwd: Path, command: list[str], total: int, log: Callable[[str], None]) -> None:
    """Run `go build -v`, which names each package as it compiles it, and say how far it is
    every 30 seconds (the build of Kubernetes is one command of many minutes)."""
    started = last = time.monotonic()
    compiled, output = 0, []
    process = subprocess.Popen(
        command, cwd=cwd, env=go_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line.rstrip())
        package = line.strip()
        if package and " " not in package and not package.startswith("#"):
            compiled += 1  # an import path: one package compiled
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            share = f"{min(compiled / total, 1):.0%}, " if total else ""
            log(f"    {name}: {share}{compiled} of {total or '?'} packages compiled, {_minutes(last - started)} so far")
    if process.wait() != 0:
        tail = "\n".join(output[-40:])
        raise RuntimeError(f"go build of {name} failed (in {cwd}):\n{tail}")


def ensure_kstatus(log: Callable[[str], None] = print) -> Path:
    """The kstatus program (./go/kstatus), built once per change of its module or of Go."""
    go_version = subprocess.run([go_binary(), "version"], capture_output=True, check=True, env=go_env()).stdout
    digest = hashlib.sha256(go_version)
    for path in sorted(KSTATUS_MODULE.rglob("*")):
        if path.is_file() and path.suffix in (".go", ".mod", ".sum"):
            digest.update(path.name.encode() + path.read_bytes())
    target = settings.cache_dir() / "tools" / f"kstatus-{digest.hexdigest()[:12]}"
    if (target / STAMP).exists():
        return target / "kstatus"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / STAMP).exists():
            started = time.monotonic()
            log(f"  go build kstatus (sigs.k8s.io/cli-utils) into {target} ...")
            command = [
                "nice",
                go_binary(),
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(target / "kstatus"),
                ".",
            ]
            result = subprocess.run(command, cwd=KSTATUS_MODULE, env=go_env(), capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
                raise RuntimeError(f"go build of kstatus failed (in {KSTATUS_MODULE}):\n{tail}")
            (target / STAMP).write_text(f"built in {time.monotonic() - started:.0f}s\n")
            log(f"  go build kstatus: {time.monotonic() - started:.0f}s")
    return target / "kstatus"


def main() -> None:
    """`python -m e2e.cluster.binaries [kstatus]`: build (or find) the binaries, print the folder
    (or, with `kstatus`, the kstatus program)."""
    to_stderr: Callable[[str], None] = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if sys.argv[1:] == ["kstatus"]:
        print(ensure_kstatus(log=to_stderr))
    else:
        print(ensure_binaries(log=to_stderr))


if __name__ == "__main__":
    main()
