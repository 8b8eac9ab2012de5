"""Evaluation protocols: what every family's `pipeline eval` shares (DESIGN.md §5).

A protocol belongs to one model family. Its tag `NAME-vVERSION[SETTINGS]/FAMILY@SIZE` (e.g.
`sparse4-v2/lrm4d@256`, or `sparse4-v2[n_in=8]/lrm4d@256` when a setting that changes which pairs are
scored or how differs from the protocol's default) is written in every metrics row; metrics of
different tags are never compared or subtracted. This module holds the pieces a family's evaluator calls:

- `protocol_tag` / `parse_tag` / `changed_settings`: the tag format and the rule for its settings;
- target kinds by camera (`fixed_views`, `target_kind`, from training/data/views.py, which the training
  sample pickers share);
- `PROTOCOL_LOSS` and `protocol_loss`: the `loss` column's formula, owned by the protocol (not by the
  checkpoint's training weights, not by whether LPIPS weights exist), recorded in the metrics file;
- `score_targets` / `baseline_scores`: per-target PSNR, SSIM, LPIPS (full image and inside the
  target's object box, `*_obj`) for the model and the two baselines;
- `sample_row`: one metrics row from per-target scores, counting only held-out targets;
- `write_metrics` / `read_metrics_info`: metrics.parquet with the protocol settings in its metadata;
- `summarize` / `format_summary`: means printed separately for clips seen and not seen in training.

The 4D-LRM protocol itself (`sparse4`, its pair choice) lives in training/models/lrm4d/protocol.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from training.data.views import ALL_KINDS, KINDS, NOT_SCORED, SPARSE_KINDS, fixed_views, target_kind  # noqa: F401
from training.losses.terms import object_boxes, psnr, psnr_in_boxes, ssim, ssim_in_boxes

# The `loss` column of every protocol: colour MSE + 0.5 x alpha MSE, per target, averaged over the
# scored targets. LPIPS and SSIM have their own columns and never enter `loss`, so the value depends
# neither on the checkpoint's training loss weights nor on --lpips-weights. Change = new version.
PROTOCOL_LOSS = {"mse": 1.0, "mask": 0.5}

TAG_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)-v(?P<version>\d+)(?:\[(?P<settings>[A-Za-z0-9_]+=[A-Za-z0-9_.-]+"
                    r"(?:,[A-Za-z0-9_]+=[A-Za-z0-9_.-]+)*)\])?/(?P<family>[A-Za-z0-9_]+)@(?P<size>\d+)$")

# metrics.parquet: DESIGN.md §5 columns first, in this order, then psnr_obj and seen_in_training.
DESIGN_COLUMNS = ("uid", "clip", "key", "shard", "psnr", "ssim", "lpips", "loss", "step", "protocol",
                  "psnr_obj", "seen_in_training")
METADATA_KEY = b"objaverse4d.metrics"


def protocol_tag(name: str, version: int, family: str, image_size: int,
                 settings: Mapping[str, Any] | None = None) -> str:
    """`NAME-vVERSION[SETTINGS]/FAMILY@SIZE`, the string in every metrics row. `settings`: the protocol's
    settings that differ from its defaults and change which pairs are scored or how (DESIGN.md §5), in
    the protocol's field order, e.g. {'n_in': 8} -> `sparse4-v2[n_in=8]/lrm4d@256`; none -> no brackets."""
    part = ",".join(f"{k}={_setting_text(v)}" for k, v in (settings or {}).items())
    tag = f"{name}-v{int(version)}{f'[{part}]' if part else ''}/{family}@{int(image_size)}"
    if not TAG_RE.match(tag):
        raise ValueError(f"protocol tag {tag!r}: name and family must be [A-Za-z0-9_]+ (--protocol)")
    return tag


