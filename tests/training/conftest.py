"""Fixtures for the trainer's tests: analytic shards in the DESIGN.md §4 layout, a loopback HTTP server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from training import synthetic


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP spin-waiting under load made steps ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def analytic_shards(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three committed shards of two samples each (4 views x 3 frames, 32 px); every third sample static."""
    d = tmp_path_factory.mktemp("analytic")
    keys = synthetic.write_dataset(d, 6, 2, seed=1, static_every=3, views=4, frames=3, size=32)
    return d, keys


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path):
    """A real HTTP server on 127.0.0.1 (random port) serving `directory`, in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
