"""Parquet files held as bytes (read whole from a folder, HTTP or an object store), parsed so that no
Python object is left to Arrow's threads.

`pq.read_table(io.BytesIO(data))` goes through Arrow's dataset scanner, whose state holds the Python
file object and is released by an Arrow worker thread some time after the call has returned (here: the
file object was still referenced right after the call in 31 of 200 reads). When that release falls
while the interpreter exits, the worker takes the GIL too late, is ended with pthread_exit inside a C++
destructor and the process aborts with `terminate called without an active exception`: a core dump
of `pipeline render` under load showed exactly this (issue 27, BENCHMARKS.md "Exit under load").
`read_table_bytes` reads through `pq.ParquetFile` on the calling thread and closes it, so the file
object is released when the call returns.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Sequence


def read_table_bytes(data: bytes, columns: Sequence[str] | None = None):
    """A pyarrow Table of a Parquet file's bytes (only `columns` when given); ValueError naming the
    columns that are missing (pyarrow's ParquetFile.read would skip them silently)."""
    return read_table_file(io.BytesIO(data), columns)


def read_table_file(f: BinaryIO, columns: Sequence[str] | None = None):
    """read_table_bytes on an open binary file object, which nothing references once this returns."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    try:
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise ValueError(f"missing column(s) {', '.join(missing)}")
        return pf.read(columns=list(columns) if columns is not None else None)
    finally:
        pf.close()
