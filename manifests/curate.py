"""Curation: source -> candidates -> filters (with reasons) -> shards -> manifest.

`curate(CurateConfig(...))` runs one curation and returns the kept and dropped counts per reason.
Kept assets become manifest rows (one per clip, DESIGN.md §3) written with `write_manifest`, which
stores the command and these settings in the Parquet metadata. Dropped assets and clips are counted
per reason (manifests.filters.REASONS) and, with `dropped_out`, streamed to a Parquet file of
`uid, clip, source, uri, reason, detail` (clip null when the whole asset was dropped).

Memory stays bounded by the kept rows: sources yield one unit (metadata file, file) at a time,
dropped rows are only counted or streamed to disk, kept rows are held as plain column lists.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests import filters as F
from manifests.filters import Candidate, CurationError, Dropped, Scan
from manifests.gltf_info import GltfError, read_gltf_info
from manifests.schema import SOURCES, write_manifest
from manifests.shards import Previous, assign_shards, order_key, read_previous
from manifests.sources.objaverse_xl import XL_SOURCES

log = logging.getLogger(__name__)



@dataclass
class CurateConfig:
    """Settings of one `pipeline curate` run; the field names are the flags' names."""

    source: str                              # objaverse | objaverse-xl | local | procedural
    out: str                                 # manifest path (Parquet)
    cache_dir: str | None = None             # Objaverse cache root; None = ~/.objaverse, as the objaverse package
    dir: str | None = None                   # --source local: the folder to scan
    count: int | None = None                 # --source procedural: how many assets to generate
    seed: int = 0                            # --source procedural: fixed so that a bare run is reproducible
    assets_out: str | None = None            # --source procedural: where the GLBs go; None = <out's folder>/procedural-s<seed>
    categories: str | None = None            # --source procedural: category mix `a,b,...`; None = render.procedural's default mix
    xl_sources: tuple[str, ...] = XL_SOURCES  # --source objaverse-xl: which annotation files to read (all by default)
    limit: int | None = None                 # keep at most N assets (the first N in shard order); None = all
    uids_file: str | None = None             # keep only the uids listed there (one per line, # comments)
    max_clips_per_asset: int = 16            # mocap libraries carry 100+ clips and would flood shards; 0 = no cap
    licenses: tuple[str, ...] = ("by", "by-sa", "cc0")  # licences that allow redistribution of renders, incl. commercial
    min_faces: int = 1                       # an asset without a single triangle renders as nothing
    max_faces: int | None = 500_000          # beyond this a Blender import + 24 views x 16 frames gets slow; None = no bound
    max_vertices: int | None = 1_000_000     # same reasoning for vertex-heavy (scanned / split-normal) meshes
    include_static: bool = False             # static assets are dropped unless asked for (then one static row)
    dropped_out: str | None = None           # Parquet of dropped rows with reasons; None = only count them
    shard_size: int = 64                     # rows per shard: a render task of a few minutes per shard on 16 cores
    round: int = 0                           # curation round; > 0 needs `previous` (shard numbers continue after it)
    previous: str | None = None              # manifest of the earlier round(s)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "local" and not self.dir:
            raise ValueError("--dir is required with --source local")
        if self.dir and self.source != "local":
            raise ValueError(f"--dir is only used with --source local (got --source {self.source})")
        if self.cache_dir and self.source not in ("objaverse", "objaverse-xl"):
            raise ValueError(f"--cache-dir is only used with --source objaverse / objaverse-xl (got --source {self.source})")
        if self.source == "procedural":
            if self.count is None or self.count < 1:
                raise ValueError(f"--count N (N >= 1) is required with --source procedural, got {self.count}")
            from manifests.sources.procedural import normalise_categories

            self.categories = normalise_categories(self.categories)
        elif self.count is not None or self.assets_out or self.categories:
            raise ValueError("--count, --assets-out and --categories are only used with --source procedural")
        self.xl_sources = tuple(self.xl_sources)
        unknown = [s for s in self.xl_sources if s not in XL_SOURCES]
        if unknown or not self.xl_sources:
            raise ValueError(f"--xl-sources must name some of {', '.join(XL_SOURCES)}, got {', '.join(self.xl_sources) or 'none'}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.max_clips_per_asset < 0:
            raise ValueError(f"--max-clips-per-asset must be >= 0 (0 = no cap), got {self.max_clips_per_asset}")
        self.licenses = tuple(sorted({F.normalize_license(x) for x in self.licenses if F.normalize_license(x)}))
        if not self.licenses:
            raise ValueError("--licenses must name at least one licence (e.g. by,by-sa,cc0)")
        if self.min_faces < 0:
            raise ValueError(f"--min-faces must be >= 0, got {self.min_faces}")
        if self.max_faces is not None and self.max_faces < self.min_faces:
            raise ValueError(f"--max-faces ({self.max_faces}) must be >= --min-faces ({self.min_faces})")
        if self.max_vertices is not None and self.max_vertices < 0:
            raise ValueError(f"--max-vertices must be >= 0, got {self.max_vertices}")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size must be >= 1, got {self.shard_size}")
        if self.round < 0:
            raise ValueError(f"--round must be >= 0, got {self.round}")
        if self.round > 0 and not self.previous:
            raise ValueError(f"--round {self.round} needs --previous M.parquet (the manifest its shard numbers follow)")
        if self.previous and self.round == 0:
            raise ValueError("--previous is only used with --round R > 0")
        if self.uids_file and not Path(self.uids_file).expanduser().is_file():
            raise ValueError(f"--uids-file {self.uids_file}: no such file")
        if self.previous and not Path(self.previous).expanduser().is_file():
            raise ValueError(f"--previous {self.previous}: no such file")
        if self.dropped_out and Path(self.dropped_out).expanduser().resolve() == Path(self.out).expanduser().resolve():
            raise ValueError("--dropped-out must differ from --out")
        if self.source == "procedural" and not self.assets_out:
            self.assets_out = str(Path(self.out).expanduser().parent / f"procedural-s{self.seed}")

    def settings(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class CurateResult:
    manifest: Path
    dropped_out: Path | None
    kept_assets: int
    kept_rows: int
    shards: tuple[int, int] | None       # first and last shard number written, None when no rows
    dropped: dict[str, tuple[int, int]]  # reason -> (assets, clips) dropped
    seconds: float
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- drops


_DROP_SCHEMA = pa.schema([("uid", pa.string()), ("clip", pa.int32()), ("source", pa.string()), ("uri", pa.string()),
                          ("reason", pa.string()), ("detail", pa.string())])


class DropSink:
    """Counts dropped records per reason; with a path, streams them to Parquet (temp name, then rename)."""

    def __init__(self, path: str | None, flush_rows: int = 100_000):
        self.counts: dict[str, list[int]] = {}
        self.path = Path(path).expanduser() if path else None
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}") if self.path else None
        self._buf: list[Dropped] = []
        self._writer: pq.ParquetWriter | None = None
        self._flush_rows = flush_rows

    def add(self, d: Dropped) -> None:
        self.counts.setdefault(d.reason, [0, 0])[0 if d.clip is None else 1] += 1
        if self.path is not None:
            self._buf.append(d)
            if len(self._buf) >= self._flush_rows:
                self._flush()

    def add_frame(self, df: pd.DataFrame) -> None:
        is_clip = df["clip"].notna()
        for (reason, clip), n in df.groupby([df["reason"], is_clip]).size().items():
            self.counts.setdefault(reason, [0, 0])[1 if clip else 0] += int(n)
        if self.path is not None:
            self._flush()
            self._write(pa.Table.from_pandas(df[list(_DROP_SCHEMA.names)], schema=_DROP_SCHEMA, preserve_index=False))

    def _flush(self) -> None:
        if not self._buf:
            return
        cols = {name: [getattr(d, name) for d in self._buf] for name in _DROP_SCHEMA.names}
        self._buf = []
        self._write(pa.table(cols, schema=_DROP_SCHEMA))

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, _DROP_SCHEMA)
        self._writer.write_table(table)

    def close(self) -> Path | None:
        if self.path is None:
            return None
        self._flush()
        if self._writer is None:
            self._write(_DROP_SCHEMA.empty_table())
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


