"""`pipeline index DIR`: member indexes for older shards, and the committed-shard index reconciled."""

from __future__ import annotations

import click


@click.command("index")
@click.argument("directory", metavar="DIR")
@click.option("--rebuild", is_flag=True, help="Re-read every committed shard's stats.json and parquet instead of "
              "trusting the index's cached summaries.")
@click.option("--members/--no-members", default=True, show_default=True,
              help="Add the member index (shard-N.members.parquet) to committed shards written before it existed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(directory: str, rebuild: bool, members: bool, as_json: bool) -> None:
    """Bring DIR's indexes (a folder or an s3://bucket/prefix URL) up to date: a member index for
    every committed shard that lacks one (from its tar's headers, so trainers read members by range
    instead of streaming the tar), and index.json reconciled with a listing and compacted (the
    commit log under DIR/index-log/ folded in)."""
    from contracts.storage import StorageError
    from pipeline.reindex import reindex

    try:
        rep = reindex(directory, members=members, rebuild=rebuild)
    except (StorageError, FileNotFoundError) as exc:
        raise click.ClickException(f"DIR {exc}") from None
    if as_json:
        click.echo(rep.to_json())
        return
    click.echo(f"dataset {rep.directory}: {rep.committed} committed shard(s)")
    click.echo(f"  member indexes added: {len(rep.members_added)}" +
               (f" (shards {', '.join(map(str, rep.members_added[:20]))}{' ...' if len(rep.members_added) > 20 else ''})"
                if rep.members_added else ""))
    click.echo(f"  summaries read from the shards' files: {rep.summaries_read}")
    click.echo(f"  index: {rep.index}")
    for p in rep.problems:
        click.echo(f"  problem: {p}")
    if rep.problems:
        raise SystemExit(1)
