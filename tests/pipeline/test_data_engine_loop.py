"""benchmarks/data_engine_loop.py (issue 23's scenarios): roles are disjoint within a scenario, have the
asked counts per kind, and the shifted scenario's target emphasises the kind that is rare in round 0 and
in the pool."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loop():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import data_engine_loop

    return data_engine_loop


@pytest.mark.parametrize("size", ["gpu", "cpu"])
def test_roles_are_disjoint_and_counted(loop, size):
    from data_engine_common import kind_of

    c = loop.LOOP_SIZES[size]
    uni = pd.DataFrame({"uid": [f"proc_s400_{i:05d}" for i in range(c["universe"])]})
    roles = loop._roles(uni, c["counts"])
    for s, want in c["counts"].items():
        seen: set[str] = set()
        for r, counts in want.items():
            got = roles[s][r]
            assert not seen & set(got), (s, r)
            seen |= set(got)
            assert [sum(kind_of(u) == k for u in got) for k in ("rigid", "morph", "skin")] == list(counts)
    sh = c["counts"]["shifted"]
    skin = {r: sh[r][2] / sum(sh[r]) for r in sh}
    if size == "gpu":
        assert skin["round0"] == pytest.approx(0.1) and skin["pool"] == pytest.approx(0.1)
        assert skin["val"] == skin["test"] == 0.5
    too_small = pd.DataFrame({"uid": [f"proc_s400_{i:05d}" for i in range(c["universe"] // 2)]})
    with pytest.raises(SystemExit, match="universe too small"):
        loop._roles(too_small, c["counts"])


@pytest.mark.parametrize("size", ["gpu", "cpu"])
def test_category_roles_shift_the_target_to_a_rare_category(loop, size):
    """The category scenario: disjoint roles with the asked (rare, other) counts, drawn from a universe planned
    like `pipeline curate --source procedural --categories MIX` plans it; vehicles are about a tenth of round 0
    and of the pool and half of the target (gpu size); a universe too small is refused."""
    from render.procedural import category_of, plan

    cat = loop.LOOP_SIZES[size]["category"]
    uni = pd.DataFrame({"uid": [p.uid for p in plan(cat["universe"], cat["seed"], cat["mix"])]})
    roles = loop._category_roles(uni, cat)
    seen: set[str] = set()
    for r, (rare, other) in cat["counts"].items():
        got = roles[r]
        assert not seen & set(got), r
        seen |= set(got)
        assert sum(category_of(u) == "vehicle" for u in got) == rare and len(got) == rare + other
    if size == "gpu":
        share = {r: cat["counts"][r][0] / sum(cat["counts"][r]) for r in cat["counts"]}
        assert share["round0"] == share["pool"] == pytest.approx(1 / 9) and share["val"] == share["test"] == 0.5
        others = {category_of(u) for u in roles["pool"]} - {"vehicle"}
        assert others == {"biped", "quadruped", "winged", "crawler", "soft", "blob"}  # every other category offered
    small = uni.head(cat["universe"] // 3)
    with pytest.raises(SystemExit, match="universe too small"):
        loop._category_roles(small, cat)
    assert loop.GROUP_BY["category"] == "category"
