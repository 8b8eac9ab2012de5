"""Typed configuration of a training run, and the three presets (tiny, small, base).

A run is described by one `TrainConfig`; presets are functions returning one. The resolved config is
saved as RUN/config.json and inside every checkpoint, so a resumed run continues with exactly the
settings it started with. Validation happens in `__post_init__` and names the flag to change.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

BACKGROUNDS = ("white", "black", "random")
RENDER_BACKENDS = ("auto", "gsplat", "torch")
FAMILIES = ("lrm4d", "l4gm")  # model families (DESIGN.md §5); l4gm's pieces live in training/l4gm_*.py


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class DataConfig:
    image_size: int = 256           # model resolution (square); renders are resized to it, K scaled to match
    n_in: int = 4                   # input (view, time) pairs per sample: the sparse 4-view setting of 4D-LRM
    n_target: int = 8               # supervised (view, time) pairs per sample; more targets = more signal per encode
    novel_time_fraction: float = 0.5  # share of targets at times no input shows, so interpolation in time is trained
    background: str = "white"       # what transparent pixels become; LRMs train on white, "random" teaches alpha harder
    shuffle_buffer: int = 64        # samples held (undecoded, only chosen members) for shuffling; bounded memory
    num_workers: int = 4            # DataLoader processes per rank; each decodes PNGs independently
    batches_per_epoch: int = 500    # per rank, fixed: resampled shards never run dry, so DDP ranks never wait
    load_depth: bool = False        # also decode 16-bit target depth (for depth metrics); off saves decode time
    weights: str | None = None      # manifest Parquet whose `weight` column sets draw probabilities (None = uniform)
    ranged_reads: bool = True       # shards with a member index: fetch only the picked members (~25x fewer bytes)
    follow_interval_s: float = 0.0  # > 0 (--follow): re-read the committed shards this often and train on new ones
    # l4gm family only (n_in and novel_time_fraction are lrm4d's; n_target is per time of the window there):
    window: int = 8                 # T consecutive rendered times per sample (L4GM trains on 8)
    n_t0_views: int = 3             # extra input views at the window's first time (4 views at t0 in all)
    interp: bool = False            # interpolation model: the video's middle frames are blends of the window's ends

    def __post_init__(self) -> None:
        _check(self.image_size >= 8, f"--set data.image_size={self.image_size}: must be >= 8")
        _check(self.n_in >= 1, f"--set data.n_in={self.n_in}: need at least one input view")
        _check(self.n_target >= 1, f"--set data.n_target={self.n_target}: need at least one target view")
        _check(0.0 <= self.novel_time_fraction <= 1.0,
               f"--set data.novel_time_fraction={self.novel_time_fraction}: must be in [0, 1]")
        _check(self.background in BACKGROUNDS, f"--set data.background={self.background!r}: one of {BACKGROUNDS}")
        _check(self.shuffle_buffer >= 1, f"--set data.shuffle_buffer={self.shuffle_buffer}: must be >= 1")
        _check(self.num_workers >= 0, f"--num-workers {self.num_workers}: must be >= 0")
        _check(self.batches_per_epoch >= 1, f"--set data.batches_per_epoch={self.batches_per_epoch}: must be >= 1")
        _check(self.follow_interval_s >= 0, f"--follow-interval {self.follow_interval_s}: must be >= 0 seconds")
        _check(self.window >= 1, f"--set data.window={self.window}: must be >= 1")
        _check(self.n_t0_views >= 0, f"--set data.n_t0_views={self.n_t0_views}: must be >= 0")
        _check(not self.interp or self.window >= 3,
               f"--set data.interp=true needs --set data.window >= 3 (two ends and a middle), got {self.window}")


@dataclass
class ModelConfig:
    family: str = "lrm4d"           # lrm4d: posed timed views -> 4D Gaussians; l4gm: video + t0 views -> 3D Gaussians per time
    patch_size: int = 8             # 8x8 patches at 256 px = 1024 tokens per view, GS-LRM/4D-LRM's choice
    width: int = 1024               # transformer width (base: ~300M parameters with 24 layers)
    depth: int = 24                 # transformer blocks
    heads: int = 16                 # attention heads (the presets use head dim 128: faster cuDNN attention on Hopper)
    mlp_ratio: float = 4.0          # standard ViT MLP expansion
    qk_norm: bool = True            # RMS-normalised queries/keys keep attention logits bounded in bf16 at scale
    dist_span: float = 1.0          # Gaussian centres lie within |camera| +- dist_span along their pixel ray:
                                    # normalised objects fit in a unit cube, so 1.0 covers them from any camera
    time_span: float = 1.0          # time centre = input time + time_span * tanh(.): can reach any time in [0, 1]
    scale_log_range: float = 4.0    # spatial scale = pixel footprint * exp(+-4): from 1/55 to 55 pixels wide
    time_scale_init: float = 0.25   # initial temporal std (in clip-time units): a Gaussian first lives ~half a clip
    opacity_init: float = 0.1       # initial opacity: low, so early renders are not a wall of overlapping splats
    grad_checkpoint: bool = False   # recompute blocks in backward: ~30% slower, much less activation memory
    # l4gm family only:
    temporal_attention: bool = True  # a temporal block (one view index over the window) after every multi-view block
    gauss_stride: int = 1           # one Gaussian per gauss_stride^2 input pixels (2 at 256 px = L4GM's 128^2 per view)

    def __post_init__(self) -> None:
        _check(self.family in FAMILIES, f"--set model.family={self.family!r}: one of {FAMILIES}")
        _check(self.patch_size >= 1, f"--set model.patch_size={self.patch_size}: must be >= 1")
        _check(self.gauss_stride >= 1 and self.patch_size % self.gauss_stride == 0,
               f"--set model.gauss_stride={self.gauss_stride}: must divide --set model.patch_size={self.patch_size}")
        _check(self.width % self.heads == 0,
               f"--set model.width={self.width} must be divisible by --set model.heads={self.heads}")
        _check((self.width // self.heads) % 2 == 0, "--set model.width/heads: head dim must be even")
        _check(self.depth >= 1, f"--set model.depth={self.depth}: must be >= 1")
        _check(self.dist_span > 0, f"--set model.dist_span={self.dist_span}: must be > 0")
        _check(0 < self.opacity_init < 1, f"--set model.opacity_init={self.opacity_init}: must be in (0, 1)")
        _check(self.time_scale_init > 0, f"--set model.time_scale_init={self.time_scale_init}: must be > 0")


@dataclass
class RenderConfig:
    backend: str = "auto"           # auto = gsplat on CUDA, the pure-torch twin on CPU
    near_plane: float = 0.01        # gsplat's default; normalised scenes sit ~1-3 units from the camera
    tile_size: int = 16             # gsplat's tile; the torch twin uses the same tiles to bound memory
    max_elems: int = 1 << 22        # torch twin: (pixel, Gaussian) pairs evaluated at once, ~16 MB per float tensor
    packed: bool = False            # gsplat packed mode: less memory, slower; unpacked suits dense per-pixel splats
    checkpoint: bool = False        # torch twin: recompute pieces in backward to bound autograd memory (slower)

    def __post_init__(self) -> None:
        _check(self.backend in RENDER_BACKENDS, f"--set render.backend={self.backend!r}: one of {RENDER_BACKENDS}")
        _check(self.tile_size >= 4, f"--set render.tile_size={self.tile_size}: must be >= 4")
        _check(self.max_elems >= 1024, f"--set render.max_elems={self.max_elems}: must be >= 1024")


@dataclass
class LossConfig:
    mse: float = 1.0                # colour reconstruction, the main term
    mask: float = 0.5               # MSE between rendered and true alpha: pushes Gaussians off the background
    ssim: float = 0.0               # 1 - SSIM; structure term, off by default (LPIPS covers perception)
    lpips: float = 0.5              # perceptual term as in GS-LRM/4D-LRM; used only when the weights file exists
    lpips_weights: str | None = None  # local file (see training/losses/lpips.py); never downloaded; None = no LPIPS
    lpips_bf16: bool = True         # the LPIPS VGG in bf16, channels-last on CUDA (float32 distances); False = TF32
    lpips_size: int = 0             # > 0: LPIPS sees the images area-downsampled to this many px (a speed knob;
                                    # a different, coarser loss). 0 = the full image size
    lpips_every: int = 1            # the LPIPS term on every k-th step only, weighted k x there (a speed knob: the
                                    # same LPIPS gradient in expectation over steps, with more variance)

    def __post_init__(self) -> None:
        for name in ("mse", "mask", "ssim", "lpips"):
            _check(getattr(self, name) >= 0, f"--set loss.{name}={getattr(self, name)}: must be >= 0")
        _check(self.lpips_size == 0 or self.lpips_size >= 16,
               f"--set loss.lpips_size={self.lpips_size}: 0 (full size) or >= 16 (VGG's deepest tap needs 16 px)")
        _check(self.lpips_every >= 1, f"--set loss.lpips_every={self.lpips_every}: must be >= 1")


@dataclass
class OptimConfig:
    lr: float = 4e-4                # peak AdamW learning rate (GS-LRM uses 4e-4 at batch 512)
    betas: tuple[float, float] = (0.9, 0.95)  # beta2 0.95: the usual choice for transformers trained in bf16
    weight_decay: float = 0.05      # applied to matrices only, not norms/biases
    warmup_steps: int = 2000        # linear warm-up; large transformers diverge without it
    schedule_steps: int = 0         # cosine horizon; 0 = the --steps of the first invocation (kept on resume)
    min_lr_ratio: float = 0.1       # cosine decays to lr * 0.1, not zero, so extended runs still learn
    grad_clip: float = 1.0          # global gradient-norm clip; guards against rare exploding renders
    max_nonfinite_run: int = 100    # a step whose loss or gradient is not finite is skipped (no update); this
                                    # many such steps in a row stop the run with an error

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON round trips give lists
        _check(self.lr > 0, f"--lr {self.lr}: must be > 0")
        _check(self.warmup_steps >= 0, f"--set optim.warmup_steps={self.warmup_steps}: must be >= 0")
        _check(self.schedule_steps >= 0, f"--set optim.schedule_steps={self.schedule_steps}: must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, f"--set optim.min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")
        _check(self.grad_clip >= 0, f"--set optim.grad_clip={self.grad_clip}: must be >= 0 (0 = off)")
        _check(self.max_nonfinite_run >= 1,
               f"--set optim.max_nonfinite_run={self.max_nonfinite_run}: must be >= 1")


DDP_COMM_HOOKS = ("auto", "none", "bf16")


@dataclass
class DDPConfig:
    """How DistributedDataParallel reduces gradients (several ranks only; training/ddp.py). Speed settings:
    the same model and loss up to float rounding (bf16: gradients are averaged in bf16). The defaults are the
    combination measured fastest for `base` on 2 x H200 (1.92x one GPU against 1.86x with PyTorch's own
    settings: BENCHMARKS.md "Several GPUs")."""
    bucket_cap_mb: int = 100        # gradient bucket size: larger = fewer, bigger all-reduces (PyTorch's default 25)
    gradient_as_bucket_view: bool = True  # .grad tensors are views into the buckets: no copy, less memory
    static_graph: bool = False      # the same parameters get gradients every step: DDP may skip its per-step search
    comm_hook: str = "auto"         # none = fp32 all-reduce; bf16 = gradients cast to bf16 for the all-reduce
                                    # (half the bytes; torch's bf16_compress_hook; NCCL only); auto = bf16 on
                                    # CUDA ranks, none on CPU ranks (gloo)
    split_compiled: bool = False    # compiled blocks are split into graphs at bucket boundaries (PyTorch's
                                    # optimize_ddp, its default); false keeps each compiled block one graph

    def __post_init__(self) -> None:
        _check(self.bucket_cap_mb >= 1, f"--set ddp.bucket_cap_mb={self.bucket_cap_mb}: must be >= 1")
        _check(self.comm_hook in DDP_COMM_HOOKS, f"--set ddp.comm_hook={self.comm_hook!r}: one of {DDP_COMM_HOOKS}")


FP8_RECIPES = ("rowwise", "tensorwise")  # torchao.float8 recipe names the fp8 setting accepts


@dataclass
class TrainConfig:
    preset: str = "base"            # which preset function built this (informational)
    steps: int = 100_000            # global optimiser steps to reach; a rerun resumes up to this
    batch_size: int = 8             # samples per rank per step
    seed: int = 0                   # seeds model init and the data stream (with rank, worker and epoch)
    bf16: bool = True               # bf16 autocast for the transformer on CUDA (ignored on CPU)
    compile: bool = True            # CUDA: torch.compile each transformer block and the slicing (training/models/fast.py)
    compile_head: bool = False      # CUDA, with compile: also the head's Gaussian activations (lrm4d; a speed knob)
    fp8: bool = False               # CUDA sm_89+: the blocks' linear layers in float8 (torchao); changes numerics
    fp8_recipe: str = "rowwise"     # with fp8: torchao's scaling recipe, rowwise or tensorwise (fewer, cheaper casts)
    log_every: int = 20             # steps between metrics.jsonl / TensorBoard lines
    grid_every: int = 1000          # steps between image-grid PNGs (0 = never)
    ckpt_every: int = 1000          # steps between checkpoints (a final one is always written)
    keep_checkpoints: int = 3       # older checkpoints are deleted after a new one is complete
    max_minutes: float = 0.0        # stop cleanly (with a checkpoint) after this wall time; 0 = no limit.
                                    # For leases and queues with time limits: the rerun resumes
    init_from: str | None = None    # checkpoint (file or run folder) whose model weights start a new run, e.g. the
                                    # l4gm interpolation fine-tune; must be of the same model family
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ddp: DDPConfig = field(default_factory=DDPConfig)

    def __post_init__(self) -> None:
        _check(self.steps >= 1, f"--steps {self.steps}: must be >= 1")
        _check(self.batch_size >= 1, f"--batch-size {self.batch_size}: must be >= 1")
        _check(self.log_every >= 1, f"--log-every {self.log_every}: must be >= 1")
        _check(self.ckpt_every >= 1, f"--ckpt-every {self.ckpt_every}: must be >= 1")
        _check(self.grid_every >= 0, f"--grid-every {self.grid_every}: must be >= 0")
        _check(self.keep_checkpoints >= 1, f"--set keep_checkpoints={self.keep_checkpoints}: must be >= 1")
        _check(self.fp8_recipe in FP8_RECIPES, f"--set fp8_recipe={self.fp8_recipe!r}: one of {', '.join(FP8_RECIPES)}")
        _check(self.max_minutes >= 0, f"--max-minutes {self.max_minutes}: must be >= 0 (0 = no limit)")
        _check(self.data.image_size % self.model.patch_size == 0,
               f"--set data.image_size={self.data.image_size} must be a multiple of "
               f"--set model.patch_size={self.model.patch_size}")

    # -- serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, d)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(unknown)} for {cls.__name__}")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        t = hints[f.name]
        if dataclasses.is_dataclass(t) and isinstance(v, dict):
            v = _from_dict(t, v)
        kwargs[f.name] = v
    return cls(**kwargs)


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `section.field=value` strings (from `--set`), coercing to the field's type; re-validates."""
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.depth=12")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        target_cls: type = TrainConfig
        node = d
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise ConfigError(f"--set {item!r}: no config section {p!r}")
            target_cls = typing.get_type_hints(target_cls)[p]
            node = node[p]
        leaf = parts[-1]
        hints = typing.get_type_hints(target_cls)
        if leaf not in hints or isinstance(node.get(leaf), dict):
            raise ConfigError(f"--set {item!r}: no setting {key!r}; see RUN/config.json for the names")
        node[leaf] = _coerce(raw, hints[leaf], item)
    return TrainConfig.from_dict(d)


