"""A real `shipshape serve` for the tests and the benchmark: the bundled example run through
`shipshape demo` once, a copy of it per test, the server on a loopback port, an engine token."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[3]


def binary() -> str:
    """`SHIPSHAPE_BIN`, else the workspace's debug build."""
    found = os.environ.get("SHIPSHAPE_BIN") or str(ROOT / "target" / "debug" / "shipshape")
    if not Path(found).is_file():
        raise RuntimeError(f"no shipshape binary at {found}: run `cargo build` or set SHIPSHAPE_BIN")
    return found


def run(workspace: Path, *args: str) -> str:
    """A shipshape command in the workspace; its stdout (a failure raises with stderr)."""
    done = subprocess.run(
        [binary(), "-C", str(workspace), *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"shipshape {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def make_demo(directory: Path) -> Path:
    """The example workspace after `shipshape demo`: two releases, one active, alerts, history."""
    subprocess.run(
        [binary(), "demo", "--dir", str(directory), "--no-serve", "-q"],
        check=True, capture_output=True, timeout=300,
    )
    return directory / "workspace"


def copy_workspace(demo: Path, into: Path) -> Path:
    shutil.copytree(demo.parent, into, symlinks=True)
    return into / "workspace"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`shipshape serve` on 127.0.0.1; `stop()` and `start()` again on the same port."""

    def __init__(self, workspace: Path, port: Optional[int] = None) -> None:
        self.workspace = workspace
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen[str]] = None
        self.engine_token = run(workspace, "operator", "add", f"engine-{self.port}", "--role", "engine").strip()
        self.log = workspace.parent / f"serve-{self.port}.log"

    def start(self) -> "Server":
        out = open(self.log, "a")
        self.process = subprocess.Popen(
            [binary(), "-C", str(self.workspace), "serve", "--bind", f"127.0.0.1:{self.port}", "--eval-interval", "1h"],
            stdout=subprocess.PIPE, stderr=out, text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        lines: List[str] = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.search(r"listening on http://", line):
                return self
        self.stop()
        raise RuntimeError(f"shipshape serve did not start: {''.join(lines)}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def events_in_order(self) -> List[str]:
        """The stored events' ids in the order the server stored them (its SQLite database)."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.workspace / 'data/monitoring/monitor.db'}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT id FROM events ORDER BY seq")]
        finally:
            db.close()
