from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from shipshape_server import Server, copy_workspace, make_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo") / "run")


@pytest.fixture
def workspace(demo: Path, tmp_path: Path) -> Path:
    return copy_workspace(demo, tmp_path / "copy")


@pytest.fixture
def server(workspace: Path) -> Iterator[Server]:
    running = Server(workspace).start()
    try:
        yield running
    finally:
        running.stop()