def _coerce(raw: str, t: Any, item: str) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if raw.lower() in ("none", "null", ""):
            return None
        t = next(a for a in args if a is not type(None))
        origin = typing.get_origin(t)
    try:
        if t is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean")
        if t is int:
            return int(raw)
        if t is float:
            return float(raw)
        if t is str:
            return raw
        if origin is tuple:
            return tuple(float(x) for x in raw.split(","))
    except ValueError as exc:
        raise ConfigError(f"--set {item!r}: {exc}") from None
    raise ConfigError(f"--set {item!r}: cannot set a value of type {t}")


# -- presets ---------------------------------------------------------------------------------------


def tiny() -> TrainConfig:
    """Trains on a CPU in tests: 32 px, 2 inputs, a 3-block transformer of width 96."""
    return TrainConfig(
        preset="tiny", steps=200, batch_size=2, bf16=False, log_every=10, grid_every=100, ckpt_every=100,
        data=DataConfig(image_size=32, n_in=2, n_target=3, shuffle_buffer=8, num_workers=0, batches_per_epoch=50),
        model=ModelConfig(patch_size=4, width=96, depth=3, heads=4),
        render=RenderConfig(max_elems=1 << 20),
        loss=LossConfig(lpips=0.0),
        optim=OptimConfig(lr=1e-3, warmup_steps=10, weight_decay=0.0),
    )


