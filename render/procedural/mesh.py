"""Mesh geometry for procedural assets: primitives with UVs (numpy), tubes between two points, height-field
grids, merging pieces with per-piece labels, and linking a mesh object into the Blender scene."""

from __future__ import annotations

import math

import bpy
import numpy as np

SEGMENTS = 16  # segments around a revolved primitive (legacy): smooth enough at 512 px, a few hundred faces each


def revolve(profile: np.ndarray, segments: int) -> tuple[np.ndarray, list, np.ndarray]:
    """A surface of revolution about +Z with per-loop UVs.

    profile: [K, 2] (radius, z) from bottom to top; a radius of 0 at an end becomes a pole (triangle
    fan), a positive radius at an end is closed with an n-gon cap.
    Returns verts [V, 3], faces (lists of vertex indices), loop uvs [L, 2] in face order.
    """
    k_count = len(profile)
    ang = 2 * np.pi * np.arange(segments) / segments  # [S]
    verts: list = []
    ring_idx: list[list[int]] = []
    for r, z in profile:
        if r <= 1e-9:
            ring_idx.append([len(verts)] * segments)
            verts.append((0.0, 0.0, z))
        else:
            ring_idx.append(list(range(len(verts), len(verts) + segments)))
            verts.extend(zip(r * np.cos(ang), r * np.sin(ang), np.full(segments, z)))
    faces, uvs = [], []
    for k in range(k_count - 1):
        v0, v1 = k / (k_count - 1), (k + 1) / (k_count - 1)
        for j in range(segments):
            u0, u1 = j / segments, (j + 1) / segments
            a, b = ring_idx[k][j], ring_idx[k][(j + 1) % segments]
            c, d = ring_idx[k + 1][(j + 1) % segments], ring_idx[k + 1][j]
            quad = [(a, (u0, v0)), (b, (u1, v0)), (c, (u1, v1)), (d, (u0, v1))]
            quad = [q for n, q in enumerate(quad) if q[0] not in [p[0] for p in quad[:n]]]  # drop pole repeats
            faces.append([q[0] for q in quad])
            uvs.extend(q[1] for q in quad)
    for end, ring in ((0, ring_idx[0]), (k_count - 1, ring_idx[-1])):
        if profile[end][0] > 1e-9:
            order = ring[::-1] if end == 0 else ring  # caps face outwards
            faces.append(list(order))
            uvs.extend((0.5 + 0.5 * math.cos(2 * np.pi * (i if end else -i) / segments),
                        0.5 + 0.5 * math.sin(2 * np.pi * (i if end else -i) / segments)) for i in range(segments))
    return np.asarray(verts, dtype=np.float64), faces, np.asarray(uvs, dtype=np.float64)


