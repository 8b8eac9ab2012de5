"""`pipeline curate`: Objaverse / Objaverse-XL / local / procedural assets -> a Parquet manifest.

Module level imports click and the stdlib only (`pipeline --help` stays fast); manifests.curate,
which pulls in pandas, pyarrow and (per source) objaverse or bpy, is imported when the command runs.
"""

from __future__ import annotations

import shlex

import click

SOURCES = ("objaverse", "objaverse-xl", "local", "procedural")
XL_SOURCES = ("github", "sketchfab", "smithsonian", "thingiverse")

EPILOG = """\b
Examples:
  pipeline curate --source local --dir ../shared/assets/gltf --out m.parquet
  pipeline curate --source objaverse --cache-dir /data/objaverse --out m.parquet --dropped-out dropped.parquet
  pipeline curate --source objaverse-xl --cache-dir /data/objaverse --xl-sources sketchfab,smithsonian --out xl.parquet
  pipeline curate --source procedural --count 32 --seed 7 --out proc.parquet
  pipeline curate --source procedural --count 32 --categories biped,quadruped --out animals.parquet
  pipeline curate --source local --dir more/ --round 1 --previous m.parquet --out round1.parquet

\b
Filters, in this order (each dropped asset carries the first reason that applies): the source's own
errors (invalid_uid, bad_annotation, missing_file, unreadable_file, not_gzip, unsupported_format,
bad_animation), not_in_uids_file, license, age_restricted, too_few_faces / too_many_faces /
too_many_vertices, static, duplicate, max_clips (per clip), limit.
"""


def _csv(value: str, flag: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in value.split(",") if x.strip())
    if not items:
        raise click.BadParameter("must name at least one value (comma-separated)", param_hint=flag)
    return items


@click.command("curate", epilog=EPILOG, context_settings={"max_content_width": 110})
@click.option("--source", type=click.Choice(SOURCES), required=True, help="Where the assets come from.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Manifest to write (Parquet).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="objaverse / objaverse-xl: the folder that plays ~/.objaverse (hf-objaverse-v1/..., github/github.parquet, ...). "
                   "[default: ~/.objaverse]")
@click.option("--dir", "dir_", type=click.Path(file_okay=False), help="local: folder scanned for .glb/.gltf(.gz) files.")
@click.option("--count", type=int, help="procedural: number of assets to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="procedural: generator seed.")
@click.option("--assets-out", type=click.Path(file_okay=False),
              help="procedural: where the GLB files go (they stay: the manifest points at them). [default: <--out folder>/procedural-s<seed>]")
@click.option("--categories", default=None,
              help="procedural: comma-separated category mix (biped, quadruped, winged, crawler, vehicle, soft, blob, legacy; "
                   "a name twice = twice as often). [default: biped,quadruped,biped,quadruped,winged,crawler,vehicle,soft,blob]")
@click.option("--xl-sources", default=",".join(XL_SOURCES), show_default=True,
              help="objaverse-xl: comma-separated annotation files to read.")
@click.option("--limit", type=int, help="Keep at most N assets (the first N in shard order); the rest are dropped as `limit`.")
@click.option("--uids-file", type=click.Path(dir_okay=False),
              help="Keep only the uids listed (one per line, # comments); others are `not_in_uids_file`.")
@click.option("--max-clips-per-asset", type=int, default=16, show_default=True,
              help="Keep the first N clips of an asset (glTF order); 0 = all.")
@click.option("--licenses", default="by,by-sa,cc0", show_default=True,
              help="Comma-separated licence allow-list (Objaverse codes; long Creative Commons names are mapped to them). "
                   "Local folders carry no licence and are not filtered.")
@click.option("--min-faces", type=int, default=1, show_default=True, help="Drop assets with fewer faces (triangles).")
@click.option("--max-faces", type=int, default=500_000, show_default=True, help="Drop assets with more faces; 0 = no bound.")
@click.option("--max-vertices", type=int, default=1_000_000, show_default=True, help="Drop assets with more vertices; 0 = no bound.")
@click.option("--include-static", is_flag=True, help="Keep assets without animation as one static row (clip 0, static=true).")
@click.option("--dropped-out", type=click.Path(dir_okay=False),
              help="Write the dropped assets/clips to this Parquet file (uid, clip, source, uri, reason, detail).")
@click.option("--shard-size", type=int, default=64, show_default=True, help="Rows per shard.")
@click.option("--round", "round_", type=int, default=0, show_default=True,
              help="Curation round. With R > 0 and --previous M: the output holds only this round's new rows, every row has "
                   "round=R, shard numbers start after M's last shard, and (uid, clip) pairs already in M are dropped as `duplicate`.")
@click.option("--previous", type=click.Path(dir_okay=False), help="The manifest of the earlier round(s) (with --round R > 0).")
@click.pass_context
def command(ctx: click.Context, source, out, cache_dir, dir_, count, seed, assets_out, categories, xl_sources, limit, uids_file,
            max_clips_per_asset, licenses, min_faces, max_faces, max_vertices, include_static, dropped_out, shard_size,
            round_, previous) -> None:
    """Curate assets into a manifest: one row per (asset, clip), with shard numbers and reasons for what was dropped."""
    from manifests.curate import CurateConfig, CurationError, curate
    from manifests.schema import ManifestError

    try:
        cfg = CurateConfig(source=source, out=out, cache_dir=cache_dir, dir=dir_, count=count, seed=seed, assets_out=assets_out, categories=categories,
                           xl_sources=_csv(xl_sources, "--xl-sources"), limit=limit, uids_file=uids_file,
                           max_clips_per_asset=max_clips_per_asset, licenses=_csv(licenses, "--licenses"), min_faces=min_faces,
                           max_faces=max_faces or None, max_vertices=max_vertices or None, include_static=include_static,
                           dropped_out=dropped_out, shard_size=shard_size, round=round_, previous=previous)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None
    try:
        result = curate(cfg, command=_command_line(ctx))
    except (CurationError, ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:  # settings that only the inputs can refute (e.g. --round vs --previous)
        raise click.UsageError(str(exc), ctx) from None
    _print_table(result, cfg)


def _command_line(ctx: click.Context) -> str:
    """The command as it would be typed, rebuilt from the parsed options (stored in the manifest)."""
    parts = ["pipeline", "curate"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == param.default:
            continue
        flag = max(param.opts, key=len)
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def _print_table(result, cfg) -> None:
    from manifests.filters import reason_table

    shards = f"shards {result.shards[0]}-{result.shards[1]}" if result.shards else "no shards"
    click.echo(f"{result.manifest}: {result.kept_rows} row(s) from {result.kept_assets} asset(s), {shards} "
               f"({cfg.shard_size} rows per shard), {result.seconds:.1f} s")
    click.echo(f"{'':<20}{'assets':>10}{'clips':>10}")
    click.echo(f"{'kept':<20}{result.kept_assets:>10}{result.kept_rows:>10}")
    table = list(reason_table(result.dropped))
    if table:
        click.echo("dropped:")
        for reason, assets, clips, meaning in table:
            click.echo(f"  {reason:<18}{assets:>10}{clips:>10}  {meaning}")
    else:
        click.echo("dropped: nothing")
    if result.dropped_out:
        click.echo(f"dropped rows with reasons: {result.dropped_out}")
