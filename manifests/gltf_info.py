"""What curation needs from a glTF 2.0 file, read without Blender.

`read_gltf_info(path)` reads a `.glb` (12-byte header, then the JSON chunk; the BIN chunk is only
walked past, never read), a `.gltf` (JSON) or either of them gzip-compressed (`.glb.gz`,
`.gltf.gz`). It returns the animations (name, time span over all sampler inputs, animated nodes),
face and vertex counts from accessor counts, and whether the asset is skinned or morphed.

Every problem raises `GltfError` with `reason` from `manifests.filters.REASONS` (`missing_file`,
`unreadable_file`, `not_gzip`, `unsupported_format`, `bad_animation`) and a message that names the file; curation turns
it into a dropped row. Stdlib only.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from contracts.gunzip import MAX_GUNZIP_BYTES, GunzipTooLarge, gunzip_into

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A  # "JSON" little-endian
CHUNK_BIN = 0x004E4942   # "BIN\0"
GZIP_MAGIC = b"\x1f\x8b"
MAX_JSON_BYTES = 512 << 20  # a JSON chunk this large is a broken header, not a model

# Triangles / lines / points per index count, by primitive mode (glTF 2.0 §3.7.2.1).
_MODE_NAMES = {0: "points", 1: "lines", 2: "line_loop", 3: "line_strip", 4: "triangles", 5: "triangle_strip", 6: "triangle_fan"}


class GltfError(Exception):
    """A glTF file curation cannot use; `reason` is a word from the curation vocabulary."""

    def __init__(self, reason: str, where: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.reason = reason
        self.where = where
        self.detail = detail


@dataclass(frozen=True)
class ClipInfo:
    """One glTF animation."""

    index: int
    name: str                 # "" when the animation has no name
    t_min: float              # earliest keyframe time over all sampler inputs (s)
    t_max: float              # latest keyframe time over all sampler inputs (s)
    channels: int
    target_nodes: tuple[int, ...]  # node ids the channels animate, sorted, without repeats

    @property
    def duration_s(self) -> float:
        return self.t_max - self.t_min


@dataclass(frozen=True)
class GltfInfo:
    """The facts about one glTF asset that curation uses."""

    kind: str                 # "glb" or "gltf"
    gzipped: bool
    animations: tuple[ClipInfo, ...]
    face_count: int           # triangles over all mesh primitives (each mesh counted once)
    line_count: int           # line segments (modes 1-3)
    point_count: int          # points (mode 0)
    vertex_count: int         # POSITION accessor counts summed over all mesh primitives
    skinned: bool
    morphed: bool
    generator: str

    @property
    def animated(self) -> bool:
        return len(self.animations) > 0


def gltf_kind(path: str | os.PathLike) -> tuple[str, bool] | None:
    """("glb" | "gltf", gzipped) from the file name, or None when it is neither."""
    name = os.fspath(path).lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    if name.endswith(".glb"):
        return "glb", gz
    if name.endswith(".gltf"):
        return "gltf", gz
    return None


def read_gltf_info(path: str | os.PathLike) -> GltfInfo:
    """Read `path` (.glb, .gltf, .glb.gz, .gltf.gz). Raises GltfError, never anything else for bad data."""
    where = os.fspath(path)
    kind = gltf_kind(path)
    if kind is None:
        raise GltfError("unsupported_format", where, "not a .glb/.gltf file (by its name)")
    fmt, gz = kind
    try:
        if gz:
            data = _gunzip(Path(path), where)
            f: BinaryIO = io.BytesIO(data)
            size = len(data)
            return _parse(f, size, fmt, True, where)
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return _parse(fh, size, fmt, False, where)
    except FileNotFoundError:
        raise GltfError("missing_file", where, "no such file (or a dangling symlink)") from None
    except OSError as exc:
        raise GltfError("unreadable_file", where, f"cannot read: {exc}") from None


def parse_gltf_bytes(data: bytes, fmt: str, where: str = "<bytes>") -> GltfInfo:
    """Same as read_gltf_info for content already in memory (`fmt` "glb" or "gltf", not gzipped)."""
    return _parse(io.BytesIO(data), len(data), fmt, False, where)


def _gunzip(path: Path, where: str) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head != GZIP_MAGIC:
        raise GltfError("not_gzip", where, f"named .gz but does not start with the gzip magic 1f 8b (starts with {head.hex() or 'nothing'})")
    buf = io.BytesIO()
    try:
        gunzip_into(path, buf)
    except GunzipTooLarge:
        raise GltfError("unreadable_file", where, f"decompresses to more than {MAX_GUNZIP_BYTES} bytes") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise GltfError("not_gzip", where, f"corrupt or truncated gzip stream ({exc})") from None
    return buf.getvalue()


def _parse(f: BinaryIO, size: int, fmt: str, gz: bool, where: str) -> GltfInfo:
    doc = _read_glb_json(f, size, where) if fmt == "glb" else _read_gltf_json(f, size, where)
    return _describe(doc, fmt, gz, where)


def _read_glb_json(f: BinaryIO, size: int, where: str) -> dict:
    header = f.read(12)
    if len(header) < 12:
        if header[:4] == GLB_MAGIC[: len(header)] and header:
            raise GltfError("unreadable_file", where, f"truncated: {size} bytes, shorter than the 12-byte GLB header")
        raise GltfError("unreadable_file", where, f"not a GLB file ({size} bytes, no 12-byte header)")
    magic, version, length = struct.unpack("<4sII", header)
    if magic != GLB_MAGIC:
        raise GltfError("unreadable_file", where, f"not a GLB file: magic {magic!r}, expected {GLB_MAGIC!r}")
    if version != 2:
        raise GltfError("unsupported_format", where, f"GLB container version {version}; only glTF 2.0 is supported")
    if length > size:
        raise GltfError("unreadable_file", where, f"truncated: the header declares {length} bytes, the file has {size}")
    if length < size:
        raise GltfError("unreadable_file", where, f"the header declares {length} bytes but the file has {size} (trailing data)")
    chunk = f.read(8)
    if len(chunk) < 8:
        raise GltfError("unreadable_file", where, "truncated: no JSON chunk header after the GLB header")
    clen, ctype = struct.unpack("<II", chunk)
    if ctype != CHUNK_JSON:
        raise GltfError("unreadable_file", where, f"first chunk has type 0x{ctype:08x}, expected JSON (0x{CHUNK_JSON:08x})")
    if 20 + clen > length or clen > MAX_JSON_BYTES:
        raise GltfError("unreadable_file", where, f"JSON chunk of {clen} bytes does not fit in the {length}-byte file")
    raw = f.read(clen)
    if len(raw) < clen:
        raise GltfError("unreadable_file", where, "truncated inside the JSON chunk")
    offset = 20 + clen
    while offset < length:  # walk the remaining chunks (BIN, or unknown ones that readers ignore)
        f.seek(offset)
        hdr = f.read(8)
        if len(hdr) < 8:
            raise GltfError("unreadable_file", where, f"truncated chunk header at byte {offset}")
        blen, btype = struct.unpack("<II", hdr)
        if offset + 8 + blen > length:
            what = "BIN" if btype == CHUNK_BIN else f"0x{btype:08x}"
            raise GltfError("unreadable_file", where, f"{what} chunk at byte {offset} declares {blen} bytes, past the end of the file")
        offset += 8 + blen
    return _loads(raw.rstrip(b" \x00\t\r\n"), where)


def _read_gltf_json(f: BinaryIO, size: int, where: str) -> dict:
    if size > MAX_JSON_BYTES:
        raise GltfError("unreadable_file", where, f"{size} bytes of glTF JSON is more than this reader accepts")
    raw = f.read()
    if raw[:4] == GLB_MAGIC:
        raise GltfError("unreadable_file", where, "named .gltf but holds binary GLB data")
    return _loads(raw, where)


def _loads(raw: bytes, where: str) -> dict:
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise GltfError("unreadable_file", where, f"glTF JSON is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise GltfError("unreadable_file", where, f"bad glTF JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise GltfError("unreadable_file", where, f"glTF JSON is a {type(doc).__name__}, not an object")
    asset = doc.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if not isinstance(version, str):
        raise GltfError("unreadable_file", where, "glTF JSON has no asset.version: not a glTF file")
    if not version.startswith("2."):
        raise GltfError("unsupported_format", where, f"glTF version {version}; only glTF 2.0 is supported")
    return doc


def _list(doc: dict, key: str, where: str) -> list:
    v = doc.get(key, [])
    if not isinstance(v, list):
        raise GltfError("unreadable_file", where, f"'{key}' is a {type(v).__name__}, not an array")
    return v


def _accessor(accessors: list, idx: Any, what: str, where: str, reason: str = "unreadable_file") -> dict:
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(accessors) or not isinstance(accessors[idx], dict):
        raise GltfError(reason, where, f"{what} refers to accessor {idx!r}, which does not exist ({len(accessors)} accessors)")
    return accessors[idx]


def _count(acc: dict, what: str, where: str) -> int:
    n = acc.get("count")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise GltfError("unreadable_file", where, f"{what}: accessor count {n!r} is not a non-negative integer")
    return n


def _describe(doc: dict, fmt: str, gz: bool, where: str) -> GltfInfo:
    accessors = _list(doc, "accessors", where)
    animations = tuple(_clip(i, a, accessors, where) for i, a in enumerate(_list(doc, "animations", where)))
    faces = lines = points = verts = 0
    morphed = False
    for mi, mesh in enumerate(_list(doc, "meshes", where)):
        prims = mesh.get("primitives", []) if isinstance(mesh, dict) else None
        if not isinstance(prims, list):
            raise GltfError("unreadable_file", where, f"mesh {mi} has no primitives array")
        for pi, prim in enumerate(prims):
            what = f"mesh {mi} primitive {pi}"
            if not isinstance(prim, dict) or not isinstance(prim.get("attributes"), dict):
                raise GltfError("unreadable_file", where, f"{what} has no attributes")
            n_pos = 0
            if "POSITION" in prim["attributes"]:
                n_pos = _count(_accessor(accessors, prim["attributes"]["POSITION"], f"{what} POSITION", where), what, where)
            n = _count(_accessor(accessors, prim["indices"], f"{what} indices", where), what, where) if "indices" in prim else n_pos
            mode = prim.get("mode", 4)
            if mode not in _MODE_NAMES:
                raise GltfError("unreadable_file", where, f"{what} has unknown mode {mode!r}")
            verts += n_pos
            if mode == 4:
                faces += n // 3
            elif mode in (5, 6):
                faces += max(n - 2, 0)
            elif mode == 1:
                lines += n // 2
            elif mode == 2:
                lines += n if n > 1 else 0
            elif mode == 3:
                lines += max(n - 1, 0)
            else:
                points += n
            targets = prim.get("targets")
            morphed = morphed or (isinstance(targets, list) and len(targets) > 0)
    skins = _list(doc, "skins", where)
    nodes = _list(doc, "nodes", where)
    skinned = len(skins) > 0 or any(isinstance(n, dict) and "skin" in n for n in nodes)
    gen = doc["asset"].get("generator", "")
    return GltfInfo(kind=fmt, gzipped=gz, animations=animations, face_count=faces, line_count=lines, point_count=points,
                    vertex_count=verts, skinned=skinned, morphed=morphed, generator=gen if isinstance(gen, str) else "")


def _clip(index: int, anim: Any, accessors: list, where: str) -> ClipInfo:
    if not isinstance(anim, dict):
        raise GltfError("bad_animation", where, f"animation {index} is not an object")
    name = anim.get("name")
    name = name if isinstance(name, str) else ""
    samplers = anim.get("samplers", [])
    channels = anim.get("channels", [])
    if not isinstance(samplers, list) or not isinstance(channels, list):
        raise GltfError("bad_animation", where, f"animation {index} has malformed samplers/channels")
    lo, hi = math.inf, -math.inf
    for si, sampler in enumerate(samplers):
        what = f"animation {index} sampler {si}"
        if not isinstance(sampler, dict):
            raise GltfError("bad_animation", where, f"{what} is not an object")
        acc = _accessor(accessors, sampler.get("input"), f"{what} input", where, reason="bad_animation")
        amin, amax = acc.get("min"), acc.get("max")
        if amin is None or amax is None:
            raise GltfError("bad_animation", where, f"{what}: input accessor {sampler.get('input')} has no min/max "
                            "(required by glTF 2.0 for animation inputs)")
        try:
            t0, t1 = float(amin[0]), float(amax[0])
        except (TypeError, ValueError, IndexError, KeyError):
            raise GltfError("bad_animation", where, f"{what}: input accessor min/max {amin!r}/{amax!r} are not numbers") from None
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            raise GltfError("bad_animation", where, f"{what}: input accessor min/max {t0}/{t1} are not a finite time span")
        lo, hi = min(lo, t0), max(hi, t1)
    targets = set()
    for ci, ch in enumerate(channels):
        if not isinstance(ch, dict):
            raise GltfError("bad_animation", where, f"animation {index} channel {ci} is not an object")
        s = ch.get("sampler")
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(samplers):
            raise GltfError("bad_animation", where, f"animation {index} channel {ci} refers to sampler {s!r}, which does not exist")
        target = ch.get("target")
        node = target.get("node") if isinstance(target, dict) else None
        if isinstance(node, int) and not isinstance(node, bool):
            targets.add(node)
    if not samplers:
        lo = hi = 0.0
    return ClipInfo(index=index, name=name, t_min=lo, t_max=hi, channels=len(channels), target_nodes=tuple(sorted(targets)))
