"""The reason vocabulary and the filter functions, one behaviour each."""

from __future__ import annotations

import pytest

from manifests import filters as F
from manifests.filters import Candidate, Clip, Dropped


def _c(**kw) -> Candidate:
    base = dict(uid="a1", source="objaverse", uri="objaverse:glbs/000-000/a1.glb", license="by", clip_count=2,
                clips=[Clip(0), Clip(1)], face_count=100, vertex_count=80)
    base.update(kw)
    return Candidate(**base)


def test_reasons_are_a_closed_vocabulary():
    with pytest.raises(ValueError, match="unknown drop reason 'oops'"):
        Dropped(uid="a", source="local", reason="oops", detail="")
    assert all(r == r.strip() and " " not in r for r in F.REASONS)


@pytest.mark.parametrize("raw, code", [
    ("by", "by"), ("BY-SA", "by-sa"), ("CC0", "cc0"), ("Creative Commons - Attribution", "by"),
    ("Creative Commons - Attribution - Share Alike", "by-sa"), ("cc-by-4.0", "by"), ("  by-nc ", "by-nc"),
    ("MIT License", "mit license"), (None, None), ("", None),
])
def test_normalize_license(raw, code):
    assert F.normalize_license(raw) == code


def test_license_filter():
    allowed = frozenset({"by", "cc0"})
    assert F.check_license(_c(license="cc0"), allowed) is None
    assert F.check_license(_c(license="by-nc"), allowed).reason == "license"
    assert F.check_license(_c(license=None), allowed).detail == "no licence given"
    assert F.check_license(_c(license=None, check_license=False), allowed) is None


@pytest.mark.parametrize("uid", ["../x", "has space", "", "a/b", "ü", "x" * 129])
def test_uid_rule(uid):
    d = F.check_uid(_c(uid=uid))
    assert d.reason == "invalid_uid" and d.uid == uid


def test_age_and_uids_file():
    assert F.check_age(_c(age_restricted=True)).reason == "age_restricted"
    assert F.check_age(_c()) is None
    assert F.check_uids_file(_c(), frozenset({"b"})).reason == "not_in_uids_file"
    assert F.check_uids_file(_c(), None) is None


def test_geometry_bounds_and_unknown_counts():
    assert F.check_geometry(_c(face_count=0), 1, 10, 10).reason == "too_few_faces"
    assert F.check_geometry(_c(face_count=11), 1, 10, None).reason == "too_many_faces"
    assert F.check_geometry(_c(face_count=5, vertex_count=11), 1, 10, 10).reason == "too_many_vertices"
    assert F.check_geometry(_c(face_count=None, vertex_count=None), 1, 10, 10) is None
    assert F.check_geometry(_c(face_count=10**9), 1, None, None) is None


def test_static_assets_and_clips():
    c = _c(clips=[Clip(0, "pose", 0.0), Clip(1, "walk", 1.5)])
    still = F.split_static_clips(c)
    assert [(d.reason, d.clip) for d in still] == [("static", 0)] and [k.index for k in c.clips] == [1]
    assert F.check_static(_c(clip_count=0, clips=[]), False).detail == "no animation"
    assert F.check_static(_c(clip_count=0, clips=[]), True) is None
    all_still = _c(clips=[Clip(0, "", 0.0)], clip_count=1)
    F.split_static_clips(all_still)
    assert F.check_static(all_still, False).reason == "static"
    assert F.check_static(_c(clip_count=None, clips=[]), False) is None  # unknown count: not static
    assert F.check_static(_c(clips=[Clip(0), Clip(1)]), False) is None   # count known, not read: not static


def test_cap_clips_keeps_gltf_order():
    c = _c(clip_count=5, clips=[Clip(i) for i in range(5)])
    dropped = F.cap_clips(c, 2)
    assert [k.index for k in c.clips] == [0, 1] and [d.clip for d in dropped] == [2, 3, 4]
    assert {d.reason for d in dropped} == {"max_clips"}
    assert F.cap_clips(_c(), 0) == []


def test_read_uids_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("# header\nabc\n\n  def  # why\nabc\n../x\nwith space\n")
    assert F.read_uids_file(p) == (["abc", "def"], ["../x", "with space"])


def test_reason_table_in_vocabulary_order():
    rows = list(F.reason_table({"limit": (3, 0), "static": (1, 2)}))
    assert [r[0] for r in rows] == ["static", "limit"] and rows[0][1:3] == (1, 2)
