"""The project's container image, built without Docker and cached by content.

The Dockerfile at the repository root is the recipe for users with Docker; this module
makes an image with the same contents on machines without a Docker engine (ours, CI):

    layer 1  base   Debian bookworm minbase + python3 (3.11) + python3-venv + CA
                    certificates + redis-server (the chart's feedback store), user 65532
                    (rootfs.py; cached by the recipe alone)
    layer 2  deps   a venv at /opt/modeldeploy with the [serving,operator,retrain]
                    dependencies, pinned by requirements/constraints.txt (cached by
                    pyproject.toml, the constraints and the base)
    layer 3  project  the modeldeploy wheel, installed into that venv (a few hundred KB),
                    the example models and the reference retraining script

Wheels are gathered by the host's pip (CPython 3.11 on glibc, like the image), so the
host's pip configuration (index, certificates) is used and the image never needs a
compiler or the network; inside the image's root filesystem pip installs offline.
The host's pip resolves environment markers for the host's Python, and the image's is
Debian's (3.11.2 in bookworm), so a dependency only the image's Python needs (redis needs
async-timeout below 3.11.3) is found by walking the wheels' requirements with the image's
own markers and gathered too.

Public surface, for the launcher, the tests and people:
- `project_image(repo_root) -> (reference, archive)`: builds when needed.
- `import_project_image(repo_root, run_dir)`: the same, then imported into the cluster's
  containerd (through containerd.import_archive) unless it is already there.
- `python -m e2e.cluster.images build` prints the reference (`--archive` also the path).

Caches live in ${XDG_CACHE_HOME:-~/.cache}/modeldeploy/images/: base-<key>/,
deps-<key>/ and <key>/image.tar, where <key> hashes the inputs of that stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from e2e.cluster import oci, rootfs, settings

RECIPE = "2"
"""Bump when this recipe changes what ends up in the deps or project layers."""
BASE_RECIPE = "2"
"""Bump when rootfs.build_base changes what ends up in the base layer."""

NAME = "modeldeploy.local/modeldeploy"
VENV = "/opt/modeldeploy"
MODELS_DIR = f"{VENV}/models"
"""The example models (examples/train.py) ship in the image, so a cluster without network
access can serve them with file:// URIs; a copy stays next to the archive for the tests."""
TRAINING_SCRIPT = "examples/train.py"
RETRAINING_SCRIPT = "examples/retrain.py"
EXAMPLES_DIR = f"{VENV}/examples"
"""examples/retrain.py ships as EXAMPLES_DIR/retrain.py: a retraining Job's container runs it."""
EXTRAS = "serving,operator,retrain"
SOURCES = ("cli", "serving", "operator")
"""The source folders whose content goes into the image (and so into its key)."""
PROJECT_FILES = ("pyproject.toml", "README.md", "requirements/constraints.txt")
REPO_ROOT = Path(__file__).resolve().parents[2]
KEEP_IMAGES = 4
"""Project images kept in the cache (the newest); older ones and unused stages are removed."""

Log = rootfs.Log


def images_dir() -> Path:
    return settings.cache_dir() / "images"


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()


def base_key() -> str:
    recipe = {"recipe": BASE_RECIPE, "suite": rootfs.SUITE, "packages": rootfs.PACKAGES, "user": rootfs.USER_ID}
    return _digest(json.dumps(recipe, sort_keys=True).encode())


def deps_key(repo_root: Path) -> str:
    """Keyed by what decides the dependencies, not by the whole pyproject.toml, so a new
    lint rule or test marker does not reinstall them."""
    with (repo_root / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    project = pyproject.get("project", {})
    extras = project.get("optional-dependencies", {})
    decides = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "extras": {name: extras.get(name, []) for name in EXTRAS.split(",")},
    }
    return _digest(
        base_key().encode(),
        RECIPE.encode(),
        json.dumps(decides, sort_keys=True).encode(),
        (repo_root / "requirements/constraints.txt").read_bytes(),
    )


