"""The demo report's section on the viewer: how to open the demo's dataset and reconstruction in
`pipeline view` (here and from another machine), and the reconstruction as an embedded 3D scene (the
self-contained HTML file that `pipeline view --export` wrote, shown in an iframe; no server needed)."""

from __future__ import annotations

import html
import shlex
from pathlib import Path


def demo_section(demo_dir: Path, data: Path, metrics: Path, run_dir: Path) -> str:
    """HTML for the report; the commands name the demo's own folders."""
    q = lambda p: html.escape(shlex.quote(str(p)))  # noqa: E731
    rec = demo_dir / "reconstruction"
    scene = demo_dir / "report_files" / "reconstruction.html"
    parts = [
        "<h2>Look at it in 3D: pipeline view</h2>",
        "<p>The dataset (every camera as a frustum with its image, a time slider, depth as coloured points, the "
        "anchor path of tracked clips; samples filterable by status and reason, sorted worst first by the "
        "evaluation), and the reconstruction below as Gaussian splats over time. Each command prints a URL "
        "(<code>http://127.0.0.1:8080/</code>) to open in a browser:</p><pre>",
        f"pipeline view {q(data)} --metrics {q(metrics)} --checkpoint {q(run_dir)}",
        f"pipeline view --reconstruction {q(rec)}</pre>",
        "<p>On a remote machine, keep the viewer on its loopback address and forward the port over SSH: "
        "<code>ssh -N -L 8080:127.0.0.1:8080 user@host</code>, then open <code>http://127.0.0.1:8080/</code> "
        "locally.</p>",
    ]
    if scene.is_file():
        parts.append("<p>One reconstruction (the last checkpoint on a clip it never trained on when there is one), "
                     "recorded as a self-contained scene: drag to orbit, scroll to zoom, the bar at the bottom "
                     "plays the frames.</p><iframe src='report_files/reconstruction.html' width='100%' height='520' "
                     "style='border:1px solid #ccc'></iframe>")
    else:
        parts.append("<p>(No embedded 3D scene: the view extra, viser, is not installed.)</p>")
    return "\n".join(parts)
