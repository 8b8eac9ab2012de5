"""The Blender scene of one asset: reset, import, evaluated geometry, normalisation, light, camera.

Everything here runs inside one long-lived bpy process (render/worker.py); `reset()` between assets
keeps its memory flat (DESIGN.md §7).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import sys
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import bpy
import mathutils
import numpy as np

from contracts.gunzip import MAX_GUNZIP_BYTES, GunzipTooLarge, gunzip_into
from render.cameras import orbit_position
from render.reasons import AssetProblem

# File types imported; other known model formats (and anything unrecognised) are rejected.
IMPORTERS = {"glb": "gltf", "gltf": "gltf", "fbx": "fbx", "obj": "obj"}
GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD"}
NORMALISER = "objaverse4d_normaliser"


@contextlib.contextmanager
def blender_output(log_path: Path) -> Iterator[None]:
    """Send what Blender prints (C-level stdout and stderr) to `log_path` for the duration.

    Blender writes import chatter and per-render lines straight to the file descriptors; a worker that
    renders thousands of images would otherwise flood its log. The file keeps them for error details.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def log_tail(log_path: Path, lines: int = 6) -> str:
    """The last error-looking lines Blender printed (for a row's `detail`)."""
    try:
        text = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln.strip() for ln in text if "rror" in ln or "xception" in ln]
    return " | ".join((errs or text)[-lines:])[-600:]