def _setting_text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def changed_settings(protocol: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The fields `keys` of a protocol dataclass whose values differ from the class defaults, in order:
    what its tag must carry (DESIGN.md §5)."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(protocol)}
    return {k: getattr(protocol, k) for k in keys if getattr(protocol, k) != defaults[k]}


def protocol_rng(name: str, version: int, seed: int, key: str) -> random.Random:
    """A protocol's random stream for one sample: from (name, version, seed, sample key) alone, so every
    checkpoint scored with the protocol gets the same choices."""
    digest = hashlib.sha256(f"{name}:{version}:{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def parse_tag(tag: str) -> dict[str, Any]:
    """{'name', 'version', 'family', 'image_size', 'settings'} of a tag (settings: {key: text} of the
    bracketed part, {} without one); ValueError for an old or foreign one."""
    m = TAG_RE.match(str(tag))
    if not m:
        raise ValueError(f"protocol {tag!r} is not NAME-vN[SETTINGS]/FAMILY@SIZE (written before protocol v2?)")
    settings = dict(kv.split("=", 1) for kv in m["settings"].split(",")) if m["settings"] else {}
    return {"name": m["name"], "version": int(m["version"]), "family": m["family"], "image_size": int(m["size"]),
            "settings": settings}


# -- the loss column and per-target scores --------------------------------------------------------


def protocol_loss(pred: Tensor, tg: Tensor, pred_alpha: Tensor, tg_alpha: Tensor) -> Tensor:
    """PROTOCOL_LOSS per target. pred, tg: [N, 3, H, W]; alphas [N, 1, H, W] -> [N]."""
    mse = (pred.float() - tg.float()).pow(2).flatten(1).mean(-1)
    mask = (pred_alpha.float() - tg_alpha.float()).pow(2).flatten(1).mean(-1)
    return PROTOCOL_LOSS["mse"] * mse + PROTOCOL_LOSS["mask"] * mask


@torch.no_grad()
def score_targets(pred: Tensor, tg: Tensor, pred_alpha: Tensor, tg_alpha: Tensor, lpips_net=None) -> dict[str, Tensor]:
    """Per-target metrics of a prediction. pred, tg: [N, 3, H, W] in [0, 1]; alphas [N, 1, H, W].

    psnr/ssim/lpips over the whole image; psnr_obj/ssim_obj/lpips_obj inside the bounding box of the
    target's alpha > 0.1 (the whole image when that is empty); loss = PROTOCOL_LOSS. Each [N] (lpips
    entries only with `lpips_net`)."""
    pred, tg = pred.float().clamp(0, 1), tg.float()
    boxes = object_boxes(tg_alpha)
    out = {"psnr": psnr(pred, tg), "psnr_obj": psnr_in_boxes(pred, tg, boxes), "ssim": ssim(pred, tg),
           "ssim_obj": ssim_in_boxes(pred, tg, boxes), "loss": protocol_loss(pred, tg, pred_alpha, tg_alpha)}
    if lpips_net is not None:
        from training.losses.terms import lpips_in_boxes

        out["lpips"] = lpips_net(pred, tg)
        out["lpips_obj"] = lpips_in_boxes(lpips_net, pred, tg, boxes)
    return out


@torch.no_grad()
def baseline_scores(tg: Tensor, tg_alpha: Tensor, nearest: Tensor) -> dict[str, Tensor]:
    """PSNR (whole image and object box) of the two baselines, per target [N]:
    nearest input frame (`nearest` [N, 3, H, W], copied as is) and mean colour (each target predicted as
    its own mean colour: over the image for psnr, over the box for psnr_obj, the best constant guess)."""
    tg = tg.float()
    boxes = object_boxes(tg_alpha)
    mean_img = tg.mean(dim=(-1, -2), keepdim=True).expand_as(tg)
    mean_box = torch.stack([tg[i, :, y0:y1, x0:x1].mean(dim=(-1, -2), keepdim=True).expand_as(tg[i])
                            for i, (y0, y1, x0, x1) in enumerate(boxes)]) if len(boxes) else mean_img
    return {"psnr_nearest_input": psnr(nearest.float(), tg),
            "psnr_obj_nearest_input": psnr_in_boxes(nearest.float(), tg, boxes),
            "psnr_mean_colour": psnr(mean_img, tg), "psnr_obj_mean_colour": psnr_in_boxes(mean_box, tg, boxes)}


ROW_METRICS = ("psnr", "psnr_obj", "ssim", "ssim_obj", "lpips", "lpips_obj", "loss", "psnr_nearest_input",
               "psnr_obj_nearest_input", "psnr_mean_colour", "psnr_obj_mean_colour")


def sample_row(scores: Mapping[str, Tensor], kinds: Sequence[str]) -> dict[str, Any]:
    """The metric columns of one sample's row from its per-target scores ([T] each) and target kinds.

    Headline numbers average the scored targets only (never `seen` or `pad`); psnr and psnr_obj also
    per kind. A sample with no scored target gets None everywhere (the caller counts it)."""
    ok = [j for j, k in enumerate(kinds) if k not in NOT_SCORED]
    row: dict[str, Any] = {}
    for name in ROW_METRICS:
        v = scores.get(name)
        row[name] = float(v[ok].mean()) if v is not None and ok else None
    for kind in KINDS:
        sel = [j for j, k in enumerate(kinds) if k == kind]
        for name in ("psnr", "psnr_obj"):
            row[f"{name}_{kind}"] = float(scores[name][sel].mean()) if sel else None
    row["n_targets"] = len(ok)
    return row


# -- seen in training ---------------------------------------------------------------------------------


def seen_in_training(shard_url: str | None, trained: Mapping[str, Any] | None) -> bool | None:
    """True when `shard_url` is one of the shards the checkpoint trained on (its `trained_on` record,
    training/checkpoint.py); None when the checkpoint records nothing (written before the record).

    By content identity (DESIGN.md §4: tar_bytes and tar_sha256 in the shard's stats.json) when both the
    shard and the record have one, so a local path and a URL to the same shard match and a shard
    rewritten in place does not; by location (the real path, or the URL as given) otherwise."""
    from contracts.identity import shard_identity, valid_identity
    from training.checkpoint import shard_id

    if trained is None:
        return None
    content = {k: valid_identity(v) for k, v in (trained.get("content") or {}).items()}
    mine = shard_identity(shard_url) if shard_url else None
    if mine is not None and mine in content.values():
        return True
    sid = shard_id(shard_url or "")
    if sid not in set(trained.get("shards", [])):
        return False
    recorded = content.get(sid)
    return True if mine is None or recorded is None else recorded == mine


# -- metrics files -------------------------------------------------------------------------------------


def write_metrics(rows: list[dict], out: str | os.PathLike, *, tag: str, protocol: Mapping[str, Any],
                  background: str, **meta: Any) -> Path:
    """metrics.parquet (DESIGN_COLUMNS first), atomically. The metadata records the protocol tag and
    settings, the loss formula (PROTOCOL_LOSS) and the background the targets were composited on:
    mining refuses to compare files that differ in any of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    types = {"uid": pa.string(), "clip": pa.int32(), "key": pa.string(), "shard": pa.int32(), "psnr": pa.float64(),
             "ssim": pa.float64(), "lpips": pa.float64(), "loss": pa.float64(), "step": pa.int64(),
             "protocol": pa.string(), "psnr_obj": pa.float64(), "seen_in_training": pa.bool_()}
    extra_types = {"n_targets": pa.int32(), "image_size": pa.int32(), "pairs": pa.string(), "family": pa.string()}
    names = list(types) + [k for k in rows[0] if k not in types] if rows else list(types)
    fields = [pa.field(k, types.get(k) or extra_types.get(k, pa.float64())) for k in names]
    table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    info = {"protocol": dict(protocol), "protocol_tag": tag, "loss_weights": dict(PROTOCOL_LOSS),
            "background": background, "command": " ".join(sys.argv), **meta}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(info, default=str).encode()})
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return out


def read_metrics_info(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata `write_metrics` stored ({} for a file written by other code)."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    raw = md.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


# -- summaries ---------------------------------------------------------------------------------------

SUMMARY_METRICS = ("psnr", "psnr_obj", "ssim", "ssim_obj", "lpips", "lpips_obj", "loss",
                   *[f"psnr_{k}" for k in KINDS], *[f"psnr_obj_{k}" for k in KINDS], "psnr_nearest_input",
                   "psnr_obj_nearest_input", "psnr_mean_colour", "psnr_obj_mean_colour")


def summarize(rows: Iterable[dict]) -> dict[str, Any]:
    """Means over samples of every metric, for all rows and apart for clips seen / not seen in training
    ('unseen', 'seen', 'unknown' when the checkpoint records no training shards)."""
    rows = list(rows)

    def means(rs: list[dict]) -> dict[str, Any]:
        cols = defaultdict(list)
        for r in rs:
            for k in SUMMARY_METRICS:
                v = r.get(k)
                if isinstance(v, float) and not math.isnan(v):
                    cols[k].append(v)
        return {"samples": len(rs), **{k: (float(np.mean(cols[k])) if cols.get(k) else None) for k in SUMMARY_METRICS}}

    groups = {"unseen": [r for r in rows if r.get("seen_in_training") is False],
              "seen": [r for r in rows if r.get("seen_in_training") is True],
              "unknown": [r for r in rows if r.get("seen_in_training") is None]}
    return {**means(rows), "groups": {g: means(rs) for g, rs in groups.items() if rs}}


GROUP_TITLES = {"unseen": "held-out clips (shards never trained on)", "seen": "clips seen in training",
                "unknown": "clips (the checkpoint does not record its training shards)"}


def format_summary(rows: list[dict], summary: Mapping[str, Any], skipped: Mapping[str, int], worst_dir: Path | None,
                   top: int = 5) -> str:
    f = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"evaluated {summary['samples']} sample(s) with protocol {rows[0]['protocol']} at step {rows[0]['step']}"]
    for g in ("unseen", "seen", "unknown"):
        s = summary["groups"].get(g)
        if not s:
            continue
        lines += [f"  {GROUP_TITLES[g]}: {s['samples']} sample(s)",
                  f"    psnr {f(s['psnr'])} dB  psnr_obj {f(s['psnr_obj'])} dB  ssim {f(s['ssim'], 3)}  "
                  f"lpips {f(s['lpips'], 3)}  loss {f(s['loss'], 4)}",
                  f"    psnr (obj) by target kind: novel view+time {f(s['psnr_novel_view_time'])} "
                  f"({f(s['psnr_obj_novel_view_time'])}), novel time {f(s['psnr_novel_time'])} "
                  f"({f(s['psnr_obj_novel_time'])}), novel view {f(s['psnr_novel_view'])} ({f(s['psnr_obj_novel_view'])})"
                  + (f", camera seen at another time {f(s['psnr_known_view'])} ({f(s['psnr_obj_known_view'])})"
                     if s["psnr_known_view"] is not None else ""),
                  f"    baselines psnr (obj): nearest input frame {f(s['psnr_nearest_input'])} "
                  f"({f(s['psnr_obj_nearest_input'])}) dB, mean colour {f(s['psnr_mean_colour'])} "
                  f"({f(s['psnr_obj_mean_colour'])}) dB"]
    if "seen" in summary["groups"] and "unseen" not in summary["groups"]:
        lines.append("  NOTE: every clip was seen in training; these numbers say nothing about generalisation")
    if skipped:
        lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    worst = sorted(rows, key=lambda r: -r["loss"])[:top]
    lines.append(f"  worst {len(worst)} by loss:")
    for r in worst:
        seen = {True: "seen", False: "held-out", None: "?"}[r.get("seen_in_training")]
        lines.append(f"    {r['key']:<32} shard {r['shard']:>4} ({seen})  loss {r['loss']:.4f}  psnr {r['psnr']:.2f}  "
                     f"psnr_obj {r['psnr_obj']:.2f}")
    if worst_dir is not None:
        lines.append(f"  grids of the worst: {worst_dir}")
    return "\n".join(lines)
