"""A real HTTP file server on loopback for tests and benchmarks, with single `Range: bytes=A-B` requests
answered (206) when asked for. Plain stdlib: no pytest, so benchmarks/ import it too."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import re
import threading
from pathlib import Path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class RangeHandler(QuietHandler):
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
    handler = functools.partial(RangeHandler if ranges else QuietHandler, directory=str(directory))
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