def small() -> TrainConfig:
    """One GPU, fast experiments: 128 px, 4 inputs, 12 blocks of width 512 (~39M parameters). Batch 64:
    the fastest per sample on an H200 (24 GiB). 4 heads of dim 128 and LPIPS on every 4th step (weighted 4x;
    22.9% MFU against 20.6% for every 2nd step on an H100, held-out psnr_obj -0.09 dB at 500 equal steps, 2
    seeds, inside the seed spread of 0.29 dB: BENCHMARKS.md "Speed, third round"); the Gaussian activations
    compiled too (same function, 5% faster). `--set loss.lpips_every=2` gives the former setting; runs made
    before keep their recorded settings."""
    return TrainConfig(
        preset="small", steps=20_000, batch_size=64, log_every=20, grid_every=500, ckpt_every=1000,
        data=DataConfig(image_size=128, n_in=4, n_target=4, num_workers=6, batches_per_epoch=500),
        model=ModelConfig(patch_size=8, width=512, depth=12, heads=4),
        loss=LossConfig(lpips_every=4), compile_head=True,
        optim=OptimConfig(lr=4e-4, warmup_steps=500),
    )


def base() -> TrainConfig:
    """The GS-LRM/4D-LRM scale: 256 px, patch 8, 24 blocks of width 1024 (~300M parameters). Batch 8 without
    activation checkpointing: 41 GiB, fits an 80 GiB GPU (batch 12: 59 GiB, 2% faster; with
    --set model.grad_checkpoint=true batch 8 needs ~19 GiB at ~18% lower speed). 8 heads of dim 128 (GS-LRM
    splits 1024 into 16 x 64: --set model.heads=16) and LPIPS on every 2nd step, weighted 2x: 41.5-42.1% MFU on
    an H200 against 35.2% for 16 heads and LPIPS every step, learning as well in equal-step runs; the Gaussian
    activations compiled too (same function). BENCHMARKS.md "Trainer speed"; runs made before keep their
    recorded settings."""
    return TrainConfig(
        preset="base", steps=100_000, batch_size=8, log_every=20, grid_every=1000, ckpt_every=1000,
        data=DataConfig(image_size=256, n_in=4, n_target=8, num_workers=8, batches_per_epoch=1000),
        model=ModelConfig(patch_size=8, width=1024, depth=24, heads=8),
        loss=LossConfig(lpips_every=2), compile_head=True,
        optim=OptimConfig(lr=4e-4, warmup_steps=2000),
    )


