"""Start the viewer: open what was asked for (errors name the flag), start viser, build the GUI."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class ViewError(ValueError):
    """A bad argument of `pipeline view`; the message names it."""


@dataclass
class Running:
    server: Any
    app: Any
    url: str
    seconds: float  # from the call until the first scene was built

    def stop(self) -> None:
        self.app.close()
        self.server.stop()


def start(dataset: str | None = None, reconstruction: str | None = None, metrics: str | None = None,
          checkpoint: str | None = None, key: str | None = None, host: str = "127.0.0.1", port: int = 8080,
          device: str | None = None) -> Running:
    """Open the dataset or reconstruction, start a viser server on host:port (the next free port
    when it is taken; 0 = any) and draw the first sample or frame. Raises ViewError."""
    from contracts import layout, storage
    from viewer.dataset import Dataset
    from viewer.recon import ReconstructionError, open_reconstruction
    from viewer.samples import MetricsError, load_metrics

    t0 = time.perf_counter()
    if (dataset is None) == (reconstruction is None):
        raise ViewError("give a DATASET or --reconstruction DIR (one of them)")
    if reconstruction is not None and (metrics or checkpoint or key):
        raise ViewError("--metrics, --checkpoint and --key go with a DATASET, not with --reconstruction")
    if key is not None and not layout.KEY_RE.match(key):
        raise ViewError(f"--key {key!r}: not a sample key ({{uid}}_{{clip:03d}})")
    ds = rec = scores = None
    try:
        if dataset is not None:
            ds = Dataset(dataset)
            listing = ds.listing()
            if not listing.shards:
                raise ViewError(f"DATASET {dataset}: no shards (no shard-NNNNNN.* files)")
            scores = load_metrics(metrics) if metrics else None
        else:
            rec = open_reconstruction(reconstruction)
    except (FileNotFoundError, storage.StorageError, MetricsError, ReconstructionError) as exn:
        raise ViewError(str(exn)) from None
    if checkpoint is not None:
        from pathlib import Path

        if not Path(checkpoint).exists():
            raise ViewError(f"--checkpoint {checkpoint}: no such file or run folder")
    import viser

    from viewer.app import ViewerApp

    server = viser.ViserServer(host=host, port=port, label="pipeline view", verbose=False)
    try:
        app = ViewerApp(server, dataset=ds, reconstruction=rec, metrics=scores, checkpoint=checkpoint, key=key,
                        device=device)
    except BaseException:
        server.stop()
        raise
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    return Running(server, app, f"http://{shown}:{server.get_port()}/", time.perf_counter() - t0)
