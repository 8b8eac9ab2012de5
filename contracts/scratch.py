"""Scratch folders in the temporary directory, and removing the ones dead processes left behind.

A shard written to an object store is built in a private local folder first (`make_scratch`), named
`shard-upload-{pid}-XXXX` with an `.owner` file (pid, the process's start time, host). A killed upload
leaves it behind (the tar alone can be gigabytes); so does Blender, whose session folder
`$TMPDIR/blender_XXXXXX` outlives a killed render process. `clean_stale()` removes, in the temporary
directory of this host:

- `shard-upload-*` folders whose owner process is gone (pid absent, or reused: its start time
  differs); a folder without an `.owner` (written before it existed) when nothing in it changed for
  `legacy_idle_s` (2 h; a sample never takes that long between two writes to the tar);
- `blender_*` folders that no live process can own: every live process that has bpy loaded (seen in
  /proc/PID/maps; a process whose maps cannot be read counts as one) started after the folder was
  last changed (its mtime), and that was more than a minute ago.

Never another live process's folder; errors while removing are logged and skipped (best effort).
Linux only (/proc); elsewhere nothing is removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "shard-upload-"
OWNER = ".owner"


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start(pid: int) -> float | None:
    """Start time of process `pid` (seconds since the epoch), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    boot = _boot_time()
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    try:
        ticks = int(fields[19])  # field 22 of stat: starttime, in clock ticks since boot
    except (IndexError, ValueError):
        return None
    return None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def make_scratch(prefix: str = UPLOAD_PREFIX) -> Path:
    """A new private folder in the temporary directory, marked with its owner (this process)."""
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    owner = {"pid": os.getpid(), "start": process_start(os.getpid()), "host": socket.gethostname()}
    (d / OWNER).write_text(json.dumps(owner))
    return d


def _owner_alive(owner: dict) -> bool:
    if owner.get("host") not in (None, socket.gethostname()):
        return True  # a shared temp folder of another host: not ours to judge
    start = process_start(int(owner["pid"]))
    if start is None:
        return False
    recorded = owner.get("start")
    return recorded is None or abs(start - float(recorded)) < 1.0


def _newest_change(d: Path) -> float:
    newest = d.stat().st_mtime
    for root, _dirs, files in os.walk(d):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def _bpy_process_starts() -> list[float]:
    """Start times of live processes that have bpy loaded (or whose maps cannot be read)."""
    starts = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/maps") as f:
                loaded = any("/bpy/" in line for line in f)
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            loaded = True  # cannot tell: assume it may own a Blender folder
        if loaded:
            start = process_start(int(entry.name))
            if start is not None:
                starts.append(start)
    return starts


def stale_folders(tmp: str | os.PathLike | None = None, legacy_idle_s: float = 7200.0,
                  min_age_s: float = 60.0) -> list[Path]:
    """The folders `clean_stale` would remove (module docstring)."""
    if not os.path.isdir("/proc/self"):
        return []
    root = Path(tmp or tempfile.gettempdir())
    now = time.time()
    out: list[Path] = []
    bpy_starts: list[float] | None = None
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for e in entries:
        d = Path(e.path)
        try:
            if e.name.startswith(UPLOAD_PREFIX):
                try:
                    owner = json.loads((d / OWNER).read_text())
                except FileNotFoundError:
                    if now - _newest_change(d) > legacy_idle_s:
                        out.append(d)
                    continue
                if not _owner_alive(owner):
                    out.append(d)
            elif e.name.startswith("blender_"):
                changed = d.stat().st_mtime  # a file made or removed in it moves this forward
                if now - changed < min_age_s:
                    continue
                if bpy_starts is None:
                    bpy_starts = _bpy_process_starts()
                if all(s > changed for s in bpy_starts):
                    out.append(d)
        except (OSError, ValueError, KeyError, TypeError) as exn:
            log.debug("temp folder %s: %s", d, exn)
    return out


def clean_stale(tmp: str | os.PathLike | None = None, legacy_idle_s: float = 7200.0,
                min_age_s: float = 60.0) -> list[Path]:
    """Remove the stale scratch and Blender folders of the temporary directory; returns them."""
    gone = []
    for d in stale_folders(tmp, legacy_idle_s, min_age_s):
        try:
            shutil.rmtree(d)
            gone.append(d)
        except OSError as exn:
            log.warning("could not remove the stale temp folder %s: %s", d, exn)
    if gone:
        log.info("removed %d stale temp folder(s) of dead processes (shard uploads, Blender sessions)", len(gone))
    return gone