def reset() -> None:
    """An empty scene: factory settings without the startup file; frees the previous asset."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if "cycles" not in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_enable(module="cycles")


def detect_format(path: Path, hint: str | None = None) -> str:
    """'glb' | 'gltf' | 'fbx' | 'obj' from the row's file_type, the suffix, or the first bytes.

    A `.gz` suffix is looked through (`a.gltf.gz` is 'gltf'); `ungzip` unpacks such files before import.
    Raises AssetProblem('unsupported_format') for .blend and everything else.
    """
    name = path.name.lower()
    inner = Path(name[:-3]) if name.endswith(".gz") else Path(name)
    kind = (hint or "").strip().lower().lstrip(".") or inner.suffix.lstrip(".")
    if kind in IMPORTERS:
        return kind
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise AssetProblem("missing_file", f"{path}: {exc}") from None
    if head.startswith(b"BLENDER"):
        raise AssetProblem("unsupported_format", f"{path}: .blend files are not rendered (they carry scenes, not one asset)")
    if not kind:
        if head.startswith(b"glTF"):
            return "glb"
        if head.startswith(b"Kaydara FBX Binary"):
            return "fbx"
    raise AssetProblem("unsupported_format", f"{path}: file type {kind or 'unknown'!r} is not imported; supported: {sorted(IMPORTERS)}")


def ungzip(path: Path, kind: str, out_dir: Path) -> Path:
    """`path` itself, or, when it is gzip-compressed, its content unpacked into `out_dir`.

    A .gltf's relative buffer and image URIs are made absolute (into `path`'s folder) so that the
    unpacked copy still finds them. Raises AssetProblem('import_failed') for a broken stream.
    """
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return path
    out = out_dir / f"asset.{kind}"
    try:
        with open(out, "wb") as dst:
            gunzip_into(path, dst)
    except GunzipTooLarge:
        raise AssetProblem("import_failed", f"{path.name}: unpacks to more than {MAX_GUNZIP_BYTES >> 30} GiB") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise AssetProblem("import_failed", f"{path.name}: corrupt or truncated gzip stream ({exc})") from None
    if kind == "gltf":
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AssetProblem("import_failed", f"{path.name}: glTF JSON unreadable ({exc})") from None
        base = path.resolve().parent
        for item in [*doc.get("buffers", []), *doc.get("images", [])]:
            uri = item.get("uri")
            if isinstance(uri, str) and not uri.startswith("data:") and "://" not in uri and not os.path.isabs(uri):
                item["uri"] = str(base / urllib.parse.unquote(uri))
        out.write_text(json.dumps(doc), encoding="utf-8")
    return out


@contextlib.contextmanager
def _gltf_without_first_clip() -> Iterator[None]:
    """Keep the glTF importer from activating (and evaluating) the first animation.

    Blender 5.0.1's importer assigns animation 0 after stashing all clips and evaluates it once, which
    writes clip 0's pose into the objects, bones and shape keys. Without that step the scene holds the
    glTF rest values, which is what a clip that leaves a channel alone must see (render/clips.py).
    """
    mod = importlib.import_module("io_scene_gltf2.blender.imp.animation")
    cls = getattr(mod, "BlenderAnimation", None)
    original = getattr(cls, "restore_animation", None)
    if original is None:  # a different importer version: fall back to its default behaviour
        yield
        return
    cls.restore_animation = staticmethod(lambda gltf, name: None)
    try:
        yield
    finally:
        cls.restore_animation = original


def import_asset(path: Path, kind: str, log_path: Path) -> None:
    """Import `path` into the current (empty) scene. Raises AssetProblem('import_failed')."""
    debug_value = bpy.app.debug_value
    bpy.app.debug_value = 1  # the glTF importer then logs warnings only, not a line per node
    try:
        with blender_output(log_path):
            if IMPORTERS[kind] == "gltf":
                with _gltf_without_first_clip():
                    result = bpy.ops.import_scene.gltf(filepath=str(path), disable_bone_shape=True)
            elif kind == "fbx":
                result = bpy.ops.import_scene.fbx(filepath=str(path), use_anim=True)
            else:
                result = bpy.ops.wm.obj_import(filepath=str(path))
    except Exception as exc:  # the importers raise RuntimeError, but also their own Python errors
        raise AssetProblem("import_failed", f"{path.name}: {type(exc).__name__}: {str(exc).strip()[:300]}") from None
    finally:
        bpy.app.debug_value = debug_value
    if "FINISHED" not in result:
        raise AssetProblem("import_failed", f"{path.name}: importer returned {sorted(result)}: {log_tail(log_path)}")
    # Lights and cameras shipped with a model would fight the dataset's even lighting.
    for ob in list(bpy.data.objects):
        if ob.type in {"LIGHT", "CAMERA", "LIGHT_PROBE", "SPEAKER"}:
            bpy.data.objects.remove(ob, do_unlink=True)


@dataclass
class Geometry:
    """World-space evaluated geometry at one time."""

    points: dict[str, np.ndarray]   # instance name -> [N, 3] world vertex positions
    faces: int

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        pts = [p for p in self.points.values() if len(p)]
        if not pts:
            return None
        lo = np.min([p.min(axis=0) for p in pts], axis=0)
        hi = np.max([p.max(axis=0) for p in pts], axis=0)
        return lo, hi


def evaluate_geometry() -> Geometry:
    """Evaluated (animated, deformed, modified) vertices of every renderable object, in world space."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    points: dict[str, np.ndarray] = {}
    faces = 0
    for inst in depsgraph.object_instances:
        ob = inst.object
        if ob.type not in GEOMETRY_TYPES or ob.original.hide_render:
            continue
        name = ob.name if not inst.is_instance else f"{ob.name}#{tuple(inst.persistent_id)}"
        mesh = ob.data if ob.type == "MESH" else ob.to_mesh()
        try:
            if mesh is None:
                continue
            n = len(mesh.vertices)
            co = np.empty(n * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            faces += len(mesh.polygons)
        finally:
            if ob.type != "MESH":
                ob.to_mesh_clear()
        m = np.array(inst.matrix_world, dtype=np.float64)  # [4, 4]
        points[name] = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    return Geometry(points=points, faces=faces)


def normalise(center: np.ndarray, scale: float) -> None:
    """Parent every root object to an empty so that world = scale * (x - center) (DESIGN.md §2)."""
    empty = bpy.data.objects.new(NORMALISER, None)
    bpy.context.scene.collection.objects.link(empty)
    m = np.eye(4)
    m[:3, :3] *= scale
    m[:3, 3] = -scale * np.asarray(center)
    empty.matrix_world = mathutils.Matrix(m.tolist())  # rows; a bare nested list would be read column-major
    for ob in bpy.context.scene.objects:
        if ob.parent is None and ob is not empty:
            ob.parent = empty
    bpy.context.view_layer.update()


def set_lighting(lighting: str, rng: np.random.Generator) -> dict[str, Any]:
    """Even lighting from a uniform environment, optionally tinted plus a sun; returns what was used."""
    scene = bpy.context.scene
    world = bpy.data.worlds.new("objaverse4d_world")
    scene.world = world
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    record: dict[str, Any] = {"kind": lighting}
    color, strength = (1.0, 1.0, 1.0), 1.0
    if lighting == "random":
        strength = float(rng.uniform(0.6, 1.4))
        tint = rng.uniform(0.85, 1.0, size=3)
        color = tuple(float(c) for c in tint / tint.max())
        sun_data = bpy.data.lights.new("objaverse4d_sun", "SUN")
        sun_data.energy = float(rng.uniform(1.0, 4.0))
        sun_data.angle = math.radians(5.0)
        sun = bpy.data.objects.new("objaverse4d_sun", sun_data)
        scene.collection.objects.link(sun)
        az, el = float(rng.uniform(0, 360)), float(rng.uniform(20, 80))
        # A sun shines along its local -Z: turn -Z from the sky position (az, el) towards the origin.
        sky = orbit_position(az, el, 1.0)
        sun.rotation_euler = mathutils.Vector((-sky).tolist()).to_track_quat("-Z", "Y").to_euler()
        record["sun"] = {"azimuth_deg": az, "elevation_deg": el, "energy": sun_data.energy, "angle_deg": 5.0}
    bg.inputs["Color"].default_value = (*color, 1.0)
    bg.inputs["Strength"].default_value = strength
    record.update({"environment_color": list(color), "environment_strength": strength})
    return record


def configure_render(spec, threads: int | None) -> dict[str, Any]:
    """Engine, device, samples, size, colour management and film for `spec`; returns what was set."""
    scene = bpy.context.scene
    r = scene.render
    r.resolution_x = r.resolution_y = spec.resolution
    r.resolution_percentage = 100
    r.film_transparent = True
    r.use_persistent_data = False
    if threads:
        r.threads_mode = "FIXED"
        r.threads = threads
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    # No date, render time, file name, ... in the PNG text chunks: the same render gives the same bytes.
    for prop in r.bl_rna.properties:
        if prop.identifier.startswith("use_stamp"):
            setattr(r, prop.identifier, False)
    settings = r.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGBA"
    settings.color_depth = "8"
    settings.compression = 15
    info: dict[str, Any] = {"engine": spec.engine, "samples": spec.samples, "device": spec.device}
    if spec.engine == "cycles":
        r.engine = "CYCLES"
        scene.cycles.samples = spec.samples
        scene.cycles.use_denoising = spec.denoise
        scene.cycles.seed = 0
        info["compute"] = select_device(spec.device) if spec.device == "gpu" else "CPU"
        scene.cycles.device = "GPU" if spec.device == "gpu" else "CPU"
    else:
        r.engine = "BLENDER_EEVEE"
        scene.eevee.taa_render_samples = spec.samples
    return info


def select_device(device: str) -> str:
    """Enable the best Cycles GPU backend; raises ValueError naming --device when there is none."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.refresh_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            return backend
    raise ValueError(f"--device {device}: Cycles finds no GPU (tried OptiX, CUDA, HIP, oneAPI, Metal); use --device cpu")


def add_camera() -> Any:
    """One camera object, moved for every (time, view)."""
    data = bpy.data.cameras.new("objaverse4d_camera")
    data.sensor_fit = "HORIZONTAL"
    data.clip_start = 0.01
    data.clip_end = 100.0
    cam = bpy.data.objects.new("objaverse4d_camera", data)
    bpy.context.scene.collection.objects.link(cam)
    bpy.context.scene.camera = cam
    return cam


def place_camera(cam: Any, matrix_world: np.ndarray, K: np.ndarray, width: int) -> None:
    """Put `cam` at a Blender matrix_world [4, 4]; field of view from K [3, 3]."""
    cam.matrix_world = mathutils.Matrix(np.asarray(matrix_world).tolist())
    cam.data.angle = 2.0 * math.atan(width / 2.0 / K[0, 0])


def set_time(frame: float) -> None:
    """Evaluate the scene at a fractional frame (sub-frame evaluation)."""
    whole = math.floor(frame)
    bpy.context.scene.frame_set(int(whole), subframe=float(frame - whole))
