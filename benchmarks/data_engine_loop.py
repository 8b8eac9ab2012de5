"""Issue 23's experiment, the preparation: scenarios (matched, shifted, real) and one render cache for all of
them, made on a machine with Blender; the GPU host then builds every shard it needs from the cache.

    python benchmarks/data_engine_experiment.py loop-prepare --out .exp23 [--assets .scratch/exp23/assets]

One procedural universe (render/procedural/legacy.py, `--categories legacy`, seed 400: asset i moves with kind KINDS[i % 3], written as
the manifest column `kind`; `skinned` / `morphed` probed from the files, so the GPU host needs no asset file
for the `deform` groups) and the real glTF sets are curated with the real `pipeline curate` and rendered
once with the real `pipeline render --threads 1` into DIR/cache/data. Scenarios take disjoint roles from
them (assets of each kind in index order: round 0, then pool, then target validation, then test):

| scenario | round 0 (rigid/morph/skin assets) | pool | target validation | test (scored) | groups |
|---|---|---|---|---|---|
| matched | 10/10/10 | 40/40/40 | 6/6/6 | 10/10/10 | kind |
| shifted | 13/14/3 (skin 10%) | 54/54/12 (skin 10%) | 4/5/9 (skin half) | 7/8/15 (skin half) | kind |
| real | matched's | matched's | ../shared/assets/gltf clips | ../shared/assets/gltf-val clips | deform |
| category | 3 vehicles + 24 others | 12 vehicles + 96 others | 9 + 9 | 15 + 15 | category |

Shifted: the target emphasises a group that is 10% of round 0 and of the pool and half of the target.
Category: the same shift over the default generator's categories (a second universe, seed 401, vehicles drawn twice
as often so that 39 of them exist; at most 2 clips per asset): vehicles, rigid machines unlike every creature, are
11% of round 0 and of the pool and half of the target; the groups are the manifest's `category` column (issue 22),
seven of them. `--scenarios category` prepares it alone, in its own folder and cache.
Real: the pool is procedural, the validation set real glTF clips, the score on other real assets kept out
of both (gltf-val is never trained on nor used to choose).
"""

from __future__ import annotations

import json
from pathlib import Path

from data_engine_common import KINDS, kind_of, sh

SCENARIOS = ("matched", "shifted", "real", "category")
LEGACY_SCENARIOS = ("matched", "shifted", "real")  # the legacy universe's
ROLES = ("round0", "pool", "val", "test")
GROUP_BY = {"matched": "kind", "shifted": "kind", "real": "deform", "category": "category"}
REAL_SETS = {"val": "gltf", "test": "gltf-val"}
LOOP_SIZES = {
    # gpu: the experiment (~550 clips, ~30 MiB of cache); counts are assets per role and kind (rigid, morph, skin)
    "gpu": dict(universe=252, seed=400, resolution=64, frames=4, views=4, samples=4, format="webp", shard_size=16,
                preset="small", image_size=64, batch=16, steps0=600, steps1=1200, budget=48, real_clips=None,
                counts={"matched": {"round0": (10, 10, 10), "pool": (40, 40, 40), "val": (6, 6, 6), "test": (10, 10, 10)},
                        "shifted": {"round0": (13, 14, 3), "pool": (54, 54, 12), "val": (4, 5, 9), "test": (7, 8, 15)}},
                # the category scenario's universe; counts are assets per role: (rare category, the others)
                category=dict(seed=401, universe=200, rare="vehicle", max_clips=2,
                              mix=("biped", "quadruped", "winged", "crawler", "vehicle", "soft", "blob", "vehicle"),
                              counts={"round0": (3, 24), "pool": (12, 96), "val": (9, 9), "test": (15, 15)})),
    # cpu: a check of the whole flow on the CPU box (numbers mean nothing)
    "cpu": dict(universe=24, seed=400, resolution=32, frames=4, views=4, samples=2, format="webp", shard_size=4,
                preset="tiny", image_size=32, batch=2, steps0=4, steps1=4, budget=4, real_clips=3,
                counts={"matched": {"round0": (1, 1, 1), "pool": (3, 3, 3), "val": (1, 1, 1), "test": (1, 1, 1)},
                        "shifted": {"round0": (1, 1, 1), "pool": (3, 3, 1), "val": (1, 1, 2), "test": (1, 1, 2)}},
                category=dict(seed=401, universe=24, rare="vehicle", max_clips=1,
                              mix=("biped", "quadruped", "winged", "crawler", "vehicle", "soft", "blob", "vehicle"),
                              counts={"round0": (1, 2), "pool": (2, 4), "val": (1, 1), "test": (1, 1)})),
}
LOOP = LOOP_SIZES["gpu"]


