"""Curation: sources, filters with reasons, the manifest schema, shard assignment, mining.

Importing this package is light (no objaverse, no bpy); the public contract is below.
"""

from manifests.schema import (  # noqa: F401
    OPTIONAL,
    REQUIRED,
    SOURCES,
    ManifestError,
    ManifestInfo,
    manifest_info,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from contracts.uids import UID_RE, check_uid, is_valid_uid, sample_key, stable_uid  # noqa: F401
