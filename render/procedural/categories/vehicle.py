"""Vehicles and machines: hierarchies of rigid parts. Cars and trucks (a body with boolean window and wheel-arch
cuts, a cabin, 4-6 spoked wheels, steering front wheels, hinged doors), tanks (a hull, road wheels, a turret
with a pitching, recoiling barrel) and machines (a base on a height field, a turning column, a hinged arm
driven by a sliding piston, a spinning fan). Clips: drive (wheels spin, travelling) or work, and a few of
steer, doors, turret/scan, fire, pump, idle (engine shake)."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen, colour
from render.procedural.mesh import box, grid, primitive, torus
from render.procedural.motion import FWD, X, Y, Z, Motion, rest, snapshot, spin
from render.procedural.shapes import boolean_cut, box_cutter, rigid_piece, wire
from render.procedural.textures import image, material


def _box(center, size) -> tuple:
    v, f, uv = box()
    return v * np.asarray(size, float) + np.asarray(center, float), f, uv


def _abs(obj) -> np.ndarray:
    """Where `obj`'s origin sits in the rest pose (parts are only translated from their parents at rest)."""
    p = np.zeros(3)
    while obj is not None:
        p += np.asarray(obj.location)
        obj = obj.parent
    return p


def _part(name, geometry, mat, parent=None, pivot=(0.0, 0.0, 0.0), smooth=False):
    """A rigid part with its origin at `pivot`; geometry and pivot in rest-pose world coordinates."""
    verts, faces, uvs = geometry[:3]
    obj = rigid_piece(name, (np.asarray(verts) - np.asarray(pivot, float), faces, uvs), mat, smooth)
    obj.parent = parent
    obj.location = tuple(map(float, np.asarray(pivot, float) - (_abs(parent) if parent is not None else 0)))
    obj.rotation_mode = "QUATERNION"
    return obj


def _wheel(gen: Gen, name: str, radius: float, width: float, at, parent, mats, seg: int):
    """A tyre (torus) with a hub and spokes, axis along X, origin at its centre `at`."""
    at = np.asarray(at, float)
    to_x = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]).T
    v, f, uv, _ = primitive("cylinder", seg)
    w = _part(name, ((v * [radius * 1.3, radius * 1.3, width * 0.8]) @ to_x + at, f, uv), mats["hub"], parent, at, smooth=True)
    tv, tf, tuv = torus(radius * 0.8, radius * 0.22, seg)
    _part(f"{name}_tyre", (tv @ to_x + at, tf, tuv), mats["rubber"], w, at, smooth=True)
    for k in range(int(gen.shape.integers(3, 8)) if gen.shapes else 0):
        a = 2 * np.pi * k / 6
        geo = wire(gen, at, at + [0, np.cos(a) * radius * 0.62, np.sin(a) * radius * 0.62], radius * 0.06)
        _part(f"{name}_spoke{k}", geo, mats["chrome"], w, at, smooth=True)
    return w


def _materials(gen: Gen) -> dict:
    rng = gen.looks
    paint = colour(rng, v=(0.3, 1.0))
    return {"paint": material("paint", gen, "paint", image(rng, paint, kinds=("noise", "stripes", "cracks", "patches"))),
            "trim": material("trim", gen, "paint", base=colour(rng)),
            "rubber": material("rubber", gen, "rubber", base=np.array([0.05, 0.05, 0.06]) + rng.uniform(0, 0.08)),
            "hub": material("hub", gen, "chrome", base=np.full(3, rng.uniform(0.5, 0.9))),
            "chrome": material("chrome", gen, "chrome", base=np.full(3, rng.uniform(0.6, 0.95))),
            "glass": material("glass", gen, "glass", base=np.array([0.1, 0.15, 0.2]) * rng.uniform(0.5, 2))}


