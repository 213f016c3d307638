"""The binary tensor data extension's framing, as Triton and KServe define it.

A request body may be a JSON header followed by raw tensor bytes: the header
`Inference-Header-Content-Length` says where the JSON ends, and each input with
`"parameters": {"binary_data_size": n}` takes the next n bytes. An answer does the same
for the outputs the client asked to get as binary data (`binary_data_output` on the
request, or `binary_data` on an output). tritonclient uses it by default, and it moves a
large batch without printing and parsing every number. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import numpy as np

from modeldeploy_serving.protocol import NO_BINARY_DATA, BinaryData, ProtocolError

HEADER = b"inference-header-content-length"
EXTENSION = "binary_tensor_data"  # the name in the server metadata's extensions, as Triton's


def split_body(body: bytes, header_length: bytes | None) -> tuple[memoryview, BinaryData]:
    """(the JSON part, the binary data after it) of a request body."""
    view = memoryview(body)
    if header_length is None:
        return view, NO_BINARY_DATA
    text = header_length.decode("latin-1").strip()
    # isdigit() alone takes "²" (latin-1 byte 0xB2), which int() does not.
    if not (text.isascii() and text.isdigit()) or int(text) > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length {text!r} must be the byte length of the JSON header, "
            f"from 0 to the body's {len(body)} bytes"
        )
    end = int(text)
    return view[:end], BinaryData(view[end:])


def encode(array: np.ndarray, datatype: str) -> bytes:
    """An output's binary form: little-endian row-major values; BYTES as 4-byte length + bytes."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1).tolist():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts += [len(data).to_bytes(4, "little"), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
