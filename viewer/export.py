"""A reconstruction as one self-contained HTML file: viser's prebuilt client with the scene recorded
into it (splats per frame, played in a loop with a scrubber, the input views as frustums). It opens from
disk in a browser with no server, so a report can embed the Gaussians (`pipeline view --reconstruction
DIR --export FILE.html`; `pipeline demo` writes one for its report).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from viewer.geometry import overview_eye
from viewer.recon import Reconstruction, input_views
from viewer.scene import SplatLayer, add_input_views


def export_html(rec: Reconstruction, out: str | os.PathLike, fps: float = 4.0) -> Path:
    """Record `rec` into a standalone HTML file at `out` (atomically); returns its path."""
    import viser

    out = Path(out)
    # A private server on an ephemeral loopback port: the scene is built through it and recorded; no
    # browser ever connects, and it is stopped before returning.
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        scene = server.scene
        scene.set_up_direction("+z")
        views, _ = input_views(rec)
        first = rec.splats(0)
        centre = first.centers.mean(0) if len(first) else np.zeros(3)
        add_input_views(scene, views, centre)
        eye = overview_eye(centre, views[0].c2w[:3, 3] if views else None)
        server.initial_camera.position = tuple(float(c) for c in eye)
        server.initial_camera.look_at = tuple(float(c) for c in centre)
        server.initial_camera.up = (0.0, 0.0, 1.0)
        layer = SplatLayer(scene, "/splats")
        layer.show(first)
        recording = server.get_scene_serializer()
        for k in range(1, len(rec)):
            recording.insert_sleep(1.0 / fps)
            layer.show(rec.splats(k))
        if len(rec) > 1:
            recording.insert_sleep(1.0 / fps)
        html = recording.as_html()
    finally:
        server.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
