"""`pipeline eval --checkpoint C --shards SPEC --out metrics.parquet`: per-sample metrics of a checkpoint."""

from __future__ import annotations

import os

import click


@click.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A checkpoint file (RUN/checkpoints/step-*.pt) or a run folder (its newest checkpoint).")
@click.option("--shards", required=True, metavar="SPEC",
              help="Shards to score: a dataset folder (committed shards), a brace pattern, or http(s) URLs.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="metrics.parquet to write (DESIGN.md §5).")
@click.option("--protocol", "protocol_name", default=None,
              help="Protocol name (default: the checkpoint family's, sparse4 for lrm4d); every row records "
                   "NAME-vVERSION/FAMILY@SIZE.")
@click.option("--protocol-seed", type=int, default=None, help="Seed of the protocol's pair choice [default: 2026].")
@click.option("--n-in", type=click.IntRange(1), default=None, help="Input (view, time) pairs per sample [default: 4].")
@click.option("--per-kind", type=click.IntRange(1), default=None,
              help="Targets of each kind: novel view+time, novel time, novel view [default: 2].")
@click.option("--image-size", type=click.IntRange(8), default=None, help="Evaluation resolution (default: the checkpoint's).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Samples per batch (default 8 on GPU, 2 on CPU).")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--lpips-weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Local LPIPS weights (training/losses/lpips.py); without them the lpips column is null.")
@click.option("--worst", type=click.IntRange(0), default=8, show_default=True, help="Image grids of this many worst samples.")
@click.option("--grids", "grids_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the worst samples' grids (default: next to --out, <stem>_worst/).")
@click.option("--fp8-attention", is_flag=True,
              help="Score with the inference-only FP8 attention kernel (cuDNN; Hopper GPUs with the "
                   "nvidia-cudnn-frontend package): what the model loses to it, per sample.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(checkpoint: str, shards: str, out: str, protocol_name: str, protocol_seed: int, n_in: int, per_kind: int,
            image_size: int | None, batch_size: int | None, device: str | None, lpips_weights: str | None,
            worst: int, grids_dir: str | None, fp8_attention: bool, progress: bool) -> None:
    """Score a checkpoint on every sample of SPEC with its model family's fixed, seeded protocol.

    The protocol picks each sample's input pairs and held-out target pairs (novel view at a novel
    time, novel time, novel view; for L4GM also a camera seen at another time; by camera) from the
    protocol and the sample key alone, so two checkpoints scored with the same protocol are scored on
    exactly the same pairs. Settings that change the pairs and differ from the protocol's defaults are
    in the tag (sparse4-v2[n_in=8]/lrm4d@256); an interpolation checkpoint is scored on blended middle
    frames (mono4-v2[interp=true]/l4gm@SIZE). Every row says
    whether its shard was among those the checkpoint trained on (seen_in_training); the summary
    prints held-out and seen clips apart, with psnr_obj (inside the object's box) next to PSNR.
    """
    from training import ddp
    from training.evaluate import evaluate, format_summary

    protocol = {"name": protocol_name, "seed": protocol_seed, "n_in": n_in, "per_kind": per_kind,
                "image_size": image_size}
    try:
        res = evaluate(checkpoint, shards, out, protocol, device=device, batch_size=batch_size,
                       lpips_weights=lpips_weights, worst=worst, grids_dir=grids_dir, progress=progress,
                       fp8_attention=fp8_attention)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ddp.close()  # under torchrun: leave the group while the interpreter is alive (a world of one: nothing)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank holds all rows; rank 0 wrote them
        click.echo(format_summary(res))
        click.echo(f"wrote {out} ({len(res.rows)} rows)")