# -------------------------------------------------------------------------------------------- rows


_ROW_COLUMNS = ("uid", "clip", "clip_name", "source", "uri", "sha256", "license", "weight", "round", "uid_origin",
                "clip_count", "duration_s", "static", "face_count", "vertex_count", "file_identifier", "file_type", "name", "category")


class Rows:
    """Kept rows as plain column lists (compact for hundreds of thousands of rows)."""

    def __init__(self, round_: int):
        self.cols: dict[str, list] = {c: [] for c in _ROW_COLUMNS}
        self.round = round_
        self.uids: dict[str, str] = {}  # uid -> uri of the asset that took it

    def add(self, c: Candidate, clips: list[tuple[int, str, float | None]], static: bool | None) -> None:
        self.uids[c.uid] = c.uri
        license_ = F.normalize_license(c.license) if c.license is not None else None
        for index, name, duration in clips:
            for col, v in (("uid", c.uid), ("clip", index), ("clip_name", name), ("source", c.source), ("uri", c.uri),
                           ("sha256", c.sha256), ("license", license_), ("weight", 1.0), ("round", self.round),
                           ("uid_origin", c.uid_origin), ("clip_count", c.clip_count), ("duration_s", duration),
                           ("static", static), ("face_count", c.face_count), ("vertex_count", c.vertex_count),
                           ("file_identifier", c.file_identifier), ("file_type", c.file_type), ("name", c.name),
                           ("category", c.category)):
                self.cols[col].append(v)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame({
            **{c: pd.Series(self.cols[c], dtype=object) for c in _ROW_COLUMNS},
            "clip": pd.Series(self.cols["clip"], dtype="int32"),
            "weight": pd.Series(self.cols["weight"], dtype="float32"),
            "round": pd.Series(self.cols["round"], dtype="int32"),
            "clip_count": pd.Series(self.cols["clip_count"], dtype="Int32"),
            "duration_s": pd.Series([float("nan") if v is None else v for v in self.cols["duration_s"]], dtype="float32"),
            "static": pd.Series(self.cols["static"], dtype="boolean"),
            "face_count": pd.Series(self.cols["face_count"], dtype="Int64"),
            "vertex_count": pd.Series(self.cols["vertex_count"], dtype="Int64"),
        })
        if all(v is None for v in self.cols["category"]):  # only sources that know categories write the column
            df = df.drop(columns=["category"])
        return df


