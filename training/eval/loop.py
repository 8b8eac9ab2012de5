"""The evaluation loop both model families share: batches -> per-sample rows, the worst samples'
grids, and (under torchrun) the split of shards over ranks and the gathering of every rank's rows.

A family supplies its dataset (built for this rank's share of the shards), its forward pass and,
optionally, extra columns per row; this module scores targets with training.eval.protocol, keeps the
`worst` highest-loss samples, gathers rows from all ranks (JSON over the process group: nothing is
pickled), writes the metrics file once (rank 0) and saves the grids of the overall worst samples,
each from the rank that holds it. Scores do not depend on the number of ranks: every sample is
scored alone, and rows are sorted by (shard, key) before writing.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from training import ddp
from training.data import shardspec
from training.data.handlers import guarded
from training.eval.protocol import ALL_KINDS, baseline_scores, sample_row, score_targets, seen_in_training

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    rows: list[dict]
    skipped: dict[str, int]
    worst: list[Path]
    summary: dict[str, Any]
    tag: str = ""
    family: str = "lrm4d"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopResult:
    rows: list[dict]                # every rank's rows, sorted by (shard, key)
    skipped: dict[str, int]         # summed over ranks
    worst: list[Path] = field(default_factory=list)


class EvalColumns:
    """Mixed into a family's sample builder: adds what a metrics row needs (shard, clip, target kinds,
    seen in training). The background is the checkpoint's training background; a `random` one is a grey
    drawn from the protocol and the sample key, so every checkpoint sees the same one."""

    def __init__(self, cfg, handler, protocol, trained: Mapping[str, Any] | None, **kw):
        super().__init__(cfg, handler, **kw)
        self.protocol, self.trained = protocol, trained
        self._seen: dict[str, bool | None] = {}  # per shard url (a shard's samples share it; the record may be long)

    def build(self, item: dict, rng) -> dict:
        out = super().build(item, self.protocol.rng(f"{item['key']}:background"))
        url = str(item.get("url") or "")
        n = shardspec.shard_number(url)
        out["shard"] = torch.tensor(-1 if n is None else n)
        out["clip"] = torch.tensor(int(item["meta"].get("clip", -1)))
        out["kind"] = torch.tensor([ALL_KINDS.index(k) for k in item["kinds"]])  # [n_target]
        if url not in self._seen:
            self._seen[url] = seen_in_training(url, self.trained)
        seen = self._seen[url]
        out["seen"] = torch.tensor(-1 if seen is None else int(seen))
        return out


class EvalPick:
    """Pipeline stage base of a protocol's pick: `pick(sample)` (the family's) keeps, per sample, the
    members of the protocol's inputs and targets; a sample that cannot be used goes to `self.handler`."""

    handler: Callable[[Exception], bool]

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        yield from guarded(src, self.pick, self.handler)

    def pick(self, sample: dict) -> dict:
        raise NotImplementedError


def eval_pipeline(urls: list[str], pick: EvalPick, build, batch_size: int, handler, seed: int,
                  info: ddp.DistInfo | None = None):
    """Every sample of every shard once (this rank's share of the shards under torchrun), in order:
    member index + ranged reads (or streamed), the protocol's `pick`, the picked members fetched
    concurrently, the family's eval sample builder `build`, batches."""
    import webdataset as wds

    from training.data import stream as data_mod

    rank, world = (info.rank, info.world_size) if info is not None else (0, 1)
    return wds.DataPipeline(
        data_mod.ShardSource(urls, resampled=False, world_size=world, seed=seed, rank=rank, epoch=0),
        functools.partial(data_mod.shard_samples, handler=handler),
        pick,
        functools.partial(data_mod.fetch_members, handler=handler),
        build,
        wds.batched(batch_size, collation_fn=data_mod.Collate(handler), partial=True),
    )


