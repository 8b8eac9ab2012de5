"""The streaming loader (training/data/stream.py) on real tar shards written in the DESIGN.md §4 layout."""

from __future__ import annotations

import functools
import io
import json
import logging
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from training.data import stream as data
from training.data import synthetic

from training.data import weights as weights_mod

from training.data import shardspec
from training.config import DataConfig
from training.geometry import plucker_image

from tests.httpserver import serve_directory


def _cfg(**kw) -> DataConfig:
    base = dict(image_size=32, n_in=2, n_target=4, num_workers=0, batches_per_epoch=4, shuffle_buffer=4)
    return DataConfig(**{**base, **kw})


def _batches(urls, cfg, n, batch_size=2, **kw):
    ds = data.make_dataset(urls, cfg, batch_size=batch_size, **kw)
    it = iter(ds)
    return [next(it) for _ in range(n)]


def _member(shard_dir: Path, key: str, suffix: str) -> bytes:
    for tar in sorted(shard_dir.glob("shard-*.tar")):
        with tarfile.open(tar) as tf:
            names = tf.getnames()
            if f"{key}.{suffix}" in names:
                return tf.extractfile(f"{key}.{suffix}").read()
    raise KeyError(key, suffix)


# -- shard specs -------------------------------------------------------------------------------------


def test_dataset_folder_means_committed_shards_only(analytic_shards, tmp_path):
    d, _ = analytic_shards
    assert shardspec.resolve_shards(str(d)) == [str(d / f"shard-00000{i}.tar") for i in range(3)]
    # a tar without its stats.json is a crash leftover: not part of the dataset
    (tmp_path / "shard-000000.tar").write_bytes((d / "shard-000000.tar").read_bytes())
    synthetic.commit_shard(tmp_path, 1, [synthetic.make_sample("u1", 1, views=2, frames=1, size=8)])
    assert shardspec.resolve_shards(str(tmp_path)) == [str(tmp_path / "shard-000001.tar")]


def test_brace_patterns_expand_and_skip_uncommitted_tars(analytic_shards, tmp_path, caplog):
    d, _ = analytic_shards
    assert len(shardspec.resolve_shards(f"{d}/shard-{{000000..000002}}.tar")) == 3
    (tmp_path / "shard-000000.tar").write_bytes((d / "shard-000000.tar").read_bytes())
    synthetic.commit_shard(tmp_path, 1, [synthetic.make_sample("u1", 1, views=2, frames=1, size=8)])
    with caplog.at_level(logging.WARNING):
        got = shardspec.resolve_shards(f"{tmp_path}/shard-{{000000..000001}}.tar")
    assert got == [f"{tmp_path}/shard-000001.tar"]
    assert "uncommitted" in caplog.text
    with pytest.raises(FileNotFoundError, match="missing"):
        shardspec.resolve_shards(f"{d}/shard-{{000000..000009}}.tar")


def test_http_urls_expand_and_specs_join():
    urls = shardspec.resolve_shards("https://host/x/shard-{000000..000002}.tar::http://other/shard-000007.tar")
    assert urls == ["https://host/x/shard-000000.tar", "https://host/x/shard-000001.tar",
                    "https://host/x/shard-000002.tar", "http://other/shard-000007.tar"]


# -- what a sample holds ---------------------------------------------------------------------------


def test_decoded_inputs_are_the_chosen_members_composited_with_their_cameras(analytic_shards):
    d, _ = analytic_shards
    urls = shardspec.resolve_shards(str(d))
    b = _batches(urls, _cfg(background="white"), 3)[2]
    for s in range(2):
        key = b["key"][s]
        meta = json.loads(_member(d, key, "json"))
        for i, (t, v) in enumerate(b["in_pairs"][s].tolist()):
            rgba = np.asarray(Image.open(io.BytesIO(_member(d, key, f"t{t:03d}.v{v:03d}.png"))), np.float32) / 255
            expected = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])  # straight alpha onto white
            torch.testing.assert_close(b["in_rgb"][s, i].permute(1, 2, 0), torch.from_numpy(expected))
            torch.testing.assert_close(b["in_c2w"][s, i], torch.tensor(meta["c2w"][t][v], dtype=torch.float32))
            torch.testing.assert_close(b["in_K"][s, i], torch.tensor(meta["K"][v], dtype=torch.float32))
        for j, (t, v) in enumerate(b["tg_pairs"][s].tolist()):
            rgba = np.asarray(Image.open(io.BytesIO(_member(d, key, f"t{t:03d}.v{v:03d}.png"))), np.float32) / 255
            torch.testing.assert_close(b["tg_alpha"][s, j, 0], torch.from_numpy(rgba[..., 3]))
        rays = plucker_image(b["in_c2w"][s], b["in_K"][s], 32, 32)
        torch.testing.assert_close(b["in_cond"][s, :, :6], rays)
        torch.testing.assert_close(b["in_cond"][s, :, 6], b["in_time"][s][:, None, None].expand(-1, 32, 32))


