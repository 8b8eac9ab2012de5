"""A tiny GLB writer for test assets whose exact geometry the tests know (numpy + stdlib only)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


class GlbBuilder:
    """Meshes on nodes, optional translation animations; y-up glTF coordinates as the format says."""

    def __init__(self) -> None:
        self.bin = bytearray()
        self.doc: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}], "nodes": [],
                          "meshes": [], "accessors": [], "bufferViews": [], "buffers": [],
                          "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.6, 0.3, 1.0],
                                                                   "metallicFactor": 0.0}, "doubleSided": True}]}

    def _accessor(self, arr: np.ndarray, kind: str, component: int, minmax: bool = False) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": arr.nbytes}
        self.bin += arr.tobytes()
        self.doc["bufferViews"].append(view)
        acc = {"bufferView": len(self.doc["bufferViews"]) - 1, "componentType": component,
               "count": int(arr.shape[0]), "type": kind}
        if minmax:
            acc["min"] = arr.min(axis=0).reshape(-1).tolist()
            acc["max"] = arr.max(axis=0).reshape(-1).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def add_mesh(self, positions: np.ndarray, triangles: np.ndarray, translation=(0.0, 0.0, 0.0)) -> int:
        """A mesh node; positions [N, 3] float, triangles [F, 3] int. Returns the node index."""
        pos = self._accessor(np.asarray(positions, np.float32), "VEC3", 5126, minmax=True)
        idx = self._accessor(np.asarray(triangles, np.uint32).reshape(-1), "SCALAR", 5125)
        self.doc["meshes"].append({"primitives": [{"attributes": {"POSITION": pos}, "indices": idx, "material": 0}]})
        return self.add_node({"mesh": len(self.doc["meshes"]) - 1, "translation": list(map(float, translation))})

    def add_node(self, node: dict) -> int:
        self.doc["nodes"].append(node)
        self.doc["scenes"][0]["nodes"].append(len(self.doc["nodes"]) - 1)
        return len(self.doc["nodes"]) - 1

    def add_translation_animation(self, node: int, times: list[float], values: list[tuple[float, float, float]],
                                  name: str | None = None) -> None:
        t = self._accessor(np.asarray(times, np.float32).reshape(-1, 1), "SCALAR", 5126, minmax=True)
        v = self._accessor(np.asarray(values, np.float32), "VEC3", 5126)
        anim = {"samplers": [{"input": t, "output": v, "interpolation": "LINEAR"}],
                "channels": [{"sampler": 0, "target": {"node": node, "path": "translation"}}]}
        if name:
            anim["name"] = name
        self.doc.setdefault("animations", []).append(anim)

    def write(self, path: Path) -> Path:
        while len(self.bin) % 4:
            self.bin.append(0)
        doc = dict(self.doc)
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        if not doc["meshes"]:
            for k in ("meshes", "accessors", "bufferViews", "buffers"):
                doc.pop(k)
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
        if self.bin and doc.get("buffers"):
            chunks += struct.pack("<II", len(self.bin), 0x004E4942) + bytes(self.bin)
        Path(path).write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
        return Path(path)


def quad(size_x: float, size_z: float, tilt_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle in glTF's x-z plane (normal +y = Blender +z), rotated by `tilt_deg` about x."""
    hx, hz = size_x / 2, size_z / 2
    p = np.array([[-hx, 0, -hz], [hx, 0, -hz], [hx, 0, hz], [-hx, 0, hz]], dtype=np.float64)
    a = np.radians(tilt_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return p @ rot.T, np.array([[0, 1, 2], [0, 2, 3]])


def box(half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned cube centred at the origin (12 triangles)."""
    p = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)], dtype=np.float64)
    tris = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
            [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return p, np.array(tris)


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid of quads in the x-z plane: 2 n^2 triangles."""
    xs = np.linspace(-0.5, 0.5, n + 1)
    p = np.array([[x, 0.0, z] for z in xs for x in xs])
    tris = []
    for i in range(n):
        for j in range(n):
            a = i * (n + 1) + j
            tris += [[a, a + 1, a + n + 2], [a, a + n + 2, a + n + 1]]
    return p, np.array(tris)


def gltf_to_blender(p: np.ndarray) -> np.ndarray:
    """glTF (y up) -> Blender world (z up) as the importer converts: (x, y, z) -> (x, -z, y)."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def read_glb(path: Path) -> tuple[dict, bytearray]:
    """(JSON document, binary chunk) of a .glb file."""
    data = Path(path).read_bytes()
    magic, _version, _length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise ValueError(f"{path}: not a binary glTF")
    js_len, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20:20 + js_len])
    rest = 20 + js_len
    bin_chunk = bytearray()
    if rest + 8 <= len(data):
        bin_len, _ = struct.unpack_from("<II", data, rest)
        bin_chunk = bytearray(data[rest + 8:rest + 8 + bin_len])
    return doc, bin_chunk


def with_travel(src: Path, dst: Path, distance: float, axis: int = 0) -> Path:
    """A copy of `src` whose whole scene travels `distance` (glTF units) along glTF `axis` in every clip.

    The scene's root nodes go under a new root node; every animation gets one more channel that moves
    that node linearly from 0 to `distance` over the animation's own time span (its samplers' min/max),
    so the clip spans are unchanged and each clip's own motion plays on top of the travel.
    """
    doc, binary = read_glb(src)
    if not doc.get("animations"):
        raise ValueError(f"{src}: no animations to add travel to")
    b = GlbBuilder()
    b.doc, b.bin = doc, binary
    scene = doc["scenes"][doc.get("scene", 0)]
    root = {"name": "travel_root", "children": list(scene["nodes"])}
    doc["nodes"].append(root)
    scene["nodes"] = [len(doc["nodes"]) - 1]
    for anim in doc["animations"]:
        ins = [doc["accessors"][s["input"]] for s in anim["samplers"]]
        t0, t1 = min(a["min"][0] for a in ins), max(a["max"][0] for a in ins)
        end = [0.0, 0.0, 0.0]
        end[axis] = float(distance)
        t = b._accessor(np.asarray([t0, t1], np.float32).reshape(-1, 1), "SCALAR", 5126, minmax=True)
        v = b._accessor(np.asarray([[0.0, 0.0, 0.0], end], np.float32), "VEC3", 5126)
        anim["samplers"].append({"input": t, "output": v, "interpolation": "LINEAR"})
        anim["channels"].append({"sampler": len(anim["samplers"]) - 1,
                                 "target": {"node": len(doc["nodes"]) - 1, "path": "translation"}})
    doc.pop("buffers", None)
    return b.write(dst)
