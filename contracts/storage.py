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

Readers of single shard files use contracts/reads.py (whole-file streaming, ranged reads, sizes).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import IO, Iterator

HTTP_TIMEOUT_S = 60
_URL_RE = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Environment a filesystem instance depends on (keys of the cache, never logged or written).
_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
