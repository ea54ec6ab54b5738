"""A trading engine's side of shipshape, complete (docs/python.md walks through it).

- At start: read the active release, check every artifact in the deploy target against the hash the
  signed manifest gives, load the configs.
- While trading: follow the live stream; on a deploy or rollback, verify and load the new release,
  then swap it in between two decisions (never half-loaded).
- For each closed trade: record the outcome with the release that made the decision; the sender
  never blocks, retries, and spools to disk while shipshape is unreachable.

    python3 engine.py --url http://127.0.0.1:8080 --token-file engine.token --target production \
        --spool /var/lib/engine/shipshape.spool --seconds 60
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional

from shipshape_client import ActiveRelease, Client, EventSender


class Loaded:
    """One release's files, verified."""

    def __init__(self, release: ActiveRelease, files: Dict[str, bytes]) -> None:
        self.release = release
        self.files = files


def load(release: ActiveRelease, target: Path) -> Loaded:
    """Read the release's artifacts from the deploy target; refuse any whose bytes differ from the
    manifest (a half-finished copy, a hand edit)."""
    files: Dict[str, bytes] = {}
    for artifact in release.artifacts:
        data = (target / artifact.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise RuntimeError(f"{artifact.path} does not match release {release.release_id}: not loading it")
        files[artifact.path] = data
    return Loaded(release, files)


class Engine:
    def __init__(self, url: str, token: str, target: Path, spool: Path) -> None:
        self.client = Client(url, token)
        self.sender = EventSender(url, token, spool=spool)
        self.target = target
        self.lock = threading.Lock()
        self.current: Optional[Loaded] = None
        active = self.client.active_release()
        if active is not None:
            self.current = load(active, target)
            print(f"loaded {active.release_id} ({len(active.artifacts)} artifacts verified, {active.mode} monitoring)", flush=True)
        threading.Thread(target=self.follow, name="shipshape-follow", daemon=True).start()

    def follow(self) -> None:
        """Reload on every deploy and rollback (the stream reconnects by itself)."""
        # `since`: a deploy between loading and connecting is announced too.
        with self.lock:
            loaded = self.current.release if self.current else None
        for event in self.client.events(since=loaded):
            if event.kind == "connected":
                print("following deploys and rollbacks", flush=True)
                continue
            if event.kind != "release" or event.release is None:
                continue
            try:
                fresh = load(event.release, self.target)
            except (OSError, RuntimeError) as error:
                print(f"not reloading: {error}", file=sys.stderr, flush=True)
                continue
            with self.lock:
                previous = self.current.release.release_id if self.current else None
                self.current = fresh
            action = event.release.activated_by
            print(f"reloaded {event.release.release_id} after a {action} (was {previous})", flush=True)

    def trade_once(self) -> None:
        with self.lock:
            loaded = self.current
        release_id = loaded.release.release_id if loaded else None
        signal = random.choice((1, -1, 0))
        outcome = random.choice((1, -1))
        ret = 0.001 * signal * outcome * random.random()
        self.sender.record(
            strategy="intraday", symbol=random.choice(("TCS", "INFY", "RELIANCE")), signal=signal,
            outcome=outcome, return_=ret, ts=datetime.now(timezone.utc), release_id=release_id,
        )

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.trade_once()
            time.sleep(0.01)
        delivered = self.sender.close(timeout=30)
        print(f"events: {self.sender.stats()} delivered={delivered}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True, help="the [deploy] target the engine reads")
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    engine = Engine(args.url, args.token_file.read_text().strip(), args.target, args.spool)
    engine.run(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