def source_files(repo_root: Path) -> list[Path]:
    """The files under SOURCES that the wheel is built from (no caches, no build output)."""
    files = []
    for folder in SOURCES:
        for path in sorted((repo_root / folder).rglob("*")):
            relative = path.relative_to(repo_root)
            if (
                path.is_file()
                and not any(part == "__pycache__" or part.endswith(".egg-info") for part in relative.parts)
                and path.suffix != ".pyc"
            ):
                files.append(relative)
    return files


def project_key(repo_root: Path) -> str:
    parts = [
        deps_key(repo_root).encode(),
        (repo_root / "pyproject.toml").read_bytes(),
        (repo_root / TRAINING_SCRIPT).read_bytes(),
        (repo_root / RETRAINING_SCRIPT).read_bytes(),
    ]
    for relative in source_files(repo_root):
        parts += [str(relative).encode(), (repo_root / relative).read_bytes()]
    return _digest(*parts)


def reference_for(key: str) -> str:
    return f"{NAME}:{key[:12]}"


def project_image(repo_root: Path = REPO_ROOT, log: Log = print) -> tuple[str, Path]:
    """The image reference and its OCI archive for the sources in `repo_root`, built
    (or partly rebuilt from the cached base and deps layers) when not cached yet."""
    repo_root = repo_root.resolve()
    key = project_key(repo_root)
    reference, archive = reference_for(key), images_dir() / key / "image.tar"
    if archive.exists():
        archive.parent.touch()  # recently used: pruned last
        return reference, archive
    with _build_lock():
        if not archive.exists():
            started = time.monotonic()
            _build(repo_root, key, log)
            log(f"image {reference} built in {time.monotonic() - started:.0f}s: {archive}")
            _prune(keep={key, f"deps-{deps_key(repo_root)}", f"base-{base_key()}"})
    return reference, archive


def _prune(keep: set[str]) -> None:
    """Keep the stages in `keep`, the newest KEEP_IMAGES images and the two newest deps
    stages (another work tree may use them); remove the rest."""

    def newest_first(paths: list[Path]) -> list[Path]:
        return sorted(paths, key=lambda path: path.stat().st_mtime, reverse=True)

    folders = [path for path in images_dir().iterdir() if path.is_dir() and not path.name.endswith(".partial")]
    stale = newest_first([path for path in folders if (path / "image.tar").exists()])[KEEP_IMAGES:]
    stale += newest_first([path for path in folders if path.name.startswith("deps-")])[2:]
    stale += [path for path in folders if path.name.startswith("base-")]
    for path in stale:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def import_project_image(run_dir: Path | None = None, repo_root: Path = REPO_ROOT, log: Log = print) -> str:
    """Build the image when needed and import it into the cluster's containerd; return
    the reference pods use (with imagePullPolicy IfNotPresent or Never)."""
    from e2e.cluster import containerd

    reference, archive = project_image(repo_root, log=log)
    if not containerd.has_image(reference, run_dir):
        containerd.import_archive(archive, NAME, run_dir)
    return reference


@contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per cache folder (two pytest sessions, a launcher and a test)."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with (images_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fresh(folder: Path) -> Path:
    """`folder`.partial, emptied: built there, renamed to `folder` when complete."""
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _build(repo_root: Path, key: str, log: Log) -> None:
    rootfs.ensure_host_tools(log=log)
    base = _ensure_base(log)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-image-") as tmp:
        scratch = Path(tmp)
        deps_folder = images_dir() / f"deps-{deps_key(repo_root)}"
        with_dependencies = not deps_folder.exists()
        _gather_wheels(repo_root, scratch / "wheels", with_dependencies=with_dependencies, log=log)
        if with_dependencies:
            _gather_image_only_wheels(scratch / "wheels", _image_markers(base, scratch), log)
        deps = _ensure_deps(base, deps_folder, scratch, log)
        _build_project(repo_root, base, deps, images_dir() / key, key, scratch, log)


