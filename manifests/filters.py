"""Curation filters: the fixed vocabulary of reasons, the candidate records and the filter functions.

A source turns its input (annotation records, files) into `Candidate`s, one per asset, or into
`Dropped` records when the input itself is broken. The filters below each look at one property of a
candidate and return a `Dropped` with a reason from `REASONS` when the asset must go; `curate` runs
them in a fixed order, so every dropped asset carries the first reason that applies:

    source errors -> not_in_uids_file -> license -> age_restricted -> face/vertex bounds
    -> (file read) -> face/vertex bounds -> static -> duplicate -> max_clips (per clip) -> limit

Light module: stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:
    import pandas as pd

    from manifests.gltf_info import GltfInfo

from contracts.uids import UID_RE, is_valid_uid

# The reasons a row can be dropped at curation (STYLE.md §4). Short words; `pipeline curate` prints a
# table of them and `--dropped-out` writes them next to each dropped uid.
REASONS: dict[str, str] = {
    "invalid_uid": f"the uid breaks the uid rule {UID_RE.pattern} and is never used in a path",
    "bad_annotation": "the source's record is missing a field or has a malformed one",
    "missing_file": "the asset file does not exist",
    "unreadable_file": "truncated file, not glTF, bad JSON or broken references in it",
    "not_gzip": "a .gz file whose content is not gzip (or a corrupt gzip stream)",
    "unsupported_format": "not glTF 2.0 / GLB (other file types, glTF 1.0)",
    "bad_animation": "an animation sampler input without min/max, or with broken indices",
    "not_in_uids_file": "--uids-file was given and does not list this uid",
    "not_in_source": "listed in --uids-file but the source has no such uid",
    "license": "licence not in the --licenses allow-list (or unknown)",
    "age_restricted": "the source marks the asset as age-restricted",
    "too_many_faces": "more faces than --max-faces",
    "too_few_faces": "fewer faces than --min-faces",
    "too_many_vertices": "more vertices than --max-vertices",
    "static": "no clip with a time span (asset), or a clip whose keyframes span no time (clip)",
    "duplicate": "the uid (or (uid, clip)) was already taken, by this run or by --previous",
    "max_clips": "clip beyond --max-clips-per-asset",
    "limit": "asset beyond --limit",
}

# Objaverse 1.0 / Sketchfab licence codes and the long forms other sources use for the same licences.
_LICENSE_ALIASES = {
    "cc0": "cc0", "cc0-1.0": "cc0", "cc0 1.0 universal": "cc0", "public domain": "cc0",
    "creative commons - public domain dedication": "cc0", "creative commons zero": "cc0",
    "by": "by", "cc-by": "by", "cc-by-4.0": "by", "cc-by-3.0": "by", "creative commons - attribution": "by",
    "by-sa": "by-sa", "cc-by-sa": "by-sa", "cc-by-sa-4.0": "by-sa", "cc-by-sa-3.0": "by-sa",
    "creative commons - attribution - share alike": "by-sa",
    "by-nd": "by-nd", "creative commons - attribution - no derivatives": "by-nd",
    "by-nc": "by-nc", "creative commons - attribution - non-commercial": "by-nc",
    "by-nc-sa": "by-nc-sa", "creative commons - attribution - non-commercial - share alike": "by-nc-sa",
    "by-nc-nd": "by-nc-nd", "creative commons - attribution - non-commercial - no derivatives": "by-nc-nd",
}


class CurationError(Exception):
    """A run that cannot go on (a missing or corrupt cache file, an unreadable input): the message
    names the file and says how to fix it. Bad assets never raise this; they become Dropped rows."""


def normalize_license(value: object) -> str | None:
    """The short code (`by`, `by-sa`, `cc0`, ...) for a source's licence string; unknown strings are
    returned stripped and lower-cased, None/empty stays None."""
    if not isinstance(value, str) or not value.strip():
        return None
    key = re.sub(r"\s+", " ", value.strip().lower())
    return _LICENSE_ALIASES.get(key, key)


@dataclass
class Clip:
    """One animation of an asset as far as curation knows it."""

    index: int                      # position in the glTF `animations` array (the manifest's `clip`)
    name: str = ""
    duration_s: float | None = None  # max - min over the clip's sampler inputs; None when not read


@dataclass
class Candidate:
    """One asset from a source, before filtering. Fields the source does not know stay None."""

    uid: str
    source: str
    uri: str
    clips: list[Clip] = field(default_factory=list)  # the clips to keep; empty with clip_count set = static
    clip_count: int | None = None   # animations in the asset; None = unknown (enumerated at render time)
    license: str | None = None
    sha256: str | None = None
    face_count: int | None = None
    vertex_count: int | None = None
    age_restricted: bool = False
    name: str | None = None
    file_identifier: str | None = None
    file_type: str | None = None
    uid_origin: str | None = None
    pending_file: str | Path | None = None  # a local file to read (clips, counts) once cheap filters passed
    check_license: bool = True      # local folders carry no licence: the allow-list does not apply
    category: str | None = None     # what kind of thing moves (procedural assets: their generator's category)


@dataclass(frozen=True)
class Dropped:
    """A dropped asset (clip None) or a dropped clip, with its reason and a human detail."""

    uid: str | None
    source: str
    reason: str
    detail: str
    clip: int | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown drop reason {self.reason!r}; add it to manifests.filters.REASONS")


def drop(c: Candidate, reason: str, detail: str, clip: int | None = None) -> Dropped:
    return Dropped(uid=c.uid, source=c.source, reason=reason, detail=detail, clip=clip, uri=c.uri)


@dataclass
class Batch:
    """What a source yields per unit of work (one metadata file, one local file, one parquet file).

    `dropped_frame` carries bulk drops as a DataFrame with the columns of `Dropped` (uid, source,
    reason, detail, clip, uri), for sources that drop millions of rows at once (Objaverse-XL).
    """

    items: list[Candidate | Dropped] = field(default_factory=list)
    dropped_frame: "pd.DataFrame | None" = None


@dataclass
class Scan:
    """A source, ready to iterate: `units` units of `unit_name`, `batches()` yields one Batch per unit."""

    units: int
    unit_name: str
    batches: Callable[[], Iterator[Batch]]
    notes: list[str] = field(default_factory=list)  # what the source wants said in the log at the end


def apply_file_info(c: Candidate, info: "GltfInfo") -> None:
    """Fill clips and counts of `c` from a file read with manifests.gltf_info (the file is the truth)."""
    c.clip_count = len(info.animations)
    c.clips = [Clip(index=a.index, name=a.name, duration_s=a.duration_s) for a in info.animations]
    c.face_count = info.face_count
    c.vertex_count = info.vertex_count
    c.pending_file = None


# ----------------------------------------------------------------------------------- asset filters


def check_uid(c: Candidate) -> Dropped | None:
    if not is_valid_uid(c.uid):
        return Dropped(uid=c.uid if isinstance(c.uid, str) else repr(c.uid), source=c.source, reason="invalid_uid",
                       detail=f"uid {c.uid!r} does not match {UID_RE.pattern}", uri=c.uri)
    return None


def check_uids_file(c: Candidate, wanted: frozenset[str] | None) -> Dropped | None:
    if wanted is not None and c.uid not in wanted:
        return drop(c, "not_in_uids_file", "not listed in --uids-file")
    return None


def check_license(c: Candidate, allowed: frozenset[str]) -> Dropped | None:
    if not c.check_license:
        return None
    code = normalize_license(c.license)
    if code is None:
        return drop(c, "license", "no licence given")
    if code not in allowed:
        return drop(c, "license", f"licence {c.license!r} not in {sorted(allowed)}")
    return None


def check_age(c: Candidate) -> Dropped | None:
    if c.age_restricted:
        return drop(c, "age_restricted", "marked age-restricted by the source")
    return None


def check_geometry(c: Candidate, min_faces: int, max_faces: int | None, max_vertices: int | None) -> Dropped | None:
    """Face/vertex bounds; counts the source does not know pass (they are checked once the file is read)."""
    if c.face_count is not None:
        if c.face_count < min_faces:
            return drop(c, "too_few_faces", f"{c.face_count} faces < --min-faces {min_faces}")
        if max_faces is not None and c.face_count > max_faces:
            return drop(c, "too_many_faces", f"{c.face_count} faces > --max-faces {max_faces}")
    if c.vertex_count is not None and max_vertices is not None and c.vertex_count > max_vertices:
        return drop(c, "too_many_vertices", f"{c.vertex_count} vertices > --max-vertices {max_vertices}")
    return None


def split_static_clips(c: Candidate) -> list[Dropped]:
    """Remove clips whose keyframes span no time (a single pose); return them as clip-level drops."""
    moving, still = [], []
    for clip in c.clips:
        (still if clip.duration_s is not None and clip.duration_s <= 0.0 else moving).append(clip)
    c.clips = moving
    return [drop(c, "static", f"clip {k.index} {k.name!r} has keyframes spanning 0 s", clip=k.index) for k in still]


def check_static(c: Candidate, include_static: bool) -> Dropped | None:
    """Drop assets known to have no moving clip, unless --include-static (then one static row).

    `clip_count` None means the source cannot say (Objaverse-XL without a local file): not static.
    """
    if c.clip_count is None or c.clips or include_static:
        return None
    if c.clip_count == 0:
        return drop(c, "static", "no animation")
    return drop(c, "static", f"none of its {c.clip_count} animation(s) spans any time")


def cap_clips(c: Candidate, max_clips: int | None) -> list[Dropped]:
    """Keep the first `max_clips` clips (glTF order); the rest are clip-level `max_clips` drops."""
    if not max_clips or len(c.clips) <= max_clips:
        return []
    extra = c.clips[max_clips:]
    c.clips = c.clips[:max_clips]
    return [drop(c, "max_clips", f"clip {k.index} beyond --max-clips-per-asset {max_clips}", clip=k.index) for k in extra]


def read_uids_file(path: str | Path) -> tuple[list[str], list[str]]:
    """Uids listed in `path` (one per line, `#` comments, blank lines ignored), split into
    (valid, invalid) in file order, without duplicates."""
    valid, invalid, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            uid = line.split("#", 1)[0].strip()
            if not uid or uid in seen:
                continue
            seen.add(uid)
            (valid if is_valid_uid(uid) else invalid).append(uid)
    return valid, invalid


def reason_table(counts: dict[str, tuple[int, int]]) -> Iterable[tuple[str, int, int, str]]:
    """(reason, assets, clips, meaning) in vocabulary order, for the reasons that occurred."""
    for reason, meaning in REASONS.items():
        if reason in counts:
            assets, clips = counts[reason]
            yield reason, assets, clips, meaning
