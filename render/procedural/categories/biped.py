"""Bipeds: humanoid skeletons (hips, spine, chest, neck, head, arms with hands, legs with feet, sometimes a
tail) of varied proportions; clips idle, walk and a few of run, turn, jump and an action (wave, punch,
kick, dance, cheer), walk and run travelling in some assets."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen
from render.procedural.creature import creature
from render.procedural.gaits import Leg, bob, breathe, jump, leg_cycle, look_around, stride_distance, travel, turn_in_place
from render.procedural.motion import FWD, X, Y, Z, Motion, rest, toward
from render.procedural.rig import Bone

ACTIONS = ("wave", "punch", "kick", "dance", "cheer")


def skeleton(rng: np.random.Generator) -> tuple[list[Bone], dict]:
    h = rng.uniform(1.2, 2.0)
    leg = h * rng.uniform(0.38, 0.55)
    torso = h * rng.uniform(0.24, 0.34)
    hip_z = leg * 1.04
    hw, sw = h * rng.uniform(0.05, 0.1), h * rng.uniform(0.1, 0.2)
    arm = h * rng.uniform(0.28, 0.48)
    thick = h * rng.uniform(0.028, 0.06)
    spread = rng.uniform(0.25, 0.8)  # arms out from the body (A-pose angle, radians)
    bones = [Bone("hips", (0, 0, hip_z), (0, 0, hip_z + torso / 3), None, (thick * 2.2, thick * 2.0), 1, 0.7)]
    z = hip_z + torso / 3
    for name, parent, r in (("spine", "hips", (2.0, 2.2)), ("chest", "spine", (2.2, 2.5))):
        bones.append(Bone(name, (0, 0, z), (0, 0, z + torso / 3), parent, (thick * r[0], thick * r[1]), 0, 0.7))
        z += torso / 3
    neck = h * rng.uniform(0.03, 0.07)
    bones.append(Bone("neck", (0, 0, z), (0, 0, z + neck), "chest", (thick * 0.8, thick * 0.7), 0))
    head_r = h * rng.uniform(0.07, 0.12)
    bones.append(Bone("head", (0, 0, z + neck), (0, 0, z + neck + 2 * head_r), "neck"))
    shoulder_z = z - thick * 0.5
    for sx in (-1, 1):
        s = "L" if sx > 0 else "R"
        bones.append(Bone(f"clavicle_{s}", (sx * thick, 0, shoulder_z), (sx * sw, 0, shoulder_z), "chest", (thick, thick), 0))
        d = np.array([sx * np.sin(spread), 0, -np.cos(spread)])
        p = np.array([sx * sw, 0, shoulder_z])
        for name, parent, frac, r in ((f"upperarm_{s}", f"clavicle_{s}", 0.5, (1.0, 0.8)), (f"forearm_{s}", f"upperarm_{s}", 0.4, (0.8, 0.6)),
                                      (f"hand_{s}", f"forearm_{s}", 0.12, (0.9, 0.7))):
            bones.append(Bone(name, tuple(p), tuple(p + d * arm * frac), parent, (thick * r[0], thick * r[1]), 0))
            p = p + d * arm * frac
        p = np.array([sx * hw, 0, hip_z])
        for name, parent, frac, r in ((f"thigh_{s}", "hips", 0.5, (1.4, 1.0)), (f"shin_{s}", f"thigh_{s}", 0.46, (1.0, 0.75))):
            bones.append(Bone(name, tuple(p), tuple(p + [0, 0, -leg * frac]), parent, (thick * r[0], thick * r[1]), 1))
            p = p + [0, 0, -leg * frac]
        foot = h * rng.uniform(0.08, 0.14)
        bones.append(Bone(f"foot_{s}", tuple(p), tuple(p + [0, -foot, -p[2] + thick * 0.5]), f"shin_{s}", (thick * 0.8, thick * 0.6), 1, 0.6))
    tail = rng.random() < 0.25
    if tail:
        p, parent = np.array([0, thick * 2, hip_z]), "hips"
        for i in range(3):
            q = p + [0, leg * 0.25, -leg * 0.08 * (i + 1)]
            bones.append(Bone(f"tail{i}", tuple(p), tuple(q), parent, (thick * (0.9 - 0.25 * i), thick * (0.65 - 0.2 * i)), 1))
            p, parent = q, f"tail{i}"
    info = {"h": h, "leg": leg, "head_r": head_r, "head_c": (0, 0, z + neck + head_r), "tail": tail, "thick": thick}
    return bones, info


def _legs(info) -> list[Leg]:
    down = np.array([0.0, 0.0, -1.0])
    return [Leg([f"thigh_{s}", f"shin_{s}", f"foot_{s}"], down, info["leg"], ph) for s, ph in (("L", 0.0), ("R", 0.5))]


def _arm_swing(m: Motion, cycles: float, amount: float, bend: float) -> None:
    for s, ph in (("L", 0.5), ("R", 0.0)):  # arms swing against the legs
        m.rotate(f"upperarm_{s}", X, -amount * np.sin(m.wave(cycles, ph)))
        m.rotate(f"forearm_{s}", X, -bend - 0.3 * amount * (1 + np.sin(m.wave(cycles, ph))))


def _gait(m: Motion, info, cycles: float, stride: float, lift: float, moves: bool, lean: float) -> None:
    legs = _legs(info)
    for leg in legs:
        leg_cycle(m, leg, cycles, stride, lift)
    _arm_swing(m, cycles, stride * 1.1, 0.2 + lean)
    m.rotate("spine", Z, 0.12 * stride * np.sin(m.wave(cycles)))
    m.rotate("hips", X, -lean * np.ones_like(m.t))
    bob(m, cycles, 0.04 * info["leg"] * (1 + 2 * lean))
    if info["tail"]:
        for i in range(3):
            m.rotate(f"tail{i}", Z, 0.3 * np.sin(m.wave(cycles, 0.1 * i)))
    if moves:
        travel(m, stride_distance(legs, stride, cycles))


def _action(m: Motion, kind: str, rng: np.random.Generator) -> None:
    s = str(rng.choice(["L", "R"]))
    sx = 1.0 if s == "L" else -1.0
    if kind == "wave":
        m.rotate(f"upperarm_{s}", Y, sx * 2.2 * (0.5 - 0.5 * np.cos(m.wave(1))))
        m.rotate(f"forearm_{s}", Y, sx * 0.6 * np.sin(m.wave(4)) * (0.5 - 0.5 * np.cos(m.wave(1))))
    elif kind == "punch":
        hit = np.clip(np.sin(m.wave(2)), 0, None) ** 2
        m.rotate(f"upperarm_{s}", X, -1.5 * hit)
        m.rotate(f"forearm_{s}", X, -1.2 * (1 - hit))
        m.rotate("chest", Z, sx * 0.4 * hit)
    elif kind == "kick":
        hit = np.clip(np.sin(m.wave(1)), 0, None) ** 2
        m.rotate(f"thigh_{s}", toward([0, 0, -1], FWD), 1.4 * hit)
        m.rotate(f"shin_{s}", X, 0.9 * (np.sin(m.wave(1)) > 0) * (1 - hit) * np.clip(np.sin(m.wave(1)), 0, None))
        m.rotate("chest", X, 0.3 * hit)
    elif kind == "dance":
        m.rotate("hips", Z, 0.5 * np.sin(m.wave(2)))
        m.rotate("chest", Y, 0.3 * np.sin(m.wave(4)))
        for side, sgn in (("L", 1), ("R", -1)):
            m.rotate(f"upperarm_{side}", Y, sgn * (1.2 + 0.6 * np.sin(m.wave(4, 0.25 * sgn))))
            m.rotate(f"thigh_{side}", X, -0.4 * np.clip(np.sin(m.wave(2, 0.5 * (sgn > 0))), 0, None))
        m.root_loc[:, 2] += 0.05 * np.abs(np.sin(m.wave(4)))
    else:  # cheer: both arms up, a hop
        up = 0.5 - 0.5 * np.cos(m.wave(2))
        for side, sgn in (("L", 1), ("R", -1)):
            m.rotate(f"upperarm_{side}", Y, sgn * 2.4 * up)
        m.root_loc[:, 2] += 0.12 * np.clip(np.sin(m.wave(2)), 0, None)


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    bones, info = skeleton(rng)
    rig, saved = creature(gen, "biped", bones, info["head_c"], np.array([0.9, 1.0, 1.1]) * info["head_r"] * rng.uniform(0.9, 1.2, 3), 12)
    clips = []
    m = Motion("idle", rng.uniform(2.0, 4.0), rig)
    breathe(m, ["spine", "chest"], 0.04)
    look_around(m, "neck", rng.uniform(0.3, 0.8), 0.15)
    for s, sx in (("L", 1), ("R", -1)):
        m.rotate(f"upperarm_{s}", Y, sx * 0.08 * np.sin(m.wave(1)))
    clips.append(m.commit())
    cyc = rng.uniform(0.9, 1.3)
    m = Motion("walk", cyc * int(rng.integers(1, 3)), rig)
    _gait(m, info, m.n / 24 / cyc, rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.45), rng.random() < 0.6, 0.05)
    clips.append(m.commit())
    extras = ["run", "turn", "jump", "action"]
    for kind in sorted(rng.choice(extras, size=int(rng.integers(1, 5)), replace=False), key=extras.index):
        if kind == "run":
            cyc = rng.uniform(0.55, 0.75)
            m = Motion("run", cyc * 2, rig)
            _gait(m, info, 2.0, rng.uniform(0.6, 0.85), rng.uniform(0.7, 1.0), rng.random() < 0.6, 0.25)
        elif kind == "turn":
            angle = float(rng.choice([-1, 1]) * rng.uniform(np.pi / 3, np.pi))
            m = Motion("turn_left" if angle > 0 else "turn_right", rng.uniform(1.0, 1.6), rig)
            for leg in _legs(info):
                leg_cycle(m, leg, 1.0, 0.25, 0.3)
            turn_in_place(m, angle)
        elif kind == "jump":
            m = Motion("jump", rng.uniform(1.2, 1.8), rig)
            crouch = [(f"thigh_{s}", X, -0.7) for s in "LR"] + [(f"shin_{s}", X, 1.2) for s in "LR"]
            crouch += [(f"upperarm_{s}", X, 0.6) for s in "LR"]
            jump(m, info["leg"] * rng.uniform(0.3, 0.7), crouch, forward=info["leg"] * rng.uniform(0, 1.2))
        else:
            kind = str(rng.choice(ACTIONS))
            m = Motion(kind, rng.uniform(1.5, 3.0), rig)
            _action(m, kind, rng)
        clips.append(m.commit())
    rest(saved)
    return clips