def _ensure_base(log: Log) -> Path:
    """base-<key>/: rootfs/ (the Debian tree, kept for chroots) and its layer."""
    folder = images_dir() / f"base-{base_key()}"
    if folder.exists():
        return folder
    started = time.monotonic()
    partial = _fresh(folder)
    rootfs.build_base(partial / "rootfs", log=log)
    comment = f"debootstrap {rootfs.SUITE} + {', '.join(rootfs.PACKAGES)}"
    return _finish_stage(partial / "rootfs", partial, folder, "base", comment, started, log)


def _layer(folder: Path) -> oci.Layer:
    """A cached stage's layer (its blob path follows the folder, wherever that is now)."""
    layer = oci.Layer.load(folder / "layer.json")
    return dataclasses.replace(layer, path=str(folder / "layer.tar.gz"))


def _gather_wheels(repo_root: Path, wheels: Path, with_dependencies: bool, log: Log) -> None:
    """The project's wheel (built from a clean copy of the hashed sources) and, when the
    deps layer must be built, every dependency's wheel, into `wheels`."""
    if sys.version_info[:2] != (3, 11) or platform.system() != "Linux" or sys.implementation.name != "cpython":
        raise RuntimeError(
            "the image's wheels are gathered by this interpreter's pip, so it must be CPython 3.11 on Linux "
            f"like the image; this is {sys.implementation.name} {platform.python_version()} on {platform.system()}. "
            "Run it from the project's virtual environment (make venv; .venv/bin/python -m e2e.cluster.images build)"
        )
    source = wheels.parent / "source"
    for name in PROJECT_FILES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / name, source / name)
    for relative in source_files(repo_root):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / relative, source / relative)
    wheels.mkdir(parents=True)
    shutil.copy2(repo_root / "requirements/constraints.txt", wheels / "constraints.txt")
    log("gathering wheels" if with_dependencies else "building the project wheel")
    _pip_wheel(wheels, [f"{source}[{EXTRAS}]"], with_dependencies)


def _pip_wheel(wheels: Path, requirements: list[str], with_dependencies: bool = True) -> None:
    """The host's `pip wheel` of these requirements into `wheels`, under its constraints."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)]
    command += ["--constraint", str(wheels / "constraints.txt"), *requirements]
    if not with_dependencies:
        command.insert(command.index("--wheel-dir"), "--no-deps")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


MARKERS_SCRIPT = """
import json, os, platform, sys
version = platform.python_version()
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": version,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": version,
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}), file=open("/mnt/markers.json", "w"))
"""
"""Prints the image's environment markers (PEP 508), as packaging's default_environment does."""


def _image_markers(base: Path, scratch: Path) -> dict[str, str]:
    """The environment markers of the image's own Python, read by running it."""
    rootfs.run_in_root(
        base / "rootfs",
        ["/usr/bin/python3", "-c", MARKERS_SCRIPT],
        binds={"/mnt": scratch},
        what="reading the image's Python version",
    )
    markers: dict[str, str] = json.loads((scratch / "markers.json").read_text())
    return markers


