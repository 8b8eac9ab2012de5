"""Keyframing for procedural clips: one Blender action per clip with a slot per animated ID, laid on single-strip
NLA tracks (glTF export in ACTIONS mode then writes one named animation per clip), and quaternion helpers."""

from __future__ import annotations

import numpy as np

FPS = 24  # frame rate of every clip; glTF stores seconds, the importer maps them back at scene fps


def fcurves(action, owner, id_type: str, track: str, curves: dict[str, np.ndarray], frames: np.ndarray) -> None:
    """Key `curves` (data path -> values [F, C]) on `owner` in a new slot of `action`, on its own NLA track."""
    from bpy_extras import anim_utils

    slot = action.slots.new(id_type=id_type, name=owner.name)
    bag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
    for path, values in curves.items():
        values = np.asarray(values, dtype=np.float64).reshape(len(frames), -1)  # [F, C]
        for c in range(values.shape[1]):
            fc = bag.fcurves.new(path, index=c)
            fc.keyframe_points.add(len(frames))
            fc.keyframe_points.foreach_set("co", np.stack([frames, values[:, c]], -1).astype(np.float32).ravel())
            for kp in fc.keyframe_points:
                kp.interpolation = "LINEAR"
            fc.update()
    ad = owner.animation_data or owner.animation_data_create()
    nla = ad.nla_tracks.new()
    nla.name = track
    strip = nla.strips.new(track, 0, action)
    strip.action_slot = slot


def quat_about(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions [F, 4] (w, x, y, z) for rotations by `angle` [F] about the unit `axis` [3]."""
    return np.concatenate([np.cos(angle / 2)[:, None], np.sin(angle / 2)[:, None] * axis[None]], -1)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions [..., 4] (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)
