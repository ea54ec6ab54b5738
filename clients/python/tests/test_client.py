"""The client against a real `shipshape serve` on loopback (started per test on a copy of the demo)."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List

import pytest

from shipshape_client import Client, EventSender, MonitoringService, ShipshapeError, StreamEvent
from shipshape_server import Server, free_port, run


def other_release(workspace: Path, active: str) -> str:
    ids = sorted(p.name[: -len(".yaml")] for p in (workspace / "release/manifests").glob("release_*.yaml")
                 if not p.name.endswith(".approvals.yaml"))
    return next(i for i in ids if i != active)


def test_active_release_names_the_bytes_on_disk_and_is_cached_by_etag(server: Server) -> None:
    client = Client(server.url, server.engine_token)
    active = client.active_release()
    assert active is not None
    status = json.loads(run(server.workspace, "status", "--json"))
    assert active.release_id == status["active_release"]["release_id"]
    assert active.mode in ("heightened", "normal")
    assert active.artifacts, "the example's release has artifacts"
    for artifact in active.artifacts:
        on_disk = server.workspace / "production" / artifact.path
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == artifact.sha256, artifact.path
        assert on_disk.stat().st_size == artifact.size
    # Asked again: a 304, the same object back.
    again = client.active_release()
    assert again is active
    assert client.not_modified == 1
    assert client.active_release(env=active.environment) is not None
    with pytest.raises(ShipshapeError) as refused:
        client.active_release(env="no-such-env")
    assert refused.value.status == 404 and "no-such-env" in refused.value.message


def test_release_by_id_alerts_and_status(server: Server) -> None:
    client = Client(server.url)
    active = client.active_release()
    assert active is not None
    release = client.release(active.release_id)
    assert release.release_id == active.release_id
    assert release.manifest_sha256 == active.manifest_sha256
    manifest = server.workspace / "release/manifests" / f"{active.release_id}.yaml"
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == release.manifest_sha256
    assert [a.sha256 for a in release.artifacts] == [a.sha256 for a in active.artifacts]
    assert any(h["action"] in ("deploy", "rollback") for h in release.history)
    with pytest.raises(ShipshapeError) as missing:
        client.release("release_20000101_000000")
    assert missing.value.status == 404

    every = client.alerts(limit=1000)
    cli = json.loads(run(server.workspace, "alerts", "--json"))
    assert sorted(a.id for a in every) == sorted(a["id"] for a in cli)
    firing = client.alerts(state="firing")
    assert all(a.state == "firing" for a in firing)
    with pytest.raises(ValueError):
        client.alerts(state="burning")
    assert client.status()["active_release"]["release_id"] == active.release_id


def test_events_round_trip_exactly_once_by_id(server: Server) -> None:
    before = set(server.events_in_order())
    now = datetime.now(timezone.utc)
    with EventSender(server.url, server.engine_token, source="rt") as sender:
        for i in range(500):
            assert sender.record(
                strategy="intraday", symbol="TCS", signal=1 if i % 2 else -1, outcome=1, return_=0.001 * (i % 7 - 3),
                ts=now - timedelta(seconds=500 - i), metrics={"slippage_bps": 1.5},
            )
        assert sender.flush(timeout=30)
        assert sender.stats()["sent"] == 500 and sender.duplicates == 0 and sender.dropped == 0
    stored = [i for i in server.events_in_order() if i not in before]
    assert stored == [f"rt-{n:010d}" for n in range(1, 501)], "every event once, in the order recorded"
    # The same ids again (a retry after a lost acknowledgement): stored once.
    with EventSender(server.url, server.engine_token, source="rt") as again:
        for i in range(500):
            again.record("intraday", "TCS", 1, 1, 0.001, ts=now - timedelta(seconds=500 - i))
        assert again.flush(timeout=30)
        assert again.duplicates == 500
    assert len(server.events_in_order()) == len(before) + 500


def test_a_bad_event_is_dropped_and_the_rest_delivered(server: Server) -> None:
    with EventSender(server.url, server.engine_token, source="bad") as sender:
        now = datetime.now(timezone.utc)
        for i in range(10):
            sender.record("intraday", "TCS", 2 if i == 4 else 1, 1, 0.001, ts=now)
        assert sender.flush(timeout=30)
        assert (sender.sent, sender.dropped) == (9, 1)
        assert sender.last_error is not None and "signal" in sender.last_error
    assert "bad-0000000005" not in server.events_in_order()
    with pytest.raises(ValueError):
        sender.record("intraday", "TCS", 1, 1, 0.001, ts=datetime(2025, 1, 1))  # naive: refused
    with pytest.raises(ValueError):
        sender.record("intraday", "TCS", 1, 1, float("nan"))


def test_a_wrong_token_spools_and_nothing_is_lost(workspace: Path, tmp_path: Path) -> None:
    server = Server(workspace).start()
    try:
        spool = tmp_path / "spool.jsonl"
        sender = EventSender(server.url, "ss1.nobody.0000000000000000000000000000", spool=spool, max_backoff=0.2)
        sender.record("intraday", "TCS", 1, 1, 0.001)
        assert not sender.flush(timeout=2)
        assert sender.spooled == 1 and "401" in (sender.last_error or "")
        with pytest.raises(RuntimeError, match="in use by another EventSender"):
            EventSender(server.url, server.engine_token, spool=spool)
        sender.close(timeout=0.5)
        fixed = EventSender(server.url, server.engine_token, spool=spool)
        assert fixed.flush(timeout=30) and fixed.sent == 1
        fixed.close()
    finally:
        server.stop()


def test_server_down_spooled_then_delivered_exactly_once_in_order(workspace: Path, tmp_path: Path) -> None:
    port = free_port()
    server = Server(workspace, port)  # not started: the engine trades while shipshape is down
    before = len(server.events_in_order())
    spool = tmp_path / "engine" / "shipshape.spool"
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    first = EventSender(server.url, server.engine_token, spool=spool, source="a", batch_size=300, max_backoff=0.3)
    for i in range(1000):
        first.record("intraday", "INFY", 1, -1, -0.002, ts=now + timedelta(milliseconds=i))
    assert not first.flush(timeout=1.5)
    assert not first.close(timeout=0.5)
    assert first.spooled == 1000 and first.sent == 0 and first.dropped == 0
    assert sum(1 for _ in spool.open()) == 1000, "all of it on disk"
    # The engine restarts, still without the server, and records more.
    second = EventSender(server.url, server.engine_token, spool=spool, source="b", batch_size=300, max_backoff=0.3)
    for i in range(1000):
        second.record("swing", "INFY", -1, -1, 0.003, ts=now + timedelta(seconds=2, milliseconds=i))
    assert not second.flush(timeout=1.0)
    server.start()
    try:
        assert second.flush(timeout=60), second.stats()
        assert second.dropped == 0
        stored = server.events_in_order()[before:]
        expected = [f"a-{n:010d}" for n in range(1, 1001)] + [f"b-{n:010d}" for n in range(1, 1001)]
        assert stored == expected, "delivered once each, oldest first"
        assert spool.stat().st_size == 0, "the spool is emptied once delivered"
        second.close()
    finally:
        server.stop()


def test_stream_announces_deploy_and_rollback(server: Server) -> None:
    client = Client(server.url, server.engine_token)
    start = client.active_release()
    assert start is not None
    target = other_release(server.workspace, start.release_id)
    seen: "queue.Queue[StreamEvent]" = queue.Queue()
    connected = threading.Event()

    def follow() -> None:
        for event in client.events(timeout=60, since=start):
            if event.kind == "connected":
                connected.set()
            if event.kind == "release":
                seen.put(event)
                if event.release is not None and event.release.release_id == start.release_id:
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert connected.wait(20), "the stream connects"
    run(server.workspace, "deploy", target, "--yes", "-q")
    deployed = seen.get(timeout=20)
    assert deployed.release is not None and deployed.release.release_id == target
    assert deployed.release.deployer
    run(server.workspace, "rollback", "--yes", "-q")
    back = seen.get(timeout=20)
    assert back.release is not None and back.release.release_id == start.release_id
    assert back.release.activated_by == "rollback" and back.release.changed_by
    reader.join(timeout=10)
    # The ETag cache sees the change too.
    assert client.active_release() is not None


def test_wait_for_release_returns_on_the_change(server: Server) -> None:
    client = Client(server.url)
    start = client.active_release()
    assert start is not None
    target = other_release(server.workspace, start.release_id)
    result: List[object] = []
    waiter = threading.Thread(target=lambda: result.append(client.wait_for_release(other_than=start.release_id, timeout=60)))
    waiter.start()
    run(server.workspace, "deploy", target, "--yes", "-q")
    waiter.join(timeout=30)
    assert result and getattr(result[0], "release_id") == target
    with pytest.raises(TimeoutError):
        client.wait_for_release(release_id="release_20000101_000000", timeout=1.5)


def test_the_story_facade(server: Server) -> None:
    service = MonitoringService(server.url, server.engine_token)
    info = service.get_active_release()
    assert info is not None
    assert (server.workspace / info.manifest_path).is_file()
    assert info.heightened_monitoring_active == info.is_in_heightened_period()
    with pytest.raises(NotImplementedError, match="shipshape deploy"):
        service.register_release("release_x", Path("m.yaml"))


def test_record_frame_from_pandas(server: Server) -> None:
    pd = pytest.importorskip("pandas")
    now = datetime.now(timezone.utc)
    frame = pd.DataFrame(
        {
            "ts": [now - timedelta(seconds=s) for s in (3, 2, 1)],
            "strategy": ["intraday"] * 3,
            "symbol": ["TCS", "INFY", "RELIANCE"],
            "signal": ["BUY", "SELL", "FLAT"],
            "outcome": [1.0, -1.0, 1.0],
            "return": [0.01, 0.002, 0.0],
            "id": ["f-1", "f-2", "f-3"],
            "metrics.slippage_bps": [1.0, float("nan"), 2.0],
        }
    )
    with EventSender(server.url, server.engine_token) as sender:
        assert sender.record_frame(frame) == 3
        assert sender.flush(timeout=30) and sender.sent == 3 and sender.dropped == 0
    assert server.events_in_order()[-3:] == ["f-1", "f-2", "f-3"]


def test_bad_urls_are_refused_at_once() -> None:
    with pytest.raises(ValueError):
        Client("ftp://example.com")
    with pytest.raises(ShipshapeError) as unreachable:
        Client(f"http://127.0.0.1:{free_port()}", timeout=2).status()
    assert unreachable.value.status is None and unreachable.value.retryable


def test_the_engine_example_reloads_on_deploy_and_rollback(server: Server, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    example = Path(__file__).resolve().parents[1] / "examples" / "engine.py"
    token = tmp_path / "engine.token"
    token.write_text(server.engine_token + "\n")
    start = Client(server.url).active_release()
    assert start is not None
    target = other_release(server.workspace, start.release_id)
    engine = subprocess.Popen(
        [sys.executable, str(example), "--url", server.url, "--token-file", str(token),
         "--target", str(server.workspace / "production"), "--spool", str(tmp_path / "spool"), "--seconds", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert engine.stdout is not None
    lines: List[str] = []

    def wait_for(prefix: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = engine.stdout.readline().rstrip("\n") if engine.stdout else ""
            if not line and engine.poll() is not None:
                break
            lines.append(line)
            if line.startswith(prefix):
                return
        raise AssertionError(f"no `{prefix}` from the engine: {lines}")

    wait_for("following deploys and rollbacks")
    run(server.workspace, "deploy", target, "--yes", "-q")
    wait_for(f"reloaded {target}")
    run(server.workspace, "rollback", "--yes", "-q")
    wait_for(f"reloaded {start.release_id}")
    out, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    lines += out.splitlines()
    assert lines[0].startswith(f"loaded {start.release_id} (")
    assert f"reloaded {target} after a deploy (was {start.release_id})" in lines
    assert f"reloaded {start.release_id} after a rollback (was {target})" in lines
    assert "delivered=True" in lines[-1] and "'dropped': 0" in lines[-1]
    # Events carry the release that made each decision: both releases traded.
    import sqlite3

    db = sqlite3.connect(f"file:{server.workspace / 'data/monitoring/monitor.db'}?mode=ro", uri=True)
    releases = {row[0] for row in db.execute("SELECT DISTINCT release_id FROM events WHERE id LIKE 'py-%'")}
    db.close()
    assert {start.release_id, target} <= releases


def test_a_burst_from_four_threads_is_delivered_once_each(server: Server) -> None:
    """The benchmark's load (bench/burst.py measures its latency); here only what must hold."""
    before = len(server.events_in_order())
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    sender = EventSender(server.url, server.engine_token, source="burst")
    threads = [
        threading.Thread(target=lambda: [sender.record("intraday", "TCS", 1, 1, 0.001, ts=now) for _ in range(25_000)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sender.flush(timeout=120), sender.stats()
    assert (sender.sent, sender.dropped, sender.duplicates) == (100_000, 0, 0)
    sender.close()
    stored = server.events_in_order()[before:]
    assert len(stored) == 100_000 and len(set(stored)) == 100_000


def test_the_canary_allocation_is_read_watched_and_streamed(server: Server) -> None:
    from shipshape_client import read_allocation, watch_allocation

    client = Client(server.url, server.engine_token)
    start = client.active_release()
    assert start is not None
    candidate = other_release(server.workspace, start.release_id)
    path = server.workspace / "production.allocation.yaml"
    assert read_allocation(path) is None
    assert client.canary()["canary"] is None
    stream: "queue.Queue[StreamEvent]" = queue.Queue()
    connected = threading.Event()

    def follow() -> None:
        for event in client.events(timeout=30):
            if event.kind == "connected":
                connected.set()
            if event.kind == "canary":
                stream.put(event)
                if any(r["action"] == "abort" for r in event.canary):
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert connected.wait(20), "the stream connects"
    run(server.workspace, "canary", "start", candidate, "--steps", "10,50,100", "--yes")
    allocation = read_allocation(path)
    assert allocation is not None and allocation.generation == 1
    assert (allocation.stable.release_id, allocation.stable.fraction) == (start.release_id, 0.9)
    assert allocation.candidate is not None and allocation.candidate.fraction == 0.1
    # The candidate's tree holds exactly its release's bytes.
    release = client.release(candidate)
    for artifact in release.artifacts:
        data = (allocation.candidate.tree / artifact.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
    assert client.canary()["canary"]["candidate"] == candidate
    watcher = watch_allocation(path, interval=0.1, timeout=20)
    assert next(watcher).generation == 1
    run(server.workspace, "canary", "promote", "--note", "by hand")
    stepped = next(watcher)
    assert stepped.generation == 2 and stepped.candidate is not None and stepped.candidate.fraction == 0.5
    run(server.workspace, "canary", "abort", "--note", "drill")
    ended = next(watcher)
    assert ended.generation == 3 and ended.candidate is None and ended.stable.fraction == 1.0
    actions: List[str] = []
    while len(actions) < 3:
        actions += [r["action"] for r in stream.get(timeout=20).canary]
    assert actions == ["start", "step", "abort"]
    # Nothing of the canary is audited as a source.
    run(server.workspace, "audit")
    bundles = sorted((server.workspace / "release").glob("audit_*/bundle.yaml"))
    assert ".canary" not in bundles[-1].read_text() and "allocation.yaml" not in bundles[-1].read_text()
