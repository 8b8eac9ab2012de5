"""What the asset resolver (manifests/assets.py) and the source modules share: the locator schemes a
manifest `uri` may carry and the error for an asset file that cannot be had."""

from __future__ import annotations


class AssetUnavailable(Exception):
    """The asset file of a row cannot be had; `reason` is a short fixed word, `detail` says more."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


OBJAVERSE_SCHEME = "objaverse:"      # objaverse:<object path in the HF repo>, e.g. objaverse:glbs/000-023/<uid>.glb
OBJAVERSE_XL_SCHEME = "objaverse-xl:"  # objaverse-xl:<source>:<fileIdentifier>
