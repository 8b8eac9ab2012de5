"""Read samples back out of a shard tar without WebDataset and without unpickling anything.

Used by `pipeline preview`, `pipeline --retry-failed` and tests. Members of one sample are
contiguous in the tar (WebDataset's convention), keyed by the name up to the first dot. A tar is a
local path or a URL (http(s), s3://...), streamed once through `contracts.reads`.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from contracts import reads
from contracts.layout import MEMBER_RE


@dataclass
class ShardSample:
    key: str
    meta: dict                                          # the {key}.json
    members: dict[str, bytes] = field(default_factory=dict)  # every member's bytes, by full name

    def image_name(self, t: int, v: int) -> str | None:
        for ext in ("png", "webp"):
            name = f"{self.key}.t{t:03d}.v{v:03d}.{ext}"
            if name in self.members:
                return name
        return None

    def rgba(self, t: int, v: int) -> np.ndarray:
        """[H, W, 4] uint8, straight alpha."""
        from PIL import Image

        name = self.image_name(t, v)
        if name is None:
            raise KeyError(f"{self.key}: no image for t={t} v={v}")
        with Image.open(io.BytesIO(self.members[name])) as im:
            return np.asarray(im.convert("RGBA"))

    def depth(self, t: int, v: int) -> np.ndarray:
        """[H, W] float32 camera-space z in normalised units; 0 = no surface."""
        from PIL import Image

        name = f"{self.key}.t{t:03d}.v{v:03d}.depth.png"
        with Image.open(io.BytesIO(self.members[name])) as im:
            raw = np.asarray(im).astype(np.float32)
        return raw * float(self.meta["depth_scale"])


def iter_shard(tar_path: str | Path, keys: set[str] | None = None) -> Iterator[ShardSample]:
    """Yield the samples of a shard tar (path or URL) in order; only those in `keys` when given."""
    current: ShardSample | None = None
    with reads.open_stream(str(tar_path)) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
        for info in tf:
            if not info.isfile():
                continue
            name = info.name
            key = name.split(".", 1)[0]
            if current is not None and key != current.key:
                if current.meta:
                    yield current
                current = None
            if keys is not None and key not in keys:
                continue
            if current is None:
                current = ShardSample(key=key, meta={})
            data = tf.extractfile(info).read()  # type: ignore[union-attr]
            if name == f"{key}.json":
                current.meta = json.loads(data)
            current.members[name] = data
        if current is not None and current.meta:
            yield current


def member_index(names: list[str]) -> dict[tuple[int, int], dict[str, str]]:
    """(t, v) -> {kind: member name} for the image-like members in `names`."""
    out: dict[tuple[int, int], dict[str, str]] = {}
    for name in names:
        m = MEMBER_RE.match(name)
        if m:
            out.setdefault((int(m.group("t")), int(m.group("v"))), {})[m.group("kind")] = name
    return out