def car(gen: Gen, mats: dict) -> tuple[dict, dict]:
    rng, seg = gen.rng, gen.segments(16)
    length, width, height = rng.uniform(1.4, 2.6), rng.uniform(0.7, 1.1), rng.uniform(0.35, 0.6)
    r = rng.uniform(0.18, 0.3) * height / 0.45
    z = r * 1.1 + height / 2
    body = _part("body", _box((0, 0, z), (width, length, height)), mats["paint"])
    n_axles = 3 if rng.random() < 0.25 else 2
    ys = np.linspace(-length * 0.33, length * 0.33, n_axles)
    boolean_cut(gen, body, [box_cutter((sx * width / 2, y, z - height / 2), (0.3 * width, 2.4 * r, 1.4 * r)) for y in ys for sx in (-1, 1)])
    cab_len = length * rng.uniform(0.3, 0.6)
    cab_at = np.array([0, -length * rng.uniform(-0.1, 0.2), z + height * 0.85])
    cab = _part("cabin", _box(cab_at, (width * 0.85, cab_len, height * 0.7)), mats["glass"] if rng.random() < 0.5 else mats["trim"], body)
    boolean_cut(gen, cab, [box_cutter(cab_at, (width * 0.9, cab_len * 0.6, height * 0.35))] if rng.random() < 0.5 else [])
    wheels, steer = [], []
    for i, y in enumerate(ys):
        for sx in (-1, 1):
            pivot = _part(f"knuckle{i}{sx}", _box((sx * width / 2, y, r), (0.02, 0.02, 0.02)), mats["hub"], body, (sx * width / 2, y, r))
            w = _wheel(gen, f"wheel{i}_{'L' if sx > 0 else 'R'}", r, width * 0.2, (sx * width / 2, y, r), pivot, mats, seg)
            wheels.append(w)
            if i == 0:
                steer.append(pivot)
    doors = []
    for sx in (-1, 1):
        if rng.random() < 0.7:
            hinge = (sx * width / 2, -length * 0.1 - cab_len * 0.3, z)
            d = _part(f"door_{'L' if sx > 0 else 'R'}", _box((sx * (width / 2 + 0.02), -length * 0.1, z + height * 0.1), (0.04, cab_len * 0.6, height * 0.7)),
                      mats["trim"], body, hinge)
            doors.append((d, sx))
    return {"root": body, "wheels": wheels, "steer": steer, "doors": doors, "r": r, "length": length}, {}


def tank(gen: Gen, mats: dict) -> tuple[dict, dict]:
    rng, seg = gen.rng, gen.segments(12)
    length, width, height = rng.uniform(1.6, 2.6), rng.uniform(1.0, 1.5), rng.uniform(0.3, 0.5)
    r = height * 0.45
    hull = _part("hull", _box((0, 0, r * 2 + height / 2), (width, length, height)), mats["paint"])
    boolean_cut(gen, hull, [box_cutter((0, -length / 2, r * 2 + height), (width * 0.6, length * 0.3, height * 0.6))])
    wheels = []
    for sx in (-1, 1):
        _part(f"track_{sx}", _box((sx * width * 0.55, 0, r), (width * 0.2, length * 1.05, r * 2)), mats["rubber"], hull)
        for i, y in enumerate(np.linspace(-length * 0.4, length * 0.4, int(rng.integers(4, 7)))):
            wheels.append(_wheel(gen, f"road{i}_{'L' if sx > 0 else 'R'}", r * 0.8, width * 0.08, (sx * width * 0.67, y, r), hull, mats, seg))
    tz = r * 2 + height
    v, f, uv, _ = primitive("cylinder", seg)
    turret = _part("turret", (v * [width * 0.7, width * 0.7, height * 0.7] + [0, 0, tz + height * 0.35], f, uv), mats["paint"], hull, (0, 0, tz), True)
    bv, bf, buv, _ = primitive("cylinder", seg)
    barrel_len = length * rng.uniform(0.5, 0.9)
    bv = (bv * [width * 0.08, width * 0.08, barrel_len]) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T + [0, -barrel_len / 2, 0]
    mount = _part("mantlet", _box((0, -width * 0.35, tz + height * 0.35), (width * 0.2, width * 0.1, width * 0.15)), mats["trim"], turret,
                  (0, -width * 0.35, tz + height * 0.35))
    barrel = _part("barrel", (bv + [0, -width * 0.35, tz + height * 0.35], bf, buv), mats["chrome"], mount, (0, -width * 0.35, tz + height * 0.35), True)
    return {"root": hull, "wheels": wheels, "steer": [], "doors": [], "turret": turret, "mount": mount, "barrel": barrel,
            "r": r, "length": length}, {}


