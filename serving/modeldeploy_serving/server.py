"""`modeldeploy serve`: load, warm up, then listen; drain, then finish in-flight requests on SIGTERM.

The model is loaded and a warm-up inference run before the port opens, so nothing can
reach a model that is not ready. On SIGTERM the server first drains (draining.py: it keeps
answering until no new connection has arrived for a while), then uvicorn stops accepting
and lets requests already in flight finish (up to the grace period) before the batcher is
stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import DEFAULT_MAX_REQUEST_BYTES, AppOptions, ServingApp
from modeldeploy_serving.connections import ConnectionLimits, guarded_protocol
from modeldeploy_serving.draining import Drain, DrainOptions
from modeldeploy_serving.feedback import FeedbackOptions
from modeldeploy_serving.fetching import fetch
from modeldeploy_serving.grpc_service import GrpcService
from modeldeploy_serving.inflight import DEFAULT_MAX_INFLIGHT_BYTES
from modeldeploy_serving.mirroring import (
    DEFAULT_CONNECTIONS,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    MERGE_WAIT_SECONDS,
    MirrorOptions,
)
from modeldeploy_serving.model import load_model
from modeldeploy_serving.parsing import DEFAULT_LARGE_BODY_BYTES
from modeldeploy_serving.sampling import CaptureOptions

POD_NAME_ENV = "MODELDEPLOY_POD_NAME"  # set by the operator from the downward API
NAMESPACE_ENV = "MODELDEPLOY_NAMESPACE"
# The feedback store's credentials, when its URL has none (the operator sets them from a Secret).
STORE_USERNAME_ENV = "MODELDEPLOY_FEEDBACK_STORE_USERNAME"
STORE_PASSWORD_ENV = "MODELDEPLOY_FEEDBACK_STORE_PASSWORD"  # noqa: S105 (the variable's name)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    model: str  # a path or a URI
    name: str | None = None
    version: str = "1"
    sha256: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 (a server in a pod listens on its pod IP)
    port: int = 8080
    threads: int = 1
    max_batch_size: int = 32
    max_batch_delay_us: int = 500
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    telemetry: bool = True
    graceful_seconds: int = 30
    drain: DrainOptions = dataclasses.field(default_factory=DrainOptions)  # waited for on SIGTERM (draining.py)
    # Heads, bodies, idle time and how many connections (connections.py).
    connections: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)
    large_body_bytes: int = DEFAULT_LARGE_BODY_BYTES
    grpc_port: int | None = None  # the Open Inference Protocol's gRPC service; off unless given
    capture: CaptureOptions | None = None  # production samples for retraining; off unless given
    shadow_config: Path | None = None  # a shadow config file, re-read when it changes; off unless given
    shadow_queue_size: int = DEFAULT_QUEUE_SIZE
    shadow_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    shadow_connections: int = DEFAULT_CONNECTIONS
    shadow_merge_wait_seconds: float = MERGE_WAIT_SECONDS
    shadow_token: str = ""  # MODELDEPLOY_SHADOW_TOKEN: marks copies sent and accepted; none taken without it
    feedback: FeedbackOptions | None = None  # predictions kept in a store for labels to join; off unless given


def local_model_path(model: str, sha256: str | None, scratch: Path) -> Path:
    """A local file for the model: the path itself, or a verified download of a URI."""
    scheme = urllib.parse.urlparse(model).scheme
    if scheme in ("", "file") and sha256 is None:
        return Path(urllib.parse.unquote(urllib.parse.urlparse(model).path) if scheme else model)
    return fetch(model, scratch, sha256)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on the first SIGTERM drains (draining.py) before it shuts down,
    and says what it serves only once its port is open."""

    def __init__(self, config: uvicorn.Config, drain: Drain, serving: str = "") -> None:
        super().__init__(config)
        self.drain = drain
        self.serving = serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # exits with uvicorn's own error when the port is taken
        if self.started and self.serving:
            log.info("%s", self.serving)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.drain.draining and not self.should_exit:
            self.drain.begin()
            self._captured_signals.append(sig)  # re-raised into _drained on the way out, as uvicorn does
            log.info("SIGTERM: draining (answering until no new connection arrives), then shutting down")
            return
        super().handle_exit(sig, frame)  # a second SIGTERM, or SIGINT: shut down now

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit and self.drain.done():
            log.info("%s: closing the port", self.drain.summary())
            self.should_exit = True
        return await super().on_tick(counter)


