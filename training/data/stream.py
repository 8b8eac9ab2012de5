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
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F

from training.config import DataConfig
from training.data.decode import DEPTH_FMT, SampleError, camera_anchors, decode_depth, decode_rgba, parse_sample
from training.geometry import plucker_image, scale_intrinsics
from training.eval.protocol import fixed_views, target_kind
from training.data import shardstream
from training.data.shardspec import shard_number
from training.data.shardstream import fetch_members, shard_samples
from training.rng import stream_rng as _rng
from training.rng import worker_slot as _worker
from training.data.weights import WeightedRepeat

log = logging.getLogger(__name__)



class DataStreamError(RuntimeError):
    """The stream produces nothing but errors: stop instead of spinning forever."""


# -- error policy ----------------------------------------------------------------------------------


def _reason(exn: BaseException) -> str:
    """A word for the count table: the SampleError's reason, else the failure's kind."""
    import tarfile

    if isinstance(exn, SampleError):
        return exn.reason
    if isinstance(exn, (tarfile.TarError, EOFError)):
        return "tar_read"
    if isinstance(exn, ValueError) and "duplicate file name" in str(exn):
        return "tar_duplicate"
    if isinstance(exn, OSError):
        return "io"
    return type(exn).__name__


class SkipAndCount:
    """Handler that skips a bad sample or shard, counts it by reason and logs the first few.

    A stream that yields nothing but errors for `max_consecutive` in a row raises DataStreamError.
    """

    def __init__(self, max_consecutive: int = 200, log_first: int = 5):
        self.counts: Counter[str] = Counter()
        self.consecutive = 0
        self.max_consecutive = max_consecutive
        self.log_first = log_first

    def __call__(self, exn: BaseException) -> bool:
        reason = _reason(exn)
        self.counts[reason] += 1
        self.consecutive += 1
        total = sum(self.counts.values())
        if total <= self.log_first or total % 100 == 0:
            log.warning("skipped a bad sample or shard (%s, %d skipped so far): %s", reason, total, exn)
        if self.consecutive >= self.max_consecutive:
            raise DataStreamError(f"{self.consecutive} errors in a row and no good sample; last: {exn}") from exn
        return True

    def success(self) -> None:
        self.consecutive = 0


def reraise(exn: BaseException) -> bool:
    raise exn


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
        for sample in src:
            try:
                yield self.pick(sample, rng)
            except Exception as exn:  # noqa: BLE001 (policy is the handler's)
                if not self.handler(exn):
                    break

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
        for item in src:
            try:
                out = self.build(item, rng)
            except Exception as exn:  # noqa: BLE001
                if not self.handler(exn):
                    break
                continue
            getattr(self.handler, "success", lambda: None)()
            yield out

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
                 family: str = "lrm4d"):
    """The WebDataset pipeline for one rank (see module docstring). Returns a wds.DataPipeline that
    yields batches; with `batches_per_worker` it yields exactly that many per iteration (per worker).
    `family` (model.family) chooses the sample picker and builder (training/models/registry.py)."""
    import webdataset as wds

    handler = handler if handler is not None else SkipAndCount()
    kw = dict(seed=seed, rank=rank, epoch=epoch)
    stages: list[Any] = [
        ShardSource(urls, resampled=resampled, world_size=world_size, **kw),
        functools.partial(shard_samples, handler=handler, ranged=cfg.ranged_reads),
    ]
    if weights is not None:
        stages.append(WeightedRepeat(weights, shards=[n for n in map(shard_number, urls) if n is not None], **kw))
    pick_cls, build_cls = (PickViews, BuildSample)
    if family != "lrm4d":
        from training.models.registry import get_family

        pick_cls, build_cls = get_family(family).sample_stages()
    stages.append(pick_cls(cfg, handler, **kw))
    if resampled:
        stages.append(wds.shuffle(cfg.shuffle_buffer, initial=cfg.shuffle_buffer,
                                  rng=_LazyRng(seed, rank, epoch)))
    stages.append(functools.partial(fetch_members, handler=handler))  # picked members over the network, concurrently
    stages.append(build_cls(cfg, handler, **kw))
    stages.append(wds.batched(batch_size, collation_fn=Collate(handler), partial=not resampled))
    pipe = wds.DataPipeline(*stages)
    if batches_per_worker is not None:
        pipe = pipe.with_epoch(batches_per_worker)
    return pipe


class _LazyRng(random.Random):
    """A random.Random seeded at first use in the worker that uses it (worker ids exist only there)."""

    def __init__(self, seed: int, rank: int, epoch: int):
        super().__init__(0)
        self._args, self._seeded = (seed, rank, epoch), False

    def random(self) -> float:  # wds.shuffle picks with rng.randint -> random()
        if not self._seeded:
            self.seed(_rng(*self._args, 5).random())
            self._seeded = True
        return super().random()

    def randint(self, a: int, b: int) -> int:
        self.random()
        return super().randint(a, b)


def make_loader(urls: list[str], cfg: DataConfig, *, batch_size: int, seed: int, rank: int = 0,
                world_size: int = 1, epoch: int = 0, weights: Mapping[str, float] | None = None,
                handler: Callable | None = None, pin_memory: bool = False, family: str = "lrm4d"):
    """A DataLoader over one epoch of `cfg.batches_per_epoch` batches (rounded up to a multiple of
    the worker count) for this rank; every rank gets the same count, so DDP never waits on data."""
    workers = cfg.num_workers
    per_worker = math.ceil(cfg.batches_per_epoch / max(1, workers))
    ds = make_dataset(urls, cfg, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, epoch=epoch,
                      handler=handler, weights=weights, batches_per_worker=per_worker, family=family)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                       persistent_workers=False, prefetch_factor=2 if workers > 0 else None)


