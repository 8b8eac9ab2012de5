"""`pipeline eval`: score a checkpoint on shards with a fixed, seeded protocol -> metrics.parquet.

The protocol decides, per sample and from nothing but (protocol name, version, seed, sample key) and
the sample's own frame/view layout, which (view, time) pairs the model sees and which held-out pairs
it is scored on. Two checkpoints evaluated with the same protocol are therefore scored on exactly the
same pairs, whatever their training settings. Target pairs come in three kinds:

- `novel_view_time`: a time no input shows, from a view no input uses (the hardest);
- `novel_time`: a time no input shows, from a view some input uses;
- `novel_view`: a time an input shows, from another view.

One row per sample (DESIGN.md §5): uid, clip, key, shard, psnr, ssim, lpips (null without local
LPIPS weights), loss, step, protocol; plus PSNR per kind, two baselines (nearest input frame, mean
colour), and the number of targets. The GPU path batches samples; the CPU path uses the pure-torch
renderer. Broken samples are skipped and counted, never fatal.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import math
import os
import random
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from training import checkpoint as ckpt
from training import data as data_mod
from training import shardspec
from training import decode
from training.baselines import nearest_input
from training.config import DataConfig, TrainConfig
from training.losses import psnr, reconstruction_losses, ssim
from training.model import Reconstructor
from training.render import resolve_backend
from training.train import autocast_for, forward_render, to_device

log = logging.getLogger(__name__)

KINDS = ("novel_view_time", "novel_time", "novel_view")


@dataclass(frozen=True)
class Protocol:
    name: str = "sparse4"      # recorded in every row as name-vVERSION
    version: int = 1           # bump when the pair choice below changes; old and new scores don't mix
    seed: int = 2026           # with the sample key, seeds the choice of views
    n_in: int = 4              # input (view, time) pairs: 4D-LRM's sparse setting
    per_kind: int = 2          # targets of each kind (novel_view_time, novel_time, novel_view)
    image_size: int | None = None  # evaluation resolution; None: the checkpoint's own

    def __post_init__(self) -> None:
        if self.n_in < 1:
            raise ValueError(f"--n-in must be >= 1, got {self.n_in}")
        if self.per_kind < 1:
            raise ValueError(f"--per-kind must be >= 1, got {self.per_kind}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"--image-size must be >= 8, got {self.image_size}")

    @property
    def tag(self) -> str:
        size = f"@{self.image_size}" if self.image_size else ""
        return f"{self.name}-v{self.version}{size}"

    @property
    def n_target(self) -> int:
        return 3 * self.per_kind

    def rng(self, key: str) -> random.Random:
        digest = hashlib.sha256(f"{self.name}:{self.version}:{self.seed}:{key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "little"))


def choose_pairs(protocol: Protocol, key: str, pairs: list[tuple[int, int]]) -> tuple[list, list, list[str]]:
    """(input pairs, target pairs, target kinds) for a sample whose members are `pairs` (frame, view).

    Input frames are spread evenly over the clip and input views drawn (seeded by the key), at most
    half of each, min(n_in, ceil(T/2)) frames and min(n_in, ceil(V/2)) views, so that unseen times,
    unseen views and unseen views at unseen times all remain; the n_in inputs cycle over both.
    """
    rng = protocol.rng(key)
    frames = sorted({t for t, _ in pairs})
    views = sorted({v for _, v in pairs})
    have = set(pairs)
    n_frames = min(protocol.n_in, max(1, math.ceil(len(frames) / 2)))
    idx = sorted(set(np.linspace(0, len(frames) - 1, n_frames).round().astype(int).tolist()))
    in_frames = [frames[i] for i in idx]
    order = views[:]
    rng.shuffle(order)
    in_views = order[: min(protocol.n_in, max(1, math.ceil(len(views) / 2)))]
    # Too few (frame, view) combinations for n_in distinct inputs: use more views, then more frames.
    while len(in_frames) * len(in_views) < protocol.n_in and len(in_views) < len(views):
        in_views = order[: len(in_views) + 1]
    spare = [t for t in frames if t not in in_frames]
    while len(in_frames) * len(in_views) < protocol.n_in and spare:
        in_frames = sorted(in_frames + [spare.pop(len(spare) // 2)])
    nf, nv = len(in_frames), len(in_views)
    # Round-robin over (frame, view) so every input frame and every input view is used early.
    combos = [(in_frames[i % nf], in_views[(i + i // nf) % nv]) for i in range(nf * nv)]
    combos += [(t, v) for t in in_frames for v in in_views]
    inputs: list[tuple[int, int]] = []
    for p in combos:
        if len(inputs) == protocol.n_in:
            break
        if p in have and p not in inputs:
            inputs.append(p)
    if not inputs:
        raise decode.SampleError("missing_member", f"{key}: no input pair available")
    while len(inputs) < protocol.n_in:  # fewer distinct pairs than inputs: repeat (tiny samples only)
        inputs.append(inputs[len(inputs) % max(1, len(inputs))])
    seen_t = {t for t, _ in inputs}
    seen_v = {v for _, v in inputs}

    def kind_of(p: tuple[int, int]) -> str:
        if p[0] not in seen_t:
            return "novel_view_time" if p[1] not in seen_v else "novel_time"
        return "novel_view" if p not in inputs else "seen"

    held_out = [p for p in pairs if p not in inputs] or list(pairs)
    targets: list[tuple[int, int]] = []
    kinds: list[str] = []
    for kind in KINDS:
        pool = [p for p in pairs if kind_of(p) == kind]
        rng.shuffle(pool)
        for p in pool[: protocol.per_kind]:
            targets.append(p)
            kinds.append(kind)
        for _ in range(protocol.per_kind - min(protocol.per_kind, len(pool))):
            p = held_out[rng.randrange(len(held_out))]  # too few pairs of this kind: any held-out pair
            targets.append(p)
            kinds.append(kind_of(p))
    return inputs, targets, kinds


# -- data: the protocol's pairs instead of random ones ---------------------------------------------


class ProtocolPick:
    """Pipeline stage: keep, per sample, the members of the protocol's input and target pairs."""

    def __init__(self, protocol: Protocol, handler):
        self.protocol, self.handler = protocol, handler

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        for sample in src:
            try:
                yield self.pick(sample)
            except Exception as exn:  # noqa: BLE001 (the handler decides)
                if not self.handler(exn):
                    break

    def pick(self, sample: dict) -> dict:
        key, meta, T, V, members = decode.parse_sample(sample)
        inputs, targets, kinds = choose_pairs(self.protocol, key, sorted(members))
        times = meta["times"]
        return {"key": key, "url": sample.get("__url__"), "meta": meta, "static": bool(meta.get("static")) or T == 1,
                "inputs": [(t, v, float(times[t]), sample[members[(t, v)]]) for t, v in inputs],
                "targets": [(t, v, float(times[t]), sample[members[(t, v)]]) for t, v in targets],
                "kinds": kinds}


