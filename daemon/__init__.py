"""emotiond: the emotion-sidecar daemon (``python -m daemon`` or the ``emotiond`` script).

Threads and who owns what: ``docs/architecture.md``. Start order and shutdown: ``daemon.app``.
Importing this package is cheap; torch and OpenCV are loaded only when the app starts.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("emotion-sidecar")
except metadata.PackageNotFoundError:  # a checkout that is not pip-installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
