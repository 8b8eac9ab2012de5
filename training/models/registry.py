"""The model families (DESIGN.md §5): one folder each under training/models/, one entry each here.

`get_family(name)` returns a `Family` spec: everything the shared trainer, evaluator and `pipeline
reconstruct` call, so none of them names a family:

- `lrm4d` (training/models/lrm4d/): n_in posed, timed views -> one set of 4D Gaussians, sliced at any time;
- `l4gm` (training/models/l4gm/): a video + t0 views -> 3D Gaussians per window time.

Adding a family: a folder with its model (`build_model`, `forward_render`), its sample stages, its
evaluation protocol and its reconstruction hook, one entry in `_BUILDERS` below, and its name and
presets in training/config.py. Each family's modules are imported only when that family is asked for.
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
    # forward_render(model, batch, cfg, backend, autocast, size=None) -> (gaussians, rgb, alpha)
    forward_render: Callable[..., Any]
    # () -> (picker, builder) stage classes for training/data/stream.make_dataset(stages=...)
    sample_stages: Callable[[], tuple[type, type]]
    # evaluate(state, checkpoint_path, shards, out, protocol, **options) -> EvalResult (`pipeline eval`)
    evaluate: Callable[..., Any]
    # reconstruct(model, cfg, clip, ...) -> outputs of `pipeline reconstruct` (training/export/reconstruct.py)
    reconstruct: Callable[..., Any]


def _lrm4d() -> Family:
    from training.data import stream
    from training.models.lrm4d import model, protocol, recon

    return Family("lrm4d", model.Reconstructor, model.forward_render, lambda: (stream.PickViews, stream.BuildSample),
                  protocol.evaluate_lrm4d, recon.reconstruct_clip)


def _l4gm() -> Family:
    from training.models.l4gm import model, protocol, recon, samples

    return Family("l4gm", model.VideoReconstructor, model.forward_render,
                  lambda: (samples.PickWindow, samples.BuildWindowSample), protocol.evaluate_l4gm,
                  recon.reconstruct_clip)


_BUILDERS: dict[str, Callable[[], Family]] = {"lrm4d": _lrm4d, "l4gm": _l4gm}
assert set(_BUILDERS) == set(FAMILIES), "training/config.py FAMILIES and the registry disagree"


def get_family(name: str) -> Family:
    if name not in _BUILDERS:
        raise ValueError(f"--set model.family={name!r}: one of {tuple(_BUILDERS)}")
    return _BUILDERS[name]()


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model of `cfg.family`, built from its config."""
    return get_family(cfg.family).build_model(cfg)


def forward_render(model: nn.Module, batch: dict, cfg: Any, backend: str, autocast: Any, size: int | None = None):
    """Reconstruct Gaussians from a batch's inputs and render every target, the way `cfg.model.family`
    does. Returns (gaussians, rgb, alpha)."""
    return get_family(cfg.model.family).forward_render(model, batch, cfg, backend, autocast, size)