def _requirements(wheel: Path) -> list[Requirement]:
    """A wheel's Requires-Dist lines."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    return [Requirement(line.split(":", 1)[1]) for line in lines if line.startswith("Requires-Dist:")]


def _missing_for_image(wheels: Path, markers: dict[str, str]) -> list[str]:
    """Requirements that the project's dependency tree has under the image's markers and
    that no wheel in `wheels` provides, walked from the project with its EXTRAS."""
    found = {canonicalize_name(parse_wheel_filename(wheel.name)[0]): wheel for wheel in wheels.glob("*.whl")}
    wanted = {canonicalize_name("modeldeploy"): set(EXTRAS.split(","))}
    missing: dict[str, Requirement] = {}
    queue = [canonicalize_name("modeldeploy")]
    while queue:
        name = queue.pop()
        for requirement in _requirements(found[name]):
            extras = {""} | wanted[name]
            if requirement.marker and not any(requirement.marker.evaluate({**markers, "extra": e}) for e in extras):
                continue
            needed = canonicalize_name(requirement.name)
            if needed not in found:
                missing[needed] = requirement
                continue
            before = wanted.get(needed)
            wanted[needed] = (before or set()) | requirement.extras
            if wanted[needed] != before:
                queue.append(needed)
    return sorted(f"{requirement.name}{requirement.specifier}" for requirement in missing.values())


def _gather_image_only_wheels(wheels: Path, markers: dict[str, str], log: Log) -> None:
    """Gather what the image's Python needs and the host's did not (until nothing is missing)."""
    for _ in range(5):
        missing = _missing_for_image(wheels, markers)
        if not missing:
            return
        log(f"gathering wheels that Python {markers['python_full_version']} in the image needs: {', '.join(missing)}")
        _pip_wheel(wheels, missing)
    raise RuntimeError(f"wheels for the image's Python still missing after five rounds: {', '.join(missing)}")


def _project_wheel(wheels: Path) -> str:
    [wheel] = sorted(wheels.glob("modeldeploy-*.whl"))
    return f"/mnt/wheels/{wheel.name}"


def _pip(*args: str) -> list[str]:
    return [f"{VENV}/bin/python", "-m", "pip", "--no-cache-dir", "--disable-pip-version-check", *args]


def _ensure_deps(base: Path, folder: Path, scratch: Path, log: Log) -> Path:
    """deps-<key>/: tree/ (tree/opt/modeldeploy is the venv) and its layer."""
    if folder.exists():
        return folder
    started = time.monotonic()
    partial = _fresh(folder)
    venv = partial / "tree" / VENV.lstrip("/")
    venv.mkdir(parents=True)
    for parent in venv.relative_to(partial).parents[:-1]:
        (partial / parent).chmod(0o755)
    binds = {"/mnt": scratch, VENV: venv, "/tmp": _empty(scratch / "tmp")}
    log(f"installing the dependencies into {VENV}")
    steps = [
        ("creating the venv", ["/usr/bin/python3", "-m", "venv", VENV]),
        (
            "installing the dependencies",
            _pip(
                "install",
                "--no-index",
                "--find-links",
                "/mnt/wheels",
                "--root-user-action=ignore",
                "--constraint",
                "/mnt/wheels/constraints.txt",
                f"{_project_wheel(scratch / 'wheels')}[{EXTRAS}]",
            ),
        ),
        # The project itself goes into its own thin layer; this one keeps only what it needs.
        (
            "removing the project from the deps layer",
            _pip("uninstall", "--yes", "--root-user-action=ignore", "modeldeploy"),
        ),
        ("checking the dependencies", _pip("check")),
    ]
    for what, argv in steps:
        rootfs.run_in_root(base / "rootfs", argv, binds=binds, what=what)
    return _finish_stage(partial / "tree", partial, folder, "deps", f"venv at {VENV} with [{EXTRAS}]", started, log)


def _finish_stage(tree: Path, partial: Path, folder: Path, stage: str, comment: str, started: float, log: Log) -> Path:
    """Pack a cached stage's tree as its layer, then move the stage into place (atomically)."""
    log(f"packing the {stage} layer")
    layer = oci.write_layer(tree, partial / "layer.tar.gz", comment)
    layer.save(partial / "layer.json")
    partial.rename(folder)
    log(f"{stage} built in {time.monotonic() - started:.0f}s")
    return folder


def _empty(folder: Path) -> Path:
    folder.mkdir(mode=0o1777, parents=True, exist_ok=True)
    folder.chmod(0o1777)
    return folder


