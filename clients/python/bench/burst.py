"""The EventSender burst benchmark (docs/performance.md): 100,000 `record` calls from 4 threads
against a real `shipshape serve` on loopback, each call timed; beside it, the same calls'
dictionary put on the standard library's `queue.Queue` (the cheapest thread-safe hand-off there is).

    PYTHONPATH=clients/python/src:clients/python/tests python3 clients/python/bench/burst.py
"""

from __future__ import annotations

import queue
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, List

from shipshape_client import EventSender
from shipshape_server import Server, make_demo

THREADS = 4
PER_THREAD = 25_000


def burst(call: Callable[[int], object]) -> List[int]:
    """Each thread's calls, timed one by one (nanoseconds)."""
    timings: List[List[int]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def worker(slot: int) -> None:
        mine = timings[slot]
        start.wait()
        clock = time.perf_counter_ns
        for i in range(PER_THREAD):
            t0 = clock()
            call(i)
            mine.append(clock() - t0)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(ns for per in timings for ns in per)


def pct(sorted_ns: List[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = make_demo(Path(tmp) / "demo")
        server = Server(workspace).start()
        try:
            ts = datetime.now(timezone.utc)
            sender = EventSender(server.url, server.engine_token, spool=Path(tmp) / "spool.jsonl")
            t0 = time.perf_counter()
            ours = burst(lambda i: sender.record("intraday", "TCS", 1, 1 if i % 3 else -1, 0.001, ts=ts))
            recorded = time.perf_counter() - t0
            delivered = sender.flush(timeout=300)
            total = time.perf_counter() - t0
            stats = sender.stats()
            sender.close()
            plain: "queue.Queue[dict[str, object]]" = queue.Queue()
            reference = burst(
                lambda i: plain.put({"ts": ts.isoformat(), "strategy": "intraday", "symbol": "TCS", "signal": 1,
                                     "outcome": 1 if i % 3 else -1, "return": 0.001})
            )
        finally:
            server.stop()
    n = THREADS * PER_THREAD
    print(f"{n} record calls from {THREADS} threads, delivered={delivered} sent={stats['sent']} "
          f"dropped={stats['dropped']} spooled={stats['spooled']}")
    print(f"record():     p50 {pct(ours, 0.5):7.1f} us  p99 {pct(ours, 0.99):7.1f} us  "
          f"p99.9 {pct(ours, 0.999):8.1f} us  max {ours[-1] / 1000:8.1f} us")
    print(f"Queue.put():  p50 {pct(reference, 0.5):7.1f} us  p99 {pct(reference, 0.99):7.1f} us  "
          f"p99.9 {pct(reference, 0.999):8.1f} us  max {reference[-1] / 1000:8.1f} us")
    print(f"ratio p99 record/Queue.put: {pct(ours, 0.99) / pct(reference, 0.99):.2f}x")
    print(f"recording took {recorded:.2f} s; all {n} delivered after {total:.2f} s "
          f"({n / total:,.0f} events/s end to end)")
    return 0 if delivered and stats["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
