"""The committed-shard index at dataset scale: a commit log plus a lazily compacted `index.json`.

`index.json` (DESIGN.md §6) keeps its format, `{"schema_version": 1, "shards": [{"shard": N, "tar":
"shard-N.tar", "samples": n, ...}, ...]}`, and is still complete when read together with the log. What
is added (readers that do not know it ignore it):

- `DIR/index-log/`: one small object per event, never rewritten, written by whoever commits or
  uncommits a shard: `{stamp}-{N:06d}-c-{samples}-{rand}.json` after shard N's stats.json is written
  (a commit), `{stamp}-{N:06d}-r-0-{rand}.json` before its stats.json is removed (`--force`,
  `--retry-failed`, a cleared leftover). `stamp` is the writer's UTC clock, `%Y%m%dT%H%M%S.%fZ`, so
  names sort by time. A commit entry's body is the shard's summary (the index entry below); the name
  alone carries what a trainer needs (shard, commit or removal, samples).
- per entry of `index.json`: `log` (the log name that set it) and the summary `pipeline status`
  shows without reading the shard's files: `rows ok failed rejected reasons{status: {reason: n}}
  images tar_bytes seconds samples_seconds committed_at duplicated`.
- top level: `log_through`, the newest log name the compaction saw.

Reading: `index.json` (one GET), then the log names after `log_through` minus `MARGIN_S` (one
ListObjectsV2 per 1,000 names; `StartAfter` skips the rest), applied in name order; per shard the
newest name wins, and a name never undoes a newer one. The margin covers a log object that becomes
visible after a newer-stamped one (upload time, clock skew between hosts): hosts are assumed to agree
within MARGIN_S. Writing: a commit adds one log object (one PUT); compaction (one GET, one listing, one
PUT) runs every so many commits and at the end of a `pipeline render`, so its bytes, which grow with the
dataset, are paid once per many commits. `pipeline status` and `pipeline index` reconcile the index
with a paged listing (the truth: stats.json present), adding log entries for what the log missed (a
writer killed between stats.json and its log entry) and removal entries for what is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping

from contracts.parquet_bytes import read_table_bytes
from contracts import layout, listing, storage

LOG_DIR = "index-log"
MARGIN_S = 600.0
STAMP_FMT = "%Y%m%dT%H%M%S.%fZ"
LOG_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}\.\d{6}Z)-(?P<shard>\d{6})-(?P<kind>[cr])-(?P<samples>\d+)-[0-9a-f]{8}\.json$")
SUMMARY_KEYS = ("rows", "ok", "failed", "rejected", "reasons", "images", "tar_bytes", "seconds", "samples_seconds",
                "committed_at", "duplicated")


def stamp(t: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if t is None else t, dt.timezone.utc).strftime(STAMP_FMT)


def _minus(name: str, seconds: float) -> str:
    """The stamp `seconds` before the stamp of log name `name` (a listing start)."""
    t = dt.datetime.strptime(name[:23], STAMP_FMT).replace(tzinfo=dt.timezone.utc)
    return (t - dt.timedelta(seconds=seconds)).strftime(STAMP_FMT)


def log_name(n: int, kind: str, samples: int = 0, t: float | None = None) -> str:
    layout.shard_stem(n)  # validates n
    return f"{stamp(t)}-{n:06d}-{kind}-{max(0, int(samples))}-{secrets.token_hex(4)}.json"


def log_store(directory: str | os.PathLike):
    store = storage.open_store(directory)
    return storage.open_store(store.child(LOG_DIR) if not store.remote else f"{store.url}/{LOG_DIR}")


def summary(n: int, stats: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] | None,
            sizes: Mapping[str, int] | None = None) -> dict:
    """The index entry of committed shard n: from its stats.json record and its parquet rows
    (`key, status, reason, seconds`; None when only stats.json is at hand). `sizes`: bytes of the
    shard's `parquet` and `stats` files, which a listing checks the summary against."""
    entry: dict[str, Any] = {"shard": n, "tar": layout.tar_name(n), "samples": stats.get("ok", stats.get("samples"))}
    reasons: dict[str, dict[str, int]] = {}
    counts = {s: int(stats.get(s) or 0) for s in layout.STATUSES}
    seconds = stats.get("samples_seconds")
    dup = 0
    if rows is not None:
        counts = dict.fromkeys(layout.STATUSES, 0)
        seen: set[str] = set()
        seconds = 0.0
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
            if r.get("reason"):
                by = reasons.setdefault(r["status"], {})
                by[r["reason"]] = by.get(r["reason"], 0) + 1
            seconds += float(r.get("seconds") or 0.0)
            dup += r["key"] in seen
            seen.add(r["key"])
    entry.update(rows=sum(counts.values()), **counts, reasons=reasons, images=int(stats.get("images") or 0),
                 tar_bytes=int(stats.get("tar_bytes") or 0), seconds=float(stats.get("seconds") or 0.0),
                 samples_seconds=float(seconds or 0.0), committed_at=stats.get("committed_at"), duplicated=dup)
    if sizes:
        entry["bytes"] = {k: int(v) for k, v in sizes.items()}
    return entry