def machine(gen: Gen, mats: dict) -> tuple[dict, dict]:
    rng, seg = gen.rng, gen.segments(14)
    size = rng.uniform(0.8, 1.4)
    n = 24 if gen.shapes else 2
    heights = None
    if gen.shapes:
        hs = gen.shape
        y, x = np.mgrid[0 : n + 1, 0 : n + 1] / n
        heights = sum(np.sin(2 * np.pi * (hs.integers(1, 4) * x + hs.integers(1, 4) * y) + hs.uniform(0, 6)) * hs.uniform(0.01, 0.04)
                      for _ in range(4)) * size
    gv, gf, guv = grid(n, n, heights)
    base = _part("base", (gv * [size * 1.4, size * 1.4, 1] + [0, 0, 0.05], gf, guv), mats["trim"])
    v, f, uv, _ = primitive("cylinder", seg)
    column = _part("column", (v * [size * 0.35, size * 0.35, size * 0.3] + [0, 0, size * 0.2], f, uv), mats["paint"], base, (0, 0, 0.05), True)
    boolean_cut(gen, column, [box_cutter((0, -size * 0.18, size * 0.2), (size * 0.2, size * 0.1, size * 0.2))])
    arm1 = _part("boom", _box((0, -size * 0.4, size * 0.4), (size * 0.12, size * 0.9, size * 0.12)), mats["paint"], column, (0, 0, size * 0.35))
    arm2 = _part("stick", _box((0, -size * 1.05, size * 0.3), (size * 0.09, size * 0.5, size * 0.09)), mats["paint"], arm1, (0, -size * 0.82, size * 0.4))
    cv, cf, cuv, _ = primitive("cylinder", seg)
    cyl = _part("piston_cylinder", (cv * [size * 0.07, size * 0.07, size * 0.3] + [size * 0.12, -size * 0.15, size * 0.25], cf, cuv),
                mats["chrome"], column, (size * 0.12, -size * 0.15, size * 0.1), True)
    rod = _part("piston_rod", (cv * [size * 0.035, size * 0.035, size * 0.3] + [size * 0.12, -size * 0.15, size * 0.45], cf, cuv),
                mats["hub"], cyl, (size * 0.12, -size * 0.15, size * 0.3), True)
    fan = _part("fan_hub", _box((size * 0.5, size * 0.4, size * 0.3), (size * 0.05, size * 0.05, size * 0.05)), mats["hub"], base, (size * 0.5, size * 0.4, size * 0.3))
    for k in range(int(rng.integers(2, 6))):
        a = 2 * np.pi * k / 5
        bv_, bf_, buv_ = _box((0, 0, 0), (size * 0.02, size * 0.08, size * 0.3))
        rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        _part(f"blade{k}", ((bv_ + [0, 0, size * 0.17]) @ rot.T + [size * 0.5, size * 0.4, size * 0.3], bf_, buv_), mats["chrome"], fan,
              (size * 0.5, size * 0.4, size * 0.3))
    return {"root": base, "column": column, "arm1": arm1, "arm2": arm2, "rod": rod, "fan": fan, "wheels": [], "steer": [], "doors": [],
            "size": size, "length": size}, {}


