"""`pipeline render --manifest M --shard N | --shards A-B|all --out DIR [--preset P] [...]`.

Parse, build the render spec and the pool settings, hand the shards to `pipeline.runner`, report.
By default a pool of Ray actors (one bpy each) renders on a local Ray instance sized to this machine,
or on a cluster with `--address`; `--no-ray` renders in this one process. Heavy modules (bpy, ray,
pandas, pyarrow) are imported inside the functions, so `--help` stays instant.
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


def read_rows_manifest(manifest: str):
    from manifests.schema import ManifestError, read_manifest

    try:
        return read_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None


def shard_rows(manifest: str, shard: int) -> list[dict[str, Any]]:
    """The manifest rows of `shard` as plain dicts (pandas NA -> None). Raises ClickException when none."""
    from pipeline.runner import rows_by_shard

    df = read_rows_manifest(manifest)
    rows = rows_by_shard(df, [shard]).get(shard)
    if not rows:
        shards = sorted(int(s) for s in df["shard"].unique())
        have = f"{shards[0]}..{shards[-1]} ({len(shards)} shards)" if shards else "none"
        raise click.ClickException(f"{manifest}: no rows for shard {shard}; shards in the manifest: {have}")
    return rows


@click.command("render")
@click.option("--manifest", "manifest", required=True, type=click.Path(dir_okay=False),
              help="Manifest Parquet (pipeline curate / pipeline mine).")
@click.option("--shard", "shard", type=click.IntRange(0, 999_999), default=None, help="One shard number to render.")
@click.option("--shards", "shards_sel", default=None, help="Shards to render: A-B, a comma list (0,3,7-9), or all.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Dataset folder for the shard files, or an object-store URL (s3://bucket/prefix).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="lrm4d", show_default=True,
              help="Render preset; the flags below override its fields.")
@click.option("--resolution", type=int, default=None, help="Image side in pixels.")
@click.option("--frames", "num_frames", type=int, default=None, help="Times per clip (T).")
@click.option("--views", "fixed_views", type=int, default=None, help="Fixed orbit views.")
@click.option("--random-views", "random_views", type=int, default=None, help="Random views drawn at every time.")
@click.option("--samples", type=int, default=None, help="Samples per pixel.")
@click.option("--engine", type=click.Choice(["cycles", "eevee"]), default=None,
              help="cycles (default) or eevee (needs EGL; ~20 s/image on CPU).")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None, help="cpu, or gpu (OptiX/CUDA where present).")
@click.option("--seed", type=int, default=None, help="Seed of random views and random lighting.")
@click.option("--format", "image_format", type=click.Choice(["png", "webp"]), default=None, help="Image member format.")
@click.option("--normals/--no-normals", default=None, help="Also write world-space normal maps.")
@click.option("--lighting", type=click.Choice(["neutral", "random"]), default=None, help="Even white or randomised light.")
@click.option("--allow-static", is_flag=True, default=None, help="Render clips without motion as one static frame.")
@click.option("--framing", type=click.Choice(["union", "track"]), default=None,
              help="union: fixed cameras, scale from the clip's union box; track (default): cameras follow the "
                   "object's per-time box, scale from the largest per-time box (DESIGN.md §2).")
@click.option("--min-coverage", "min_coverage", type=float, default=None,
              help="Reject samples whose best view covers less than this fraction of the image (0 = off).")
@click.option("--force", is_flag=True, help="Render again even if a shard is committed.")
@click.option("--retry-failed", is_flag=True,
              help="For committed shards, re-render only their failed samples (good samples are kept as they are).")
@click.option("--ray/--no-ray", "use_ray", default=True, show_default=True,
              help="Schedule on Ray actors (default), or render in this one process.")
@click.option("--address", default=None,
              help="Ray cluster to join: 'auto' or HOST:PORT (ray start --head). Default: a local instance on this machine.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Render actors (one Blender each). Default: cluster CPUs / --cpus-per-worker.")
@click.option("--cpus-per-worker", type=click.IntRange(1), default=1, show_default=True,
              help="CPUs reserved per actor; Blender's thread count is set to match.")
@click.option("--asset-timeout", "asset_timeout_s", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="Seconds a sample may take before its worker is killed as hung.")
@click.option("--max-attempts", type=click.IntRange(1), default=2, show_default=True,
              help="Tries per sample when its worker crashes or hangs.")
@click.option("--recycle-after", type=click.IntRange(1), default=200, show_default=True,
              help="Replace a worker after this many samples.")
@click.option("--recycle-memory-gb", "recycle_rss_gb", type=click.FloatRange(min=0.01), default=6.0, show_default=True,
              help="Replace a worker whose resident memory exceeds this.")
@click.option("--cache-dir", default=None, help="Objaverse cache for rows whose file must be fetched (default ~/.objaverse).")
@click.option("--threads", type=int, default=None, help="Blender threads with --no-ray (default: all cores).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def command(manifest: str, shard: int | None, shards_sel: str | None, out: str, preset: str, force: bool,
            retry_failed: bool, use_ray: bool, address: str | None, workers: int | None, cpus_per_worker: int,
            asset_timeout_s: float, max_attempts: int, recycle_after: int, recycle_rss_gb: float,
            cache_dir: str | None, threads: int | None, progress: bool, **overrides: Any) -> None:
    """Render shards of a manifest into DIR/shard-N.{tar,parquet,stats.json}.

    Committed shards are skipped (--force redoes them); partial ones from a killed run are discarded
    and redone. Crashed or hung workers are replaced and their sample retried (--max-attempts), then
    recorded as failed with a reason; the shard still commits.
    """
    if (shard is None) == (shards_sel is None):
        raise click.UsageError("give exactly one of --shard N or --shards A-B|all")
    if force and retry_failed:
        raise click.UsageError("--force and --retry-failed exclude each other")
    if not use_ray and address:
        raise click.UsageError("--address needs Ray; drop --no-ray")
    try:
        spec = spec_from_options(preset, **overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    from pipeline.runner import parse_shard_selection, run_render

    df = read_rows_manifest(manifest)
    if df.empty:
        raise click.UsageError(f"{manifest} has no rows: nothing to render")
    available = sorted(int(s) for s in df["shard"].unique())
    try:
        selection = parse_shard_selection(str(shard) if shard is not None else shards_sel, available)
    except ValueError as exc:
        msg = str(exc).replace("--shards", "--shard" if shard is not None else "--shards")
        raise click.UsageError(f"{msg} in {manifest}") from None
    pool_cfg = None
    if use_ray:
        from pipeline.scheduler import PoolConfig

        try:
            pool_cfg = PoolConfig(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                  asset_timeout_s=asset_timeout_s, max_attempts=max_attempts,
                                  recycle_after=recycle_after, recycle_rss_gb=recycle_rss_gb,
                                  cache_dir=cache_dir, progress=progress)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    from contracts.storage import StorageError

    try:
        summary = run_render(df, selection, spec, out, use_ray=use_ray, pool_cfg=pool_cfg, force=force,
                             retry_failed=retry_failed, threads=threads, progress=progress, cache_dir=cache_dir)
    except StorageError as exc:  # --out URL refused, store unreachable, credentials rejected, upload cut off
        raise click.ClickException(f"--out {exc}") from None
    except ValueError as exc:  # e.g. --device gpu without a GPU: raised before any row is rendered
        raise click.UsageError(str(exc)) from None
    _report(summary, out)


def _report(summary: Any, out: str) -> None:
    sel = summary.selected
    click.echo(f"shards selected: {len(sel)} ({sel[0]}..{sel[-1]}); rendered {len(summary.rendered)}, "
               f"retried {len(summary.retried)}, already committed {len(summary.skipped)}")
    if summary.samples:
        parts = ", ".join(f"{summary.samples.get(s, 0)} {s}" for s in ("ok", "failed", "rejected"))
        rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
        click.echo(f"samples: {parts}; {summary.images} images in {summary.seconds:.1f} s ({rate:.1f} images/s)")
    events = {k: v for k, v in summary.counters.items() if k in ("worker_crashed", "timeout", "recycled") and v}
    if events:
        click.echo("workers: " + ", ".join(f"{k} {v}" for k, v in sorted(events.items())))
    click.echo(f"output: {out} (pipeline status {out}; pipeline preview {out} --shard N)")
