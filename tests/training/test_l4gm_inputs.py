"""L4GM inference inputs: the interpolation model's in-between frames get cameras and anchors that match
their blended images, and `pipeline reconstruct` picks video / t0 views that exist where they are used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.geometry import intrinsics, orbit_cameras
from training.data.clip import Clip, Frame, InputError, Views
from training.models.l4gm.longvideo import interpolation_views
from training.models.l4gm.recon import choose_inputs as choose_l4gm_inputs


def _tracked_video(T: int = 3) -> tuple[Views, torch.Tensor]:
    """A fixed view framed on a moving object (framing 'track'): camera = anchor(t) + a constant offset."""
    anchors = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.1, 0.05], [0.9, 0.2, -0.1]])[:T]  # [T, 3]
    base = orbit_cameras(1, 2.0, elevation_deg=20.0)[0]  # [4, 4] framed on the origin
    c2w = base.expand(T, 4, 4).clone()
    c2w[:, :3, 3] += anchors
    rgb = torch.rand(T, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return Views(rgb, c2w, intrinsics(49.1, 8, 8).expand(T, 3, 3), torch.linspace(0, 1, T), anchors), base


def test_interpolated_frames_keep_each_cameras_offset_from_its_own_anchor():
    video, base = _tracked_video()
    dense = interpolation_views(video)
    assert dense.rgb.shape[0] == 3 * (3 - 1) + 1
    offset = dense.c2w[:, :3, 3] - dense.anchors()  # [7, 3]: the same tracked offset at every frame
    torch.testing.assert_close(offset, base[:3, 3].expand(7, 3))
    torch.testing.assert_close(dense.c2w[:, :3, :3], base[:3, :3].expand(7, 3, 3))
    a = 1 / 3  # the first in-between frame: image, time and anchor blended alike
    torch.testing.assert_close(dense.rgb[1], (1 - a) * video.rgb[0] + a * video.rgb[1])
    torch.testing.assert_close(dense.time[1], (1 - a) * video.time[0] + a * video.time[1])
    torch.testing.assert_close(dense.anchor[1], (1 - a) * video.anchor[0] + a * video.anchor[1])
    torch.testing.assert_close(dense.c2w[[0, 3, 6]], video.c2w)  # real frames untouched
    still = Views(video.rgb, base.expand(3, 4, 4), video.K, video.time)  # framed on the origin: stays put
    torch.testing.assert_close(interpolation_views(still).c2w, base.expand(7, 4, 4))


def _clip(missing: set[tuple[int, int]], T: int = 3, V: int = 5) -> Clip:
    rgba = np.zeros((4, 4, 4), np.float32)
    frames = [Frame(t, v, t / (T - 1), rgba, np.eye(4), np.eye(3), True, f"k.{t:03d}.{v:02d}.webp")
              for t in range(T) for v in range(V) if (t, v) not in missing]
    return Clip(frames, "clipkey", "sample", [t / (T - 1) for t in range(T)])


def test_l4gm_inputs_use_views_that_are_complete_where_they_are_used():
    video, t0 = choose_l4gm_inputs(_clip(set()), 3)  # all complete: as before
    assert [f.view for f in video] == [0, 0, 0] and [f.frame for f in video] == [0, 1, 2]
    assert [f.view for f in t0] == [1, 2, 4] and all(f.frame == 0 for f in t0)
    # view 0 misses a middle time: the video is another, complete view, not a video with a gap
    video, t0 = choose_l4gm_inputs(_clip({(1, 0)}), 3)
    assert [f.frame for f in video] == [0, 1, 2] and len({f.view for f in video}) == 1 and video[0].view != 0
    assert video[0].view not in {f.view for f in t0} and all(f.frame == 0 for f in t0)
    # view 0 has its first time, so it may serve as a t0 view
    assert len(t0) == 3 and len({f.view for f in t0}) == 3
    with pytest.raises(InputError, match=r"--input clipkey: no fixed view has an image at every one"):
        choose_l4gm_inputs(_clip({(1 + v % 2, v) for v in range(5)}), 3)  # each view misses a time
    with pytest.raises(InputError, match=r"--input clipkey: 2 other fixed view\(s\) have an image at the first time"):
        choose_l4gm_inputs(_clip({(0, 3), (0, 4)}), 3)
