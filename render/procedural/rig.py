"""Skeletons for procedural creatures: bone specs -> a Blender armature, a skinned mesh of tapered tubes
(one per bone, weights blended into the parent near each joint), and rigid accessories parented to bones.

Coordinates are Blender's: +Z up, creatures face -Y. Bone rotations in clips are given about axes in the
armature's rest frame (`Rig.local`), so a knee's hinge axis turns with the thigh above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Matrix

from render.procedural.anim import quat_mul
from render.procedural.mesh import mesh_object


@dataclass
class Bone:
    """One bone: `head` -> `tail` in armature space; `radius` (at head, at tail) gives it a tube, None none;
    `mat` the material index of its tube; `flat` squashes the tube's cross-section (wings, fins, leaves)."""

    name: str
    head: tuple
    tail: tuple
    parent: str | None = None
    radius: tuple[float, float] | None = None
    mat: int = 0
    flat: float = 1.0
    up: tuple = (0.0, 0.0, 1.0)


@dataclass
class Rig:
    armature: bpy.types.Object
    bones: dict[str, Bone]
    rest_q: dict[str, np.ndarray] = field(default_factory=dict)  # bone -> rest rotation (w, x, y, z) in armature space
    objects: list = field(default_factory=list)  # rigid objects that clips may key (location, rotation, scale)

    def local(self, bone: str, q_arm: np.ndarray) -> np.ndarray:
        """Armature-space rotations [F, 4] of `bone` about its head -> its pose-bone rotation_quaternion [F, 4]."""
        qr = self.rest_q[bone]
        conj = qr * [1, -1, -1, -1]
        return quat_mul(quat_mul(conj[None], q_arm), qr[None])


def build_armature(name: str, bones: list[Bone]) -> Rig:
    """An armature object at the origin with `bones` (parents first)."""
    arm = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    made = {}
    for b in bones:
        eb = arm.data.edit_bones.new(b.name)
        eb.head, eb.tail = tuple(map(float, b.head)), tuple(map(float, b.tail))
        eb.roll = 0.0
        if b.parent is not None:
            eb.parent = made[b.parent]
            eb.use_connect = False
        made[b.name] = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    rig = Rig(arm, {b.name: b for b in bones})
    for b in bones:
        rig.rest_q[b.name] = np.array(arm.data.bones[b.name].matrix_local.to_quaternion())
        arm.pose.bones[b.name].rotation_mode = "QUATERNION"
    arm.rotation_mode = "QUATERNION"
    return rig


def attach(rig: Rig, bone: str, name: str, geometry: tuple, material, smooth: bool = True) -> bpy.types.Object:
    """A rigid mesh (verts in armature rest space) riding on `bone` (bone parenting: a child node of the joint)."""
    verts, faces, uvs = geometry[:3]
    obj = mesh_object(name, verts, faces, uvs, smooth, material)
    obj.parent = rig.armature
    obj.parent_type = "BONE"
    obj.parent_bone = bone
    # a bone child sits at the bone's tail: undo that so that verts stay where they were given
    pb = rig.armature.data.bones[bone]
    m = np.array(pb.matrix_local)
    m[:3, 3] = np.array(pb.tail_local)
    obj.matrix_parent_inverse = Matrix(np.linalg.inv(m).tolist())
    return obj
