""".ply Gaussians read by property name (DESIGN.md §6), as the arrays a splat renderer draws.

`pipeline reconstruct` writes the 3D Gaussian Splatting layout: the full record (`x y z nx ny nz
f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`) or the compact one (`x y z f_dc_0..2 opacity
scale_0..2 rot_0..3`). Every property is found by its name in the header, so both layouts (and files
from other tools with extra properties, in any order, of any PLY scalar type) read the same. Values
are activated as a 3DGS renderer does: colour = 0.5 + C0 * f_dc (SH degree 0), opacity = sigmoid,
scale = exp, rotation = the normalised quaternion (w, x, y, z); covariance = R diag(scale^2) R^T.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SH_C0 = 0.28209479177387814
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")
_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
MAX_HEADER = 64 * 1024


class PlyError(ValueError):
    """A .ply that cannot be drawn; the message names the file and the problem."""


@dataclass
class Splats:
    """N Gaussians ready to draw: centres [N, 3], covariances [N, 3, 3], rgb [N, 3] in [0, 1],
    opacity [N, 1] in [0, 1] (all float32)."""

    centers: np.ndarray
    covariances: np.ndarray
    rgb: np.ndarray
    opacity: np.ndarray

    def __len__(self) -> int:
        return int(self.centers.shape[0])


def read_properties(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every scalar property of the `vertex` element of a binary (little or big endian) or ascii PLY,
    by name -> [N] array. PlyError naming the file for anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exn:
        raise PlyError(f"{path}: cannot read ({exn.strerror or exn})") from None
    end = data.find(b"end_header\n", 0, MAX_HEADER)
    if not data.startswith(b"ply\n") or end < 0:
        raise PlyError(f"{path}: not a PLY file (no 'ply' magic or no end_header in the first {MAX_HEADER} bytes)")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[end + len(b"end_header\n"):]
    fmt, elements = None, []  # [(name, count, [(prop, dtype)])]
    for line in header[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format" and len(parts) >= 2:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3 and parts[2].isdigit():
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], None))
            elif len(parts) == 3 and parts[1] in _TYPES:
                elements[-1][2].append((parts[2], _TYPES[parts[1]]))
            else:
                raise PlyError(f"{path}: unsupported property line {line!r}")
        else:
            raise PlyError(f"{path}: unexpected header line {line!r}")
    order = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
    if fmt not in order:
        raise PlyError(f"{path}: unsupported format {fmt!r} (binary_little_endian, binary_big_endian or ascii)")
    offset = 0
    for name, count, props in elements:
        if any(dt is None for _, dt in props):
            if name == "vertex" or fmt != "ascii":
                raise PlyError(f"{path}: list properties in element {name!r} are not supported")
        if name == "vertex":
            return _read_vertex(path, body, offset, count, props, order[fmt])
        if order[fmt] is None:
            raise PlyError(f"{path}: an ascii PLY must list the vertex element first")
        offset += count * sum(np.dtype(dt).itemsize for _, dt in props)
    raise PlyError(f"{path}: no 'vertex' element")


def _read_vertex(path: Path, body: bytes, offset: int, count: int, props: list, endian: str | None) -> dict:
    names = [p for p, _ in props]
    if len(set(names)) != len(names):
        raise PlyError(f"{path}: a property name appears twice in the vertex element")
    if endian is None:
        rows = body.decode("ascii", errors="replace").split("\n")[:count]
        try:
            table = np.array([[float(x) for x in r.split()] for r in rows], dtype=np.float64).reshape(count, len(props))
        except ValueError as exn:
            raise PlyError(f"{path}: bad ascii vertex rows ({exn})") from None
        return {n: table[:, i] for i, n in enumerate(names)}
    dtype = np.dtype([(n, endian + dt) for n, dt in props])
    need = offset + count * dtype.itemsize
    if len(body) < need:
        raise PlyError(f"{path}: truncated: {count} vertices need {need} bytes after the header, the file has "
                       f"{len(body)}")
    rec = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return {n: rec[n] for n in names}


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) [N, 4] -> rotation matrices [N, 3, 3] (normalised first)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def covariances(log_scales: np.ndarray, quats: np.ndarray) -> np.ndarray:
    """R diag(exp(log_scales)^2) R^T [N, 3, 3] from log scales [N, 3] and quaternions (w, x, y, z) [N, 4]."""
    R = quat_to_matrix(quats.astype(np.float64))
    s2 = np.exp(2.0 * log_scales.astype(np.float64))  # [N, 3] variances along the local axes
    return np.einsum("nij,nj,nkj->nik", R, s2, R)


def read_splats(path: str | os.PathLike) -> Splats:
    """A 3DGS .ply (full or compact layout, or any file with the named properties) -> Splats."""
    props = read_properties(path)
    missing = [p for p in REQUIRED if p not in props]
    if missing:
        raise PlyError(f"{path}: not a Gaussian-splat .ply: missing properties {', '.join(missing)}")
    col = {k: np.asarray(props[k], dtype=np.float64) for k in REQUIRED}
    centers = np.stack([col["x"], col["y"], col["z"]], -1)
    quats = np.stack([col[f"rot_{i}"] for i in range(4)], -1)
    log_s = np.stack([col[f"scale_{i}"] for i in range(3)], -1)
    f_dc = np.stack([col[f"f_dc_{i}"] for i in range(3)], -1)
    if not all(np.isfinite(a).all() for a in (centers, quats, log_s, f_dc, col["opacity"])):
        raise PlyError(f"{path}: non-finite values among the Gaussians' properties")
    if len(quats) and (np.linalg.norm(quats, axis=-1) == 0).any():
        raise PlyError(f"{path}: a rotation quaternion of zero length")
    return Splats(
        centers=centers.astype(np.float32),
        covariances=covariances(log_s, quats).astype(np.float32),
        rgb=np.clip(0.5 + SH_C0 * f_dc, 0.0, 1.0).astype(np.float32),
        opacity=(1.0 / (1.0 + np.exp(-col["opacity"])))[:, None].astype(np.float32),
    )
