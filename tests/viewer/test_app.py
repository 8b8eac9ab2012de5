"""The viewer's dataset browser, driven through its GUI handles on a real viser server: shards with
their state, samples filtered by status and reason and sorted worst first, bad shards shown as such,
lazy listing, an HTTP dataset read by ranges, on-the-spot reconstruction, and nothing the browser sends
reaching the filesystem."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from contracts import layout
from pipeline.cli import cli
from contracts.shardread import iter_shard
from pipeline.shards import ShardWriter
from render.result import SampleResult
from tests.httpserver import serve_directory
from viewer.server import start


@pytest.fixture
def running():
    """start(...) with the servers stopped afterwards."""
    made = []

    def go(*args, **kw):
        r = start(*args, port=0, **kw)
        made.append(r)
        return r

    yield go
    for r in made:
        r.stop()


def _copy_shard(src: Path, n_src: int, dst: Path, n: int, parts=("tar", "parquet", "members.parquet", "stats.json")):
    for part in parts:
        shutil.copy(src / f"shard-{n_src:06d}.{part}", dst / f"shard-{n:06d}.{part}")


@pytest.fixture(scope="module")
def mixed(procedural_one, tmp_path_factory) -> Path:
    """Shard 0: the real render; shard 1: one ok sample (the same clip) beside failed and rejected rows,
    written by the real ShardWriter; shards 5-11: partial, corrupt stats.json, corrupt parquet, truncated
    tar, missing parquet; 10 and 11 older shards (no tar_bytes in stats.json) with truncated tars, without
    and with a member index."""
    d = tmp_path_factory.mktemp("mixed")
    _copy_shard(procedural_one, 0, d, 0)
    sample = next(iter_shard(procedural_one / layout.tar_name(0)))
    w = ShardWriter(d, 1)
    uid, clip = sample.key.rsplit("_", 1)
    w.add(SampleResult(uid, int(clip), sample.key, "ok", None, None, 1.0, members=sample.members))
    w.add(SampleResult.problem("brokenasset", 0, "brokenasset_000", "import_failed", "truncated GLB", 0.1))
    w.add(SampleResult.problem("tinyasset", 0, "tinyasset_000", "too_small", "covers 0.1% of the image", 0.2))
    w.add(SampleResult.problem("stillasset", 0, "stillasset_000", "no_motion", "moves 0.001", 0.2))
    w.add(SampleResult.problem("stillasset", 1, "stillasset_001", "no_motion", "moves 0.000", 0.2))
    w.commit()
    _copy_shard(procedural_one, 0, d, 5, parts=("tar",))  # partial: no stats.json
    _copy_shard(procedural_one, 0, d, 6)
    (d / "shard-000006.stats.json").write_text("{not json")
    _copy_shard(procedural_one, 0, d, 7)
    (d / "shard-000007.parquet").write_bytes(b"PAR1 garbage")
    _copy_shard(procedural_one, 0, d, 8)
    tar = (d / "shard-000008.tar").read_bytes()
    (d / "shard-000008.tar").write_bytes(tar[: len(tar) // 3])
    _copy_shard(procedural_one, 0, d, 9, parts=("tar", "stats.json", "members.parquet"))
    stats = json.loads((procedural_one / "shard-000000.stats.json").read_text())
    stats.pop("tar_bytes")
    for n, parts in ((10, ("parquet",)), (11, ("parquet", "members.parquet"))):  # older shards: no tar_bytes
        _copy_shard(procedural_one, 0, d, n, parts=parts)
        (d / f"shard-{n:06d}.stats.json").write_text(json.dumps(stats))
        (d / f"shard-{n:06d}.tar").write_bytes(tar[: len(tar) // 3])
    return d


def _pick(app, dropdown, startswith: str) -> None:
    dropdown.value = next(o for o in dropdown.options if o.startswith(startswith))


def test_bad_shards_are_shown_as_such_and_the_server_goes_on(mixed, running):
    r = running(str(mixed))
    app = r.app
    assert "committed" in app.shard.value and app.reader is not None  # the first committed sample is drawn
    assert "missing" in app.ds_info.content and "000009" in app.ds_info.content
    seen = {}
    for n in (5, 6, 7, 8, 9, 10, 11):
        _pick(app, app.shard, f"{n:06d}")
        seen[n] = app.shard_info.content + " | " + app.sample_info.content
    assert "partial" in seen[5] and "not committed" in seen[5]
    assert "shard-000006.stats.json: unreadable" in seen[6]
    assert "shard-000007.parquet: unreadable" in seen[7]
    cut = (mixed / "shard-000008.tar").stat().st_size
    assert f"shard-000008.tar: {cut} bytes, but its stats.json records" in seen[8]
    assert "nothing to draw" not in seen[8] and "⚠" in seen[8].split(" | ")[1]  # the sample: not drawn, said why
    assert "shard-000009.parquet: missing" in seen[9]
    assert "shard-000010.tar: truncated tar" in seen[10] and "no member index" in seen[10]
    assert "shard-000011.tar: the tar" in seen[11] and "does not end where its member index says" in seen[11]
    _pick(app, app.shard, "000000")  # still serving: the good shard draws again
    assert app.reader is not None and app.layer.frustums


def test_samples_filter_by_status_and_reason(mixed, running):
    app = running(str(mixed)).app
    _pick(app, app.shard, "000001")
    assert "1 ok, 1 failed, 3 rejected" in app.shard_info.content
    assert len(app.sample_dd.options) == 5
    app.status_dd.value = "rejected"
    assert sorted(app.reason_dd.options) == ["all", "no_motion", "too_small"]
    assert all("rejected" in o for o in app.sample_dd.options) and len(app.sample_dd.options) == 3
    app.reason_dd.value = "no_motion"
    assert [o.split(" · ")[0] for o in app.sample_dd.options] == ["stillasset_000", "stillasset_001"]
    assert "nothing to draw" in app.sample_info.content and app.reader is None
    assert "moves 0.001" in app.sample_info.content
    app.status_dd.value = "failed"
    assert app.reason_dd.options == ("all", "import_failed")
    assert [o.split(" · ")[0] for o in app.sample_dd.options] == ["brokenasset_000"]
    app.status_dd.value = "ok"
    assert app.reader is not None  # the ok sample of shard 1 is drawn


def _metrics(path: Path, rows: list[tuple[int, str, float, float]]) -> Path:
    import pandas as pd

    pd.DataFrame([{"uid": k.rsplit("_", 1)[0], "clip": 0, "key": k, "shard": s, "psnr": p + 10, "ssim": 0.9,
                   "lpips": None, "loss": 0.1, "step": 7, "protocol": "sparse4-v2/lrm4d@32", "psnr_obj": p,
                   "seen_in_training": False, "psnr_obj_nearest_input": b, "psnr_obj_mean_colour": 5.0}
                  for s, k, p, b in rows]).to_parquet(path)
    return path


def test_metrics_sort_samples_worst_first(mixed, first_key, running, tmp_path):
    m = _metrics(tmp_path / "metrics.parquet", [(0, first_key, 19.0, 18.0), (1, first_key, 14.0, 16.0),
                                                 (6, first_key, 25.0, 10.0)])
    app = running(str(mixed), metrics=str(m)).app
    assert app.shard.value == "all shards"
    assert app.sort_dd.value.startswith("psnr_obj (worst")
    assert [o.split(" · ")[1] for o in app.sample_dd.options] == ["shard 000001", "shard 000000", "shard 000006"]
    assert "psnr_obj 14.00" in app.sample_dd.value and app.reader is not None  # the worst one is drawn
    app.sort_dd.value = "psnr_obj - nearest input (worst first)"  # margins: -2, +1, +15
    assert [o.split(" · ")[1] for o in app.sample_dd.options] == ["shard 000001", "shard 000000", "shard 000006"]
    assert "margin -2.00" in app.sample_dd.options[0]
    app.sort_dd.value = "shard order"
    assert [o.split(" · ")[1] for o in app.sample_dd.options] == ["shard 000000", "shard 000001", "shard 000006"]
    _pick(app, app.shard, "000001")  # one shard: its rows (all statuses) joined with the scores
    assert len(app.sample_dd.options) == 5 and "psnr_obj" in app.sample_info.content


def test_key_picks_the_sample_and_bad_arguments_name_the_flag(mixed, first_key, running, tmp_path):
    app = running(str(mixed), key=first_key).app
    assert app.reader is not None and app.reader.key == first_key
    run = CliRunner().invoke
    for args, words in [([], "DATASET or --reconstruction"), ([str(tmp_path / "nope")], "no such dataset"),
                        ([str(mixed), "--metrics", str(tmp_path / "x.parquet")], "--metrics"),
                        ([str(mixed), "--key", "../etc/passwd"], "--key"),
                        (["--reconstruction", str(tmp_path)], "--reconstruction"),
                        ([str(mixed), "--export", str(tmp_path / "a.html")], "--export"),
                        ([str(mixed), "--checkpoint", str(tmp_path / "nope.pt")], "--checkpoint")]:
        r = run(cli, ["view", *args, "--port", "0"])
        assert r.exit_code != 0 and words in r.output, (args, r.output)


def test_a_large_dataset_is_listed_without_reading_every_shard(tmp_path, running):
    from training.data import synthetic

    for n in range(120):  # one tiny sample per shard, through the real writer
        w = ShardWriter(tmp_path, n)
        members = synthetic.make_sample(f"s{n}", n, views=2, frames=2, size=8)
        w.add(SampleResult(f"s{n}", 0, f"s{n}_000", "ok", None, None, 0.0, members=members))
        w.commit()
    app = running(str(tmp_path)).app
    assert len(app.shard.options) == 121  # every shard listed (and "all shards")
    assert set(app.ds._stats) == {0} and set(app.ds._rows) == {0}  # only the shown shard was read
    app.scan.value = True
    app.scan_all()
    assert len(app.ds._rows) == 120 and "read 120 of 120" in app.shard_info.content


def test_served_dataset_is_read_by_http_ranges(procedural_one, first_key, running):
    servers: list = []
    with serve_directory(procedural_one, ranges=True, server_out=servers) as base:
        app = running(base + "/").app
        assert app.reader is not None and app.reader.key == first_key
        before = servers[0].range_requests
        app.time.slider.value = 1
        assert servers[0].range_requests - before == app.reader.V * 2  # this time's images and depth maps
        assert "depth points" in app.time.label.content
    with serve_directory(procedural_one, ranges=False) as base:  # Python's http.server: no Range support
        app = running(base + "/").app
        assert app.reader is not None and app.reader.held  # the sample streamed once, kept
        app.time.slider.value = 1
        assert app.reader.reads == 0 and "depth points" in app.time.label.content


def test_checkpoint_reconstructs_the_selected_sample(procedural_one, tiny_checkpoint, running):
    app = running(str(procedural_one), checkpoint=str(tiny_checkpoint), device="cpu").app
    reader = app.reader
    app.reconstruct_selected()
    assert app.recon is not None and len(app.recon) == reader.T, app.recon_info.content
    used = {int(u["view"]) for u in app.recon.record["inputs"]}
    held = sorted(app.layer.frustums)
    assert held and not set(held) & used and sorted(set(held) | used) == list(range(reader.V))
    assert app.splats.handle is not None
    n = len(app.recon.splats(0))
    assert app.splats.handle.centers.shape == (n, 3)
    app.time.slider.value = reader.T - 1
    np.testing.assert_array_equal(app.splats.handle.centers, app.recon.splats(reader.T - 1).centers)
    assert "held-out view" in app.recon_info.content
    assert app.depth.value == "none" and len(app.layer.cloud.points) == 0  # the splats are not hidden by points


def test_nothing_the_browser_sends_reaches_the_filesystem(procedural_one, running):
    r = running(str(procedural_one))
    app = r.app
    drawn = app.reader.key
    for value in ("../../etc/passwd", str(procedural_one / "shard-000000.tar"), "/etc/passwd"):
        app.shard.value = value      # what a hostile client could send: not an option, ignored
        app.sample_dd.value = value  # not a listed sample: nothing is read
        assert app.reader is None and "no sample selected" in app.sample_info.content
    from viewer.dataset import ShardProblem

    with pytest.raises(ShardProblem, match="refused sample key"):
        app.ds.sample(0, "../../etc/passwd_000")
    port = r.server.get_port()
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/shard-000000.tar",
                 "/" + str(procedural_one / "shard-000000.tar").lstrip("/"), "/index.json"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
        assert e.value.code == 404, path
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:  # the client itself
        assert b"<html" in page.read()[:200].lower()
    app.sample_dd.value = app.sample_dd.options[0]
    assert app.reader is not None and app.reader.key == drawn


def test_play_steps_through_the_times_and_pause_stops(procedural_one, running):
    import time

    app = running(str(procedural_one)).app
    app.time.fps.value = 12
    seen = set()
    app.time.toggle()
    assert app.time.play.label == "pause"
    deadline = time.monotonic() + 30
    while len(seen) < app.reader.T and time.monotonic() < deadline:
        seen.add(int(app.time.slider.value))
        time.sleep(0.02)
    app.time.toggle()
    assert seen == set(range(app.reader.T)) and app.time.play.label == "play"
    time.sleep(0.3)
    stopped = app.time.slider.value
    time.sleep(0.5)
    assert app.time.slider.value == stopped
    assert f"t = {stopped} " in app.time.label.content