def loop_cfg(out: Path) -> dict:
    return json.loads((out / "loop_config.json").read_text())


def loop_flags(c: dict = LOOP) -> list[str]:
    return ["--preset", "debug", "--resolution", str(c["resolution"]), "--frames", str(c["frames"]), "--views",
            str(c["views"]), "--samples", str(c["samples"]), "--format", c["format"], "--no-ray", "--no-progress"]


def _roles(universe, COUNTS: dict, groups: tuple[str, ...] = KINDS, group_of=kind_of) -> dict[str, dict[str, list[str]]]:
    """scenario -> role -> asset uids: each group's assets in index order (then name), taken role after role;
    COUNTS[scenario][role] holds the assets per group in `groups` order (nested: shifted and matched take the first n
    of each role's span)."""
    uids = sorted(set(universe["uid"]), key=lambda u: (int(u.rsplit("_", 1)[1]), u))
    by_group = {g: [u for u in uids if group_of(u) == g] for g in groups}
    span = {r: [max(COUNTS[s][r][i] for s in COUNTS) for i in range(len(groups))] for r in ROLES}
    out: dict[str, dict[str, list[str]]] = {s: {} for s in COUNTS}
    for i, g in enumerate(groups):
        at = 0
        for r in ROLES:
            block = by_group[g][at: at + span[r][i]]
            if len(block) < span[r][i]:
                raise SystemExit(f"universe too small: {len(by_group[g])} {g} assets, roles need more")
            for s in COUNTS:
                out[s].setdefault(r, []).extend(block[: COUNTS[s][r][i]])
            at += span[r][i]
    return out


def _category_roles(universe, cat: dict) -> dict[str, list[str]]:
    """role -> asset uids of the category scenario: `_roles` over two groups, the rare category and the others."""
    from render.procedural import category_of

    def rare_or_other(uid: str) -> str | None:
        c = category_of(uid)
        return None if c is None else ("rare" if c == cat["rare"] else "other")

    return _roles(universe, {"category": cat["counts"]}, ("rare", "other"), rare_or_other)["category"]


