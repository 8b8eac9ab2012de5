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
  pipeline mine --metrics run/metrics.parquet --manifest m.parquet --renders data --out next.parquet \\
      --pool pool.parquet --render-budget 500 --pool-strategy target --target-metrics run/val_metrics.parquet \\
      --target-manifest val.parquet --group-by category --group-weights
                      (the budget per category by what the validation clips still lack, diverse picks in each)

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
@click.option("--strategy", type=click.Choice(("topk", "reducible", "baseline", "random")), default="topk", show_default=True,
              help="topk: the worst samples of the current model; reducible: current minus reference loss "
                   "(RHO-LOSS), so samples both models get wrong are not chased; baseline (--by psnr): the "
                   "nearest-input copy's PSNR minus the model's, one evaluation; random: as many scored samples "
                   "drawn at random (seeded by --pool-seed), the control a strategy must beat.")
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
@click.option("--pool-strategy", type=click.Choice(("similar", "random", "target")), default="similar", show_default=True,
              help="similar: the pool rows most like the hard examples in pre-render features (duration, faces, "
                   "vertices, clips, static, skin/morph, source, licence, file type), weighted by how hard; "
                   "random: a seeded uniform draw of the same budget (the control); target: the budget per "
                   "--group-by group by what --target-metrics still lacks, then --within picks in each group.")
@click.option("--pool-seed", type=int, default=0, show_default=True, help="Seed of --strategy random and --pool-strategy random.")
@click.option("--pool-probe/--no-pool-probe", default=True, show_default=True,
              help="Read skinned/morphed from local glTF files (no Blender) for rows that lack them.")
@click.option("--target-metrics", type=click.Path(dir_okay=False, exists=True),
              help="The current checkpoint's metrics on a target split (clips that stand for what you care about, "
                   "e.g. real assets or one category): group deficits set the budget (--pool-strategy target) "
                   "and/or the weights (--group-weights). Same protocol tag, background and step as --metrics.")
@click.option("--target-manifest", type=click.Path(dir_okay=False, exists=True),
              help="Manifest rows of the target clips (their groups). [default: --manifest]")
@click.option("--group-by", help="Group column: any manifest column (kind, category, source, ...), or deform "
                                 "(skin/morph/rigid from the glTF), motion_bin or size_bin (render statistics, "
                                 "rendered rows only: not for a pool).")
@click.option("--signal", type=click.Choice(("raw", "baseline", "reference")), default="baseline", show_default=True,
              help="Per-clip deficit: raw = -psnr_obj; baseline = nearest-input copy's psnr_obj - the model's; "
                   "reference = a reference model's psnr_obj - the model's (RHO-LOSS; --target-reference-metrics).")
@click.option("--target-reference-metrics", type=click.Path(dir_okay=False, exists=True),
              help="--signal reference: a reference model's metrics on the target clips (same protocol).")
@click.option("--group-metric", type=click.Choice(("psnr_obj", "psnr")), default="psnr_obj", show_default=True,
              help="The PSNR column deficits are measured in.")
@click.option("--group-eta", type=float, default=1.0, show_default=True,
              help="Multiplicative-weights step per standard deviation of the per-clip deficit (0 = the target's "
                   "own mix).")
@click.option("--group-floor", type=float, default=0.2, show_default=True,
              help="Share spread uniformly over the groups so none starves (each gets >= floor*budget/groups rows).")
@click.option("--deficit-clip", type=float, default=0.0, show_default=True,
              help="> 0: clip each target clip's deficit to the median +- this many robust standard deviations "
                   "(1.4826 x MAD) before the group means, so a few near-still clips (the copy baseline almost "
                   "exact there) cannot take the budget; 0 = plain means.")
@click.option("--within", type=click.Choice(("diverse", "random")), default="diverse", show_default=True,
              help="Picks inside a group's budget: diverse = farthest first from what is rendered (k-center); "
                   "random = seeded by --pool-seed.")
@click.option("--group-weights/--no-group-weights", default=False, show_default=True,
              help="Also set the next round's sampling weights so each group gets its share of the draws.")
@click.pass_context
def command(ctx: click.Context, metrics, manifest, out, strategy, reference_metrics, by, fraction, boost,
            max_weight, rerender_fraction, renders, preset, shard_size, pool, render_budget, pool_strategy,
            pool_seed, pool_probe, target_metrics, target_manifest, group_by, signal, target_reference_metrics,
            group_metric, group_eta, group_floor, deficit_clip, within, group_weights) -> None:
    """Mine hard examples: write the next round's manifest with weights and re-render requests."""
    from manifests.acquire import TargetConfig
    from manifests.mining import MineConfig, MiningError, mine
    from manifests.schema import ManifestError

    try:
        target = None
        if target_metrics:
            target = TargetConfig(metrics=target_metrics, group_by=group_by, manifest=target_manifest, signal=signal,
                                  reference=target_reference_metrics, metric=group_metric, eta=group_eta,
                                  floor=group_floor, clip_sd=deficit_clip, within=within, weights=group_weights,
                                  seed=pool_seed)
        elif group_by or target_manifest or target_reference_metrics or group_weights:
            raise ValueError("--group-by, --target-manifest, --target-reference-metrics and --group-weights need "
                             "--target-metrics (the current checkpoint's metrics on the target clips)")
        cfg = MineConfig(metrics=metrics, manifest=manifest, out=out, reference_metrics=reference_metrics,
                         strategy=strategy, by=by, fraction=fraction, boost=boost, max_weight=max_weight,
                         rerender_fraction=rerender_fraction,
                         renders=renders, preset=preset, shard_size=shard_size, pool=pool, render_budget=render_budget,
                         pool_strategy=pool_strategy, pool_seed=pool_seed, pool_probe=pool_probe,
                         target=target)
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
    if r.target:
        _print_target(r.target)
    b, a = r.weights_before, r.weights_after
    click.echo(f"weights: min/mean/max {b['min']:g}/{b['mean']:.3g}/{b['max']:g} -> {a['min']:g}/{a['mean']:.3g}/{a['max']:g}; "
               f"hard rows carry {100 * r.hard_share_before:.1f}% -> {100 * r.hard_share_after:.1f}% of the draws")
    if r.capped:
        click.echo(f"  {r.capped} hard row(s) stopped at --max-weight {cfg.max_weight:g} (weights compound over rounds)")


def _print_target(t: dict) -> None:
    click.echo(f"target: {t['clips']} clip(s) by {t['group_by']}, signal {t['signal']} on {t['metric']} "
               f"(deficit in dB, higher = more to gain)")
    click.echo(f"  {'group':<24}{'clips':>6}{'share':>7}{'model':>8}{'base':>8}{'deficit':>9}")
    for g in t["groups"]:
        click.echo(f"  {str(g['group']):<24}{g['clips']:>6}{100 * g['share']:>6.0f}%{g['value']:>8.2f}{g['base']:>8.2f}"
                   f"{g['deficit']:>+9.2f}")
    for name, rows in (("render budget", t.get("budget")), ("sampling weights", t.get("weights"))):
        if not rows:
            continue
        click.echo(f"  {name}: " + "; ".join(
            f"{p['group']} {100 * p['share']:.1f}%" + (f" -> {p['budget']} of {p['available']} (floor {p['floor']})"
                                                        if name == "render budget" else "") for p in rows))
    if t.get("unaddressable"):
        click.echo(f"  target group(s) with no pool row (their deficit cannot be bought): {', '.join(t['unaddressable'])}")
