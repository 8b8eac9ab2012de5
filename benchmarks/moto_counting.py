"""moto's S3 server on loopback, counting the requests it answers (for benchmarks/bench_scale.py).

`python benchmarks/moto_counting.py PORT` serves moto's S3 (no IAM checks) on 127.0.0.1:PORT in this
process, with a WSGI layer in front that counts every request by operation (method + a coarse kind:
`GET object`, `PUT object`, `HEAD object`, `DELETE object`, `LIST`, `bucket`). Two paths are the
counter's own and never reach moto: `GET /_counts` (JSON: {"total": n, "by_kind": {...}}) and
`POST /_counts/reset`. Counting at the server is what the scale benchmark reports as requests: it
sees what the client library really sent (retries and directory probes included). `Server` starts
one in a subprocess on a free port and reads and resets its counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path


class Server:
    """A counting moto server in its own process on a free loopback port."""

    def __init__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.proc.stdout.readline()
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="bench",
                            aws_secret_access_key="bench")

    def counts(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.url}/_counts", timeout=30).read())

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_counts/reset", method="POST"), timeout=30).read()

    def upload(self, folder: Path, bucket: str, prefix: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        c = self.client()
        c.create_bucket(Bucket=bucket)
        files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]

        def put(p: Path) -> None:
            c.put_object(Bucket=bucket, Key=f"{prefix}/{p.relative_to(folder).as_posix()}", Body=p.read_bytes())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, files))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> None:
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the server process only
    from tests.s3counting import Counting

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(sys.argv[1])
    app = Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"serving on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
