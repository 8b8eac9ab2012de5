"""The L4GM family's evaluation protocol, `mono` (monocular video): per sample, a window of `window`
consecutive rendered times from the clip's start, one fixed view as the video at every time, `n_t0_views`
other fixed views at the first time, and `per_time` held-out views at every time of the window, scored.

The choice depends on nothing but (name, version, seed, sample key) and the sample's own layout, so two
checkpoints are scored on the same images. The name carries the window (`mono4` = 4 times) and the tag
the family, the size and every setting that differs from its default (`seed`, `n_t0_views`, `per_time`,
`interp`; DESIGN.md §5): `mono4-v2/l4gm@256`, `mono4-v2[n_t0_views=1]/l4gm@256`.

Target kinds (training/data/views.py, split by camera): the video shows every time, so a held-out target
is `novel_view` (a camera no input uses), `known_view` (a t0 view's camera at a later time: seen at
another time) or, with interpolation, `novel_time` / `novel_view_time` at the middle times. v2 split
v1's `novel_view` into the first two.

Interpolation (`interp`, the tag's `[interp=true]`, on by default for a checkpoint trained with
`data.interp`): the video's middle frames are replaced by blends of the window's two ends, as the
interpolation model is trained and run (training/models/l4gm/samples.py), and the true middle frames of the
video camera are among the targets, so the numbers measure the frames it must invent. Scoring an
interpolation checkpoint without it (true middle frames as inputs) is refused. Rows have the columns of every protocol (training/eval/protocol.py:
psnr, psnr_obj, ssim, lpips, the protocol-owned loss, baselines, seen_in_training) plus `psnr_t0`
(targets at the window's first time, where the model has 1 + n_t0_views views) and `psnr_later` (the
other times, where it has the video frame and what temporal attention carries over).
A static clip fills the window with its one time; a clip with fewer rendered times than the window is
skipped as `short_clip`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from training.data import decode
from training.eval.loop import EvalColumns, EvalPick, eval_pipeline, score_checkpoint
from training.config import DataConfig
from training.models.l4gm.model import VideoReconstructor, forward_render
from training.models.l4gm.samples import BuildWindowSample, pick_window, window_item
from training.eval.protocol import NOT_SCORED, changed_settings, fixed_views, protocol_rng, protocol_tag, target_kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoProtocol:
    name: str = "mono"          # the window length is appended: mono4
    version: int = 2            # bump when the choice below or the scoring changes (2: known_view apart)
    seed: int = 2026            # with the sample key, seeds the choice of views
    window: int = 4             # rendered times per sample, from the clip's first
    n_t0_views: int = 3         # L4GM's setting: 4 views of the first time in all
    per_time: int = 2           # held-out views scored at every time
    image_size: int | None = None  # evaluation resolution; None: the checkpoint's own
    interp: bool = False        # blended middle video frames (the interpolation model's inputs)

    TAG_SETTINGS = ("seed", "n_t0_views", "per_time", "interp")  # in the tag when not the default

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"--window must be >= 1, got {self.window}")
        if self.interp and self.window < 3:
            raise ValueError(f"--protocol mono{self.window} with interpolation (data.interp): a window of "
                             f"{self.window} has no middle frame to blend; use mono4 or longer")
        if self.per_time < 1:
            raise ValueError(f"--per-kind (held-out views per time) must be >= 1, got {self.per_time}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"--image-size must be >= 8, got {self.image_size}")

    @property
    def family(self) -> str:
        return "l4gm"

    def tag(self, image_size: int) -> str:
        return protocol_tag(f"{self.name}{self.window}", self.version, self.family, self.image_size or image_size,
                            changed_settings(self, self.TAG_SETTINGS))

    def rng(self, key: str) -> random.Random:
        return protocol_rng(f"{self.name}{self.window}", self.version, self.seed, key)

    def data_config(self, image_size: int, background: str) -> DataConfig:
        return DataConfig(image_size=image_size, n_target=self.per_time, window=self.window,
                          n_t0_views=self.n_t0_views, background=background, num_workers=0, interp=self.interp)


def protocol_from_options(options: Mapping[str, Any] | VideoProtocol | None) -> VideoProtocol:
    """`pipeline eval`'s protocol options for this family: name, seed, image_size as given; per_kind is
    the number of held-out views per time; n_in is 1 + n_t0_views."""
    if isinstance(options, VideoProtocol):
        return options
    o = {k: v for k, v in (options or {}).items() if v is not None}
    kw: dict[str, Any] = {}
    if "name" in o:
        name = str(o["name"])
        digits = name[len(name.rstrip("0123456789")):]
        kw["name"] = name.rstrip("0123456789") or "mono"
        if kw["name"] != "mono":
            raise ValueError(f"--protocol {name}: not a protocol of the l4gm family (this checkpoint's); "
                             f"use mono4 (or monoN for N-time windows)")
        if digits:
            kw["window"] = int(digits)  # mono8 = the mono protocol with 8-time windows
    for src, dst in (("seed", "seed"), ("per_kind", "per_time"), ("image_size", "image_size"), ("window", "window"),
                     ("interp", "interp")):
        if src in o:
            kw[dst] = o[src]
    if "n_in" in o:
        kw["n_t0_views"] = int(o["n_in"]) - 1
        if kw["n_t0_views"] < 0:
            raise ValueError(f"--n-in {o['n_in']}: the l4gm protocol needs the video view, so >= 1")
    return VideoProtocol(**kw)


class WindowProtocolPick(EvalPick):
    """Pipeline stage: the protocol's window, video, t0 views and held-out views of each sample."""

    def __init__(self, protocol: VideoProtocol, cfg: DataConfig, handler):
        self.protocol, self.cfg, self.handler = protocol, cfg, handler

    def pick(self, sample: dict) -> dict:
        key, meta, T, V, members = decode.parse_sample(sample)
        rng = self.protocol.rng(key)
        fixed = fixed_views(meta, T, V)
        meta = {**meta, "cameras": {**(meta.get("cameras") or {}), "fixed": fixed}}
        choice = pick_window(rng, key, meta, T, V, members, self.cfg, start=0)
        item = window_item(sample, key, meta, members, choice, self.cfg)
        inputs = [(t, v) for t, v, _, _ in item["inputs"]]
        if self.protocol.interp:  # blended middle video frames show no true image of their time
            W = len(choice["frames"])
            inputs = [p for j, p in enumerate(inputs) if not 0 < j < W - 1]
        kinds, used = [], set()
        for t, v, _, _ in item["targets"]:
            kind = target_kind((t, v), inputs, fixed, split_views=True)
            kinds.append("pad" if kind != "seen" and (t, v) in used else kind)  # a repeat when views run short
            used.add((t, v))
        item["kinds"] = kinds
        return item


