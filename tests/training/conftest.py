"""Fixtures for the trainer's tests: analytic shards in the DESIGN.md §4 layout, a loopback HTTP server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import io
import os
import re
import subprocess
import sys
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


class _RangeHandler(_QuietHandler):
    """Also answers single `Range: bytes=A-B` requests with 206 Partial Content and keeps connections
    alive (HTTP/1.1), as object stores and most web servers do (Python's own handler ignores Range);
    counts them on the server."""

    protocol_version = "HTTP/1.1"

    def send_head(self):
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", (self.headers.get("Range") or "").strip())
        path = self.translate_path(self.path)
        if not m or not os.path.isfile(path):
            return super().send_head()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            a, b = int(m.group(1)), min(int(m.group(2)), size - 1)
            if a >= size or b < a:
                self.send_error(416)
                return None
            f.seek(a)
            body = f.read(b - a + 1)
        self.server.range_requests += 1
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@contextlib.contextmanager
def serve_directory(directory: Path, ranges: bool = False, server_out: list | None = None):
    """A real HTTP server on 127.0.0.1 (random port) serving `directory`, in a thread; yields the base URL.
    `ranges`: answer HTTP Range requests (206); the server object is appended to `server_out`."""
    handler = functools.partial(_RangeHandler if ranges else _QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.range_requests = 0
    if server_out is not None:
        server_out.append(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# Real Blender renders of procedural assets, small: 32 px, 6 orbit views, 4 times, 4 samples per pixel.
RENDER_FLAGS = ["--no-ray", "--preset", "debug", "--resolution", "32", "--frames", "4", "--views", "6", "--samples", "4",
                "--threads", "1"]


def _pipeline(*args: str) -> None:
    env = {**os.environ, "PIPELINE_LOG_LEVEL": "WARNING"}
    r = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def _render_procedural(root: Path, count: int, seed: int, shard_size: int) -> Path:
    """`pipeline curate --source procedural` then `pipeline render` of every shard: the real thing."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy 5.0.1) not installed: no real procedural renders")
    _pipeline("-q", "curate", "--source", "procedural", "--count", str(count), "--seed", str(seed),
              "--assets-out", str(root / "assets"), "--shard-size", str(shard_size), "--out", str(root / "m.parquet"))
    import pandas as pd

    shards = sorted(set(pd.read_parquet(root / "m.parquet")["shard"].tolist()))
    for n in shards:
        _pipeline("-q", "render", "--manifest", str(root / "m.parquet"), "--shard", str(n), "--out", str(root / "ds"),
                  *RENDER_FLAGS)
    return root / "ds"


@pytest.fixture(scope="session")
def procedural_one(tmp_path_factory) -> Path:
    """A dataset folder holding one rendered procedural clip (seed 11, asset 0 has one animation)."""
    return _render_procedural(tmp_path_factory.mktemp("proc_one"), 1, 11, 1)


@pytest.fixture(scope="session")
def procedural_many(tmp_path_factory) -> Path:
    """Two committed shards of rendered procedural clips (3 assets of seed 11, 5 clips)."""
    return _render_procedural(tmp_path_factory.mktemp("proc_many"), 3, 11, 3)