def build_app(options: ServeOptions, path: Path, drain: Drain | None = None) -> ServingApp:
    name = options.name or path.stem
    model = load_model(path, name, options.version, options.threads)
    app = ServingApp(
        model,
        AppOptions(
            track=os.environ.get(t.TRACK_ENV, t.STABLE),
            max_batch_size=options.max_batch_size,
            max_delay_seconds=options.max_batch_delay_us / 1e6,
            max_request_bytes=options.max_request_bytes,
            max_inflight_bytes=options.max_inflight_bytes,
            telemetry=options.telemetry,
            large_body_bytes=options.large_body_bytes,
            capture=_with_identity(options.capture),
            shadow_token=options.shadow_token,
            shadow=(
                MirrorOptions(
                    options.shadow_config,
                    queue_size=options.shadow_queue_size,
                    timeout_seconds=options.shadow_timeout_seconds,
                    connections=options.shadow_connections,
                    merge_wait_seconds=options.shadow_merge_wait_seconds,
                    token=options.shadow_token,
                )
                if options.shadow_config is not None
                else None
            ),
            feedback=_with_credentials(options.feedback),
        ),
    )
    if options.grpc_port is not None:
        GrpcService(app, options.host, options.grpc_port, drain)
    return app


def _with_identity(capture: CaptureOptions | None) -> CaptureOptions | None:
    """Capture options with the pod's name and namespace (for object keys and event sources)."""
    if capture is None:
        return None
    pod = capture.pod or os.environ.get(POD_NAME_ENV) or socket.gethostname()
    return dataclasses.replace(capture, pod=pod, namespace=capture.namespace or os.environ.get(NAMESPACE_ENV, ""))


def _with_credentials(feedback: FeedbackOptions | None) -> FeedbackOptions | None:
    """Feedback options with the store's username and password from the environment, if set."""
    if feedback is None:
        return None
    return dataclasses.replace(
        feedback,
        username=feedback.username or os.environ.get(STORE_USERNAME_ENV, ""),
        password=feedback.password or os.environ.get(STORE_PASSWORD_ENV, ""),
    )


def serve(options: ServeOptions) -> None:
    with tempfile.TemporaryDirectory(prefix="modeldeploy-") as scratch:
        drain = Drain(options.drain)
        app = build_app(options, local_model_path(options.model, options.sha256, Path(scratch)), drain)
        serving = (
            f"serving model {app.model.name} version {app.model.version} (sha256 {app.model.sha256}) "
            f"on {options.host}:{options.port}"
        )
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            loop="uvloop",
            http=guarded_protocol(options.connections, drain),
            lifespan="on",
            access_log=False,
            # The app reads no client address or scheme, so uvicorn's X-Forwarded-* middleware
            # (a header scan per request) would only cost time.
            proxy_headers=False,
            log_level="warning",
            timeout_graceful_shutdown=options.graceful_seconds,
        )
        # uvicorn drains on SIGTERM (or SIGINT) and then raises the signal again, which would
        # kill the process with it after a clean drain. A no-op handler of ours is what it
        # restores and re-raises into, so a drained server returns and exits 0.
        previous = {signum: signal.signal(signum, _drained) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            DrainingServer(config, drain, serving).run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _drained(signum: int, frame: FrameType | None) -> None:
    """The signal uvicorn re-raises after it drained in-flight requests: nothing left to do."""
