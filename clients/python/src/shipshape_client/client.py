"""Reading shipshape: the active release (ETag-cached), one release, alerts, status, and the live
stream of release changes and alerts (Server-Sent Events)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from ._http import ShipshapeError, Transport


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the server writes it (``2025-10-13T09:00:00Z``, or with an offset)."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Artifact:
    """One file of a release: where it lands, what its bytes hash to, how big it is."""

    kind: str
    path: str
    sha256: str
    size: int
    version: Optional[str] = None

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "Artifact":
        return Artifact(
            kind=str(data["kind"]),
            path=str(data["path"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            version=data.get("version"),
        )


@dataclass(frozen=True)
class ActiveRelease:
    """The release running now, as ``GET /api/v1/active`` answers it."""

    release_id: str
    release_type: str
    sequence: int
    environment: str
    deployed_at: datetime
    deployer: str
    activated_by: str
    mode: str
    heightened_until: datetime
    manifest_sha256: str
    artifacts: List[Artifact]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "ActiveRelease":
        return ActiveRelease(
            release_id=str(data["release_id"]),
            release_type=str(data["release_type"]),
            sequence=int(data["sequence"]),
            environment=str(data["environment"]),
            deployed_at=parse_time(data["deployed_at"]),
            deployer=str(data["deployer"]),
            activated_by=str(data["activated_by"]),
            mode=str(data["mode"]),
            heightened_until=parse_time(data["heightened_until"]),
            manifest_sha256=str(data["manifest_sha256"]),
            artifacts=[Artifact.from_json(a) for a in data["artifacts"]],
            raw=data,
        )

    @property
    def heightened(self) -> bool:
        """Whether heightened monitoring is on now (the story's ``is_in_heightened_period``)."""
        return datetime.now(timezone.utc) < self.heightened_until

    @property
    def heightened_remaining_seconds(self) -> float:
        """Seconds of heightened monitoring left now (0 once it ended)."""
        return max(0.0, (self.heightened_until - datetime.now(timezone.utc)).total_seconds())

    @property
    def changed_by(self) -> Optional[str]:
        """Who made it active (``alice via dashboard``, ``shipshape-monitor`` for an automatic rollback)."""
        change = self.raw.get("change") or {}
        by = change.get("by")
        return str(by) if by is not None else None

    @property
    def change_reason(self) -> Optional[str]:
        """Why, when the change recorded a reason (a rollback's note)."""
        change = self.raw.get("change") or {}
        reason = change.get("reason")
        return str(reason) if reason is not None else None

    def artifact(self, path: str) -> Artifact:
        """The artifact at ``path`` (as the manifest names it); ``KeyError`` when there is none."""
        for artifact in self.artifacts:
            if artifact.path == path:
                return artifact
        raise KeyError(f"release {self.release_id} has no artifact {path}")


@dataclass(frozen=True)
class Release:
    """One release by id, from its manifest: ``GET /api/v1/releases/<id>``."""

    release_id: str
    release_type: str
    sequence: int
    environment: str
    created: datetime
    expires: datetime
    prepared_by: str
    manifest_sha256: str
    artifacts: List[Artifact]
    history: List[Dict[str, Any]]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "Release":
        return Release(
            release_id=str(data["release_id"]),
            release_type=str(data["release_type"]),
            sequence=int(data["sequence"]),
            environment=str(data["environment"]),
            created=parse_time(data["created"]),
            expires=parse_time(data["expires"]),
            prepared_by=str(data["prepared_by"]),
            manifest_sha256=str(data["manifest_sha256"]),
            artifacts=[Artifact.from_json(a) for a in data["artifacts"]],
            history=list(data["history"]),
            raw=data,
        )


@dataclass(frozen=True)
class Alert:
    """One alert episode (``GET /api/v1/alerts``)."""

    id: int
    release_id: str
    strategy: str
    metric: str
    state: str
    severity: str
    mode: str
    value: Optional[float]
    baseline: Optional[float]
    threshold: Optional[float]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "Alert":
        return Alert(
            id=int(data["id"]),
            release_id=str(data["release_id"]),
            strategy=str(data["strategy"]),
            metric=str(data["metric"]),
            state=str(data["state"]),
            severity=str(data["severity"]),
            mode=str(data["mode"]),
            value=data.get("value"),
            baseline=data.get("baseline"),
            threshold=data.get("threshold"),
            raw=data,
        )


@dataclass(frozen=True)
class StreamEvent:
    """One event of the live stream: ``kind`` is ``"release"`` (``release`` is the new active
    release, ``None`` when nothing is active), ``"alerts"`` (``alerts`` changed), ``"canary"``
    (``canary``: the canary's new log records — a start, a step, an abort, a promotion) or
    ``"connected"`` (the stream is (re)connected: changes from now on are announced)."""

    kind: str
    release: Optional[ActiveRelease] = None
    alerts: List[Alert] = field(default_factory=list)
    canary: List[Dict[str, Any]] = field(default_factory=list)


ALERT_STATES = ("pending", "firing", "resolved", "cleared", "superseded")


class _Unset:
    """No ``since`` given."""


_UNSET = _Unset()


class Client:
    """A shipshape server (``shipshape serve``): ``Client("http://127.0.0.1:8080", token)``.

    Reads need no token on loopback; pass the engine's token (``shipshape operator add engine
    --role engine``) anyway, as servers off loopback may ask for one. Every call has a timeout
    (``timeout`` seconds) and raises :class:`ShipshapeError` when the server refuses or cannot be
    reached. Thread-safe.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 10.0) -> None:
        self._http = Transport(url, token, timeout)
        self._lock = threading.Lock()
        self._active_cache: Dict[Optional[str], Tuple[str, Optional[ActiveRelease]]] = {}
        self.not_modified = 0
        """How many :meth:`active_release` calls the server answered ``304 Not Modified``."""

    @property
    def url(self) -> str:
        return self._http.base

    def active_release(self, env: Optional[str] = None) -> Optional[ActiveRelease]:
        """The release running now (``None`` when nothing was deployed). Cached with the server's
        ETag: asking again costs a ``304`` without a body until a deploy, a rollback or the end of
        heightened monitoring changes the answer. ``env`` checks that the server watches that
        environment (``ShipshapeError`` 404 otherwise)."""
        with self._lock:
            cached = self._active_cache.get(env)
        headers = {"If-None-Match": cached[0]} if cached else None
        status, response_headers, payload = self._http.request(
            "GET", "/api/v1/active", query={"env": env}, headers=headers
        )
        if status == 304 and cached is not None:
            with self._lock:
                self.not_modified += 1
            return cached[1]
        data = json.loads(payload)
        release = None if data is None else ActiveRelease.from_json(data)
        tag = response_headers.get("etag")
        if tag:
            with self._lock:
                self._active_cache[env] = (tag, release)
        return release

    def release(self, release_id: str) -> Release:
        """One release by id (404 ``ShipshapeError`` when this server has no manifest for it)."""
        quoted = urllib.parse.quote(release_id, safe="")
        return Release.from_json(self._http.json("GET", f"/api/v1/releases/{quoted}"))

    def alerts(self, state: Optional[str] = None, release: Optional[str] = None, limit: int = 100) -> List[Alert]:
        """Alert episodes, newest first; ``state`` one of ``pending``, ``firing``, ``resolved``,
        ``cleared``, ``superseded``."""
        if state is not None and state not in ALERT_STATES:
            raise ValueError(f"state must be one of {', '.join(ALERT_STATES)}, not {state!r}")
        rows = self._http.json("GET", "/api/v1/alerts", query={"state": state, "release": release, "limit": limit})
        return [Alert.from_json(row) for row in rows]

    def status(self) -> Dict[str, Any]:
        """``GET /api/v1/status`` as a dict (docs/api.md names its fields)."""
        result: Dict[str, Any] = self._http.json("GET", "/api/v1/status")
        return result

    def canary(self) -> Dict[str, Any]:
        """``GET /api/v1/canary``: the canary under way (``canary`` is ``None`` without one), both
        releases' fractions, each metric's comparison, the next decision, the allocation."""
        result: Dict[str, Any] = self._http.json("GET", "/api/v1/canary")
        return result

    def events(
        self,
        reconnect: bool = True,
        timeout: Optional[float] = None,
        since: Union[ActiveRelease, None, _Unset] = _UNSET,
    ) -> Iterator[StreamEvent]:
        """The live stream: yields a :class:`StreamEvent` for each release change and each batch of
        changed alerts or canary decisions, as they happen, and ``kind == "connected"`` each time
        the stream (re)connects — from then on nothing is missed. With ``reconnect`` (the default)
        a dropped connection or a restarting server is retried every two seconds, and a release
        that changed while disconnected is announced after the reconnect; without it, the iterator
        ends when the connection does. ``since``: the release the caller has loaded (``None``:
        nothing) — a change after it but before the stream connected is announced too, so an
        engine that loads, then follows, misses no deploy. ``timeout`` bounds the whole iteration."""
        baseline = None if isinstance(since, _Unset) else (since,)
        return self._events(reconnect, timeout, baseline)

    def _events(
        self, reconnect: bool, timeout: Optional[float], baseline: Optional[Tuple[Optional[ActiveRelease]]]
    ) -> Iterator[StreamEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        # What the caller last saw, once known: compared at each (re)connect.
        known: Optional[str] = None
        have_known = False
        if baseline is not None:
            known, have_known = _key_of(baseline[0]), True
        while True:
            try:
                for kind, data in self._sse(deadline):
                    if kind == "release":
                        parsed = json.loads(data)
                        release = None if parsed is None else ActiveRelease.from_json(parsed)
                        known, have_known = _key_of(release), True
                        yield StreamEvent("release", release=release)
                    elif kind == "alerts":
                        yield StreamEvent("alerts", alerts=[Alert.from_json(a) for a in json.loads(data)])
                    elif kind == "canary":
                        yield StreamEvent("canary", canary=list(json.loads(data)))
                    elif kind == "hello":
                        # (Re)connected: the server announces changes from now on; one made before
                        # (while disconnected, or since the caller's baseline) is announced here.
                        current = self.active_release()
                        if have_known and _key_of(current) != known:
                            known = _key_of(current)
                            yield StreamEvent("release", release=current)
                        known, have_known = _key_of(current), True
                        yield StreamEvent("connected")
            except (ShipshapeError, OSError, http.client.HTTPException):
                if not reconnect:
                    return
            if not reconnect:
                return
            pause = _bounded_sleep(2.0, deadline)
            if deadline is not None and pause <= 0:
                return
            time.sleep(pause)

    def wait_for_release(
        self,
        release_id: Optional[str] = None,
        *,
        other_than: Optional[str] = None,
        timeout: Optional[float] = None,
        predicate: Optional[Callable[[Optional[ActiveRelease]], bool]] = None,
    ) -> Optional[ActiveRelease]:
        """Block until the active release is ``release_id`` (or is not ``other_than``, or satisfies
        ``predicate``) and return it; ``TimeoutError`` after ``timeout`` seconds. Follows the live
        stream, so it returns within a second of the deploy or rollback."""

        def wanted(release: Optional[ActiveRelease]) -> bool:
            if predicate is not None:
                return predicate(release)
            current = None if release is None else release.release_id
            if release_id is not None:
                return current == release_id
            if other_than is not None:
                return current != other_than
            raise ValueError("wait_for_release needs release_id, other_than or predicate")

        now = self.active_release()
        if wanted(now):
            return now
        for event in self._events(True, timeout, (now,)):
            if event.kind == "release" and wanted(event.release):
                return event.release
        raise TimeoutError(f"the active release did not change as awaited within {timeout} s")

    def _sse(self, deadline: Optional[float]) -> Iterator[Tuple[str, str]]:
        """The raw stream: (event name, data) pairs."""
        parsed = urllib.parse.urlsplit(self._http.base)
        port = parsed.port
        read_timeout = 30.0  # the server sends a keep-alive comment every 15 s
        if deadline is not None:
            read_timeout = max(0.05, min(read_timeout, deadline - time.monotonic()))
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            connection = http.client.HTTPSConnection(parsed.hostname or "", port, timeout=read_timeout)
        else:
            connection = http.client.HTTPConnection(parsed.hostname or "", port, timeout=read_timeout)
        try:
            headers = self._http.headers({"Accept": "text/event-stream"})
            connection.request("GET", parsed.path.rstrip("/") + "/api/v1/alerts/stream", headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                raise ShipshapeError(response.read().decode("utf-8", "replace"), response.status)
            name = "message"
            data: List[str] = []
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    if connection.sock is not None:
                        connection.sock.settimeout(max(0.05, min(30.0, left)))
                try:
                    raw = response.readline()
                except socket.timeout:
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                    raise
                if not raw:
                    raise ShipshapeError("the event stream ended")
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield name, "\n".join(data)
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "event":
                        name = value
                    elif key == "data":
                        data.append(value)
        finally:
            connection.close()


def _key_of(release: Optional[ActiveRelease]) -> Optional[str]:
    """What distinguishes one activation from another (a redeploy of the same id is a change)."""
    return None if release is None else f"{release.release_id}@{release.deployed_at.isoformat()}"


def _bounded_sleep(seconds: float, deadline: Optional[float]) -> float:
    if deadline is None:
        return seconds
    return max(0.0, min(seconds, deadline - time.monotonic()))


__all__ = [
    "ActiveRelease",
    "Alert",
    "Artifact",
    "Client",
    "Release",
    "ShipshapeError",
    "StreamEvent",
]
