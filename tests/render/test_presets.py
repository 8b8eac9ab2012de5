"""Render presets: the three named configurations, overrides, and errors that name the flag."""

from __future__ import annotations

import json

import pytest

from render.presets import PRESETS, RenderSpec, get_preset, with_row_settings


def test_debug_preset_is_tiny():
    s = get_preset("debug")
    assert (s.resolution, s.num_frames, s.fixed_views, s.random_views) == (64, 4, 4, 0)
    assert s.samples <= 8


def test_lrm4d_preset_has_fixed_and_random_views():
    s = get_preset("lrm4d")
    assert (s.resolution, s.num_frames) == (256, 24)
    assert s.fixed_views > 0 and s.random_views > 0


def test_l4gm_preset_matches_the_paper_setup():
    s = get_preset("l4gm")
    assert s.resolution == 512
    assert s.fixed_views == 16 and s.fixed_elevations_deg == (0.0,)
    assert s.random_views == 32 and s.random_elevation_deg == (-5.0, 30.0)
    assert s.fixed_radius == 1.5 and s.random_radius == (1.5, 1.5)
    assert s.fov_deg == pytest.approx(49.1)


def test_overrides_apply_and_none_means_not_given():
    s = get_preset("lrm4d", resolution=128, num_frames=None, samples=8)
    assert (s.resolution, s.num_frames, s.samples, s.name) == (128, 24, 8, "lrm4d")


@pytest.mark.parametrize("field, value, flag", [
    ("resolution", 3, "--resolution"), ("num_frames", 0, "--frames"), ("samples", 0, "--samples"),
    ("device", "tpu", "--device"), ("engine", "workbench", "--engine"), ("fixed_views", -1, "--views"),
    ("framing", "follow", "--framing"), ("min_coverage", 1.5, "--min-coverage"), ("min_coverage", -0.1, "--min-coverage"),
])
def test_bad_values_name_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        get_preset("debug", **{field: value})


def test_no_views_at_all_is_an_error():
    with pytest.raises(ValueError, match="fixed \\+ random views"):
        get_preset("debug", fixed_views=0, random_views=0)


def test_camera_inside_the_object_is_an_error():
    with pytest.raises(ValueError, match="fixed_radius"):
        get_preset("debug", fixed_radius=0.5)


def test_unknown_preset_and_unknown_setting():
    with pytest.raises(ValueError, match="--preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown render setting"):
        get_preset("debug", colour="red")


def test_row_render_settings_are_overrides():
    base = get_preset("debug")
    dense = with_row_settings(base, json.dumps({"fixed_views": 8, "num_frames": 6, "fixed_elevations_deg": [0, 30]}))
    assert (dense.fixed_views, dense.num_frames, dense.fixed_elevations_deg) == (8, 6, (0.0, 30.0))
    assert with_row_settings(base, None) is base
    assert with_row_settings(base, float("nan")) is base
    with pytest.raises(ValueError, match="not valid JSON"):
        with_row_settings(base, "{fixed_views: 8")
    with pytest.raises(ValueError, match="unknown render setting"):
        with_row_settings(base, '{"views": 8}')
    with pytest.raises(ValueError, match="--views"):
        with_row_settings(base, '{"fixed_views": -2}')


def test_spec_round_trips_through_a_dict():
    for make in PRESETS.values():
        s = make()
        assert RenderSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_framing_defaults_to_track_in_every_preset_and_union_can_be_asked_for():
    for make in PRESETS.values():
        assert make().framing == "track" and 0 < make().min_coverage < 0.05
    assert get_preset("lrm4d", framing="union").framing == "union"
    assert with_row_settings(get_preset("debug"), '{"framing": "union", "min_coverage": 0}').min_coverage == 0
