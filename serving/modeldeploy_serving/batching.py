"""Adaptive batching: concurrent requests merged into one ONNX Runtime call.

One call on 32 rows costs far less than 32 calls on one row, most of all for tree
ensembles. The batcher takes the first waiting request, adds every request already queued
(up to the maximum batch size), and waits up to the maximum delay for more only while other
requests are known to be on their way (being read or parsed). A lone caller is therefore
never delayed, and under load batches form on their own. Each caller gets exactly its own
rows back: outputs are split at the same offsets the inputs were stacked at.

Inference runs on the event loop when calls are short (a thread hand-off would cost more
than the call), and on a worker thread when they are long, so health checks keep answering.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from modeldeploy_serving.model import InferenceError

# A Model's infer(): raises InferenceError for a call that failed, saying whether the inputs
# are to blame; anything else it raises is a failure of the server.
RunFn = Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]]
# A caller's outputs, and whether every floating-point output of the whole batch was finite.
Answer = tuple[dict[str, np.ndarray], bool]
ObserveFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], float], None]
INLINE_BELOW_SECONDS = 0.001
RECENT_CALLS = 15  # calls whose median decides where the next one runs


class _Pending:
    """One caller's request waiting in the queue."""

    __slots__ = ("future", "inputs", "rows")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int, future: asyncio.Future[Answer]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future

    def key(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Requests merge only when every input agrees on all but the batch dimension."""
        return tuple([(name, array.shape[1:]) for name, array in self.inputs.items()])


class Batcher:
    def __init__(
        self,
        run: RunFn,
        output_names: list[str],
        observe: ObserveFn | None,
        max_batch_size: int = 32,
        max_delay_seconds: float = 0.0005,
    ) -> None:
        self._run = run
        self._output_names = output_names
        self._observe = observe
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay = max(0.0, max_delay_seconds)
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._recent: deque[float] = deque([0.0], maxlen=RECENT_CALLS)  # seconds of recent calls
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.expected = 0  # requests being read or parsed that will reach submit() soon

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker = self._loop.create_task(self._work(), name="batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """The model's outputs for these rows (only these), computed with whatever else is queued."""
        outputs, _ = await self.answer(inputs, rows)
        return outputs

    def answer(self, inputs: dict[str, np.ndarray], rows: int) -> asyncio.Future[Answer]:
        """submit(), and whether every floating-point output of the batch was finite, to await.

        The finiteness of a whole batch is checked once; a caller whose batch had a NaN or an
        infinity somewhere checks its own rows (the value may be another caller's). A future,
        not a coroutine: the caller awaits it directly, one frame less to resume per request.
        """
        future: asyncio.Future[Answer] = (self._loop or asyncio.get_running_loop()).create_future()
        self._queue.append(_Pending(inputs, rows, future))
        self._arrived.set()
        return future

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._collect()
            try:
                await self._infer(batch)
            except Exception as error:  # a failure of the server: its callers answer 500, later ones are served
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)

    async def _collect(self) -> list[_Pending]:
        first = self._queue.popleft()
        batch, rows, key = [first], first.rows, first.key()
        deadline = time.perf_counter() + self.max_delay
        while rows < self.max_batch_size:
            rows = self._take_queued(batch, rows, key)
            remaining = deadline - time.perf_counter()
            if rows >= self.max_batch_size or self.expected <= 0 or remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                self._take_queued(batch, rows, key)
                break
        return batch

    def _take_queued(self, batch: list[_Pending], rows: int, key: object) -> int:
        skipped: list[_Pending] = []
        while self._queue and rows < self.max_batch_size:
            item = self._queue.popleft()
            if item.key() != key or rows + item.rows > self.max_batch_size:
                skipped.append(item)
                continue
            batch.append(item)
            rows += item.rows
        self._queue.extendleft(reversed(skipped))
        return rows

    async def _infer(self, batch: list[_Pending]) -> None:
        batch = [item for item in batch if not item.future.done()]  # callers that gave up
        if not batch:
            return
        names = list(batch[0].inputs)
        inputs = (
            batch[0].inputs
            if len(batch) == 1
            else {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
        )
        try:
            outputs, seconds = await self._call(inputs)
        except InferenceError as error:
            if len(batch) > 1:  # find the request that broke it; the others still get answers
                for item in batch:
                    await self._infer([item])
                return
            batch[0].future.set_exception(error)
            return
        total = sum(item.rows for item in batch)
        if any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()) and len(batch) > 1:
            for item in batch:  # an output that is not batch-major cannot be split by rows
                await self._infer([item])
            return
        if self._observe is not None:
            self._observe(inputs, outputs, seconds)
        finite = all(array.dtype.kind != "f" or np.isfinite(array).all() for array in outputs.values())
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result((outputs, finite))
            return
        start = 0
        for item in batch:  # each caller's rows, as views of the batch's outputs
            stop = start + item.rows
            if not item.future.done():
                item.future.set_result(({name: array[start:stop] for name, array in outputs.items()}, finite))
            start = stop

    async def _call(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """One ONNX Runtime call: on the event loop when calls are short, else on the worker thread.

        The decision uses the median of recent calls, each timed inside the call alone (not
        the hand-off to the thread, which waits for the GIL while the loop parses requests),
        so a single slow call on a busy machine cannot push every later call off the loop.
        A request larger than a whole batch always goes to the thread: its call is the one
        that would hold up the small requests behind it.
        """
        rows = next(iter(inputs.values())).shape[0] if inputs else 0
        if statistics.median(self._recent) < INLINE_BELOW_SECONDS and rows <= self.max_batch_size:
            results, seconds = self._run_safely(inputs)
        else:
            loop = asyncio.get_running_loop()
            results, seconds = await loop.run_in_executor(self._executor, self._run_safely, inputs)
        self._recent.append(seconds)
        return dict(zip(self._output_names, results, strict=True)), seconds

    def _run_safely(self, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        started = time.perf_counter()
        try:
            results = self._run(self._output_names, inputs)
        except InferenceError:
            raise
        except Exception as error:  # not the model's answer: the server's failure
            raise InferenceError(f"{type(error).__name__}: {error}", bad_input=False) from error
        return results, time.perf_counter() - started
