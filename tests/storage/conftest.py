"""A real S3-compatible server on loopback for the storage tests: moto's standalone server.

One server per test session (`ThreadedMotoServer` on 127.0.0.1, a free port), with IAM authentication
switched on after a test user and its access key are made, so wrong credentials really fail. The
endpoint and the credentials reach the code under test only through the environment of each test
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), as they would on a cluster; ~/.aws is
hidden. `server.stop()` / `server.start()` take the server away and back on the same port with its
objects kept (the state lives in this process).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.s3counting import Counting

if importlib.util.find_spec("moto") is None or importlib.util.find_spec("s3fs") is None:
    pytest.skip("moto[server] and s3fs (dev and pipeline extras) are needed for the object-storage tests",
                allow_module_level=True)

ADMIN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._cls = ThreadedMotoServer
        self._server = None
        self.counter = Counting(None)  # requests answered, counted at the server (tests/s3counting.py)
        self.start()
        self.key_id, self.secret = self._make_user()

    def start(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self._server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
                self._server.start()
                wsgi = self._server._server
                self.counter.app, wsgi.app = wsgi.app, self.counter
                return
            except OSError:  # the port is still being released after a stop
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop serving and close the listening socket, so that clients are refused (as with a dead server)."""
        wsgi = getattr(self._server, "_server", None)
        self._server.stop()
        if wsgi is not None:
            wsgi.server_close()

    def _make_user(self) -> tuple[str, str]:
        import boto3
        import requests

        kw = dict(endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                  aws_secret_access_key="bootstrap")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="engine")
        key = iam.create_access_key(UserName="engine")["AccessKey"]
        iam.put_user_policy(UserName="engine", PolicyName="all", PolicyDocument=ADMIN_POLICY)
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()  # auth on
        return key["AccessKeyId"], key["SecretAccessKey"]

    def env(self, **changes: str) -> dict[str, str]:
        """The storage environment of a process that uses this server (changes override)."""
        base = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        base.update(changes)
        return base

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def new_bucket(self) -> str:
        name = f"ds-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in out.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This test's environment points the storage library at the loopback server."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return s3_server


@pytest.fixture
def bucket(s3_env) -> str:
    return s3_env.new_bucket()


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    e = {**os.environ, "PIPELINE_LOG_LEVEL": "INFO", **(env or {})}
    r = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=e, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


# Tiny real renders: 24 px, 4 times, 2 views, 1 sample per pixel (well under a second per clip).
TINY_FLAGS = ["--no-ray", "--preset", "debug", "--resolution", "24", "--frames", "4", "--views", "2", "--samples", "1",
              "--threads", "1", "--no-progress"]


@pytest.fixture(scope="session")
def s3_manifest(tmp_path_factory) -> Path:
    """3 procedural assets (seed 31, one row per clip) in shards of 2 rows, plus a row whose file is missing
    (a `failed` sample for --retry-failed)."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("render extra (bpy 5.0.1) not installed: no real renders")
    import pandas as pd

    from manifests.schema import read_manifest, write_manifest

    d = tmp_path_factory.mktemp("s3proc")
    run_cli("-q", "curate", "--source", "procedural", "--categories", "legacy", "--count", "3", "--seed", "31", "--assets-out", str(d / "assets"),
            "--shard-size", "2", "--out", str(d / "m.parquet"))
    df = read_manifest(d / "m.parquet")
    bad = df.iloc[[0]].copy()
    bad["uid"], bad["uri"], bad["sha256"], bad["shard"] = "missingasset", str(d / "assets" / "nope.glb"), None, 0
    write_manifest(pd.concat([df, bad], ignore_index=True), d / "m2.parquet")
    return d / "m2.parquet"


@pytest.fixture(scope="session")
def s3_dataset(s3_server, s3_manifest) -> str:
    """Every shard of `s3_manifest` rendered by `pipeline render --out s3://...` (real Blender)."""
    name = s3_server.new_bucket()
    url = f"s3://{name}/renders/round0"
    run_cli("render", "--manifest", str(s3_manifest), "--shards", "all", "--out", url, *TINY_FLAGS, env=s3_server.env())
    return url