def _train_examples(repo_root: Path, out: Path, log: Log) -> None:
    """examples/train.py with this interpreter (the project's venv has its dev extras)."""
    log("training the example models")
    result = subprocess.run(
        [sys.executable, str(repo_root / TRAINING_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{TRAINING_SCRIPT} failed:\n{result.stdout}{result.stderr}")
    for path in out.iterdir():
        path.chmod(0o644)


def example_models_folder(repo_root: Path = REPO_ROOT) -> Path:
    """The copy of the image's example models kept beside its archive (built if needed)."""
    _, archive = project_image(repo_root)
    return archive.parent / "models"


def example_models_manifest(repo_root: Path = REPO_ROOT) -> list[dict[str, str]]:
    """models.json of the example models inside the image: name, version, file, sha256."""
    entries: list[dict[str, str]] = json.loads((example_models_folder(repo_root) / "models.json").read_text())
    return entries


def example_model_path(file: str, repo_root: Path = REPO_ROOT) -> Path:
    return example_models_folder(repo_root) / file


def example_request_rows(name: str = "breast-cancer", repo_root: Path = REPO_ROOT) -> list[list[float]]:
    """The rows of the sample request that examples/train.py writes for a model."""
    request = json.loads((example_models_folder(repo_root) / f"{name}-request.json").read_text())
    tensor = request["inputs"][0]
    width = tensor["shape"][1]
    data = tensor["data"]
    return [data[i : i + width] for i in range(0, len(data), width)]


def _build_project(repo_root: Path, base: Path, deps: Path, folder: Path, key: str, scratch: Path, log: Log) -> None:
    """<key>/image.tar: base, deps and the project layer, configured, one tag."""
    partial = _fresh(folder)
    tree = scratch / "layer"
    tree.mkdir(mode=0o755)
    binds = {"/mnt": scratch, VENV: deps / "tree" / VENV.lstrip("/"), "/tmp": _empty(scratch / "tmp")}
    argv = _pip(
        "install",
        "--no-deps",
        "--no-index",
        "--root-user-action=ignore",
        "--root",
        "/mnt/layer",
        _project_wheel(scratch / "wheels"),
    )
    rootfs.run_in_root(base / "rootfs", argv, binds=binds, what="installing the project")
    models = tree / MODELS_DIR.lstrip("/")
    models.mkdir(mode=0o755, parents=True)
    _train_examples(repo_root, models, log)
    shutil.copytree(models, partial / "models")
    examples = tree / EXAMPLES_DIR.lstrip("/")
    examples.mkdir(mode=0o755)
    shutil.copyfile(repo_root / RETRAINING_SCRIPT, examples / "retrain.py")
    (examples / "retrain.py").chmod(0o644)
    project = oci.write_layer(
        tree, scratch / "project.tar.gz", "the modeldeploy wheel, the example models and the retraining script"
    )
    layers = [_layer(base), _layer(deps), project]
    reference = reference_for(key)
    oci.write_archive(
        partial / "image.tar",
        key[:12],
        layers,
        user=f"{rootfs.USER_ID}:{rootfs.USER_ID}",
        entrypoint=["modeldeploy"],
        cmd=["--help"],
        env={
            "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": rootfs.HOME,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        },
        workdir=rootfs.HOME,
        ports=["8080/tcp"],
        labels={"org.opencontainers.image.title": "modeldeploy", "dev.modeldeploy.image-key": key},
    )
    compressed = sum(layer.size for layer in layers)
    unpacked = sum(layer.unpacked_size for layer in layers)
    info = {
        "reference": reference,
        "layers": [
            {"comment": layer.comment, "compressed_bytes": layer.size, "unpacked_bytes": layer.unpacked_size}
            for layer in layers
        ],
        "compressed_bytes": compressed,
        "unpacked_bytes": unpacked,
    }
    (partial / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    partial.rename(folder)
    log(
        f"image size: {compressed / 1e6:.0f} MB compressed, {unpacked / 1e6:.0f} MB unpacked "
        f"(project layer {project.size / 1e3:.0f} kB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster.images", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the project image if needed and print its reference")
    build.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    build.add_argument("--archive", action="store_true", help="also print the OCI archive's path")
    load = commands.add_parser("import", help="build if needed and import into the local cluster's containerd")
    load.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.command == "build":
        reference, archive = project_image(args.repo_root, log=log)
        print(reference)
        if args.archive:
            print(archive)
    else:
        print(import_project_image(repo_root=args.repo_root, log=log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
