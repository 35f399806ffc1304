"""Exceptions raised by the SDK. Everything the SDK raises derives from ``SidecarError``::

    SidecarError
    ├── ProtocolError        a frame that breaks PROTOCOL.md (defined in game_sdk.protocol)
    ├── ClientClosedError    the client was closed; create a new one
    ├── IntentError          a bad intent call (text too long, unknown or already ended handle)
    └── TransportError       ZeroMQ could not set up a socket (bad endpoint, ...)

Network trouble is never raised from ``poll()``: it becomes a ``ConnectionChange`` event, because a
game loop must keep running while the daemon is away.
"""

from __future__ import annotations



class SidecarError(Exception):
    """Base class of every SDK exception."""


class ClientClosedError(SidecarError):
    """The client is closed."""


class IntentError(SidecarError, ValueError):
    """A bad ``begin_intent``/``end_intent`` call."""


class TransportError(SidecarError):
    """A socket could not be created or connected."""

