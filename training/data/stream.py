"""Streaming training samples from shards (DESIGN.md §4-§6) with WebDataset.

The pipeline, one small generator stage each, with the error policy passed in as `handler`:

    shard urls (resampled per rank and worker, or split by rank then worker)
    -> samples grouped by key (training.data.shardstream: through the shard's member index, JSON read and
       images left as ranged-read references; or the tar streamed whole: local, http(s), s3://)
    -> weighted repeat (--weights) -> pick (view, time) pairs and keep only their members
    -> shuffle (still undecoded) -> decode the picked images, resize, composite, Plücker rays
    -> batches, a fixed number per epoch

Nothing from a shard is ever unpickled: `.json` goes through json.loads, images through PIL, and
every other member is dropped unread.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F

from training.config import DataConfig
from training.data.handlers import DataStreamError, SkipAndCount, guarded, reraise  # noqa: F401 (the loader's API)
from training.data.decode import DEPTH_FMT, SampleError, camera_anchors, decode_depth, decode_rgba, parse_sample
from training.geometry import plucker_image, scale_intrinsics
from training.data.views import fixed_views, target_kind
from training.data import shardstream
from training.data.shardspec import shard_number
from training.data.shardstream import fetch_members, shard_samples
from training.rng import stream_rng as _rng
from training.rng import worker_slot as _worker
from training.data.weights import WeightedRepeat

log = logging.getLogger(__name__)



# -- stages ----------------------------------------------------------------------------------------


class ShardSource(torch.utils.data.IterableDataset):
    """First stage: shard urls for this rank and DataLoader worker.

    resampled: draw shards at random forever (from this rank's share when there are at least as many
    shards as ranks), seeded by (seed, rank, worker, epoch) so every rank and worker sees its own stream.
    Otherwise: each shard once, split by rank then by worker (for evaluation passes).
    """

    def __init__(self, urls: list[str], *, resampled: bool, seed: int, rank: int, world_size: int, epoch: int):
        super().__init__()
        self.urls, self.resampled, self.seed = list(urls), resampled, seed
        self.rank, self.world_size, self.epoch = rank, world_size, epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        urls = self.urls
        if len(urls) >= self.world_size:
            urls = urls[self.rank :: self.world_size]  # node splitting
        elif not self.resampled:
            urls = urls[self.rank : self.rank + 1]
        if self.resampled:
            rng = _rng(self.seed, self.rank, self.epoch, 1)
            while True:
                yield {"url": rng.choice(urls)}
        worker, nworkers = _worker()
        for url in urls[worker::nworkers]:  # worker splitting
            yield {"url": url}


open_shards = shardstream.open_shards  # the streaming stage, kept under its old name


class PickStage:
    """A pipeline stage that picks, per sample, the members a family's sample needs (`pick`, defined by
    the family) with a random stream of its own; a sample that cannot be used goes to the handler.
    Runs before the shuffle, so the buffer holds only what was picked."""

    def __init__(self, cfg: DataConfig, handler: Callable, *, seed: int, rank: int, epoch: int):
        self.cfg, self.handler = cfg, handler
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        rng = _rng(self.seed, self.rank, self.epoch, 3)
        yield from guarded(src, lambda sample: self.pick(sample, rng), self.handler)

    def pick(self, sample: dict, rng: random.Random) -> dict:
        raise NotImplementedError


class PickViews(PickStage):
    """Choose input and target (view, time) pairs per sample and keep only those members' bytes.

    Inputs are n_in distinct pairs. A share `novel_time_fraction` of the targets are novel-time targets
    by camera (training.eval.protocol.target_kind): a fixed camera some input uses, at a frame no input
    shows. Random views are redrawn at every time, so a random view at an unseen frame is a novel view
    at a novel time, not a novel time; when there are too few novel-time pairs the share is filled
    from other unseen-frame pairs, then (like the other targets) from distinct pairs that are not
    inputs; repeats only when every pair is used. Static samples (one frame) serve any time: each pair
    gets a uniformly random time. Runs before the shuffle so the buffer holds little.
    """


    def pick(self, sample: dict, rng: random.Random) -> dict:
        key, meta, T, V, members = parse_sample(sample)
        pairs = sorted(members)
        cfg = self.cfg
        static = bool(meta.get("static")) or T == 1
        inputs = _choose(rng, pairs, cfg.n_in)
        if static:
            in_times = [rng.random() for _ in inputs]
            targets = _choose(rng, [p for p in pairs if p not in inputs] or pairs, cfg.n_target)
            tg_times = [rng.random() for _ in targets]
        else:
            fixed = fixed_views(meta, T, V)
            kind = {p: target_kind(p, inputs, fixed) for p in pairs}
            n_novel = round(cfg.n_target * cfg.novel_time_fraction)
            targets = _distinct(rng, [p for p in pairs if kind[p] == "novel_time"], n_novel)
            targets += _distinct(rng, [p for p in pairs if kind[p] == "novel_view_time"], n_novel - len(targets))
            rest = [p for p in pairs if p not in inputs and p not in targets]
            targets += _distinct(rng, rest, cfg.n_target - len(targets))
            if len(targets) < cfg.n_target:  # every held-out pair is a target already: repeat some
                targets += _choose(rng, [p for p in pairs if p not in inputs] or pairs, cfg.n_target - len(targets))
            times = meta["times"]
            in_times = [float(times[t]) for t, _ in inputs]
            tg_times = [float(times[t]) for t, _ in targets]
        out = {"key": key, "url": sample.get("__url__"), "meta": meta, "static": static,
               "inputs": [(t, v, tm, sample[members[(t, v)]]) for (t, v), tm in zip(inputs, in_times)],
               "targets": [(t, v, tm, sample[members[(t, v)]]) for (t, v), tm in zip(targets, tg_times)]}
        if cfg.load_depth:
            out["depth"] = depth_members(sample, key, targets)
        return out


def depth_members(sample: dict, key: str, pairs: Iterable[tuple[int, int]]) -> list:
    """The depth members (bytes or MemberRef) of the (frame, view) `pairs`; SampleError when one is missing."""
    depth = []
    for t, v in pairs:
        name = DEPTH_FMT.format(t=t, v=v)
        if name not in sample:
            raise SampleError("missing_member", f"{key}.{name}: depth member missing")
        depth.append(sample[name])
    return depth


def _distinct(rng: random.Random, items: list, n: int) -> list:
    """Up to n of `items`, without replacement (fewer when there are fewer)."""
    return rng.sample(items, min(n, len(items))) if n > 0 else []


def _choose(rng: random.Random, items: list, n: int) -> list:
    """n items without replacement when there are enough, else with replacement."""
    if n <= 0 or not items:
        return []
    if len(items) >= n:
        return rng.sample(items, n)
    return [rng.choice(items) for _ in range(n)]


class BuildSample:
    """Decode the picked images and make model-ready tensors for one sample.

    Returns in_rgb [n_in, 3, S, S], in_cond [n_in, 7, S, S] (Plücker 6 + normalised time 1),
    in_c2w [n_in, 4, 4], in_K [n_in, 3, 3], in_time [n_in]; tg_rgb [n_t, 3, S, S],
    tg_alpha [n_t, 1, S, S], tg_c2w, tg_K, tg_time; optional tg_depth [n_t, 1, S, S]; background [3];
    in_pairs/tg_pairs [n, 2] (frame, view); in_anchor [n_in, 3], tg_anchor [n_t, 3] (the point each
    pair's cameras are framed on: decode.camera_anchors of its frame, zeros under framing 'union'); key.
    """

    def __init__(self, cfg: DataConfig, handler: Callable, *, seed: int, rank: int, epoch: int):
        self.cfg, self.handler = cfg, handler
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        rng = _rng(self.seed, self.rank, self.epoch, 4)
        yield from guarded(src, lambda item: self.build(item, rng), self.handler, counts_success=True)

    def background(self, rng: random.Random) -> torch.Tensor:
        bg = self.cfg.background
        if bg == "white":
            return torch.ones(3)
        if bg == "black":
            return torch.zeros(3)
        return torch.full((3,), rng.random())

    def build(self, item: dict, rng: random.Random) -> dict:
        S = self.cfg.image_size
        meta, key = item["meta"], item["key"]
        bg = self.background(rng)
        c2w_all = torch.tensor(meta["c2w"], dtype=torch.float32)  # [T, V, 4, 4]
        K_all = torch.tensor(meta["K"], dtype=torch.float32)  # [V, 3, 3]

        def load(entries):
            rgbs, alphas, c2ws, Ks = [], [], [], []
            for t, v, _tm, data in entries:
                rgba = torch.from_numpy(decode_rgba(data, f"{key}.t{t:03d}.v{v:03d}")).permute(2, 0, 1)  # [4, h, w]
                h, w = rgba.shape[-2:]
                rgb = rgba[:3] * rgba[3:] + bg[:, None, None] * (1 - rgba[3:])  # composite straight alpha
                if (h, w) != (S, S):
                    rgb = F.interpolate(rgb[None], size=(S, S), mode="bilinear", antialias=True, align_corners=False)[0]
                    a = F.interpolate(rgba[None, 3:], size=(S, S), mode="bilinear", antialias=True, align_corners=False)[0]
                else:
                    a = rgba[3:]
                rgbs.append(rgb.clamp(0, 1))
                alphas.append(a.clamp(0, 1))
                c2ws.append(c2w_all[t, v])
                Ks.append(scale_intrinsics(K_all[v], S / w, S / h))
            return torch.stack(rgbs), torch.stack(alphas), torch.stack(c2ws), torch.stack(Ks)

        in_rgb, _in_alpha, in_c2w, in_K = load(item["inputs"])
        tg_rgb, tg_alpha, tg_c2w, tg_K = load(item["targets"])
        in_time = torch.tensor([tm for _, _, tm, _ in item["inputs"]], dtype=torch.float32)  # [n_in]
        tg_time = torch.tensor([tm for _, _, tm, _ in item["targets"]], dtype=torch.float32)  # [n_t]
        rays = plucker_image(in_c2w, in_K, S, S)  # [n_in, 6, S, S]
        tplane = in_time[:, None, None, None].expand(-1, 1, S, S)  # [n_in, 1, S, S]
        out = {
            "key": key, "in_rgb": in_rgb, "in_cond": torch.cat([rays, tplane], 1), "in_c2w": in_c2w,
            "in_K": in_K, "in_time": in_time, "tg_rgb": tg_rgb, "tg_alpha": tg_alpha, "tg_c2w": tg_c2w,
            "tg_K": tg_K, "tg_time": tg_time, "background": bg,
            "in_pairs": torch.tensor([(t, v) for t, v, _, _ in item["inputs"]]),
            "tg_pairs": torch.tensor([(t, v) for t, v, _, _ in item["targets"]]),
        }
        anchors = torch.from_numpy(camera_anchors(key, meta))  # [T, 3]
        out["in_anchor"], out["tg_anchor"] = anchors[out["in_pairs"][:, 0]], anchors[out["tg_pairs"][:, 0]]
        if "depth" in item:
            scale = float(meta.get("depth_scale", 0.0))
            if not scale > 0:
                raise SampleError("bad_json", f"{key}.json: depth_scale {meta.get('depth_scale')!r}")
            ds = []
            for (t, v, _, _), data in zip(item["targets"], item["depth"]):
                d = torch.from_numpy(decode_depth(data, scale, f"{key}.t{t:03d}.v{v:03d}.depth"))[None, None]
                ds.append(F.interpolate(d, size=(S, S), mode="nearest-exact")[0] if d.shape[-2:] != (S, S) else d[0])
            out["tg_depth"] = torch.stack(ds)
        return out


class Collate:
    """Stack samples into a batch; attach this worker's skip counts (cumulative) for the trainer."""

    def __init__(self, handler: Callable):
        self.handler = handler

    def __call__(self, samples: list[dict]) -> dict:
        batch: dict[str, Any] = {"key": [s["key"] for s in samples]}
        for k, v in samples[0].items():
            if isinstance(v, torch.Tensor):
                batch[k] = torch.stack([s[k] for s in samples])
        batch["skipped"] = dict(getattr(self.handler, "counts", {}))
        batch["worker"] = _worker()[0]
        return batch


# -- assembly --------------------------------------------------------------------------------------


def make_dataset(urls: list[str], cfg: DataConfig, *, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, epoch: int = 0, resampled: bool = True, handler: Callable | None = None,
                 weights: Mapping[str, float] | None = None, batches_per_worker: int | None = None,
                 stages: tuple[type, type] | None = None):
    """The WebDataset pipeline for one rank (see module docstring). Returns a wds.DataPipeline that
    yields batches; with `batches_per_worker` it yields exactly that many per iteration (per worker).
    `stages`: the (picker, builder) classes of the model family (training/models/registry.py
    `Family.sample_stages()`); default the posed (view, time) pairs below (PickViews, BuildSample)."""
    import webdataset as wds

    handler = handler if handler is not None else SkipAndCount()
    kw = dict(seed=seed, rank=rank, epoch=epoch)
    pipe: list[Any] = [
        ShardSource(urls, resampled=resampled, world_size=world_size, **kw),
        functools.partial(shard_samples, handler=handler, ranged=cfg.ranged_reads),
    ]
    if weights is not None:
        pipe.append(WeightedRepeat(weights, shards=[n for n in map(shard_number, urls) if n is not None], **kw))
    pick_cls, build_cls = stages or (PickViews, BuildSample)
    pipe.append(pick_cls(cfg, handler, **kw))
    if resampled:
        pipe.append(Shuffle(cfg.shuffle_buffer, **kw))
    pipe.append(functools.partial(fetch_members, handler=handler))  # picked members over the network, concurrently
    pipe.append(build_cls(cfg, handler, **kw))
    pipe.append(wds.batched(batch_size, collation_fn=Collate(handler), partial=not resampled))
    dataset = wds.DataPipeline(*pipe)
    if batches_per_worker is not None:
        dataset = dataset.with_epoch(batches_per_worker)
    return dataset


class Shuffle:
    """Buffered shuffle stage that seeds itself when iteration starts, in the DataLoader worker that
    runs it, so its stream is private to (seed, rank, worker, epoch) (training/rng.py). Holds up to
    `size` items; once full, every arriving item makes it yield one uniformly chosen buffered item;
    at the end it empties the buffer in random order."""

    def __init__(self, size: int, *, seed: int, rank: int, epoch: int):
        self.size = max(1, size)
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def __call__(self, src: Iterable[Any]) -> Iterator[Any]:
        rng = random.Random(_rng(self.seed, self.rank, self.epoch, 5).random())  # seeded here, in the worker
        buf: list[Any] = []

        def take() -> Any:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            return buf.pop()

        for item in src:
            buf.append(item)
            if len(buf) >= self.size:
                yield take()
        while buf:
            yield take()


def make_loader(urls: list[str], cfg: DataConfig, *, batch_size: int, seed: int, rank: int = 0,
                world_size: int = 1, epoch: int = 0, weights: Mapping[str, float] | None = None,
                handler: Callable | None = None, pin_memory: bool = False,
                stages: tuple[type, type] | None = None):
    """A DataLoader over one epoch of `cfg.batches_per_epoch` batches (rounded up to a multiple of
    the worker count) for this rank; every rank gets the same count, so DDP never waits on data."""
    workers = cfg.num_workers
    per_worker = math.ceil(cfg.batches_per_epoch / max(1, workers))
    ds = make_dataset(urls, cfg, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, epoch=epoch,
                      handler=handler, weights=weights, batches_per_worker=per_worker, stages=stages)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                       persistent_workers=False, prefetch_factor=2 if workers > 0 else None)


