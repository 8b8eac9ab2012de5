"""The 4D-LRM family's evaluation protocol, `sparse4` (`pipeline eval` on an lrm4d checkpoint).

Each model family has its evaluation protocol (its `Family.evaluate`, training/models/registry.py; the
checkpoint records its family; training/evaluate.py dispatches). What every family shares (the tag `NAME-vN/FAMILY@SIZE`, target kinds by
camera, the protocol-owned loss, psnr_obj and the baselines, seen_in_training, the metrics file) lives
in training/eval/protocol.py. This module is the 4D-LRM family's protocol, `sparse4`:

The protocol decides, per sample and from nothing but (protocol name, version, seed, sample key) and
the sample's own frame/view layout, which (view, time) pairs the model sees and which held-out pairs
it is scored on. Two checkpoints evaluated with the same protocol are therefore scored on exactly the
same pairs, whatever their training settings. Target kinds (by camera, training/eval/protocol.py):
`novel_view_time`, `novel_time` (a fixed camera an input uses, at a time no input shows), `novel_view`.

One row per sample (DESIGN.md §5): uid, clip, key, shard, psnr, ssim, lpips (null without local LPIPS
weights), loss (PROTOCOL_LOSS), step, protocol, psnr_obj, seen_in_training; plus SSIM/LPIPS in the
object box, PSNR per kind, two baselines (nearest input frame, mean colour) in full and in the box, and
the number of scored targets. The GPU path batches samples; the CPU path uses the pure-torch renderer.
Broken samples, and samples with a single (view, time) pair, are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from training.data import stream as data_mod
from training.data import decode
from training.eval.loop import EvalColumns, EvalPick, EvalResult, eval_pipeline, score_checkpoint
from training.config import DataConfig
from training.models.lrm4d.model import Reconstructor, forward_render
from training.eval.protocol import (SPARSE_KINDS as KINDS, changed_settings, fixed_views, protocol_rng,
                                   protocol_tag, target_kind)

log = logging.getLogger(__name__)

__all__ = ["KINDS", "Protocol", "choose_pairs", "evaluate_lrm4d", "EvalResult"]


@dataclass(frozen=True)
class Protocol:
    """The 4D-LRM family's protocol (sparse inputs at spread times and views)."""

    name: str = "sparse4"      # recorded in every row as NAME-vVERSION/FAMILY@SIZE
    version: int = 2           # bump when the pair choice or the scoring changes; old and new scores don't mix
    seed: int = 2026           # with the sample key, seeds the choice of views
    n_in: int = 4              # input (view, time) pairs: 4D-LRM's sparse setting
    per_kind: int = 2          # targets of each kind (novel_view_time, novel_time, novel_view)
    image_size: int | None = None  # evaluation resolution; None: the checkpoint's own
    family: str = "lrm4d"      # the model family this protocol scores

    def __post_init__(self) -> None:
        if self.n_in < 1:
            raise ValueError(f"--n-in must be >= 1, got {self.n_in}")
        if self.per_kind < 1:
            raise ValueError(f"--per-kind must be >= 1, got {self.per_kind}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"--image-size must be >= 8, got {self.image_size}")
        protocol_tag(self.name, self.version, self.family, 8)  # validates the name

    # the settings that change which pairs are scored: in the tag whenever they differ from the defaults
    TAG_SETTINGS = ("seed", "n_in", "per_kind")

    def tag(self, image_size: int) -> str:
        return protocol_tag(self.name, self.version, self.family, self.image_size or image_size,
                            changed_settings(self, self.TAG_SETTINGS))

    @property
    def n_target(self) -> int:
        return 3 * self.per_kind

    def rng(self, key: str) -> random.Random:
        return protocol_rng(self.name, self.version, self.seed, key)


def choose_pairs(protocol: Protocol, key: str, pairs: list[tuple[int, int]],
                 fixed: list[bool] | None = None) -> tuple[list, list, list[str]]:
    """(input pairs, target pairs, target kinds) for a sample whose members are `pairs` (frame, view);
    `fixed[v]` says whether view v is a fixed camera (default: all are).

    Input frames are spread evenly over the clip and input views drawn (seeded by the key) from the
    fixed cameras when there are any, at most half of the frames and half of those cameras, so that
    unseen times, unseen cameras and both together remain. At most len(pairs) - 1 distinct inputs, so at least one pair is held out; a sample with a
    single pair raises SampleError('too_few_pairs'). Inputs are padded by repeating when there are
    fewer distinct ones than n_in. Targets are distinct held-out pairs, `per_kind` of each kind where
    there are enough, the shortfall filled (without replacement) from the other held-out pairs; when
    even those run out the list is padded with repeats of kind `pad`, which never count.
    """
    if len(set(pairs)) < 2:
        raise decode.SampleError("too_few_pairs", f"{key}: {len(set(pairs))} (view, time) pair(s); evaluation needs "
                                                  f"an input and a held-out target")
    rng = protocol.rng(key)
    frames = sorted({t for t, _ in pairs})
    views = sorted({v for _, v in pairs})
    fixed = fixed if fixed is not None else [True] * (max(views) + 1)
    have = set(pairs)
    cap = min(protocol.n_in, len(have) - 1)  # distinct inputs: one pair at least stays held out
    n_frames = min(cap, max(1, math.ceil(len(frames) / 2)))
    idx = sorted(set(np.linspace(0, len(frames) - 1, n_frames).round().astype(int).tolist()))
    in_frames = [frames[i] for i in idx]
    fixed_order = [v for v in views if fixed[v]]
    random_order = [v for v in views if not fixed[v]]
    rng.shuffle(fixed_order)
    rng.shuffle(random_order)
    order = fixed_order + random_order  # fixed cameras first: a novel-time target needs an input's camera
    pool = fixed_order or random_order  # half the fixed cameras (random views are never an input's camera)
    in_views = order[: min(cap, max(1, math.ceil(len(pool) / 2)))]
    # Too few (frame, view) combinations for the inputs: use more views, then more frames.
    while len(in_frames) * len(in_views) < cap and len(in_views) < len(views):
        in_views = order[: len(in_views) + 1]
    spare = [t for t in frames if t not in in_frames]
    while len(in_frames) * len(in_views) < cap and spare:
        in_frames = sorted(in_frames + [spare.pop(len(spare) // 2)])
    nf, nv = len(in_frames), len(in_views)
    # Round-robin over (frame, view) so every input frame and every input view is used early.
    combos = [(in_frames[i % nf], in_views[(i + i // nf) % nv]) for i in range(nf * nv)]
    combos += [(t, v) for t in in_frames for v in in_views] + sorted(have)
    inputs: list[tuple[int, int]] = []
    for p in combos:
        if len(inputs) == cap:
            break
        if p in have and p not in inputs:
            inputs.append(p)
    distinct = list(inputs)
    while len(inputs) < protocol.n_in:  # fewer distinct pairs than inputs: repeat (small samples only)
        inputs.append(distinct[len(inputs) % len(distinct)])

    held_out = [p for p in sorted(have) if p not in distinct]
    kind_of = {p: target_kind(p, distinct, fixed) for p in held_out}
    targets: list[tuple[int, int]] = []
    kinds: list[str] = []
    for kind in KINDS:
        pool = [p for p in held_out if kind_of[p] == kind]
        rng.shuffle(pool)
        for p in pool[: protocol.per_kind]:
            targets.append(p)
            kinds.append(kind)
    rest = [p for p in held_out if p not in targets]
    rng.shuffle(rest)
    for p in rest[: protocol.n_target - len(targets)]:  # too few of some kind: other held-out pairs, no repeats
        targets.append(p)
        kinds.append(kind_of[p])
    real = len(targets)
    while len(targets) < protocol.n_target:  # fewer held-out pairs than targets: pad (never scored)
        targets.append(targets[len(targets) % real])
        kinds.append("pad")
    return inputs, targets, kinds


# -- data: the protocol's pairs instead of random ones ---------------------------------------------


class ProtocolPick(EvalPick):
    """Pipeline stage: keep, per sample, the members of the protocol's input and target pairs."""

    def __init__(self, protocol: Protocol, handler):
        self.protocol, self.handler = protocol, handler

    def pick(self, sample: dict) -> dict:
        key, meta, T, V, members = decode.parse_sample(sample)
        inputs, targets, kinds = choose_pairs(self.protocol, key, sorted(members), fixed_views(meta, T, V))
        times = meta["times"]
        return {"key": key, "url": sample.get("__url__"), "meta": meta, "static": bool(meta.get("static")) or T == 1,
                "inputs": [(t, v, float(times[t]), sample[members[(t, v)]]) for t, v in inputs],
                "targets": [(t, v, float(times[t]), sample[members[(t, v)]]) for t, v in targets],
                "kinds": kinds}


class BuildEvalSample(EvalColumns, data_mod.BuildSample):
    """The training sample builder plus the metrics row's columns (training.eval.loop.EvalColumns)."""


def make_eval_dataset(urls: list[str], protocol: Protocol, image_size: int, batch_size: int, handler,
                      background: str = "white", trained: Mapping[str, Any] | None = None, info=None):
    """Every sample of every shard once (this rank's share of the shards under torchrun), in order, with
    the protocol's pairs, in batches."""
    cfg = DataConfig(image_size=image_size, n_in=protocol.n_in, n_target=protocol.n_target, background=background,
                     num_workers=0)
    kw = dict(seed=protocol.seed, rank=0, epoch=0)  # rank 0's seeds on every rank: pairs come from the key alone
    return eval_pipeline(urls, ProtocolPick(protocol, handler), BuildEvalSample(cfg, handler, protocol, trained, **kw),
                         batch_size, handler, protocol.seed, info)


# -- the 4D-LRM evaluator -------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_lrm4d(state: dict, ckpt_path: Path, shards: str, out: str | os.PathLike,
                   protocol: Protocol | Mapping[str, Any] | None = None, *, device: str | None = None,
                   batch_size: int | None = None, lpips_weights: str | None = None, worst: int = 8,
                   grids_dir: str | os.PathLike | None = None, progress: bool = True,
                   fp8_attention: bool = False) -> EvalResult:
    """Score a 4D-LRM checkpoint (its loaded `state`) on every sample of `shards`; write `out` (Parquet)
    and grids of the worst."""
    if protocol is None or isinstance(protocol, Mapping):
        protocol = Protocol(**{k: v for k, v in (protocol or {}).items() if v is not None})
    return score_checkpoint(state, ckpt_path, shards, out, protocol, family=protocol.family,
                            build_model=Reconstructor, forward_render=forward_render, make_dataset=make_eval_dataset, default_batch=(2, 8), device=device,
                            batch_size=batch_size, lpips_weights=lpips_weights, worst=worst, grids_dir=grids_dir,
                            progress=progress, fp8_attention=fp8_attention)
