"""`pipeline reconstruct --checkpoint C --input SPEC --out DIR`: Gaussians per output frame (.ply), a
turntable animation through time and a JSON of what was run, for either model family.

Heavy imports (torch, gsplat) happen inside the command body so `--help` stays fast.
"""

from __future__ import annotations

import click


@click.command("reconstruct")
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A checkpoint file (RUN/checkpoints/step-*.pt) or a run folder (its newest checkpoint); "
                   "either family (lrm4d or l4gm), read from the checkpoint.")
@click.option("--input", "spec", required=True, metavar="SPEC",
              help="A rendered sample DIR_OR_TAR#KEY (dataset folder or shard tar, local), or a folder of "
                   "your images with cameras.json (DESIGN.md §6; for l4gm, view 0 is the video).")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Output folder: frame-NNN.ply (3D Gaussian Splatting layout), turntable.gif, reconstruct.json.")
@click.option("--compact", is_flag=True,
              help="Write the short .ply record (x y z f_dc_0..2 opacity scale_0..2 rot_0..3, 14 floats) for viewers "
                   "that read properties by name. Default: the full 3DGS record (62 floats, with nx ny nz and "
                   "f_rest_0..44 as zeros) that the original 3DGS viewer needs.")
@click.option("--times", default=None, metavar="T1,T2,...",
              help="lrm4d only: clip times in [0, 1] to slice the 4D Gaussians at, one .ply each, e.g. "
                   "0.1,0.35,0.6 (sub-frame times work) [default: the clip's rendered times].")
@click.option("--window", type=int, default=None,
              help="l4gm only: frames per window; longer videos run as windows overlapping by one frame "
                   "[default: the checkpoint's training window].")
@click.option("--interp", is_flag=True,
              help="l4gm only: 3x the frame rate with an interpolation model (pipeline train --set data.interp=true): "
                   "each pair of video frames becomes a 4-frame window whose middle frames are blends.")
@click.option("--anim-frames", type=click.IntRange(2, 1000), default=24, show_default=True,
              help="Frames of the turntable animation (one turn, moving through the output times).")
@click.option("--anim-size", type=click.IntRange(8, 4096), default=None,
              help="Animation resolution [default: the model's image size].")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--fast", "fast_gpu", is_flag=True,
              help="CUDA only: the model in bf16 with compiled transformer blocks, as it trains, and attention in FP8 "
                   "where that kernel can run (BENCHMARKS.md times this path); compiling costs ~30-60 s once, repaid "
                   "over long videos. Default: float32, eager.")
@click.option("--fp8-attention/--bf16-attention", "fp8_attention", default=None,
              help="Attention in FP8 (cuDNN; CUDA, Hopper or newer, with the nvidia-cudnn-frontend package: the `fp8` "
                   "extra), or not. Default: FP8 with --fast where it can run, else bf16 (said in the log and in "
                   "reconstruct.json). On an H100 it took 24 views from 153.5 to 125.4 ms and cost trained `small` "
                   "under 0.01 dB psnr_obj (BENCHMARKS.md, \"FP8 attention for inference\").")
def command(checkpoint: str, spec: str, out: str, times: str | None, window: int | None, interp: bool,
            anim_frames: int, anim_size: int | None, device: str | None, fast_gpu: bool, fp8_attention: bool | None,
            compact: bool) -> None:
    """Reconstruct one clip with a trained checkpoint and write its Gaussians frame by frame."""
    from training.export.reconstruct import InputError, reconstruct

    try:
        res = reconstruct(checkpoint, spec, out, times=times, device=device, window=window, anim_frames=anim_frames,
                          anim_size=anim_size, interp=interp, fast_gpu=fast_gpu, compact=compact,
                          fp8_attention=fp8_attention)
    except (InputError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    s = res.summary
    click.echo(f"{s['family']} checkpoint at step {s['step']}: {len(res.plys)} frame(s) "
               f"({s['outputs'][0]['gaussians']} Gaussians each) in {s['seconds']['model']:.2f} s of model time")
    click.echo(f"wrote {len(res.plys)} .ply, {res.animation} and {res.record}")