# ------------------------------------------------------------------------------------------ curate


def _open_source(cfg: CurateConfig, wanted: frozenset[str] | None) -> Scan:
    if cfg.source == "objaverse":
        from manifests.sources import objaverse

        return objaverse.scan(cfg.cache_dir, wanted)
    if cfg.source == "objaverse-xl":
        from manifests.sources import objaverse_xl

        return objaverse_xl.scan(cfg.cache_dir, cfg.xl_sources)
    if cfg.source == "local":
        from manifests.sources import local

        return local.scan(cfg.dir)
    from manifests.sources import procedural

    return procedural.scan(cfg.count, cfg.seed, cfg.assets_out, cfg.categories)


def _read_pending(c: Candidate) -> Dropped | None:
    """Read the candidate's cached file, if it is there (clips, names, durations, counts); the uri
    becomes the local path. A file that is not there leaves the candidate as it is."""
    if c.pending_file is None or not os.path.isfile(c.pending_file):
        c.pending_file = None
        return None
    path = Path(c.pending_file)
    c.pending_file = None
    try:
        info = read_gltf_info(path)
    except GltfError as exc:
        return Dropped(uid=c.uid, source=c.source, reason=exc.reason, detail=str(exc), uri=str(path))
    if c.clip_count is not None and c.clip_count != len(info.animations):
        log.debug("%s: the source says %d animation(s), %s has %d; using the file", c.uid, c.clip_count, path, len(info.animations))
    F.apply_file_info(c, info)
    c.uri = str(path.resolve())
    return None


def _consider(c: Candidate, cfg: CurateConfig, wanted: frozenset[str] | None, allowed: frozenset[str],
              previous: Previous | None, rows: Rows, sink: DropSink) -> None:
    """Run the filters on one candidate in their fixed order; keep it in `rows` or record why not."""
    d = (F.check_uid(c) or F.check_uids_file(c, wanted) or F.check_license(c, allowed) or F.check_age(c)
         or F.check_geometry(c, cfg.min_faces, cfg.max_faces, cfg.max_vertices))
    if d is None and c.pending_file is not None:
        d = _read_pending(c) or F.check_geometry(c, cfg.min_faces, cfg.max_faces, cfg.max_vertices)
    if d is not None:
        sink.add(d)
        return
    still = F.split_static_clips(c)
    d = F.check_static(c, cfg.include_static)
    if d is None and c.uid in rows.uids:
        d = F.drop(c, "duplicate", f"uid already taken by {rows.uids[c.uid]}")
    if d is not None:
        sink.add(d)
        return
    for s in still:
        sink.add(s)
    if c.clip_count is None:  # count unknown (Objaverse-XL, not cached): one row, clips enumerated at render time
        clips, static = [(0, "", None)], None
    elif not c.clips:  # static, kept because of --include-static
        clips, static = [(0, "", None)], True
    else:
        for s in F.cap_clips(c, cfg.max_clips_per_asset):
            sink.add(s)
        clips, static = [(k.index, k.name, k.duration_s) for k in c.clips], False
    if previous is not None:
        fresh = [k for k in clips if (c.uid, k[0]) not in previous.keys]
        for k in clips:
            if (c.uid, k[0]) in previous.keys:
                sink.add(F.drop(c, "duplicate", f"(uid, clip {k[0]}) is already in --previous", clip=k[0]))
        clips = fresh
        if not clips:
            return
    rows.add(c, clips, static)


