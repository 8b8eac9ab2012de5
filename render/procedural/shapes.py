"""Shape augmentations (LRM-Zero's Zeroverse lessons): height-field bumps along normals, boolean differences
(concavities) baked into rigid parts, and thin parts (wires, antennae, spokes) as narrow tubes. Every one is
off when `gen.shapes` is off (the ablation); the `gen.shape` stream draws them."""

from __future__ import annotations

import bpy
import numpy as np

from render.procedural.common import Gen
from render.procedural.mesh import box, ellipsoid, mesh_object, tube, vertex_normals


def bumps(gen: Gen, verts: np.ndarray, faces: list, amplitude: float) -> np.ndarray:
    """`verts` moved along their normals by a sum of random plane waves (a height field on the surface)."""
    if not gen.shapes or amplitude <= 0:
        return verts
    rng = gen.shape
    h = np.zeros(len(verts))
    for _ in range(6):
        k = rng.normal(size=3) * rng.uniform(4, 14)
        h += np.sin(verts @ k + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 1.0)
    h = h / 6 * amplitude * rng.uniform(0.5, 1.0)
    return verts + vertex_normals(verts, faces) * h[:, None]


def boolean_cut(gen: Gen, obj, cutters: list[tuple]) -> int:
    """Subtract each cutter (verts, faces) from the mesh of `obj` (Blender's exact boolean, baked into the
    mesh: the exported file holds the concave result). Returns how many cuts were made (0 with shapes off)."""
    if not gen.shapes or not cutters:
        return 0
    made = []
    for n, (verts, faces) in enumerate(cutters):
        cutter = mesh_object(f"{obj.name}_cut{n}", verts, faces, np.zeros((sum(len(f) for f in faces), 2)), False,
                             obj.data.materials[0])
        mod = obj.modifiers.new(f"cut{n}", "BOOLEAN")
        mod.operation, mod.solver, mod.object = "DIFFERENCE", "EXACT", cutter
        made.append(cutter)
    dg = bpy.context.evaluated_depsgraph_get()
    baked = bpy.data.meshes.new_from_object(obj.evaluated_get(dg), preserve_all_data_layers=True, depsgraph=dg)
    old = obj.data
    obj.modifiers.clear()
    obj.data = baked
    bpy.data.meshes.remove(old)
    for c in made:
        mesh = c.data
        bpy.data.objects.remove(c)
        bpy.data.meshes.remove(mesh)
    return len(made)


def sphere_cutter(center, radius: float, segments: int = 12) -> tuple[np.ndarray, list]:
    verts, faces, _ = ellipsoid(center, (radius, radius, radius), segments)
    return verts, faces


def box_cutter(center, size) -> tuple[np.ndarray, list]:
    verts, faces, _ = box()
    return verts * np.asarray(size, float) + np.asarray(center, float), faces


def wire(gen: Gen, p0, p1, radius: float, segments: int = 5) -> tuple | None:
    """A thin tube (antenna, whisker, spoke, strut) from p0 to p1, or None with shapes off."""
    if not gen.shapes:
        return None
    return tube(p0, p1, radius, radius * 0.7, segments, 2)


def rigid_piece(name: str, geometry: tuple, material, smooth: bool = True):
    verts, faces, uvs = geometry[:3]
    return mesh_object(name, verts, faces, uvs, smooth, material)
