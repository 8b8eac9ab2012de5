"""Animation clips of an imported asset: which one drives the scene, and how long it lasts.

glTF: the importer stashes every animation as a muted NLA track (named after the animation, or
`Anim_<i>` when unnamed, made unique with `.001` suffixes) on each ID it animates; the track carries the
action and its slot. `ClipSet` lists the clips in the file's order (the manifest's `clip`), snapshots
every animated channel's rest value right after import (render/scene.py keeps the importer from posing
clip 0 first), and `select(i)` clears all actions, restores the rest values and assigns clip i's
action and slot to every ID it animates, so no pose leaks from one clip into another.

FBX: the importer makes one action per (object, take), named `<object>|<take>`; clips are the takes in
sorted order. OBJ files have no clips.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from render.reasons import AssetProblem

log = logging.getLogger(__name__)


def gltf_animation_names(path: Path) -> list[str | None]:
    """Names of the animations in a .glb/.gltf file, in file order (None when unnamed)."""
    data = Path(path).read_bytes()
    if data[:4] == b"glTF":
        if len(data) < 20:
            raise AssetProblem("import_failed", f"{path.name}: GLB header truncated")
        length, kind = struct.unpack_from("<II", data, 12)
        if kind != 0x4E4F534A:  # 'JSON'
            raise AssetProblem("import_failed", f"{path.name}: first GLB chunk is not JSON")
        raw = data[20:20 + length]
    else:
        raw = data
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssetProblem("import_failed", f"{path.name}: glTF JSON unreadable ({exc})") from None
    return [a.get("name") or None for a in doc.get("animations", [])]


def gltf_track_names(names: list[str | None]) -> list[str]:
    """The NLA track names Blender 5.0's glTF importer gives these animations (its find_unused_name)."""
    taken: set[str] = set()
    out = []
    for i, name in enumerate(names):
        stem = (name or f"Anim_{i}")[:63]
        suffix, n = "", 1
        while True:
            candidate = stem + suffix
            if len(candidate.encode("utf-8")) > 63:
                stem = stem[:-1]
                continue
            if candidate not in taken:
                break
            suffix, n = f".{n:03d}", n + 1
        taken.add(candidate)
        out.append(candidate)
    return out


def animated_ids() -> list[Any]:
    """Every ID that can carry animation in an imported asset."""
    ids: list[Any] = [*bpy.data.objects, *bpy.data.shape_keys, *bpy.data.cameras, *bpy.data.lights]
    ids += [m.node_tree for m in bpy.data.materials if m.node_tree is not None]
    return [i for i in ids if i.animation_data is not None]


@dataclass
class Clip:
    index: int
    name: str                                   # track / take name in Blender (unique, 'Anim_<i>' when unnamed)
    file_name: str = ""                         # the name in the file, '' when unnamed
    bindings: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (ID, action, slot)
    frame_start: float = 0.0                    # earliest keyframe over all channels
    frame_end: float = 0.0                      # latest keyframe over all channels


def _fcurves(action: Any, slot: Any) -> list[Any]:
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if slot is None or bag.slot == slot:
                    out.extend(bag.fcurves)
    return out


class ClipSet:
    """The clips of the asset in the current scene, and the rest values of everything they animate."""

    def __init__(self, kind: str, path: Path):
        scene = bpy.context.scene
        self.fps = scene.render.fps / scene.render.fps_base  # glTF seconds map to frames at this rate
        if kind in ("glb", "gltf"):
            in_file = gltf_animation_names(path)
            self.clips = [Clip(i, n, n2 or "") for i, (n, n2) in enumerate(zip(gltf_track_names(in_file), in_file))]
            by_name = {c.name: c for c in self.clips}
            for id_ in animated_ids():
                for track in id_.animation_data.nla_tracks:
                    clip = by_name.get(track.name)
                    if clip is not None and len(track.strips) and track.strips[0].action is not None:
                        strip = track.strips[0]
                        clip.bindings.append((id_, strip.action, strip.action_slot))
        elif kind == "fbx":
            self.clips = self._fbx_takes()
        else:
            self.clips = []
        for clip in self.clips:
            frames = [kp.co[0] for _, a, s in clip.bindings for fc in _fcurves(a, s) for kp in fc.keyframe_points]
            if frames:
                clip.frame_start, clip.frame_end = float(min(frames)), float(max(frames))
        # Rest values of every channel any clip animates: (ID, data_path, index) -> value.
        self._rest: dict[tuple[Any, str, int], float] = {}
        for clip in self.clips:
            for id_, action, slot in clip.bindings:
                for fc in _fcurves(action, slot):
                    k = (id_, fc.data_path, fc.array_index)
                    if k not in self._rest:
                        v = _get(id_, fc.data_path, fc.array_index)
                        if v is not None:
                            self._rest[k] = v

    @staticmethod
    def _fbx_takes() -> list[Clip]:
        takes: dict[str, list[tuple[Any, Any, Any]]] = {}
        users: dict[Any, list[Any]] = {}
        for id_ in animated_ids():
            if id_.animation_data.action is not None:
                users.setdefault(id_.animation_data.action, []).append(id_)
        for action in sorted(bpy.data.actions, key=lambda a: a.name):
            owner_name, _, take = action.name.partition("|")
            owner = bpy.data.objects.get(owner_name) if take else None
            take = take or action.name
            targets = [owner] if owner is not None else users.get(action, [])
            slot = action.slots[0] if len(action.slots) else None
            for id_ in targets:
                if id_.animation_data is None:
                    id_.animation_data_create()
                takes.setdefault(take, []).append((id_, action, slot))
        return [Clip(i, name, name, takes[name]) for i, name in enumerate(sorted(takes))]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clips]

    def duration_s(self, index: int) -> float:
        c = self.clips[index]
        return (c.frame_end - c.frame_start) / self.fps

    def select(self, index: int | None) -> None:
        """Make clip `index` drive the scene (None: no clip, rest pose). Raises clip_out_of_range."""
        if index is not None and not 0 <= index < len(self.clips):
            raise AssetProblem("clip_out_of_range", f"clip {index} requested; the file has {len(self.clips)} animation(s)")
        for id_ in animated_ids():
            ad = id_.animation_data
            if ad.action is not None:
                ad.action_slot = None
            ad.action = None
            for track in ad.nla_tracks:
                track.mute = True
        for (id_, path, i), v in self._rest.items():
            _set(id_, path, i, v)
        if index is None:
            return
        for id_, action, slot in self.clips[index].bindings:
            id_.animation_data.action = action
            if slot is not None:
                id_.animation_data.action_slot = slot


def _split(path: str) -> tuple[str, str]:
    head, _, attr = path.rpartition(".")
    return head, attr


def _get(id_: Any, path: str, index: int) -> float | None:
    try:
        value = id_.path_resolve(path)
    except ValueError:
        return None
    if isinstance(value, (int, float, bool)):
        return float(value)
    try:
        return float(value[index])
    except (TypeError, IndexError):
        return None


def _set(id_: Any, path: str, index: int, value: float) -> None:
    head, attr = _split(path)
    try:
        owner = id_.path_resolve(head) if head else id_
        current = getattr(owner, attr)
        if isinstance(current, (int, float, bool)):
            setattr(owner, attr, type(current)(value))
        else:
            current[index] = value
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        log.debug("cannot restore %s[%d] on %s: %s", path, index, getattr(id_, "name", id_), exc)
