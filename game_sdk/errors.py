"""Exceptions raised by the SDK. Everything it raises derives from ``SidecarError``::

    SidecarError
    ├── ProtocolError        a message that breaks PROTOCOL.md (game_sdk.protocol; also ValueError)
    ├── TransportError       ZeroMQ could not create or connect a socket (bad endpoint, ...)
    ├── NotConnectedError    wait_connected() saw no daemon in time
    ├── ClientClosedError    the client was closed; create a new one
    └── IntentError          a bad intent call (empty or too long text, handle not open)

ZeroMQ errors are translated in one place (``EmotionClient._zmq``) and keep their cause
(``raise ... from exc``). Network trouble is never raised from ``poll()``: it becomes a
``ConnectionChange`` event, because a game loop must keep running while the daemon is away.
"""

from __future__ import annotations

START_HINT = "Is the daemon running? Start it with `emotiond`."


class SidecarError(Exception):
    """Base class of every SDK exception."""


class TransportError(SidecarError):
    """A socket could not be created, connected or used."""


class NotConnectedError(SidecarError):
    """No daemon answered in time."""


class ClientClosedError(SidecarError):
    """The client is closed; create a new ``EmotionClient``."""


class IntentError(SidecarError, ValueError):
    """A bad ``begin_intent``/``end_intent`` call."""
