"""Build small Objaverse / Objaverse-XL caches on disk, in exactly the packages' layouts, from the real
glTF files in ../shared/assets/gltf; and derive broken variants of those files.

Objaverse 1.0 (what `objaverse` reads under BASE_PATH):
    hf-objaverse-v1/object-paths.json.gz        {uid: "glbs/000-NNN/<uid>.glb"}
    hf-objaverse-v1/metadata/000-NNN.json.gz    {uid: annotation record}
    hf-objaverse-v1/glbs/000-NNN/<uid>.glb
Objaverse-XL (what `objaverse.xl` reads under download_dir):
    <source>/<source>.parquet                   fileIdentifier, source, license, fileType, sha256, metadata
    hf-objaverse-v1/glbs/000-NNN/<uid>.glb      sketchfab objects
    smithsonian/objects/<uuid5(fileIdentifier)>.glb
    github/repos/<org>/<repo>/<path>            (save_repo_format="files")
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import pandas as pd


def uid_for(name: str) -> str:
    """A 32-hex uid like Objaverse's, stable per name."""
    return hashlib.md5(name.encode()).hexdigest()


def annotation(uid: str, name: str, *, animations: int = 0, license: str = "by", faces: int = 1000, vertices: int = 600,
               age_restricted: bool = False) -> dict[str, Any]:
    """A record with the fields and shapes of a real Objaverse 1.0 annotation (Sketchfab API v3 model)."""
    thumbs = [{"uid": uid_for(f"{uid}{w}"), "size": w * 20, "width": w, "height": w * 9 // 16,
               "url": f"https://media.sketchfab.com/models/{uid}/thumbnails/{uid_for(uid)}/{uid_for(str(w))}.jpeg"}
              for w in (1920, 1024, 720, 256, 64)]
    user = uid_for(f"user-{name}")
    return {
        "uri": f"https://api.sketchfab.com/v3/models/{uid}", "uid": uid, "name": name, "staffpickedAt": None,
        "viewCount": 12, "likeCount": 1, "animationCount": animations,
        "viewerUrl": f"https://sketchfab.com/3d-models/{uid}", "embedUrl": f"https://sketchfab.com/models/{uid}/embed",
        "commentCount": 0, "isDownloadable": True, "publishedAt": "2021-03-18T09:36:25.430631",
        "tags": [{"name": "test", "slug": "test", "uri": "https://api.sketchfab.com/v3/tags/test"}], "categories": [],
        "thumbnails": {"images": thumbs},
        "user": {"uid": user, "username": "someone", "displayName": "Some One", "profileUrl": "https://sketchfab.com/someone",
                 "account": "basic", "avatar": {"uri": f"https://api.sketchfab.com/v3/avatars/{user}", "images": []},
                 "uri": f"https://api.sketchfab.com/v3/users/{user}"},
        "description": f"{name} for tests", "faceCount": faces, "createdAt": "2021-03-18T09:31:52.190927",
        "vertexCount": vertices, "isAgeRestricted": age_restricted,
        "archives": {"glb": {"textureCount": 0, "size": 1000, "type": "glb", "textureMaxResolution": None,
                             "faceCount": faces, "vertexCount": vertices}},
        "license": license,
    }


def write_gz_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(data, f)


def build_objaverse_cache(root: Path, folders: dict[str, dict[str, dict | None]], glbs: dict[str, Path | bytes] | None = None,
                          extra_paths: dict[str, str] | None = None) -> Path:
    """Write an Objaverse 1.0 cache under `root`.

    folders: {"000-000": {uid: record or None (listed in object-paths, no record)}}
    glbs: {uid: source file or raw bytes} copied to glbs/<folder>/<uid>.glb
    extra_paths: more object-paths entries written verbatim (bad uids, bad paths)
    """
    base = root / "hf-objaverse-v1"
    paths: dict[str, str] = {}
    for folder, records in folders.items():
        for uid in records:
            paths[uid] = f"glbs/{folder}/{uid}.glb"
        write_gz_json(base / "metadata" / f"{folder}.json.gz", {u: r for u, r in records.items() if r is not None})
    paths.update(extra_paths or {})
    write_gz_json(base / "object-paths.json.gz", paths)
    for uid, src in (glbs or {}).items():
        dst = base / paths[uid]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            dst.write_bytes(src)
        else:
            shutil.copyfile(src, dst)
    return root


def write_xl_parquet(root: Path, source: str, rows: list[dict[str, Any]]) -> Path:
    """One Objaverse-XL annotation file with the package's columns."""
    df = pd.DataFrame(rows, columns=["fileIdentifier", "source", "license", "fileType", "sha256", "metadata"])
    path = root / source / f"{source}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ broken / edited files


def split_glb(data: bytes) -> tuple[dict, bytes]:
    """(JSON document, the rest of the file after the JSON chunk) of a well-formed GLB."""
    clen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + clen])
    return doc, data[20 + clen:]


def build_glb(doc: dict, rest: bytes = b"") -> bytes:
    """A GLB from a JSON document and the chunks that follow it (e.g. the original BIN chunk)."""
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 4)
    body = struct.pack("<II", len(raw), 0x4E4F534A) + raw + rest
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def edit_glb(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """Copy the real GLB `src` to `dst`, applying `edit` to its JSON document; the BIN chunk is kept."""
    doc, rest = split_glb(src.read_bytes())
    edit(doc)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(build_glb(doc, rest))
    return dst
