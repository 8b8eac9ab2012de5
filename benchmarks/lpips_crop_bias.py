"""Is LPIPS on one random crop per image an unbiased estimate of the whole image's LPIPS? (CPU, ~35 s)

    python benchmarks/lpips_crop_bias.py [--size 128] [--crops 32,64,96] [--draws 64]

Renders a few analytic scenes (training/data/synthetic.py: objects in the middle of a white background) at two
nearby times, adds a little noise to the second, and compares the LPIPS of each whole image pair with the
mean over `--draws` uniformly placed crops of each size. LPIPS here is a random-weight VGG of the real
shape (lin weights made positive): the question is about the estimator, which does not need the real
weights. BENCHMARKS.md ("A cheaper LPIPS that was not built") has the result: crops cover the centre more
often than the border, so their mean overweights the object and is not the whole image's LPIPS.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from common import positive_lin, repo_on_path  # noqa: E402 (benchmarks/ is sys.path[0])

repo_on_path()

from training.data import synthetic as syn  # noqa: E402
from training.losses.lpips import LPIPS  # noqa: E402


def on_white(rgba: np.ndarray) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(rgba)).float()
    if a.max() > 1.5:
        a = a / 255
    return (a[..., :3] * a[..., 3:4] + (1 - a[..., 3:4])).permute(2, 0, 1)  # [3, H, W]


def random_crops(x: torch.Tensor, y: torch.Tensor, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same uniformly placed crop x crop window of each image pair."""
    N, _, H, W = x.shape
    oy = torch.randint(0, H - crop + 1, (N,), generator=gen)
    ox = torch.randint(0, W - crop + 1, (N,), generator=gen)
    xs = torch.stack([x[i, :, oy[i]:oy[i] + crop, ox[i]:ox[i] + crop] for i in range(N)])
    ys = torch.stack([y[i, :, oy[i]:oy[i] + crop, ox[i]:ox[i] + crop] for i in range(N)])
    return xs, ys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--crops", default="32,64,96")
    ap.add_argument("--draws", type=int, default=64)
    ap.add_argument("--scenes", type=int, default=4)
    a = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for _ in range(a.scenes):
        scene = syn.random_scene(rng)
        cam = syn.sphere_cameras(2, 2.0, rng)[0]
        K = syn.intrinsics(a.size, 35.0)
        xs.append(on_white(syn.render_view(scene, 0.20, cam, K, a.size)[0]))
        ys.append(on_white(syn.render_view(scene, 0.25, cam, K, a.size)[0]))
    x, y = torch.stack(xs), torch.stack(ys)
    y = (y + 0.05 * torch.randn_like(y)).clamp(0, 1)
    net = positive_lin(LPIPS())
    with torch.no_grad():
        full = net(x, y)
        print("whole image LPIPS per scene:", [round(v, 5) for v in full.tolist()])
        gen = torch.Generator().manual_seed(1)
        for c in (int(v) for v in a.crops.split(",")):
            cx, cy = random_crops(x.repeat(a.draws, 1, 1, 1), y.repeat(a.draws, 1, 1, 1), c, gen)
            v = net(cx, cy).view(a.draws, -1)
            mean, se = v.mean(0), v.std(0) / a.draws ** 0.5
            print(f"crop {c:3d} px: mean over {a.draws} crops / whole image = "
                  f"{[round(r, 2) for r in (mean / full).tolist()]}  (standard error / whole: "
                  f"{[round(r, 2) for r in (se / full).tolist()]})")


if __name__ == "__main__":
    main()
