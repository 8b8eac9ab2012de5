"""Where a dataset lives: a local folder or an object-store URL (DESIGN.md §6), behind one small API.

`open_store(target)` gives a `LocalStore` for a path and an `FsspecStore` for a URL such as
`s3://bucket/prefix` (fsspec + s3fs; fsspec is imported only for URLs, so this module stays light).
A store reads and writes whole files by plain name directly under its root: a name holding `/` or
`..` is refused, so no key outside the dataset's prefix can ever be touched, and a URL with `.`/`..`
components or an empty component is refused up front.

Endpoint and credentials come only from the storage library's environment (for S3: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, ~/.aws/config); nothing
here takes them as arguments, logs them or writes them. Failures become `StorageError`s whose message
names the URL and says what went wrong (unreachable endpoint, access denied, missing bucket).

Readers of single shard files use `open_stream(url)` (whole-file streaming) and `read_range(url,
offset, size)` (seek on a local file, an HTTP Range request, an S3 ranged GET).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Iterator

HTTP_TIMEOUT_S = 60
_URL_RE = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Environment a filesystem instance depends on (keys of the cache, never logged or written).
_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


# Bytes and requests this process read from shard files, by kind (`range`, `stream`, `whole`): what the
# ranged-read benchmark and tests compare. Counts only; never URLs or credentials.
io_counts: collections.Counter[str] = collections.Counter()


class StorageError(OSError):
    """A dataset location that cannot be used; the message names the URL and the problem."""


class RangeNotSupported(StorageError):
    """An HTTP server answered a Range request with the whole file (200): stream that shard instead."""


def is_url(target: str | os.PathLike) -> bool:
    """True for `scheme://...` strings other than file:// (those are local paths)."""
    m = _URL_RE.match(str(target))
    return bool(m) and m.group("scheme") != "file"


def is_http(target: str) -> bool:
    return str(target).startswith(("http://", "https://"))


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("s3", "bucket/a/b"), checked: no `.`/`..` or empty components, no
    backslashes or control characters, an S3 bucket name that S3 accepts."""
    m = _URL_RE.match(url)
    if not m:
        raise StorageError(f"{url}: not a URL (expected scheme://bucket/prefix)")
    scheme, rest = m.group("scheme"), m.group("rest").rstrip("/")
    userinfo = rest.split("@", 1)[0] if "@" in rest else ""
    # user:secret@bucket -- never echoed back; a secret may hold '/', so look before the first '@'
    if "@" in rest.split("/", 1)[0] or ":" in userinfo:
        raise StorageError(f"{scheme}://...: refused: a URL with credentials in it; give them in the environment "
                           f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")
    parts = rest.split("/")
    if not rest or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"{url}: refused: empty, '.' or '..' path component (a dataset URL must name "
                           f"bucket/prefix plainly)")
    if any(c in rest for c in "\\?#") or any(ord(c) < 32 for c in rest):
        raise StorageError(f"{url}: refused: backslash, '?', '#' or control character in the URL")
    if scheme in ("s3", "s3a") and not _S3_BUCKET_RE.match(parts[0]):
        raise StorageError(f"{url}: {parts[0]!r} is not a valid S3 bucket name")
    return scheme, rest


def check_name(name: str, where: str) -> str:
    """A file name directly under a dataset root: no separators, no `..`."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise StorageError(f"{where}: refused file name {name!r} (must be a plain name inside the dataset)")
    return name


# -- filesystems (one per process and environment) -------------------------------------------------

_fs_cache: dict[tuple, object] = {}
_ensured: set[tuple] = set()  # (pid, url, environment) of dataset locations already checked
_fs_lock = threading.Lock()


def filesystem(scheme: str):
    """The fsspec filesystem for `scheme` in this process, made with bounded timeouts and retries.
    Remade after a fork and when the storage environment changes (tests switch endpoints)."""
    key = (os.getpid(), scheme, tuple(os.environ.get(k) for k in _ENV_KEYS))
    with _fs_lock:
        fs = _fs_cache.get(key)
        if fs is None:
            import fsspec

            kw: dict = {"skip_instance_cache": True}
            if scheme in ("s3", "s3a"):
                # Bounded: an unreachable endpoint fails in seconds, not after minutes of back-off.
                kw["config_kwargs"] = {"connect_timeout": 10, "read_timeout": 120,
                                       "retries": {"max_attempts": 3, "mode": "standard"}}
            try:
                fs = fsspec.filesystem(scheme, **kw)
            except (ImportError, ValueError) as exn:
                raise StorageError(f"{scheme}://: no storage library for this scheme ({exn}); "
                                   f"install s3fs for s3://") from None
            _fs_cache[key] = fs
        return fs


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"


@contextlib.contextmanager
def translate_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the storage library's exceptions into StorageErrors naming `url` (FileNotFoundError stays)."""
    try:
        yield
    except (StorageError, FileNotFoundError):
        raise
    except PermissionError as exn:
        raise StorageError(f"{url}: access denied while {doing} ({exn}); check the storage credentials in the "
                           f"environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)") from None
    except Exception as exn:  # noqa: BLE001 (botocore/aiohttp raise many kinds; all mean the same here)
        kind = type(exn).__name__
        if "EndpointConnection" in kind or "Connect" in kind or isinstance(exn, (ConnectionError, TimeoutError)):
            raise StorageError(f"{url}: cannot reach the object store at {_endpoint()} while {doing} "
                               f"({kind}); check AWS_ENDPOINT_URL and the network") from None
        if "NoSuchBucket" in str(exn) or "NoSuchBucket" in kind:
            raise StorageError(f"{url}: the bucket does not exist") from None
        raise StorageError(f"{url}: {doing} failed ({kind}: {exn})"[:600]) from None


