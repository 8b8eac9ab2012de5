"""Parquet files held as bytes (read whole from a folder, HTTP or an object store), parsed so that no
Python object is left to Arrow's threads.

`pq.read_table(io.BytesIO(data))` goes through Arrow's dataset scanner, whose state holds the Python
file object and is released by an Arrow worker thread some time after the call has returned (here: the
file object was still referenced right after the call in 31 of 200 reads). When that release falls
while the interpreter exits, the worker takes the GIL too late, is ended with pthread_exit inside a C++
destructor and the process aborts with `terminate called without an active exception`: a core dump
of `pipeline render` under load showed exactly this (issue 27, BENCHMARKS.md "Exit under load").
`read_table_bytes` copies the bytes into an Arrow-owned buffer first, so whatever Arrow's threads
release, and whenever, is Arrow's own memory: no Python object, no GIL.
"""

from __future__ import annotations

from typing import Sequence


def read_table_bytes(data: bytes, columns: Sequence[str] | None = None):
    """A pyarrow Table of a Parquet file's bytes (only `columns` when given; a missing one is a
    ValueError, pyarrow's ArrowInvalid), read from an Arrow-owned copy (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    owned = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(owned).write(data)
    return pq.read_table(pa.BufferReader(owned), columns=list(columns) if columns is not None else None)
