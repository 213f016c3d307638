"""Request bodies to InferenceRequests: small ones on the event loop, large ones in a helper process.

Parsing a JSON body runs in C (orjson) but holds the interpreter the whole time, and a
16 MiB body of numbers becomes millions of Python floats before it becomes one numpy
array: on the event loop that stalls every other request for the length of the parse and
makes the server's memory peak many times the size of the data. Bodies from
LARGE_BODY_BYTES up are therefore parsed in one helper process (started on first use):
the loop keeps answering small requests, and only the finished numpy arrays come back.
Binary tensor data is never sent there: it is used in place, without parsing.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import orjson

from modeldeploy_serving.protocol import BinaryData, InferenceRequest, ProtocolError, parse_request
from modeldeploy_serving.signature import TensorSpec

DEFAULT_LARGE_BODY_BYTES = 1024 * 1024


def parse_body(
    text: bytes | memoryview,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    binary: BinaryData | None = None,
    framed: bool = False,
) -> InferenceRequest:
    """The request in a body's JSON (and the binary data after it, when framed)."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        hint = "" if framed else " (binary tensor data needs the Inference-Header-Content-Length header)"
        raise ProtocolError(f"the request body is not valid JSON: {error}{hint}") from None
    return parse_request(document, inputs, outputs, binary)


def _parse_in_helper(text: bytes, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> InferenceRequest:
    try:
        return parse_body(text, inputs, outputs)
    except ProtocolError as error:  # its status does not survive pickling on its own
        raise _Refusal(str(error), error.status) from None


class _Refusal(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status)


class RequestParser:
    """Parses a model's requests; large JSON bodies in a helper process, the rest inline."""

    def __init__(
        self, inputs: list[TensorSpec], outputs: list[TensorSpec], large_body_bytes: int = DEFAULT_LARGE_BODY_BYTES
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.large_body_bytes = large_body_bytes
        self._helper: ProcessPoolExecutor | None = None

    def parse_now(self, text: memoryview, binary: BinaryData, framed: bool) -> InferenceRequest | None:
        """The request, parsed on the event loop; None for a large JSON body (see parse())."""
        if len(text) < self.large_body_bytes or len(binary.data):
            return parse_body(text, self.inputs, self.outputs, binary, framed)
        return None

    async def parse(self, text: memoryview, binary: BinaryData, framed: bool) -> InferenceRequest:
        if (request := self.parse_now(text, binary, framed)) is not None:
            return request
        # The whole body when it is all JSON, so no copy is made before pickling it.
        whole = text.obj if isinstance(text.obj, bytes) and len(text) == len(text.obj) else bytes(text)
        if self._helper is None:
            self._helper = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._helper, _parse_in_helper, whole, self.inputs, self.outputs)
        except _Refusal as refusal:
            message, status = refusal.args
            raise ProtocolError(message, status) from None
        except BrokenProcessPool:  # the helper died (out of memory?): start a new one next time
            self._helper = None
            raise ProtocolError("the request body could not be parsed: the parsing process died", status=503) from None

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=True, cancel_futures=True)
            self._helper = None
