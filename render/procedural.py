"""Procedural animated assets: seeded random objects built in Blender and exported as GLB.

Each asset is a compact creature-like object: a textured body (a primitive), rigid parts attached to
it, shape keys on the body and armature-skinned limbs. It carries 1 to 3 animation clips; each clip is
one Blender action with one slot per animated ID (objects, the armature, the body's shape keys), laid
on single-strip NLA tracks, so that glTF export in ACTIONS mode writes one named glTF animation per
clip. The three kinds of motion:

- ``rigid``: keyframed location / rotation / scale of parts (and sometimes of the whole body),
- ``morph``: shape-key values (glTF morph-target weights),
- ``skin``: pose-bone rotations of limbs whose vertices are weighted to bone chains (glTF skins).

Asset ``i`` of seed ``S`` is named ``proc_s{S}_{i:05d}.glb`` and is drawn from its own generator
seeded with ``(S, i)``, so it is the same whatever ``count`` was asked for, and two runs with the same
seed write byte-identical files (with the same bpy and glTF exporter versions: the exporter's version
is written into the file and its output may change between releases). Every asset has at least one kind of motion and asset ``i`` always
has kind ``KINDS[i % 3]``, so any batch of 3 or more shows all three kinds.

Usage: ``generate_assets(out_dir, count, seed)`` or ``python -m render.procedural --out DIR --count N
--seed S``. Importing this module imports bpy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import struct
from pathlib import Path

import bpy
import numpy as np

from contracts.uids import check_uid

log = logging.getLogger(__name__)

FPS = 24  # frame rate of every clip; glTF stores seconds, the importer maps them back at scene fps
KINDS = ("rigid", "morph", "skin")
TEXTURE_SIZE = 64  # pixels per side: enough for visible stripes/checkers, keeps a GLB in the tens of kB
SEGMENTS = 16  # segments around a revolved primitive: smooth enough at 512 px, a few hundred faces each
MIN_CLIP_S, MAX_CLIP_S = 1.0, 4.0


def asset_uid(seed: int, index: int) -> str:
    """The uid (file stem) of asset `index` of `seed`: `proc_s{seed}_{index:05d}`."""
    return check_uid(f"proc_s{seed}_{index:05d}", "procedural uid")


# --------------------------------------------------------------------------------------- geometry


def _revolve(profile: np.ndarray, segments: int) -> tuple[np.ndarray, list, np.ndarray]:
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


def _torus(major: float, minor: float, segments: int) -> tuple[np.ndarray, list, np.ndarray]:
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


def _box() -> tuple[np.ndarray, list, np.ndarray]:
    """A unit cube centred at the origin (side 1); returns verts [8, 3], 6 faces, loop uvs [24, 2]."""
    verts = np.array([(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    uvs = np.tile(np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=np.float64), (6, 1))
    return verts, faces, uvs


def _primitive(kind: str, segments: int) -> tuple[np.ndarray, list, np.ndarray, bool]:
    """Geometry of a unit-ish primitive (fits in [-0.5, 0.5]^3); returns verts, faces, uvs, smooth."""
    if kind == "box":
        return (*_box(), False)
    if kind == "sphere":
        t = np.linspace(0, np.pi, max(4, segments // 2) + 1)
        prof = np.stack([0.5 * np.sin(t), -0.5 * np.cos(t)], -1)
        prof[0, 0] = prof[-1, 0] = 0.0
        return (*_revolve(prof, segments), True)
    z = np.linspace(-0.5, 0.5, 6)  # several rings so that shape keys can bend the side
    if kind == "cylinder":
        return (*_revolve(np.stack([np.full(6, 0.5), z], -1), segments), True)
    if kind == "cone":
        return (*_revolve(np.stack([0.5 - 0.5 * (z + 0.5), z], -1), segments), True)
    if kind == "capsule":
        t = np.linspace(0, np.pi / 2, 4)
        low = np.stack([0.3 * np.sin(t), -0.2 - 0.3 * np.cos(t)], -1)  # bottom cap, pole first
        prof = np.concatenate([low, (low * [1, -1])[::-1]])
        prof[0, 0] = prof[-1, 0] = 0.0
        return (*_revolve(prof, segments), True)
    if kind == "torus":
        return (*_torus(0.35, 0.15, segments), True)
    raise ValueError(f"unknown primitive {kind!r}")


PRIMITIVES = ("box", "sphere", "cylinder", "cone", "capsule", "torus")


def _mesh_object(name: str, verts: np.ndarray, faces: list, uvs: np.ndarray, smooth: bool, material) -> bpy.types.Object:
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


# --------------------------------------------------------------------------------------- looks


def _texture(rng: np.random.Generator, c0: np.ndarray, c1: np.ndarray, size: int) -> tuple[str, np.ndarray]:
    """A small two-colour pattern; returns its kind and RGBA pixels [size, size, 4] in 0..1 (rows bottom-up)."""
    kind = str(rng.choice(["stripes", "checker", "noise", "dots", "rings"]))
    y, x = np.mgrid[0:size, 0:size] / size  # [H, W] each
    if kind == "stripes":
        ang, freq = rng.uniform(0, np.pi), rng.integers(3, 9)
        m = (np.sin(2 * np.pi * freq * (x * np.cos(ang) + y * np.sin(ang))) > 0).astype(float)
    elif kind == "checker":
        n = rng.integers(2, 7)
        m = ((np.floor(x * n) + np.floor(y * n)) % 2).astype(float)
    elif kind == "noise":
        grid = rng.random((6, 6))
        m = np.kron(grid, np.ones((size // 6 + 1, size // 6 + 1)))[:size, :size]
        m = (m - m.min()) / max(m.max() - m.min(), 1e-6)
    elif kind == "dots":
        n = rng.integers(3, 7)
        m = ((np.hypot((x * n) % 1 - 0.5, (y * n) % 1 - 0.5)) < 0.3).astype(float)
    else:
        cx, cy, freq = rng.random(), rng.random(), rng.integers(3, 8)
        m = (np.sin(2 * np.pi * freq * np.hypot(x - cx, y - cy)) > 0).astype(float)
    rgb = c0[None, None] * (1 - m[..., None]) + c1[None, None] * m[..., None]  # [H, W, 3]
    return kind, np.concatenate([rgb, np.ones((size, size, 1))], -1)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated-enough random colour, RGB in 0..1 (sRGB)."""
    h, s, v = rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.45, 1.0)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _material(name: str, rng: np.random.Generator, textured: bool):
    """A Principled BSDF material, either flat-coloured or fed by a packed numpy image texture."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender 5.0 gives new materials a node tree; older ones need use_nodes
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes.get("Principled BSDF") or nodes.new("ShaderNodeBsdfPrincipled")
    c0 = _colour(rng)
    bsdf.inputs["Roughness"].default_value = float(rng.uniform(0.3, 0.9))
    bsdf.inputs["Metallic"].default_value = float(rng.choice([0.0, 0.0, 0.5]))
    if not textured:
        bsdf.inputs["Base Color"].default_value = (*(c0 ** 2.2), 1.0)  # the socket is linear
        return mat
    kind, px = _texture(rng, c0, _colour(rng), TEXTURE_SIZE)
    img = bpy.data.images.new(f"{name}_{kind}", TEXTURE_SIZE, TEXTURE_SIZE, alpha=False)
    img.pixels.foreach_set(px.astype(np.float32).ravel())
    img.pack()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = img
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


# --------------------------------------------------------------------------------------- structure


def _surface_point(body, direction: np.ndarray) -> np.ndarray:
    """Where the ray from the body's centre along the unit `direction` [3] leaves its rest mesh (object space).

    Every body primitive is convex around its centre, so casting back from far outside finds that point.
    The cast is on the mesh's own vertices (a BVH tree), not on the evaluated object, so shape keys and
    modifiers cannot move it.
    """
    from mathutils import Vector
    from mathutils.bvhtree import BVHTree

    mesh = body.data
    tree = BVHTree.FromPolygons([v.co.copy() for v in mesh.vertices], [tuple(p.vertices) for p in mesh.polygons])
    location, _, _, _ = tree.ray_cast(Vector(tuple(map(float, 10 * direction))), Vector(tuple(map(float, -direction))))
    if location is None:
        raise RuntimeError(f"no surface of {body.name!r} along {direction.tolist()}")
    return np.array(location)


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _align_z(direction: np.ndarray):
    """The quaternion (mathutils) turning +Z onto `direction` [3]."""
    from mathutils import Vector

    return Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(tuple(map(float, direction))))


def _shape_keys(body, rng: np.random.Generator, half: np.ndarray) -> list[str]:
    """Add 2-3 deformations of the body as shape keys; returns their names."""
    base = np.array([v.co[:] for v in body.data.vertices])  # [V, 3]
    x, y, z = base.T
    zn = (z + half[2]) / (2 * half[2])  # 0 at the bottom, 1 at the top
    theta = np.arctan2(y, x)
    r = np.hypot(x, y)  # [V] distance from the body's axis
    lobes = int(rng.integers(2, 5))
    one = np.ones_like(z)
    target = 0.3 * 2 * half.max()  # every key moves some vertex by ~30% of the body's size: visible from anywhere

    def radial(profile: np.ndarray, cap: float) -> np.ndarray:
        """Scale x, y by 1 - a * profile, with `a` just big enough to reach the target (at most `cap`)."""
        a = min(cap, target / max(float(np.max(r * np.abs(profile))), 1e-6))
        return base * np.stack([1 - a * profile] * 2 + [one], -1)

    shapes = {
        "squash": lambda: base * [1.35, 1.35, 0.5],
        "stretch": lambda: base * [0.75, 0.75, 1.6],
        "bulge": lambda: radial(-np.sin(lobes * theta), 0.6),
        "pinch": lambda: radial(np.sin(np.pi * zn), 0.75),
        "lean": lambda: base + np.stack([half[2] * zn ** 2, 0 * z, 0 * z], -1),
        "taper": lambda: radial(zn, 0.8),
    }
    names = sorted(rng.choice(sorted(shapes), size=int(rng.integers(2, 4)), replace=False).tolist())
    body.shape_key_add(name="Basis", from_mix=False)
    for name in names:
        key = body.shape_key_add(name=name, from_mix=False)
        key.data.foreach_set("co", shapes[name]().astype(np.float32).ravel())
        key.value = 0.0  # Blender 5.0 starts a new key at 1.0; the clips set it over time
    return names


def _limbs(body, rng: np.random.Generator, material) -> tuple[object, list[list[str]]]:
    """An armature (child of the body) with 1-3 skinned limbs; returns it and the bone names per limb."""
    arm = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    bpy.context.scene.collection.objects.link(arm)
    arm.parent = body
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    chains, limb_geo = [], []
    for li in range(int(rng.integers(1, 4))):
        d = _random_direction(rng)
        d[2] = abs(d[2]) * 0.5 - 0.2  # limbs point sideways or a little down, like arms and legs
        d /= np.linalg.norm(d)
        length, radius, n_bones = rng.uniform(0.45, 0.8), rng.uniform(0.06, 0.11), int(rng.integers(2, 4))
        start = _surface_point(body, d) - d * radius  # the limb's root sinks into the body
        names, parent = [], None
        for b in range(n_bones):
            eb = arm.data.edit_bones.new(f"limb{li}_{b}")
            eb.head = tuple(start + d * length * b / n_bones)
            eb.tail = tuple(start + d * length * (b + 1) / n_bones)
            eb.parent, eb.use_connect = parent, parent is not None
            parent = eb
            names.append(eb.name)
        chains.append(names)
        limb_geo.append((d, start, length, radius, n_bones))
    bpy.ops.object.mode_set(mode="OBJECT")
    for li, (d, start, length, radius, n_bones) in enumerate(limb_geo):
        zs = np.linspace(0.0, length, 4 * n_bones + 1)
        prof = np.stack([radius * (1 - 0.4 * zs / length), zs], -1)  # [K, 2] tapering tube
        verts, faces, uvs = _revolve(prof, max(6, SEGMENTS // 2))
        s = verts[:, 2] / length * n_bones  # position along the chain in bone units
        rot = np.array(_align_z(d).to_matrix())
        verts = verts @ rot.T + start
        limb = _mesh_object(f"limb{li}", verts, faces, uvs, True, material)
        limb.parent = arm
        for b, name in enumerate(chains[li]):
            w = np.clip(1 - np.abs(s - (b + 0.5)), 0, 1)  # tent around the bone's middle
            if b == 0:
                w[s <= 0.5] = 1.0
            if b == n_bones - 1:
                w[s >= n_bones - 0.5] = 1.0
            group = limb.vertex_groups.new(name=name)
            for vi in np.nonzero(w > 0)[0]:
                group.add([int(vi)], float(w[vi]), "REPLACE")
        limb.modifiers.new("Armature", "ARMATURE").object = arm
    return arm, chains


# --------------------------------------------------------------------------------------- animation


def _fcurves(action, owner, id_type: str, track: str, curves: dict[str, np.ndarray], frames: np.ndarray) -> None:
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


def _quat_about(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions [F, 4] (w, x, y, z) for rotations by `angle` [F] about the unit `axis` [3]."""
    return np.concatenate([np.cos(angle / 2)[:, None], np.sin(angle / 2)[:, None] * axis[None]], -1)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions [..., 4] (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _animate_clip(name: str, kinds: list[str], rng: np.random.Generator, rig: dict) -> float:
    """Make clip `name` with motion of `kinds`; returns its duration in seconds."""
    n_frames = int(round(rng.uniform(MIN_CLIP_S, MAX_CLIP_S) * FPS))
    frames = np.arange(n_frames + 1, dtype=np.float64)  # keys on every frame, first at 0, last at n_frames
    t = frames / n_frames  # [F] phase over the clip, 0..1
    cycles = int(rng.integers(1, 3)) if n_frames > 1.5 * FPS else 1  # at most ~2 Hz
    wave = 2 * np.pi * cycles * t  # [F] periodic: every channel ends where it started
    action = bpy.data.actions.new(name)
    if "rigid" in kinds:
        body, half = rig["body"], rig["half"]
        movers = [p for p in rig["parts"] if rng.random() < 0.85] or rig["parts"][:1]
        small = max(max(p["size"]) for p in movers) < 0.6 * half.max()
        if rng.random() < 0.6 or small:  # the whole body hops or turns; always when its parts are small
            if rng.random() < 0.5:
                hop = rng.uniform(0.2, 0.35) * np.abs(np.sin(wave / 2))
                curves = {"location": np.stack([0 * t, 0 * t, hop], -1)}
            else:
                curves = {"rotation_euler": np.stack([0 * t, 0 * t, rng.uniform(0.7, 1.4) * np.sin(wave)], -1)}
            _fcurves(action, body, "OBJECT", name, curves, frames)
        for mover in movers:
            part = mover["object"]
            rest_q = np.array(part.rotation_quaternion)[None]  # [1, 4]
            motion = rng.choice(["swing", "spin", "slide", "pulse"])
            if motion == "swing":
                axis = np.array([*_random_direction(rng)[:2], 0.0])
                axis /= np.linalg.norm(axis)
                curves = {"rotation_quaternion": _quat_mul(rest_q, _quat_about(axis, rng.uniform(0.7, 1.2) * np.sin(wave)))}
            elif motion == "spin":
                axis = np.array([0.0, 0.0, 1.0])
                tilt = _quat_about(np.array([1.0, 0.0, 0.0]), 0.5 * np.sin(wave))
                curves = {"rotation_quaternion": _quat_mul(_quat_mul(rest_q, _quat_about(axis, wave)), tilt)}
            elif motion == "slide":
                direction = mover["out_dir"]
                curves = {"location": np.array(part.location)[None] + direction[None] * rng.uniform(0.15, 0.3) * np.sin(wave)[:, None]}
            else:
                curves = {"scale": np.repeat((1 + rng.uniform(0.35, 0.6) * np.sin(wave))[:, None], 3, 1)}
            _fcurves(action, part, "OBJECT", name, curves, frames)
    if "morph" in kinds:
        key = rig["body"].data.shape_keys
        chosen = rng.choice(rig["shape_keys"], size=int(rng.integers(1, len(rig["shape_keys"]) + 1)), replace=False)
        curves = {}
        for i, sk in enumerate(sorted(chosen)):
            phase = 2 * np.pi * i / len(chosen)
            curves[f'key_blocks["{sk}"].value'] = rng.uniform(0.85, 1.0) * 0.5 * (1 - np.cos(wave + phase))
        _fcurves(action, key, "KEY", name, curves, frames)
    if "skin" in kinds:
        curves = {}
        for chain in rig["chains"]:
            beta, amp, lag = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.9), rng.uniform(0.3, 1.0)
            axis = np.array([np.cos(beta), 0.0, np.sin(beta)])  # perpendicular to the bone's own Y axis
            for b, bone in enumerate(chain):
                curves[f'pose.bones["{bone}"].rotation_quaternion'] = _quat_about(axis, amp * np.sin(wave - lag * b))
        _fcurves(action, rig["armature"], "OBJECT", name, curves, frames)
    return n_frames / FPS


