"""The uid rule (DESIGN.md §2) and stable ids for files whose stem breaks it."""

from __future__ import annotations

import hashlib
import re

UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def is_valid_uid(uid: object) -> bool:
    """True when `uid` may be used in keys and file names."""
    return isinstance(uid, str) and UID_RE.fullmatch(uid) is not None


def check_uid(uid: object, what: str = "uid") -> str:
    """Return `uid` or raise ValueError naming the value and the rule it breaks."""
    if not is_valid_uid(uid):
        raise ValueError(f"invalid {what} {uid!r}: must match {UID_RE.pattern} (letters, digits, '_' and '-', 1-128 chars)")
    return uid  # type: ignore[return-value]


def stable_uid(relative_path: str, prefix: str = "h") -> str:
    """A uid derived from a relative path: the same path always gives the same uid.

    Used for local files whose stem is not a valid uid; the path is stored beside it (column
    `uid_origin`) so the user can trace it back. 20 hex digits (80 bits) keep collisions out of reach
    for any realistic folder.
    """
    norm = relative_path.replace("\\", "/")
    return f"{prefix}{hashlib.sha256(norm.encode('utf-8')).hexdigest()[:20]}"


def sample_key(uid: str, clip: int) -> str:
    """The WebDataset key of one rendered (uid, clip): `{uid}_{clip:03d}` (DESIGN.md §4)."""
    check_uid(uid)
    if not isinstance(clip, int) or clip < 0:
        raise ValueError(f"invalid clip {clip!r} for uid {uid!r}: must be an int >= 0")
    return f"{uid}_{clip:03d}"
