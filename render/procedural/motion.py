"""Clips of procedural assets: bone rotations about armature-space axes, root motion, keyed objects and
shape keys gathered over a clip's frames, then keyed as one action (anim.fcurves) named after the clip."""

from __future__ import annotations

import bpy
import numpy as np

from render.procedural.anim import FPS, fcurves, quat_about, quat_mul

X, Y, Z = np.eye(3)
FWD = -Y  # creatures and vehicles face -Y (Blender's front view)


def toward(d, target) -> np.ndarray:
    """The axis about which a positive rotation turns direction `d` toward `target`."""
    k = np.cross(np.asarray(d, float), np.asarray(target, float))
    return k / max(np.linalg.norm(k), 1e-9)


class Motion:
    """One clip over frames 0..n (n = seconds * FPS); `t` [F] runs 0..1, `wave(c, p)` = 2 pi (c t + p)."""

    def __init__(self, name: str, seconds: float, rig=None) -> None:
        self.name, self.rig = name, rig
        self.n = max(2, int(round(seconds * FPS)))
        self.frames = np.arange(self.n + 1, dtype=np.float64)
        self.t = self.frames / self.n
        self.rot: dict[str, np.ndarray] = {}
        self.root_loc = np.zeros((self.n + 1, 3))
        self.root_q = np.tile([1.0, 0.0, 0.0, 0.0], (self.n + 1, 1))
        self.obj_curves: dict[str, tuple[object, dict]] = {}
        self.key_curves: dict[str, tuple[object, dict]] = {}

    def wave(self, cycles: float, phase: float = 0.0) -> np.ndarray:
        return 2 * np.pi * (cycles * self.t + phase)

    def rotate(self, bone: str, axis, angle) -> None:
        """Turn `bone` by `angle` [F] (radians) about the armature-space `axis`, after what it already does."""
        axis = np.asarray(axis, float) / np.linalg.norm(axis)
        q = quat_about(axis, np.broadcast_to(np.asarray(angle, float), self.t.shape))
        self.rot[bone] = quat_mul(q, self.rot[bone]) if bone in self.rot else q

    def turn_root(self, axis, angle) -> None:
        q = quat_about(np.asarray(axis, float) / np.linalg.norm(axis), np.broadcast_to(np.asarray(angle, float), self.t.shape))
        self.root_q = quat_mul(q, self.root_q)

    def key_object(self, obj, **curves) -> None:
        """Key `obj`'s location / rotation_quaternion / scale ([F, 3] / [F, 4] / [F, 3])."""
        entry = self.obj_curves.setdefault(obj.name, (obj, {}))
        entry[1].update(curves)

    def key_shapes(self, key, values: dict[str, np.ndarray]) -> None:
        """Key shape-key values ([F] each) of the shape-key datablock `key`."""
        entry = self.key_curves.setdefault(key.name, (key, {}))
        entry[1].update({f'key_blocks["{k}"].value': v for k, v in values.items()})

    def commit(self, root=None) -> str:
        """Key everything into one action named after the clip; `root` (default the rig's armature) carries
        the root motion. Returns the clip name."""
        action = bpy.data.actions.new(self.name)
        root = root if root is not None else (self.rig.armature if self.rig is not None else None)
        if root is not None:
            curves = {}
            moving_root = np.ptp(self.root_loc, axis=0).max() > 0 or np.ptp(self.root_q, axis=0).max() > 0
            if moving_root:
                curves["location"] = np.asarray(root.location)[None] + self.root_loc
                curves["rotation_quaternion"] = self.root_q
            if self.rig is not None and root is self.rig.armature:
                for bone in sorted(self.rot):
                    curves[f'pose.bones["{bone}"].rotation_quaternion'] = self.rig.local(bone, self.rot[bone])
            if root.name in self.obj_curves:
                curves.update(self.obj_curves.pop(root.name)[1])
            if curves:
                fcurves(action, root, "OBJECT", self.name, curves, self.frames)
        for name in sorted(self.obj_curves):
            obj, curves = self.obj_curves[name]
            fcurves(action, obj, "OBJECT", self.name, curves, self.frames)
        for name in sorted(self.key_curves):
            key, curves = self.key_curves[name]
            fcurves(action, key, "KEY", self.name, curves, self.frames)
        return self.name


def snapshot() -> dict:
    """Every object's transform now (the rest pose), for `rest`."""
    out = {}
    for obj in bpy.data.objects:
        obj.rotation_mode = "QUATERNION"
        out[obj.name] = (tuple(obj.location), tuple(obj.rotation_quaternion), tuple(obj.scale))
    return out


def rest(saved: dict) -> None:
    """Leave the scene in its rest pose, which the exporter writes as the file's default state (see legacy._rest:
    NLA evaluation off, objects back to `saved`, pose bones identity, shape keys 0)."""
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        if idb.animation_data is not None:
            idb.animation_data.use_nla = False
    for obj in bpy.data.objects:
        if obj.name in saved:
            obj.location, obj.rotation_quaternion, obj.scale = saved[obj.name]
        if obj.pose is not None:
            for pb in obj.pose.bones:
                pb.location, pb.rotation_quaternion, pb.scale = (0, 0, 0), (1, 0, 0, 0), (1, 1, 1)
    for key in bpy.data.shape_keys:
        for kb in key.key_blocks:
            kb.value = 0.0
    bpy.context.scene.frame_set(0)


def spin(axis, angle: np.ndarray, rest_q=(1.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    """Object rotation_quaternion [F, 4]: `rest_q` then a turn by `angle` [F] about `axis` in the parent's frame."""
    return quat_mul(quat_about(np.asarray(axis, float) / np.linalg.norm(axis), angle), np.asarray(rest_q, float)[None])
