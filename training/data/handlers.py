"""The loader's error policy in one place (STYLE.md: the policy is passed in as `handler=`).

A handler takes the exception a stage met on one item and answers True (skip the item, go on) or False
(stop the stage); it may raise to stop the whole stream. `guarded` is the loop every per-item stage
runs its work through, so no stage writes its own try/except."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from training.data.decode import SampleError

log = logging.getLogger(__name__)


class DataStreamError(RuntimeError):
    """The stream produces nothing but errors: stop instead of spinning forever."""


def reason(exn: BaseException) -> str:
    """A word for the count table: the SampleError's reason, else the failure's kind."""
    import tarfile

    if isinstance(exn, SampleError):
        return exn.reason
    if isinstance(exn, (tarfile.TarError, EOFError)):
        return "tar_read"
    if isinstance(exn, ValueError) and "duplicate file name" in str(exn):
        return "tar_duplicate"
    if isinstance(exn, OSError):
        return "io"
    return type(exn).__name__


class SkipAndCount:
    """Handler that skips a bad sample or shard, counts it by reason and logs the first few.

    A stream that yields nothing but errors for `max_consecutive` in a row raises DataStreamError.
    """

    def __init__(self, max_consecutive: int = 200, log_first: int = 5):
        self.counts: Counter[str] = Counter()
        self.consecutive = 0
        self.max_consecutive = max_consecutive
        self.log_first = log_first

    def __call__(self, exn: BaseException) -> bool:
        why = reason(exn)
        self.counts[why] += 1
        self.consecutive += 1
        total = sum(self.counts.values())
        if total <= self.log_first or total % 100 == 0:
            log.warning("skipped a bad sample or shard (%s, %d skipped so far): %s", why, total, exn)
        if self.consecutive >= self.max_consecutive:
            raise DataStreamError(f"{self.consecutive} errors in a row and no good sample; last: {exn}") from exn
        return True

    def success(self) -> None:
        self.consecutive = 0


def reraise(exn: BaseException) -> bool:
    raise exn


def guarded(items: Iterable[Any], work: Callable[[Any], Any], handler: Callable[[BaseException], bool], *,
            counts_success: bool = False) -> Iterator[Any]:
    """`work(item)` for every item; an exception goes to `handler` (True: skip the item, False: stop).
    counts_success: tell the handler (`handler.success()`, when it has one) after every good item, so
    its count of errors in a row starts again (the last stage before batching does this)."""
    success = getattr(handler, "success", None) if counts_success else None
    for item in items:
        try:
            out = work(item)
        except Exception as exn:  # noqa: BLE001 (the policy is the handler's)
            if not handler(exn):
                return
            continue
        if success is not None:
            success()
        yield out
