"""`pipeline view` end to end in a real browser: the command started on loopback, opened in Debian's
headless chromium (WebGL through SwiftShader), the scene on screen, the time slider moved and the
picture changing; the exported reconstruction opened from disk with no server."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from viewer.dataset import Dataset
from tests.viewer.browser import (canvas, chromium_page, have_chromium, open_viewer, orange_pixels, pipeline_view,
                                  time_slider, wait_for)

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                                                            "(apt-get install chromium; .ci/run installs it)")

SHOWN = 800  # frustum-coloured pixels: an empty scene (grid only) has none


def _move_time(page, steps: int) -> str:
    """Keyboard steps on the time slider's thumb (as a user would); its new position."""
    thumb = time_slider(page)
    assert thumb.get_attribute("aria-valuenow") == "0"
    thumb.focus()
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    return thumb.get_attribute("aria-valuenow")


def test_dataset_sample_in_chromium_changes_with_the_time_slider(procedural_one, first_key, tmp_path):
    T = Dataset(str(procedural_one)).sample(0, first_key).T
    with pipeline_view(str(procedural_one)) as url, chromium_page() as page:
        open_viewer(page, url)
        before = wait_for(page, lambda px: orange_pixels(px) > SHOWN and px.std() > 12, what="the sample's frustums")
        canvas(page, tmp_path / "dataset_t0.png")  # kept for a look when the test fails
        assert _move_time(page, T // 2) == str(T // 2)  # mid-clip (a looping clip ends where it starts)
        after = wait_for(page, lambda px: np.abs(px - before).mean() > 0.5, what="a change after moving the slider")
        canvas(page, tmp_path / "dataset_tmid.png")
        assert orange_pixels(after) > SHOWN


def test_reconstruction_in_chromium_plays_its_splats(reconstruction, tmp_path):
    with pipeline_view("--reconstruction", str(reconstruction)) as url, chromium_page() as page:
        open_viewer(page, url)
        before = wait_for(page, lambda px: orange_pixels(px) > SHOWN and px.std() > 12, what="the input views")
        # the splats: colours that are neither the white page, the grey grid nor the frustums' orange
        assert _move_time(page, 1) == "1"
        wait_for(page, lambda px: np.abs(px - before).mean() > 0.3, what="other splats at another time")


def test_exported_reconstruction_opens_from_disk_without_a_server(reconstruction, tmp_path):
    out = tmp_path / "reconstruction.html"
    r = CliRunner().invoke(cli, ["view", "--reconstruction", str(reconstruction), "--export", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "__VISER_EMBED_DATA__" in html and "ws://" not in html.split("__VISER_EMBED_DATA__")[1][:100]
    with chromium_page() as page:
        page.goto(out.as_uri())
        page.wait_for_selector("canvas", timeout=60_000)
        wait_for(page, lambda px: orange_pixels(px) > SHOWN and px.std() > 12, what="the exported scene")
