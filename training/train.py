"""The trainer: stream batches, reconstruct 4D Gaussians, render the targets, optimise; resumable.

`train(cfg, shards, out)` runs until global step `cfg.steps`. A second call with the same `out`
resumes from the newest checkpoint in RUN/checkpoints (model, optimiser, scheduler, step, data epoch,
RNG, config) and continues the data stream from a fresh epoch seed, so no batch sequence repeats.
Outputs in RUN: config.json, metrics.jsonl (one JSON object per logged step: loss terms, PSNR and
grad norm averaged over the steps since the previous line; lr, samples/s, skipped samples), tb/
(TensorBoard), grids/step-*.png, checkpoints/step-*.pt.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import checkpoint as ckpt
from training.data import stream as data_mod
from training.data import weights as weights_mod
from training.data.follow import ShardFollower
from training import ddp
from training.models import fast
from training.config import ConfigError, OptimConfig, TrainConfig
from training.losses.terms import reconstruction_losses
from training.losses.lpips import load_lpips
from training.models.blocks import count_parameters
from training.device import autocast_for, to_device
from training.checkpoint import require_family
from training.models.registry import get_family
from training.render.frames import resolve_backend
from training.viz import save_grid

log = logging.getLogger(__name__)

# Settings a resumed run may change without a warning: bookkeeping, and the sampling weights, which
# are what a data-engine round changes between two stretches of one run (pipeline mine -> --weights).
RESUMABLE_CHANGES = {"steps", "log_every", "grid_every", "ckpt_every", "keep_checkpoints", "max_minutes",
                     "data.num_workers", "data.weights",
                     "compile", "compile_head", "loss.lpips_bf16",  # speed settings (training/models/fast.py): same
                     "ddp.bucket_cap_mb", "ddp.gradient_as_bucket_view", "ddp.static_graph",  # model, same loss
                     "ddp.comm_hook", "ddp.split_compiled"}


def lr_factor(step: int, cfg: OptimConfig, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at `total`; flat afterwards."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (norm gains and biases are left alone)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda")


class TrainingDiverged(RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient (optim.max_nonfinite_run)."""


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """optimizer.step() unless `bad` (a 0-d bool tensor: the gradient norm is not finite). A fused AdamW
    (CUDA) takes the flag as GradScaler's `found_inf` and skips the update on the device, with no host sync;
    any other optimizer reads the flag on the host. A skipped step leaves weights and moments untouched."""
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = bad.float()
        optimizer.grad_scale = None
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale
    elif not bool(bad):
        optimizer.step()


INIT_ARCH = ("patch_size", "width", "depth", "heads", "mlp_ratio", "qk_norm", "temporal_attention", "gauss_stride")


def read_init_weights(cfg: TrainConfig) -> tuple[dict, dict | None]:
    """The model weights a new run starts from (--set init_from=CKPT_OR_RUN), same family only, and that
    checkpoint's `trained_on` record (the new run inherits it: DESIGN.md §5)."""
    state, path = ckpt.read_checkpoint(cfg.init_from, flag="--set init_from")
    require_family(state, cfg.model.family, f"--set init_from={path}")
    # the architecture must match: attention weights have the same shapes for any head count, so another
    # `heads` would load without an error and start from weights that mean something else
    src = TrainConfig.from_dict(state["config"]).model
    keys = [k for k in INIT_ARCH if getattr(src, k) != getattr(cfg.model, k)]
    if keys:
        theirs = [f"model.{k}={getattr(src, k)}" for k in keys]
        raise ConfigError(f"--set init_from={path}: its model has {', '.join(theirs)}, this run "
                          f"{', '.join(f'model.{k}={getattr(cfg.model, k)}' for k in keys)}; add "
                          f"{' '.join('--set ' + x for x in theirs)} to start from it")
    log.info("model weights from %s (step %s)", path, state.get("step"))
    return state["model"], state.get("trained_on")


