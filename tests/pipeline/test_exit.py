"""How a `pipeline` process ends (contracts/exit.py): a native library's thread still running at exit
(as Blender's, Arrow's, OpenMP's pools are) must not turn a finished command into an abort
(`terminate called without an active exception`); the status, atexit handlers and output stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# A library with a static thread pool whose worker is still joinable when exit() runs the C++ static
# destructors: std::thread's destructor calls std::terminate, the abort the stress loop counts.
LINGERING = r"""
#include <chrono>
#include <thread>
namespace {
struct Pool { std::thread worker; ~Pool() {} };
Pool pool;
}
extern "C" void start_worker() {
    pool.worker = std::thread([] { std::this_thread::sleep_for(std::chrono::hours(1)); });
}
"""
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lingering(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cxx")
    (d / "lingering.cpp").write_text(LINGERING)
    subprocess.run(["g++", "-shared", "-fPIC", "-O1", "-pthread", "-o", str(d / "liblingering.so"),
                    str(d / "lingering.cpp")], check=True)  # a C++ compiler is already needed by gsplat
    return d / "liblingering.so"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_a_native_thread_left_running_aborts_a_plain_exit(lingering):
    # the failure itself, without the pipeline: what the entry point must guard against
    r = _python(f"import ctypes; ctypes.CDLL({str(lingering)!r}).start_worker()")
    assert r.returncode != 0 and "terminate called without an active exception" in r.stderr


def test_the_pipeline_command_ends_cleanly_with_a_native_thread_left_running(lingering, tmp_path):
    done = tmp_path / "atexit-ran"
    r = _python(f"import atexit, ctypes, pathlib, sys; ctypes.CDLL({str(lingering)!r}).start_worker(); "
                f"atexit.register(pathlib.Path({str(done)!r}).write_text, 'yes'); "
                "sys.argv = ['pipeline', 'status', '--help']; from pipeline.cli import main; main()")
    assert r.returncode == 0 and "terminate called" not in r.stderr, r.stderr
    assert "Usage: pipeline status" in r.stdout  # stdout flushed before os._exit
    assert done.read_text() == "yes"  # atexit handlers still run (ray.shutdown, scratch folders, ...)


def test_the_exit_status_and_errors_come_through(lingering, tmp_path):
    r = _python(f"import ctypes, sys; ctypes.CDLL({str(lingering)!r}).start_worker(); "
                f"sys.argv = ['pipeline', 'status', {str(tmp_path / 'none')!r}]; from pipeline.cli import main; main()")
    assert r.returncode == 1 and "no such dataset folder" in r.stderr and "terminate called" not in r.stderr
    r = _python("from contracts.exit import run_and_exit\ndef boom():\n    raise RuntimeError('kaput')\nrun_and_exit(boom)")
    assert r.returncode == 1 and "RuntimeError: kaput" in r.stderr and "Traceback" in r.stderr


def test_parquet_bytes_leave_no_python_object_to_arrow_threads():
    """The abort caught in a core dump of `pipeline render` under load: pq.read_table(io.BytesIO(...))
    left the file object to an Arrow worker thread, which released it (taking the GIL) while the
    interpreter exited. contracts/parquet_bytes hands Arrow a copy in its own memory: the caller's bytes
    are referenced by nothing once the call returns, every time."""
    import io
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    from contracts.parquet_bytes import read_table_bytes

    buf = io.BytesIO()
    pq.write_table(pa.table({"key": ["a", "b"], "status": ["ok", "failed"], "n": [1, 2]}), buf)
    data = buf.getvalue()
    refs = sys.getrefcount(data)
    for _ in range(200):
        table = read_table_bytes(data, ["key", "status"])
        assert sys.getrefcount(data) == refs  # no Python reference left to any thread
        del table
    assert read_table_bytes(data, ["key", "status"]).to_pylist() == [{"key": "a", "status": "ok"},
                                                                     {"key": "b", "status": "failed"}]
    with pytest.raises(ValueError, match="nope"):
        read_table_bytes(data, ["key", "nope"])