# -- stores ------------------------------------------------------------------------------------------


class LocalStore:
    """A dataset folder on a local (or mounted) filesystem; writes are atomic renames, fsynced."""

    remote = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, name: str) -> Path:
        return self.root / check_name(name, self.url)

    def child(self, name: str) -> str:
        return str(self.path(name))

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def is_dir(self) -> bool:
        return self.root.is_dir()

    def listdir(self) -> list[str]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such dataset folder")
        return os.listdir(self.root)

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def open(self, name: str) -> IO[bytes]:
        return open(self.path(name), "rb")

    def write_bytes(self, name: str, data: bytes) -> None:
        dest = self.path(name)
        tmp = dest.with_name(f".{name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)

    def put_file(self, local: str | os.PathLike, name: str) -> None:
        """Move a finished local file into place (atomic rename on the same filesystem)."""
        dest = self.path(name)
        _fsync(Path(local))
        os.replace(local, dest)

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def scratch_dir(self) -> Path:
        """Where a writer builds files before moving them in: the dataset folder itself (same filesystem)."""
        self.ensure()
        return self.root


class FsspecStore:
    """A dataset under an object-store prefix. Every file is uploaded whole (one PUT or a multipart
    upload, which the store makes visible only when complete), so a reader never sees half a file."""

    remote = True

    def __init__(self, url: str):
        self.scheme, self.key = split_url(url)
        self.url = f"{self.scheme}://{self.key}"
        self.fs = filesystem(self.scheme)

    def _key(self, name: str) -> str:
        return f"{self.key}/{check_name(name, self.url)}"

    def child(self, name: str) -> str:
        return f"{self.url}/{check_name(name, self.url)}"

    def ensure(self) -> None:
        """Check that the store is reachable, the credentials work and the bucket exists: before any
        rendering starts, so a wrong setting costs nothing and writes nothing.
        One request (a one-key listing, not the whole prefix), once per process and URL: a writer
        per shard calls this, and its cost must not grow with the dataset."""
        bucket = self.key.split("/", 1)[0]
        done = (os.getpid(), self.url, tuple(os.environ.get(k) for k in _ENV_KEYS))
        if done in _ensured:
            return
        with translate_errors(self.url, "checking the dataset location"):
            try:
                if self.scheme in ("s3", "s3a"):  # a one-key listing of the dataset prefix
                    _, _, root = self.key.partition("/")
                    self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=root + "/" if root else "", MaxKeys=1)
                else:
                    self.fs.ls(self.key, detail=False, refresh=True)
            except FileNotFoundError:  # an empty prefix is fine (a new dataset); a missing bucket is not
                if self.scheme in ("s3", "s3a") or not self.fs.exists(bucket):
                    raise StorageError(f"{self.url}: the bucket {bucket!r} does not exist (create it first)") from None
        _ensured.add(done)

    def is_dir(self) -> bool:
        with translate_errors(self.url, "listing"):
            self.fs.invalidate_cache(self.key)
            return bool(self.fs.isdir(self.key))

    def listdir(self) -> list[str]:
        with translate_errors(self.url, "listing"):
            self.fs.invalidate_cache(self.key)
            try:
                entries = self.fs.ls(self.key, detail=False, refresh=True)
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.url}: no such dataset (nothing under this prefix)") from None
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def exists(self, name: str) -> bool:
        with translate_errors(self.child(name), "checking"):
            self.fs.invalidate_cache(self.key)
            return bool(self.fs.exists(self._key(name)))

    def size(self, name: str) -> int:
        with translate_errors(self.child(name), "reading the size"):
            return int(self.fs.info(self._key(name))["size"])

    def read_bytes(self, name: str) -> bytes:
        with translate_errors(self.child(name), "reading"):
            try:
                return self.fs.cat_file(self._key(name))
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.child(name)}: no such object") from None

    def open(self, name: str) -> IO[bytes]:
        with translate_errors(self.child(name), "opening"):
            return self.fs.open(self._key(name), "rb", block_size=8 << 20, cache_type="readahead")

    def write_bytes(self, name: str, data: bytes) -> None:
        with translate_errors(self.child(name), "uploading"):
            self.fs.pipe_file(self._key(name), data)

    def put_file(self, local: str | os.PathLike, name: str) -> None:
        with translate_errors(self.child(name), "uploading"):
            self.fs.put_file(str(local), self._key(name))
        os.unlink(local)

    def remove(self, name: str) -> None:
        with translate_errors(self.child(name), "deleting"):
            try:
                self.fs.rm_file(self._key(name))
            except FileNotFoundError:
                pass

    def scratch_dir(self) -> Path:
        """A private local folder for building files before upload (under $TMPDIR), marked with its
        owner so that the next run removes it if this process is killed (contracts.scratch)."""
        from contracts import scratch

        return scratch.make_scratch()


Store = LocalStore | FsspecStore


def open_store(target: str | os.PathLike) -> Store:
    """The store of a dataset folder or URL (`s3://bucket/prefix`, with or without a trailing slash)."""
    text = str(target)
    if text.startswith("file://"):
        return LocalStore(text[len("file://"):])
    if is_url(text):
        if is_http(text):
            raise StorageError(f"{text}: http(s) datasets are read-only (served folders): give a local folder "
                               f"or an object-store URL (s3://bucket/prefix)")
        return FsspecStore(text)
    return LocalStore(text)


def parent_and_name(url: str) -> tuple[str, str]:
    """`s3://b/p/shard-000001.tar` -> ("s3://b/p", "shard-000001.tar"); same for local paths."""
    head, _, name = str(url).rstrip("/").rpartition("/")
    if not head and not is_url(url):
        return ".", name
    return head, name


# -- reading one file: streaming or ranged -------------------------------------------------------------


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
