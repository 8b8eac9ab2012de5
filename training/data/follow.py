"""`pipeline train --follow`: train on a dataset that is still being rendered.

`ShardFollower` owns the trainer's list of shard URLs. Without following it resolves the SPEC once.
With `data.follow_interval_s > 0` it waits for the first committed shard when there is none yet, and
every `follow_interval_s` seconds re-resolves the SPEC (index or listing: committed shards only, so a
shard being uploaded is never read) and reports the shards that were added. Only rank 0 touches the
storage; the list goes to every rank with `ddp.broadcast_json`, and the decision to look again is an
all-reduce of each rank's clock, so all ranks switch to the new list at the same step. A resumed run
keeps following: the interval is part of the saved config.
"""

from __future__ import annotations

import logging
import time

from training import ddp
from training.data import shardspec

log = logging.getLogger(__name__)


class ShardFollower:
    def __init__(self, spec: str, interval_s: float, info: ddp.DistInfo):
        self.spec, self.interval_s, self.info = spec, float(interval_s), info
        self.last = time.monotonic()
        self.added_total = 0
        self._views: dict = {}  # object-store index views kept between polls: a poll lists only the log's tail

    @property
    def following(self) -> bool:
        return self.interval_s > 0

    def _resolve(self, waiting: bool) -> list[str] | None:
        """Rank 0's view of the committed shards; None when there are none yet (following only)."""
        try:
            return shardspec.resolve_shards(self.spec, self._views)
        except FileNotFoundError:
            if not (self.following and waiting):
                raise
            return None

    def initial(self) -> list[str]:
        """The shards to start with (every rank gets rank 0's list). Following, waits for the first one."""
        while True:
            urls = self._resolve(waiting=True) if self.info.is_main else None
            urls = ddp.broadcast_json(urls, self.info)
            if urls:
                self.last = time.monotonic()
                return list(urls)
            log.info("--follow: no committed shard in %s yet; looking again in %.0f s", self.spec, self.interval_s)
            time.sleep(self.interval_s)

    def poll(self, urls: list[str]) -> list[str] | None:
        """Every interval: the new shard list when shards were added (the same on all ranks), else None.
        A storage error while looking is logged and the current list kept (training goes on)."""
        if not self.following:
            return None
        if not ddp.any_true(time.monotonic() - self.last >= self.interval_s, self.info):
            return None
        self.last = time.monotonic()
        new = None
        if self.info.is_main:
            try:
                new = self._resolve(waiting=True)
            except OSError as exn:  # StorageError included: a transient outage must not stop training
                log.warning("--follow: could not re-read %s (%s); keeping %d shard(s)", self.spec, exn, len(urls))
        new = ddp.broadcast_json(new, self.info)
        if not new:
            return None
        known = set(urls)
        added = [u for u in new if u not in known]
        if not added:
            return None
        self.added_total += len(added)
        names = ", ".join(u.rsplit("/", 1)[-1] for u in added[:8]) + (" ..." if len(added) > 8 else "")
        who = f"rank {self.info.rank}: " if self.info.world_size > 1 else ""
        log.info("%s--follow: +%d shard(s) (%s); now training on %d", who, len(added), names, len(new))
        return list(new)
