"""A small per-process cache whose entries expire: for facts about shard files that are cheap to keep
and costly to fetch again (a member index, a stats.json identity) but may change when a shard is
rewritten (`--retry-failed`, `--force`). Thread-safe; cleared whole when it grows past `max_items`."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class TTLCache:
    def __init__(self, ttl_s: float, max_items: int):
        self.ttl_s, self.max_items = ttl_s, max_items
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get_or(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The cached value of `key` when younger than ttl_s, else `compute()` (outside the lock), stored."""
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
        value = compute()
        self.put(key, value, now)
        return value

    def put(self, key: Any, value: Any, now: float | None = None) -> None:
        with self._lock:
            if len(self._items) > self.max_items:
                self._items.clear()
            self._items[key] = (time.monotonic() if now is None else now, value)

    def pop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
