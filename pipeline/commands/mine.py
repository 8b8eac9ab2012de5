"""`pipeline mine`: per-sample metrics -> the next round's manifest (hard samples up-weighted,
failed/rejected renders left out, re-render requests for the hardest clips).

Module level imports click and the stdlib only (`pipeline --help` stays fast); manifests.mining, which
pulls in pandas and pyarrow, is imported when the command runs.
"""

from __future__ import annotations

import shlex

import click

SHOW_RERENDERS = 20  # re-render requests listed one per line; the rest are counted

EPILOG = """\b
Examples:
  pipeline mine --metrics run/metrics.parquet --manifest m.parquet --renders data --out next.parquet
  pipeline mine --metrics run/metrics.parquet --manifest m.parquet --renders data --out next.parquet \\
      --by psnr --fraction 0.2 --boost 3 --rerender-fraction 0.05 --preset lrm4d
  pipeline mine --strategy reducible --metrics run/metrics.parquet --reference-metrics ref/metrics.parquet \\
      --manifest m.parquet --renders data --out next.parquet
  pipeline mine --metrics run/metrics.parquet --manifest m.parquet --renders data --out next.parquet \\
      --pool pool.parquet --render-budget 500                 (render next the 500 pool clips most like the hard ones)

\b
Then: pipeline render --manifest next.parquet --shard N --out data      (each new shard N printed below)
      pipeline train --shards data --weights next.parquet --out run     (hard samples drawn --boost x as often)
"""


@click.command("mine", epilog=EPILOG, context_settings={"max_content_width": 110})
@click.option("--metrics", required=True, type=click.Path(dir_okay=False, exists=True),
              help="metrics.parquet of the current model (pipeline eval; DESIGN.md §5).")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The manifest the evaluated samples were rendered from.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Next round's manifest (Parquet).")
@click.option("--strategy", type=click.Choice(("topk", "reducible")), default="topk", show_default=True,
              help="topk: the worst samples of the current model; reducible: current minus reference loss "
                   "(RHO-LOSS), so samples both models get wrong are not chased.")
@click.option("--reference-metrics", type=click.Path(dir_okay=False, exists=True),
              help="reducible: metrics of a reference model on the same samples, same protocol tag, background and "
                   "loss formula. RHO-LOSS needs the reference model trained on held-out data (other clips than "
                   "those mined, e.g. a run on a disjoint shard set): a model trained on these clips has memorised "
                   "them, so current minus reference loss no longer separates learnable from noisy.")
@click.option("--by", type=click.Choice(("loss", "psnr")), default="loss", show_default=True,
              help="Rank by loss (highest = hardest) or PSNR (lowest = hardest).")
@click.option("--fraction", type=float, default=0.1, show_default=True,
              help="Share of the scored samples that count as hard and are up-weighted.")
@click.option("--boost", type=float, default=4.0, show_default=True, help="Weight multiplier of a hard sample (>= 1).")
@click.option("--max-weight", type=float, default=16.0, show_default=True,
              help="Cap on a boosted weight (weights compound over rounds; a cap never lowers a weight).")
@click.option("--rerender-fraction", type=float, default=0.02, show_default=True,
              help="Share of the scored samples (the hardest of the hard) re-rendered denser, in new shards; 0 = none.")
@click.option("--renders", type=click.Path(file_okay=False),
              help="Dataset folder (or s3://bucket/prefix URL) the manifest was rendered into: failed/rejected rows are left out, and new shard "
                   "numbers come after every shard in it.")
@click.option("--preset", help="Render preset the re-render settings are validated on (debug, lrm4d, l4gm). "
                               "[default: the preset recorded in the old shard's stats.json under --renders]")
@click.option("--shard-size", type=int, default=64, show_default=True, help="Rows per new re-render or pool shard.")
@click.option("--pool", type=click.Path(dir_okay=False, exists=True),
              help="A curated manifest of clips not rendered yet: add --render-budget of its rows to render next.")
@click.option("--render-budget", type=click.IntRange(0), default=0, show_default=True,
              help="Pool rows to add (each gets a new shard, round +1, mine_reason pool:*, and pool_reason).")
@click.option("--pool-strategy", type=click.Choice(("similar", "random")), default="similar", show_default=True,
              help="similar: the pool rows most like the hard examples in pre-render features (duration, faces, "
                   "vertices, clips, static, skin/morph, source, licence, file type), weighted by how hard; "
                   "random: a seeded uniform draw of the same budget (the control).")
@click.option("--pool-seed", type=int, default=0, show_default=True, help="Seed of --pool-strategy random.")
@click.option("--pool-probe/--no-pool-probe", default=True, show_default=True,
              help="Read skinned/morphed from local glTF files (no Blender) for rows that lack them.")
