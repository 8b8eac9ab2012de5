"""benchmarks/procedural_transfer.py (issue 22's measurement) on the CPU box: the arms' category mixes; the
table rebuilt from the stored raw files of a device run matches the table that run wrote (so the numbers quoted
in BENCHMARKS.md come from the files kept beside them); `pack`'s check of what a device call will send."""

from __future__ import annotations

import argparse

import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import procedural_transfer  # noqa: E402
import procedural_transfer_gpu  # noqa: E402
from render.procedural.naming import DEFAULT_MIX, parse_categories, plan  # noqa: E402

STORED = REPO / "benchmarks/results/2026-12-07-h100-procedural-transfer-181clips"
STORED_MIX = REPO / "benchmarks/results/2026-12-07-h100-procedural-transfer-mix"


def test_arm_mixes():
    assert procedural_transfer._mix(None) == ",".join(DEFAULT_MIX)
    assert procedural_transfer._mix("soft,blob") == "soft,blob"
    mix = parse_categories(procedural_transfer._mix(procedural_transfer.ARMS["mix"][0]))
    assert mix[::2] == DEFAULT_MIX and set(mix[1::2]) == {"legacy"}
    counts = Counter(p.category for p in plan(96, 100, mix))
    assert counts["legacy"] == 48 and sum(counts.values()) == 96
    # the mix's legacy assets are the old arm's first ones, its other assets the new arm's first ones
    old = {p.uid for p in plan(96, 100, ("legacy",))}
    new = {p.uid for p in plan(96, 100, DEFAULT_MIX)}
    assert all(p.uid in (old if p.category == "legacy" else new) for p in plan(96, 100, mix))


def _before_terciles(text: str) -> list[str]:
    """The table as runs before 2026-12-07 20:45 UTC wrote it: without the copy-tercile section that ends it now."""
    lines = text.rstrip().splitlines()
    cut = next((i for i, x in enumerate(lines) if x.startswith("| real set | bin by copy")), len(lines))
    return lines[:cut - 1] if cut < len(lines) else lines


def test_table_from_stored_files_matches_the_runs_table():
    rebuilt = _before_terciles(procedural_transfer_gpu.table(STORED))
    stored = (STORED / "table.md").read_text().rstrip().splitlines()
    assert len(rebuilt) == len(stored)
    rows = [(a, b) for a, b in zip(rebuilt, stored) if a.startswith("| gltf") or a.startswith("| proc")]
    assert len(rows) == 8 + 20  # 4 sets x 2 arms, then the 20 real assets
    assert all(a == b for a, b in rows), [(a, b) for a, b in rows if a != b]
    assert "| gltf-val | new | 53 | 13.64 (13.64-13.65) | 11.94 | 11.08 | +1.70 | -0.15 |" in rebuilt


def test_table_flags_unequal_compute():
    """The mix call (16:14 UTC) ran `old` for 1,028 and 1,243 steps against 1,619-1,685 for the rest (calibrations
    taken while six runs started): its rebuilt table says so. The call before (1,677-1,799 steps, deadline noise
    within 10 %) is not flagged."""
    mix = procedural_transfer_gpu.table(STORED_MIX)
    assert "UNEQUAL COMPUTE: steps reached range 1028-1685 (fewest: old-s0)" in mix
    assert "| gltf | mix | 11 | 19.24 (19.20-19.28) | 18.53 | 19.54 | +0.71 | -0.40 |" in mix
    stored = (STORED_MIX / "table.md").read_text()
    rows = [r for r in _before_terciles(mix) if r.startswith("| gltf") or r.startswith("| proc")]
    assert rows and all(r in stored for r in rows)
    assert "UNEQUAL COMPUTE" not in procedural_transfer_gpu.table(STORED)


def test_table_splits_the_real_sets_by_how_well_copying_does():
    """The real samples in thirds by the copy baseline's psnr_obj (equal counts, the same bins for every arm): on
    the 181-clip call the model gains ~2 dB where copying is poor and loses ~1.4 dB on gltf's near-still third."""
    lines = procedural_transfer_gpu.table(STORED).splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("| real set | bin by copy"))
    assert lines[head].endswith("| new over copy | old over copy |")
    rows = lines[head + 2:head + 8]
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| gltf", "low", "4"], ["| gltf", "mid", "3"], ["| gltf", "high", "4"],
        ["| gltf-val", "low", "18"], ["| gltf-val", "mid", "17"], ["| gltf-val", "high", "18"]]
    assert rows[2] == "| gltf | high | 4 | 25.51 | -1.45 | -1.36 |"
    assert rows[3] == "| gltf-val | low | 18 | 10.56 | +2.17 | +2.31 |"
    copies = [float(r.split(" | ")[3]) for r in rows]
    assert copies[0] < copies[1] < copies[2] and copies[3] < copies[4] < copies[5]


