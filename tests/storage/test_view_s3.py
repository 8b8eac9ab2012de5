"""`pipeline view` on a dataset in a bucket (moto's S3 server on loopback, real Blender renders): the
shards listed, a failed sample shown with its reason, a sample drawn from ranged GETs only."""

from __future__ import annotations

import pytest

from contracts import reads, storage

pytest.importorskip("viser", reason="the view extra (viser) is not installed")


def test_viewer_reads_a_bucket_dataset_by_ranged_gets(s3_dataset, s3_env):
    from viewer.server import start

    before = dict(reads.io_counts)
    r = start(s3_dataset, port=0)
    try:
        app = r.app
        assert app.ds.url == s3_dataset and app.reader is not None
        assert reads.io_counts["stream"] == before.get("stream", 0)  # no shard streamed whole
        got = reads.io_counts["range_requests"] - before.get("range_requests", 0)
        assert got == 1 + 2 * app.reader.V  # the JSON, then time 0's images and depth maps
        app.status_dd.value = "failed"
        assert app.sample_dd.value.startswith("missingasset_000") and "missing_file" in app.sample_info.content.replace("\\", "")
        assert "nothing to draw" in app.sample_info.content
        app.status_dd.value = "ok"
        n_requests = reads.io_counts["range_requests"]
        app.time.slider.value = 2
        assert reads.io_counts["range_requests"] - n_requests == 2 * app.reader.V
        assert reads.io_counts["stream"] == before.get("stream", 0)
    finally:
        r.stop()