def _q(obj) -> tuple:
    return tuple(obj.rotation_quaternion)


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    kind = str(rng.choice(["car", "car", "tank", "machine"]))
    mats = _materials(gen)
    parts, _ = {"car": car, "tank": tank, "machine": machine}[kind](gen, mats)
    saved = snapshot()
    root = parts["root"]
    clips = []

    def wheels_roll(m: Motion, distance: float) -> None:
        angle = distance / max(parts.get("r", 0.3), 1e-3) * m.t
        for w in parts["wheels"]:
            m.key_object(w, rotation_quaternion=spin(X, -angle, _q(w)))

    if kind == "machine":
        m = Motion("work", rng.uniform(2.0, 4.0), None)
        m.key_object(parts["column"], rotation_quaternion=spin(Z, rng.uniform(0.6, 1.6) * np.sin(m.wave(1)), _q(parts["column"])))
        m.key_object(parts["arm1"], rotation_quaternion=spin(X, 0.35 * np.sin(m.wave(1, 0.25)), _q(parts["arm1"])))
        m.key_object(parts["arm2"], rotation_quaternion=spin(X, 0.6 * np.sin(m.wave(2)), _q(parts["arm2"])))
        m.key_object(parts["rod"], location=np.asarray(parts["rod"].location)[None] + np.outer(0.1 * parts["size"] * (1 + np.sin(m.wave(2))), Z))
        m.key_object(parts["fan"], rotation_quaternion=spin(X, m.wave(int(rng.integers(2, 6))), _q(parts["fan"])))
        clips.append(m.commit(root=root))
        extras = ["pump", "spin", "idle"]
    else:
        m = Motion("drive", rng.uniform(1.5, 3.0), None)
        dist = parts["length"] * rng.uniform(1.0, 3.0)
        wheels_roll(m, dist)
        if rng.random() < 0.7:
            m.root_loc += np.outer(m.t, FWD) * dist
        m.root_loc[:, 2] += 0.01 * parts["length"] * np.sin(m.wave(6))
        clips.append(m.commit(root=root))
        extras = ["steer", "doors", "idle"] if kind == "car" else ["turret", "fire", "idle"]
    for extra in sorted(rng.choice(extras, size=int(rng.integers(1, len(extras) + 1)), replace=False), key=extras.index):
        m = Motion(extra, rng.uniform(1.5, 3.0), None)
        if extra == "steer":
            sgn = float(rng.choice([-1, 1]))
            lock = 0.5 * np.sin(np.pi * m.t) * sgn
            for s in parts["steer"]:
                m.key_object(s, rotation_quaternion=spin(Z, lock, _q(s)))
            wheels_roll(m, parts["length"] * 1.5)
            m.turn_root(Z, sgn * 0.8 * m.t ** 2)
            m.root_loc += np.outer(m.t, FWD) * parts["length"] * 1.2
        elif extra == "doors":
            for d, sx in parts["doors"] or [(root, 0)]:
                if d is root:
                    m.root_loc[:, 2] += 0.05 * np.sin(m.wave(2))
                    continue
                m.key_object(d, rotation_quaternion=spin(Z, -sx * 1.1 * (0.5 - 0.5 * np.cos(m.wave(1))), _q(d)))
        elif extra == "turret":
            m.key_object(parts["turret"], rotation_quaternion=spin(Z, rng.uniform(1.0, 3.0) * np.sin(m.wave(1)), _q(parts["turret"])))
            m.key_object(parts["mount"], rotation_quaternion=spin(X, 0.25 * np.sin(m.wave(2)), _q(parts["mount"])))
        elif extra == "fire":
            kick = np.exp(-((m.t - 0.3) / 0.05) ** 2)
            m.key_object(parts["barrel"], location=np.asarray(parts["barrel"].location)[None] - np.outer(0.25 * kick, FWD))
            m.turn_root(X, 0.06 * kick)
        elif extra == "pump":
            m.key_object(parts["rod"], location=np.asarray(parts["rod"].location)[None] + np.outer(0.1 * parts["size"] * (1 + np.sin(m.wave(4))), Z))
            m.key_object(parts["arm1"], rotation_quaternion=spin(X, 0.25 * np.sin(m.wave(4)), _q(parts["arm1"])))
        elif extra == "spin":
            m.key_object(parts["column"], rotation_quaternion=spin(Z, 2 * np.pi * m.t, _q(parts["column"])))
            m.key_object(parts["fan"], rotation_quaternion=spin(X, m.wave(8), _q(parts["fan"])))
        else:  # idle: the engine shakes the body, wheels or fan turn slowly
            m.root_loc[:, 2] += 0.02 * parts["length"] * np.sin(m.wave(8))
            m.turn_root(Y, 0.03 * np.sin(m.wave(6)))
            if "turret" in parts:
                m.key_object(parts["turret"], rotation_quaternion=spin(Z, 0.3 * np.sin(m.wave(1)), _q(parts["turret"])))
            if "fan" in parts:
                m.key_object(parts["fan"], rotation_quaternion=spin(X, m.wave(3), _q(parts["fan"])))
        clips.append(m.commit(root=root))
    rest(saved)
    return clips
