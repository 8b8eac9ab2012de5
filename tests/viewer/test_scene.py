"""The scene the viewer builds from a real Blender render and a real reconstruction, on a real viser
server: frustums are the sample's cameras, depth points land on the rendered surface, only the
members shown are read, splats are the .ply's Gaussians."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from contracts import layout, reads, storage
from contracts.shardread import iter_shard
from render.cameras import project
from viewer.dataset import Dataset
from viewer.gaussians import SH_C0, read_properties, read_splats
from viewer.recon import input_views, open_reconstruction
from viewer.scene import SampleLayer, SplatLayer, on_white, sample_frame


@pytest.fixture(scope="module")
def rendered(procedural_one, first_key):
    """(reader through the member index, the same sample streamed whole from the tar)."""
    ds = Dataset(str(procedural_one))
    n = ds.listing().committed[0].number
    streamed = next(iter_shard(procedural_one / layout.tar_name(n), keys={first_key}))
    return ds.sample(n, first_key), streamed


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1, constant_values=False)
    H, W = mask.shape
    return np.all([p[1 + a:1 + a + H, 1 + b:1 + b + W] for a in (-1, 0, 1) for b in (-1, 0, 1)], axis=0)


def test_frustums_are_the_samples_cameras_with_their_images(rendered, viser_server):
    import viser.transforms as vtf

    reader, streamed = rendered
    assert reader.meta == streamed.meta  # the JSON read by one ranged read is the tar's
    c2w, K = np.asarray(streamed.meta["c2w"]), np.asarray(streamed.meta["K"])
    W, H = streamed.meta["width"], streamed.meta["height"]
    layer = SampleLayer(viser_server.scene, reader)
    assert reader.T >= 2 and reader.V >= 2
    for t in range(reader.T):
        layer.show(sample_frame(reader, t, depth_views=[]))
        for v in range(reader.V):
            h = layer.frustums[v]
            np.testing.assert_allclose(vtf.SO3(np.asarray(h.wxyz)).as_matrix(), c2w[t, v, :3, :3], atol=1e-6)
            np.testing.assert_allclose(h.position, c2w[t, v, :3, 3], atol=1e-9)
            assert math.isclose(h.fov, 2 * math.atan(H / 2 / K[v, 1, 1]), rel_tol=1e-9)
            assert math.isclose(h.aspect, W / H)
            np.testing.assert_array_equal(h.image, on_white(streamed.rgba(t, v)))  # this time's image


def test_depth_points_land_on_the_rendered_surface(rendered):
    reader, streamed = rendered
    c2w, K = np.asarray(streamed.meta["c2w"]), np.asarray(streamed.meta["K"])
    checked = 0
    for t in range(reader.T):
        for a in range(reader.V):
            frame = sample_frame(reader, t, depth_views=[a], max_points=10**9)
            d_a, rgba_a = streamed.depth(t, a), streamed.rgba(t, a)
            assert len(frame.points) == int(((d_a > 0) & (rgba_a[..., 3] > 0)).sum()) > 50
            # back through the renderer's own projection: each point at its pixel centre and depth
            uv, z = project(frame.points.astype(np.float64), c2w[t, a], K[a])
            ij = np.floor(uv).astype(int)
            np.testing.assert_allclose(uv - ij, 0.5, atol=2e-3)
            np.testing.assert_allclose(z, d_a[ij[:, 1], ij[:, 0]], rtol=1e-5, atol=1e-5)
            colours = rgba_a[ij[:, 1], ij[:, 0], :3]
            np.testing.assert_array_equal(frame.colors, colours)
            # into every other view at the same time: onto the object, never in front of its surface
            keep = _erode((rgba_a[..., 3] == 255) & (d_a > 0))[ij[:, 1], ij[:, 0]]
            for b in range(reader.V):
                if b == a:
                    continue
                uvb, zb = project(frame.points[keep].astype(np.float64), c2w[t, b], K[b])
                ijb = np.floor(uvb).astype(int)
                d_b, alpha_b = streamed.depth(t, b), streamed.rgba(t, b)[..., 3]
                Hb, Wb = d_b.shape
                inside = (zb > 0) & (ijb[:, 0] >= 0) & (ijb[:, 0] < Wb) & (ijb[:, 1] >= 0) & (ijb[:, 1] < Hb)
                if inside.sum() < 20:
                    continue
                i, j, zb = ijb[inside, 1], ijb[inside, 0], zb[inside]
                near = np.pad(alpha_b > 0, 1)  # covered within one pixel (silhouettes are 1 px sharp at 32 px)
                covered = np.max([near[i + 1 + di, j + 1 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], axis=0)
                assert covered.mean() > 0.97, (t, a, b, covered.mean())
                interior = _erode((alpha_b == 255) & (d_b > 0))[i, j]
                pad = np.pad(np.where(d_b > 0, d_b, np.inf), 1, constant_values=np.inf)
                nearest = np.min([pad[i + 1 + di, j + 1 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], axis=0)
                tol = 2.0 * np.linalg.norm(c2w[t, b, :3, 3]) / K[b, 0, 0]  # two pixel footprints
                if interior.sum():
                    assert (zb[interior] < nearest[interior] - tol).mean() < 0.02, (t, a, b)
                checked += 1
    assert checked >= reader.T * reader.V


def test_one_time_reads_only_its_own_members(rendered):
    reader, _ = rendered
    before = dict(reads.io_counts)
    n_reads = reader.reads
    sample_frame(reader, 1, depth_views=[0])
    got = reads.io_counts["range"] - before.get("range", 0)
    assert reader.reads - n_reads == reader.V + 1  # V images and one depth map, one ranged read each
    shown = sum(reader.members[n][1] for n in [reader.image_name(1, v) for v in range(reader.V)]
                + [layout.depth_member(reader.key, 1, 0)])
    assert got == shown  # not one byte more
    assert got < 0.5 * sum(size for _, size in reader.members.values())


def test_anchor_path_follows_the_tracked_cameras(rendered, viser_server):
    reader, _ = rendered
    assert reader.framing == "track"
    layer = SampleLayer(viser_server.scene, reader)
    anchors = reader.anchors()
    np.testing.assert_allclose(layer.path.points[:, 0], anchors[:-1], atol=1e-6)
    np.testing.assert_allclose(layer.path.points[:, 1], anchors[1:], atol=1e-6)
    for t in (0, reader.T - 1):
        layer.show(sample_frame(reader, t, depth_views=[]))
        np.testing.assert_allclose(layer.anchor.position, anchors[t], atol=1e-6)


def _independent_splats(props: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Centres, covariances, rgb, opacity from named .ply columns (torch's quaternion maths, not ours)."""
    import torch

    q = torch.tensor(np.stack([props[f"rot_{i}"] for i in range(4)], 1), dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)
    s = torch.tensor(np.stack([props[f"scale_{i}"] for i in range(3)], 1), dtype=torch.float64).exp()
    cov = (R * s[:, None, :] ** 2) @ R.transpose(1, 2)
    centres = np.stack([props["x"], props["y"], props["z"]], 1)
    rgb = np.clip(0.5 + SH_C0 * np.stack([props[f"f_dc_{i}"] for i in range(3)], 1), 0, 1)
    opacity = 1 / (1 + np.exp(-props["opacity"].astype(np.float64)))
    return centres, cov.numpy(), rgb, opacity[:, None]


