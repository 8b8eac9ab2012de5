"""`pipeline train` (and `python -m training`): train the 4D Gaussian reconstructor from shards (local, folder or HTTP).

Heavy imports (torch, webdataset, gsplat) happen inside the command body so `--help` stays fast.
The same command runs under torchrun (`torchrun --nproc-per-node 8 -m training ...`).
"""

from __future__ import annotations

import click

PRESETS = ("tiny", "small", "base", "l4gm-tiny", "l4gm-small", "l4gm-base")  # = training.config.PRESETS


@click.command("train")
@click.option("--shards", "shards", required=True, metavar="SPEC",
              help="Shard tars: a dataset folder (committed shards only), a brace pattern "
                   "DIR/shard-{000000..000099}.tar, http(s):// URLs, or an object-store dataset "
                   "s3://bucket/prefix; join several with '::'.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), metavar="RUN",
              help="Run folder; rerunning with the same RUN resumes from its newest checkpoint.")
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True,
              help="tiny: CPU tests; small: one GPU; base: ~300M parameters (GS-LRM/4D-LRM scale). "
                   "l4gm-*: the L4GM family (monocular video + t0 views -> 3D Gaussians per time), same sizes.")
@click.option("--steps", type=int, default=None, help="Global step to train to (default: the preset's).")
@click.option("--batch-size", type=int, default=None, help="Samples per rank per step (default: the preset's).")
@click.option("--lr", type=float, default=None, help="Peak learning rate (default: the preset's).")
@click.option("--num-workers", type=int, default=None, help="Data loader processes per rank.")
@click.option("--weights", "weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Manifest Parquet whose `weight` column makes draws proportional to weight.")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None,
              help="Local LPIPS weights file (see training/losses/lpips.py); absent = no LPIPS term.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--log-every", type=int, default=None, help="Steps between metrics lines.")
@click.option("--grid-every", type=int, default=None, help="Steps between image grids (0 = never).")
@click.option("--ckpt-every", type=int, default=None, help="Steps between checkpoints.")
@click.option("--max-minutes", type=float, default=None,
              help="Stop cleanly with a checkpoint after this many minutes (rerun to resume).")
@click.option("--follow", is_flag=True, default=False,
              help="Keep re-reading the committed shards of --shards while training (a dataset still being "
                   "rendered); waits for the first shard. A resumed run keeps following.")
@click.option("--follow-interval", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Seconds between looks at the dataset with --follow.  [default: 60]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Any other setting, e.g. --set model.depth=12 --set data.n_in=6 (names as in RUN/config.json).")
def command(shards: str, out: str, preset: str, steps: int | None, batch_size: int | None, lr: float | None,
            num_workers: int | None, weights: str | None, lpips_weights: str | None, device: str | None,
            log_every: int | None, grid_every: int | None, ckpt_every: int | None, max_minutes: float | None,
            follow: bool, follow_interval: float | None, overrides: tuple[str, ...]) -> None:
    """Train the 4D Gaussian reconstructor until global step --steps (resumes from RUN)."""
    from training.config import ConfigError, apply_overrides
    from training.config import preset as make_preset

    flags = {"steps": steps, "batch_size": batch_size, "optim.lr": lr, "data.num_workers": num_workers,
             "data.weights": weights, "loss.lpips_weights": lpips_weights, "log_every": log_every,
             "grid_every": grid_every, "ckpt_every": ckpt_every, "max_minutes": max_minutes,
             "data.follow_interval_s": (follow_interval or 60.0) if follow else None}
    if follow_interval is not None and not follow:
        raise click.UsageError("--follow-interval needs --follow")
    sets = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(overrides)
    try:
        cfg = apply_overrides(make_preset(preset), sets)
    except ConfigError as exn:
        raise click.BadParameter(str(exn)) from None

    from contracts.storage import StorageError
    from training.train import TrainingDiverged, train

    try:
        train(cfg, shards, out, device=device)
    except (StorageError, FileNotFoundError, TrainingDiverged) as exn:  # a refused URL, no shards, NaN steps
        raise click.ClickException(str(exn)) from None
    except ConfigError as exn:  # settings that clash with the run being resumed (preset, model family)
        raise click.BadParameter(str(exn)) from None
