"""LPIPS (VGG-16 variant, Zhang et al. 2018) implemented here, with weights from a local file only.

Nothing is downloaded. The weights file is one state dict of `LPIPS` below, loadable with
`torch.load(..., weights_only=True)`. Make it once, on any machine that has the two public files
(torchvision's `vgg16-397923af.pth` and the lpips package's `weights/v0.1/vgg.pth`):

    python -m training.losses.lpips --vgg vgg16-397923af.pth --lin vgg.pth --out lpips_vgg.pt

and point `--set loss.lpips_weights=lpips_vgg.pt` at it. Without the file the trainer warns once and
trains without the LPIPS term.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# torchvision vgg16 `features` up to relu5_3: conv channels, "M" = max-pool
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS input scaling layer (inputs in [-1, 1])
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """bf16=True (the trainer's setting) on CUDA: the VGG convolutions under bf16 autocast in channels-last
    layout, and each tap's distance (unit-normalise, squared difference, weighted channel sum, mean) as
    one torch.compile'd float32 function instead of a dozen passes over float32 copies of the feature
    maps; BENCHMARKS.md has its speed and its difference from float32. The target's features are
    computed without autograd. size > 0: both images are first area-downsampled to size x size px when larger
    (the trainer's `loss.lpips_size` speed knob; metrics always use the full size)."""

    def __init__(self, bf16: bool = False, size: int = 0):
        super().__init__()
        self.bf16 = bf16
        self.size = size
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers)  # same indices as torchvision's vgg16().features[:30]
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: [N, 3, H, W] in [0, 1]. Returns the per-image distance [N]."""
        if self.size and max(x.shape[-2:]) > self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")  # [N, 3, size, size]
            y = F.interpolate(y, size=(self.size, self.size), mode="area")
        fx = self._features(x)
        with torch.no_grad():  # nothing flows back into the target
            fy = self._features(y)
        total = x.new_zeros(x.shape[0])
        fused = self.bf16 and x.is_cuda
        for lin, a, b in zip(self.lin, fx, fy):
            if fused:
                total = total + _compiled_distance()(a, b, lin.weight)
            else:
                a, b = a.float(), b.float()
                a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    def _features(self, x: Tensor) -> list[Tensor]:
        x = (x * 2 - 1 - self.shift) / self.scale
        fast = self.bf16 and x.is_cuda
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
            return self._taps(x)

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out


def _tap_distance(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """One tap's LPIPS distance per image: a, b [N, C, h, w] features, w [1, C, 1, 1] -> [N] (float32)."""
    a, b = a.float(), b.float()
    a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    return ((a - b) ** 2 * w.float().view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))


_DISTANCE = None


def _compiled_distance():
    global _DISTANCE
    if _DISTANCE is None:
        _DISTANCE = torch.compile(_tap_distance, dynamic=False)
    return _DISTANCE


def load_lpips(path: str | os.PathLike | None, device: torch.device | str = "cpu", bf16: bool = False,
               size: int = 0) -> LPIPS | None:
    """The LPIPS network from a local weights file, or None (with one warning) when it is absent.
    bf16, size: see `LPIPS` (training may use them; metrics keep float32 at full size)."""
    if not path or not os.path.isfile(path):
        log.warning("LPIPS weights not found (%s): training without the LPIPS term. See training/losses/lpips.py "
                    "to make the file from local VGG/LPIPS weights; nothing is downloaded.", path or "no path set")
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = LPIPS(bf16=bf16, size=size)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not an LPIPS weights file (missing {missing[:3]}, unexpected {unexpected[:3]})")
    net = net.to(device)
    if bf16 and torch.device(device).type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def convert(vgg_state: dict[str, Tensor], lin_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict from torchvision's vgg16 state dict and the lpips package's lin weights."""
    out = {k: v for k, v in vgg_state.items() if k.startswith("features.") and int(k.split(".")[1]) < 30}
    for i in range(len(_CHANNELS)):
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.weight") if k in lin_state), None)
        if key is None:
            raise KeyError(f"lin{i}.model.1.weight not in the LPIPS lin weights")
        out[f"lin.{i}.weight"] = lin_state[key]
    LPIPS().load_state_dict(out, strict=True)  # shapes check
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Make the LPIPS weights file from local VGG-16 and LPIPS weights.")
    ap.add_argument("--vgg", required=True, help="torchvision vgg16 state dict (vgg16-397923af.pth)")
    ap.add_argument("--lin", required=True, help="lpips package weights/v0.1/vgg.pth")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    state = convert(torch.load(a.vgg, map_location="cpu", weights_only=True),
                    torch.load(a.lin, map_location="cpu", weights_only=True))
    torch.save(state, a.out)


if __name__ == "__main__":
    main()