class BuildEvalSample(data_mod.BuildSample):
    """The training sample builder plus what a metrics row needs (shard, clip, target kinds)."""

    def build(self, item: dict, rng: random.Random) -> dict:
        out = super().build(item, rng)
        n = shardspec.shard_number(str(item.get("url") or ""))
        out["shard"] = torch.tensor(-1 if n is None else n)
        out["clip"] = torch.tensor(int(item["meta"].get("clip", -1)))
        out["kind"] = torch.tensor([KINDS.index(k) if k in KINDS else len(KINDS) for k in item["kinds"]])
        return out


def make_eval_dataset(urls: list[str], protocol: Protocol, image_size: int, batch_size: int, handler):
    """Every sample of every shard once, in order, with the protocol's pairs, in batches."""
    import webdataset as wds

    cfg = DataConfig(image_size=image_size, n_in=protocol.n_in, n_target=protocol.n_target, background="white",
                     num_workers=0)
    kw = dict(seed=protocol.seed, rank=0, epoch=0)
    return wds.DataPipeline(
        data_mod.ShardSource(urls, resampled=False, world_size=1, **kw),
        functools.partial(data_mod.shard_samples, handler=handler),  # member index + ranged reads, or streamed
        ProtocolPick(protocol, handler),
        BuildEvalSample(cfg, handler, **kw),
        wds.batched(batch_size, collation_fn=data_mod.Collate(handler), partial=True),
    )


