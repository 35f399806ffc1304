"""emotion-sidecar game SDK: live player emotions and intent analyses from ``emotiond``.

Needs only pyzmq and msgpack. Start here::

    from game_sdk import EmotionClient, Analysis

    client = EmotionClient(name="my-game")
    handle = client.begin_intent("open the chest")
    ...
    client.end_intent(handle)
    for event in client.poll():          # call once per frame; never blocks
        if isinstance(event, Analysis):
            print(event.text)

The wire format is in PROTOCOL.md; ``game_sdk.protocol`` is its implementation.
"""

from game_sdk.client import SDK_VERSION, EmotionClient
from game_sdk.errors import ClientClosedError, IntentError, SidecarError, TransportError
from game_sdk.protocol import (
    CLASSES,
    DEFAULT_CONTROL_ENDPOINT,
    DEFAULT_EVENTS_ENDPOINT,
    PROTOCOL_VERSION,
    ProtocolError,
)
from game_sdk.types import (
    Analysis,
    ConnectionChange,
    ConnectionState,
    DaemonStatus,
    EmotionEvent,
    ErrorEvent,
    Event,
    Face,
    IntentHandle,
)

__version__ = SDK_VERSION

__all__ = [
    "CLASSES",
    "DEFAULT_CONTROL_ENDPOINT",
    "DEFAULT_EVENTS_ENDPOINT",
    "PROTOCOL_VERSION",
    "SDK_VERSION",
    "Analysis",
    "ClientClosedError",
    "ConnectionChange",
    "ConnectionState",
    "DaemonStatus",
    "EmotionClient",
    "EmotionEvent",
    "ErrorEvent",
    "Event",
    "Face",
    "IntentError",
    "IntentHandle",
    "ProtocolError",
    "SidecarError",
    "TransportError",
]
