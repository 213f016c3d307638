"""The kind scripts (e2e/kind/) cannot run here (no Docker engine), so what can be checked
is: shellcheck passes, bash parses them, they are executable, and what they point at
(the Dockerfile, the chart and the chart values they set) exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KIND = REPO / "e2e" / "kind"
SCRIPTS = sorted(KIND.glob("*.sh"))
DEMOS = sorted((REPO / "examples").glob("*.sh"))  # shellchecked with them
ENTRY_POINTS = ("up.sh", "test.sh", "down.sh")


def test_the_scripts_are_there() -> None:
    assert {path.name for path in SCRIPTS} >= {*ENTRY_POINTS, "lib.sh"}


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: apt-get install shellcheck (`make test` installs it)")
    result = subprocess.run(
        [shellcheck, "--external-sources", "--severity=style", *map(str, SCRIPTS + DEMOS)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, f"shellcheck found problems:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bash_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_are_executable_and_strict(name: str) -> None:
    script = KIND / name
    assert os.access(script, os.X_OK), f"{script} is not executable (chmod +x)"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


def test_what_the_scripts_use_exists() -> None:
    up = (KIND / "up.sh").read_text()
    assert (REPO / "Dockerfile").is_file()
    assert "charts/modeldeploy" in up
    values = yaml.safe_load((REPO / "charts/modeldeploy/values.yaml").read_text())
    for key in ("repository", "tag", "pullPolicy"):
        assert f"image.{key}=" in up
        assert key in values["image"], f"the chart has no image.{key} value for up.sh to set"
