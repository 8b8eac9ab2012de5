"""moto's S3 server on loopback, counting the requests it answers (for benchmarks/bench_scale.py).

`python benchmarks/moto_counting.py PORT` serves moto's S3 (no IAM checks) on 127.0.0.1:PORT in this
process, with a WSGI layer in front that counts every request by operation (method + a coarse kind:
`GET object`, `PUT object`, `HEAD object`, `DELETE object`, `LIST`, `bucket`). Two paths are the
counter's own and never reach moto: `GET /_counts` (JSON: {"total": n, "by_kind": {...}}) and
`POST /_counts/reset`. Counting at the server is what the scale benchmark reports as requests: it
sees what the client library really sent (retries and directory probes included).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3counting import Counting  # noqa: E402


def main() -> None:
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(sys.argv[1])
    app = Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"serving on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
