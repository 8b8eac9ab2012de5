"""Checkpoints: atomic writes, newest-first discovery, loading with weights_only=True.

RUN/checkpoints/step-00001000.pt holds model, optimiser, scheduler, step, data epoch, RNG state and
the resolved config, plus the model family and `trained_on`: the shards (and weight manifests) the
run has trained on so far, over all its invocations, so that `pipeline eval` can tell clips the
checkpoint has seen from held-out ones. A file is written to a temporary name, flushed to disk and renamed, so a crash
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^step-(\d{8})\.pt$")
FORMAT_VERSION = 1


def checkpoint_dir(run: str | os.PathLike) -> Path:
    return Path(run) / "checkpoints"


def list_checkpoints(run: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are ignored)."""
    d = checkpoint_dir(run)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / n) for n in os.listdir(d) if (m := CKPT_RE.match(n))]
    return [p for _, p in sorted(found)]


def save(run: str | os.PathLike, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as step-{step}.pt atomically; then delete all but the newest `keep`."""
    d = checkpoint_dir(run)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step-{step:08d}.pt"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(run)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(run: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The newest readable checkpoint, loaded with weights_only=True; None when the run has none.
    An unreadable newest file (disk trouble) is reported and the one before it is tried."""
    for path in reversed(list_checkpoints(run)):
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exn:  # noqa: BLE001 (any unreadable file: fall back to the previous one)
            log.error("checkpoint %s is unreadable (%s); trying the previous one", path, exn)
            continue
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {state.get('format_version')!r}, expected {FORMAT_VERSION}")
        return path, state
    return None


def read_checkpoint(path: str | os.PathLike, flag: str = "--checkpoint") -> tuple[dict, Path]:
    """A checkpoint file, or a run folder (its newest checkpoint), loaded with weights_only=True, on CPU;
    errors name `flag` (the option that gave the path)."""
    p = Path(path)
    if p.is_dir():
        found = load_latest(p, map_location="cpu")
        if found is None:
            raise FileNotFoundError(f"{flag} {p}: run folder has no checkpoints (checkpoints/step-*.pt)")
        p, state = found
    elif p.is_file():
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exn:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise ValueError(f"{flag} {p}: not a readable checkpoint ({type(exn).__name__}: {exn})"[:500]) from None
    else:
        raise FileNotFoundError(f"{flag} {p}: no such file or run folder")
    for key in ("model", "config", "step"):
        if not isinstance(state, dict) or key not in state:
            raise ValueError(f"{flag} {p}: not a training checkpoint (no {key!r})")
    return state, p


def shard_id(url: str) -> str:
    """How a shard is named in `trained_on`: the real path of a local tar, a URL as given."""
    if "://" in url:
        return url
    return os.path.realpath(url)


def _manifest_entry(path: str) -> dict[str, Any]:
    import hashlib

    p = Path(path)
    digest = None
    if p.is_file():
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
    return {"path": os.path.realpath(path) if "://" not in path else path, "sha256": digest}


def trained_on(previous: dict[str, Any] | None, urls: list[str], weights: str | None,
               identities: dict[str, dict] | None = None) -> dict[str, Any]:
    """The record stored in a checkpoint: `previous` (the resumed checkpoint's record, or for a new run
    started with init_from, that checkpoint's: DESIGN.md §5) plus the shards of this invocation and its
    weight manifest. {'shards': [shard ids, sorted], 'manifests': [{'path', 'sha256'}, in first-use
    order], 'content': {shard id: {'tar_bytes', 'tar_sha256'}} for the shards whose stats.json records
    their identity (`identities`: url -> identity or None, contracts/identity.py)}."""
    prev = previous if isinstance(previous, dict) else {}
    shards = set(prev.get("shards", [])) | {shard_id(u) for u in urls}
    manifests = [m for m in prev.get("manifests", []) if isinstance(m, dict)]
    if weights:
        entry = _manifest_entry(weights)
        if entry not in manifests:
            manifests.append(entry)
    content = {k: v for k, v in (prev.get("content") or {}).items() if isinstance(v, dict)}
    for u, ident in (identities or {}).items():
        if ident:
            content[shard_id(u)] = dict(ident)
    return {"shards": sorted(shards), "manifests": manifests, "content": dict(sorted(content.items()))}



def checkpoint_family(state: dict) -> str:
    """The family a checkpoint was trained as (checkpoints from before families existed: lrm4d)."""
    fam = state.get("family") or ((state.get("config") or {}).get("model") or {}).get("family") or "lrm4d"
    return str(fam)


def require_family(state: dict, expected: str, where: str) -> None:
    """A clear error when a checkpoint of one family meets a command or run of the other."""
    got = checkpoint_family(state)
    if got != expected:
        raise ValueError(f"{where}: checkpoint is of model family {got!r}, but this needs {expected!r} "
                         f"(--preset / --set model.family); the families' weights are not interchangeable")