def curate(cfg: CurateConfig, command: str | None = None, progress: bool | None = None) -> CurateResult:
    """Run one curation. Raises CurationError (missing cache file, ...) or ValueError (bad settings)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    wanted: frozenset[str] | None = None
    listed_invalid: list[str] = []
    if cfg.uids_file:
        valid, listed_invalid = F.read_uids_file(Path(cfg.uids_file).expanduser())
        wanted = frozenset(valid)
        log.info("--uids-file: %d uid(s), %d invalid", len(valid), len(listed_invalid))
    previous = None
    if cfg.previous:
        previous = read_previous(Path(cfg.previous).expanduser())
        if cfg.round <= previous.last_round:
            raise ValueError(f"--round {cfg.round} must be greater than the rounds already in --previous (up to {previous.last_round})")
    scan = _open_source(cfg, wanted)
    sink = DropSink(cfg.dropped_out)
    rows = Rows(cfg.round)
    allowed = frozenset(cfg.licenses)
    seen_wanted: set[str] = set()
    try:
        for uid in listed_invalid:
            sink.add(Dropped(uid=uid, source=cfg.source, reason="invalid_uid", detail="listed in --uids-file; breaks the uid rule"))
        disable = True if progress is False else None  # None: tqdm shows the bar only on a terminal
        with tqdm(total=scan.units, unit=f" {scan.unit_name}", desc=f"curate {cfg.source}", disable=disable, leave=False) as bar:
            for batch in scan.batches():
                if batch.dropped_frame is not None and len(batch.dropped_frame):
                    sink.add_frame(batch.dropped_frame)
                for item in batch.items:
                    if wanted is not None and item.uid in wanted:
                        seen_wanted.add(item.uid)
                    if isinstance(item, Dropped):
                        sink.add(item)
                    else:
                        _consider(item, cfg, wanted, allowed, previous, rows, sink)
                bar.update(1)
        if wanted is not None:
            for uid in sorted(wanted - seen_wanted):
                sink.add(Dropped(uid=uid, source=cfg.source, reason="not_in_source", detail="listed in --uids-file, not in the source"))
        df = rows.frame()
        if cfg.limit is not None:
            df = _apply_limit(df, cfg.limit, sink)
        first = previous.next_shard if previous is not None else 0
        df = assign_shards(df, cfg.shard_size, first_shard=first)
        manifest = write_manifest(df, Path(cfg.out).expanduser(), command=command, settings=cfg.settings())
        dropped_path = sink.close()
    except BaseException:
        sink.abort()
        raise
    for note in scan.notes:
        log.info("%s", note)
    shards = (int(df["shard"].min()), int(df["shard"].max())) if len(df) else None
    if not len(df):
        log.warning("curate: no row was kept; %s is an empty manifest", manifest)
    counts = {r: (a, c) for r, (a, c) in sink.counts.items()}
    return CurateResult(manifest=manifest, dropped_out=dropped_path, kept_assets=int(df["uid"].nunique()), kept_rows=len(df),
                        shards=shards, dropped=counts, seconds=time.perf_counter() - t0, notes=list(scan.notes))


def _apply_limit(df: pd.DataFrame, limit: int, sink: DropSink) -> pd.DataFrame:
    """Keep the first `limit` assets in shard order (sha256 of the uid); drop the rest as `limit`."""
    uids = sorted(df["uid"].unique().tolist(), key=order_key)
    if len(uids) <= limit:
        return df
    cut = set(uids[limit:])
    gone = df[df["uid"].isin(cut)].drop_duplicates("uid")
    for uid, source, uri in zip(gone["uid"], gone["source"], gone["uri"]):
        sink.add(Dropped(uid=uid, source=source, reason="limit", detail=f"beyond --limit {limit}", uri=uri))
    return df[~df["uid"].isin(cut)].reset_index(drop=True)


__all__ = ["CurateConfig", "CurateResult", "CurationError", "curate"]
