"""GLB export of the current scene: one glTF animation per clip in clip order, via a temporary name."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import struct
from pathlib import Path

import bpy

log = logging.getLogger("render.procedural")


def order_animations(glb: bytes, clip_names: list[str]) -> bytes:
    """Return `glb` with its animations in clip order (the exporter orders them by the objects it visits).

    glTF references animations by nobody's index, so reordering the JSON chunk's list is safe; the
    binary chunk is kept as it is. Raises when the exported animations are not exactly the clips.
    """
    magic, version, _ = struct.unpack_from("<III", glb, 0)
    json_len, json_type = struct.unpack_from("<II", glb, 12)
    if magic != 0x46546C67 or version != 2 or json_type != 0x4E4F534A:
        raise ValueError("the glTF exporter did not write a GLB 2.0 file")
    doc = json.loads(glb[20 : 20 + json_len])
    by_name = {a.get("name"): a for a in doc.get("animations", [])}
    if sorted(by_name) != sorted(clip_names) or len(by_name) != len(doc.get("animations", [])):
        raise RuntimeError(f"exported animations {sorted(by_name)} are not the clips {sorted(clip_names)}")
    doc["animations"] = [by_name[n] for n in clip_names]
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    rest = glb[20 + json_len :]
    header = struct.pack("<III", magic, version, 12 + 8 + len(text) + len(rest))
    return header + struct.pack("<II", len(text), json_type) + text + rest


def export(path: Path, clip_names: list[str]) -> None:
    """Write the scene as GLB to `path`, one glTF animation per clip in clip order, via a temporary name."""
    tmp = path.with_name(f".{path.stem}.partial.glb")
    debug_value = bpy.app.debug_value
    bpy.app.debug_value = 1  # the exporter maps 1 to WARNING; its INFO lines would flood the console
    chatter = io.StringIO()  # it also prints blank lines and a Draco notice on stdout
    try:
        with contextlib.redirect_stdout(chatter):
            bpy.ops.export_scene.gltf(
                filepath=str(tmp), export_format="GLB", use_selection=False, export_apply=False,
                export_animations=True, export_animation_mode="ACTIONS", export_merge_animation="ACTION",
                export_force_sampling=True, export_optimize_animation_size=False, export_frame_range=False,
                export_skins=True, export_morph=True, export_morph_normal=True, export_image_format="AUTO",
                export_extras=False, export_cameras=False, export_lights=False,
            )
        tmp.write_bytes(order_animations(tmp.read_bytes(), clip_names))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bpy.app.debug_value = debug_value
        if chatter.getvalue().strip():
            log.debug("glTF exporter said: %s", chatter.getvalue().strip())
