"""How the `pipeline` process ends: the interpreter's own shutdown steps, then `os._exit`.

A command that embedded Blender (curate --source procedural, render), Ray, pyarrow or torch leaves
native threads running when its work is done: OpenImageIO's and OpenEXR's (IlmThread) pools, TBB
workers, Arrow's jemalloc thread, OpenMP and BLAS pools, gloo's. After the atexit handlers, a normal
exit finalizes the interpreter (a foreign thread that then takes the GIL is ended with pthread_exit,
which aborts in a C++ frame that may not unwind) and runs the C++ static destructors of those
libraries (a `std::thread` still joinable there calls std::terminate). Either ends a finished command
with SIGABRT and `terminate called without an active exception` - rarely, when a loaded machine
delays one of those threads into that window (issue 27: a core dump showed an Arrow worker releasing a
Python file object, fixed at its source in contracts/parquet_bytes.py; training/ddp.py's `close` is the
same race for gloo under torchrun). `run_and_exit` runs every step of a normal exit that does work for us -
joining Python's non-daemon threads, the atexit handlers (ray.shutdown, multiprocessing children,
weakref finalizers such as scratch folders, bpy's and Cycles' exit handlers, logging's flush), flushing
stdout and stderr - and then leaves with `os._exit(status)`, so the window never opens.
Files are written with `with` blocks and atomic renames throughout, so nothing relies on
finalization to reach the disk.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable, NoReturn


def exit_status(code: Any) -> int:
    """What the interpreter would exit with for `SystemExit(code)` (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def finish(status: int) -> NoReturn:
    """The interpreter's shutdown steps that matter (module docstring), then `os._exit(status)`."""
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as Py_FinalizeEx does first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()  # every registered handler, last registered first; errors are printed, not raised
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be said there
            pass
    os._exit(status)


def run_and_exit(main: Callable[[], Any]) -> NoReturn:
    """Run a command's entry point and end the process through `finish` with its exit status; an error
    that escapes it is printed as the interpreter prints it (status 1)."""
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exit_status(exc.code)
    except BaseException:  # noqa: BLE001 (an uncaught error: reported like the interpreter's default hook)
        traceback.print_exc()
        status = 1
    finish(status)
