"""The binary tensor data extension: raw tensor bytes after a JSON header, both ways.

Requests are framed by hand here (JSON, then the bytes of each input that declares its
binary_data_size, with Inference-Header-Content-Length saying where the JSON ends), so
every size check can be driven exactly; test_clients.py proves the same with tritonclient.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import Model, load_model

from tests.serving.graphs import NUMPY_TYPES, typed_model
from tests.serving.harness import InProcessServer, buckets, infer_body, output, value
from tests.serving.test_app_validation import refusal

INFER = "/v2/models/breast-cancer/infer"


def framed(document: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    """A request body with binary data and the header that says where its JSON ends."""
    head = orjson.dumps(document)
    return head + b"".join(blobs), {"inference-header-content-length": str(len(head))}


def binary_input(rows: np.ndarray, name: str = "input", datatype: str = "FP32", size: int | None = None) -> Any:
    blob = rows.astype(rows.dtype.newbyteorder("<")).tobytes()
    tensor = {"name": name, "shape": list(rows.shape), "datatype": datatype}
    return tensor | {"parameters": {"binary_data_size": len(blob) if size is None else size}}, blob


def split_answer(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON of a binary answer and its binary outputs decoded by their declared datatype."""
    length = int(response.headers["inference-header-content-length"])
    document = orjson.loads(response.content[:length])
    offset, arrays = length, {}
    for item in document["outputs"]:
        size = item.get("parameters", {}).get("binary_data_size")
        if size is not None:
            dtype = NUMPY_TYPES.get(item["datatype"], np.float32)
            blob = response.content[offset : offset + size]
            arrays[item["name"]] = np.frombuffer(blob, dtype).reshape(item["shape"])
            offset += size
    assert offset == len(response.content)
    return document, arrays


def test_binary_inputs_and_outputs_give_the_json_answer(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    rows = cancer_rows[:7]
    as_json = cancer_server.infer(infer_body(rows))
    tensor, blob = binary_input(rows)
    body, headers = framed({"inputs": [tensor], "parameters": {"binary_data_output": True}}, blob)
    response = cancer_server.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    document, arrays = split_answer(response)
    assert [o["parameters"]["binary_data_size"] for o in document["outputs"]] == [7 * 8, 7 * 2 * 4]
    assert all("data" not in o for o in document["outputs"])
    np.testing.assert_array_equal(arrays["label"], output(as_json, "label").astype(np.int64))
    np.testing.assert_array_equal(arrays["probabilities"], output(as_json, "probabilities").astype(np.float32))


def test_binary_per_output_and_json_side_by_side(cancer_server: InProcessServer, cancer_rows: np.ndarray) -> None:
    rows = cancer_rows[:3]
    outputs = [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}]
    tensor, blob = binary_input(rows)
    body, headers = framed({"inputs": [tensor], "outputs": outputs, "parameters": {"binary_data_output": True}}, blob)
    document, arrays = split_answer(cancer_server.post(INFER, content=body, headers=headers))
    assert list(arrays) == ["probabilities"]
    assert "data" in document["outputs"][0] and "parameters" not in document["outputs"][0]
    # Binary inputs with JSON answers (no binary output asked for): a plain JSON answer.
    body, headers = framed({"inputs": [tensor], "id": "side-by-side"}, blob)
    plain = cancer_server.post(INFER, content=body, headers=headers)
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    assert plain.json() == cancer_server.infer(infer_body(rows, id="side-by-side")).json()


def test_sizes_that_do_not_add_up_are_refused_naming_tensor_and_both_sizes(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    rows = cancer_rows[:2]
    tensor, blob = binary_input(rows, size=236)
    body, headers = framed({"inputs": [tensor]}, blob[:236])
    message = refusal(cancer_server.post(INFER, content=body, headers=headers))
    assert message == "input 'input' has binary_data_size 236 but shape [2, 30] of FP32 needs 240 bytes"
    tensor, blob = binary_input(rows)
    body, headers = framed({"inputs": [tensor]}, blob[:200])
    message = refusal(cancer_server.post(INFER, content=body, headers=headers))
    assert message == "input 'input' has binary_data_size 240 but only 200 bytes of binary data are left"
    body, headers = framed({"inputs": [tensor]}, blob + b"1234")
    message = refusal(cancer_server.post(INFER, content=body, headers=headers))
    assert message.startswith("4 bytes of binary data follow the inputs' binary_data_size")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"binary_data_size": -1}, "input 'input': binary_data_size must be a non-negative integer, got -1"),
        ({"binary_data_size": "240"}, "input 'input': binary_data_size must be a non-negative integer, got '240'"),
        ({"data": [0.5] * 60}, "input 'input' has both 'data' and binary_data_size; send its values one way"),
    ],
)
def test_bad_binary_declarations(
    cancer_server: InProcessServer, cancer_rows: np.ndarray, change: dict[str, Any], message: str
) -> None:
    tensor, blob = binary_input(cancer_rows[:2])
    if "data" in change:
        tensor |= change
    else:
        tensor["parameters"] |= change
    body, headers = framed({"inputs": [tensor]}, blob)
    assert refusal(cancer_server.post(INFER, content=body, headers=headers)) == message


