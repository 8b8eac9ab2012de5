"""`RenderWorker`: one long-lived bpy process that turns (manifest row, asset file) into a sample.

Per asset: reset the scene, import, pick the clip, sample T times over it, check motion, normalise
over all sampled times (framing 'union' or 'track', DESIGN §2), place cameras (per time when tracking),
light, render every (time, view), check coverage, encode the members. A bad
asset never raises: it comes back as a failed or rejected `SampleResult` with a reason.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Mapping

import bpy
import numpy as np

from contracts.uids import sample_key
from contracts.layout import SCHEMA_VERSION, depth_member, image_member, json_member, normal_member
from render import passes, scene
from render.cameras import CameraSet, make_cameras, normalisation, sample_rng, to_blender
from render.clips import ClipSet
from render.presets import RenderSpec, with_row_settings
from render.reasons import AssetProblem
from render.result import SampleResult

log = logging.getLogger(__name__)

UNIT_BOX_RADIUS = math.sqrt(3) / 2  # farthest a normalised surface point can be from the origin


def _clean(v: Any) -> Any:
    """Manifest values as JSON: pandas NA / NaN -> None, numpy scalars -> Python."""
    if v is None:
        return None
    try:
        import pandas as pd

        if v is pd.NA:
            return None
    except ImportError:
        pass
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


MOTION_PROBES = 9  # times the motion check looks at when fewer are rendered (odd: the middle is one)
WORKDIR_PREFIX = "objaverse4d-render-"  # + "<pid>-<random>": scratch files of one worker process


def _sweep_stale_workdirs(base: Path) -> None:
    """Remove scratch folders of worker processes that died without closing (killed, crashed)."""
    for d in base.glob(f"{WORKDIR_PREFIX}*-*"):
        pid = d.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


class RenderWorker:
    """Holds bpy for the life of the process; `render()` is called once per (uid, clip)."""

    def __init__(self, spec: RenderSpec, workdir: Path | None = None, threads: int | None = None):
        self.spec = spec
        self.threads = threads
        base = Path(workdir) if workdir else (Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir()))
        _sweep_stale_workdirs(base)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=base))
        # removed by close(), or when the worker is collected / the interpreter exits without close()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.workdir), True)
        self.blender_version = bpy.app.version_string
        self.samples_done = 0
        scene.reset()
        if spec.device == "gpu" and spec.engine == "cycles":
            scene.select_device(spec.device)  # raises ValueError naming --device when there is no GPU

    def close(self) -> None:
        scene.reset()
        self._cleanup()

    def __enter__(self) -> "RenderWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one sample ---------------------------------------------------------------------------------

    def render(self, row: Mapping[str, Any], asset_path: Path) -> SampleResult:
        t0, c0 = time.perf_counter(), time.process_time()
        uid, clip = str(row["uid"]), int(row["clip"])
        key = sample_key(uid, clip)  # validates the uid before any name is built from it
        stats: dict[str, Any] = {}
        try:
            try:
                spec = with_row_settings(self.spec, _clean(row.get("render_settings")))
            except (ValueError, TypeError) as exc:
                raise AssetProblem("bad_settings", str(exc)) from None
            log_path = self.workdir / "blender.log"
            log_path.write_bytes(b"")
            members = self._render(row, Path(asset_path), spec, key, stats, t0, log_path)
            result = SampleResult(uid=uid, clip=clip, key=key, status="ok", reason=None, detail=None,
                                  seconds=time.perf_counter() - t0, members=members, stats=stats)
        except AssetProblem as p:
            result = SampleResult.problem(uid, clip, key, p.reason, p.detail, time.perf_counter() - t0, stats)
        except Exception as exc:  # Blender raised somewhere we did not expect: one failed row, not a crash
            log.warning("%s: render failed", key, exc_info=True)
            result = SampleResult.problem(uid, clip, key, "render_failed", f"{type(exc).__name__}: {exc}"[:500],
                                          time.perf_counter() - t0, stats)
        finally:
            for f in [*self.workdir.glob("pass_*"), *self.workdir.glob("asset.*")]:
                f.unlink(missing_ok=True)
        result.stats["cpu_s"] = time.process_time() - c0  # CPU of this process (Blender's threads included)
        self.samples_done += 1
        return result

    def _render(self, row: Mapping[str, Any], path: Path, spec: RenderSpec, key: str,
                stats: dict[str, Any], t0: float, log_path: Path) -> dict[str, bytes]:
        if not path.is_file():
            raise AssetProblem("missing_file", f"{path} does not exist")
        kind = scene.detect_format(path, _clean(row.get("file_type")))
        path = scene.ungzip(path, kind, self.workdir)  # .glb.gz / .gltf.gz (local folders may hold them)
        clip = int(row["clip"])

        t = time.perf_counter()
        scene.reset()
        stats["reset_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scene.import_asset(path, kind, log_path)
        stats["import_s"] = time.perf_counter() - t

        t = time.perf_counter()
        clips = ClipSet(kind, path)
        stats["clip_count"] = len(clips)
        static_ok = bool(_clean(row.get("static"))) or spec.allow_static
        frames, times_s, static, span_s, window_s = self._times(clips, clip, spec, static_ok)
        clip_name = clips.clips[clip].file_name if len(clips) else ""
        stats.update(clip_name=clip_name, fps=float(clips.fps), clip_span_s=span_s)

        geoms = []
        for i, f in enumerate(frames):
            scene.set_time(f)
            g = scene.evaluate_geometry()
            if i == 0:
                if g.bounds() is None:
                    raise AssetProblem("empty_scene", f"{path.name}: no renderable geometry after import")
                stats.update(faces=g.faces, vertices=int(sum(len(p) for p in g.points.values())))
                if g.faces > spec.max_faces:
                    raise AssetProblem("too_many_faces", f"{g.faces} evaluated faces > max_faces {spec.max_faces}")
            geoms.append(g)
        try:  # union box centre; scale and per-time camera offsets by the framing (DESIGN §2)
            center, norm_scale, offsets = normalisation([g.bounds() for g in geoms], spec.framing)  # offsets [T, 3]
        except ValueError as exc:
            raise AssetProblem("empty_scene", f"{path.name}: {exc}") from None
        motion = dict(_motion(geoms, norm_scale), motion_times=len(geoms))
        if not static and motion["motion_max"] < spec.motion_threshold and len(frames) < MOTION_PROBES:
            # Few rendered times can all fall on one pose (a looping clip's two ends, a periodic one at its
            # thirds): judge the clip on evenly spaced times of the rendered window before calling it still.
            # Normalisation stays over the rendered times (DESIGN §2), so the images do not change.
            probed = []
            for f in np.linspace(frames[0], frames[-1], MOTION_PROBES).tolist():
                scene.set_time(f)
                probed.append(scene.evaluate_geometry())
            motion = dict(_motion(probed, norm_scale), motion_times=MOTION_PROBES)
        stats.update(motion)
        if not static and motion["motion_max"] < spec.motion_threshold:
            if not static_ok:
                raise AssetProblem("no_motion", f"clip {clip} moves at most {motion['motion_max']:.2e} "
                                   f"normalised units over {motion['motion_times']} times (< motion_threshold {spec.motion_threshold})")
            frames, times_s, static, window_s, offsets = frames[:1], [0.0], True, 0.0, offsets[:1]
        scene.normalise(center, norm_scale)
        stats["prepare_s"] = time.perf_counter() - t

        t = time.perf_counter()
        T = len(frames)
        cams = make_cameras(spec, key, T, offsets)
        render_info = scene.configure_render(spec, self.threads)
        lighting = scene.set_lighting(spec.lighting, sample_rng(spec.seed, key, "lighting"))
        pass_paths = passes.setup_compositor(self.workdir, spec.normals)
        cam = scene.add_camera()
        bpy.context.scene.render.filepath = str(self.workdir / "rgba.png")
        # farthest surface: camera to its orbit centre plus the (per-time) box's radius
        max_dist = float(np.linalg.norm(cams.c2w[..., :3, 3] - offsets[:, None], axis=-1).max()) + UNIT_BOX_RADIUS
        depth_scale = passes.depth_scale_for(max_dist)
        stats["scene_s"] = time.perf_counter() - t

        members, quality, render_s = self._render_images(key, spec, frames, cams, cam, pass_paths, depth_scale,
                                                         t0, log_path)
        coverage = np.array(quality["coverage"])  # [T, V]
        border = np.array(quality["touches_border"])  # [T, V]
        per_view = coverage.mean(axis=0)  # [V]: each view's mean coverage over time
        stats.update(
            static=static, duration_s=window_s, num_frames=T, num_views=cams.num_views, resolution=spec.resolution,
            coverage_mean=float(coverage.mean()), coverage_min_view=float(per_view.min()),
            coverage_median_view=float(np.median(per_view)),
            coverage_max_view=float(per_view.max()), empty_views=int((coverage.max(axis=0) == 0).sum()),
            border_fraction=float(border.mean()), touches_border=bool(border.any()),
            normalization_scale=float(norm_scale), framing=spec.framing,
            track_travel=float(np.linalg.norm(offsets, axis=-1).max()),
            # the smallest model.dist_span (training/models/blocks.py: |camera - anchor| +- dist_span along each
            # pixel ray, the anchor being this time's camera offset) that holds every rendered surface
            dist_span_needed=quality["ray_span"],
            render_s=render_s, images=T * cams.num_views,
        )
        if coverage.max() == 0:
            raise AssetProblem("empty_render", f"all {T * cams.num_views} images are fully transparent")
        if per_view.max() < spec.min_coverage:
            raise AssetProblem("too_small", f"the best view covers {per_view.max():.2%} of the image on average over "
                               f"{T} times (< min_coverage {spec.min_coverage:.2%}; framing {spec.framing})")

        meta = {
            "schema_version": SCHEMA_VERSION,
            "uid": row["uid"], "clip": clip, "clip_name": clip_name,
            "source": _clean(row.get("source")), "license": _clean(row.get("license")),
            "sha256": _clean(row.get("sha256")),
            "static": static, "fps": float(clips.fps), "duration_s": window_s, "clip_span_s": span_s,
            "num_frames": T, "num_views": cams.num_views, "width": spec.resolution, "height": spec.resolution,
            "times_s": [float(x) for x in times_s],
            "times": [float(x) / window_s if window_s > 0 else 0.0 for x in times_s],
            "frames": [float(f) for f in frames],
            "c2w": cams.c2w.tolist(), "K": cams.K.tolist(),
            "depth_scale": depth_scale,
            "normalization": {"center": [float(c) for c in center], "scale": float(norm_scale)},
            "cameras": {"fixed": cams.fixed.tolist(), "azimuth_deg": cams.azimuth_deg.tolist(),
                        "elevation_deg": cams.elevation_deg.tolist(), "radius": cams.radius.tolist(),
                        "offsets": cams.offsets.tolist()},
            "render": {**render_info, "blender_version": self.blender_version, "seed": spec.seed,
                       "preset": spec.name, "framing": spec.framing,
                       "image_format": spec.image_format, "normals": spec.normals,
                       "view_transform": "Standard", "lighting": lighting, "spec": spec.to_dict()},
            "quality": {"coverage": quality["coverage"], "touches_border": quality["touches_border"],
                        **{k: stats[k] for k in ("motion_max", "motion_mean", "scale_change", "track_travel",
                                                  "dist_span_needed")}},
        }
        members[json_member(key)] = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
        stats["bytes"] = sum(len(b) for b in members.values())
        return members

    @staticmethod
    def _times(clips: ClipSet, clip: int, spec: RenderSpec, static_ok: bool):
        """(frames [T], times_s [T], static, clip span s, rendered window s) for the row's clip."""
        if len(clips) == 0:
            if clip != 0:
                raise AssetProblem("clip_out_of_range", f"clip {clip} requested; the file has no animations")
            if not static_ok:
                raise AssetProblem("no_motion", "the file has no animations and static assets were not asked for")
            clips.select(None)
            return [float(bpy.context.scene.frame_current)], [0.0], True, 0.0, 0.0
        clips.select(clip)  # raises clip_out_of_range
        c = clips.clips[clip]
        span = clips.duration_s(clip)
        window = min(span, spec.max_window_s)
        T = spec.num_frames if window > 0 else 1
        times_s = np.linspace(0.0, window, T) if T > 1 else np.zeros(1)
        frames = (c.frame_start + times_s * clips.fps).tolist()
        return frames, times_s.tolist(), False, span, window

    def _render_images(self, key: str, spec: RenderSpec, frames: list[float], cams: CameraSet, cam: Any,
                       pass_paths: dict[str, Path], depth_scale: float, t0: float, log_path: Path):
        members: dict[str, bytes] = {}
        coverage = [[0.0] * cams.num_views for _ in frames]
        border = [[False] * cams.num_views for _ in frames]
        rgba_path = self.workdir / "rgba.png"
        render_s = 0.0
        ray_span = 0.0  # largest |distance along the pixel ray - |camera - offset|| over surface pixels
        H = W = spec.resolution
        j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)  # pixel centres [H, W]
        for t, f in enumerate(frames):
            scene.set_time(f)
            for v in range(cams.num_views):
                if time.perf_counter() - t0 > spec.max_seconds:
                    raise AssetProblem("timeout", f"{key}: past max_seconds {spec.max_seconds} at time {t}, view {v}")
                scene.place_camera(cam, to_blender(cams.c2w[t, v]), cams.K[v], spec.resolution)
                tr = time.perf_counter()
                with scene.blender_output(log_path):
                    result = bpy.ops.render.render(write_still=True)
                render_s += time.perf_counter() - tr
                if "FINISHED" not in result or not rgba_path.is_file():
                    raise AssetProblem("render_failed", f"render of time {t}, view {v} gave {sorted(result)}: "
                                       f"{scene.log_tail(log_path)}")
                png = passes.strip_png_metadata(rgba_path.read_bytes())
                alpha = passes.decode_rgba(png)[..., 3]
                depth = passes.read_exr(pass_paths["depth"], 1)[..., 0]
                mask = passes.surface_mask(depth, alpha)
                s = passes.image_stats(alpha)
                coverage[t][v], border[t][v] = s["coverage"], s["touches_border"]
                if mask.any():
                    K = cams.K[v]  # planar z -> distance along the pixel ray: z * |(x/z, y/z, 1)|
                    stretch = np.sqrt(1 + ((j[mask] - K[0, 2]) / K[0, 0]) ** 2 + ((i[mask] - K[1, 2]) / K[1, 1]) ** 2)
                    gap = np.abs(depth[mask] * stretch - np.linalg.norm(cams.c2w[t, v, :3, 3] - cams.offsets[t]))
                    ray_span = max(ray_span, float(gap.max()))
                ext = spec.image_format
                members[image_member(key, t, v, ext)] = png if ext == "png" else passes.to_webp(png, spec.webp_quality)
                members[depth_member(key, t, v)] = passes.encode_depth(depth, alpha, depth_scale)
                if spec.normals:
                    normal = passes.read_exr(pass_paths["normal"], 3)
                    members[normal_member(key, t, v)] = passes.encode_normal(normal, mask)
                rgba_path.unlink()
        return members, {"coverage": coverage, "touches_border": border, "ray_span": ray_span}, render_s


