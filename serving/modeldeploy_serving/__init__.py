"""modeldeploy's model server: ONNX Runtime behind the Open Inference Protocol v2."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modeldeploy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
