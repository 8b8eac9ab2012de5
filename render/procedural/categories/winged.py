"""Winged creatures (birds, bats, dragons): a short body, neck and head, a tail, two wings of three flat
bones and two short legs. Clips: idle (wings folded, looking around), fly (flapping, travelling), and a few
of hover (fast flaps), glide (spread wings, small sway), takeoff (flaps while rising) and land."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen
from render.procedural.creature import creature
from render.procedural.gaits import breathe, look_around, travel
from render.procedural.motion import FWD, X, Z, Motion, rest, toward
from render.procedural.rig import Bone


def skeleton(rng: np.random.Generator) -> tuple[list[Bone], dict]:
    body = rng.uniform(0.5, 1.0)
    thick = body * rng.uniform(0.14, 0.22)
    leg = body * rng.uniform(0.25, 0.5)
    z = leg + thick
    bones = [Bone("hips", (0, body / 2, z), (0, 0, z + body * 0.05), None, (thick * 0.8, thick), 0, 0.9),
             Bone("chest", (0, 0, z + body * 0.05), (0, -body / 2, z + body * 0.15), "hips", (thick, thick * 0.9), 0, 0.9)]
    neck = body * rng.uniform(0.1, 0.5)
    top = np.array([0, -body / 2 - neck * 0.4, z + body * 0.15 + neck * 0.9])
    bones.append(Bone("neck", (0, -body / 2, z + body * 0.15), tuple(top), "chest", (thick * 0.55, thick * 0.45), 0))
    head_r = thick * rng.uniform(0.6, 1.0)
    bones.append(Bone("head", tuple(top), tuple(top + [0, -head_r * 2, 0]), "neck"))
    span = body * rng.uniform(1.0, 2.2)  # each wing
    chord = body * rng.uniform(0.25, 0.5)
    for sx in (-1, 1):
        s = "L" if sx > 0 else "R"
        p, parent = np.array([sx * thick * 0.7, -body * 0.15, z + body * 0.12]), "chest"
        for i, (frac, r) in enumerate(((0.35, (0.55, 0.5)), (0.35, (0.5, 0.35)), (0.3, (0.35, 0.05)))):
            q = p + [sx * span * frac, body * 0.05 * i, span * frac * 0.05]
            bones.append(Bone(f"wing{i}_{s}", tuple(p), tuple(q), parent, (chord * r[0], chord * r[1]), 1, 0.08))
            p, parent = q, f"wing{i}_{s}"
        p = np.array([sx * thick * 0.5, body * 0.15, z])
        bones.append(Bone(f"thigh_{s}", tuple(p), tuple(p + [0, -leg * 0.1, -leg * 0.5]), "hips", (thick * 0.3, thick * 0.2), 1))
        bones.append(Bone(f"shin_{s}", tuple(p + [0, -leg * 0.1, -leg * 0.5]), (sx * thick * 0.5, body * 0.05, 0.01), f"thigh_{s}",
                          (thick * 0.18, thick * 0.12), 1))
    n_tail = int(rng.integers(1, 5))
    p, parent = np.array([0, body / 2, z]), "hips"
    for i in range(n_tail):
        q = p + [0, body * rng.uniform(0.15, 0.4), -body * 0.05]
        bones.append(Bone(f"tail{i}", tuple(p), tuple(q), parent, (thick * 0.4 * (1 - 0.2 * i), thick * 0.3 * (1 - 0.2 * i)), 1,
                          rng.uniform(0.2, 1.0)))
        p, parent = q, f"tail{i}"
    return bones, {"head_c": tuple(top + [0, -head_r, 0]), "head_r": head_r, "n_tail": n_tail, "span": span, "body": body}


def _flap(m: Motion, cycles: float, amount: float, fold: float = 0.3) -> None:
    for s, sx in (("L", 1), ("R", -1)):
        out = np.array([sx, 0.0, 0.0])
        w = m.wave(cycles)
        m.rotate(f"wing0_{s}", toward(out, Z), amount * np.sin(w))
        m.rotate(f"wing1_{s}", toward(out, Z), amount * 0.5 * np.sin(w - 0.6) - fold * np.clip(-np.sin(w), 0, None))
        m.rotate(f"wing2_{s}", toward(out, Z), amount * 0.4 * np.sin(w - 1.2))
        m.rotate(f"wing0_{s}", toward(out, FWD), 0.2 * amount * np.cos(w))


def _folded(m: Motion, amount: float) -> None:
    for s, sx in (("L", 1), ("R", -1)):
        out = np.array([sx, 0.0, 0.0])
        m.rotate(f"wing0_{s}", toward(out, -FWD), amount * np.ones_like(m.t))
        m.rotate(f"wing1_{s}", toward(out, FWD), 2 * amount * np.ones_like(m.t))


def _tail(m: Motion, n: int, cycles: float, amount: float) -> None:
    for i in range(n):
        m.rotate(f"tail{i}", X, amount * np.sin(m.wave(cycles, -0.1 * i)))


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    bones, info = skeleton(rng)
    rig, saved = creature(gen, "winged", bones, info["head_c"], np.array([0.8, rng.uniform(1.0, 1.6), 0.8]) * info["head_r"], 12)
    clips = []
    m = Motion("idle", rng.uniform(2.0, 3.5), rig)
    _folded(m, rng.uniform(0.6, 1.1))
    breathe(m, ["chest"], 0.05)
    look_around(m, "neck", 0.6, 0.2)
    clips.append(m.commit())
    rate = rng.uniform(1.5, 3.5)  # flaps per second
    m = Motion("fly", rng.uniform(1.0, 2.0), rig)
    cycles = max(1, round(rate * m.n / 24))
    _flap(m, cycles, rng.uniform(0.6, 1.0))
    _tail(m, info["n_tail"], cycles, 0.15)
    m.root_loc[:, 2] += 0.08 * info["span"] * np.sin(m.wave(cycles, 0.25)) + info["body"] * 0.8
    m.rotate("hips", X, -0.15 * np.ones_like(m.t))
    if rng.random() < 0.7:
        travel(m, info["body"] * rng.uniform(2.0, 5.0))
    clips.append(m.commit())
    extras = ["hover", "glide", "takeoff", "land"]
    for kind in sorted(rng.choice(extras, size=int(rng.integers(1, 4)), replace=False), key=extras.index):
        m = Motion(kind, rng.uniform(1.0, 2.5), rig)
        if kind == "hover":
            c = max(2, round(2 * rate * m.n / 24))
            _flap(m, c, 0.7)
            m.root_loc[:, 2] += info["body"] * 0.8 + 0.03 * info["span"] * np.sin(m.wave(c))
            m.rotate("chest", X, 0.4 * np.ones_like(m.t))
        elif kind == "glide":
            _flap(m, 1, 0.12)
            m.turn_root(FWD, 0.25 * np.sin(m.wave(1)))
            m.root_loc[:, 2] += info["body"] * 0.8
            travel(m, info["body"] * rng.uniform(2.0, 5.0))
        else:
            c = max(1, round(rate * m.n / 24))
            _flap(m, c, 0.9)
            up = m.t if kind == "takeoff" else 1 - m.t
            m.root_loc[:, 2] += info["body"] * 1.2 * up ** 1.5
            for s in "LR":
                m.rotate(f"thigh_{s}", X, 0.6 * up)
        _tail(m, info["n_tail"], 1, 0.2)
        clips.append(m.commit())
    rest(saved)
    return clips
