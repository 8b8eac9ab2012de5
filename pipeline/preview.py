"""Contact sheets (views x times) and animated GIFs of rendered samples, for eyes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from contracts import storage
from contracts.layout import KEY_RE, is_committed, tar_name
from contracts.shardread import ShardSample, iter_shard

log = logging.getLogger(__name__)


def _checker(h: int, w: int, cell: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    return (0.75 + 0.15 * board)[..., None].repeat(3, axis=2)  # [H, W, 3] light grey checks


def composite(rgba: np.ndarray) -> np.ndarray:
    """Straight RGBA [H, W, 4] uint8 over a checkerboard -> [H, W, 3] uint8 (alpha stays visible)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    bg = _checker(*rgba.shape[:2])
    return np.clip((rgb * a + bg * (1 - a)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def depth_to_rgb(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """[H, W] depth (0 = none) -> [H, W, 3] uint8, near bright, far dark, background black.

    `lo`/`hi` fix the colour scale (pass the range of a whole sample so that one surface keeps its
    colour across times and views); by default the image's own range is used."""
    out = np.zeros(depth.shape + (3,), np.uint8)
    m = depth > 0
    if m.any():
        lo = float(depth[m].min()) if lo is None else lo
        hi = float(depth[m].max()) if hi is None else hi
        x = 1.0 - (depth[m] - lo) / max(hi - lo, 1e-6)
        ramp = np.stack([0.2 + 0.8 * x, 0.3 + 0.6 * x, 1.0 - 0.6 * x], axis=-1)
        out[m] = (ramp * 255).astype(np.uint8)
    return out


def _label(img, text: str):
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 6 * len(text) + 3, 11], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))


def contact_sheet(sample: ShardSample, max_views: int = 16, max_times: int = 12, with_depth: bool = True):
    """A PIL image: one row per view, one column per time (evenly thinned to max_times).

    With depth, each view row is followed by its depth row.
    """
    from PIL import Image

    T, V = int(sample.meta["num_frames"]), int(sample.meta["num_views"])
    W, H = int(sample.meta["width"]), int(sample.meta["height"])
    ts = sorted(set(np.linspace(0, T - 1, min(T, max_times)).round().astype(int).tolist()))
    vs = list(range(min(V, max_views)))
    rows_per_view = 2 if with_depth else 1
    header = 14
    sheet = Image.new("RGB", (len(ts) * W, header + len(vs) * rows_per_view * H), (32, 32, 32))
    times = sample.meta.get("times", [0.0] * T)
    depths = {(t, v): sample.depth(t, v) for t in ts for v in vs} if with_depth else {}
    surf = [d[d > 0] for d in depths.values() if (d > 0).any()]
    lo = min(float(x.min()) for x in surf) if surf else None  # one colour scale for the whole sheet
    hi = max(float(x.max()) for x in surf) if surf else None
    for ci, t in enumerate(ts):
        cell = Image.new("RGB", (W, header), (32, 32, 32))
        _label(cell, f"t={times[t]:.2f}")
        sheet.paste(cell, (ci * W, 0))
        for ri, v in enumerate(vs):
            y = header + ri * rows_per_view * H
            tile = Image.fromarray(composite(sample.rgba(t, v)))
            if ci == 0:
                _label(tile, f"v{v}")
            sheet.paste(tile, (ci * W, y))
            if with_depth:
                sheet.paste(Image.fromarray(depth_to_rgb(depths[(t, v)], lo, hi)), (ci * W, y + H))
    return sheet


def animation_frames(sample: ShardSample, max_views: int = 8):
    """One PIL frame per time; each frame tiles up to max_views views in a row-major grid."""
    from PIL import Image

    T, V = int(sample.meta["num_frames"]), int(sample.meta["num_views"])
    W, H = int(sample.meta["width"]), int(sample.meta["height"])
    vs = list(range(min(V, max_views)))
    cols = min(len(vs), 4)
    rows = (len(vs) + cols - 1) // cols
    frames = []
    for t in range(T):
        frame = Image.new("RGB", (cols * W, rows * H), (32, 32, 32))
        for i, v in enumerate(vs):
            frame.paste(Image.fromarray(composite(sample.rgba(t, v))), ((i % cols) * W, (i // cols) * H))
        frames.append(frame)
    return frames


def preview_shard(directory: str | Path, shard: int, out_dir: str | Path | None = None,
                  keys: list[str] | None = None, limit: int | None = 8, with_depth: bool = True) -> list[Path]:
    """Write `{key}.png` (contact sheet) and `{key}.gif` per sample; return the written paths.
    `directory` is a folder or an object-store URL; the default output folder of a URL is
    ./previews/shard-NNNNNN (previews are for eyes, always local)."""
    store = storage.open_store(directory)
    tar = store.child(tar_name(shard))
    if not store.exists(tar_name(shard)):
        raise FileNotFoundError(f"{tar}: no such shard tar")
    if not is_committed(directory, shard):
        log.warning("shard %d in %s is not committed (no stats.json): previewing what is there", shard, directory)
    base = Path("previews") if store.remote else Path(directory) / "previews"
    out = Path(out_dir) if out_dir else base / f"shard-{shard:06d}"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    wanted = set(keys) if keys else None
    for sample in iter_shard(tar, wanted):
        if not KEY_RE.match(sample.key):  # a member name is data: never a path outside `out`
            log.warning("%s: %r is not a sample key ({uid}_{clip:03d}); left out of the preview", tar, sample.key)
            continue
        sheet = contact_sheet(sample, with_depth=with_depth)
        p = out / f"{sample.key}.png"
        sheet.save(p)
        frames = animation_frames(sample)
        g = out / f"{sample.key}.gif"
        fps = float(sample.meta.get("num_frames", 1)) / max(float(sample.meta.get("duration_s") or 1.0), 1e-3)
        frames[0].save(g, save_all=True, append_images=frames[1:], duration=max(40, int(1000 / max(fps, 1e-3))), loop=0)
        written += [p, g]
        if limit is not None and len(written) >= 2 * limit:
            break
    if wanted:
        found = {p.stem for p in written}
        missing = sorted(wanted - found)
        if missing:
            raise KeyError(f"shard {shard}: no sample with key(s) {', '.join(missing)}")
    return written