def test_the_header_length_is_checked(cancer_server: InProcessServer, cancer_rows: np.ndarray) -> None:
    tensor, blob = binary_input(cancer_rows[:2])
    body, _ = framed({"inputs": [tensor]}, blob)
    message = refusal(cancer_server.post(INFER, content=body, headers={"inference-header-content-length": "99999"}))
    assert message == (
        f"Inference-Header-Content-Length '99999' must be the byte length of the JSON header, "
        f"from 0 to the body's {len(body)} bytes"
    )
    message = refusal(cancer_server.post(INFER, content=body))  # binary data without the header
    assert message.startswith("the request body is not valid JSON: ")
    assert message.endswith("(binary tensor data needs the Inference-Header-Content-Length header)")


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b2", "1\u00b3", "-1", "0x10", " "])
def test_a_header_length_that_is_not_ascii_digits_is_400(
    cancer_server: InProcessServer, cancer_rows: np.ndarray, length: str
) -> None:
    # "²" (latin-1 byte 0xB2) passes str.isdigit() and fails int(): it was a 500 with a traceback.
    tensor, blob = binary_input(cancer_rows[:2])
    body, _ = framed({"inputs": [tensor]}, blob)
    headers = {"inference-header-content-length": length.encode("latin-1")}
    message = refusal(cancer_server.post(INFER, content=body, headers=headers))
    assert message == (
        f"Inference-Header-Content-Length {length.strip()!r} must be the byte length of the JSON header, "
        f"from 0 to the body's {len(body)} bytes"
    )


def test_server_metadata_advertises_the_extension(cancer_server: InProcessServer) -> None:
    assert "binary_tensor_data" in cancer_server.get("/v2").json()["extensions"]


def strings_blob(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


@pytest.mark.parametrize("datatype", ["FP64", "INT32", "INT64", "BOOL", "BYTES"])
def test_datatypes_in_binary_both_ways(serve: Callable[..., InProcessServer], tmp_path: Path, datatype: str) -> None:
    server = serve(load_model(typed_model(datatype, tmp_path / f"{datatype}.onnx"), "typed", "1"))
    values: dict[str, Any] = {
        "FP64": [[0.1, -1e300, 2.5], [1e-300, 0.0, -7.0]],
        "INT32": [[0, -(2**31), 5], [5, -6, 7]],
        "INT64": [[0, -(2**63), 2**62], [5, -6, 7]],
        "BOOL": [[True, False, True], [False, False, True]],
        "BYTES": [["a", "b c", ""], ["é", "{}", "0"]],
    }
    rows = np.array(values[datatype], dtype=NUMPY_TYPES[datatype])
    if datatype == "BYTES":
        blob = strings_blob(rows.reshape(-1).tolist())
        tensor = {"name": "x", "shape": [2, 3], "datatype": datatype, "parameters": {"binary_data_size": len(blob)}}
    else:
        tensor, blob = binary_input(rows, name="x", datatype=datatype)
    body, headers = framed({"inputs": [tensor], "parameters": {"binary_data_output": True}}, blob)
    response = server.post("/v2/models/typed/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    document = orjson.loads(response.content[:length])
    z = document["outputs"][1]
    assert z["name"] == "z" and z["parameters"]["binary_data_size"] == len(blob)
    start = length + document["outputs"][0]["parameters"]["binary_data_size"]
    assert response.content[start:] == blob  # z = x: the same bytes come back


def test_binary_bytes_and_bools_are_checked(serve: Callable[..., InProcessServer], tmp_path: Path) -> None:
    server = serve(load_model(typed_model("BYTES", tmp_path / "bytes.onnx"), "typed", "1"))
    blob = strings_blob(["a", "b"]) + struct.pack("<I", 50) + b"c"
    tensor = {"name": "x", "shape": [1, 3], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}
    body, headers = framed({"inputs": [tensor]}, blob)
    message = refusal(server.post("/v2/models/typed/infer", content=body, headers=headers))
    assert message == "input 'x' (BYTES): binary element 2 says 50 bytes but 1 are left"
    bools = serve(load_model(typed_model("BOOL", tmp_path / "bool.onnx"), "typed", "1"))
    tensor = {"name": "x", "shape": [1, 3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}}
    body, headers = framed({"inputs": [tensor]}, b"\x00\x01\x02")
    message = refusal(bools.post("/v2/models/typed/infer", content=body, headers=headers))
    assert message == "input 'x' (BOOL) takes bytes 0 or 1 in binary data"


def test_binary_nan_and_infinity_are_counted_as_missing_and_invalid(
    serve: Callable[..., InProcessServer], cancer_v2: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v2)  # the random forest answers rows with NaN and infinity
    rows = cancer_rows[:2].copy()
    rows[0, 1], rows[1, 1], rows[1, 2] = np.inf, -np.inf, np.nan
    tensor, blob = binary_input(rows)
    body, headers = framed({"inputs": [tensor]}, blob)
    assert server.post(INFER, content=body, headers=headers).status_code == 200
    text = server.metrics()
    labels = {"model": "breast-cancer", "version": "2", "track": "stable"}
    assert value(text, f"{t.FEATURE_INVALID}_total", **labels, feature="mean texture") == 2
    assert value(text, f"{t.FEATURE_MISSING}_total", **labels, feature="mean perimeter") == 1
    assert buckets(text, t.FEATURE_VALUE, **labels, feature="mean texture")[float("inf")] == 0