def resolve_resume(cfg: TrainConfig, saved: dict) -> TrainConfig:
    """The saved config with this invocation's harmless changes (e.g. a higher --steps) applied."""
    old = TrainConfig.from_dict(saved)
    if old.model.family != cfg.model.family:
        raise ConfigError(f"--preset {cfg.preset} (model family {cfg.model.family!r}): this run holds "
                         f"{old.model.family!r} checkpoints; use a new --out for another family")
    if old.preset != cfg.preset:
        raise ConfigError(f"--preset {cfg.preset}: this run was started with preset {old.preset!r}; "
                         f"use a new --out for a different preset")
    new_d, old_d = _flat(cfg.to_dict()), _flat(old.to_dict())
    if new_d["optim.schedule_steps"] == 0:  # "use --steps of the first invocation": the saved horizon
        new_d["optim.schedule_steps"] = old_d["optim.schedule_steps"]
    ignored = sorted(k for k in new_d if new_d[k] != old_d.get(k) and k not in RESUMABLE_CHANGES)
    if ignored:
        log.warning("resuming with the run's saved settings; ignoring changes to %s", ", ".join(ignored))
    merged = old.to_dict()
    for k in RESUMABLE_CHANGES:
        _set_flat(merged, k, new_d[k])
    return TrainConfig.from_dict(merged)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _set_flat(d: dict, key: str, value: Any) -> None:
    *path, leaf = key.split(".")
    for p in path:
        d = d[p]
    d[leaf] = value


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after `step` (a run killed after its last checkpoint): no duplicates on resume."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


