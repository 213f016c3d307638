"""The image's base root filesystem: Debian bookworm with its Python, made without Docker.

The Dockerfile starts from python:3.11-slim-bookworm; here the same thing is assembled
from Debian's own packages: `debootstrap --variant=minbase bookworm` with python3 (3.11,
the project's Python), python3-venv, ca-certificates and redis-server (the feedback store
the chart runs, docs/feedback.md), then trimmed (apt lists and caches, docs, man pages)
and given the non-root user the image runs as.

Every command that runs inside a root filesystem goes through `run_in_root`, which wraps
it in a private mount namespace (`unshare --mount`): /proc, /dev and bind mounts exist only
for that process and vanish with it, so a crash or a kill can never leave a mount behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from e2e.cluster import system

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "redis-server")
"""python3 is 3.11 in bookworm; python3-venv brings ensurepip so the venv has pip;
redis-server (7.0, with redis-cli) is the feedback store the chart installs."""

USER_ID = 65532
USER_NAME = "nonroot"
HOME = f"/home/{USER_NAME}"

HOST_TOOLS = {"debootstrap": "debootstrap", "umoci": "umoci", "unshare": "util-linux", "chroot": "coreutils"}
"""Host commands the image build needs, and the Debian package that provides each."""

DEFAULT_MIRROR = "http://deb.debian.org/debian"

TRIM = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "tmp",
    "var/tmp",
    "root",
    "dev",
)
"""Folders emptied in the base: nothing a running server reads."""

Log = Callable[[str], None]


def ensure_host_tools(tools: Mapping[str, str] = HOST_TOOLS, log: Log = print) -> None:
    """apt-get install the Debian packages of whichever `tools` are missing (needs root)."""
    missing = sorted({package for tool, package in tools.items() if shutil.which(tool) is None})
    system.apt_install(missing, "building the image", log)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The host's Debian mirror (MODELDEPLOY_DEBIAN_MIRROR wins), read from apt's sources.

    Takes the first source whose suites include bookworm and whose URI is a main archive
    (not debian-security), from sources.list and sources.list.d/*.list|*.sources.
    """
    if mirror := os.environ.get("MODELDEPLOY_DEBIAN_MIRROR"):
        return mirror
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            candidates = _deb822_sources(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            candidates = _one_line_sources(text)
        else:
            continue
        for uri, suites in candidates:
            if SUITE in suites and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def _deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        found.extend((uri, fields.get("suites", "").split()) for uri in fields.get("uris", "").split())
    return found


def build_base(target: Path, log: Log = print) -> None:
    """debootstrap the base root filesystem into `target` (which must not exist yet)."""
    mirror = debian_mirror()
    log(f"debootstrap {SUITE} (minbase + {', '.join(PACKAGES)}) from {mirror}")
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]
    # debootstrap mounts /proc and /sys inside the target itself; in a private mount
    # namespace those mounts cannot outlive it, whatever happens.
    _run(["unshare", "--mount", "--fork", "--", *command], "debootstrap")
    _add_user(target)
    for entry in TRIM:
        path = target / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    for stale in (target / "var/cache/debconf").glob("*-old"):
        stale.unlink()
    (target / "tmp").chmod(0o1777)
    (target / "var/tmp").chmod(0o1777)
    (target / "root").chmod(0o700)
    (target / "var/lib/apt/lists/partial").mkdir(parents=True)
    (target / "var/cache/apt/archives/partial").mkdir(parents=True)
    # The runtime provides these; the host's copies must not travel in the image.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts"):
        (target / name).unlink(missing_ok=True)
    (target / "etc/hostname").write_text("modeldeploy\n")
    (target / "opt/modeldeploy").mkdir(parents=True, exist_ok=True)


def _add_user(root: Path) -> None:
    """The non-root user (and its group) the image runs as, with a home of its own."""
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"{USER_NAME}:x:{USER_ID}:{USER_ID}:{USER_NAME}:{HOME}:/usr/sbin/nologin\n")
    with (root / "etc/group").open("a") as group:
        group.write(f"{USER_NAME}:x:{USER_ID}:\n")
    with (root / "etc/shadow").open("a") as shadow:
        shadow.write(f"{USER_NAME}:!:19000::::::\n")
    home = root / HOME.lstrip("/")
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, USER_ID, USER_ID)
    home.chmod(0o755)


def run_in_root(
    root: Path,
    argv: Sequence[str],
    binds: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "command",
) -> None:
    """Run `argv` chrooted into `root`, with /proc, /dev and `binds` (path in root ->
    host folder) mounted in a private mount namespace that ends with the command."""
    script = ["set -e", 'root="$1"; shift', 'mount -t proc proc "$root/proc"', 'mount --rbind /dev "$root/dev"']
    args: list[str] = [str(root)]
    for index, (inside, host) in enumerate((binds or {}).items()):
        mount_point = root / inside.lstrip("/")
        mount_point.mkdir(parents=True, exist_ok=True)
        script.append(f'mount --bind "${{{index + 1}}}" "$root{inside}"')
        args.append(str(host))
    script.append(f"shift {len(args) - 1}")
    script.append('exec chroot "$root" "$@"')
    clean_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    command = ["unshare", "--mount", "--fork", "--", "/bin/sh", "-c", "\n".join(script), "sh", *args, *argv]
    _run(command, what, env=clean_env)


def _run(command: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{tail}")
