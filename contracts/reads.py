"""Reading one shard file wherever it is (a path, an `http(s)://` URL, an object-store URL): whole-file
streaming (`open_stream`), ranged reads (`read_range`: seek on a local file, an HTTP Range request, an S3
ranged GET), whole reads, sizes and existence; byte and request counters (`io_counts`) for the
ranged-read benchmark and tests. The stores themselves are contracts/storage.py."""

from __future__ import annotations

import collections
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from contracts.storage import (HTTP_TIMEOUT_S, FsspecStore, RangeNotSupported, StorageError, filesystem, is_http,
                               is_url, parent_and_name, split_url, translate_errors)

# Bytes and requests this process read from shard files, by kind (`range`, `stream`, `whole`): what the
# ranged-read benchmark and tests compare. Counts only; never URLs or credentials.
io_counts: collections.Counter[str] = collections.Counter()


class _Counted:
    """A read-only byte stream that adds what is read to `io_counts["stream"]`."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        io_counts["stream"] += len(data)
        return data

    def close(self) -> None:
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(url: str) -> IO[bytes]:
    """A whole shard file as a byte stream: local path, http(s) (urllib), or an fsspec URL."""
    io_counts["stream_opens"] += 1
    if is_http(url):
        return _Counted(urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S))  # noqa: S310 (user-given shard URL)
    if is_url(url):
        head, name = parent_and_name(url)
        return _Counted(FsspecStore(head).open(name))
    return _Counted(open(url, "rb"))


_local_files: dict[tuple[int, str], tuple[IO[bytes], int]] = {}  # (pid, path) -> (handle, inode)


def read_range(url: str, offset: int, size: int) -> bytes:
    """Exactly `size` bytes at `offset` of the file at `url`: a seek on a local file (handles kept open
    per process, reopened when the path names another file: a shard replaced by a rename), an HTTP
    Range request, or a ranged GET through fsspec (S3)."""
    if size == 0:
        return b""
    if offset < 0 or size < 0:
        raise ValueError(f"{url}: bad range offset={offset} size={size}")
    if is_http(url):
        status, data = _http_range(url, offset, size)
        if status == 200:
            raise RangeNotSupported(f"{url}: the server ignored the Range request (HTTP 200); "
                                    f"the shard is streamed whole instead")
        if status != 206:
            raise StorageError(f"{url}: HTTP {status} for a Range request")
    elif is_url(url):
        scheme, key = split_url(url)
        with translate_errors(url, "reading a byte range"):
            data = filesystem(scheme).cat_file(key, start=offset, end=offset + size)
    else:
        k = (os.getpid(), url)
        ino = os.stat(url).st_ino
        f, held = _local_files.get(k, (None, None))
        if f is None or held != ino:
            if f is not None:
                f.close()
            if len(_local_files) > 64:
                for old, _ in _local_files.values():
                    old.close()
                _local_files.clear()
            f = open(url, "rb")
            _local_files[k] = (f, os.fstat(f.fileno()).st_ino)
        f.seek(offset)
        data = f.read(size)
    io_counts["range"] += len(data)
    io_counts["range_requests"] += 1
    if len(data) != size:
        raise StorageError(f"{url}: short read at offset {offset}: {len(data)} of {size} bytes (truncated object?)")
    return data


_http_local = threading.local()


def _http_range(url: str, offset: int, size: int) -> tuple[int, bytes]:
    """One Range GET on a kept-alive connection of this thread and process (servers that close after
    each response get a new one); a connection that broke is retried once on a fresh one. Through
    urllib (one connection per request) when the environment sets a proxy for the host."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if proxies.get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname or ""):
        req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-{offset + size - 1}"})
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310 (through the proxy)
            return r.status, r.read()
    conns = getattr(_http_local, "conns", None)
    if conns is None or getattr(_http_local, "pid", None) != os.getpid():  # forked: never share sockets
        conns = _http_local.conns = {}
        _http_local.pid = os.getpid()
    key = (parts.scheme, parts.netloc)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for attempt in (0, 1):
        conn = conns.get(key)
        if conn is None:
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = conns[key] = cls(parts.netloc, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", path, headers={"Range": f"bytes={offset}-{offset + size - 1}"})
            r = conn.getresponse()
            data = r.read()
            if r.will_close:
                conn.close()
                conns.pop(key, None)
            return r.status, data
        except (http.client.HTTPException, OSError):
            conn.close()
            conns.pop(key, None)
            if attempt:
                raise
    raise AssertionError("unreachable")


def read_bytes(url: str) -> bytes:
    """A whole small file (an index, a parquet) at a local path, http(s) URL or fsspec URL."""
    if is_http(url):
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
            data = r.read()
    elif is_url(url):
        head, name = parent_and_name(url)
        data = FsspecStore(head).read_bytes(name)
    else:
        data = Path(url).read_bytes()
    io_counts["whole"] += len(data)
    return data


def size(url: str) -> int:
    """Bytes of the file at a local path, http(s) URL (HEAD, Content-Length) or fsspec URL."""
    if is_http(url):
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
            length = r.headers.get("Content-Length")
        if length is None:
            raise StorageError(f"{url}: the server gave no Content-Length")
        return int(length)
    if is_url(url):
        head, name = parent_and_name(url)
        return FsspecStore(head).size(name)
    return os.path.getsize(url)


def exists(url: str) -> bool:
    """Whether a file exists (404 over HTTP counts as absent; other failures raise)."""
    if is_http(url):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HTTP_TIMEOUT_S):  # noqa: S310
                return True
        except urllib.error.HTTPError as exn:
            if exn.code == 404:
                return False
            raise
    if is_url(url):
        head, name = parent_and_name(url)
        return FsspecStore(head).exists(name)
    return os.path.isfile(url)