def test_learn_command_fixed_steps_or_minutes(tmp_path):
    """--steps gives every run the same step count with the minutes as a deadline only; without it each run
    calibrates and trains for --train-minutes."""
    import argparse

    a = argparse.Namespace(steps=1500, train_minutes=6.0, calib_steps=30, preset="small", sets=["x=1"])
    cmd = procedural_transfer_gpu.learn_command(a, tmp_path, "old", 1, tmp_path / "old-s1")
    assert cmd[cmd.index("--steps") + 1] == "1500" and cmd[cmd.index("--minutes") + 1] == "6.0"
    assert "--train-minutes" not in cmd and "--calib-steps" not in cmd
    assert cmd[cmd.index("--train") + 1] == str(tmp_path / "train/old") and "seed=1" in cmd and "x=1" in cmd
    a.steps = 0
    cmd = procedural_transfer_gpu.learn_command(a, tmp_path, "old", 1, tmp_path / "old-s1")
    assert "--steps" not in cmd and cmd[cmd.index("--train-minutes") + 1] == "6.0"
    with pytest.raises(SystemExit):
        procedural_transfer_gpu.main(["device", "--out", str(tmp_path / "o"), "--steps", "-1"])


def test_composite_arms_train_on_both_folders_and_the_table_takes_a_reference(tmp_path):
    """`new+new-x` trains on train/new and train/new-x joined with '::' (resolve_shards' several-specs syntax);
    the table's last column subtracts --ref, `old` by default, and an unknown --ref is refused by name."""
    import argparse

    from training.data import synthetic
    from training.data.shardspec import resolve_shards

    a = argparse.Namespace(steps=100, train_minutes=1.0, calib_steps=30, preset="small", sets=[])
    cmd = procedural_transfer_gpu.learn_command(a, tmp_path, "new+new-x", 0, tmp_path / "r")
    spec = cmd[cmd.index("--train") + 1]
    assert spec == f"{tmp_path}/train/new::{tmp_path}/train/new-x"
    for n, arm in enumerate(("new", "new-x")):  # one committed shard in each folder
        synthetic.commit_shard(tmp_path / "train" / arm, 0, [synthetic.make_sample(f"a{n}", n, views=2, frames=2, size=16)])
    assert resolve_shards(spec) == [*resolve_shards(f"{tmp_path}/train/new"), *resolve_shards(f"{tmp_path}/train/new-x")]
    assert len(resolve_shards(spec)) == 2
    rows = procedural_transfer_gpu.table(STORED_MIX, "new").splitlines()
    assert rows[0].endswith("| arm minus new |")
    assert "| gltf | old | 11 | 19.64 (19.32-19.96) | 18.53 | 19.54 | +1.11 | -0.24 |" in rows
    assert any(r.startswith("| gltf | new |") and r.endswith("|  |") for r in rows)
    assert procedural_transfer_gpu.table(STORED_MIX).splitlines()[0].endswith("| arm minus old |")
    with pytest.raises(SystemExit, match="--ref 'newer': no such arm"):
        procedural_transfer_gpu.table(STORED_MIX, "newer")


def test_scale_arms_keep_one_clip_per_asset_or_leave_an_arms_assets_out(tmp_path, gltf_dir):
    """The curation behind train/new-wide (first clip of each asset) and train/new-x (another arm's assets left
    out), on the real glTF assets of ../shared (the real `pipeline curate`, no Blender)."""
    from manifests import read_manifest

    real = gltf_dir
    log = tmp_path / "log"
    n_all = procedural_transfer._curate(real, tmp_path / "all.parquet", log)
    every = read_manifest(tmp_path / "all.parquet")
    assert n_all == len(every) and every["uid"].value_counts().max() > 1  # some assets hold several clips
    n_one = procedural_transfer._curate(real, tmp_path / "one.parquet", log, max_clips=1)
    one = read_manifest(tmp_path / "one.parquet")
    assert n_one == every["uid"].nunique() and one["uid"].is_unique
    first = every.sort_values(["uid", "clip"]).groupby("uid")["clip"].first()
    assert dict(zip(one["uid"], one["clip"])) == first.to_dict()  # the first clip of each asset
    drop = set(sorted(every["uid"].unique())[:2])
    n_x = procedural_transfer._curate(real, tmp_path / "x.parquet", log, clips=3, exclude=drop)
    x = read_manifest(tmp_path / "x.parquet")
    assert n_x == 3 and not set(x["uid"]) & drop
    assert set(procedural_transfer.SCALE_ARMS) == {"new-wide", "new-x", "new-x23"}
    # the first k assets of a batch are a batch of k (the uid's index counts per category): what new-x and new-x23
    # leave out
    from render.procedural.naming import DEFAULT_MIX, plan

    first = procedural_transfer._first_assets(10)
    assert len(first) == 10 and first == {x.uid for x in plan(40, 100, DEFAULT_MIX)[:10]}
    assert first < procedural_transfer._first_assets(20) and procedural_transfer._first_assets(0) == set()
    # new-x23: four times the assets, the first two multiples left out, twice the clips
    assert procedural_transfer.SCALE_ARMS["new-x23"] == (4, 16, 2, 2)
    a = argparse.Namespace(steps=100, train_minutes=1.0, calib_steps=30, preset="small", sets=[])
    cmd = procedural_transfer_gpu.learn_command(a, tmp_path, "new+new-x+new-x23", 0, tmp_path / "r")
    assert cmd[cmd.index("--train") + 1] == "::".join(f"{tmp_path}/train/{x}" for x in ("new", "new-x", "new-x23"))


