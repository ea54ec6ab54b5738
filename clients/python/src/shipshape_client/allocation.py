"""The canary's allocation file (``<target>.allocation.yaml``, JSON — which is YAML too): which
release trees trade which fraction of capital. shipshape replaces it atomically after the trees it
names are complete, so a read sees one whole generation or the next, never a mix."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from .client import parse_time


@dataclass(frozen=True)
class Share:
    """One release in the allocation."""

    role: str
    release_id: str
    tree: Path
    fraction: float


@dataclass(frozen=True)
class Allocation:
    """A generation of the allocation."""

    generation: int
    updated_at: datetime
    reason: str
    releases: List[Share]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def stable(self) -> Share:
        """The stable release's share."""
        return next(s for s in self.releases if s.role == "stable")

    @property
    def candidate(self) -> Optional[Share]:
        """The candidate's share, during a canary."""
        return next((s for s in self.releases if s.role == "candidate"), None)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "Allocation":
        releases = [
            Share(str(r["role"]), str(r["release_id"]), Path(r["tree"]), float(r["fraction"])) for r in data["releases"]
        ]
        total = sum(s.fraction for s in releases)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"the fractions sum to {total}, not 1")
        return Allocation(int(data["generation"]), parse_time(data["updated_at"]), str(data["reason"]), releases, data)


def read_allocation(path: Union[str, "os.PathLike[str]"]) -> Optional[Allocation]:
    """The allocation now (``None`` when there is no file: no canary was ever run here)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return Allocation.from_json(json.loads(text))


def watch_allocation(
    path: Union[str, "os.PathLike[str]"], interval: float = 0.5, timeout: Optional[float] = None
) -> Iterator[Allocation]:
    """Yield the allocation now, then each new generation as shipshape writes it (checked every
    ``interval`` seconds; an atomic replacement changes the file's inode). Ends after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: Optional[Tuple[int, int, int]] = None
    generation: Optional[int] = None
    while True:
        try:
            stat = os.stat(path)
            key: Optional[Tuple[int, int, int]] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        if key is not None and key != seen:
            seen = key
            allocation = read_allocation(path)
            if allocation is not None and allocation.generation != generation:
                generation = allocation.generation
                yield allocation
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