class Trainer:
    def __init__(self, cfg: TrainConfig, shards: str, out: str | os.PathLike, device: str | None = None):
        self.info = ddp.init(device)
        self.out = Path(out)
        self.shards = shards
        info = self.info
        if info.device.type == "cpu" and info.world_size > 1:  # share the cores between local ranks
            local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        resumed = ckpt.load_latest(self.out, map_location="cpu")
        self.start_step, self.epoch = 0, 0
        self.trained_before = resumed[1].get("trained_on") if resumed is not None else None  # earlier invocations
        if resumed is not None:
            path, state = resumed
            cfg = resolve_resume(cfg, state["config"])
            self.start_step, self.epoch = int(state["step"]), int(state["epoch"]) + 1
            log.info("resuming %s from %s (step %d)", self.out, path.name, self.start_step)
        if cfg.optim.schedule_steps == 0:
            cfg.optim.schedule_steps = cfg.steps  # fixed at the first invocation, kept on resume
        self.cfg = cfg
        self.family = get_family(cfg.model.family)  # the model family's spec: model, forward pass, samples
        self.follower = ShardFollower(shards, cfg.data.follow_interval_s, info)  # --follow: re-reads the SPEC
        self.urls = self.follower.initial()  # before RUN is written: a bad SPEC leaves nothing behind
        init = read_init_weights(cfg) if resumed is None and cfg.init_from else None  # a bad one neither
        if init is not None:
            init, self.trained_before = init  # what the weights were trained on stays seen
        self._identities: dict[str, dict | None] = {}  # shard url -> content identity (stats.json), read once
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.out / ".config.json.tmp"
            tmp.write_text(cfg.to_json())
            os.replace(tmp, self.out / "config.json")
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = self.family.build_model(cfg.model).to(info.device)
        if init is not None:
            model.load_state_dict(init)
        self.model_single = model
        self.optimizer = build_optimizer(model, cfg.optim, info.device)
        total = cfg.optim.schedule_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg.optim, total))
        if resumed is not None:
            state = resumed[1]
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"]["torch"])
        # CUDA: cuDNN attention, compiled blocks, TF32 for float32 matrix products (LPIPS, slicing)
        self.speed = fast.setup_model(model, info.device, cfg.compile, compile_head=cfg.compile_head, fp8=cfg.fp8,
                                      fp8_recipe=cfg.fp8_recipe)
        self.model = ddp.wrap(model, info, cfg.ddp)
        self.backend = resolve_backend(cfg.render, info.device)
        self.lpips = (load_lpips(cfg.loss.lpips_weights, info.device, bf16=cfg.loss.lpips_bf16,
                                 size=cfg.loss.lpips_size)
                      if cfg.loss.lpips > 0 else None)
        self.weights = weights_mod.load_weights(cfg.data.weights) if cfg.data.weights else None
        self.autocast = autocast_for(cfg, info.device)
        self.skipped_total: Counter[str] = Counter()
        self.nonfinite_total = 0  # steps skipped for a non-finite loss or gradient
        self.nonfinite_run: Any = 0.0  # how many of the latest steps in a row were (a device tensor)
        self.writer = None
        if info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            _truncate_metrics(self.out / "metrics.jsonl", self.start_step)
            self.writer = SummaryWriter(str(self.out / "tb"), purge_step=self.start_step + 1 if self.start_step else None)
            log.info("model: %.1fM parameters, %s renderer, %d shard(s), world size %d, device %s",
                     count_parameters(model) / 1e6, self.backend, len(self.urls), info.world_size, info.device)

    # -- loop ------------------------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        step = self.start_step
        last: dict[str, float] = {}
        if step >= cfg.steps:
            log.info("%s is already at step %d >= --steps %d; nothing to do", self.out, step, cfg.steps)
            return last
        self.model.train()
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
        t_log, n_since, data_time = time.perf_counter(), 0, 0.0
        window: dict[str, Any] = {}  # metric sums since the last log line (device tensors: no sync per step)
        n_logged: dict[str, Any] = Counter()  # finite steps that reported each metric (LPIPS: every k-th only)
        window_bad: Any = 0.0  # steps since the last log line whose update was skipped (non-finite)
        while step < cfg.steps:
            handler = data_mod.SkipAndCount()
            loader = data_mod.make_loader(self.urls, cfg.data, batch_size=cfg.batch_size, seed=cfg.seed,
                                          rank=info.rank, world_size=info.world_size, epoch=self.epoch,
                                          weights=self.weights, handler=handler,
                                          pin_memory=info.device.type == "cuda",
                                          stages=self.family.sample_stages())
            epoch_skips: dict[int, dict] = {}
            t_wait = time.perf_counter()
            for batch in loader:
                data_time += time.perf_counter() - t_wait
                epoch_skips[batch.pop("worker")] = batch.pop("skipped")
                metrics, pred_rgb = self.train_step(to_device(batch, info.device))
                bad = metrics.pop("nonfinite")
                self.nonfinite_run = (self.nonfinite_run + bad) * bad  # device tensors: no sync per step
                window_bad = window_bad + bad
                for k, v in metrics.items():  # skipped steps stay out of the means
                    window[k] = window.get(k, 0.0) + torch.where(bad > 0, torch.zeros_like(v), v)
                    n_logged[k] += 1 - bad
                step += 1
                n_since += 1
                out_of_time = deadline is not None and ddp.any_true(time.monotonic() > deadline, info)
                last_step = step == cfg.steps or out_of_time
                if step % cfg.log_every == 0 or last_step:
                    elapsed = time.perf_counter() - t_log
                    skipped = self.skipped_total + sum((Counter(c) for c in epoch_skips.values()), Counter())
                    metrics = ddp.mean({k: _window_mean(v, n_logged[k]) for k, v in window.items()}, info)
                    n_bad = int(round(float(window_bad)))
                    window, n_logged, window_bad = {}, Counter(), 0.0
                    self.nonfinite_total += n_bad
                    if n_bad:
                        log.warning("step %d: %d of the last %d steps had a non-finite loss or gradient; their "
                                    "updates were skipped (%d in this run)", step, n_bad, n_since,
                                    self.nonfinite_total)
                    run = int(round(float(self.nonfinite_run)))
                    metrics.update(step=step, epoch=self.epoch, lr=self.scheduler.get_last_lr()[0],
                                   nonfinite_steps=n_bad,
                                   samples_per_s=n_since * cfg.batch_size * info.world_size / elapsed,
                                   step_time_s=elapsed / n_since, data_wait_s=data_time / n_since,
                                   skipped=ddp.total(sum(skipped.values()), info))
                    if info.world_size > 1:  # how unevenly the ranks wait for data (DDP syncs the rest)
                        waits = [w for w, in ddp.gather_json([data_time / n_since], info)]
                        metrics.update(data_wait_min_s=min(waits), data_wait_max_s=max(waits))
                    last = metrics
                    self.log_metrics(metrics, dict(skipped))
                    if run >= cfg.optim.max_nonfinite_run:
                        raise TrainingDiverged(
                            f"{self.out}: the last {run} steps (to step {step}) all had a non-finite loss or "
                            f"gradient (limit: --set optim.max_nonfinite_run={cfg.optim.max_nonfinite_run}); "
                            "the weights are those before them, the last checkpoint is unchanged")
                    t_log, n_since, data_time = time.perf_counter(), 0, 0.0
                if info.is_main and cfg.grid_every and (step % cfg.grid_every == 0 or last_step):
                    save_grid(self.out / "grids" / f"step-{step:08d}.png", batch, pred_rgb.detach().cpu())
                if step % cfg.ckpt_every == 0 or last_step:
                    self.save(step)
                if out_of_time:
                    log.info("--max-minutes %.1f reached at step %d; stopping (a rerun resumes)", cfg.max_minutes, step)
                    return last
                if step >= cfg.steps:
                    break
                new_urls = self.follower.poll(self.urls)  # --follow: shards committed since -> a new epoch
                if new_urls is not None:
                    self.urls = new_urls
                    break
                t_wait = time.perf_counter()
            for counts in epoch_skips.values():
                self.skipped_total.update(counts)
            self.epoch += 1
        return last

    def train_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimiser step. Metrics come back as detached 0-d tensors: reading them waits for the GPU,
        so the loop sums them on the device and reads them once per log line."""
        cfg = self.cfg
        _g, rgb, alpha = self.family.forward_render(self.model, batch, cfg, self.backend, self.autocast)
        lp = self.lpips if self.scheduler.last_epoch % cfg.loss.lpips_every == 0 else None  # last_epoch: steps done
        losses = reconstruction_losses(rgb, alpha, batch["tg_rgb"], batch["tg_alpha"], cfg.loss, lp,
                                       lpips_scale=cfg.loss.lpips_every)  # k x on every k-th step
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                               cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
        bad = ~torch.isfinite(gnorm)  # a NaN or inf loss gives a non-finite norm too
        step_unless_nonfinite(self.optimizer, bad)
        self.scheduler.step()
        out = {k: v.detach() for k, v in losses.items()}
        out["grad_norm"] = gnorm.detach()
        out["nonfinite"] = bad.detach().float()
        return out, rgb

    # -- outputs -----------------------------------------------------------------------------------------

    def log_metrics(self, m: dict[str, float], skipped: dict[str, int]) -> None:
        if not self.info.is_main:
            return
        line = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}
        if skipped:
            line["skipped_by_reason"] = skipped
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        for k, v in m.items():
            if k != "step":
                self.writer.add_scalar(f"train/{k}", v, m["step"])
        self.writer.flush()
        log.info("step %d loss %.4f psnr %.2f lr %.2e %.1f samples/s", m["step"], m["loss"], m["psnr"], m["lr"],
                 m["samples_per_s"])

    def save(self, step: int) -> None:
        if self.info.is_main:
            state = {
                "model": self.model_single.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": step, "epoch": self.epoch,
                "config": self.cfg.to_dict(), "world_size": self.info.world_size,
                "rng": {"torch": torch.get_rng_state()},
                "family": getattr(self.cfg.model, "family", "lrm4d"),
                "trained_on": ckpt.trained_on(self.trained_before, self.urls, self.cfg.data.weights,
                                              self.shard_identities()),
            }
            path = ckpt.save(self.out, step, state, keep=self.cfg.keep_checkpoints)
            log.info("checkpoint %s", path)
        ddp.barrier(self.info)

    def shard_identities(self) -> dict[str, dict | None]:
        """Content identity of every shard this invocation reads (contracts/identity.py), each read once."""
        from contracts.identity import shard_identity

        for u in self.urls:
            if u not in self._identities:
                self._identities[u] = shard_identity(u)
        return {u: self._identities[u] for u in self.urls}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        ddp.close(*([self.model] if self.model is not self.model_single else []))


def _window_mean(total: Any, n: Any) -> float:
    """A log window's mean of one metric over its finite steps (NaN when there were none)."""
    n = float(n)
    return float(total) / n if n > 0 else float("nan")


def train(cfg: TrainConfig, shards: str, out: str | os.PathLike, device: str | None = None) -> dict[str, float]:
    """Parse, build, run, close: the whole run (resuming when RUN has checkpoints)."""
    trainer = Trainer(cfg, shards, out, device)
    try:
        return trainer.run()
    finally:
        trainer.close()
