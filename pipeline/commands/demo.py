"""`pipeline demo --out DIR`: the whole loop on the embedded default (procedural assets), no network, no GPU."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Demo folder; rerunning it resumes.")
@click.option("--assets", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of your own .glb/.gltf files, added to the procedural ones.")
@click.option("--smoke", is_flag=True, help="The smallest loop (CI size): ~2 minutes instead of ~10.")
@click.option("--count", type=click.IntRange(1), default=None, help="Procedural assets (default 20; smoke 5).")
@click.option("--heldout", type=click.IntRange(0), default=None,
              help="Of them, assets kept out of training and scored by every evaluation (default 4; smoke 1).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps before mining (default 600).")
@click.option("--more-steps", type=click.IntRange(0), default=None, help="Training steps after mining (default 300).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Ray render actors (default 2).")
@click.option("--seed", type=int, default=None, help="Procedural seed (default 0).")
def command(out: str, assets: str | None, smoke: bool, count: int | None, heldout: int | None, steps: int | None,
            more_steps: int | None, workers: int | None, seed: int | None) -> None:
    """Run curate -> render (Ray) -> train -> eval -> mine -> re-render -> train on -> eval, and write
    DIR/report.html (loss curve, per-sample PSNR before/after, hardest samples, counts per stage)."""
    from pipeline.demo import Demo, DemoConfig, DemoError, estimate_minutes, smoke as smoke_cfg

    kw = {k: v for k, v in dict(assets=assets, count=count, heldout=heldout, steps=steps, more_steps=more_steps, workers=workers,
                                seed=seed).items() if v is not None}
    try:
        cfg = smoke_cfg(out, **kw) if smoke else DemoConfig(out=out, **kw)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"pipeline demo ({cfg.size}): the whole data-engine loop on {cfg.count} procedural animated assets"
        f"{' plus the files in ' + cfg.assets if cfg.assets else ''}, on this machine's CPU, no network:\n"
        f"  1. generate and curate the assets into a manifest ({cfg.shard_size} clips per shard); {cfg.heldout} of the"
        f" procedural assets are held out (own shards, never trained on)\n"
        f"  2. render every clip ({cfg.frames} times x {cfg.views} views, {cfg.resolution} px) on a local Ray instance"
        f" with {cfg.workers} Blender workers\n"
        f"  3. train the tiny 4D Gaussian reconstructor for {cfg.steps} steps (CPU)\n"
        f"  4. evaluate every sample (training and held-out clips) with a fixed protocol, 5. mine the hardest {cfg.fraction:.0%} (x{cfg.boost:g} weight,"
        f" the hardest {cfg.rerender_fraction:.0%} re-rendered denser)\n"
        f"  6. render the re-render requests, 7. train {cfg.more_steps} more steps with the mined weights,"
        f" 8. evaluate again on the same pairs\n"
        f"  9. control: the same {cfg.more_steps} extra steps from the round-0 checkpoint without mining, evaluated alike\n"
        f"  -> {out}/report.html.  Expect about {estimate_minutes(cfg):.0f} minutes on 2 CPU cores."
    )
    try:
        Demo(cfg).run()
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
