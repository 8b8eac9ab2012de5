"""The model families (DESIGN.md §5) behind one small interface, so the shared trainer, evaluator and
`pipeline reconstruct` dispatch on `model.family` in one place:

- `lrm4d` (training/models/lrm4d/model.py): n_in posed, timed views -> one set of 4D Gaussians, sliced at any time;
- `l4gm` (training/models/l4gm/model.py, l4gm_samples.py): a video + t0 views -> 3D Gaussians per window time.

Each family supplies: build_model(ModelConfig), forward_render(model, batch, cfg, backend, autocast,
size) -> (gaussians, rgb, alpha), and the loader stages that pick and build its samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from training.config import FAMILIES, ModelConfig


@dataclass(frozen=True)
class Family:
    name: str
    build_model: Callable[[ModelConfig], nn.Module]
    forward_render: Callable[..., Any]
    sample_stages: Callable[[], tuple[type, type]]  # (picker, builder) classes for training/data/stream.py


def _lrm4d() -> Family:
    from training.data import stream as data
    from training.models.lrm4d.model import Reconstructor
    from training.train import lrm4d_forward_render

    return Family("lrm4d", Reconstructor, lrm4d_forward_render, lambda: (data.PickViews, data.BuildSample))


def _l4gm() -> Family:
    from training.models.l4gm import model as l4gm_model
    from training.models.l4gm import samples as l4gm_samples

    return Family("l4gm", l4gm_model.VideoReconstructor, l4gm_model.forward_render,
                  lambda: (l4gm_samples.PickWindow, l4gm_samples.BuildWindowSample))


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r}: one of {FAMILIES}")
    return {"lrm4d": _lrm4d, "l4gm": _l4gm}[name]()


def build_model(cfg: ModelConfig) -> nn.Module:
    return get_family(cfg.family).build_model(cfg)


def checkpoint_family(state: dict) -> str:
    """The family a checkpoint was trained as (checkpoints from before families existed: lrm4d)."""
    fam = state.get("family") or ((state.get("config") or {}).get("model") or {}).get("family") or "lrm4d"
    return str(fam)


def require_family(state: dict, expected: str, where: str) -> None:
    """A clear error when a checkpoint of one family meets a command or run of the other."""
    got = checkpoint_family(state)
    if got != expected:
        raise ValueError(f"{where}: checkpoint is of model family {got!r}, but this needs {expected!r} "
                         f"(--preset / --set model.family); the families' weights are not interchangeable")
