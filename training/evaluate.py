"""`pipeline eval`: score a checkpoint on shards with its model family's fixed, seeded protocol.

The checkpoint records its family; the family's spec (training/models/registry.py) supplies the
protocol (`Family.evaluate`): `sparse4` for lrm4d (training/models/lrm4d/protocol.py), `mono4` for l4gm
(training/models/l4gm/protocol.py). What every protocol shares lives in training/eval/.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from training.checkpoint import checkpoint_family, read_checkpoint
from training.eval.loop import EvalResult
from training.eval.protocol import format_summary as _format
from training.models.registry import get_family


def evaluate(checkpoint: str | os.PathLike, shards: str, out: str | os.PathLike,
             protocol: Any | Mapping[str, Any] | None = None, **options: Any) -> EvalResult:
    """Score `checkpoint` on every sample of `shards` with its family's protocol; write `out`.
    `protocol`: a dict of the command's protocol options (name, seed, n_in, per_kind, image_size; a family
    may ignore or reinterpret them) or a family-specific protocol object."""
    state, path = read_checkpoint(checkpoint)
    family = checkpoint_family(state)
    try:
        spec = get_family(family)
    except ValueError:
        raise ValueError(f"--checkpoint {path}: model family {family!r} has no evaluation protocol") from None
    return spec.evaluate(state, path, shards, out, protocol, **options)


def format_summary(res: EvalResult, top: int = 5) -> str:
    """The printed summary: held-out and seen-in-training clips apart, baselines, the worst samples."""
    return _format(res.rows, res.summary, res.skipped, res.worst[0].parent if res.worst else None, top)
