"""benchmarks/data_engine_experiment.py's render cache (`cache`, `arm --render-cache`): every clip an arm can
ask for rendered beforehand, so that a host without Blender runs the arms; an arm's new shards are then built
from the cached samples byte for byte (see the experiment's docstring)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from data_engine_common import load_cfg, render_flags, sh


# -- render cache (all rendering done before a GPU call) ------------------------------------------------

CACHE_MANIFEST = "manifest.parquet"


def row_settings(value: object) -> dict:
    """A manifest row's render_settings JSON as a dict ({} for none: the base render)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return {}
    return json.loads(str(value))


def make_cache(out: Path, cache: Path) -> None:
    """Render into CACHE every clip an arm's mining can ask for: each pool row at base density, and each
    round-0 row with the denser settings `pipeline mine --rerender-fraction` writes for it (the same
    manifests.mining.rerender_settings on the same recorded round-0 spec, default Densify). Same render
    flags as the arms' own renders, --threads 1, so the cached per-sample seconds are one core's."""
    import pandas as pd

    from manifests import read_manifest, write_manifest
    from manifests.rerender import Densify, rerender_settings
    from manifests.mining_inputs import read_renders
    from manifests.shards import assign_shards

    c = load_cfg(out)
    renders = read_renders(str(out / "data"))
    r0 = read_manifest(out / "round0.parquet")
    dense = r0.assign(render_settings=[rerender_settings(r, renders, None, Densify()) for r in r0.to_dict("records")])
    dense = dense[dense["render_settings"].notna()]  # at its caps: mining would only up-weight it
    pool = assign_shards(read_manifest(out / "pool.parquet"), c["shard_size"]).assign(render_settings=None)
    dense = assign_shards(dense, c["shard_size"], first_shard=int(pool["shard"].max()) + 1)
    both = pd.concat([pool, dense], ignore_index=True)
    cache.mkdir(parents=True, exist_ok=True)
    write_manifest(both, cache / CACHE_MANIFEST, command="data_engine_experiment cache",
                   settings={"flags": render_flags(c), "threads": 1})
    t = sh(["render", "--manifest", str(cache / CACHE_MANIFEST), "--shards", "all", "--out", str(cache / "data"),
            *render_flags(c), "--threads", "1"], cache / "render.log")
    (cache / "cache.json").write_text(json.dumps({"flags": render_flags(c), "threads": 1, "pool_rows": len(pool),
                                                  "dense_rows": len(dense), "render_wall_s": round(t, 1)}, indent=1))
    print(f"cache {cache}: {len(pool)} pool clips at base density, {len(dense)} round-0 clips denser, {t:.0f} s")


def from_cache(cache: Path, out: Path, nxt, data1: Path) -> None:  # nxt: the arm's next.parquet (DataFrame)
    """Write the new shards of `nxt` (mine's rows and shard numbers) into DATA1 from the cached renders
    instead of rendering them: each sample's members and parquet row (its own `seconds`) copied byte for
    byte. Fails naming --render-cache when a row is not cached with the same render_settings, or the cache
    was rendered with another spec than round 0 (other flags)."""
    from contracts.layout import read_stats

    c = load_cfg(out)
    base = read_stats(out / "data", c["round0_shards"][0]).get("spec")
    copy_rows(cache, nxt[nxt["round"] > 0], data1, base)


def copy_rows(cache: Path, new, data1: Path, base: dict | None) -> None:
    """Write the shards of manifest rows `new` (their shard numbers) into DATA1 from the cached renders,
    each sample's members and parquet row copied byte for byte; `base` is the spec the cache must have."""
    from contracts.layout import is_committed, read_stats, tar_name
    from contracts.uids import sample_key
    from manifests import read_manifest
    from pipeline.retry import read_shard_rows
    from contracts.shardread import iter_shard
    from pipeline.shards import BASE_COLUMNS, ShardWriter
    from render.result import SampleResult

    man = read_manifest(cache / CACHE_MANIFEST)
    where = {(str(u), int(k)): (int(n), row_settings(s))
             for u, k, n, s in zip(man["uid"], man["clip"], man["shard"], man["render_settings"])}
    need: dict[int, set[str]] = {}
    for u, k, s in zip(new["uid"], new["clip"], new["render_settings"]):
        got = where.get((str(u), int(k)))
        if got is None:
            raise SystemExit(f"--render-cache {cache}: no cached render of ({u!r}, clip {int(k)}), which the arm's "
                             "next.parquet asks for; make the cache from this experiment's manifests (`cache`)")
        if got[1] != row_settings(s):
            raise SystemExit(f"--render-cache {cache}: ({u!r}, clip {int(k)}) is cached with render_settings "
                             f"{got[1] or 'none'}, but next.parquet asks for {row_settings(s) or 'none'}")
        need.setdefault(got[0], set()).add(sample_key(str(u), int(k)))
    samples, blender = {}, None
    for n, keys in sorted(need.items()):
        if not is_committed(cache / "data", n):
            raise SystemExit(f"--render-cache {cache}: shard {n} is not committed (an unfinished `cache` run?)")
        stats = read_stats(cache / "data", n)
        if stats.get("spec") != base:
            diff = {k: (stats.get("spec", {}).get(k), v) for k, v in (base or {}).items()
                    if stats.get("spec", {}).get(k) != v}
            raise SystemExit(f"--render-cache {cache}: shard {n} was rendered with another spec than round 0 "
                             f"(cache vs round 0: {diff}); make the cache with this experiment's flags")
        blender = stats.get("blender_version")
        rows = {r["key"]: r for r in read_shard_rows(cache / "data", n)}
        members = {x.key: x.members for x in iter_shard(cache / "data" / tar_name(n), keys=keys)}
        for key in keys:
            r = rows[key]
            extra = {k: v for k, v in r.items() if k not in BASE_COLUMNS}
            if r["status"] == "ok":
                samples[key] = SampleResult(uid=r["uid"], clip=int(r["clip"]), key=key, status="ok", reason=None,
                                            detail=r.get("detail"), seconds=float(r["seconds"]), members=members[key],
                                            stats=extra)
            else:
                samples[key] = SampleResult.problem(r["uid"], int(r["clip"]), key, r["reason"], r.get("detail") or "",
                                                    float(r["seconds"]), stats=extra)
    for n in sorted({int(s) for s in new["shard"]}):
        if is_committed(data1, n):
            continue  # made by an earlier call (scenario data is built once)
        rows = new[new["shard"] == n].sort_values(["uid", "clip"])  # render_shard's order
        w = ShardWriter(data1, n)
        try:
            for u, k in zip(rows["uid"], rows["clip"]):
                w.add(samples[sample_key(str(u), int(k))])
            w.commit({"spec": base, "blender_version": blender, "render_cache": str(cache)})
        except BaseException:
            w.abort()
            raise
