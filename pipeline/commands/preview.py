"""`pipeline preview DIR --shard N`: contact sheets and GIFs of rendered samples."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("preview")
@click.argument("directory", metavar="DIR")
@click.option("--shard", "shard", type=click.IntRange(0, 999_999), required=True, help="Shard number to preview.")
@click.option("--key", "keys", multiple=True, help="Sample key ({uid}_{clip:03d}); repeatable. Default: the first --limit samples.")
@click.option("--limit", type=click.IntRange(1), default=8, show_default=True, help="Samples to preview when no --key is given.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder. Default: DIR/previews/shard-NNNNNN/ (./previews/shard-NNNNNN/ for a URL).")
@click.option("--depth/--no-depth", default=True, show_default=True, help="Add a depth row under each view in the contact sheet.")
def command(directory: str, shard: int, keys: tuple[str, ...], limit: int, out_dir: Path | None, depth: bool) -> None:
    """Write a contact sheet PNG (views x times, with depth) and an animated GIF per sample.
    DIR is a dataset folder or an object-store URL (s3://bucket/prefix)."""
    from pipeline.preview import preview_shard

    try:
        paths = preview_shard(directory, shard, out_dir=out_dir, keys=list(keys) or None,
                              limit=None if keys else limit, with_depth=depth)
    except (FileNotFoundError, KeyError, OSError) as exc:  # OSError: contracts.storage.StorageError
        raise click.ClickException(str(exc).strip("'\"")) from None
    if not paths:
        raise click.ClickException(f"shard {shard} in {directory} holds no samples")
    for p in paths:
        click.echo(str(p))
