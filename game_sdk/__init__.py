"""emotion-sidecar game SDK: live player emotions and intent analyses from ``emotiond``.

Needs only pyzmq and msgpack (never torch, OpenCV or an LLM client). Start here::

    from game_sdk import Analysis, EmotionClient

    client = EmotionClient(name="my-game")
    with client.intent("open the chest"):   # the player's stated intent, begin ... end
        ...                                 # play the event (keep calling poll() each frame)
    for event in client.poll():             # once per frame; never blocks
        if isinstance(event, Analysis):
            print(event.text or event.reason)

The wire format is PROTOCOL.md; ``game_sdk.protocol`` is its implementation.
"""

from game_sdk.client import SDK_VERSION, EmotionClient
from game_sdk.errors import (
    ClientClosedError,
    IntentError,
    NotConnectedError,
    SidecarError,
    TransportError,
)
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
    "NotConnectedError",
    "ProtocolError",
    "SidecarError",
    "TransportError",
    "__version__",
]