def stale(entry: Mapping[str, Any], sizes: Mapping[str, int | None]) -> bool:
    """Whether a listing's sizes (file name -> bytes) show that the shard's parquet or stats.json
    changed since its summary was made (a summary without sizes is trusted)."""
    n, recorded = int(entry["shard"]), entry.get("bytes") or {}
    for kind, name in (("parquet", layout.parquet_name(n)), ("stats", layout.stats_name(n))):
        now = sizes.get(name)
        if kind in recorded and now is not None and int(recorded[kind]) != now:
            return True
    return False


def record_commit(directory: str | os.PathLike, entry: dict, t: float | None = None) -> str:
    """Add shard entry's commit to the log (after its stats.json is written); returns the log name."""
    name = log_name(entry["shard"], "c", entry.get("samples") or 0, t)
    entry = {**entry, "log": name}
    st = log_store(directory)
    if not st.remote:
        st.ensure()
    st.write_bytes(name, json.dumps(entry, sort_keys=True).encode())
    return name


def record_removal(directory: str | os.PathLike, n: int, t: float | None = None) -> str:
    """Add shard n's removal to the log (before its stats.json is deleted); returns the log name."""
    name = log_name(n, "r", 0, t)
    st = log_store(directory)
    if not st.remote:
        st.ensure()
    st.write_bytes(name, json.dumps({"shard": n, "removed": True, "log": name}).encode())
    return name