def test_splats_are_the_ply_gaussians_frame_by_frame(reconstruction, viser_server):
    rec = open_reconstruction(reconstruction)
    assert len(rec) >= 2
    layer = SplatLayer(viser_server.scene)
    for k in range(len(rec)):
        centres, cov, rgb, opacity = _independent_splats(read_properties(rec.plys[k]))
        layer.show(rec.splats(k))  # the first frame adds the node, later ones swap its Gaussians
        h = layer.handle
        np.testing.assert_array_equal(h.centers, centres.astype(np.float32))
        np.testing.assert_allclose(h.covariances, cov, rtol=2e-3, atol=1e-6)  # sent as float16
        np.testing.assert_allclose(h.rgbs, np.clip(rgb * 255, 0, 255).astype(np.uint8), atol=0)
        np.testing.assert_allclose(h.opacities, np.clip(opacity * 255, 0, 255).astype(np.uint8), atol=0)
    a, b = rec.splats(0), rec.splats(len(rec) - 1)
    assert not np.allclose(a.opacity, b.opacity)  # the 4D Gaussians sliced at other times differ


def test_full_and_compact_ply_layouts_read_by_name(tmp_path):
    """The full 3DGS record (normals and f_rest) and the compact one, and a reordered file with a uchar
    property, give the same Gaussians."""
    rng = np.random.default_rng(0)
    N = 50
    cols = {"x": rng.normal(size=N), "y": rng.normal(size=N), "z": rng.normal(size=N),
            **{f"f_dc_{i}": rng.normal(size=N) for i in range(3)}, "opacity": rng.normal(size=N),
            **{f"scale_{i}": rng.uniform(-5, -2, N) for i in range(3)}, **{f"rot_{i}": rng.normal(size=N) for i in range(4)}}
    full = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(45)],
            "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    compact = [c for c in full if not c.startswith(("n", "f_rest"))]

    def write(path, names, extra_uchar=False):
        head = ["ply", "format binary_little_endian 1.0", f"element vertex {N}"]
        dt = [(n, "<f4") for n in names] + ([("label", "u1")] if extra_uchar else [])
        rec = np.zeros(N, dtype=dt)
        for n in names:
            rec[n] = cols.get(n, 0.0)
        head += [f"property float {n}" for n in names] + (["property uchar label"] if extra_uchar else [])
        path.write_bytes(("\n".join(head + ["end_header"]) + "\n").encode() + rec.tobytes())
        return path

    a = read_splats(write(tmp_path / "full.ply", full))
    b = read_splats(write(tmp_path / "compact.ply", compact))
    c = read_splats(write(tmp_path / "shuffled.ply", list(reversed(compact)), extra_uchar=True))
    for other in (b, c):
        for f in ("centers", "covariances", "rgb", "opacity"):
            np.testing.assert_array_equal(getattr(a, f), getattr(other, f))
    centres, cov, rgb, opacity = _independent_splats({k: v.astype(np.float32) for k, v in cols.items()})
    np.testing.assert_allclose(a.centers, centres, rtol=1e-6)
    np.testing.assert_allclose(a.covariances, cov, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(a.rgb, rgb, atol=1e-6)
    np.testing.assert_allclose(a.opacity, opacity, atol=1e-6)


def test_reconstruction_input_views_are_the_samples_images(reconstruction, rendered):
    reader, streamed = rendered
    views, why = input_views(open_reconstruction(reconstruction))
    assert why is None and views
    for v in views:
        t, view = int(v.label.split()[1][1:]), int(v.label.split()[2][1:])
        np.testing.assert_array_equal(v.rgba, streamed.rgba(t, view))
        np.testing.assert_array_equal(v.c2w, reader.c2w[t, view])


def test_bad_ply_files_are_named(tmp_path):
    from viewer.gaussians import PlyError

    cases = {"text.ply": b"hello\n", "short.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n"
             b"property float x\nend_header\n" + bytes(4),
             "nocolour.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
             b"property float y\nproperty float z\nend_header\n" + bytes(12)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PlyError, match=name):
            read_splats(tmp_path / name)
    with pytest.raises(PlyError, match="missing properties f_dc_0"):
        read_splats(tmp_path / "nocolour.ply")
    img = io.BytesIO()
    Image.new("RGB", (2, 2)).save(img, format="PNG")
    (tmp_path / "image.ply").write_bytes(img.getvalue())
    with pytest.raises(PlyError, match="not a PLY"):
        read_splats(tmp_path / "image.ply")