def l4gm_tiny() -> TrainConfig:
    """The L4GM family on a CPU in tests: 32 px, 4-frame windows, video + 2 t0 views, 2 block pairs of width 64."""
    cfg = tiny()
    cfg.preset = "l4gm-tiny"
    cfg.data = DataConfig(image_size=32, n_target=2, window=4, n_t0_views=2, shuffle_buffer=8, num_workers=0,
                          batches_per_epoch=50)
    cfg.model = ModelConfig(family="l4gm", patch_size=4, width=64, depth=2, heads=4, gauss_stride=2)
    return cfg


def l4gm_small() -> TrainConfig:
    """The L4GM family on one GPU: 128 px, 8-frame windows, video + 3 t0 views, 6 block pairs of width 512."""
    return TrainConfig(
        preset="l4gm-small", steps=20_000, batch_size=4, log_every=20, grid_every=500, ckpt_every=1000,
        data=DataConfig(image_size=128, n_target=4, window=8, n_t0_views=3, num_workers=6, batches_per_epoch=500),
        model=ModelConfig(family="l4gm", patch_size=8, width=512, depth=6, heads=8, gauss_stride=1),
        optim=OptimConfig(lr=4e-4, warmup_steps=500),
    )


def l4gm_base() -> TrainConfig:
    """L4GM's setting at 256 px: 8-frame windows, video + 3 t0 views, 4 targets per time, 12 pairs of
    (multi-view, temporal) blocks of width 1024 (~300M parameters, as the 4D-LRM base), 128^2 Gaussians per view.
    8 heads of dim 128: faster than 16 x 64 with cuDNN attention on an H200 (BENCHMARKS.md "The L4GM family");
    checkpoints of the earlier 16-head default keep loading with their recorded config (--set model.heads=16
    to start from one with --set init_from). No activation checkpointing: 270.5 ms a step (44.5% MFU) against
    347.3 ms (34.9%) with it, the same numerics, 34.6 GiB peak at batch 1 on an H100 (BENCHMARKS.md, issue 26);
    on a card with less memory, --set model.grad_checkpoint=true (10.0 GiB)."""
    return TrainConfig(
        preset="l4gm-base", steps=100_000, batch_size=1, log_every=20, grid_every=1000, ckpt_every=1000,
        data=DataConfig(image_size=256, n_target=4, window=8, n_t0_views=3, num_workers=8, batches_per_epoch=1000),
        model=ModelConfig(family="l4gm", patch_size=8, width=1024, depth=12, heads=8, gauss_stride=2),
        optim=OptimConfig(lr=4e-4, warmup_steps=3000),
    )


PRESETS = {"tiny": tiny, "small": small, "base": base,
           "l4gm-tiny": l4gm_tiny, "l4gm-small": l4gm_small, "l4gm-base": l4gm_base}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: one of {sorted(PRESETS)}")
    return PRESETS[name]()
