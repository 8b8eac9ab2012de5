"""What the creature categories share: their materials (a patterned body, a second tone, a head with eye
decals, a hard accent), the head (an ellipsoid on the head bone, a boolean mouth, horns or antennae) and
the whole-creature assembly (armature, skinned tubes with height-field bumps, the rest snapshot)."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen, colour
from render.procedural.mesh import MeshBuilder, ellipsoid, tube
from render.procedural.motion import snapshot
from render.procedural.rig import Bone, Rig, attach, build_armature
from render.procedural.shapes import boolean_cut, bumps, sphere_cutter, wire
from render.procedural.textures import eye_decals, image, material


def materials(gen: Gen, name: str) -> dict:
    """Materials of one creature: body (mat 0), second tone (mat 1), head with eyes, accent (horns, shell)."""
    rng = gen.looks
    base = colour(rng, v=(0.3, 0.95))
    body_img = image(rng, base)
    second = colour(rng) if rng.random() < 0.5 else np.clip(base * rng.uniform(0.5, 1.4), 0, 1)
    head_img = eye_decals(body_img, rng, v=float(rng.uniform(0.55, 0.68)), spread=float(rng.uniform(0.05, 0.1)))
    return {
        "body": material(f"{name}_body", gen, "skin", body_img),
        "second": material(f"{name}_second", gen, str(rng.choice(["skin", "cloth", "shell"])), base=second),
        "head": material(f"{name}_head", gen, "skin", head_img),
        "accent": material(f"{name}_accent", gen, str(rng.choice(["shell", "chrome", "paint"])), base=colour(rng)),
    }


def skin_tubes(gen: Gen, rig: Rig, mats: dict, segments: int, bumpiness: float, blend: float = 0.25):
    """The skinned body: a tube per bone with a radius (materials body/second by Bone.mat), bumped."""
    mb = MeshBuilder()
    for b in rig.bones.values():
        if b.radius is None:
            continue
        length = float(np.linalg.norm(np.subtract(b.tail, b.head)))
        rings = int(np.clip(round(length / max(min(b.radius), 0.01) * 0.7), 2, 10))
        verts, faces, uvs, s = tube(b.head, b.tail, b.radius[0], b.radius[1], segments, rings, b.flat, np.array(b.up))
        w_parent = np.clip(1 - s / blend, 0, 1) * 0.5 if b.parent is not None and b.radius is not None else 0 * s
        weights = {b.name: 1 - w_parent}
        if b.parent is not None and rig.bones[b.parent].radius is not None:
            weights[b.parent] = w_parent
        else:
            weights[b.name] = np.ones_like(s)
        verts = bumps(gen, verts, faces, bumpiness * min(b.radius))
        mb.add(verts, faces, uvs, b.mat, weights)
    obj = mb.build("body", [mats["body"], mats["second"]])
    obj.parent = rig.armature
    obj.modifiers.new("Armature", "ARMATURE").object = rig.armature
    return obj


def head(gen: Gen, rig: Rig, bone: str, center, radii, mats: dict, segments: int) -> None:
    """An ellipsoid head with eye decals on `bone`: a boolean mouth cut into its front, horns or antennae."""
    rng = gen.shape
    center, radii = np.asarray(center, float), np.asarray(radii, float)
    obj = attach(rig, bone, "head", ellipsoid(center, radii, segments), mats["head"])
    if rng.random() < 0.6:  # a mouth: a sphere bitten out of the lower front
        r = float(min(radii) * rng.uniform(0.3, 0.5))
        boolean_cut(gen, obj, [sphere_cutter(center + [0, -radii[1] * 1.0, -radii[2] * 0.35], r)])
    kind = rng.choice(["none", "horns", "antennae", "ears"])
    for sx in (-1, 1):
        if kind == "horns":
            p0 = center + [sx * radii[0] * 0.5, 0, radii[2] * 0.7]
            geo = tube(p0, p0 + [sx * radii[0] * 0.6, radii[1] * 0.2, radii[2] * 1.2], min(radii) * 0.18, 0.004, 8, 3)
            attach(rig, bone, f"horn_{sx}", geo, mats["accent"])
        elif kind == "antennae":
            p0 = center + [sx * radii[0] * 0.35, -radii[1] * 0.3, radii[2] * 0.85]
            geo = wire(gen, p0, p0 + [sx * radii[0] * 0.8, -radii[1] * 0.8, radii[2] * 2.0], 0.012 * radii.max() / 0.15)
            if geo is not None:
                attach(rig, bone, f"antenna_{sx}", geo, mats["accent"])
        elif kind == "ears":
            p0 = center + [sx * radii[0] * 0.6, 0, radii[2] * 0.6]
            geo = tube(p0, p0 + [sx * radii[0] * 0.5, 0, radii[2] * 0.9], min(radii) * 0.3, min(radii) * 0.08, 8, 2, flat=0.35)
            attach(rig, bone, f"ear_{sx}", geo, mats["second"])


def creature(gen: Gen, name: str, bones: list[Bone], head_c, head_radii, base_segments: int) -> tuple[Rig, dict]:
    """A whole creature: armature, materials, head on the `head` bone, skinned body (bumped when shapes are on).
    Returns the rig and the rest snapshot that clips return to."""
    rig = build_armature(name, bones)
    mats = materials(gen, name)
    seg = gen.segments(base_segments)
    head(gen, rig, "head", head_c, head_radii, mats, seg)
    skin_tubes(gen, rig, mats, seg, bumpiness=float(gen.shape.uniform(0.05, 0.25)))
    return rig, snapshot()
