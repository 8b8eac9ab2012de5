"""L4GM-family training samples (DESIGN.md §5): a window of T consecutive rendered times of one clip,
the video view at every time, n_t0_views other views at the window's first time, and n_target
held-out views at every time. Works on `l4gm` and `lrm4d` preset shards and on static samples.

Fixed vs random views come from the sample's JSON (`cameras.fixed`, written by the renderer; else the
render settings or the cameras, see training/protocol.fixed_views): fixed views stay put over time and
make a video; random views are drawn anew at every time, so they serve only as targets.

The picker keeps only the members it uses (the values of `sample[suffix]`, passed through untouched:
they may be bytes or lazy references that training/data/decode.py resolves); the builder decodes them.
Flat layout of a built sample (so the shared tools, grids and baselines, read it as they read 4D-LRM
samples): inputs = [video at t_0..t_{T-1}, t0 views], targets = n_target views per time, time-major.
A static sample (one rendered time) fills the window with that one time: the object simply holds still.
With `data.interp` (the interpolation model) the video's middle frames are blends of the window's two
ends, and the video camera is the first target at every middle time: the true frames it must invent.
"""

from __future__ import annotations

import random

import torch

from training.config import DataConfig
from training.data.stream import BuildSample, PickStage, depth_members
from training.data.decode import SampleError, parse_sample
from training.data.views import fixed_views


def view_kinds(meta: dict, V: int) -> tuple[list[int], list[int]]:
    """(fixed views, random views) of a sample, by training/eval/protocol.py's reading of its JSON."""
    fixed = fixed_views(meta, int(meta.get("num_frames", 1)), V)
    return [v for v in range(V) if fixed[v]], [v for v in range(V) if not fixed[v]]


def pick_window(rng: random.Random, key: str, meta: dict, T: int, V: int, members: dict, cfg: DataConfig,
                start: int | None = None, video: int | None = None, t0_views: list[int] | None = None) -> dict:
    """Choose the window, the video view, the t0 views and the targets of one sample.

    Returns {"frames": [T_w] rendered frame per window time, "video": v, "t0_views": [n0], "targets":
    [T_w][n_target] views}. `start`, `video`, `t0_views` fix those choices (evaluation protocols).
    """
    W, n0 = cfg.window, cfg.n_t0_views
    static = bool(meta.get("static")) or T == 1
    if static:
        frames = [0] * W
    else:
        if T < W:
            raise SampleError("short_clip", f"{key}: {T} rendered times, the window needs {W} (--set data.window)")
        s = rng.randrange(T - W + 1) if start is None else start
        frames = list(range(s, s + W))
    fixed, _random = view_kinds(meta, V)
    # The video and t0 views must exist at every frame they are used at: fixed views with all members.
    usable = [v for v in fixed if all((t, v) in members for t in set(frames))]
    if video is None or t0_views is None:
        if len(usable) < 1 + n0:
            raise SampleError("too_few_views", f"{key}: {len(usable)} complete fixed view(s); the video and "
                                               f"--set data.n_t0_views={n0} need {1 + n0}")
        chosen = rng.sample(usable, 1 + n0)
        video, t0_views = chosen[0], chosen[1:]
    inputs = {video, *t0_views}
    targets = []
    for k, t in enumerate(frames):
        if cfg.interp and not static and 0 < k < W - 1:
            # interpolation: the video's frame here is a blend, so its true frame is what the model must
            # invent; it is always a target (as L4GM supervises the true frames on the input view)
            pool = [v for v in range(V) if (t, v) in members and v != video]
            rest = cfg.n_target - 1
            more = rng.sample(pool, rest) if len(pool) >= rest else [rng.choice(pool or [video]) for _ in range(rest)]
            targets.append([video, *more])
            continue
        seen = inputs if (k == 0 or static) else {video}  # a static window repeats frame 0: t0 views are seen
        pool = [v for v in range(V) if (t, v) in members and v not in seen]
        pool = pool or [v for v in range(V) if (t, v) in members and v not in inputs] or [video]
        if len(pool) >= cfg.n_target:
            targets.append(rng.sample(pool, cfg.n_target))
        else:
            targets.append([rng.choice(pool) for _ in range(cfg.n_target)])
    return {"frames": frames, "video": video, "t0_views": list(t0_views), "targets": targets, "static": static}


def window_item(sample: dict, key: str, meta: dict, members: dict, choice: dict, cfg: DataConfig) -> dict:
    """The BuildSample item of a window choice: only the used members' values, passed through."""
    frames, times = choice["frames"], meta["times"]
    static = choice["static"]
    tm = (lambda t: 0.0) if static else (lambda t: float(times[t]))
    inputs = [(t, choice["video"], tm(t), sample[members[(t, choice["video"])]]) for t in frames]
    inputs += [(frames[0], v, tm(frames[0]), sample[members[(frames[0], v)]]) for v in choice["t0_views"]]
    targets = [(t, v, tm(t), sample[members[(t, v)]]) for t, views in zip(frames, choice["targets"]) for v in views]
    out = {"key": key, "url": sample.get("__url__"), "meta": meta, "static": static, "inputs": inputs,
           "targets": targets, "window": len(frames)}
    if cfg.load_depth:
        out["depth"] = depth_members(sample, key, [(t, v) for t, v, _, _ in targets])
    return out


class PickWindow(PickStage):
    """Pipeline stage (the l4gm counterpart of data.PickViews): choose a window per sample and keep
    only its members. Runs before the shuffle so the buffer holds little."""

    def pick(self, sample: dict, rng: random.Random) -> dict:
        key, meta, T, V, members = parse_sample(sample)
        choice = pick_window(rng, key, meta, T, V, members, self.cfg)
        return window_item(sample, key, meta, members, choice, self.cfg)


class BuildWindowSample(BuildSample):
    """data.BuildSample's tensors in the flat window layout, plus `window` (T, a 0-d tensor),
    `window_frames` (arange(T): the step reads T from its shape, so it never waits for the GPU to read a
    value) and `tg_frame` [T*n_target] (the window time of each target). With data.interp the video's middle
    frames become blends of the window's two ends (the interpolation model's inputs)."""

    def build(self, item: dict, rng: random.Random) -> dict:
        out = super().build(item, rng)
        W = item["window"]
        out["window"] = torch.tensor(W)
        out["window_frames"] = torch.arange(W)
        out["tg_frame"] = torch.arange(W).repeat_interleave(len(item["targets"]) // W)
        if self.cfg.interp:
            out["in_rgb"] = blend_middle(out["in_rgb"], W)
        return out


def blend_middle(in_rgb: torch.Tensor, window: int) -> torch.Tensor:
    """Video frames 1..W-2 replaced by linear blends of frames 0 and W-1 (weights by position), the
    t0 views left alone. in_rgb [W+n0, 3, S, S] (flat layout) -> same shape."""
    out = in_rgb.clone()
    first, last = in_rgb[0], in_rgb[window - 1]
    for k in range(1, window - 1):
        a = k / (window - 1)
        out[k] = (1 - a) * first + a * last
    return out