# --------------------------------------------------------------------------------------- assets


def _build_asset(rng: np.random.Generator, must_have: str) -> list[tuple[str, float]]:
    """Build one animated object in the (empty) current scene; returns its clips as (name, seconds)."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    kinds = [k for k in KINDS if k == must_have or rng.random() < 0.5]
    half = rng.uniform(0.3, 0.5, size=3)  # body semi-axes, metres
    body_kind = str(rng.choice(["sphere", "capsule", "cylinder", "cone"] + ([] if "morph" in kinds else ["box"])))
    verts, faces, uvs, smooth = _primitive(body_kind, SEGMENTS)
    body = _mesh_object("body", verts * 2 * half, faces, uvs, smooth, _material("body_mat", rng, textured=True))
    rig: dict = {"body": body, "half": half, "parts": [], "chains": [], "shape_keys": []}
    for p in range(int(rng.integers(1 if "rigid" in kinds else 0, 5))):
        d = _random_direction(rng)
        d[2] = abs(d[2])  # parts sit on the upper half, limbs hang from the sides
        size = rng.uniform(0.15, 0.38, size=3)
        pk = str(rng.choice(PRIMITIVES))
        verts, faces, uvs, smooth = _primitive(pk, SEGMENTS)
        verts = verts * size + [0.0, 0.0, 0.45 * size[2]]  # pivot at the attachment point, body outwards
        part = _mesh_object(f"part{p}_{pk}", verts, faces, uvs, smooth, _material(f"part{p}_mat", rng, textured=rng.random() < 0.5))
        part.parent = body
        part.location = tuple(_surface_point(body, d))
        part.rotation_mode = "QUATERNION"
        part.rotation_quaternion = _align_z(d)
        rig["parts"].append({"object": part, "out_dir": d, "size": size,
                             "location": tuple(part.location), "rotation": tuple(part.rotation_quaternion)})
    if "morph" in kinds:
        rig["shape_keys"] = _shape_keys(body, rng, half)
    if "skin" in kinds:
        rig["armature"], rig["chains"] = _limbs(body, rng, _material("limb_mat", rng, textured=rng.random() < 0.5))
    n_clips = int(rng.integers(1, 4))
    per_clip: list[list[str]] = [[] for _ in range(n_clips)]
    for k in kinds:  # every kind of this asset moves in at least one clip
        per_clip[int(rng.integers(n_clips))].append(k)
    for c in range(n_clips):
        for k in kinds:
            if k not in per_clip[c] and rng.random() < 0.3:
                per_clip[c].append(k)
        if not per_clip[c]:
            per_clip[c].append(str(rng.choice(kinds)))
    clips = []
    for c, ks in enumerate(per_clip):
        ks = [k for k in KINDS if k in ks]
        name = f"clip{c}_{'_'.join(ks)}"
        clips.append((name, _animate_clip(name, ks, rng, rig)))
    _rest(rig)
    return clips


def _rest(rig: dict) -> None:
    """Leave the scene in its rest pose, which the exporter writes as the file's default state.

    NLA evaluation is switched off (the exporter reads the tracks all the same and switches it off
    itself while sampling), otherwise the default would be every clip's frame 0 blended together,
    e.g. a body whose morph weights are not zero in the clips that do not animate them.
    """
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        if idb.animation_data is not None:
            idb.animation_data.use_nla = False
    body = rig["body"]
    body.location, body.rotation_euler, body.scale = (0, 0, 0), (0, 0, 0), (1, 1, 1)
    for part in rig["parts"]:
        obj = part["object"]
        obj.location, obj.rotation_quaternion, obj.scale = part["location"], part["rotation"], (1, 1, 1)
    if body.data.shape_keys is not None:
        for kb in body.data.shape_keys.key_blocks:
            kb.value = 0.0
    if "armature" in rig:
        for pb in rig["armature"].pose.bones:
            pb.location, pb.rotation_quaternion, pb.scale = (0, 0, 0), (1, 0, 0, 0), (1, 1, 1)
    bpy.context.scene.frame_set(0)


def _order_animations(glb: bytes, clip_names: list[str]) -> bytes:
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


def _export(path: Path, clip_names: list[str]) -> None:
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
        tmp.write_bytes(_order_animations(tmp.read_bytes(), clip_names))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bpy.app.debug_value = debug_value
        if chatter.getvalue().strip():
            log.debug("glTF exporter said: %s", chatter.getvalue().strip())


def generate_assets(out_dir: Path, count: int, seed: int, *, progress: bool = False) -> list[Path]:
    """Make `count` random animated objects with Blender and write them as `out_dir/proc_s{seed}_{i:05d}.glb`.

    Same (seed, i) -> the same file, byte for byte. Resets Blender (factory settings, empty scene) before
    each asset, so it is safe in a long-lived process; the scene is left empty afterwards.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    indices = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="procedural assets", unit="asset")
    paths = []
    for i in indices:
        uid = asset_uid(seed, i)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        rng = np.random.default_rng([abs(seed), int(seed < 0), i])
        clips = _build_asset(rng, KINDS[i % len(KINDS)])
        path = out_dir / f"{uid}.glb"
        _export(path, [name for name, _ in clips])
        log.debug("wrote %s with clips %s", path, clips)
        paths.append(path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    """`python -m render.procedural --out DIR --count N --seed S`."""
    parser = argparse.ArgumentParser(prog="python -m render.procedural", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .glb files")
    parser.add_argument("--count", type=int, default=8, help="how many assets")
    parser.add_argument("--seed", type=int, default=0, help="asset i of seed S is always the same file")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count}")
    from contracts.logs import setup_logging

    setup_logging(args.verbose)
    paths = generate_assets(args.out, args.count, args.seed, progress=True)
    log.info("wrote %d assets to %s", len(paths), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