def torus(major: float, minor: float, segments: int) -> tuple[np.ndarray, list, np.ndarray]:
    """A torus in the XY plane; returns verts [V, 3], faces, loop uvs [L, 2]."""
    rings = max(6, segments // 2)
    a = 2 * np.pi * np.arange(segments) / segments  # around the Z axis
    b = 2 * np.pi * np.arange(rings) / rings  # around the tube
    r = major + minor * np.cos(b)[:, None] + 0 * a[None]  # [R, S]
    verts = np.stack([r * np.cos(a)[None], r * np.sin(a)[None], np.broadcast_to(minor * np.sin(b)[:, None], r.shape)], -1)
    idx = np.arange(rings * segments).reshape(rings, segments)
    faces, uvs = [], []
    for i in range(rings):
        for j in range(segments):
            faces.append([idx[i, j], idx[i, (j + 1) % segments], idx[(i + 1) % rings, (j + 1) % segments], idx[(i + 1) % rings, j]])
            uvs.extend([(j / segments, i / rings), ((j + 1) / segments, i / rings),
                        ((j + 1) / segments, (i + 1) / rings), (j / segments, (i + 1) / rings)])
    return verts.reshape(-1, 3), faces, np.asarray(uvs)


def box() -> tuple[np.ndarray, list, np.ndarray]:
    """A unit cube centred at the origin (side 1); returns verts [8, 3], 6 faces, loop uvs [24, 2]."""
    verts = np.array([(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    uvs = np.tile(np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=np.float64), (6, 1))
    return verts, faces, uvs


def primitive(kind: str, segments: int) -> tuple[np.ndarray, list, np.ndarray, bool]:
    """Geometry of a unit-ish primitive (fits in [-0.5, 0.5]^3); returns verts, faces, uvs, smooth."""
    if kind == "box":
        return (*box(), False)
    if kind == "sphere":
        t = np.linspace(0, np.pi, max(4, segments // 2) + 1)
        prof = np.stack([0.5 * np.sin(t), -0.5 * np.cos(t)], -1)
        prof[0, 0] = prof[-1, 0] = 0.0
        return (*revolve(prof, segments), True)
    z = np.linspace(-0.5, 0.5, 6)  # several rings so that shape keys can bend the side
    if kind == "cylinder":
        return (*revolve(np.stack([np.full(6, 0.5), z], -1), segments), True)
    if kind == "cone":
        return (*revolve(np.stack([0.5 - 0.5 * (z + 0.5), z], -1), segments), True)
    if kind == "capsule":
        t = np.linspace(0, np.pi / 2, 4)
        low = np.stack([0.3 * np.sin(t), -0.2 - 0.3 * np.cos(t)], -1)  # bottom cap, pole first
        prof = np.concatenate([low, (low * [1, -1])[::-1]])
        prof[0, 0] = prof[-1, 0] = 0.0
        return (*revolve(prof, segments), True)
    if kind == "torus":
        return (*torus(0.35, 0.15, segments), True)
    raise ValueError(f"unknown primitive {kind!r}")


PRIMITIVES = ("box", "sphere", "cylinder", "cone", "capsule", "torus")


def mesh_object(name: str, verts: np.ndarray, faces: list, uvs: np.ndarray, smooth: bool, material) -> bpy.types.Object:
    """Link a new mesh object built from verts [V, 3], faces and loop uvs [L, 2] into the scene."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, v)) for v in verts], [], [list(map(int, f)) for f in faces])
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.asarray(uvs, dtype=np.float32).ravel())
    mesh.polygons.foreach_set("use_smooth", [smooth] * len(mesh.polygons))
    mesh.materials.append(material)
    mesh.validate()
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def frame_along(d: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """A rotation matrix [3, 3] whose columns (x, y, z) have z = the unit `d` and x perpendicular to `up`."""
    d = d / np.linalg.norm(d)
    x = np.cross(up, d)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(np.array([0.0, 1.0, 0.0]), d)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(d, x), d], 1)


def tube(p0, p1, r0: float, r1: float, segments: int, rings: int = 4, flat: float = 1.0,
         up: np.ndarray = np.array([0.0, 0.0, 1.0]), caps: bool = True) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """A tapered tube from `p0` to `p1` (radii r0 -> r1) with rounded ends, cross-section squashed by `flat`
    along the frame's y (frame_along(d, up)). Returns verts [V, 3], faces, loop uvs [L, 2] (u around, v along)
    and s [V], each vertex's position along the axis (0 at p0, 1 at p1, clipped)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.linalg.norm(p1 - p0))
    zs = np.linspace(0.0, length, rings + 1)
    prof = [(r0 + (r1 - r0) * z / length, z) for z in zs]
    if caps:
        a = np.linspace(0, np.pi / 2, 3)[1:]
        prof = ([(0.0, -0.6 * r0)] + [(r0 * np.sin(t), -0.6 * r0 * np.cos(t)) for t in a[:-1]] + prof
                + [(r1 * np.sin(t), length + 0.6 * r1 * np.cos(t)) for t in a[:-1][::-1]] + [(0.0, length + 0.6 * r1)])
    verts, faces, uvs = revolve(np.asarray(prof, dtype=np.float64), segments)
    s = np.clip(verts[:, 2] / length, 0.0, 1.0)
    verts = verts * [1.0, flat, 1.0]
    return verts @ frame_along(p1 - p0, up).T + p0, faces, uvs, s


def ellipsoid(center, radii, segments: int) -> tuple[np.ndarray, list, np.ndarray]:
    """An ellipsoid (UV sphere, poles on z; u = 0.75 faces -y, the creatures' front)."""
    verts, faces, uvs, _ = primitive("sphere", segments)
    return verts * 2 * np.asarray(radii, float) + np.asarray(center, float), faces, uvs


def grid(nx: int, ny: int, heights: np.ndarray | None = None) -> tuple[np.ndarray, list, np.ndarray]:
    """A unit square in x, y (centred) of nx x ny quads, z from `heights` [ny + 1, nx + 1] (a height field)."""
    y, x = np.mgrid[0 : ny + 1, 0 : nx + 1]
    z = np.zeros(x.shape) if heights is None else heights
    verts = np.stack([x / nx - 0.5, y / ny - 0.5, z], -1).reshape(-1, 3)
    idx = np.arange((nx + 1) * (ny + 1)).reshape(ny + 1, nx + 1)
    faces, uvs = [], []
    for j in range(ny):
        for i in range(nx):
            faces.append([idx[j, i], idx[j, i + 1], idx[j + 1, i + 1], idx[j + 1, i]])
            uvs.extend([(i / nx, j / ny), ((i + 1) / nx, j / ny), ((i + 1) / nx, (j + 1) / ny), (i / nx, (j + 1) / ny)])
    return verts.astype(np.float64), faces, np.asarray(uvs, dtype=np.float64)


def vertex_normals(verts: np.ndarray, faces: list) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] of a polygon mesh (fan triangulation)."""
    n = np.zeros_like(verts)
    for f in faces:
        p = verts[f]
        fn = np.cross(p[1:-1] - p[0], p[2:] - p[0]).sum(0)
        n[f] += fn
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


class MeshBuilder:
    """Pieces (verts, faces, uvs) gathered into one mesh with a material per piece and vertex-group weights."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.faces: list[list[int]] = []
        self.uvs: list[np.ndarray] = []
        self.mat_index: list[int] = []
        self.groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.count = 0

    def add(self, verts: np.ndarray, faces: list, uvs: np.ndarray, mat: int = 0,
            weights: dict[str, np.ndarray] | None = None) -> None:
        """Add a piece; `weights` maps a vertex group (bone) to this piece's per-vertex weights [V]."""
        self.verts.append(np.asarray(verts, float))
        self.faces.extend([[int(v) + self.count for v in f] for f in faces])
        self.uvs.append(np.asarray(uvs, float))
        self.mat_index.extend([mat] * len(faces))
        for name, w in (weights or {}).items():
            self.groups.setdefault(name, []).append((np.arange(len(verts)) + self.count, np.asarray(w, float)))
        self.count += len(verts)

    def build(self, name: str, materials: list, smooth: bool = True) -> bpy.types.Object:
        obj = mesh_object(name, np.concatenate(self.verts), self.faces, np.concatenate(self.uvs), smooth, materials[0])
        for m in materials[1:]:
            obj.data.materials.append(m)
        obj.data.polygons.foreach_set("material_index", self.mat_index)
        for group_name in sorted(self.groups):
            group = obj.vertex_groups.new(name=group_name)
            idx = np.concatenate([i for i, _ in self.groups[group_name]])
            w = np.round(np.concatenate([w for _, w in self.groups[group_name]]), 3)
            for value in np.unique(w[w > 0]):
                group.add(idx[w == value].tolist(), float(value), "REPLACE")
        obj.data.update()
        return obj
