"""Gait cycles and whole-body moves for legged rigs (bipeds, quadrupeds, crawlers, winged creatures' legs).

A leg is a chain of bones from the hip; its cycle at phase p: the hip swings the leg forward and back
(`stride` radians), the leg lifts while it swings forward (`lift`), the knee folds while lifted. Gaits
differ by the legs' phases: biped walk (0, 1/2), quadruped walk (four beats), trot (diagonal pairs),
gallop-like run (pairs), crawler wave (phase along the body, sides opposite). Travel moves the root along
the facing direction at a speed matched to the stride, so feet roughly keep their ground speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from render.procedural.motion import FWD, Z, Motion, toward


@dataclass
class Leg:
    bones: list[str]        # hip -> foot
    direction: np.ndarray   # rest direction hip -> foot (unit)
    length: float
    phase: float = 0.0      # in cycles
    knee_sign: float = 1.0  # which way the knee folds (+1: the foot goes back)


def leg_cycle(m: Motion, leg: Leg, cycles: float, stride: float, lift: float, extra_phase: float = 0.0) -> None:
    w = m.wave(cycles, leg.phase + extra_phase)
    d = leg.direction
    swing_axis = toward(d, FWD)
    m.rotate(leg.bones[0], swing_axis, stride * np.sin(w))
    up = np.clip(np.cos(w), 0, None)  # lifted while swinging forward
    lift_axis = toward(d, Z) if abs(d[2]) < 0.7 else swing_axis
    if abs(d[2]) < 0.7:  # sprawled legs (crawlers) lift at the hip
        m.rotate(leg.bones[0], lift_axis, lift * up)
    if len(leg.bones) > 1:
        m.rotate(leg.bones[1], swing_axis, -leg.knee_sign * lift * (0.6 + 1.4 * up))
    if len(leg.bones) > 2:
        m.rotate(leg.bones[2], swing_axis, leg.knee_sign * lift * 0.8 * up)


def travel(m: Motion, distance: float, heading: float = 0.0) -> None:
    """Move the root `distance` along the facing direction turned by `heading` (radians about Z), evenly."""
    d = np.array([np.sin(heading) * -1, 0.0, 0.0]) + FWD * np.cos(heading)
    m.root_loc += m.t[:, None] * distance * d[None]


def bob(m: Motion, cycles: float, amount: float) -> None:
    """The body rises and falls twice per gait cycle."""
    m.root_loc[:, 2] += amount * (0.5 - 0.5 * np.cos(m.wave(2 * cycles)))


def stride_distance(legs: list[Leg], stride: float, cycles: float) -> float:
    """Ground covered by `cycles` gait cycles: each foot sweeps ~2 L sin(stride) per cycle."""
    length = float(np.mean([leg.length for leg in legs]))
    return cycles * 2 * length * np.sin(stride) * 1.6


def turn_in_place(m: Motion, angle: float) -> None:
    """The root yaws by `angle` with a smooth start and stop (ends turned: a one-way clip)."""
    s = 0.5 - 0.5 * np.cos(np.pi * m.t)
    m.turn_root(Z, angle * s)


def jump(m: Motion, height: float, crouch_bones: list[tuple[str, np.ndarray, float]], forward: float = 0.0) -> None:
    """Crouch, leap (a parabola from 30% to 75% of the clip), land and recover; `crouch_bones` are
    (bone, axis, angle) folded while crouching (before take-off and after landing)."""
    t = m.t
    air = np.clip((t - 0.3) / 0.45, 0, 1)
    m.root_loc[:, 2] += height * 4 * air * (1 - air)
    m.root_loc += forward * np.clip((t - 0.3) / 0.45, 0, 1)[:, None] * FWD[None]
    crouch = np.exp(-((t - 0.25) / 0.08) ** 2) + np.exp(-((t - 0.8) / 0.08) ** 2)
    m.root_loc[:, 2] -= 0.08 * height * crouch
    for bone, axis, angle in crouch_bones:
        m.rotate(bone, axis, angle * crouch)


def breathe(m: Motion, bones: list[str], amount: float, cycles: float = 1.0) -> None:
    """Idle: a slow rise and fall through a chain of spine bones."""
    for i, b in enumerate(bones):
        m.rotate(b, np.array([1.0, 0.0, 0.0]), amount * np.sin(m.wave(cycles, 0.1 * i)))


def look_around(m: Motion, bone: str, yaw: float, pitch: float, cycles: float = 1.0) -> None:
    m.rotate(bone, Z, yaw * np.sin(m.wave(cycles)))
    m.rotate(bone, np.array([1.0, 0.0, 0.0]), pitch * np.sin(m.wave(2 * cycles, 0.25)))
