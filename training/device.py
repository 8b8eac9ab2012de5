"""Where a step runs: batches moved to the device and the bf16 autocast the config asks for.

Shared by the trainer, the evaluators and the benchmarks (kept below all of them)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of `batch` on `device` (non-blocking); other values as they are."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def autocast_for(cfg: Any, device: torch.device) -> Any:
    """bf16 autocast for the transformer on CUDA when the config (`cfg.bf16`) asks for it; a no-op
    context otherwise."""
    if cfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
