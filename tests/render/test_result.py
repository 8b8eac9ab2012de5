"""SampleResult and the reason vocabulary (no Blender)."""

from __future__ import annotations

import pickle

import pytest

from render.reasons import REASONS, AssetProblem, meaning, status_for
from render.result import SampleResult


def test_every_reason_has_a_status_and_a_meaning():
    assert {"missing_file", "download_failed", "unsupported_format", "import_failed", "empty_scene", "too_many_faces",
            "clip_out_of_range", "no_motion", "empty_render", "render_failed", "timeout", "worker_crashed"} <= set(REASONS)
    for reason in REASONS:
        assert status_for(reason) in ("failed", "rejected") and meaning(reason)
    with pytest.raises(ValueError, match="unknown reason"):
        status_for("bad_luck")
    with pytest.raises(ValueError, match="unknown reason"):
        AssetProblem("bad_luck", "x")


def test_problem_rows_take_their_status_from_the_reason():
    r = SampleResult.problem("a", 0, "a_000", "no_motion", "still", 1.5, {"motion_max": 0.0})
    assert (r.status, r.reason, r.members) == ("rejected", "no_motion", {})
    assert SampleResult.problem("a", 0, "a_000", "import_failed", "x", 0.1).status == "failed"


def test_results_are_picklable_and_validated():
    r = SampleResult("a", 1, "a_001", "ok", None, None, 2.0, {"a_001.json": b"{}"}, {"faces": 3, "static": False})
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.nbytes == 2
    with pytest.raises(ValueError):
        SampleResult("a", 1, "a_001", "done", None, None, 1.0)
    with pytest.raises(ValueError):
        SampleResult("a", 1, "a_001", "failed", "no_motion", None, 1.0, {"a_001.json": b"{}"})
    with pytest.raises(TypeError, match="flat scalar"):
        SampleResult("a", 1, "a_001", "ok", None, None, 1.0, {}, {"coverage": [0.1, 0.2]})
