"""The shard-opening stage: shard urls -> samples grouped by key, read by index or by streaming.

A shard with a member index (`shard-N.members.parquet`, DESIGN.md §4) is not streamed: its samples
come out with `{key}.json` read (one ranged read each) and every other member as a `MemberRef`
(url, offset, size) that `training.data.decode` fetches with one ranged read only if the sample's picker
kept it; so a sample moves its JSON and the dozen images it uses instead of its ~600 members. Ranged
reads are seeks on local files, HTTP Range requests and S3 ranged GETs (`contracts.storage`).
A shard without an index (written before the index existed), or whose index cannot be read, is
streamed whole through WebDataset's tar reader, as before. Both paths give the same samples:
`{"__key__", "__url__", suffix: bytes | MemberRef}`, with suffixes as WebDataset names them (the
member name after the key's first dot, lower case).

`fetch_members` is the stage after the shuffle: it reads the MemberRefs a picked item still holds,
concurrently (a small thread pool per process) when they live behind a network (http(s), s3), so a
sample costs one round trip of latency instead of a dozen; local refs are left to the decoders.

Before an index is used, the tar's size is checked against it (one size request per shard opened),
so an index that does not describe the tar (a shard rewritten under a cached index, a truncated tar)
is never trusted. Errors go to the handler (skip-and-count): an unreadable or mismatched index is
counted (`member_index`) and the shard is streamed; a member that cannot be fetched skips its sample (`member_read`). An HTTP server
that ignores Range requests (answers 200 with the whole file) gets the shard streamed instead.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

from contracts import layout, reads, storage
from contracts.ttlcache import TTLCache
from training.data.decode import MemberRef, SampleError

log = logging.getLogger(__name__)

FETCH_THREADS = 8     # concurrent ranged reads per loader worker for one picked sample (network latency bound)
INDEX_TTL_S = 120.0   # a member index is reused this long per process (a shard drawn again costs no request);
                      # bounded because `--retry-failed` / `--force` may rewrite a committed shard under a trainer
_index_cache = TTLCache(INDEX_TTL_S, 256)  # tar url -> member index or None


def members_url(tar_url: str) -> str | None:
    """`.../shard-N.tar` -> `.../shard-N.members.parquet` (None for tars outside the project's naming)."""
    head, name = storage.parent_and_name(tar_url)
    m = layout.SHARD_RE.match(name)
    if not m or m.group(2) != "tar":
        return None
    return f"{head}/{layout.members_name(int(m.group(1)))}"


def load_member_index(tar_url: str) -> list[tuple[str, int, int]] | None:
    """The shard's member index, or None when it has none. Raises (ValueError, OSError) when it exists
    but cannot be read or parsed. Cached per process for INDEX_TTL_S."""
    return _index_cache.get_or(tar_url, lambda: _read_member_index(tar_url))


def _read_member_index(tar_url: str) -> list[tuple[str, int, int]] | None:
    url = members_url(tar_url)
    index = None
    if url is not None:
        try:
            data = reads.read_bytes(url)
        except FileNotFoundError:
            data = None
        except urllib.error.HTTPError as exn:
            if exn.code != 404:
                raise
            data = None
        if data is not None:
            index = layout.read_member_index(data, url)
    return index


def index_fits(index: list[tuple[str, int, int]], tar_size: int) -> bool:
    """Whether a tar of `tar_size` bytes ends where its index says: after the last member's 512-byte
    padded data come the two zero blocks of the end of archive, padded to at most one 10240-byte record
    (tarfile's and GNU tar's blocking). A tar rewritten under a cached index, or cut short, fails this."""
    if not index:
        return True
    end = max(off + n for _, off, n in index)
    least = -(-end // 512) * 512 + 1024
    return least <= tar_size < least + 10240


def _split(name: str) -> tuple[str, str] | None:
    """WebDataset's key rule: key = the name up to the first dot of its last path part; suffix = the rest."""
    head, _, base = name.rpartition("/")
    if "." not in base:
        return None
    stem, suffix = base.split(".", 1)
    return (f"{head}/{stem}" if head else stem), suffix.lower()


def indexed_samples(url: str, index: list[tuple[str, int, int]], handler: Callable) -> Iterator[dict]:
    """Samples of one indexed shard: `json` read now, other members as MemberRefs. Over a network the
    JSONs of the next FETCH_THREADS samples are read concurrently (one round trip for several samples)."""
    grouped: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for name, offset, size in index:
        parts = _split(name)
        if parts is None or name.startswith("__"):
            continue
        key, suffix = parts
        if current is None or current["__key__"] != key:
            current = {"__key__": key, "__url__": url}
            grouped.append(current)
        if suffix in current:
            if not handler(ValueError(f"{name}: duplicate file name in the member index of {url}")):
                return
            continue
        current[suffix] = MemberRef(url, name, int(offset), int(size))
    step = FETCH_THREADS if storage.is_url(url) else 1
    for i in range(0, len(grouped), step):
        chunk = grouped[i: i + step]
        done = list(_pool().map(_read_json, chunk)) if len(chunk) > 1 else [_read_json(chunk[0])]
        for sample, exn in done:
            if exn is not None:
                if not handler(exn):
                    return
                continue
            yield sample


def _read_json(sample: dict) -> tuple[dict, SampleError | None]:
    """The sample with its `json` member's bytes, or the error that skips it (RangeNotSupported is raised)."""
    ref = sample.get("json")
    if isinstance(ref, MemberRef):
        try:
            sample["json"] = ref.read()
        except SampleError as exn:
            return sample, exn
    return sample, None


def streamed_samples(url: str, handler: Callable) -> Iterator[dict]:
    """Samples of one shard streamed whole (no index): WebDataset's tar reader and key grouping."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    yield from group_by_keys(tar_file_expander(open_shards([{"url": url}], handler), handler=handler), handler=handler)


def open_shards(src: Iterable[dict], handler: Callable) -> Iterator[dict]:
    """Open each url as a byte stream: local files, http(s) through urllib, object stores through fsspec."""
    for item in src:
        url = item["url"]
        try:
            stream = reads.open_stream(url)
        except Exception as exn:  # noqa: BLE001 (policy is the handler's)
            if handler(SampleError("shard_open", f"{url}: cannot open ({exn})")):
                continue
            break
        yield {"url": url, "stream": stream}


def shard_samples(src: Iterable[dict], handler: Callable, ranged: bool = True) -> Iterator[dict]:
    """Pipeline stage: {"url"} items -> grouped samples, through the member index when there is one."""
    for item in src:
        url = item["url"]
        index = None
        if ranged:
            try:
                index = load_member_index(url)
            except Exception as exn:  # noqa: BLE001 (a bad index is counted; the tar itself may be fine)
                if not handler(SampleError("member_index", f"{url}: member index unreadable, streaming instead ({exn})"[:500])):
                    return
        if index is not None:
            try:
                size = reads.size(url)
            except Exception:  # noqa: BLE001 (unreachable: streaming will fail and count it)
                size = None
            if size is not None and not index_fits(index, size):
                _index_cache.pop(url)
                if not handler(SampleError("member_index", f"{url}: the member index does not match the tar "
                                                           f"({size} bytes); streaming it instead")):
                    return
                index = None
        if index is not None:
            n = 0
            try:
                for sample in indexed_samples(url, index, handler):
                    n += 1
                    yield sample
                continue
            except storage.RangeNotSupported as exn:
                _index_cache.put(url, None)  # stream this shard from now on
                if n:
                    handler(SampleError("member_read", str(exn)))
                    continue
                log.warning("%s; streaming it", exn)
        yield from streamed_samples(url, handler)


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()  # DataLoader workers are forked: each makes its own threads
    pool = _pools.get(pid)
    if pool is None:
        pool = _pools[pid] = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="member-fetch")
    return pool


def _refs(obj: Any, out: list[MemberRef]) -> None:
    if isinstance(obj, MemberRef):
        out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "meta":  # the parsed JSON: plain numbers, no refs
                _refs(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _refs(v, out)


def _swap(obj: Any, got: dict[int, bytes]) -> Any:
    if isinstance(obj, MemberRef):
        return got.get(id(obj), obj)
    if isinstance(obj, dict):
        return {k: (v if k == "meta" else _swap(v, got)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_swap(v, got) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_swap(v, got) for v in obj)
    return obj


def fetch_members(src: Iterable[dict], handler: Callable) -> Iterator[dict]:
    """Pipeline stage after the shuffle: network MemberRefs of each picked item read concurrently
    (whatever structure the family's picker made: dicts, lists and tuples are walked)."""
    for item in src:
        refs: list[MemberRef] = []
        _refs(item, refs)
        remote = [r for r in refs if storage.is_url(r.url)]
        if len(remote) > 1:
            try:
                data = list(_pool().map(MemberRef.read, remote))
            except SampleError as exn:
                if not handler(exn):
                    return
                continue
            item = _swap(item, {id(r): d for r, d in zip(remote, data)})
        yield item
