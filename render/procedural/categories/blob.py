"""Blobs: Zeroverse-like compositions of 2-9 textured primitives in a hierarchy, with the shape augmentations
(height-field bumps, boolean holes, wire struts) and mixed motion: parts spin, swing, slide and pulse, the
whole hops or turns, one part deforms through shape keys (squash, twist). Clips: 2-4 of those."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen, colour
from render.procedural.mesh import PRIMITIVES, primitive
from render.procedural.motion import Z, Motion, rest, snapshot, spin
from render.procedural.shapes import boolean_cut, box_cutter, bumps, rigid_piece, sphere_cutter, wire
from render.procedural.textures import FINISHES, material


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    n = int(rng.integers(2, 10))
    parts = []
    for k in range(n):
        kind = str(rng.choice(PRIMITIVES))
        size = rng.uniform(0.25, 0.7, 3) * (1.6 if k == 0 else 1.0)
        rot = _rotation(rng) if k else np.eye(3)
        verts, faces, uvs, smooth = primitive(kind, gen.segments(16))
        verts = (verts * size) @ rot.T
        verts = bumps(gen, verts, faces, 0.05 * size.min()) if smooth else verts
        parent = parts[int(rng.integers(0, k))] if k else None
        at = np.zeros(3) if parent is None else parent["at"] + rng.normal(size=3) / np.sqrt(3) * 0.45 * parent["size"].max()
        finish = str(gen.looks.choice(sorted(FINISHES)))
        obj = rigid_piece(f"part{k}_{kind}", (verts, faces, uvs), material(f"mat{k}", gen, finish, base=colour(gen.looks)), smooth)
        obj.rotation_mode = "QUATERNION"
        obj.parent = None if parent is None else parent["obj"]
        obj.location = tuple(at - (parent["at"] if parent else 0))
        if gen.shapes and gen.shape.random() < 0.4:
            c = gen.shape.normal(size=3)
            c = c / np.linalg.norm(c) * 0.45 * size.max()
            cut = sphere_cutter(c, 0.35 * size.min()) if gen.shape.random() < 0.5 else box_cutter(c, 0.5 * size)
            boolean_cut(gen, obj, [cut])
        if parent is not None and np.linalg.norm(at - parent["at"]) > 0.05:  # a wire strut back to the parent's centre
            geo = wire(gen, np.zeros(3), parent["at"] - at, 0.015)
            if geo is not None:
                rigid_piece(f"strut{k}", geo[:3], parent["obj"].data.materials[0]).parent = obj
        parts.append({"obj": obj, "at": at, "size": size, "kind": kind})
    morph = None
    if rng.random() < 0.6:
        body = parts[0]["obj"]
        v = np.array([p.co[:] for p in body.data.vertices])
        zr = (v[:, 2] - v[:, 2].min()) / max(np.ptp(v[:, 2]), 1e-6)
        body.shape_key_add(name="Basis", from_mix=False)
        for name, co in (("squash", v * [1.3, 1.3, 0.6]),
                         ("twist", np.stack([v[:, 0] * np.cos(zr) - v[:, 1] * np.sin(zr), v[:, 0] * np.sin(zr) + v[:, 1] * np.cos(zr), v[:, 2]], -1))):
            key = body.shape_key_add(name=name, from_mix=False)
            key.data.foreach_set("co", co.astype(np.float32).ravel())
            key.value = 0.0
        morph = body.data.shape_keys
    saved = snapshot()
    clips = []
    names = ["spin", "wobble", "hop", "pulse"]
    for kind in sorted(rng.choice(names, size=int(rng.integers(2, 5)), replace=False), key=names.index):
        m = Motion(kind, rng.uniform(1.0, 3.5), None)
        root = parts[0]["obj"]
        movers = [p for p in parts[1:] if rng.random() < 0.7] or parts[-1:]
        for p in movers:
            obj, q0 = p["obj"], tuple(p["obj"].rotation_quaternion)
            axis = rng.normal(size=3)
            if kind == "spin" or (kind == "pulse" and p is root):
                m.key_object(obj, rotation_quaternion=spin(axis, m.wave(int(rng.integers(1, 3))), q0))
            elif kind == "wobble":
                m.key_object(obj, rotation_quaternion=spin(axis, rng.uniform(0.4, 1.0) * np.sin(m.wave(int(rng.integers(1, 3)))), q0))
            elif kind == "pulse":
                m.key_object(obj, scale=np.repeat((1 + rng.uniform(0.2, 0.5) * np.sin(m.wave(2)))[:, None], 3, 1))
            else:
                out = np.asarray(obj.location) / max(np.linalg.norm(obj.location), 1e-6)
                m.key_object(obj, location=np.asarray(obj.location)[None] + out[None] * 0.2 * np.sin(m.wave(2))[:, None])
        if kind == "hop":
            m.root_loc[:, 2] += rng.uniform(0.2, 0.5) * np.abs(np.sin(m.wave(int(rng.integers(1, 3)), 0) / 2))
            m.turn_root(Z, rng.uniform(0.5, 1.5) * np.sin(m.wave(1)))
        if morph is not None and kind in ("wobble", "pulse"):
            m.key_shapes(morph, {"squash": 0.5 - 0.5 * np.cos(m.wave(2)), "twist": 0.5 - 0.5 * np.cos(m.wave(1, 0.25))})
        clips.append(m.commit(root=root))
    rest(saved)
    return clips