class IndexView:
    """index.json merged with the log: committed shard -> entry, kept current by `poll()`."""

    def __init__(self, directory: str | os.PathLike):
        self.store = storage.open_store(directory)
        self.directory = self.store.url if self.store.remote else str(directory)
        self.entries: dict[int, dict] = {}
        self.marks: dict[int, str] = {}   # shard -> newest log name applied (commits and removals)
        self.high: str | None = None      # newest log name seen
        self.base = False                 # an index.json was read
        self.problem: str | None = None   # why index.json was not used (unreadable, refused entries)
        self.requests = 0                 # storage requests made by this view (GET, LIST pages)

    def load(self) -> "IndexView":
        """Read index.json (when there is one) and the log after it; returns self. An index.json that
        cannot be used (corrupt, or naming files outside the dataset) is left out and named in
        `problem`: the view is then the log alone, and `base` is False (callers list the dataset)."""
        self.requests += 1
        try:
            raw = self.store.read_bytes(layout.INDEX_NAME)
        except FileNotFoundError:
            raw = None
        if raw is not None:
            try:
                data = json.loads(raw)
                layout.index_tars(data, self.store.child(layout.INDEX_NAME))
                entries = {int(e["shard"]): dict(e) for e in data["shards"]}
                if any(e["tar"] != layout.tar_name(n) for n, e in entries.items()):
                    raise ValueError("an entry's tar is not its shard's")
                through = data.get("log_through")
                self.entries, self.base = entries, True
                self.marks = {n: str(e.get("log") or "") for n, e in entries.items()}
                self.high = through if isinstance(through, str) and LOG_RE.match(through) else None
            except (ValueError, KeyError, TypeError, AttributeError) as exn:
                self.problem = f"{self.store.child(layout.INDEX_NAME)}: not a usable committed-shard index ({exn})"
        self.poll()
        return self

    def poll(self) -> set[int]:
        """Apply the log names after (newest seen - margin); the shards whose state changed. A name
        stamped in the future (a host whose clock runs ahead) never moves the start past now - margin."""
        start = _minus(min(self.high, stamp()), MARGIN_S) if self.high else None
        changed: set[int] = set()
        self.requests += 1
        for i, name in enumerate(listing.iter_names(log_store(self.directory), "", start)):
            self.requests += i > 0 and i % listing.PAGE == 0
            changed |= self.apply(name)
        return changed

    def apply(self, name: str, entry: dict | None = None) -> set[int]:
        m = LOG_RE.match(name)
        if not m:
            return set()
        if self.high is None or name > self.high:
            self.high = name
        n = int(m.group("shard"))
        if name <= self.marks.get(n, ""):
            return set()
        self.marks[n] = name
        if m.group("kind") == "r":
            return {n} if self.entries.pop(n, None) is not None else set()
        self.entries[n] = dict(entry) if entry else {"shard": n, "tar": layout.tar_name(n),
                                                     "samples": int(m.group("samples")), "log": name}
        return {n}

    def committed(self) -> list[int]:
        return sorted(self.entries)

    def tars(self) -> list[str]:
        return [self.store.child(layout.tar_name(n)) for n in self.committed()]

    def fill(self, threads: int = 16, logged_only: bool = False) -> list[str]:
        """Fetch the summaries of entries that have only what a log name says (GETs of those log
        objects, concurrently); returns problems (an entry whose object cannot be read is rebuilt
        from the shard's own files). `logged_only`: leave entries without a log name (an index.json
        written before the log existed) as they are, for `pipeline status` / `pipeline index` to fill."""
        todo = [n for n, e in self.entries.items() if not has_summary(e) and (e.get("log") or not logged_only)]
        problems: list[str] = []
        logs = log_store(self.directory)

        def get(n: int) -> tuple[int, dict | None, str | None]:
            e = self.entries[n]
            if e.get("log"):
                try:
                    body = json.loads(logs.read_bytes(e["log"]))
                    if isinstance(body, dict) and has_summary(body) and body.get("shard") == n:
                        return n, body, None
                except (FileNotFoundError, ValueError):
                    pass  # a log object gone or corrupt: the shard's own files say the same
            try:
                return n, shard_summary(self.directory, n), None
            except (OSError, ValueError) as exn:
                return n, None, f"shard {n}: unreadable summary ({exn})"

        with ThreadPoolExecutor(max(1, min(threads, len(todo)))) as pool:
            for n, body, problem in pool.map(get, todo):
                self.requests += 1
                if body is not None:  # shard and tar from the name, never from an object's body
                    self.entries[n] = {**body, "shard": n, "tar": layout.tar_name(n),
                                       "log": self.entries[n].get("log", body.get("log", ""))}
                if problem:
                    problems.append(problem)
        return problems

    def write(self) -> str:
        """Compact: index.json = the entries now, with `log_through` (one PUT); returns its path or URL."""
        data = {"schema_version": layout.SCHEMA_VERSION, "log_through": self.high,
                "shards": [self.entries[n] for n in self.committed()]}
        self.store.write_bytes(layout.INDEX_NAME, json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        self.requests += 1
        return self.store.child(layout.INDEX_NAME)


def has_summary(entry: Mapping[str, Any]) -> bool:
    return all(k in entry for k in SUMMARY_KEYS)


def shard_summary(directory: str | os.PathLike, n: int) -> dict:
    """Shard n's entry from its own files (stats.json and the parquet's key/status/reason/seconds)."""
    store = storage.open_store(directory)
    raw = store.read_bytes(layout.stats_name(n))
    try:
        stats = json.loads(raw)
        if not isinstance(stats, dict):
            raise ValueError("a JSON object expected")
    except ValueError as exn:
        raise ValueError(f"{store.child(layout.stats_name(n))}: not a valid stats.json ({exn})") from None
    try:
        data = store.read_bytes(layout.parquet_name(n))
        table = read_table_bytes(data, ["key", "status", "reason", "seconds"])
    except (OSError, ValueError) as exn:  # pyarrow's errors are ValueErrors/OSErrors
        raise ValueError(f"{store.child(layout.parquet_name(n))}: unreadable parquet: {exn}") from None
    return summary(n, stats, table.to_pylist(), {"parquet": len(data), "stats": len(raw)})


def reconcile(directory: str | os.PathLike, names: Iterable[str] | None = None, refresh: set[int] | None = None,
              write_log: bool = True, view: IndexView | None = None) -> tuple[IndexView, list[str]]:
    """The view checked against a listing (`names`: the dataset's (name, size) pairs; listed in pages
    when None): shards committed but missing from the view get a commit entry, shards in the view without
    stats.json a removal entry, stamped with the time of the listing (a newer event wins), and
    shards whose parquet or stats.json changed size since their summary a fresh entry. `refresh`:
    shards whose entries are rebuilt from their files; `view`: one loaded before `names` were listed
    (never after: a shard committed in between would look removed). Returns (view with summaries, problems)."""
    view = view or IndexView(directory).load()
    t_list = time.time()
    store = storage.open_store(directory)
    sizes = dict(listing.iter_sizes(store) if names is None else names)
    committed = set(layout.committed_in(sizes))
    changed = {n for n in committed & set(view.entries) if stale(view.entries[n], sizes)}
    problems: list[str] = []
    for n in sorted(committed - set(view.entries) | ((set(refresh or ()) | changed) & committed)):
        try:
            entry = shard_summary(directory, n)
        except (OSError, ValueError) as exn:
            what = "parquet" if "unreadable parquet" in str(exn) else "stats.json"
            problems.append(f"shard {n}: unreadable {what} ({exn})")
            continue
        name = record_commit(directory, entry, t_list) if write_log else log_name(n, "c", entry["samples"] or 0, t_list)
        view.apply(name, {**entry, "log": name})
    for n in sorted(set(view.entries) - committed):
        name = record_removal(directory, n, t_list) if write_log else log_name(n, "r", 0, t_list)
        view.apply(name)
    problems += view.fill()
    return view, problems


def compact(directory: str | os.PathLike, known: Mapping[str, dict] | None = None) -> IndexView:
    """Rewrite index.json from index.json + the log (no listing of the shards). `known`: log name ->
    entry of commits this process wrote (no GET for them). A dataset without an index.json yet
    (written before the log existed) is reconciled against a listing instead, once."""
    view = IndexView(directory).load()
    if not view.base:
        view, _ = reconcile(directory)
        view.write()
        return view
    for name, entry in (known or {}).items():
        n = int(entry["shard"])
        if view.marks.get(n) == name:
            view.entries[n] = {**entry, "log": name}
    view.fill(logged_only=True)  # an older index's entries stay as they are: no read per shard here
    view.write()
    return view


def write_index(directory: str | os.PathLike, refresh: set[int] | None = None) -> str:
    """Reconcile DIR/index.json with a (paged) listing of the committed shards and rewrite it
    (the commit log, summaries, compaction); returns its path or URL.
    `refresh`: shards whose entries are rebuilt from their own files."""
    view, _ = reconcile(directory, refresh=refresh)
    return view.write()
