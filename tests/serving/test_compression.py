"""Compressed request bodies and answers: gzip and deflate, with the limit on decoded bytes."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from modeldeploy_serving.model import Model

from tests.serving.harness import InProcessServer, infer_body
from tests.serving.test_app_validation import refusal

INFER = "/v2/models/breast-cancer/infer"
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # HTTP's deflate is the zlib format (RFC 9110, 8.4.1.2)
    "deflate, gzip": lambda body: gzip.compress(zlib.compress(body)),
    "identity": lambda body: body,
}


@pytest.mark.parametrize("coding", list(COMPRESSORS))
def test_compressed_bodies_are_answered_as_the_plain_one(
    cancer_server: InProcessServer, cancer_rows: np.ndarray, coding: str
) -> None:
    body = orjson.dumps(infer_body(cancer_rows[:5], id="packed"))
    plain = cancer_server.post(INFER, content=body)
    packed = cancer_server.post(INFER, content=COMPRESSORS[coding](body), headers={"content-encoding": coding})
    assert packed.status_code == 200, packed.text
    assert packed.json() == plain.json()


def test_a_zip_bomb_is_413_on_its_decompressed_size(serve: Callable[..., InProcessServer], cancer_v1: Model) -> None:
    server = serve(cancer_v1, max_request_bytes=1_000_000)
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB of spaces in about 50 kB
    assert len(bomb) < 1_000_000
    response = server.post(INFER, content=bomb, headers={"content-encoding": "gzip"})
    assert refusal(response, 413) == "the request body decompresses to more than the limit of 1000000 bytes"


def test_a_compressed_body_just_under_the_limit_is_read(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    body = orjson.dumps(infer_body(cancer_rows[:5]))
    server = serve(cancer_v1, max_request_bytes=len(body))
    response = server.post(INFER, content=gzip.compress(body), headers={"content-encoding": "gzip"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br", "compress"])
def test_an_unsupported_encoding_is_415_naming_the_supported_ones(cancer_server: InProcessServer, coding: str) -> None:
    response = cancer_server.post(INFER, content=b"{}", headers={"content-encoding": coding})
    unknown = coding.rsplit(", ", maxsplit=1)[-1]
    assert refusal(response, 415) == (
        f"Content-Encoding {unknown!r} is not supported; send the body as gzip, deflate, identity"
    )


def test_broken_compressed_bodies_are_400(cancer_server: InProcessServer, cancer_rows: np.ndarray) -> None:
    packed = gzip.compress(orjson.dumps(infer_body(cancer_rows[:5])))
    gzip_header = {"content-encoding": "gzip"}
    message = refusal(cancer_server.post(INFER, content=b"not gzip at all", headers=gzip_header))
    assert message.startswith("the request body is not valid gzip data: ")
    message = refusal(cancer_server.post(INFER, content=packed[: len(packed) // 2], headers=gzip_header))
    assert message == "the gzip request body ends before its compressed stream does"
    message = refusal(cancer_server.post(INFER, content=packed + b"junk", headers=gzip_header))
    assert message == "the gzip request body has 4 bytes after its end"


def test_answers_are_compressed_when_the_client_accepts_it_and_they_are_large(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    body = infer_body(cancer_rows[:50], id="the-same-answer")
    plain = cancer_server.post(INFER, json=body, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    for accept, coding in [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("br;q=1, deflate;q=0.5", "deflate"),
        ("*", "gzip"),
    ]:
        packed = cancer_server.post(INFER, json=body, headers={"accept-encoding": accept})
        assert packed.headers["content-encoding"] == coding, accept
        assert packed.headers["vary"] == "accept-encoding"
        assert int(packed.headers["content-length"]) < len(plain.content) / 2
        assert packed.json() == plain.json()  # httpx decodes it
    refused = cancer_server.post(INFER, json=body, headers={"accept-encoding": "gzip;q=0, deflate;q=0"})
    assert "content-encoding" not in refused.headers


def test_small_answers_are_not_compressed(cancer_server: InProcessServer) -> None:
    response = cancer_server.request("GET", "/v2/health/live", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "accept-encoding"


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ("gzip, deflate, gzip", "lists 3 codings"),
        (", ".join(["gzip"] * 10_000), "lists 10000 codings"),
        ("gzip, gzip", "lists gzip twice"),
        ("identity, identity", "lists identity twice"),
    ],
)
def test_stacked_codings_are_refused_before_any_is_decoded(cancer_server: InProcessServer, sent: str, why: str) -> None:
    # Each stacked coding costs a decompressor (a 32 KiB window and its state): ten thousand
    # in one header cost hundreds of MB. Two are all a client ever needs.
    response = cancer_server.post(INFER, content=b"{}", headers={"content-encoding": sent})
    message = refusal(response, 415)
    shown = sent if len(sent) <= 60 else sent[:57] + "..."
    assert message == f"Content-Encoding {shown!r} {why}; accepted: at most 2 of gzip, deflate, identity, each once"


def test_codings_in_several_header_lines_are_read_together(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    # RFC 9110, 5.3: repeated field lines are one comma-separated list, in the order sent.
    body = orjson.dumps(infer_body(cancer_rows[:5], id="two-lines"))
    plain = cancer_server.post(INFER, content=body)
    packed = cancer_server.post(
        INFER,
        content=zlib.compress(gzip.compress(body)),  # gzip applied first, then deflate
        headers=[("content-encoding", "gzip"), ("content-encoding", "deflate")],
    )
    assert packed.status_code == 200, packed.text
    assert packed.json() == plain.json()
    three = [("content-encoding", "gzip"), ("content-encoding", "deflate"), ("content-encoding", "gzip")]
    message = refusal(cancer_server.post(INFER, content=b"{}", headers=three), 415)
    assert message.startswith("Content-Encoding 'gzip, deflate, gzip' lists 3 codings")