def test_carry_check_flags_a_pack_too_large_for_one_call(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "a.whl").write_bytes(b"x" * (10 << 20))
    (wheels / "notes.txt").write_bytes(b"x" * (40 << 20))  # not a wheel: not carried with them
    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(b"x" * (50 << 20))
    line = procedural_transfer.carry_check(archive, wheels, 3 << 20)
    assert line.startswith("a call carrying [.whl, data.tar.gz]: 63.0 MiB of 64 (tree 3.0, wheels 10.0, archive 50.0)")
    assert "TOO LARGE" not in line
    assert "64.0 MiB of 64" in procedural_transfer.carry_check(archive, wheels, 4 << 20)
    assert "65.0 MiB of 64 (tree 5.0" in procedural_transfer.carry_check(archive, wheels, 5 << 20)
    assert "TOO LARGE" in procedural_transfer.carry_check(archive, wheels, 5 << 20)


def test_working_tree_bytes_count_what_a_call_sends():
    tree = procedural_transfer._tree_bytes()
    readme = (REPO / "README.md").stat().st_size
    assert readme < tree < 64 << 20  # tracked files are counted, ignored ones (.venv, .scratch) are not


def test_table_salvages_runs_cut_by_the_budget():
    """The 4x call (2026-12-08 01:00 UTC) ran out of its budget after the 4x arm's runs had reached their 1,500
    steps and gpu_learn had scored heldout/gltf, before `device` renamed that file or wrote learn.json: the table
    takes those gltf rows (so BENCHMARKS.md's 4x row comes from the kept files), says which runs were cut, and
    leaves the sets they were not scored on without a row for them."""
    stored = REPO / "benchmarks/results/2026-12-08-h100-procedural-transfer-4x"
    text = procedural_transfer_gpu.table(stored, "new")
    assert "| gltf | new+new-x+new-x23 | 11 | 19.92 (19.89-19.95) | 18.53 | 19.54 | +1.39 | -0.04 |" in text
    assert "| gltf | new+new-x | 11 | 20.10 (20.04-20.16) | 18.53 | 19.54 | +1.57 | +0.14 |" in text
    assert "| new+new-x+new-x23-s0 | 1500 (cut before learn.json) | | | |" in text
    assert "CUT BY THE BUDGET: new+new-x+new-x23-s0, new+new-x+new-x23-s1 wrote no learn.json" in text
    assert not any(r.startswith("| gltf-val | new+new-x") for r in text.splitlines())
    # what the call itself wrote (without the salvage) agrees on every row both have
    own = [r for r in (stored / "table.md").read_text().splitlines()
           if r.startswith(("| gltf |", "| gltf-val |")) and r.split(" | ")[1].startswith("new")]
    assert len(own) == 3 and all(r in text for r in own)


def test_generate_links_a_prefix_from_a_larger_folder(tmp_path):
    """The scale arms' folders (and train/new) are prefixes of the largest: `_generate` hard-links the first COUNT
    assets of the generator's plan from a donor holding more, instead of generating them again (the files here stand
    in for GLBs: what is tested is which ones are linked)."""
    donor = tmp_path / "train-new4x"
    donor.mkdir()
    for item in plan(12, 100, DEFAULT_MIX):
        (donor / f"{item.uid}.glb").write_bytes(item.uid.encode())
    folder = tmp_path / "train-new"
    procedural_transfer._generate(folder, 5, 100, None, True, True, tmp_path / "log", (donor,))
    want = {p.uid for p in plan(5, 100, DEFAULT_MIX)}
    assert {f.stem for f in folder.glob("*.glb")} == want
    assert all((folder / f"{u}.glb").stat().st_ino == (donor / f"{u}.glb").stat().st_ino for u in want)
    procedural_transfer._generate(folder, 5, 100, None, True, True, tmp_path / "log", (donor,))  # done: a no-op
    with pytest.raises(SystemExit, match="holds 5 assets, not 6"):
        procedural_transfer._generate(folder, 6, 100, None, True, True, tmp_path / "log", (donor,))
