"""`pipeline render --manifest M --shard N --out DIR [--preset P] [...]`: render one shard, one process.

Parse, build the spec, read the shard's rows, render, report. The pieces are plain functions
(`spec_from_options`, `shard_rows`, `render_one_shard`) so that a Ray layer can schedule the same
work over many shards. Heavy modules (bpy, pandas, pyarrow) are imported inside the functions.
"""

from __future__ import annotations

import logging
from typing import Any

import click

log = logging.getLogger(__name__)

PRESET_NAMES = ("debug", "lrm4d", "l4gm")


def spec_from_options(preset: str, **overrides: Any):
    """RenderSpec of `preset` with the flags that were given (None = not given); ValueError names the flag."""
    from render.presets import get_preset

    return get_preset(preset, **overrides)


def shard_rows(manifest: str, shard: int) -> list[dict[str, Any]]:
    """The manifest rows of `shard` as plain dicts (pandas NA -> None). Raises ClickException when none."""
    from manifests.schema import ManifestError, read_manifest

    try:
        df = read_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    part = df[df["shard"] == shard]
    if part.empty:
        shards = sorted(int(s) for s in df["shard"].unique())
        have = f"{shards[0]}..{shards[-1]} ({len(shards)} shards)" if shards else "none"
        raise click.ClickException(f"{manifest}: no rows for shard {shard}; shards in the manifest: {have}")
    part = part.astype(object).where(part.notna(), None)
    return part.to_dict("records")


def render_one_shard(rows: list[dict[str, Any]], spec: Any, out: str, shard: int, force: bool = False,
                     threads: int | None = None, progress: bool = True):
    """Render and commit one shard in this process, with a progress bar over its samples."""
    from tqdm import tqdm

    from pipeline.layout import is_committed
    from pipeline.shards import render_shard

    if is_committed(out, shard) and not force:
        return render_shard(rows, spec, out, shard, force=False)  # skips, reading the committed stats
    from render.worker import RenderWorker

    counts = {"ok": 0, "failed": 0, "rejected": 0}
    with tqdm(total=len(rows), desc=f"shard {shard}", unit="sample", disable=not progress) as bar, \
            RenderWorker(spec, threads=threads) as worker:
        def on_sample(result: Any) -> None:
            counts[result.status] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
            if result.status != "ok":
                log.info("%s: %s %s: %s", result.key, result.status, result.reason, result.detail)

        return render_shard(rows, spec, out, shard, force=force, worker=worker, on_sample=on_sample)


@click.command("render")
@click.option("--manifest", "manifest", required=True, type=click.Path(dir_okay=False),
              help="Manifest Parquet (pipeline curate).")
@click.option("--shard", "shard", required=True, type=click.IntRange(0, 999_999), help="Shard number to render.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Dataset folder for the shard files.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="lrm4d", show_default=True,
              help="Render preset; the flags below override its fields.")
@click.option("--resolution", type=int, default=None, help="Image side in pixels.")
@click.option("--frames", "num_frames", type=int, default=None, help="Times per clip (T).")
@click.option("--views", "fixed_views", type=int, default=None, help="Fixed orbit views.")
@click.option("--random-views", "random_views", type=int, default=None, help="Random views drawn at every time.")
@click.option("--samples", type=int, default=None, help="Samples per pixel.")
@click.option("--engine", type=click.Choice(["cycles", "eevee"]), default=None,
              help="cycles (default) or eevee (needs EGL; ~4 s/frame on CPU).")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None, help="cpu, or gpu (OptiX/CUDA where present).")
@click.option("--seed", type=int, default=None, help="Seed of random views and random lighting.")
@click.option("--format", "image_format", type=click.Choice(["png", "webp"]), default=None, help="Image member format.")
@click.option("--normals/--no-normals", default=None, help="Also write world-space normal maps.")
@click.option("--lighting", type=click.Choice(["neutral", "random"]), default=None, help="Even white or randomised light.")
@click.option("--allow-static", is_flag=True, default=None, help="Render clips without motion as one static frame.")
@click.option("--threads", type=int, default=None, help="Blender render threads (default: all cores).")
@click.option("--force", is_flag=True, help="Render again even if the shard is committed.")
def command(manifest: str, shard: int, out: str, preset: str, threads: int | None, force: bool, **overrides: Any) -> None:
    """Render one shard of a manifest into DIR/shard-N.{tar,parquet,stats.json} (one process, no Ray)."""
    try:
        spec = spec_from_options(preset, **overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    rows = shard_rows(manifest, shard)
    try:
        stats = render_one_shard(rows, spec, out, shard, force=force, threads=threads)
    except ValueError as exc:  # e.g. --device gpu without a GPU: raised before any row is rendered
        raise click.UsageError(str(exc)) from None
    if stats.skipped:
        click.echo(f"shard {shard}: already committed in {out} ({stats.ok} ok); --force renders it again")
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.reasons.items())) or "none"
    click.echo(f"shard {shard}: {stats.ok} ok, {stats.failed} failed, {stats.rejected} rejected "
               f"(reasons: {reasons}); {stats.images} images in {stats.seconds:.1f} s -> {out}")