def _motion(geoms: list, scale: float) -> dict[str, float]:
    """Motion over the sampled times, in normalised units.

    motion_max: largest displacement of any vertex from its position at the first time;
    motion_mean: mean displacement over vertices and times; scale_change: largest / smallest
    bounding-box diagonal over time (1.0 = the object keeps its size).
    """
    first = geoms[0].points
    disp_max, disp_sum, count = 0.0, 0.0, 0
    topo_changed = False
    for g in geoms[1:]:
        for name, p0 in first.items():
            p = g.points.get(name)
            if p is None or p.shape != p0.shape:
                topo_changed = True
                continue
            d = np.linalg.norm(p - p0, axis=1) * scale
            if len(d):
                disp_max = max(disp_max, float(d.max()))
                disp_sum += float(d.sum())
                count += len(d)
    diags = []
    for g in geoms:
        b = g.bounds()
        if b is not None:
            diags.append(float(np.linalg.norm(b[1] - b[0])))
    if topo_changed:  # vertices do not correspond over time: fall back to how far the box moves
        b0 = geoms[0].bounds()
        for g in geoms[1:]:
            b = g.bounds()
            if b is not None and b0 is not None:
                disp_max = max(disp_max, float(np.abs(np.concatenate([b[0] - b0[0], b[1] - b0[1]])).max()) * scale)
    return {
        "motion_max": disp_max,
        "motion_mean": disp_sum / count if count else 0.0,
        "scale_change": (max(diags) / min(diags)) if diags and min(diags) > 0 else 1.0,
    }
