"""One place that configures logging for the `pipeline` command (STYLE.md §12)."""

from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger once: INFO by default, DEBUG with -v, WARNING with -q.

    `PIPELINE_LOG_LEVEL` overrides both (useful inside Ray workers and torchrun ranks).
    """
    global _CONFIGURED
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    elif verbose:
        level = logging.DEBUG
    env = os.environ.get("PIPELINE_LOG_LEVEL")
    if env:
        level = getattr(logging, env.upper(), level)
    root = logging.getLogger()
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        _CONFIGURED = True
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless -v was given twice.
    for noisy in ("urllib3", "fsspec", "filelock", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
