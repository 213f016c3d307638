"""OCI image archives written directly: gzip layers from folders, a config, a manifest.

Each layer is one folder tarred by GNU tar (names sorted, numeric owners kept) and
gzipped here while both digests are taken; the archive is an OCI image layout in a tar,
with one tag, which `ctr images import --base-name NAME` turns into NAME:<tag>.

Why not `umoci insert`: Debian bookworm's umoci (0.4.7) does not close the tar stream of
an inserted layer (fixed upstream in umoci PR #534), so GNU tar and Python reject such
layers and some importers may too. umoci stays useful for reading (`umoci unpack`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"
"""The image's created time, so two builds of the same content are the same image."""


@dataclass(frozen=True)
class Layer:
    """One gzipped layer blob on disk and what a config and a manifest say about it."""

    path: str
    digest: str
    diff_id: str
    size: int
    unpacked_size: int
    comment: str

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Layer:
        return cls(**json.loads(path.read_text()))


class _HashingWriter:
    """A file that also hashes and counts what is written to it (the gzip output)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.hash, self.size = file, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def write_layer(root: Path, blob: Path, comment: str) -> Layer:
    """Tar everything under `root` (paths in the image = paths under `root`), gzip it
    into `blob`, and return its description."""
    names = sorted(entry.name for entry in root.iterdir())
    command = [
        "tar",
        "--create",
        "--file=-",
        "--directory",
        str(root),
        "--sort=name",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--xattrs",
        "--",
        *names,
    ]
    diff_id, unpacked = hashlib.sha256(), 0
    partial = blob.with_name(blob.name + ".partial")
    with subprocess.Popen(command, stdout=subprocess.PIPE) as tar, partial.open("wb") as out:
        writer = _HashingWriter(out)
        assert tar.stdout is not None
        with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=6, mtime=0) as gz:
            while chunk := tar.stdout.read(1 << 20):
                diff_id.update(chunk)
                unpacked += len(chunk)
                gz.write(chunk)
    if tar.returncode != 0:
        partial.unlink()
        raise RuntimeError(f"{' '.join(command[:6])} … failed with exit {tar.returncode}")
    partial.replace(blob)
    return Layer(
        path=str(blob),
        digest=f"sha256:{writer.hash.hexdigest()}",
        diff_id=f"sha256:{diff_id.hexdigest()}",
        size=writer.size,
        unpacked_size=unpacked,
        comment=comment,
    )


def write_archive(
    archive: Path,
    tag: str,
    layers: Sequence[Layer],
    *,
    user: str,
    entrypoint: Sequence[str],
    cmd: Sequence[str],
    env: Mapping[str, str],
    workdir: str,
    ports: Sequence[str],
    labels: Mapping[str, str],
) -> str:
    """Write an OCI image layout holding one image (`tag`) as a tar; return the manifest digest."""
    config = {
        "created": EPOCH,
        "architecture": _architecture(),
        "os": "linux",
        "config": {
            "User": user,
            "Env": [f"{key}={value}" for key, value in env.items()],
            "Entrypoint": list(entrypoint),
            "Cmd": list(cmd),
            "WorkingDir": workdir,
            "ExposedPorts": {port: {} for port in ports},
            "Labels": dict(labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": EPOCH, "created_by": layer.comment} for layer in layers],
    }
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        layout = Path(tmp)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for layer in layers:
            _link_or_copy(Path(layer.path), blobs / layer.digest.removeprefix("sha256:"))
        config_descriptor = _write_blob(blobs, CONFIG, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config_descriptor,
            "layers": [{"mediaType": LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
        }
        manifest_descriptor = _write_blob(blobs, MANIFEST, manifest)
        index = {"schemaVersion": 2, "manifests": [{**manifest_descriptor, "annotations": {REF_NAME: tag}}]}
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        partial = archive.with_name(archive.name + ".partial")
        subprocess.run(
            [
                "tar",
                "--create",
                f"--file={partial}",
                "--directory",
                str(layout),
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=a+r",
                "oci-layout",
                "index.json",
                "blobs",
            ],
            check=True,
        )
        partial.replace(archive)
    return str(manifest_descriptor["digest"])


def _write_blob(blobs: Path, media_type: str, document: Mapping[str, Any]) -> dict[str, Any]:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
