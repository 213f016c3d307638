"""Fixtures the whole suite shares: the example models, trained for real once per session.

The models come from examples/train.py, the same script a new user runs, on the data sets
scikit-learn ships; tests serve, profile and fetch those files rather than stand-ins.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from tests.serving.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

# Property-based tests: enough examples to find the edge cases, few enough to keep the suite
# fast on a busy two-core machine; no per-example deadline (a loaded CI box is not a bug).
settings.register_profile("modeldeploy", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile("modeldeploy")


@dataclass(frozen=True)
class ExampleModels:
    """The output folder of examples/train.py and what its models.json says about it."""

    folder: Path
    entries: list[dict[str, str]]

    def path(self, name: str, version: str) -> Path:
        return self.folder / self.entry(name, version)["file"]

    def sha256(self, name: str, version: str) -> str:
        return self.entry(name, version)["sha256"]

    def entry(self, name: str, version: str) -> dict[str, str]:
        return next(e for e in self.entries if e["name"] == name and e["version"] == version)

    def reference_csv(self, name: str) -> Path:
        return self.folder / f"{name}-reference.csv"

    def holdout_csv(self, name: str) -> Path:
        """The held-out rows with their true labels (column `target`)."""
        return self.folder / f"{name}-holdout.csv"

    def train_csv(self, name: str) -> Path:
        """The rows the good model was trained on, with their true labels (column `target`)."""
        return self.folder / f"{name}-train.csv"


def load_training_script() -> ModuleType:
    """examples/train.py as a module (examples/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("modeldeploy_examples_train", ROOT / "examples" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def training_script() -> ModuleType:
    return load_training_script()


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory, training_script: ModuleType) -> ExampleModels:
    folder = tmp_path_factory.mktemp("models")
    training_script.train(folder)
    return ExampleModels(folder, json.loads((folder / "models.json").read_text()))


@pytest.fixture(scope="session")
def redis_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the feedback tests; each test keeps its keys under a prefix of its own."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
