"""Procedural asset names and category mixes (no bpy: the manifest source and the CLI read them).

Asset ``j`` of a batch of seed ``S`` over a category mix ``(c0, c1, ...)`` is asset ``i`` of category
``c = mix[j % len(mix)]``, where ``i`` counts the earlier assets of ``c`` in the batch. Its uid is
``proc_{c}_s{S}_{i:05d}`` (``-notex`` / ``-noaug`` after the category for the ablation variants without
image textures / without shape augmentations); the legacy generator keeps its old uid ``proc_s{S}_{i:05d}``.
One uid is always the same file, whatever the mix or count that produced it. A category named twice in a
mix is drawn twice as often.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple

from contracts.uids import check_uid  # the one place render.procedural reads the uid rule

CATEGORIES = ("biped", "quadruped", "winged", "crawler", "vehicle", "soft", "blob")
GENERATORS = (*CATEGORIES, "legacy")
# What real animated collections hold most: characters and animals first, then creatures, machines, props.
DEFAULT_MIX = ("biped", "quadruped", "biped", "quadruped", "winged", "crawler", "vehicle", "soft", "blob")
ARTICULATED = ("biped", "quadruped", "winged", "crawler", "vehicle")
CATEGORY_IDS = {c: n + 1 for n, c in enumerate(CATEGORIES)}  # fixed numbers in every category's seed

_UID_RE = re.compile(r"^proc_(?:(?P<cat>[a-z]+)(?P<notex>-notex)?(?P<noaug>-noaug)?_)?s(?P<seed>-?\d+)_(?P<index>\d{5,})$")


class Planned(NamedTuple):
    """One asset of a batch: its category, its index within the category, and its uid."""

    category: str
    index: int
    uid: str


def parse_categories(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """A mix from `biped,quadruped,...` (or a list); None or empty -> DEFAULT_MIX. Unknown names raise ValueError."""
    if text is None:
        return DEFAULT_MIX
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        return DEFAULT_MIX
    bad = [n for n in names if n not in GENERATORS]
    if bad:
        raise ValueError(f"unknown procedural categor{'y' if len(bad) == 1 else 'ies'} {bad}; known: {', '.join(GENERATORS)}")
    return tuple(names)


def asset_uid(seed: int, index: int, category: str = "legacy", *, textures: bool = True, shapes: bool = True) -> str:
    """The uid (file stem) of asset `index` of `category` and `seed`."""
    if category == "legacy":
        return check_uid(f"proc_s{seed}_{index:05d}", "procedural uid")
    if category not in CATEGORIES:
        raise ValueError(f"unknown procedural category {category!r}; known: {', '.join(GENERATORS)}")
    tag = category + ("" if textures else "-notex") + ("" if shapes else "-noaug")
    return check_uid(f"proc_{tag}_s{seed}_{index:05d}", "procedural uid")


def plan(count: int, seed: int, mix: tuple[str, ...], *, textures: bool = True, shapes: bool = True) -> list[Planned]:
    """The assets of a batch in order (see the module docstring)."""
    seen: dict[str, int] = {}
    out = []
    for j in range(count):
        cat = mix[j % len(mix)]
        i = seen.get(cat, 0)
        seen[cat] = i + 1
        out.append(Planned(cat, i, asset_uid(seed, i, cat, textures=textures, shapes=shapes)))
    return out


def category_of(uid: str) -> str | None:
    """The category of a procedural uid (`legacy` for the old names), None for other uids."""
    m = _UID_RE.match(uid)
    if m is None:
        return None
    return m.group("cat") or "legacy"