def test_resizing_scales_the_intrinsics(analytic_shards):
    d, _ = analytic_shards
    b = _batches(shardspec.resolve_shards(str(d)), _cfg(image_size=16), 1)[0]
    assert b["in_rgb"].shape == (2, 2, 3, 16, 16) and b["tg_rgb"].shape == (2, 4, 3, 16, 16)
    meta = json.loads(_member(d, b["key"][0], "json"))
    v = int(b["in_pairs"][0, 0, 1])
    torch.testing.assert_close(b["in_K"][0, 0], torch.tensor(meta["K"][v], dtype=torch.float32) *
                               torch.tensor([[0.5], [0.5], [1.0]]))


def test_targets_include_times_no_input_shows_and_static_samples_serve_any_time(analytic_shards):
    d, keys = analytic_shards
    static = {k for i, k in enumerate(keys) if i % 3 == 2}
    novel, dynamic, static_times = 0, 0, []
    for b in _batches(shardspec.resolve_shards(str(d)), _cfg(), 12):
        for s, key in enumerate(b["key"]):
            if key in static:
                assert (b["in_pairs"][s, :, 0] == 0).all()  # one frame
                static_times += b["tg_time"][s].tolist() + b["in_time"][s].tolist()
                continue
            dynamic += 1
            seen = set(b["in_pairs"][s, :, 0].tolist())
            n_novel = sum(int(t) not in seen for t in b["tg_pairs"][s, :, 0])
            assert n_novel >= 2  # half of the 4 targets
            novel += n_novel
    assert dynamic > 0 and static_times
    assert len(set(round(t, 6) for t in static_times)) > len(static_times) // 2  # times drawn freely
    assert min(static_times) >= 0 and max(static_times) <= 1


def test_depth_is_decoded_at_16_bits(analytic_shards):
    d, _ = analytic_shards
    b = _batches(shardspec.resolve_shards(str(d)), _cfg(load_depth=True), 1)[0]
    key, (t, v) = b["key"][0], b["tg_pairs"][0, 0].tolist()
    raw = np.asarray(Image.open(io.BytesIO(_member(d, key, f"t{t:03d}.v{v:03d}.depth.png"))))
    assert raw.dtype == np.uint16 and raw.max() > 255  # really 16-bit data
    torch.testing.assert_close(b["tg_depth"][0, 0, 0], torch.from_numpy(raw.astype(np.float32) * synthetic.DEPTH_SCALE))
    hit = b["tg_alpha"][0, 0, 0] > 0.99
    assert float(b["tg_depth"][0, 0, 0][hit].min()) > 1.0  # normalised scene ~2 units from the camera


def test_webp_members_are_accepted(tmp_path):
    synthetic.commit_shard(tmp_path, 0, [synthetic.make_sample("w1", 3, views=3, frames=2, size=16, fmt="webp")])
    b = _batches(shardspec.resolve_shards(str(tmp_path)), _cfg(image_size=16), 1, batch_size=1)[0]
    assert b["key"] == ["w1_000"] and float(b["tg_alpha"].max()) == 1.0


# -- bad data ------------------------------------------------------------------------------------------


class _Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def test_members_with_pickles_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    sample = synthetic.make_sample("p1", 5, views=3, frames=2, size=16)
    payload = pickle.dumps(_Boom(marker))
    for ext in ("pyd", "pickle", "pth", "t000.v000.pth"):
        sample[f"p1_000.{ext}"] = payload
    synthetic.commit_shard(tmp_path / "ds", 0, [sample])
    b = _batches(shardspec.resolve_shards(str(tmp_path / "ds")), _cfg(image_size=16), 3, batch_size=1)
    assert [x["key"] for x in b] == [["p1_000"]] * 3
    assert not marker.exists()