def prepare_loop(out: Path, assets: Path | None = None, size: str = "gpu", real_root: Path | None = None,
                 scenarios: tuple[str, ...] = LEGACY_SCENARIOS) -> None:
    """Curate the universes the asked scenarios need, render every clip they use once into OUT/cache, and write
    each scenario's role manifests and OUT/loop_config.json."""
    import pandas as pd

    from manifests import read_manifest, write_manifest
    from manifests.pool import probe_gltf
    from manifests.shards import assign_shards
    from manifests.signals import group_labels

    bad = [x for x in scenarios if x not in SCENARIOS]
    if bad or not scenarios:
        raise SystemExit(f"--scenarios {','.join(scenarios)}: one or more of {', '.join(SCENARIOS)}")
    c = dict(LOOP_SIZES[size], size=size)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "prepare.log"
    real_root = real_root or Path(__file__).resolve().parents[2] / "shared" / "assets"
    if not (real_root / "gltf").is_dir():
        real_root = Path("/work/shared/assets")
    cur = out / "curated"
    cur.mkdir(exist_ok=True)
    parts, roles, real = [], {}, {}
    if any(x in LEGACY_SCENARIOS for x in scenarios):
        if not (cur / "universe.parquet").exists():
            sh(["curate", "--source", "procedural", "--categories", "legacy", "--count", str(c["universe"]), "--seed",
                str(c["seed"]), "--assets-out", str(assets or out / "assets"), "--out", str(cur / "universe.parquet")], log)
        for role, folder in REAL_SETS.items():
            if not (cur / f"real_{role}.parquet").exists():
                sh(["curate", "--source", "local", "--dir", str(real_root / folder), "--out", str(cur / f"real_{role}.parquet")],
                   log)
        uni = probe_gltf(read_manifest(cur / "universe.parquet"))
        uni["kind"] = uni["uid"].map(kind_of)
        roles = _roles(uni, c["counts"])
        for role in REAL_SETS:
            r = probe_gltf(read_manifest(cur / f"real_{role}.parquet"))
            r["kind"] = group_labels(r, "deform").to_numpy()  # real assets: the kind their glTF shows
            real[role] = r.sort_values(["uid", "clip"]).head(c["real_clips"]) if c["real_clips"] else r
        used = sorted({u for s_ in roles.values() for us in s_.values() for u in us})
        assert not set(zip(uni["uid"], uni["clip"])) & set(zip(real["val"]["uid"], real["val"]["clip"]))
        parts += [uni[uni["uid"].isin(used)], real["val"], real["test"]]
    if "category" in scenarios:
        cat = c["category"]
        if not (cur / "universe_category.parquet").exists():
            glbs = assets or out / "assets"
            sh(["curate", "--source", "procedural", "--categories", ",".join(cat["mix"]), "--count", str(cat["universe"]),
                "--seed", str(cat["seed"]), "--max-clips-per-asset", str(cat["max_clips"]), "--assets-out",
                str(glbs.with_name(glbs.name + "-category")), "--out", str(cur / "universe_category.parquet")], log)
        cuni = probe_gltf(read_manifest(cur / "universe_category.parquet"))  # curate wrote its `category` column
        cuni["kind"] = "other"
        roles["category"] = _category_roles(cuni, cat)
        used = sorted({u for us in roles["category"].values() for u in us})
        parts.append(cuni[cuni["uid"].isin(used)])
    everything = assign_shards(pd.concat(parts, ignore_index=True).assign(render_settings=None), c["shard_size"])
    cache = out / "cache"
    cache.mkdir(exist_ok=True)
    if (cache / "manifest.parquet").exists():  # committed shards are skipped by number: they must hold these rows
        before = read_manifest(cache / "manifest.parquet")
        key = lambda m: sorted(zip(m["uid"], m["clip"].astype(int), m["shard"].astype(int)))  # noqa: E731
        if key(before) != key(everything):
            raise SystemExit(f"{cache} was rendered for other rows (another --scenarios or size): remove it, or "
                             "prepare into another --out")
    write_manifest(everything, cache / "manifest.parquet", command="data_engine_experiment loop-prepare",
                   settings={"flags": loop_flags(c), "threads": 1, "scenarios": list(scenarios)})
    t = sh(["render", "--manifest", str(cache / "manifest.parquet"), "--shards", "all", "--out", str(cache / "data"),
            *loop_flags(c), "--threads", "1"], cache / "render.log")
    (cache / "cache.json").write_text(json.dumps({"flags": loop_flags(c), "threads": 1, "rows": len(everything),
                                                  "render_wall_s": round(t, 1)}, indent=1))
    keep = [c_ for c_ in everything.columns if c_ not in ("shard", "render_settings")]
    rows = everything[keep]
    counts = {}
    for s_ in scenarios:
        d = out / s_
        d.mkdir(exist_ok=True)
        src = roles["matched" if s_ == "real" else s_]
        parts_s = {r: rows[rows["uid"].isin(src[r])] for r in ("round0", "pool")}
        if s_ == "real":
            keys = {r: set(zip(real[r]["uid"], real[r]["clip"])) for r in REAL_SETS}
            parts_s.update({r: rows[[(u, k) in keys[r] for u, k in zip(rows["uid"], rows["clip"])]] for r in REAL_SETS})
        else:
            parts_s.update(val=rows[rows["uid"].isin(src["val"])], test=rows[rows["uid"].isin(src["test"])])
        first, counts[s_] = 0, {}
        for r in ("round0", "val", "test", "pool"):  # round 0, val and test shards are built from the cache
            p = assign_shards(parts_s[r], c["shard_size"], first_shard=first)
            first = int(p["shard"].max()) + 1
            write_manifest(p, d / f"{r}.parquet", command="data_engine_experiment loop-prepare", settings={"scenario": s_})
            counts[s_][r] = {"clips": len(p), **{g: int(n) for g, n in
                                                 group_labels(p, GROUP_BY[s_], probe=False).value_counts().items()}}
    (out / "loop_config.json").write_text(json.dumps({**c, "scenarios": counts, "group_by": GROUP_BY,
                                                      "render_s": round(t, 1)}, indent=1))
    print(json.dumps(counts, indent=1))
