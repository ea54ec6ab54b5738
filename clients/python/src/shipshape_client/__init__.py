"""shipshape's Python client: the active release and its artifact hashes, alerts, the live stream
of deploys and rollbacks, and :class:`EventSender`, which sends outcome events without blocking.

See docs/python.md for a complete engine example.
"""

from ._http import ShipshapeError
from .allocation import Allocation, Share, read_allocation, watch_allocation
from .client import ActiveRelease, Alert, Artifact, Client, Release, StreamEvent
from .sender import EventSender
from .story import MonitoringService, ReleaseInfo

__all__ = [
    "ActiveRelease",
    "Allocation",
    "Alert",
    "Artifact",
    "Client",
    "EventSender",
    "MonitoringService",
    "Release",
    "ReleaseInfo",
    "Share",
    "ShipshapeError",
    "StreamEvent",
    "read_allocation",
    "watch_allocation",
]
__version__ = "0.1.0"
