"""Pass encoders (no Blender): 16-bit depth with a scale, 0 = no surface; normals; WebP."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from render import passes


def test_depth_round_trips_within_one_code_step():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 3.0, size=(16, 16)).astype(np.float32)
    alpha = np.full((16, 16), 255, np.uint8)
    scale = passes.depth_scale_for(3.5)
    data = passes.encode_depth(depth, alpha, scale)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "I;16"  # a real 16-bit grey PNG
    back = passes.decode_depth(data, scale)
    assert np.abs(back - depth).max() <= scale / 2 + 1e-6


def test_depth_is_zero_where_there_is_no_surface():
    depth = np.array([[1.0, 1e10], [2.0, 1.5]], np.float32)
    alpha = np.array([[255, 255], [0, 10]], np.uint8)
    back = passes.decode_depth(passes.encode_depth(depth, alpha, 1e-3), 1e-3)
    assert back[0, 1] == 0 and back[1, 0] == 0  # background depth sample, and alpha 0
    assert back[0, 0] > 0 and back[1, 1] > 0


def test_normals_round_trip():
    n = np.array([[[0, 0, 1], [1, 0, 0]], [[0, -1, 0], [0.6, 0.8, 0]]], np.float32)
    mask = np.array([[True, True], [True, False]])
    back = passes.decode_normal(passes.encode_normal(n, mask))
    np.testing.assert_allclose(back[mask], n[mask], atol=1 / 127)
    assert (back[1, 1] == 0).all()


def test_webp_lossless_keeps_rgba():
    rgba = np.random.default_rng(1).integers(0, 256, size=(8, 8, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    webp = passes.to_webp(buf.getvalue(), 100)
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    np.testing.assert_array_equal(passes.decode_rgba(webp), rgba)


def test_image_stats_coverage_and_border():
    a = np.zeros((8, 8), np.uint8)
    a[3:5, 3:5] = 255
    assert passes.image_stats(a) == {"coverage": 4 / 64, "touches_border": False}
    a[0, 4] = 1
    assert passes.image_stats(a)["touches_border"] is True


def test_png_metadata_is_stripped_without_touching_pixels():
    from PIL import PngImagePlugin

    rgba = np.random.default_rng(2).integers(0, 256, size=(8, 8, 4), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("cycles.ViewLayer.render_time", "00:00.01")
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", pnginfo=info)
    stripped = passes.strip_png_metadata(buf.getvalue())
    assert b"render_time" in buf.getvalue() and b"render_time" not in stripped
    np.testing.assert_array_equal(passes.decode_rgba(stripped), rgba)
