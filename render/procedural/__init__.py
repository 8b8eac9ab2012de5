"""Procedural animated assets: seeded objects built in Blender and exported as GLB (cc0, made here).

Categories, each with its own seeded generator and several named clips per asset (naming.CATEGORIES):
``biped`` and ``quadruped`` skeletons with gaits (walk, run/trot), idle, turn, jump and an action clip,
some travelling; ``winged`` (flapping) and ``crawler`` (many legs in waves); ``vehicle`` (rigid hierarchies:
wheels, steering, doors, turrets, pistons); ``soft`` (plants and flags on bones, faces on shape keys);
``blob`` (Zeroverse-like textured primitive compositions); and ``legacy``, the first generator, kept for
comparisons. Surfaces: UV-mapped procedural image textures (noise, stripes, spots, patches, cracks, eye
decals), per-part materials, boolean concavities, thin parts, height fields, varied mesh density.

Every clip is one Blender action with a slot per animated ID on single-strip NLA tracks, so that glTF
export in ACTIONS mode writes one named glTF animation per clip, in clip order. Asset names and mixes:
naming.py. Usage: ``generate_assets(out_dir, count, seed, categories=...)`` or ``python -m
render.procedural --out DIR --count N --seed S [--categories biped,quadruped]``. Importing this package
does not import bpy; generating does.
"""

from __future__ import annotations

from render.procedural.naming import (ARTICULATED, CATEGORIES, DEFAULT_MIX, GENERATORS, asset_uid, category_of,
                                      parse_categories, plan)

__all__ = ["ARTICULATED", "CATEGORIES", "DEFAULT_MIX", "GENERATORS", "asset_uid", "category_of", "generate_assets",
           "parse_categories", "plan"]


def generate_assets(*args, **kwargs):
    """render.procedural.build.generate_assets (imports bpy on first use)."""
    from render.procedural.build import generate_assets as build

    return build(*args, **kwargs)
