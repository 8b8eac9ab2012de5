"""Counting the requests an S3-compatible server answers, at the server: a WSGI layer in front of moto.

Used by the storage tests (tests/storage/conftest.py wraps the loopback moto server with it) and by
benchmarks/moto_counting.py. Requests are counted by a coarse kind: `GET object`, `PUT object`, `HEAD
object`, `DELETE object`, `LIST`, `<METHOD> bucket`. `GET /_counts` and `POST /_counts/reset` are the
counter's own (never passed on).
"""

from __future__ import annotations

import collections
import json
import threading
from urllib.parse import parse_qs


class Counting:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def kind(self, environ) -> str:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/").strip("/")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "/" not in path:  # the bucket itself: listings, bucket checks
            return "LIST" if method == "GET" and ("list-type" in query or "prefix" in query or not query) else f"{method} bucket"
        return f"{method} object"

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_counts":
            with self.lock:
                body = json.dumps({"total": sum(self.counts.values()), "by_kind": dict(self.counts)}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/_counts/reset":
            with self.lock:
                self.counts.clear()
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        with self.lock:
            self.counts[self.kind(environ)] += 1
        return self.app(environ, start_response)

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
