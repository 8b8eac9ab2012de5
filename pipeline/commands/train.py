"""`pipeline train`: the command lives in training/cli.py (it is also `python -m training` under
torchrun); this entry point only names it. training/cli.py imports click alone at module level."""

from training.cli import command  # noqa: F401 (pipeline/cli.py looks up `command`)
