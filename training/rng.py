"""Random streams private to (seed, rank, DataLoader worker, epoch, stage), so every rank and worker
draws its own sequence and a resumed epoch draws the same one again."""

from __future__ import annotations

import random

import torch


def worker_slot() -> tuple[int, int]:
    """(this DataLoader worker's id, the worker count); (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def stream_rng(seed: int, rank: int, epoch: int, salt: int) -> random.Random:
    worker, _ = worker_slot()
    return random.Random(hash((seed, rank, worker, epoch, salt)) & 0xFFFFFFFFFFFF)