class BuildWindowEvalSample(EvalColumns, BuildWindowSample):
    """The window builder plus the metrics row's columns (training.eval.loop.EvalColumns)."""


def make_eval_dataset(urls: list[str], protocol: VideoProtocol, image_size: int, batch_size: int, handler,
                      background: str = "white", trained: Mapping[str, Any] | None = None, info=None):
    """Every sample of every shard once (this rank's share under torchrun), in order, with the protocol's
    window, in batches."""
    cfg = protocol.data_config(image_size, background)
    kw = dict(seed=protocol.seed, rank=0, epoch=0)  # the same seeds on every rank: windows come from the key
    return eval_pipeline(urls, WindowProtocolPick(protocol, cfg, handler),
                         BuildWindowEvalSample(cfg, handler, protocol, trained, **kw), batch_size, handler,
                         protocol.seed, info)


@torch.no_grad()
def evaluate_l4gm(state: dict, ckpt_path: Path, shards: str, out, protocol=None, *, device: str | None = None,
                  batch_size: int | None = None, lpips_weights: str | None = None, worst: int = 8,
                  grids_dir=None, progress: bool = True, fp8_attention: bool = False):
    """Score an L4GM-family checkpoint (its loaded `state`) on every sample of `shards`; write `out`."""
    from training.checkpoint import require_family

    require_family(state, "l4gm", f"--checkpoint {ckpt_path}")
    trained_interp = bool((state["config"].get("data") or {}).get("interp"))
    if trained_interp and isinstance(protocol, Mapping) and protocol.get("interp") is None:
        protocol = {**protocol, "interp": True}  # an interpolation model is scored on what it must invent
    protocol = protocol_from_options(protocol if protocol is not None else {"interp": trained_interp})
    if trained_interp and not protocol.interp:
        raise ValueError(f"--checkpoint {ckpt_path}: an interpolation model (data.interp=true) scored without "
                         f"blended middle frames would see the true frames it must invent; use the protocol "
                         f"with interp=true ({protocol.tag(8).split('/')[0]}[interp=true])")

    def columns(handler):
        def per_time(batch: dict, i: int, row: dict, scores: dict, kinds: list[str]) -> dict | None:
            if row["psnr"] is None:
                handler.counts["no_scored_target"] += 1
                return None
            frame = batch["tg_frame"][i].tolist()
            out = {}
            for name, keep in (("psnr_t0", lambda f: f == 0), ("psnr_later", lambda f: f > 0)):
                sel = [j for j, f in enumerate(frame) if keep(f) and kinds[j] not in NOT_SCORED]
                out[name] = float(scores["psnr"][sel].mean()) if sel else None
            return out
        return per_time

    return score_checkpoint(state, ckpt_path, shards, out, protocol, family="l4gm", build_model=VideoReconstructor,
                            forward_render=forward_render, make_dataset=make_eval_dataset,
                            default_batch=(1, 4), extra_columns=columns, device=device, batch_size=batch_size,
                            lpips_weights=lpips_weights, worst=worst, grids_dir=grids_dir, progress=progress,
                            fp8_attention=fp8_attention)
