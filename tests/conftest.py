"""Shared fixtures: where the real glTF test assets are, and skips with reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OBJAVERSE4D_SHARED", REPO.parent / "shared"))
GLTF_DIR = SHARED / "assets" / "gltf"


@pytest.fixture(scope="session")
def gltf_dir() -> Path:
    """../shared/assets/gltf (real Khronos sample models); tests using it skip when it is absent."""
    if not (GLTF_DIR / "assets.json").is_file():
        pytest.skip(f"real glTF assets not found at {GLTF_DIR} (set OBJAVERSE4D_SHARED to the shared/ folder)")
    return GLTF_DIR
