"""What rendering one (uid, clip) gives back: small, picklable, no bpy (the Ray layer ships it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.layout import STATUS_OK, STATUSES
from render.reasons import check_reason, status_for

Scalar = float | int | bool | str | None


@dataclass
class SampleResult:
    uid: str
    clip: int
    key: str                      # contracts.uids.sample_key(uid, clip)
    status: str                   # 'ok' | 'failed' | 'rejected' (contracts.layout.STATUSES)
    reason: str | None            # from render.reasons, None when ok
    detail: str | None            # free text for humans
    seconds: float                # wall time spent on this sample
    members: dict[str, bytes] = field(default_factory=dict)  # tar member name -> bytes; empty unless ok
    stats: dict[str, Scalar] = field(default_factory=dict)   # flat scalars for the shard parquet

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.status == STATUS_OK:
            if self.reason is not None:
                raise ValueError(f"{self.key}: an ok sample has no reason (got {self.reason!r})")
        else:
            check_reason(self.reason or "")
            if self.members:
                raise ValueError(f"{self.key}: a {self.status} sample carries no members")
        for k, v in self.stats.items():
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise TypeError(f"{self.key}: stat {k!r} must be a flat scalar, got {type(v).__name__}")

    @classmethod
    def problem(cls, uid: str, clip: int, key: str, reason: str, detail: str, seconds: float,
                stats: dict[str, Scalar] | None = None) -> "SampleResult":
        """A failed or rejected sample; the status follows from the reason."""
        return cls(uid=uid, clip=clip, key=key, status=status_for(reason), reason=reason, detail=detail,
                   seconds=seconds, members={}, stats=dict(stats or {}))

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.members.values())
