"""Outcome events to ``POST /api/v1/events`` without ever blocking the trading loop.

``record`` puts an event in a bounded in-memory queue and returns (microseconds); a background thread
sends batches, retries with backoff, and spools to a local file while the server cannot be reached,
replaying the spool in order when it returns. Every event gets an id when recorded, so a batch sent
twice (a timeout after the server stored it, a replay after a crash) is stored once.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Deque, Dict, List, Mapping, Optional, Union

from ._http import ShipshapeError, Transport

log = logging.getLogger("shipshape_client")

Event = Dict[str, Any]
TimeLike = Union[datetime, str, None]


class EventSender:
    """Send outcome events in the background.

    ``EventSender(url, token, spool="/var/lib/engine/shipshape.spool")``; then ``record(...)`` for
    each resolved trade, ``flush()`` to wait for delivery, ``close()`` at exit.

    Failures, and what happens (docs/python.md has the table):

    - the server is unreachable, answers 5xx/429/503, or refuses the token (401/403): the batch is
      tried ``retries`` more times with backoff, then written to the spool file (fsync'd) and retried
      from there, oldest first, every ``max_backoff`` seconds at most; events recorded meanwhile go
      behind it in the spool, so the order is kept. Without a spool file the events wait in memory.
    - the server refuses one event (400 naming its line: a bad field, a time in the future): that
      event is dropped (``dropped``, ``last_error``) and the rest of the batch is sent again.
    - the batch is too large (413): it is split in halves.
    - the queue holds ``max_queue`` events (the server has been slow or down without a spool) or the
      spool holds ``max_spool_bytes``: new events are dropped and counted; ``record`` returns False.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        spool: Union[str, "os.PathLike[str]", None] = None,
        batch_size: int = 2000,
        flush_interval: float = 0.25,
        max_queue: int = 200_000,
        max_spool_bytes: int = 1 << 30,
        retries: int = 2,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        source: Optional[str] = None,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        self._http = Transport(url, token, timeout)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_spool_bytes = max_spool_bytes
        self.retries = retries
        self.max_backoff = max_backoff
        # Ids: a random prefix per sender, then a counter: unique across processes and restarts.
        self._prefix = source or f"py-{secrets.token_hex(6)}"
        self._ids = itertools.count(1)
        self._queue: Deque[Event] = deque()
        self._spool = _Spool(Path(spool), max_spool_bytes) if spool is not None else None
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight = 0
        self._flush_waiters = 0
        self._down = False
        self.sent = 0
        """Events the server acknowledged (stored now or earlier)."""
        self.duplicates = 0
        """Of ``sent``, events the server already had (a retry or a replay of a delivered batch)."""
        self.spooled = 0
        """Events written to the spool file (they are also counted in ``sent`` once delivered)."""
        self.dropped = 0
        """Events lost: the queue or the spool full, or the server refused the event itself."""
        self.last_error: Optional[str] = None
        """The latest failure, for logs and health checks."""
        self._thread = threading.Thread(target=self._run, name="shipshape-event-sender", daemon=True)
        self._thread.start()

    # -- the caller's side: never blocks ------------------------------------------------------

    def record(
        self,
        strategy: str,
        symbol: str,
        signal: Union[int, str],
        outcome: Union[int, str],
        return_: float,
        ts: TimeLike = None,
        metrics: Optional[Mapping[str, float]] = None,
        *,
        release_id: Optional[str] = None,
        id: Optional[str] = None,
    ) -> bool:
        """Queue one event; returns False when it was dropped (queue full, sender closed).

        ``ts`` is when the outcome became known: an aware ``datetime`` or an RFC 3339 string (now
        when omitted); a naive datetime raises ``ValueError``, as does a non-finite return. ``id``
        defaults to a fresh unique id; pass your own (a trade id) to make re-sending safe across
        engine restarts too."""
        if isinstance(ts, datetime):
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise ValueError("ts must be timezone-aware (e.g. datetime.now(timezone.utc))")
            stamp = ts.isoformat()
        elif ts is None:
            stamp = datetime.now(timezone.utc).isoformat()
        else:
            stamp = str(ts)
        value = float(return_)
        if not math.isfinite(value):
            raise ValueError(f"return_ must be a finite number, not {return_!r}")
        event: Event = {
            "id": id if id is not None else f"{self._prefix}-{next(self._ids):010d}",
            "ts": stamp,
            "strategy": strategy,
            "symbol": symbol,
            "signal": signal,
            "outcome": outcome,
            "return": value,
        }
        if metrics:
            event["metrics"] = dict(metrics)
        if release_id is not None:
            event["release_id"] = release_id
        if self._stop.is_set() or len(self._queue) >= self.max_queue:
            with self._lock:
                self.dropped += 1
            return False
        self._queue.append(event)
        if len(self._queue) % self.batch_size == 0:
            self._wake.set()
        return True

    def record_frame(self, frame: Any) -> int:
        """Queue every row of a pandas DataFrame with the columns of docs/events.md (``return``
        or ``return_``; ``metrics.<name>`` columns become metrics; ``id`` and ``release_id``
        optional). Returns how many were queued."""
        queued = 0
        for row in frame.to_dict("records"):
            metrics = {k[len("metrics.") :]: float(v) for k, v in row.items() if str(k).startswith("metrics.") and v == v}
            ts = row.get("ts")
            if hasattr(ts, "isoformat"):
                ts = ts.isoformat()
            ok = self.record(
                strategy=str(row["strategy"]),
                symbol=str(row["symbol"]),
                signal=row["signal"],
                outcome=row["outcome"],
                return_=row["return"] if "return" in row else row["return_"],
                ts=ts,
                metrics=metrics or None,
                release_id=_text_or_none(row.get("release_id")),
                id=_text_or_none(row.get("id")),
            )
            queued += ok
        return queued

    def stats(self) -> Dict[str, Any]:
        """The counters, the queue's length and whether the server is currently unreachable."""
        with self._lock:
            return {
                "sent": self.sent,
                "duplicates": self.duplicates,
                "spooled": self.spooled,
                "dropped": self.dropped,
                "queued": len(self._queue),
                "spool_pending": self._spool.pending_bytes() if self._spool else 0,
                "server_down": self._down,
                "last_error": self.last_error,
            }

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything recorded so far is delivered (the spool too); True when it was,
        False after ``timeout`` seconds with events still waiting (in memory or the spool)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flush_waiters += 1
        try:
            while True:
                self._wake.set()
                with self._lock:
                    if self._delivered_all():
                        return True
                    if not self._thread.is_alive():
                        return False
                    wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                    if wait <= 0:
                        return False
                    self._progress.wait(wait)
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for up to ``timeout`` seconds, then stop the thread. Events not delivered by then
        stay in the spool file (a new sender with the same spool sends them) or, without one, are
        counted as dropped. Returns whether everything was delivered."""
        delivered = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(1.0, timeout))
        # Still sending (a slow server)? It spools what it cannot send as it stops; else, here.
        if not delivered and not self._thread.is_alive():
            left: List[Event] = []
            while self._queue:
                left.append(self._queue.popleft())
            if left and self._spool is not None:
                written = self._spool.append(left)
                with self._lock:
                    self.spooled += written
                    self.dropped += len(left) - written
            elif left:
                with self._lock:
                    self.dropped += len(left)
        if self._spool is not None and not self._thread.is_alive():
            self._spool.release()
        return delivered

    def __enter__(self) -> "EventSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the background thread -----------------------------------------------------------------

    def _delivered_all(self) -> bool:
        spool_empty = self._spool is None or self._spool.pending_bytes() == 0
        return not self._queue and self._in_flight == 0 and spool_empty

    def _run(self) -> None:
        backoff = 0.05
        while True:
            stopping = self._stop.is_set()
            if self._spool is not None and self._spool.pending_bytes() > 0:
                if self._replay():
                    backoff = 0.05
                else:
                    # Still down: keep the order by putting what arrived meanwhile behind the spool.
                    self._spill()
                    if stopping:
                        return
                    backoff = min(self.max_backoff, max(0.5, backoff * 2))
                    self._pause(backoff)
                    continue
            batch = self._take()
            if not batch:
                if stopping:
                    return
                self._notify()
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            if self._deliver(batch):
                backoff = 0.05
                continue
            # The server cannot take it now.
            if self._spool is not None:
                self._to_spool(batch)
                self._spill()
            else:
                with self._lock:
                    self._queue.extendleft(reversed(batch))
                    self._in_flight = 0
            if stopping:
                return
            backoff = min(self.max_backoff, max(0.5, backoff * 2))
            self._pause(backoff)

    def _pause(self, seconds: float) -> None:
        """Wait before the next attempt; a flush or close asks for one sooner."""
        self._notify()
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, 0.1))
            if self._wake.is_set():
                self._wake.clear()
                with self._lock:
                    if self._flush_waiters:
                        return

    def _notify(self) -> None:
        with self._lock:
            self._progress.notify_all()

    def _take(self) -> List[Event]:
        with self._lock:
            batch: List[Event] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            self._in_flight = len(batch)
            return batch

    def _deliver(self, batch: List[Event]) -> bool:
        """Send with retries; True when every event was acknowledged or dropped as refused."""
        attempt = 0
        while True:
            try:
                self._post(batch)
                self._set_down(False)
                return True
            except ShipshapeError as error:
                self.last_error = str(error)
                if error.status == 413 and len(batch) > 1:
                    half = len(batch) // 2
                    return self._deliver(batch[:half]) and self._deliver(batch[half:])
                if error.status == 400 and error.line is not None and 1 <= error.line <= len(batch):
                    refused = batch.pop(error.line - 1)
                    log.warning("shipshape refused event %s and it was dropped: %s", refused.get("id"), error.message)
                    with self._lock:
                        self.dropped += 1
                        self._in_flight = len(batch)
                    if not batch:
                        return True
                    continue
                if error.status is not None and error.status < 500 and error.status not in (401, 403, 408, 429):
                    log.error("shipshape refused a batch of %d events, dropped: %s", len(batch), error)
                    with self._lock:
                        self.dropped += len(batch)
                        self._in_flight = 0
                    return True
                attempt += 1
                if attempt > self.retries or self._stop.is_set():
                    self._set_down(True)
                    return False
                time.sleep(min(self.max_backoff, 0.05 * (2**attempt)))

    def _post(self, batch: List[Event]) -> None:
        body = "\n".join(json.dumps(e, separators=(",", ":")) for e in batch).encode()
        report = self._http.json(
            "POST", "/api/v1/events", body=body, headers={"Content-Type": "application/x-ndjson"}
        )
        accepted = int(report.get("accepted", 0)) if isinstance(report, dict) else 0
        duplicates = int(report.get("duplicates", 0)) if isinstance(report, dict) else 0
        with self._lock:
            self.sent += len(batch)
            self.duplicates += duplicates
            self._in_flight = 0
            if accepted + duplicates < len(batch):
                log.debug("shipshape stored %d of %d events", accepted + duplicates, len(batch))
            self._progress.notify_all()

    def _set_down(self, down: bool) -> None:
        if down != self._down:
            if down:
                log.warning("shipshape at %s cannot take events (%s): spooling", self._http.base, self.last_error)
            else:
                log.warning("shipshape at %s takes events again", self._http.base)
        self._down = down

    def _to_spool(self, batch: List[Event]) -> None:
        assert self._spool is not None
        written = self._spool.append(batch)
        with self._lock:
            self.spooled += written
            self.dropped += len(batch) - written
            self._in_flight = 0

    def _spill(self) -> None:
        """Move everything queued in memory to the spool, in order."""
        while True:
            batch = self._take()
            if not batch:
                return
            self._to_spool(batch)

    def _replay(self) -> bool:
        """Send the spool, oldest first; True once it is empty."""
        assert self._spool is not None
        while True:
            batch = self._spool.peek(self.batch_size)
            if not batch:
                self._spool.clear()
                self._notify()
                return True
            events, end = batch
            with self._lock:
                self._in_flight = len(events)
            if not self._deliver(events):
                with self._lock:
                    self._in_flight = 0
                return False
            if end >= self._spool.size:
                self._spool.clear()  # all delivered: emptied before anyone is told so
            else:
                self._spool.consumed(end)
            self._notify()


class _Spool:
    """A JSON-lines file of undelivered events and, beside it, how far it has been delivered
    (``<spool>.offset``). Appends are fsync'd; a replay resumes at the offset (a batch delivered
    just before a crash is sent again, and the server drops it by id)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.offset_path = path.with_name(path.name + ".offset")
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        # One writer per spool: a second sender on the same file is refused at once.
        self._lock = open(path.with_name(path.name + ".lock"), "a+")
        try:
            import fcntl

            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not a POSIX system: no lock, one writer by convention
            pass
        except OSError:
            self._lock.close()
            raise RuntimeError(f"the spool {path} is in use by another EventSender (one writer per spool file)") from None
        self.offset = 0
        try:
            self.offset = int(self.offset_path.read_text().strip() or 0)
        except (OSError, ValueError):
            self.offset = 0
        self.size = path.stat().st_size if path.exists() else 0
        if self.offset > self.size:
            self.offset = 0

    def pending_bytes(self) -> int:
        return self.size - self.offset

    def release(self) -> None:
        """Let another sender use the spool (the lock goes with the file's closing)."""
        self._lock.close()

    def append(self, events: List[Event]) -> int:
        room = self.max_bytes - self.size
        lines = []
        used = 0
        for event in events:
            line = json.dumps(event, separators=(",", ":")) + "\n"
            if used + len(line) > room:
                break
            lines.append(line)
            used += len(line)
        if not lines:
            return 0
        with open(self.path, "a", encoding="utf-8") as spool:
            spool.write("".join(lines))
            spool.flush()
            os.fsync(spool.fileno())
        self.size += used
        return len(lines)

    def peek(self, count: int) -> Optional[tuple[List[Event], int]]:
        """Up to ``count`` events from the offset, and the offset after them."""
        if self.pending_bytes() <= 0:
            return None
        events: List[Event] = []
        with open(self.path, "rb") as spool:
            spool.seek(self.offset)
            position = self.offset
            while len(events) < count:
                raw = spool.readline()
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    # A line cut by a crash while it was appended: never acknowledged, skipped.
                    position += len(raw)
                    break
                position += len(raw)
                try:
                    events.append(json.loads(raw))
                except ValueError:
                    continue
        if not events:
            self.consumed(position)
            return None
        return events, position

    def consumed(self, offset: int) -> None:
        self.offset = offset
        temporary = self.offset_path.with_name(self.offset_path.name + ".tmp")
        temporary.write_text(str(offset))
        os.replace(temporary, self.offset_path)

    def clear(self) -> None:
        """Everything delivered: empty the file (then forget the offset; a crash in between leaves
        an offset past the end, read as 0)."""
        if self.size:
            with open(self.path, "w"):
                pass
            self.size = 0
            self.offset = 0
            try:
                self.offset_path.unlink()
            except FileNotFoundError:
                pass


def _text_or_none(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return text or None