@torch.no_grad()
def score_checkpoint(state: dict, ckpt_path: Path, shards: str, out, protocol, *, family: str, build_model,
                     forward_render, make_dataset,
                     default_batch: tuple[int, int], extra_columns=None, device: str | None = None,
                     batch_size: int | None = None, lpips_weights: str | None = None, worst: int = 8,
                     grids_dir=None, progress: bool = True, fp8_attention: bool = False) -> EvalResult:
    """What every family's evaluator does once it holds its protocol object: build the checkpoint's model
    with the family's `build_model(ModelConfig)` (under torchrun: on this rank's GPU), `make_dataset(urls,
    protocol, size, batch, handler, background, trained, info=)` over this rank's share of `shards`, score
    every batch (run_eval) through the family's `forward_render(model, batch, cfg, backend, autocast,
    size)`, write the metrics file (finish_eval). default_batch: (CPU, GPU) batch size without
    --batch-size; extra_columns(handler) -> run_eval's extra_columns, or None."""
    from training.data import stream as data_mod
    from training.eval.baselines import nearest_input
    from training.config import TrainConfig
    from training.losses.lpips import load_lpips
    from training.render.frames import resolve_backend
    from training.device import autocast_for, to_device

    info = ddp.init(device)  # under torchrun: this rank's GPU, and its share of the shards below
    dev = info.device
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    from training.models import fast

    # CUDA: cuDNN attention first and the compiled blocks as in training (no-op on a CPU); float32 stays
    # float32 (no TF32), so the metrics' LPIPS is computed as before
    # fp8_attention (`pipeline eval --fp8-attention`): score with the inference-only FP8 attention kernel
    log.info("eval model: %s", fast.setup_model(model, dev, cfg.compile, tf32=False, fp8_attn=fp8_attention))
    step = int(state["step"])
    trained = state.get("trained_on")
    if trained is None:
        log.warning("%s records no training shards (written before the record): seen_in_training stays null",
                    ckpt_path)
    backend = resolve_backend(cfg.render, dev)
    size = protocol.image_size or cfg.data.image_size
    tag = protocol.tag(size)
    bs = batch_size or default_batch[dev.type == "cuda"]
    lp = load_lpips(lpips_weights, dev) if lpips_weights else None
    if lpips_weights is None:
        log.info("no --lpips-weights: the lpips columns stay null")
    urls = shardspec.resolve_shards(shards)
    handler = data_mod.SkipAndCount(max_consecutive=10**9)
    autocast = autocast_for(cfg, dev)

    def forward(batch: dict):
        b = to_device(batch, dev)
        _g, pred, alpha = forward_render(model, b, cfg, backend, autocast, size)
        return pred, alpha, b  # [B, n_target, 3, S, S], [B, n_target, 1, S, S]

    gdir = Path(grids_dir) if grids_dir else Path(out).with_name(Path(out).stem + "_worst")
    res = run_eval(make_dataset(urls, protocol, size, bs, handler, cfg.data.background, trained, info=info),
                   forward, nearest_input, handler=handler, info=info, lpips_net=lp, worst=worst, grids_dir=gdir,
                   progress=progress, extra_columns=extra_columns(handler) if extra_columns is not None else None,
                   base_row={"step": step, "protocol": tag, "image_size": size, "family": family})
    return finish_eval(res, out, shards, tag=tag, protocol=asdict(protocol), background=cfg.data.background,
                       ckpt_path=ckpt_path, step=step, family=family, trained=trained, info=info)


def finish_eval(res: LoopResult, out, shards: str, *, tag: str, protocol: dict, background: str, ckpt_path: Path,
                step: int, family: str, trained, info: ddp.DistInfo) -> EvalResult:
    """The end of every family's evaluation: an error when no sample could be scored, the metrics file
    written once (rank 0; every rank holds all rows), the ranks in step, the result."""
    from training.eval.protocol import summarize, write_metrics

    if not res.rows:
        raise RuntimeError(f"--shards {shards}: no sample could be evaluated (skipped: {res.skipped})")
    if info.is_main:
        write_metrics(res.rows, out, tag=tag, protocol=protocol, background=background, checkpoint=str(ckpt_path),
                      step=step, family=family, skipped=res.skipped, trained_on=trained, ranks=info.world_size)
    ddp.barrier(info)
    return EvalResult(rows=res.rows, skipped=res.skipped, worst=res.worst, summary=summarize(res.rows), tag=tag,
                      family=family)


def sample_uid(key: str, clip: int) -> str:
    return key[: -len(f"_{clip:03d}")] if clip >= 0 and key.endswith(f"_{clip:03d}") else key.rsplit("_", 1)[0]


