"""Many-legged crawlers (insects, spiders, centipedes): a chain of 2-8 body segments, 3-8 pairs of thin
sprawled legs (two bones each), antennae; clips: idle (antennae and breathing), crawl (a wave of steps
along the body, travelling) and a few of scuttle (fast alternating tripods), turn and rear (the front
rises, front legs wave)."""

from __future__ import annotations

import numpy as np

from render.procedural.common import Gen
from render.procedural.creature import creature
from render.procedural.gaits import Leg, leg_cycle, stride_distance, travel, turn_in_place
from render.procedural.motion import X, Z, Motion, rest
from render.procedural.rig import Bone


def skeleton(rng: np.random.Generator) -> tuple[list[Bone], dict]:
    n_seg = int(rng.integers(2, 9))
    seg_len = rng.uniform(0.15, 0.35) * (3 / n_seg) ** 0.3
    thick = seg_len * rng.uniform(0.4, 0.8)
    leg = seg_len * rng.uniform(2.0, 4.5) * (3 / n_seg) ** 0.2
    leg_r = thick * rng.uniform(0.08, 0.2)
    z = leg * 0.45
    length = n_seg * seg_len
    bones, legs = [], []
    pairs = int(min(8, max(3, n_seg if n_seg > 3 else 3)))
    for i in range(n_seg):
        y0 = length / 2 - i * seg_len
        r = thick * (0.9 + 0.3 * np.sin(np.pi * (i + 0.5) / n_seg))
        bones.append(Bone(f"seg{i}", (0, y0, z), (0, y0 - seg_len, z), f"seg{i - 1}" if i else None, (r, r * 0.9), i % 2, 0.75))
    for k in range(pairs):
        i = int(round((k + 0.5) / pairs * n_seg - 0.5))
        y = length / 2 - (i + 0.5) * seg_len
        for sx in (-1, 1):
            s = "L" if sx > 0 else "R"
            splay = (k / max(1, pairs - 1) - 0.5) * rng.uniform(0.3, 1.0)
            out = np.array([sx * np.cos(splay), -np.sin(splay), 0.0])
            knee = np.array([0, y, z]) + out * leg * 0.45 + [0, 0, leg * 0.25]
            foot = np.array([0, y, 0]) + out * leg * 0.8
            bones.append(Bone(f"leg{k}a_{s}", (sx * thick * 0.6, y, z), tuple(knee), f"seg{i}", (leg_r, leg_r * 0.8), 1))
            bones.append(Bone(f"leg{k}b_{s}", tuple(knee), tuple(foot), f"leg{k}a_{s}", (leg_r * 0.8, leg_r * 0.4), 1))
            d = (foot - np.array([sx * thick * 0.6, y, z]))
            legs.append(Leg([f"leg{k}a_{s}", f"leg{k}b_{s}"], d / np.linalg.norm(d), leg * 0.8, k / pairs * 0.5 + (0.5 if sx > 0 else 0),
                            -1.0))
    front = np.array([0, -length / 2, z])
    bones.append(Bone("head", tuple(front), tuple(front + [0, -thick, 0]), "seg0" if n_seg == 1 else f"seg{n_seg - 1}"))
    for sx in (-1, 1):
        s = "L" if sx > 0 else "R"
        a0 = front + [sx * thick * 0.3, -thick * 1.3, thick * 0.4]
        a1 = a0 + [sx * leg * 0.2, -leg * 0.35, leg * 0.25]
        a2 = a1 + [sx * leg * 0.15, -leg * 0.3, -leg * 0.05]
        bones.append(Bone(f"antenna0_{s}", tuple(a0), tuple(a1), "head", (leg_r * 0.5, leg_r * 0.4), 1))
        bones.append(Bone(f"antenna1_{s}", tuple(a1), tuple(a2), f"antenna0_{s}", (leg_r * 0.4, leg_r * 0.2), 1))
    return bones, {"legs": legs, "n_seg": n_seg, "head_c": tuple(front + [0, -thick * 0.8, 0]), "head_r": thick, "length": length}


def _wiggle(m: Motion, info, cycles: float, amount: float) -> None:
    for i in range(1, info["n_seg"]):
        m.rotate(f"seg{i}", Z, amount * np.sin(m.wave(cycles, -i / info["n_seg"])))


def _antennae(m: Motion, cycles: float, amount: float) -> None:
    for s, sx in (("L", 1), ("R", -1)):
        m.rotate(f"antenna0_{s}", Z, sx * amount * np.sin(m.wave(cycles, 0.3 * sx)))
        m.rotate(f"antenna1_{s}", X, amount * np.sin(m.wave(2 * cycles)))


def build(gen: Gen) -> list[str]:
    rng = gen.rng
    bones, info = skeleton(rng)
    rig, saved = creature(gen, "crawler", bones, info["head_c"], np.array([1.0, 1.1, 0.8]) * info["head_r"], 10)
    clips = []
    m = Motion("idle", rng.uniform(2.0, 3.5), rig)
    _antennae(m, 2.0, 0.4)
    for i in range(info["n_seg"]):
        m.rotate(f"seg{i}", X, 0.03 * np.sin(m.wave(1, 0.1 * i)))
    clips.append(m.commit())
    cyc = rng.uniform(0.5, 1.0)
    m = Motion("crawl", cyc * int(rng.integers(2, 4)), rig)
    c = m.n / 24 / cyc
    for leg in info["legs"]:
        leg_cycle(m, leg, c, 0.35, 0.35)
    _wiggle(m, info, c, 0.12 if info["n_seg"] > 3 else 0.0)
    _antennae(m, c, 0.2)
    if rng.random() < 0.7:
        travel(m, stride_distance(info["legs"], 0.35, c))
    clips.append(m.commit())
    extras = ["scuttle", "turn", "rear"]
    for kind in sorted(rng.choice(extras, size=int(rng.integers(1, 4)), replace=False), key=extras.index):
        if kind == "scuttle":
            m = Motion("scuttle", rng.uniform(0.8, 1.5), rig)
            c = max(2, round(m.n / 24 / 0.3))
            for leg in info["legs"]:
                tripod = leg.phase - leg.phase % 0.5 + (0.5 * (int(leg.bones[0][3]) % 2))
                leg_cycle(m, leg, c, 0.4, 0.4, extra_phase=tripod - leg.phase)
            if rng.random() < 0.7:
                travel(m, stride_distance(info["legs"], 0.4, c))
        elif kind == "turn":
            angle = float(rng.choice([-1, 1]) * rng.uniform(np.pi / 3, np.pi))
            m = Motion("turn_left" if angle > 0 else "turn_right", rng.uniform(1.0, 2.0), rig)
            for leg in info["legs"]:
                leg_cycle(m, leg, 2.0, 0.25, 0.3)
            turn_in_place(m, angle)
        else:
            m = Motion("rear", rng.uniform(1.5, 2.5), rig)
            up = 0.5 - 0.5 * np.cos(m.wave(1))
            front = f"seg{info['n_seg'] - 1}" if info["n_seg"] > 1 else "seg0"
            m.rotate("seg0" if info["n_seg"] == 1 else f"seg{max(1, info['n_seg'] // 2)}", X, 0.5 * up)
            for leg in info["legs"][:2]:
                m.rotate(leg.bones[0], X, 0.8 * up * (1 + 0.3 * np.sin(m.wave(4))))
            _antennae(m, 3.0, 0.5)
            m.rotate(front, X, 0.2 * up)
        clips.append(m.commit())
    rest(saved)
    return clips
