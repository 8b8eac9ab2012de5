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
