"""The fixed vocabulary of reasons why a sample was not rendered (STYLE.md §4).

Every `failed` or `rejected` row in a shard parquet carries one of these words in its `reason` column,
so `pipeline status` can count them in a table. `failed` means something went wrong and a retry or a
fix could help; `rejected` means the asset was read fine but does not qualify for the dataset.
"""

from __future__ import annotations

# reason -> (status, one-line meaning). Keep it small: a new word needs a new kind of problem.
REASONS: dict[str, tuple[str, str]] = {
    "missing_file": ("failed", "the asset file named by the row's uri does not exist"),
    "download_failed": ("failed", "the asset could not be fetched from its source"),
    "bad_uri": ("failed", "the row's uri is empty or uses a scheme nobody resolves"),
    "bad_settings": ("failed", "the row's render_settings JSON is not a valid set of preset overrides"),
    "unsupported_format": ("rejected", "a file type this renderer does not import (.blend, .usd, ...)"),
    "import_failed": ("failed", "Blender's importer raised or gave up on the file (truncated, not a model, ...)"),
    "empty_scene": ("rejected", "the imported file has no renderable geometry"),
    "too_many_faces": ("rejected", "the evaluated geometry has more faces than the preset's max_faces"),
    "clip_out_of_range": ("failed", "the row's clip index is not one of the file's animations"),
    "no_motion": ("rejected", "the clip's evaluated geometry does not move over the rendered times (or 9 probe times when fewer)"),
    "empty_render": ("rejected", "every rendered image is fully transparent"),
    "too_small": ("rejected", "the object covers less of the image than the preset's min_coverage, in its best view on average over time"),
    "render_failed": ("failed", "Blender raised while rendering or while writing the passes"),
    "timeout": ("failed", "the sample took longer than the preset's max_seconds"),
    "worker_crashed": ("failed", "the render process died while it held the sample"),
}


def status_for(reason: str) -> str:
    """'failed' or 'rejected' for a reason word; raises ValueError for an unknown word."""
    return REASONS[check_reason(reason)][0]


def meaning(reason: str) -> str:
    """The one-line meaning of a reason word."""
    return REASONS[check_reason(reason)][1]


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}; known: {', '.join(REASONS)}")
    return reason


class AssetProblem(Exception):
    """Raised inside the worker when an asset cannot become a sample; `reason` is a word from REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{check_reason(reason)}: {detail}")
        self.reason = reason
        self.detail = detail
