"""`pipeline status DIR`: committed / partial / missing shards, samples by status and reason, throughput."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("status")
@click.argument("directory", metavar="DIR")
@click.option("--manifest", "manifest_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Compare with this manifest: missing shards, missing or superseded samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-index", is_flag=True, help="Do not rewrite DIR/index.json (the committed-shard index trainers read over HTTP).")
@click.option("--from-index", is_flag=True, help="Committed shards and counts from the committed-shard index and its "
              "log alone (a few requests at any size), without listing DIR: partial shards are not looked for.")
def command(directory: str, manifest_path: Path | None, as_json: bool, no_index: bool, from_index: bool) -> None:
    """Report what DIR (a folder or an s3://bucket/prefix URL) holds. Only committed shards
    (stats.json written last) count as data.

    Also rewrites DIR/index.json, the list of committed shards that `pipeline train --shards URL/`
    reads when the dataset folder is served over HTTP.
    """
    from manifests.schema import ManifestError, read_manifest
    from pipeline.status import collect_status, format_report

    manifest = None
    if manifest_path is not None:
        try:
            manifest = read_manifest(manifest_path)
        except ManifestError as exc:
            raise click.ClickException(str(exc)) from None
    from contracts.storage import StorageError

    try:
        rep = collect_status(directory, manifest, update_index=not no_index, from_index=from_index)
    except (StorageError, FileNotFoundError) as exc:
        raise click.ClickException(f"DIR {exc}") from None
    click.echo(rep.to_json() if as_json else format_report(rep))
