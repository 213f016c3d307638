"""Fixtures of the serving tests: the example models loaded into ONNX Runtime, their data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.model import Model, load_model

from tests.conftest import ExampleModels
from tests.serving.harness import InProcessServer, ModelHost


def reference_rows(models: ExampleModels, name: str) -> np.ndarray:
    """The model's reference (training) rows as the FP32 a client sends."""
    return np.loadtxt(models.reference_csv(name), delimiter=",", skiprows=1, dtype=np.float64).astype(np.float32)


@pytest.fixture(scope="session")
def cancer_v1(example_models: ExampleModels) -> Model:
    return load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")


@pytest.fixture(scope="session")
def cancer_v2(example_models: ExampleModels) -> Model:
    return load_model(example_models.path("breast-cancer", "2"), "breast-cancer", "2")


@pytest.fixture(scope="session")
def diabetes_v1(example_models: ExampleModels) -> Model:
    return load_model(example_models.path("diabetes", "1"), "diabetes", "1")


@pytest.fixture(scope="session")
def cancer_rows(example_models: ExampleModels) -> np.ndarray:
    return reference_rows(example_models, "breast-cancer")


@pytest.fixture(scope="session")
def diabetes_rows(example_models: ExampleModels) -> np.ndarray:
    return reference_rows(example_models, "diabetes")


@pytest.fixture
def serve() -> Iterator[Callable[..., InProcessServer]]:
    """serve(model, **AppOptions fields): a started in-process server, closed after the test."""
    started: list[InProcessServer] = []

    def start(model: Model, **options: Any) -> InProcessServer:
        server = InProcessServer(ServingApp(model, AppOptions(**options)))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def cancer_server(cancer_v1: Model) -> Iterator[InProcessServer]:
    """One server of breast-cancer v1 shared by a module's tests that only read from it."""
    server = InProcessServer(ServingApp(cancer_v1))
    yield server
    server.close()


@pytest.fixture(scope="module")
def model_host(example_models: ExampleModels) -> Iterator[ModelHost]:
    """breast-cancer v1 on a local HTTP server, with paths that fail in every way."""
    host = ModelHost(example_models.path("breast-cancer", "1").read_bytes())
    yield host
    host.close()