# -- model ----------------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, device: torch.device) -> tuple[Reconstructor, TrainConfig, int, Path]:
    """A checkpoint file, or a run folder (its newest checkpoint); loaded with weights_only=True."""
    p = Path(path)
    if p.is_dir():
        found = ckpt.load_latest(p, map_location="cpu")
        if found is None:
            raise FileNotFoundError(f"--checkpoint {p}: run folder has no checkpoints (checkpoints/step-*.pt)")
        p, state = found
    elif p.is_file():
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exn:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise ValueError(f"--checkpoint {p}: not a readable checkpoint ({type(exn).__name__}: {exn})"[:500]) from None
    else:
        raise FileNotFoundError(f"--checkpoint {p}: no such file or run folder")
    for field in ("model", "config", "step"):
        if not isinstance(state, dict) or field not in state:
            raise ValueError(f"--checkpoint {p}: not a training checkpoint (no {field!r})")
    cfg = TrainConfig.from_dict(state["config"])
    model = Reconstructor(cfg.model)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, cfg, int(state["step"]), p


# -- scoring --------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    rows: list[dict]
    skipped: dict[str, int]
    worst: list[Path]
    summary: dict[str, Any]


@torch.no_grad()
def evaluate(checkpoint: str | os.PathLike, shards: str, out: str | os.PathLike, protocol: Protocol = Protocol(),
             *, device: str | None = None, batch_size: int | None = None, lpips_weights: str | None = None,
             worst: int = 8, grids_dir: str | os.PathLike | None = None, progress: bool = True) -> EvalResult:
    """Score `checkpoint` on every sample of `shards`; write `out` (Parquet) and grids of the worst."""
    from tqdm import tqdm

    from training.lpips import load_lpips
    from training.viz import save_grid

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg, step, ckpt_path = load_checkpoint(checkpoint, dev)
    backend = resolve_backend(cfg.render, dev)
    size = protocol.image_size or cfg.data.image_size
    bs = batch_size or (8 if dev.type == "cuda" else 2)
    lp = load_lpips(lpips_weights, dev) if lpips_weights else None
    if lpips_weights is None:
        log.info("no --lpips-weights: the lpips column stays null")
    urls = shardspec.resolve_shards(shards)
    handler = data_mod.SkipAndCount(max_consecutive=10**9)
    autocast = autocast_for(cfg, dev)
    rows: list[dict] = []
    heap: list[tuple[float, int, dict]] = []  # the `worst` highest losses: (loss, counter, saved batch slice)
    bar = tqdm(unit="sample", desc="eval", disable=not progress, dynamic_ncols=True)
    for batch in make_eval_dataset(urls, protocol, size, bs, handler):
        batch.pop("skipped", None)
        batch.pop("worker", None)
        b = to_device(batch, dev)
        _g, pred, alpha = forward_render(model, b, cfg, backend, autocast, size)
        pred = pred.float().clamp(0, 1)
        tg = b["tg_rgb"]
        p_img = psnr(pred, tg)  # [B, T]
        B, T = p_img.shape
        s_img = ssim(pred.flatten(0, 1), tg.flatten(0, 1)).view(B, T)
        l_img = lp(pred.flatten(0, 1), tg.flatten(0, 1)).view(B, T) if lp is not None else None
        p_near = psnr(nearest_input(b), tg)
        p_mean = psnr(tg.mean(dim=(-1, -2), keepdim=True).expand_as(tg), tg)
        for i in range(B):
            losses = reconstruction_losses(pred[i:i + 1], alpha[i:i + 1], tg[i:i + 1], b["tg_alpha"][i:i + 1],
                                           cfg.loss, lp)
            key = batch["key"][i]
            clip = int(batch["clip"][i])
            uid = key[: -len(f"_{clip:03d}")] if clip >= 0 and key.endswith(f"_{clip:03d}") else key.rsplit("_", 1)[0]
            kinds = batch["kind"][i].tolist()
            row = {"uid": uid, "clip": clip, "key": key, "shard": int(batch["shard"][i]),
                   "psnr": float(p_img[i].mean()), "ssim": float(s_img[i].mean()),
                   "lpips": float(l_img[i].mean()) if l_img is not None else None,
                   "loss": float(losses["loss"]), "step": step, "protocol": protocol.tag}
            for k, kind in enumerate(KINDS):
                sel = [j for j in range(T) if kinds[j] == k]
                row[f"psnr_{kind}"] = float(p_img[i, sel].mean()) if sel else None
            row.update(psnr_nearest_input=float(p_near[i].mean()), psnr_mean_colour=float(p_mean[i].mean()),
                       n_targets=T, image_size=size, pairs=json.dumps({"inputs": batch["in_pairs"][i].tolist(),
                                                            "targets": batch["tg_pairs"][i].tolist()}))
            rows.append(row)
            if worst > 0:
                saved = {k: (v[i:i + 1].cpu() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
                saved["pred"] = pred[i:i + 1].cpu()
                item = (row["loss"], len(rows), saved)
                if len(heap) < worst:
                    heapq.heappush(heap, item)
                elif item[0] > heap[0][0]:
                    heapq.heapreplace(heap, item)
        bar.update(B)
    bar.close()
    if not rows:
        raise RuntimeError(f"--shards {shards}: no sample could be evaluated (skipped: {dict(handler.counts)})")
    rows.sort(key=lambda r: (r["shard"], r["key"]))
    write_metrics(rows, out, protocol, checkpoint=str(ckpt_path), step=step, skipped=dict(handler.counts))
    grid_paths = []
    gdir = Path(grids_dir) if grids_dir else Path(out).with_name(Path(out).stem + "_worst")
    for rank, (loss, _, saved) in enumerate(sorted(heap, key=lambda x: -x[0])):
        gp = gdir / f"{rank:02d}_{saved['key'][0]}.png"
        save_grid(gp, saved, saved["pred"])
        grid_paths.append(gp)
    return EvalResult(rows=rows, skipped=dict(handler.counts), worst=grid_paths, summary=summarize(rows))


def write_metrics(rows: list[dict], out: str | os.PathLike, protocol: Protocol, **meta: Any) -> Path:
    """metrics.parquet (DESIGN.md §5 columns first), atomically, with the protocol in the metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    types = {"uid": pa.string(), "clip": pa.int32(), "key": pa.string(), "shard": pa.int32(), "psnr": pa.float64(),
             "ssim": pa.float64(), "lpips": pa.float64(), "loss": pa.float64(), "step": pa.int64(),
             "protocol": pa.string()}
    extra = [k for k in rows[0] if k not in types]
    extra_types = {"n_targets": pa.int32(), "image_size": pa.int32(), "pairs": pa.string()}
    fields = [pa.field(k, t) for k, t in types.items()] + [pa.field(k, extra_types.get(k, pa.float64())) for k in extra]
    schema = pa.schema(fields)
    table = pa.Table.from_pylist(rows, schema=schema)
    info = {"protocol": asdict(protocol), "protocol_tag": protocol.tag, "command": " ".join(sys.argv), **meta}
    table = table.replace_schema_metadata({b"objaverse4d.metrics": json.dumps(info, default=str).encode()})
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return out


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Means over samples of every metric; None where no sample has a value."""
    cols = defaultdict(list)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isnan(v):
                cols[k].append(v)
    out: dict[str, Any] = {"samples": len(rows)}
    for k in ("psnr", "ssim", "lpips", "loss", *[f"psnr_{k}" for k in KINDS], "psnr_nearest_input", "psnr_mean_colour"):
        out[k] = float(np.mean(cols[k])) if cols.get(k) else None
    return out


def format_summary(res: EvalResult, top: int = 5) -> str:
    s = res.summary
    f = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"evaluated {s['samples']} sample(s) with protocol {res.rows[0]['protocol']} at step {res.rows[0]['step']}",
             f"  psnr {f(s['psnr'])} dB  ssim {f(s['ssim'], 3)}  lpips {f(s['lpips'], 3)}  loss {f(s['loss'], 4)}",
             f"  psnr by target kind: novel view+time {f(s['psnr_novel_view_time'])}, novel time "
             f"{f(s['psnr_novel_time'])}, novel view {f(s['psnr_novel_view'])}",
             f"  baselines: nearest input frame {f(s['psnr_nearest_input'])} dB, mean colour {f(s['psnr_mean_colour'])} dB"]
    if res.skipped:
        lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(res.skipped.items())))
    worst = sorted(res.rows, key=lambda r: -r["loss"])[:top]
    lines.append(f"  worst {len(worst)} by loss:")
    for r in worst:
        lines.append(f"    {r['key']:<32} shard {r['shard']:>4}  loss {r['loss']:.4f}  psnr {r['psnr']:.2f}")
    if res.worst:
        lines.append(f"  grids of the worst: {res.worst[0].parent}")
    return "\n".join(lines)
