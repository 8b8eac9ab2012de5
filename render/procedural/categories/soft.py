"""Soft things: plants swaying on a chain of stem bones (leaves and a flower riding on them), flags whose
cloth waves through shape keys (travelling waves as pairs of keys), and faces driven by shape keys (blink,
jaw, smile, brows). Clips: sway / gust / bloom, wave / flutter / gust, talk / blink / surprise / smile."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen, colour
from render.procedural.creature import materials, skin_tubes
from render.procedural.mesh import ellipsoid, grid, primitive, tube
from render.procedural.motion import X, Z, Motion, rest, snapshot
from render.procedural.rig import Bone, attach, build_armature
from render.procedural.shapes import boolean_cut, bumps, rigid_piece, sphere_cutter, wire
from render.procedural.textures import image, material


def _shape_key(obj, name: str, co: np.ndarray) -> None:
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    key = obj.shape_key_add(name=name, from_mix=False)
    key.data.foreach_set("co", co.astype(np.float32).ravel())
    key.value = 0.0


def plant(gen: Gen) -> list[str]:
    rng = gen.rng
    n = int(rng.integers(3, 7))
    height = rng.uniform(0.8, 1.8)
    lean = rng.normal(size=2) * 0.1
    bones, p = [], np.zeros(3)
    r = height * rng.uniform(0.025, 0.05)
    for i in range(n):
        q = p + [lean[0] * height / n, lean[1] * height / n, height / n]
        bones.append(Bone(f"stem{i}", tuple(p), tuple(q), f"stem{i - 1}" if i else None, (r * (1 - 0.5 * i / n), r * (1 - 0.5 * (i + 1) / n)), 0))
        p = q
    rig = build_armature("plant", bones)
    mats = {"stem": material("stem", gen, "leaf", base=colour(gen.looks, v=(0.2, 0.6))),
            "leaf": material("leaf", gen, "leaf", image(gen.looks, colour(gen.looks, v=(0.3, 0.8)), kinds=("stripes", "noise", "spots"))),
            "flower": material("flower", gen, "skin", base=colour(gen.looks))}
    skin_tubes(gen, rig, {"body": mats["stem"], "second": mats["stem"]}, gen.segments(8), 0.0)
    n_leaves = int(rng.integers(2, 9))
    for k in range(n_leaves):
        b = bones[int(rng.integers(0, n))]
        a = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(a), np.sin(a), rng.uniform(0.1, 0.6)])
        base = np.asarray(b.head) + (np.asarray(b.tail) - np.asarray(b.head)) * rng.uniform(0.2, 0.9)
        length = height * rng.uniform(0.2, 0.45)
        geo = tube(base, base + d / np.linalg.norm(d) * length, length * 0.22, length * 0.02, 8, 4, flat=0.12)
        attach(rig, b.name, f"leaf{k}", geo[:3], mats["leaf"])
    top = bones[-1]
    flower = rng.random() < 0.6
    if flower:
        fr = height * rng.uniform(0.05, 0.1)
        attach(rig, top.name, "flower", ellipsoid(top.tail, (fr, fr, fr * 0.5), gen.segments(12)), mats["flower"])
    saved = snapshot()
    clips = []
    names = ["sway", "gust", "bloom" if flower else "droop"]
    for kind in names[: int(rng.integers(2, 4))]:
        m = Motion(kind, rng.uniform(2.0, 4.0), rig)
        az = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.cos(az), np.sin(az), 0.0])
        for i in range(n):
            if kind == "sway":
                m.rotate(f"stem{i}", axis, 0.12 * np.sin(m.wave(1, -0.07 * i)))
                m.rotate(f"stem{i}", Z, 0.05 * np.sin(m.wave(2, 0.1 * i)))
            elif kind == "gust":
                gust = np.exp(-((m.t - 0.4) / 0.2) ** 2)
                m.rotate(f"stem{i}", axis, 0.35 * gust * (1 + 0.2 * np.sin(m.wave(6))) * (0.5 + i / n))
            else:
                m.rotate(f"stem{i}", X, (0.25 if kind == "droop" else -0.1) * (0.5 - 0.5 * np.cos(m.wave(1))))
        if kind == "bloom":
            flw = next(o for o in rig.armature.children if o.name == "flower")
            m.key_object(flw, scale=np.repeat((1 + 0.6 * np.sin(np.pi * m.t))[:, None], 3, 1))
        clips.append(m.commit())
    rest(saved)
    return clips


def flag(gen: Gen) -> list[str]:
    rng = gen.rng
    h, w = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.4)
    ch = w * rng.uniform(0.5, 0.8)
    nx, ny = (24, 14) if gen.shapes else (12, 7)
    pole_mat = material("pole", gen, str(rng.choice(["chrome", "paint"])), base=colour(gen.looks))
    v, f, uv, _ = primitive("cylinder", gen.segments(10))
    rigid_piece("pole", (v * [0.04, 0.04, h] + [0, 0, h / 2], f, uv), pole_mat)
    cloth_img = image(gen.looks, colour(gen.looks), kinds=("stripes", "checker", "patches", "spots"))
    gv, gf, guv = grid(nx, ny)
    u, vv = gv[:, 0] + 0.5, gv[:, 1] + 0.5
    verts = np.stack([u * w + 0.03, np.zeros_like(u), h - ch + vv * ch], -1)
    cloth = rigid_piece("cloth", (verts, gf, guv), material("cloth", gen, "cloth", cloth_img))
    k = rng.uniform(1.5, 3.5) * 2 * np.pi / w  # wavenumber along the flag
    amp = w * rng.uniform(0.06, 0.14) * u  # fixed at the pole, loose at the end
    for name, fn in (("sin", np.sin), ("cos", np.cos)):
        for sgn, tag in ((1, "pos"), (-1, "neg")):
            co = verts.copy()
            co[:, 1] += sgn * amp * fn(k * verts[:, 0])
            co[:, 2] -= 0.1 * ch * u * (sgn > 0) * (name == "sin")
            _shape_key(cloth, f"{name}_{tag}", co)
    key = cloth.data.shape_keys
    saved = snapshot()
    clips = []
    for kind in ("wave", "flutter", "gust")[: int(rng.integers(2, 4))]:
        m = Motion(kind, rng.uniform(1.5, 3.5), None)
        speed = {"wave": 1, "flutter": 3, "gust": 2}[kind] * max(1, round(m.n / 24))
        strength = np.exp(-((m.t - 0.5) / 0.25) ** 2) if kind == "gust" else np.ones_like(m.t) * (0.6 if kind == "wave" else 1.0)
        c, s = np.cos(m.wave(speed)) * strength, -np.sin(m.wave(speed)) * strength  # sin(kx - wt) = sin kx cos wt - cos kx sin wt
        m.key_shapes(key, {"sin_pos": np.clip(c, 0, None), "sin_neg": np.clip(-c, 0, None),
                           "cos_pos": np.clip(s, 0, None), "cos_neg": np.clip(-s, 0, None)})
        clips.append(m.commit())
    rest(saved)
    return clips


def face(gen: Gen) -> list[str]:
    rng = gen.rng
    radii = np.array([rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.6)])
    mats = materials(gen, "face")
    seg = gen.segments(24)
    verts, faces, uvs = ellipsoid((0, 0, 0), radii, seg)
    verts = bumps(gen, verts, faces, 0.02)
    head = rigid_piece("face", (verts, faces, uvs), mats["head"])
    boolean_cut(gen, head, [sphere_cutter((sx * radii[0] * 0.35, -radii[1] * 0.95, radii[2] * 0.25), radii[0] * 0.12) for sx in (-1, 1)])
    v = np.array([p.co[:] for p in head.data.vertices])
    x, y, z = (v / radii).T
    front = np.clip(-y, 0, None)
    low = np.clip(-z, 0, None)
    shapes = {"jaw_open": v + np.stack([0 * x, -0.1 * front * low, -0.35 * radii[2] * low ** 1.5 * front], -1),
              "smile": v + np.stack([0.15 * radii[0] * np.sign(x) * np.abs(x) * front * (np.abs(z + 0.3) < 0.3), 0 * x,
                                      0.1 * radii[2] * np.abs(x) * front * (np.abs(z + 0.3) < 0.3)], -1),
              "brows": v + np.stack([0 * x, 0 * x, 0.12 * radii[2] * front * np.clip(z - 0.2, 0, None)], -1),
              "blink": v + np.stack([0 * x, 0.06 * radii[1] * front * (np.abs(z - 0.25) < 0.15), -0.05 * radii[2] * front * (np.abs(z - 0.25) < 0.15)], -1),
              "puff": v * (1 + 0.15 * front * (np.abs(z) < 0.3))[:, None]}
    for name in sorted(shapes):
        _shape_key(head, name, shapes[name])
    for sx in (-1, 1):
        geo = wire(gen, (sx * radii[0] * 0.2, -radii[1] * 0.2, radii[2] * 0.9), (sx * radii[0] * 0.8, -radii[1] * 0.6, radii[2] * 1.6), 0.012)
        if geo is not None:
            rigid_piece(f"antenna_{sx}", geo[:3], mats["accent"]).parent = head
    key = head.data.shape_keys
    saved = snapshot()
    clips = []
    for kind in ("talk", "blink", "surprise", "smile")[: int(rng.integers(2, 5))]:
        m = Motion(kind, rng.uniform(1.5, 3.0), None)
        if kind == "talk":
            vals = {"jaw_open": np.abs(np.sin(m.wave(int(rng.integers(3, 7))))) * 0.9, "brows": 0.3 * (0.5 - 0.5 * np.cos(m.wave(1)))}
            m.key_object(head, rotation_quaternion=np.concatenate([np.cos(0.05 * np.sin(m.wave(2)))[:, None], (np.sin(0.05 * np.sin(m.wave(2)))[:, None] * X[None])], 1))
        elif kind == "blink":
            vals = {"blink": np.exp(-((m.t % 0.5 - 0.25) / 0.05) ** 2), "puff": 0.3 * (0.5 - 0.5 * np.cos(m.wave(1)))}
        elif kind == "surprise":
            up = 0.5 - 0.5 * np.cos(m.wave(1))
            vals = {"jaw_open": up, "brows": up, "puff": 0.5 * up}
        else:
            vals = {"smile": 0.5 - 0.5 * np.cos(m.wave(1)), "brows": 0.4 * (0.5 - 0.5 * np.cos(m.wave(2)))}
            m.key_object(head, rotation_quaternion=np.concatenate([np.cos(0.1 * np.sin(m.wave(1)))[:, None], (np.sin(0.1 * np.sin(m.wave(1)))[:, None] * Z[None])], 1))
        m.key_shapes(key, vals)
        clips.append(m.commit())
    rest(saved)
    return clips


def build(gen: Gen) -> list[str]:
    kind = str(gen.rng.choice(["plant", "flag", "face"]))
    return {"plant": plant, "flag": flag, "face": face}[kind](gen)
