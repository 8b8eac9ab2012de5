"""The procedural categories (render.procedural): one real Blender-built asset per category, read back with an
independent GLB reader (tests/render/gltf_pose.py): skins and animation channels are valid glTF, the clips
move the parts they name (checked by forward kinematics on the exported file), textures are in the file,
same uid -> same bytes, the ablation switches change only what they name; and every category renders clips
that pass the worker's checks under both framings (tiny real renders)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="render extra (bpy 5.0.1) not installed")

from render.procedural import CATEGORIES, DEFAULT_MIX, category_of, generate_assets, parse_categories, plan  # noqa: E402
from tests.render.conftest import render_row  # noqa: E402
from tests.render.gltf_pose import Glb, rotation_angle  # noqa: E402

pytestmark = pytest.mark.blender

SEED = 7
SKINNED = ("biped", "quadruped", "winged", "crawler")
CLIPS = {"biped": {"idle", "walk"}, "quadruped": {"idle", "walk"}, "winged": {"idle", "fly"}, "crawler": {"idle", "crawl"}}


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, list]:
    """Two assets of every category (seed 7), generated once: category -> [path, path]."""
    out = tmp_path_factory.mktemp("categories")
    paths = generate_assets(out, 2 * len(CATEGORIES), SEED, categories=CATEGORIES)
    by: dict[str, list] = {}
    for p in paths:
        by.setdefault(category_of(p.stem), []).append(p)
    return by


def test_names_and_mixes():
    assert [p.uid for p in plan(4, 3, ("biped", "vehicle"))] == ["proc_biped_s3_00000", "proc_vehicle_s3_00000",
                                                                  "proc_biped_s3_00001", "proc_vehicle_s3_00001"]
    assert plan(1, 3, ("legacy",))[0].uid == "proc_s3_00000"
    assert plan(1, -2, ("soft",), textures=False, shapes=False)[0].uid == "proc_soft-notex-noaug_s-2_00000"
    for uid, cat in (("proc_s3_00001", "legacy"), ("proc_quadruped_s0_00012", "quadruped"), ("proc_blob-noaug_s1_00000", "blob"),
                     ("Fox", None), ("proc_x", None)):
        assert category_of(uid) == cat
    assert parse_categories(None) == DEFAULT_MIX and parse_categories(" biped, ,vehicle") == ("biped", "vehicle")
    with pytest.raises(ValueError, match="unknown procedural category.*dragon"):
        parse_categories("biped,dragon")
    assert set(DEFAULT_MIX) == set(CATEGORIES)


def test_every_category_has_several_named_clips_in_glb_order(assets):
    assert set(assets) == set(CATEGORIES)
    for cat, paths in assets.items():
        for p in paths:
            g = Glb(p)
            names = [a["name"] for a in g.doc["animations"]]
            assert len(names) >= 2 and len(set(names)) == len(names), (p.name, names)
            assert CLIPS.get(cat, set()) <= set(names), (p.name, names)
            for a in g.doc["animations"]:
                t0, t1 = g.span(a)
                assert t0 == pytest.approx(0.0, abs=1e-6) and 0.45 <= t1 - t0 <= 4.5, (p.name, a["name"], t1 - t0)
                for ch in a["channels"]:  # every channel targets a real node and has as many values as key times
                    s = a["samplers"][ch["sampler"]]
                    assert 0 <= ch["target"]["node"] < len(g.doc["nodes"])
                    n_in, n_out = g.doc["accessors"][s["input"]]["count"], g.doc["accessors"][s["output"]]["count"]
                    if ch["target"]["path"] == "weights":
                        n_out //= len(g.doc["meshes"][g.doc["nodes"][ch["target"]["node"]]["mesh"]]["primitives"][0]["targets"])
                    assert n_in == n_out, (p.name, a["name"], ch)


def test_skins_are_valid(assets):
    for cat in SKINNED:
        for p in assets[cat]:
            g = Glb(p)
            assert g.doc.get("skins"), p.name
            for skin in g.doc["skins"]:
                ibm = g.accessor(skin["inverseBindMatrices"])
                assert len(ibm) == len(skin["joints"]) >= 8, p.name
                for j, m in zip(skin["joints"], ibm):  # inverse bind matrix x the joint's rest world matrix = identity
                    assert np.allclose(m.reshape(4, 4).T @ g.world(j, {}), np.eye(4), atol=1e-4), (p.name, j)
            for node in (n for n in g.doc["nodes"] if "skin" in n):
                for prim in g.doc["meshes"][node["mesh"]]["primitives"]:
                    joints, weights = g.accessor(prim["attributes"]["JOINTS_0"]), g.accessor(prim["attributes"]["WEIGHTS_0"])
                    n_joints = len(g.doc["skins"][node["skin"]]["joints"])
                    assert joints.max() < n_joints and np.allclose(weights.sum(1), 1, atol=2e-3), p.name


def _moves(g: Glb, clip: str, node_name: str) -> tuple[float, float]:
    """Largest world displacement and largest rotation (from the first time) of a node over a clip."""
    w = g.track(clip, g.node(node_name))
    return float(np.linalg.norm(w[:, :3, 3] - w[0, :3, 3], axis=1).max()), max(rotation_angle(w[0], m) for m in w)


def test_clips_move_the_parts_they_name(assets):
    for p in assets["biped"]:  # a foot swings through a gait: translates in world space across the walk
        g = Glb(p)
        height = float(np.ptp(g.accessor(g.doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"])[:, 1]))
        assert _moves(g, "walk", "foot_L")[0] > 0.08 * height, p.name
        assert _moves(g, "idle", "neck")[1] > 0.1, p.name
    for p in assets["quadruped"]:
        g = Glb(p)
        assert _moves(g, "walk", "hind_foot_L")[0] > 0.05 and _moves(g, "walk", "front_lower_R")[1] > 0.1, p.name
    for p in assets["winged"]:  # the wing tip flaps up and down
        g = Glb(p)
        w = g.track("fly", g.node("wing2_L"))
        assert np.ptp(w[:, 1, 3]) > 0.1, p.name  # glTF +Y is up
    for p in assets["crawler"]:
        g = Glb(p)
        assert _moves(g, "crawl", "leg0b_L")[1] > 0.2 and _moves(g, "idle", "antenna0_R")[1] > 0.1, p.name
    for p in assets["vehicle"]:  # a wheel (or the machine's column) turns about its axle
        g = Glb(p)
        names = [n.get("name", "") for n in g.doc["nodes"]]
        if "column" in names:
            assert _moves(g, "work", "column")[1] > 0.3, p.name
        else:
            wheel = next(n for n in names if re.fullmatch(r"(wheel|road)0_L", n))
            assert _moves(g, "drive", wheel)[1] > 1.0, p.name
    for p in assets["soft"] + assets["blob"]:  # something deforms or moves in every clip
        g = Glb(p)
        for a in g.doc["animations"]:
            t0, t1 = g.span(a)
            poses = [g.sample(a, t) for t in np.linspace(t0, t1, 9)]
            change = max(float(np.abs(q[k] - poses[0][k]).max()) for q in poses[1:] for k in q)
            assert change > 0.05, (p.name, a["name"], change)


def test_textures_are_png_images_and_switch_off_with_flat_colours(assets, tmp_path):
    for cat, paths in assets.items():
        for p in paths:
            images = Glb(p).image_bytes()
            assert images and all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in images), p.name
    flat = generate_assets(tmp_path, 2, SEED, categories="biped,vehicle", textures=False)
    for p in flat:
        g = Glb(p)
        assert not g.doc.get("images") and all("baseColorFactor" in m["pbrMetallicRoughness"] for m in g.doc["materials"]), p.name
        full = Glb(assets[category_of(p.stem)][0])
        assert [a["name"] for a in g.doc["animations"]] == [a["name"] for a in full.doc["animations"]]  # same asset otherwise


def test_shape_switch_removes_thin_parts_and_cuts_and_keeps_the_motion(assets, tmp_path):
    plain = generate_assets(tmp_path, 2, SEED, categories="vehicle", shapes=False)
    full = assets["vehicle"]
    for a, b in zip(plain, full):
        ga, gb = Glb(a), Glb(b)
        names_a = [n.get("name", "") for n in ga.doc["nodes"]]
        assert not any(re.search(r"spoke|strut|antenna", n) for n in names_a), names_a
        assert [x["name"] for x in ga.doc["animations"]] == [x["name"] for x in gb.doc["animations"]]
    rough = [max(m["pbrMetallicRoughness"].get("roughnessFactor", 1) for m in Glb(p).doc["materials"]) for p in full]
    metal = [max(m["pbrMetallicRoughness"].get("metallicFactor", 1) for m in Glb(p).doc["materials"]) for p in full]
    assert max(metal) > 0.5 and min(rough) < 1.0  # per-part finishes: some metal, not all fully rough


def test_same_uid_same_bytes_whatever_the_mix(assets, tmp_path):
    again = generate_assets(tmp_path, len(CATEGORIES), SEED, categories=CATEGORIES[::-1])
    for p in again:
        assert p.read_bytes() == assets[category_of(p.stem)][0].read_bytes(), p.name
    cli = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "render.procedural", "--out", str(cli), "--count", "1", "--seed", str(SEED),
                        "--categories", "crawler"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert (cli / "proc_crawler_s7_00000.glb").read_bytes() == assets["crawler"][0].read_bytes()
    bad = subprocess.run([sys.executable, "-m", "render.procedural", "--out", str(cli), "--categories", "dragon"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--categories" in bad.stderr and "dragon" in bad.stderr


@pytest.mark.parametrize("framing", ["union", "track"])
def test_every_category_renders_clips_that_pass_the_checks(worker, assets, framing):
    for cat, paths in sorted(assets.items()):
        p = paths[0]
        n_clips = len(Glb(p).doc["animations"])
        for clip in sorted({0, n_clips - 1}):
            r = render_row(worker, p, clip=clip, framing=framing, resolution=24, samples=1, fixed_views=2)
            assert r.status == "ok", f"{p.name} clip {clip} ({framing}): {r.reason}: {r.detail}"
            assert r.stats["motion_max"] > 0.005 and r.stats["coverage_mean"] > 0.003, (p.name, clip, r.stats)