@click.pass_context
def command(ctx: click.Context, metrics, manifest, out, strategy, reference_metrics, by, fraction, boost,
            max_weight, rerender_fraction, renders, preset, shard_size, pool, render_budget, pool_strategy,
            pool_seed, pool_probe) -> None:
    """Mine hard examples: write the next round's manifest with weights and re-render requests."""
    from manifests.mining import MineConfig, MiningError, mine
    from manifests.schema import ManifestError

    try:
        cfg = MineConfig(metrics=metrics, manifest=manifest, out=out, reference_metrics=reference_metrics,
                         strategy=strategy, by=by, fraction=fraction, boost=boost, max_weight=max_weight,
                         rerender_fraction=rerender_fraction,
                         renders=renders, preset=preset, shard_size=shard_size, pool=pool, render_budget=render_budget,
                         pool_strategy=pool_strategy, pool_seed=pool_seed, pool_probe=pool_probe)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None
    try:
        result = mine(cfg, command=_command_line(ctx))
    except (MiningError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    _print_table(result, cfg)


def _command_line(ctx: click.Context) -> str:
    """The command as typed, rebuilt from the parsed options (stored in the manifest's metadata)."""
    parts = ["pipeline", "mine"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == param.default:
            continue
        parts += [max(param.opts, key=len), str(value)]
    return shlex.join(parts)


def _print_table(r, cfg) -> None:
    ref = f", reference step {r.reference_step}" if cfg.strategy == "reducible" else ""
    click.echo(f"{r.out}: {r.rows_out} row(s) from {r.rows_in} in {cfg.manifest}; strategy {cfg.strategy} by {cfg.by}, "
               f"protocol {r.protocol!r} (step {r.step}{ref})")
    click.echo(f"scored {r.scored} row(s); hard {r.hard} (--fraction {cfg.fraction}), "
               f"re-render {len(r.rerenders)} (--rerender-fraction {cfg.rerender_fraction})")
    click.echo(f"{'changed (mine_reason)':<44}{'rows':>6}")
    for reason, n in sorted(r.changes.items()):
        what = (f"weight x{cfg.boost:g}" if reason.startswith(("upweight", "rerender:")) else
                "new rows to render" if reason.startswith("pool:") else "shard = parent_shard")
        click.echo(f"  {reason:<42}{n:>6}  {what}")
    if not r.changes:
        click.echo("  nothing")
    click.echo(f"{'left out (render status:reason)':<44}{'rows':>6}")
    for reason, n in sorted(r.dropped.items()):
        click.echo(f"  {reason:<42}{n:>6}")
    if not r.dropped:
        click.echo("  nothing" + ("" if cfg.renders else " (no --renders given: render outcomes not read)"))
    quiet = {k: v for k, v in r.not_touched.items() if v}
    if quiet or r.metrics_unmatched or r.multi_shard:
        click.echo(f"{'not scored':<44}{'rows':>6}")
        for reason, n in sorted(quiet.items()):
            click.echo(f"  {reason:<42}{n:>6}")
        if r.metrics_unmatched:
            click.echo(f"  {'metrics rows with no row in the output':<42}{r.metrics_unmatched:>6}")
        if r.multi_shard:
            click.echo(f"  {'(scored in several shards, not its own: mean)':<42}{r.multi_shard:>6}")
    if r.rerenders:
        shards = r.new_shards
        span = f"{shards[0]}" if len(shards) == 1 else f"{shards[0]}-{shards[-1]}"
        click.echo(f"re-render requests: {len(r.rerenders)} row(s) in new shard(s) {span}, round +1")
        for q in r.rerenders[:SHOW_RERENDERS]:
            click.echo(f"  {q['uid']} clip {q['clip']}: shard {q['parent_shard']} -> {q['shard']}  {q['render_settings']}")
        if len(r.rerenders) > SHOW_RERENDERS:
            click.echo(f"  ... and {len(r.rerenders) - SHOW_RERENDERS} more (rows with mine_reason rerender:* in {r.out})")
    if cfg.pool:
        click.echo(f"pool selection ({cfg.pool_strategy}): {len(r.pool_picks)} of {r.pool_rows} pool row(s) "
                   f"(--render-budget {cfg.render_budget}; {r.pool_in_manifest} already in the manifest left out); "
                   f"features: {', '.join(r.pool_features) or 'none'}")
        for q in r.pool_picks[:SHOW_RERENDERS]:
            click.echo(f"  {q['uid']} clip {q['clip']} -> shard {q['shard']}: {q['reason']}")
        if len(r.pool_picks) > SHOW_RERENDERS:
            click.echo(f"  ... and {len(r.pool_picks) - SHOW_RERENDERS} more (column pool_reason in {r.out})")
    b, a = r.weights_before, r.weights_after
    click.echo(f"weights: min/mean/max {b['min']:g}/{b['mean']:.3g}/{b['max']:g} -> {a['min']:g}/{a['mean']:.3g}/{a['max']:g}; "
               f"hard rows carry {100 * r.hard_share_before:.1f}% -> {100 * r.hard_share_after:.1f}% of the draws")
    if r.capped:
        click.echo(f"  {r.capped} hard row(s) stopped at --max-weight {cfg.max_weight:g} (weights compound over rounds)")
