"""The node's container runtime: a private containerd, and images imported into it.

Debian's containerd and runc run the pods. This containerd gets its own config, root,
state folder and socket inside the run folder, so it never touches (or clashes with) a
system containerd, and `down` can find everything it made. Its CRI plugin uses the
Debian CNI plugins in /usr/lib/cni with our own network config folder, and a pause
image we build from a static binary, so no registry is ever contacted.

Images (the pause image here, the project's image in images.py) are OCI archives
imported with `ctr images import --base-name`; use `import_archive` for that.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from e2e.cluster import settings
from e2e.cluster.processes import Supervisor

NAMESPACE = "k8s.io"
"""The containerd namespace the CRI plugin (and so the kubelet) sees images in."""


def folder(run_dir: Path) -> Path:
    return run_dir / "containerd"


def socket_path(run_dir: Path | None = None) -> Path:
    """The containerd socket of the cluster in `run_dir` (default: the usual run folder)."""
    return folder(run_dir or settings.run_dir()) / "containerd.sock"


def ctr(run_dir: Path | None = None) -> list[str]:
    """The argv prefix of a `ctr` talking to this cluster's containerd in the k8s.io space."""
    return ["ctr", "--address", str(socket_path(run_dir)), "--namespace", NAMESPACE]


def import_archive(archive: Path, base_name: str, run_dir: Path | None = None) -> None:
    """Import an OCI image archive (an image layout in a tar) as `base_name:<its tag>`."""
    command = [*ctr(run_dir), "images", "import", "--base-name", base_name, str(archive)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def has_image(reference: str, run_dir: Path | None = None) -> bool:
    result = subprocess.run([*ctr(run_dir), "images", "ls", "-q"], capture_output=True, text=True, check=True)
    return reference in result.stdout.split()


def write_config(run_dir: Path, sandbox_image: str) -> Path:
    """containerd's config: private paths, cgroupfs (runc's default), our CNI and pause."""
    base = folder(run_dir)
    config = base / "config.toml"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config.write_text(f"""\
version = 2
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{socket_path(run_dir)}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root may not lower oom_score_adj (no CAP_SYS_RESOURCE); without
  # this, runc fails every sandbox ("failed to update /proc/self/oom_score_adj").
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base / "runc"}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{run_dir / "cni" / "net.d"}"
""")
    return config


def start(run_dir: Path, bin_dir: Path, supervisor: Supervisor) -> None:
    """Start containerd, wait until its socket answers, import the pause image."""
    base = folder(run_dir)
    base.mkdir(parents=True, exist_ok=True)
    config = write_config(run_dir, pause_image(bin_dir))
    supervisor.start("containerd", ["containerd", "--config", str(config)])
    supervisor.wait_for(
        "containerd",
        lambda: subprocess.run([*ctr(run_dir), "version"], capture_output=True).returncode == 0,
        ["containerd"],
        30,
    )
    ensure_binary_image(run_dir, bin_dir / "pause", settings.PAUSE_IMAGE_NAME, settings.cache_dir())


def pause_image(bin_dir: Path) -> str:
    """The sandbox image reference: our pause binary, tagged by its content."""
    return binary_image_reference(bin_dir / "pause", settings.PAUSE_IMAGE_NAME)


def binary_image_reference(binary: Path, name: str) -> str:
    """`name:<hash of binary>`, so a rebuilt binary is never hidden by an older import."""
    return f"{name}:{hashlib.sha256(binary.read_bytes()).hexdigest()[:12]}"


def ensure_binary_image(run_dir: Path, binary: Path, name: str, cache: Path) -> str:
    """Import (building once, cached) an image holding only `binary` as its entrypoint;
    return its reference, `name:<hash of binary>`."""
    reference = binary_image_reference(binary, name)
    if has_image(reference, run_dir):
        return reference
    tag = reference.rpartition(":")[2]
    archive = cache / "images" / f"{binary.name}-{tag}.tar"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        build_single_binary_image(binary, f"/{binary.name}", archive, tag=tag)
    import_archive(archive, name, run_dir)
    return reference


def build_single_binary_image(binary: Path, target: str, archive: Path, tag: str) -> None:
    """An OCI archive whose only file is `binary` at `target`, run as its entrypoint.

    Made with umoci (no Docker, no registry): init a layout, new image, insert the file,
    set the entrypoint and a non-root user, then tar the layout.
    """
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout"
        image = f"{layout}:{tag}"
        for command in (
            ["umoci", "init", "--layout", str(layout)],
            ["umoci", "new", "--image", image],
            ["umoci", "insert", "--image", image, str(binary), target],
            ["umoci", "config", "--image", image, f"--config.entrypoint={target}", "--config.user=65535:65535"],
        ):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
        partial = archive.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(layout), "-cf", str(partial), "."], check=True)
        shutil.move(partial, archive)
