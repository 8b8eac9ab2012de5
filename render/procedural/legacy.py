"""The first procedural generator (category ``legacy``), kept as it was for comparisons with the new ones.

Each asset is a compact creature-like object: a textured body (a primitive), rigid parts attached to
it, shape keys on the body and armature-skinned limbs. It carries 1 to 3 animation clips. The three
kinds of motion:

- ``rigid``: keyframed location / rotation / scale of parts (and sometimes of the whole body),
- ``morph``: shape-key values (glTF morph-target weights),
- ``skin``: pose-bone rotations of limbs whose vertices are weighted to bone chains (glTF skins).

Asset ``i`` of seed ``S`` is ``proc_s{S}_{i:05d}`` (the uid it always had), drawn from a generator seeded
with ``(S, i)``; asset ``i`` always has kind ``KINDS[i % 3]``, so any batch of 3 or more shows all three
kinds. The files are byte-identical to the ones the single-module ``render/procedural.py`` wrote.
"""

from __future__ import annotations

import bpy
import numpy as np

from render.procedural.anim import FPS, fcurves, quat_about, quat_mul
from render.procedural.mesh import PRIMITIVES, SEGMENTS, mesh_object, primitive, revolve

KINDS = ("rigid", "morph", "skin")
TEXTURE_SIZE = 64  # pixels per side: enough for visible stripes/checkers, keeps a GLB in the tens of kB
MIN_CLIP_S, MAX_CLIP_S = 1.0, 4.0


def build(rng: np.random.Generator, index: int) -> list[str]:
    """Build legacy asset `index` (drawn from `rng`) in the empty scene; returns its clip names in order."""
    return [name for name, _ in _build_asset(rng, KINDS[index % len(KINDS)])]


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
        verts, faces, uvs = revolve(prof, max(6, SEGMENTS // 2))
        s = verts[:, 2] / length * n_bones  # position along the chain in bone units
        rot = np.array(_align_z(d).to_matrix())
        verts = verts @ rot.T + start
        limb = mesh_object(f"limb{li}", verts, faces, uvs, True, material)
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
            fcurves(action, body, "OBJECT", name, curves, frames)
        for mover in movers:
            part = mover["object"]
            rest_q = np.array(part.rotation_quaternion)[None]  # [1, 4]
            motion = rng.choice(["swing", "spin", "slide", "pulse"])
            if motion == "swing":
                axis = np.array([*_random_direction(rng)[:2], 0.0])
                axis /= np.linalg.norm(axis)
                curves = {"rotation_quaternion": quat_mul(rest_q, quat_about(axis, rng.uniform(0.7, 1.2) * np.sin(wave)))}
            elif motion == "spin":
                axis = np.array([0.0, 0.0, 1.0])
                tilt = quat_about(np.array([1.0, 0.0, 0.0]), 0.5 * np.sin(wave))
                curves = {"rotation_quaternion": quat_mul(quat_mul(rest_q, quat_about(axis, wave)), tilt)}
            elif motion == "slide":
                direction = mover["out_dir"]
                curves = {"location": np.array(part.location)[None] + direction[None] * rng.uniform(0.15, 0.3) * np.sin(wave)[:, None]}
            else:
                curves = {"scale": np.repeat((1 + rng.uniform(0.35, 0.6) * np.sin(wave))[:, None], 3, 1)}
            fcurves(action, part, "OBJECT", name, curves, frames)
    if "morph" in kinds:
        key = rig["body"].data.shape_keys
        chosen = rng.choice(rig["shape_keys"], size=int(rng.integers(1, len(rig["shape_keys"]) + 1)), replace=False)
        curves = {}
        for i, sk in enumerate(sorted(chosen)):
            phase = 2 * np.pi * i / len(chosen)
            curves[f'key_blocks["{sk}"].value'] = rng.uniform(0.85, 1.0) * 0.5 * (1 - np.cos(wave + phase))
        fcurves(action, key, "KEY", name, curves, frames)
    if "skin" in kinds:
        curves = {}
        for chain in rig["chains"]:
            beta, amp, lag = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.9), rng.uniform(0.3, 1.0)
            axis = np.array([np.cos(beta), 0.0, np.sin(beta)])  # perpendicular to the bone's own Y axis
            for b, bone in enumerate(chain):
                curves[f'pose.bones["{bone}"].rotation_quaternion'] = quat_about(axis, amp * np.sin(wave - lag * b))
        fcurves(action, rig["armature"], "OBJECT", name, curves, frames)
    return n_frames / FPS


# --------------------------------------------------------------------------------------- assets


def _build_asset(rng: np.random.Generator, must_have: str) -> list[tuple[str, float]]:
    """Build one animated object in the (empty) current scene; returns its clips as (name, seconds)."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    kinds = [k for k in KINDS if k == must_have or rng.random() < 0.5]
    half = rng.uniform(0.3, 0.5, size=3)  # body semi-axes, metres
    body_kind = str(rng.choice(["sphere", "capsule", "cylinder", "cone"] + ([] if "morph" in kinds else ["box"])))
    verts, faces, uvs, smooth = primitive(body_kind, SEGMENTS)
    body = mesh_object("body", verts * 2 * half, faces, uvs, smooth, _material("body_mat", rng, textured=True))
    rig: dict = {"body": body, "half": half, "parts": [], "chains": [], "shape_keys": []}
    for p in range(int(rng.integers(1 if "rigid" in kinds else 0, 5))):
        d = _random_direction(rng)
        d[2] = abs(d[2])  # parts sit on the upper half, limbs hang from the sides
        size = rng.uniform(0.15, 0.38, size=3)
        pk = str(rng.choice(PRIMITIVES))
        verts, faces, uvs, smooth = primitive(pk, SEGMENTS)
        verts = verts * size + [0.0, 0.0, 0.45 * size[2]]  # pivot at the attachment point, body outwards
        part = mesh_object(f"part{p}_{pk}", verts, faces, uvs, smooth, _material(f"part{p}_mat", rng, textured=rng.random() < 0.5))
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


