"""`pipeline view DATASET | --reconstruction DIR`: an interactive viewer in the browser (viser).

Thin: viser, numpy and the readers are imported inside the command body so `--help` stays fast.
"""

from __future__ import annotations

import click


@click.command("view")
@click.argument("dataset", required=False, metavar="[DATASET]")
@click.option("--reconstruction", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="A `pipeline reconstruct` output folder: its per-frame .ply Gaussians as splats over time, "
                   "with the input views beside them.")
@click.option("--metrics", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A `pipeline eval` metrics.parquet: samples sortable by psnr_obj and the baselines, worst first.")
@click.option("--checkpoint", default=None, metavar="C",
              help="A checkpoint file or run folder: a button reconstructs the selected sample on the spot "
                   "(CPU for tiny/small at low resolution, the GPU when there is one).")
@click.option("--key", default=None, help="Show this sample first ({uid}_{clip:03d}) [default: the first committed one].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the viewer to the network (prefer SSH port forwarding).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (the next free one when taken; 0 = any free port).")
@click.option("--device", default=None, help="cpu or cuda for --checkpoint (default: cuda when available).")
@click.option("--export", "export", type=click.Path(dir_okay=False), default=None, metavar="FILE.html",
              help="With --reconstruction: write the scene as one self-contained HTML file (no server) and exit.")
def command(dataset: str | None, reconstruction: str | None, metrics: str | None, checkpoint: str | None,
            key: str | None, host: str, port: int, device: str | None, export: str | None) -> None:
    """Look at a dataset (local folder, http(s):// served folder or s3://bucket/prefix) or at a
    reconstruction in the browser: cameras as frustums with their images, a time slider, depth as
    coloured points, the anchor path of tracked clips, Gaussians as splats. Prints the URL and serves
    until interrupted (Ctrl-C)."""
    from viewer.server import ViewError, start

    if export is not None:
        if reconstruction is None or dataset is not None:
            raise click.ClickException("--export FILE.html goes with --reconstruction DIR (and no DATASET)")
        from viewer.export import export_html
        from viewer.recon import ReconstructionError, open_reconstruction

        try:
            path = export_html(open_reconstruction(reconstruction), export)
        except ReconstructionError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {path}")
        return
    try:
        running = start(dataset, reconstruction, metrics, checkpoint, key, host, port, device)
    except ViewError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"viewer ready in {running.seconds:.1f} s: {running.url}  (Ctrl-C to stop)", err=False)
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
