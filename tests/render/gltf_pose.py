"""An independent reader of exported GLBs for the procedural tests (json + struct + numpy, no project code):
accessors, animation sampling (LINEAR / STEP, quaternions normalised after lerp), node world matrices at a
time (forward kinematics over the node tree) and per-clip morph weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    def __init__(self, path: Path) -> None:
        data = Path(path).read_bytes()
        magic, version, length = struct.unpack_from("<4sII", data, 0)
        assert magic == b"glTF" and version == 2 and length == len(data), f"{path} is not a whole GLB 2.0 file"
        json_len, json_type = struct.unpack_from("<I4s", data, 12)
        assert json_type == b"JSON"
        self.doc = json.loads(data[20 : 20 + json_len])
        bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
        assert bin_type == b"BIN\x00"
        self.bin = data[28 + json_len : 28 + json_len + bin_len]
        self.parent = {c: i for i, n in enumerate(self.doc["nodes"]) for c in n.get("children", [])}

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc["accessors"][index]
        view = self.doc["bufferViews"][acc["bufferView"]]
        dtype, width = np.dtype(_COMPONENTS[acc["componentType"]]), _WIDTH[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        stride = view.get("byteStride", dtype.itemsize * width)
        raw = np.frombuffer(self.bin, dtype=np.uint8, count=stride * (acc["count"] - 1) + dtype.itemsize * width, offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, (acc["count"], dtype.itemsize * width), (stride, 1))
        out = rows.copy().view(dtype).reshape(acc["count"], width)
        if acc.get("normalized") and dtype.kind in "iu":
            out = out / np.iinfo(dtype).max
        return out

    def image_bytes(self) -> list[bytes]:
        out = []
        for img in self.doc.get("images", []):
            v = self.doc["bufferViews"][img["bufferView"]]
            out.append(self.bin[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]])
        return out

    def animation(self, name: str) -> dict:
        return next(a for a in self.doc["animations"] if a["name"] == name)

    def span(self, anim: dict) -> tuple[float, float]:
        inputs = [self.doc["accessors"][s["input"]] for s in anim["samplers"]]
        return min(a["min"][0] for a in inputs), max(a["max"][0] for a in inputs)

    def sample(self, anim: dict, t: float) -> dict[tuple[int, str], np.ndarray]:
        """(node, path) -> value at time t of every channel of `anim`."""
        out = {}
        for ch in anim["channels"]:
            s = anim["samplers"][ch["sampler"]]
            times, values = self.accessor(s["input"])[:, 0], self.accessor(s["output"])
            path = ch["target"]["path"]
            if path == "weights":
                values = values.reshape(len(times), -1)
            i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1))
            j = min(i + 1, len(times) - 1)
            f = 0.0 if j == i or s.get("interpolation") == "STEP" else float(np.clip((t - times[i]) / (times[j] - times[i]), 0, 1))
            a, b = values[i].astype(float), values[j].astype(float)
            if path == "rotation" and np.dot(a, b) < 0:
                b = -b
            v = a * (1 - f) + b * f
            out[(ch["target"]["node"], path)] = v / np.linalg.norm(v) if path == "rotation" else v
        return out

    def local(self, node: int, pose: dict) -> np.ndarray:
        n = self.doc["nodes"][node]
        if "matrix" in n:
            return np.array(n["matrix"], float).reshape(4, 4).T
        t = pose.get((node, "translation"), np.array(n.get("translation", [0, 0, 0]), float))
        x, y, z, w = pose.get((node, "rotation"), np.array(n.get("rotation", [0, 0, 0, 1]), float))
        s = pose.get((node, "scale"), np.array(n.get("scale", [1, 1, 1]), float))
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        m = np.eye(4)
        m[:3, :3] = r * s[None]
        m[:3, 3] = t
        return m

    def world(self, node: int, pose: dict) -> np.ndarray:
        m = self.local(node, pose)
        while node in self.parent:
            node = self.parent[node]
            m = self.local(node, pose) @ m
        return m

    def node(self, name: str) -> int:
        return next(i for i, n in enumerate(self.doc["nodes"]) if n.get("name") == name)

    def track(self, anim_name: str, node: int, n: int = 13) -> np.ndarray:
        """World matrices [n, 4, 4] of `node` at n evenly spaced times over the clip."""
        anim = self.animation(anim_name)
        t0, t1 = self.span(anim)
        return np.stack([self.world(node, self.sample(anim, t)) for t in np.linspace(t0, t1, n)])


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (radians) between the rotation parts of two matrices [4, 4] (scale removed)."""
    ra = a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)
    rb = b[:3, :3] / np.linalg.norm(b[:3, :3], axis=0)
    return float(np.arccos(np.clip((np.trace(ra.T @ rb) - 1) / 2, -1, 1)))
