"""The one place that knows about torch.distributed: process group set-up, DDP wrapping, reductions.

Started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment) it joins the
group: NCCL on GPUs, gloo on CPUs. Started plainly, it is a world of one and wraps nothing.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from training.config import ConfigError, DDPConfig

log = logging.getLogger(__name__)

# Tensors handed to a collective, watched until the backend lets go of them (see `close`).
_handed: list[weakref.ref] = []


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str | None = None, timeout_s: int = 1800) -> DistInfo:
    """Join the process group if torchrun started us; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
        log.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def wrap(model: nn.Module, info: DistInfo, cfg: DDPConfig | None = None) -> nn.Module:
    """DDP around the single-device model when there are several ranks; the model itself otherwise.
    cfg: the run's `ddp` settings (bucket size, bucket views, static graph, bf16 all-reduce hook)."""
    if info.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    cfg = cfg or DDPConfig()
    import torch._dynamo

    torch._dynamo.config.optimize_ddp = cfg.split_compiled  # read when a compiled block first runs under DDP
    ids = [info.device.index] if info.device.type == "cuda" else None
    wrapped = DDP(model, device_ids=ids, bucket_cap_mb=cfg.bucket_cap_mb,
                  gradient_as_bucket_view=cfg.gradient_as_bucket_view, static_graph=cfg.static_graph)
    hook = cfg.comm_hook
    if hook == "auto":  # bf16 all-reduce where NCCL has it (measured faster for base on 2 x H200), fp32 on gloo
        hook = "bf16" if info.device.type == "cuda" else "none"
    if hook == "bf16":
        if info.device.type != "cuda":  # torch's hook checks for NCCL and raises a bare TypeError otherwise
            raise ConfigError("--set ddp.comm_hook=bf16 needs CUDA ranks (NCCL); use none on CPUs (gloo)")
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook

        wrapped.register_comm_hook(dist.group.WORLD, bf16_compress_hook)
    if info.is_main:
        log.info("DDP: bucket_cap_mb=%d gradient_as_bucket_view=%s static_graph=%s comm_hook=%s split_compiled=%s",
                 cfg.bucket_cap_mb, cfg.gradient_as_bucket_view, cfg.static_graph,
                 hook if hook == cfg.comm_hook else f"{hook} ({cfg.comm_hook})",
                 cfg.split_compiled)
    return wrapped


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over ranks (identity for one rank)."""
    if info.world_size == 1 or not values:
        return values
    keys = sorted(values)
    t = _watched(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(info)))
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def total(value: float, info: DistInfo) -> float:
    if info.world_size == 1:
        return value
    t = _watched(torch.tensor([float(value)], dtype=torch.float64, device=_comm_device(info)))
    dist.all_reduce(t)
    return float(t.item())


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on any (so all ranks stop at the same step)."""
    if info.world_size == 1:
        return flag
    return total(1.0 if flag else 0.0, info) > 0


def broadcast_json(value, info: DistInfo, src: int = 0):
    """Rank `src`'s JSON-serialisable `value` on every rank (as UTF-8 bytes in a tensor: nothing is pickled)."""
    if info.world_size == 1:
        return value
    dev = _comm_device(info)
    data = json.dumps(value).encode("utf-8") if info.rank == src else b""
    n = _watched(torch.tensor([len(data)], dtype=torch.int64, device=dev))
    dist.broadcast(n, src=src)
    buf = _watched(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev) if info.rank == src
                   else torch.empty(int(n.item()), dtype=torch.uint8, device=dev))
    dist.broadcast(buf, src=src)
    return json.loads(bytes(buf.cpu().numpy()).decode("utf-8"))


def gather_json(value, info: DistInfo) -> list:
    """Every rank's JSON-serialisable `value`, in rank order, on every rank (a world of one: [value])."""
    if info.world_size == 1:
        return [value]
    return [broadcast_json(value, info, src=r) for r in range(info.world_size)]


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def close(*wrapped: torch.nn.Module, timeout_s: float = 10.0) -> None:
    """Leave the process group, then wait until the backend has dropped every tensor we gave it.

    `wrapped`: the DDP modules of this process. Their reducers are dropped first, while the group is
    still registered: a reducer freed later holds the group's last reference, and freeing it then runs
    the group's destructor with the GIL held, which joins gloo's worker threads while one of them waits
    for the GIL to release a finished work's Python state (a hang seen once in a full test run:
    tests/training/test_ddp.py's two spawned ranks).

    gloo's worker threads release a finished collective (and a barrier the collectives queued before it)
    a moment after `wait()` has returned. Releasing a tensor made in Python takes the GIL; a thread that
    takes it while the interpreter exits is ended inside a C++ destructor, and the process dies with
    SIGABRT ("terminate called without an active exception") after training has finished: a failed
    torchrun rank. Sleeping here hands the GIL to those threads while the interpreter is still alive."""
    for module in wrapped:
        if hasattr(module, "reducer"):
            del module.reducer  # the group stays alive in the registry: nothing is joined here
    if wrapped:
        import gc

        gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()
    deadline = time.monotonic() + timeout_s
    while any(r() is not None for r in _handed):
        if time.monotonic() > deadline:
            log.warning("the process group still held %d tensor(s) %.0f s after it was destroyed",
                        sum(r() is not None for r in _handed), timeout_s)
            break
        time.sleep(0.002)
    _handed.clear()


def _watched(t: torch.Tensor) -> torch.Tensor:
    """`t`, remembered (weakly) until the backend releases it; `close` waits for that."""
    _handed[:] = [r for r in _handed if r() is not None]  # the released ones go: the list stays short
    _handed.append(weakref.ref(t))
    return t


def _comm_device(info: DistInfo) -> torch.device:
    return info.device if info.device.type == "cuda" else torch.device("cpu")