def test_corrupt_samples_and_shards_are_skipped_and_counted(tmp_path):
    good = synthetic.make_sample("good", 1, views=3, frames=2, size=16)
    truncated = {k: (v[: len(v) // 3] if k.endswith(".png") else v)
                 for k, v in synthetic.make_sample("trunc", 2, views=3, frames=2, size=16).items()}
    bad_json = dict(synthetic.make_sample("badjson", 3, views=3, frames=2, size=16), **{"badjson_000.json": b"{nope"})
    no_json = {k: v for k, v in synthetic.make_sample("nojson", 4, views=3, frames=2, size=16).items()
               if not k.endswith(".json")}
    wrong_schema = synthetic.make_sample("schema", 6, views=3, frames=2, size=16)
    meta = json.loads(wrong_schema["schema_000.json"])
    wrong_schema["schema_000.json"] = json.dumps({**meta, "schema_version": 99}).encode()
    ds = tmp_path / "ds"
    synthetic.commit_shard(ds, 0, [good, truncated, bad_json, no_json, wrong_schema])
    synthetic.commit_shard(ds, 1, [synthetic.make_sample("cut", 7, views=3, frames=2, size=16)])
    tar1 = ds / "shard-000001.tar"
    tar1.write_bytes(tar1.read_bytes()[:2000])  # a shard cut short mid-member
    handler = data.SkipAndCount()
    batches = _batches(shardspec.resolve_shards(str(ds)), _cfg(image_size=16), 8, handler=handler)
    keys = {k for b in batches for k in b["key"]}
    assert keys <= {"good_000", "cut_000"} and "good_000" in keys
    for reason in ("bad_image", "bad_json", "missing_member", "schema", "tar_read"):
        assert handler.counts[reason] > 0, (reason, handler.counts)
    assert batches[-1]["skipped"] == dict(handler.counts)  # batches carry the counts to the trainer


def test_a_stream_of_nothing_but_errors_stops_with_a_clear_error(tmp_path):
    ds = tmp_path / "ds"
    sample = {k: (b"x" if k.endswith(".png") else v) for k, v in synthetic.make_sample("bad", 1, views=2, frames=1, size=8).items()}
    synthetic.commit_shard(ds, 0, [sample])
    with pytest.raises(data.DataStreamError, match="errors in a row"):
        _batches(shardspec.resolve_shards(str(ds)), _cfg(image_size=8), 1, handler=data.SkipAndCount(max_consecutive=20))


# -- sampling --------------------------------------------------------------------------------------------


def test_draw_frequencies_follow_manifest_weights(tmp_path):
    from manifests.schema import write_manifest

    ds = tmp_path / "ds"
    weights = {"wa": 1.0, "wb": 2.0, "wc": 4.0, "wd": 0.0}
    for shard, uids in enumerate((["wa", "wb"], ["wc", "wd"])):
        synthetic.commit_shard(ds, shard, [synthetic.make_sample(u, i, views=2, frames=1, size=8, depth=False,
                                                                 n_objects=1) for i, u in enumerate(uids)])
    manifest = pd.DataFrame({"uid": list(weights), "clip": 0, "clip_name": "", "source": "procedural",
                             "uri": [f"{u}.glb" for u in weights], "sha256": None, "license": "cc0",
                             "shard": [0, 0, 1, 1], "weight": list(weights.values()), "round": 0})
    write_manifest(manifest, tmp_path / "m.parquet")
    w = weights_mod.load_weights(tmp_path / "m.parquet")
    assert w == {"wa_000": 1.0, "wb_000": 2.0, "wc_000": 4.0, "wd_000": 0.0}
    cfg = _cfg(image_size=8, n_in=1, n_target=1, shuffle_buffer=16)
    counts = Counter(k for b in _batches(shardspec.resolve_shards(str(ds)), cfg, 100, batch_size=10, weights=w)
                     for k in b["key"])
    n = sum(counts.values())
    assert counts["wd_000"] == 0
    for u, wt in (("wa", 1), ("wb", 2), ("wc", 4)):
        assert abs(counts[f"{u}_000"] / n - wt / 7) < 0.045, counts
    uniform = Counter(k for b in _batches(shardspec.resolve_shards(str(ds)), cfg, 60, batch_size=10) for k in b["key"])
    assert all(abs(c / 600 - 0.25) < 0.06 for c in uniform.values()) and len(uniform) == 4


def _rerendered_dataset(tmp_path):
    """Shard 0 holds ra's first render and rb; shard 1 ra's re-render and rc; the manifest (as `pipeline
    mine` leaves it) puts ra in shard 1 with parent_shard 0. All weights 1."""
    from manifests.schema import write_manifest

    ds = tmp_path / "ds"
    for shard, uids in enumerate((["ra", "rb"], ["ra", "rc"])):
        synthetic.commit_shard(ds, shard, [synthetic.make_sample(u, 10 * shard + i, views=2, frames=1, size=8,
                                                                 depth=False, n_objects=1) for i, u in enumerate(uids)])
    manifest = pd.DataFrame({"uid": ["ra", "rb", "rc"], "clip": 0, "clip_name": "", "source": "procedural",
                             "uri": ["ra.glb", "rb.glb", "rc.glb"], "sha256": None, "license": "cc0",
                             "shard": [1, 0, 1], "weight": 1.0, "round": [1, 0, 0]})
    manifest["parent_shard"] = pd.array([0, None, None], dtype="Int32")
    write_manifest(manifest, tmp_path / "m.parquet")
    return ds, weights_mod.load_weights(tmp_path / "m.parquet")


def test_a_rerendered_clip_is_drawn_from_its_manifest_shard_only(tmp_path):
    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    ds, w = _rerendered_dataset(tmp_path)
    assert w.home == {"ra_000": 1, "rb_000": 0, "rc_000": 1}

    def one_pass(urls):  # the loader's first stages, each shard once, then the weighted repeat
        kw = dict(seed=0, rank=0, epoch=0)
        stage = weights_mod.WeightedRepeat(w, shards=[shardspec.shard_number(u) for u in urls], **kw)
        pipe = wds.DataPipeline(data.ShardSource(urls, resampled=False, world_size=1, **kw),
                                functools.partial(data.open_shards, handler=data.SkipAndCount()),
                                tar_file_expander, group_by_keys, stage)
        return sorted((x["__key__"], shardspec.shard_number(x["__url__"])) for x in pipe), stage.superseded

    urls = shardspec.resolve_shards(str(ds))
    assert one_pass(urls) == ([("ra_000", 1), ("rb_000", 0), ("rc_000", 1)], 1)  # the first render is not drawn
    # The re-render not read (not committed yet, or left out of --shards): the first render stands in.
    assert one_pass([u for u in urls if shardspec.shard_number(u) == 0]) == ([("ra_000", 0), ("rb_000", 0)], 0)
    # Through the whole loader: the re-rendered clip is drawn as often as the others, not twice as often.
    cfg = _cfg(image_size=8, n_in=1, n_target=1, shuffle_buffer=16)
    counts = Counter(k for b in _batches(urls, cfg, 60, batch_size=10, weights=w) for k in b["key"])
    assert all(abs(c / 600 - 1 / 3) < 0.06 for c in counts.values()) and len(counts) == 3, counts


def test_every_sample_is_equally_likely_when_shards_differ_in_size(tmp_path):
    # a drawn shard yields all its samples, so drawing shards uniformly gives each sample the same rate
    ds = tmp_path / "ds"
    synthetic.commit_shard(ds, 0, [synthetic.make_sample("lone", 1, views=2, frames=1, size=8, depth=False)])
    synthetic.commit_shard(ds, 1, [synthetic.make_sample(u, i, views=2, frames=1, size=8, depth=False)
                                   for i, u in enumerate(("m1", "m2", "m3"))])
    cfg = _cfg(image_size=8, n_in=1, n_target=1, shuffle_buffer=8)
    counts = Counter(k for b in _batches(shardspec.resolve_shards(str(ds)), cfg, 40, batch_size=10) for k in b["key"])
    assert all(abs(c / 400 - 0.25) < 0.06 for c in counts.values()) and len(counts) == 4, counts


def test_ranks_and_workers_split_shards_without_overlap(analytic_shards):
    d, keys = analytic_shards
    urls = shardspec.resolve_shards(str(d))
    cfg = _cfg(num_workers=2)
    seen = []
    for rank in range(2):
        ds = data.make_dataset(urls, cfg, batch_size=1, rank=rank, world_size=2, resampled=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        seen.append([k for b in loader for k in b["key"]])
    assert sorted(seen[0] + seen[1]) == sorted(keys)  # every sample once over all ranks and workers
    assert not set(seen[0]) & set(seen[1])


def test_an_epoch_has_a_fixed_number_of_batches_with_workers(analytic_shards):
    d, _ = analytic_shards
    cfg = _cfg(num_workers=2, batches_per_epoch=5)
    loader = data.make_loader(shardspec.resolve_shards(str(d)), cfg, batch_size=3, seed=0)
    batches = list(loader)
    assert len(batches) == 6  # 5 rounded up to a multiple of 2 workers; resampled streams never run dry
    assert {b["worker"] for b in batches} == {0, 1}


def test_streams_over_http_from_a_loopback_server(analytic_shards):
    d, keys = analytic_shards
    with serve_directory(d) as base:
        urls = shardspec.resolve_shards(base + "/shard-{000000..000002}.tar")
        batches = _batches(urls, _cfg(), 6)
    assert {k for b in batches for k in b["key"]} <= set(keys)
    assert len({k for b in batches for k in b["key"]}) >= 3


def test_a_dataset_folder_served_over_http_is_read_through_its_index(analytic_shards, tmp_path):
    import shutil

    from contracts.shard_index import write_index

    d, keys = analytic_shards
    served = tmp_path / "ds"
    shutil.copytree(d, served)
    (served / "shard-000002.stats.json").unlink()  # an uncommitted shard: not in the index, never read
    write_index(served)
    with serve_directory(tmp_path) as base:
        urls = shardspec.resolve_shards(base + "/ds/")
        assert urls == [f"{base}/ds/shard-000000.tar", f"{base}/ds/shard-000001.tar"]
        batches = _batches(urls, _cfg(), 4)
        with pytest.raises(FileNotFoundError, match="committed-shard index"):
            shardspec.resolve_shards(base + "/nothing-here/")
    assert {k for b in batches for k in b["key"]} <= set(keys)
