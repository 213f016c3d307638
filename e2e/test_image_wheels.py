"""The image's wheels are gathered on the host, whose Python may differ from the image's in
its patch version; a requirement whose marker only the image's Python meets must still be
gathered (redis needs async-timeout below Python 3.11.3, and bookworm's python3 is 3.11.2).

Pure logic over real wheel files written here: no pip, no network, no image.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from e2e.cluster import images

HOST = {"python_full_version": "3.11.7", "python_version": "3.11", "sys_platform": "linux"}
IMAGE = {**HOST, "python_full_version": "3.11.2"}


def wheel(folder: Path, name: str, *requires: str) -> None:
    """A wheel with only the METADATA the walk reads."""
    metadata = "\n".join(
        ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires)]
    )
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", metadata + "\n")


def test_a_requirement_only_the_images_python_needs_is_missing(tmp_path: Path) -> None:
    wheel(tmp_path, "modeldeploy", "numpy>=2", 'redis>=5; extra == "serving"', 'pytest; extra == "dev"')
    wheel(tmp_path, "numpy")
    wheel(tmp_path, "redis", 'async_timeout>=4.0.3; python_full_version < "3.11.3"')

    assert images._missing_for_image(tmp_path, IMAGE) == ["async_timeout>=4.0.3"]
    assert images._missing_for_image(tmp_path, HOST) == []


def test_the_walk_follows_extras_and_ignores_other_extras(tmp_path: Path) -> None:
    wheel(tmp_path, "modeldeploy", 'uvicorn[standard]; extra == "serving"', 'pytest; extra == "dev"')
    wheel(tmp_path, "uvicorn", 'uvloop; extra == "standard" and python_full_version < "3.11.3"', 'h2; extra == "http2"')

    assert images._missing_for_image(tmp_path, IMAGE) == ["uvloop"]
