"""Render passes: how they leave Blender, and how they are encoded into shard members.

RGBA comes from Blender's own PNG writer (straight alpha, sRGB through the "Standard" view).
Depth and normals leave through a compositor File Output node as 32-bit EXR (Render Result pixels are
empty in background mode, DESIGN.md §7) and are read back with bpy. The encoders below need no bpy:
- depth: 16-bit grey PNG, `depth = value * depth_scale`, camera-space z in normalised units, 0 = no
  surface (alpha 0, or the background: Cycles' depth pass is 1e10 there).
- normals: 8-bit RGB PNG, world-space (= normalised-space) unit normal n stored as (n + 1) / 2 * 255,
  (0, 0, 0) where there is no surface.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEPTH_MAX_CODE = 65535
BACKGROUND_DEPTH = 1e9  # Cycles writes 1e10 where a pixel's depth sample hits nothing


def setup_compositor(out_dir: Path, normals: bool) -> dict[str, Path]:
    """A compositor that writes the depth (and normal) pass of every render to `out_dir`.

    Returns pass name -> the EXR path Blender writes (overwritten by each render).
    """
    import bpy

    scene = bpy.context.scene
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_normal = normals
    tree = bpy.data.node_groups.new("objaverse4d_passes", "CompositorNodeTree")
    scene.compositing_node_group = tree
    rl = tree.nodes.new("CompositorNodeRLayers")
    out = tree.nodes.new("CompositorNodeOutputFile")
    out.directory = str(out_dir)
    out.file_name = "pass_"
    out.format.media_type = "IMAGE"  # must come before OPEN_EXR can be chosen
    out.format.file_format = "OPEN_EXR"
    out.format.color_depth = "32"
    out.format.exr_codec = "NONE"
    paths = {}
    wanted = [("depth", "FLOAT", "Depth")] + ([("normal", "VECTOR", "Normal")] if normals else [])
    for name, socket_type, source in wanted:
        out.file_output_items.new(socket_type, name)
        tree.links.new(rl.outputs[source], out.inputs[name])
        paths[name] = out_dir / f"pass_{name}.exr"
    return paths


def read_exr(path: Path, channels: int) -> np.ndarray:
    """An EXR written by the File Output node -> float32 [H, W, channels], top row first."""
    import bpy

    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        img.colorspace_settings.is_data = True
        w, h = img.size
        c = img.channels
        buf = np.empty(w * h * c, dtype=np.float32)
        img.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(img)
    return buf.reshape(h, w, c)[::-1, :, :channels].copy()  # Blender stores the bottom row first


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that carry the picture; the rest (text with Cycles' render times, EXIF, offsets) are dropped so
# that the same render gives the same bytes.
PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"IDAT", b"IEND"}


def strip_png_metadata(png: bytes) -> bytes:
    """The PNG without its metadata chunks (no re-encoding: chunks are copied as they are)."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out, i = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while i + 8 <= len(png):
        (n,) = struct.unpack(">I", png[i:i + 4])
        kind = png[i + 4:i + 8]
        if kind in PNG_KEEP:
            out.append(png[i:i + 12 + n])
        i += 12 + n
    return b"".join(out)


def decode_rgba(data: bytes) -> np.ndarray:
    """PNG/WebP bytes -> uint8 [H, W, 4]."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


def to_webp(png: bytes, quality: int) -> bytes:
    """Re-encode a PNG as RGBA WebP; quality 100 means lossless."""
    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        im.convert("RGBA").save(buf, format="WEBP", lossless=quality >= 100, quality=quality, method=4, exact=True)
        return buf.getvalue()


def surface_mask(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels with a surface (alpha > 0 and a finite depth sample)."""
    return (alpha > 0) & np.isfinite(depth) & (depth > 0) & (depth < BACKGROUND_DEPTH)


def encode_depth(depth: np.ndarray, alpha: np.ndarray, depth_scale: float) -> bytes:
    """Camera z [H, W] (normalised units) -> 16-bit grey PNG bytes; 0 where there is no surface."""
    mask = surface_mask(depth, alpha)
    code = np.zeros(depth.shape, dtype=np.uint16)
    code[mask] = np.clip(np.rint(depth[mask] / depth_scale), 1, DEPTH_MAX_CODE).astype(np.uint16)
    return _png(Image.fromarray(code))


def decode_depth(data: bytes, depth_scale: float) -> np.ndarray:
    """16-bit depth PNG bytes -> float32 [H, W] camera z; 0 = no surface.

    (WebDataset's generic decoders would turn it into 8 bits, DESIGN.md §7: decode it with this.)
    """
    with Image.open(io.BytesIO(data)) as im:
        code = np.asarray(im, dtype=np.uint16) if im.mode.startswith("I;16") else np.asarray(im).astype(np.uint16)
    return code.astype(np.float32) * np.float32(depth_scale)


def encode_normal(normal: np.ndarray, mask: np.ndarray) -> bytes:
    """World-space normals [H, W, 3] -> 8-bit RGB PNG bytes; black where `mask` [H, W] is False."""
    n = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
    rgb = np.clip(np.rint((n + 1.0) * 127.5), 0, 255).astype(np.uint8)
    rgb[~mask] = 0
    return _png(Image.fromarray(rgb))


def decode_normal(data: bytes) -> np.ndarray:
    """Normal PNG bytes -> float32 [H, W, 3] unit vectors (zero where there is no surface)."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB")).astype(np.float32)
    n = rgb / 127.5 - 1.0
    n[(rgb == 0).all(axis=-1)] = 0.0
    return n


def depth_scale_for(max_distance: float) -> float:
    """A depth_scale that represents camera z up to `max_distance` in 16 bits."""
    return float(max_distance) / DEPTH_MAX_CODE


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def image_stats(alpha: np.ndarray) -> dict[str, Any]:
    """Coverage of one alpha [H, W] uint8 image and whether the object touches the image border."""
    cov = alpha > 0
    border = bool(cov[0].any() or cov[-1].any() or cov[:, 0].any() or cov[:, -1].any())
    return {"coverage": float(cov.mean()), "touches_border": border}
