"""Quadrupeds: a horizontal spine (hips, spine, chest), a neck of 1-3 bones, a head with a snout, four legs
of three bones and a tail of 2-5; proportions from dachshund to giraffe. Clips: idle, walk (four beats) and
a few of trot, gallop, turn, jump and an action (graze, rear, wag, shake), some travelling."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen
from render.procedural.creature import creature
from render.procedural.gaits import Leg, bob, breathe, jump, leg_cycle, look_around, stride_distance, travel, turn_in_place
from render.procedural.motion import X, Y, Z, Motion, rest
from render.procedural.rig import Bone

ACTIONS = ("graze", "rear", "wag", "shake")


def skeleton(rng: np.random.Generator) -> tuple[list[Bone], dict]:
    body = rng.uniform(0.8, 1.6)
    leg = body * rng.uniform(0.35, 0.9)
    z = leg * 1.02
    thick = body * rng.uniform(0.1, 0.17)
    hw = thick * rng.uniform(0.6, 1.0)
    bones = [Bone("hips", (0, body / 2, z), (0, body / 6, z), None, (thick, thick * 1.1), 0, 0.85),
             Bone("spine", (0, body / 6, z), (0, -body / 6, z), "hips", (thick * 1.1, thick * 1.2), 0, 0.85),
             Bone("chest", (0, -body / 6, z), (0, -body / 2, z), "spine", (thick * 1.2, thick * 1.1), 0, 0.85)]
    n_neck = int(rng.integers(1, 4))
    neck_len, neck_up = body * rng.uniform(0.25, 0.7), rng.uniform(0.3, 1.2)
    p, parent = np.array([0, -body / 2, z]), "chest"
    for i in range(n_neck):
        q = p + neck_len / n_neck * np.array([0, -np.cos(neck_up), np.sin(neck_up)])
        bones.append(Bone(f"neck{i}", tuple(p), tuple(q), parent, (thick * (0.6 - 0.1 * i / n_neck), thick * 0.5), 0))
        p, parent = q, f"neck{i}"
    head_r = thick * rng.uniform(0.8, 1.3)
    bones.append(Bone("head", tuple(p), tuple(p + [0, -head_r * 2, 0]), parent))
    for end, y, parent in (("hind", body / 2 * 0.8, "hips"), ("front", -body / 2 * 0.8, "chest")):
        for sx in (-1, 1):
            s = "L" if sx > 0 else "R"
            p = np.array([sx * hw, y, z])
            for name, frac, r, par in ((f"{end}_upper_{s}", 0.45, (0.55, 0.4), parent), (f"{end}_lower_{s}", 0.45, (0.4, 0.28), f"{end}_upper_{s}")):
                q = p + [0, 0, -leg * frac]
                bones.append(Bone(name, tuple(p), tuple(q), par, (thick * r[0], thick * r[1]), 1))
                p = q
            bones.append(Bone(f"{end}_foot_{s}", tuple(p), tuple([sx * hw, y - leg * 0.08, thick * 0.2]), f"{end}_lower_{s}",
                              (thick * 0.3, thick * 0.25), 1))
    n_tail = int(rng.integers(2, 6))
    tail_len, droop = body * rng.uniform(0.2, 0.8), rng.uniform(-0.4, 0.9)
    p, parent = np.array([0, body / 2, z]), "hips"
    for i in range(n_tail):
        q = p + tail_len / n_tail * np.array([0, np.cos(droop), -np.sin(droop)])
        r0 = thick * rng.uniform(0.15, 0.45) * (1 - 0.6 * i / n_tail)
        bones.append(Bone(f"tail{i}", tuple(p), tuple(q), parent, (r0, r0 * 0.8), 1))
        p, parent = q, f"tail{i}"
    info = {"leg": leg, "head_c": tuple(p * 0 + bones[[b.name for b in bones].index("head")].head + np.array([0, -head_r, 0])),
            "head_r": head_r, "n_neck": n_neck, "n_tail": n_tail, "body": body}
    return bones, info


def legs(info, phases: dict[str, float]) -> list[Leg]:
    down = np.array([0.0, 0.0, -1.0])
    return [Leg([f"{end}_upper_{s}", f"{end}_lower_{s}", f"{end}_foot_{s}"], down, info["leg"], phases[f"{end}_{s}"],
                1.0 if end == "hind" else -1.0) for end in ("hind", "front") for s in "LR"]


GAITS = {"walk": {"hind_L": 0.0, "front_L": 0.25, "hind_R": 0.5, "front_R": 0.75},
         "trot": {"hind_L": 0.0, "front_R": 0.0, "hind_R": 0.5, "front_L": 0.5},
         "gallop": {"hind_L": 0.0, "hind_R": 0.1, "front_L": 0.5, "front_R": 0.6}}


def _tail(m: Motion, info, cycles: float, amount: float) -> None:
    for i in range(info["n_tail"]):
        m.rotate(f"tail{i}", Z, amount * np.sin(m.wave(cycles, -0.08 * i)))


def _gait(m: Motion, info, kind: str, cycles: float, stride: float, lift: float, moves: bool) -> None:
    lg = legs(info, GAITS[kind])
    for leg in lg:
        leg_cycle(m, leg, cycles, stride, lift)
    m.rotate("neck0", X, 0.1 * stride * np.sin(m.wave(2 * cycles)))
    if kind == "gallop":
        m.rotate("spine", X, 0.25 * np.sin(m.wave(cycles)))
    _tail(m, info, cycles, 0.25)
    bob(m, cycles, 0.03 * info["leg"] * (3 if kind == "gallop" else 1))
    if moves:
        travel(m, stride_distance(lg, stride, cycles))


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    bones, info = skeleton(rng)
    rig, saved = creature(gen, "quadruped", bones, info["head_c"], np.array([0.8, rng.uniform(1.1, 1.8), 0.85]) * info["head_r"], 12)
    clips = []
    m = Motion("idle", rng.uniform(2.0, 4.0), rig)
    breathe(m, ["spine"], 0.03)
    look_around(m, "head", rng.uniform(0.3, 0.7), 0.2)
    _tail(m, info, 1.0, 0.3)
    clips.append(m.commit())
    cyc = rng.uniform(0.9, 1.4)
    m = Motion("walk", cyc * int(rng.integers(1, 3)), rig)
    _gait(m, info, "walk", m.n / 24 / cyc, rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.4), rng.random() < 0.6)
    clips.append(m.commit())
    extras = ["trot", "gallop", "turn", "jump", "action"]
    for kind in sorted(rng.choice(extras, size=int(rng.integers(1, 5)), replace=False), key=extras.index):
        if kind in ("trot", "gallop"):
            cyc = rng.uniform(0.45, 0.7)
            m = Motion("trot" if kind == "trot" else "run", cyc * 2, rig)
            _gait(m, info, kind, 2.0, rng.uniform(0.45, 0.7), rng.uniform(0.5, 0.9), rng.random() < 0.6)
        elif kind == "turn":
            angle = float(rng.choice([-1, 1]) * rng.uniform(np.pi / 3, np.pi))
            m = Motion("turn_left" if angle > 0 else "turn_right", rng.uniform(1.0, 1.8), rig)
            for leg in legs(info, GAITS["trot"]):
                leg_cycle(m, leg, 1.0, 0.2, 0.3)
            turn_in_place(m, angle)
        elif kind == "jump":
            m = Motion("jump", rng.uniform(1.2, 1.8), rig)
            crouch = [(f"hind_upper_{s}", X, 0.5) for s in "LR"] + [(f"hind_lower_{s}", X, -0.8) for s in "LR"]
            crouch += [("chest", X, -0.2)]
            jump(m, info["leg"] * rng.uniform(0.4, 0.9), crouch, forward=info["body"] * rng.uniform(0, 1.5))
        else:
            kind = str(rng.choice(ACTIONS))
            m = Motion(kind, rng.uniform(1.5, 3.0), rig)
            up = 0.5 - 0.5 * np.cos(m.wave(1))
            if kind == "graze":
                for i in range(info["n_neck"]):
                    m.rotate(f"neck{i}", X, -1.2 / info["n_neck"] * up)
                m.rotate("head", X, -0.4 * up + 0.15 * np.sin(m.wave(6)) * up)
            elif kind == "rear":
                m.rotate("hips", X, 0.8 * up)
                for s in "LR":
                    m.rotate(f"front_upper_{s}", X, -1.0 * up + 0.4 * np.sin(m.wave(3)) * up)
                m.root_loc[:, 2] += 0.3 * info["leg"] * up
            elif kind == "wag":
                _tail(m, info, 6.0, 0.6)
                m.rotate("hips", Z, 0.1 * np.sin(m.wave(6)))
            else:
                m.rotate("head", Y, 0.5 * np.sin(m.wave(5)) * up)
                m.rotate("spine", Y, 0.15 * np.sin(m.wave(5, 0.2)) * up)
        clips.append(m.commit())
    rest(saved)
    return clips
