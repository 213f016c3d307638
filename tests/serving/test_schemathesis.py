"""schemathesis against a real `modeldeploy serve` process, from the protocol's own schemas.

Every operation of the Open Inference Protocol (specialised to the served model, see
oip_openapi.py) gets generated requests, valid and invalid, and every answer is checked:
no 5xx, only documented statuses and content types, every body valid against the
protocol's response schemas (so a NaN sent as null would fail). The number of examples is
bounded so the test stays well under a minute on a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modeldeploy_serving.model import Model

from tests.conftest import ExampleModels
from tests.serving.harness import ServeProcess
from tests.serving.oip_openapi import oip_openapi

EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 40, schemathesis.GenerationMode.NEGATIVE: 25}


@pytest.fixture(scope="module")
def served(example_models: ExampleModels) -> Iterator[ServeProcess]:
    process = ServeProcess(
        "--model", str(example_models.path("breast-cancer", "2")), "--name", "breast-cancer", "--version", "2"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_every_answer_fits_the_protocol(
    served: ServeProcess, cancer_v2: Model, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_dict(oip_openapi(cancer_v2))
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.status_code_conformance,
        schemathesis.checks.content_type_conformance,
        schemathesis.checks.response_headers_conformance,
        schemathesis.checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    strategy = st.one_of(*(operation.as_strategy(generation_mode=mode) for operation in operations))
    answered: list[int] = []

    with requests.Session() as session:

        @given(case=strategy)
        @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=served.url, session=session, checks=checks, timeout=30)
            answered.append(response.status_code)

        run()
    assert answered, "schemathesis sent no request"
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert 200 in answered  # valid requests reached the model, not only refusals
