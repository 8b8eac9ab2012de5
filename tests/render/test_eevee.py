"""EEVEE is selectable and writes the same planar depth as Cycles (slow on CPU: ~30 s for first use)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render.presets import get_preset  # noqa: E402
from tests.render.checks import Sample  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_eevee_depth_matches_cycles(worker, synthetic):
    from render.worker import RenderWorker

    one = {"allow_static": True, "fixed_views": 1, "fixed_elevations_deg": [25], "resolution": 32, "samples": 1}
    cycles = Sample(render_row(worker, synthetic["tilted_plane"], **one))
    with RenderWorker(get_preset("debug", engine="eevee")) as eevee_worker:
        r = render_row(eevee_worker, synthetic["tilted_plane"], **one)
    assert r.status == "ok", r.detail
    eevee = Sample(r)
    assert eevee.meta["render"]["engine"] == "eevee"
    both = (cycles.rgba[0][0][..., 3] == 255) & (eevee.rgba[0][0][..., 3] == 255)
    assert both.sum() > 30
    np.testing.assert_allclose(eevee.depth[0][0][both], cycles.depth[0][0][both], atol=0.01)
