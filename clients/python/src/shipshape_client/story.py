"""The story's ``MonitoringService`` (US-023) as a thin facade over :class:`Client`.

In shipshape the deploy registers the release (``shipshape deploy`` writes the registry, starts
heightened monitoring and its tighter windows and thresholds); the engine only reads it. So
``register_release`` is not the engine's job and raises, naming the command that does it, and
``get_active_release`` returns the story's ``ReleaseInfo`` read from the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .client import Client


@dataclass(frozen=True)
class ReleaseInfo:
    """The story's active release information."""

    release_id: str
    deployment_timestamp: datetime
    manifest_path: Path
    heightened_monitoring_active: bool
    heightened_monitoring_end: datetime

    def is_in_heightened_period(self) -> bool:
        """Whether the heightened monitoring window is still open (as of now)."""
        return datetime.now(timezone.utc) < self.heightened_monitoring_end


class MonitoringService:
    """``MonitoringService("http://127.0.0.1:8080", token)``: the story's calls, answered by shipshape."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 10.0) -> None:
        self.client = Client(url, token, timeout)

    def get_active_release(self) -> Optional[ReleaseInfo]:
        """The active release (``None`` before the first deploy); cached by ETag, so calling it on
        every trading decision costs a ``304``."""
        active = self.client.active_release()
        if active is None:
            return None
        return ReleaseInfo(
            release_id=active.release_id,
            deployment_timestamp=active.deployed_at,
            manifest_path=Path("release/manifests") / f"{active.release_id}.yaml",
            heightened_monitoring_active=active.heightened,
            heightened_monitoring_end=active.heightened_until,
        )

    def register_release(self, *args: Any, **kwargs: Any) -> None:
        """Not the engine's job: ``shipshape deploy`` registers a release (docs/python.md)."""
        raise NotImplementedError(
            "shipshape registers a release when it is deployed: run `shipshape deploy` "
            "(or `make deploy`); the engine reads it with get_active_release()"
        )