@torch.no_grad()
def run_eval(batches: Iterable[dict], forward: Callable[[dict], tuple[torch.Tensor, torch.Tensor, dict]],
             nearest: Callable[[dict], torch.Tensor], *, base_row: Mapping[str, Any], handler, info: ddp.DistInfo,
             lpips_net=None, worst: int = 8, grids_dir: Path | None = None, progress: bool = True,
             extra_columns: Callable[[dict, int, dict, dict, list[str]], dict | None] | None = None) -> LoopResult:
    """Score every batch. `forward(batch) -> (pred [B, n, 3, S, S], pred_alpha [B, n, 1, S, S], batch on
    the device)`; `extra_columns(batch, i, row, scores_i, kinds) -> dict` adds a family's columns to a row (as scored
    so far), or returns None to drop the row (counted by the family through `handler`)."""
    from tqdm import tqdm

    rows: list[dict] = []
    heap: list[tuple[float, str, dict]] = []  # the `worst` highest losses: (loss, key, saved batch slice)
    bar = tqdm(unit="sample", desc="eval", disable=not (progress and info.is_main), dynamic_ncols=True)
    for batch in batches:
        batch.pop("skipped", None)
        batch.pop("worker", None)
        pred, alpha, b = forward(batch)
        pred = pred.float().clamp(0, 1)  # [B, n, 3, S, S]
        tg = b["tg_rgb"]
        B, n = tg.shape[:2]
        flat = lambda x: x.flatten(0, 1)  # noqa: E731  [B, n, ...] -> [B*n, ...]
        scores = score_targets(flat(pred), flat(tg), flat(alpha), flat(b["tg_alpha"]), lpips_net)
        scores.update(baseline_scores(flat(tg), flat(b["tg_alpha"]), flat(nearest(b))))
        scores = {k: v.view(B, n).cpu() for k, v in scores.items()}
        for i in range(B):
            key, clip = batch["key"][i], int(batch["clip"][i])
            kinds = [ALL_KINDS[k] for k in batch["kind"][i].tolist()]
            seen = int(batch["seen"][i])
            row = {"uid": sample_uid(key, clip), "clip": clip, "key": key, "shard": int(batch["shard"][i]),
                   **base_row, "seen_in_training": None if seen < 0 else bool(seen)}
            mine = {k: v[i] for k, v in scores.items()}
            row.update(sample_row(mine, kinds))
            if extra_columns is not None:
                extra = extra_columns(batch, i, row, mine, kinds)
                if extra is None:
                    continue
                row.update(extra)
            row["pairs"] = json.dumps({"inputs": batch["in_pairs"][i].tolist(), "targets": batch["tg_pairs"][i].tolist(),
                                       "kinds": kinds})
            rows.append(row)
            if worst > 0 and row.get("loss") is not None:
                saved = {k: (v[i:i + 1].cpu() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
                saved["pred"] = pred[i:i + 1].cpu()
                item = (float(row["loss"]), key, saved)
                if len(heap) < worst:
                    heapq.heappush(heap, item)
                elif item[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, item)
        bar.update(B)
    bar.close()
    return _gather(rows, heap, handler, info, worst, grids_dir)


def _gather(rows: list[dict], heap: list, handler, info: ddp.DistInfo, worst: int, grids_dir: Path | None) -> LoopResult:
    """All ranks' rows and skip counts on every rank; grids of the overall worst samples, each saved by
    the rank that scored it and numbered by its place among all ranks' worst."""
    from training.viz import save_grid

    mine = {"rows": rows, "skipped": dict(handler.counts), "worst": [[loss, key] for loss, key, _ in heap]}
    parts = ddp.gather_json(mine, info)
    all_rows = [r for p in parts for r in p["rows"]]
    all_rows.sort(key=lambda r: (r["shard"], r["key"]))
    skipped: Counter[str] = Counter()
    for p in parts:
        skipped.update(p["skipped"])
    ranked = sorted(((loss, key, r) for r, p in enumerate(parts) for loss, key in p["worst"]),
                    key=lambda x: (-x[0], x[1]))[:worst]
    saved = {key: s for _loss, key, s in heap}
    paths = []
    for place, (_loss, key, owner) in enumerate(ranked):
        gp = Path(grids_dir) / f"{place:02d}_{key}.png" if grids_dir is not None else None
        if gp is None:
            continue
        if owner == info.rank:
            save_grid(gp, saved[key], saved[key]["pred"])
        paths.append(gp)
    ddp.barrier(info)
    if info.world_size > 1:
        log.info("rank %d scored %d of %d samples", info.rank, len(rows), len(all_rows))
    return LoopResult(rows=all_rows, skipped=dict(skipped), worst=paths)
